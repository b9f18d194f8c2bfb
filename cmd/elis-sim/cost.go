package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/elis-sim/elis-sim/cost"
)

func costCommand() *cli.Command {
	return usageErrors(&cli.Command{
		Name:  "cost",
		Usage: "inspect the simulator's cost model",
		Subcommands: []*cli.Command{{
			Name:      "show",
			Usage:     "print a preset cost model as JSON, to edit and load with run --cost-model",
			UsageText: "elis-sim cost show --model llama-3.1-8b --gpu h200 > cost.json",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "model", Value: "llama-2-13b", Usage: "model preset: " + strings.Join(cost.ArchNames(), ", ")},
				&cli.StringFlag{Name: "gpu", Value: "a100-80g", Usage: "GPU preset: " + strings.Join(cost.GPUNames(), ", ")},
				&cli.IntFlag{Name: "tp", Value: 1, Usage: "tensor parallelism"},
				&cli.StringFlag{Name: "stack", Value: cost.DefaultStack, Usage: "serving stack: " + strings.Join(cost.Stacks, ", ")},
			},
			Action: func(c *cli.Context) error {
				r, err := cost.NewRooflineStack(c.String("model"), c.String("gpu"), c.String("stack"), c.Int("tp"))
				if err != nil {
					return bad(err)
				}
				b, err := json.MarshalIndent(cost.CostFile{Kind: "roofline", Model: r.Arch.Name, Device: r.GPU.Name, Roofline: r}, "", "  ")
				if err != nil {
					return err
				}
				_, err = fmt.Println(string(b))
				return err
			},
		}, {
			Name:  "check",
			Usage: "check the GPU presets: against real vLLM on reference shapes, and against measured timings",
			UsageText: "elis-sim cost check --profile ../shared/profiles/h200-torch-ops.csv " +
				"--splitwise ../shared/data/splitwise/perf_model.csv [--fit]",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "profile", Usage: "operator profile CSV (model,op,m,n,k,batch,q_len,kv_len,ms) measured on --profile-gpu"},
				&cli.StringFlag{Name: "profile-gpu", Value: "h200", Usage: "the GPU preset the profile was measured on"},
				&cli.StringFlag{Name: "splitwise", Usage: "Splitwise perf_model.csv (A100 and H100 step times)"},
				&cli.BoolFlag{Name: "fit", Usage: "also fit the efficiencies to the measurements and print them as JSON"},
				&cli.BoolFlag{Name: "held-out", Usage: "with --splitwise: fit on part of the measurements and judge on the rest (the other GPU; each TP degree left out)"},
			},
			Action: costCheck,
		}},
	})
}

func costCheck(c *cli.Context) error {
	opt := cost.CheckOptions{Profile: c.String("profile"), ProfileGPU: c.String("profile-gpu"), Splitwise: c.String("splitwise"),
		Fit: c.Bool("fit"), HeldOut: c.Bool("held-out")}
	if _, err := cost.LookupGPUStack(opt.ProfileGPU, "2023"); opt.Profile != "" && err != nil {
		return badf("--profile-gpu: %w", err)
	}
	ms, err := opt.Measurements()
	if err != nil {
		return bad(err)
	}
	return cost.WriteCheck(os.Stdout, ms, opt)
}
