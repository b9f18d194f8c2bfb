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
	var ms []cost.Measurement
	if p := c.String("profile"); p != "" {
		if _, err := cost.LookupGPUStack(c.String("profile-gpu"), "2023"); err != nil {
			return badf("--profile-gpu: %w", err)
		}
		m, err := cost.ReadTorchProfile(p, c.String("profile-gpu"))
		if err != nil {
			return bad(err)
		}
		ms = append(ms, m...)
	}
	if p := c.String("splitwise"); p != "" {
		m, err := cost.ReadSplitwise(p)
		if err != nil {
			return bad(err)
		}
		ms = append(ms, m...)
	}
	rows, err := cost.VLLMReference()
	if err != nil {
		return err
	}
	fmt.Println("vLLM reference: one request alone, llama-3.1-8b on H100 (ms; reference = BLIS's fit on real vLLM)")
	fmt.Printf("%-30s %10s %10s %10s %10s %10s  %s\n", "shape", "vllm-v1", "2023", "reference", "floor", "FA roof", "target")
	ms3 := func(v float64) string {
		if v == 0 {
			return "-"
		}
		return fmt.Sprintf("%.2f", v*1e3)
	}
	for _, r := range rows {
		verdict := "met"
		if !r.OK {
			verdict = "MISSED"
		}
		fmt.Printf("%-30s %10s %10s %10s %10s %10s  %s: %s\n", r.Shape, ms3(r.Preset), ms3(r.Preset2023), ms3(r.Reference), ms3(r.Floor), ms3(r.FARoofline), r.Target, verdict)
	}
	if len(ms) == 0 {
		return nil
	}
	fmt.Println("\nmeasured timings against the 2023-stack presets (Splitwise's engine; PyTorch eager operators)")
	byGPU := map[string][]cost.Measurement{}
	var order []string
	for _, m := range ms {
		if _, ok := byGPU[m.GPU]; !ok {
			order = append(order, m.GPU)
		}
		byGPU[m.GPU] = append(byGPU[m.GPU], m)
	}
	fmt.Printf("%-22s %-13s %5s %10s %10s %10s  %s\n", "gpu", "class", "n", "mean|err|", "median", "max", "worst case")
	for _, name := range order {
		g, _ := cost.LookupGPUStack(name, "2023")
		for _, r := range cost.Errors(g, byGPU[name]) {
			fmt.Printf("%-22s %-13s %5d %9.1f%% %9.1f%% %9.1f%%  %s\n", r.GPU, r.Class, r.N, r.MeanAbsPct, r.MedianPct, r.MaxAbsPct, r.WorstLabel)
		}
		if c.Bool("fit") {
			f := cost.Fit(g, byGPU[name])
			b, _ := json.MarshalIndent(f.Eff, "", "  ")
			fmt.Fprintf(os.Stdout, "fitted efficiencies for %s:\n%s\n", name, b)
		}
	}
	if c.Bool("held-out") {
		var sw []cost.Measurement
		for _, m := range ms {
			if m.Class == "prefill_step" || m.Class == "decode_step" {
				sw = append(sw, m)
			}
		}
		rows, err := cost.HeldOut(sw, 8000)
		if err != nil {
			return err
		}
		fmt.Println("\nheld out (2023 stack; targets: median <= 8%, 90% within 15%, none beyond 25%)")
		fmt.Printf("%-40s %5s %5s %8s %8s %8s %9s  %s\n", "split", "n", "excl", "median", "p90", "max", "within15", "worst")
		for _, r := range rows {
			verdict := ""
			if !r.OK {
				verdict = " (misses)"
			}
			fmt.Printf("%-40s %5d %5d %7.1f%% %7.1f%% %7.1f%% %8.0f%%  %s%s\n", r.Split, r.N, r.Excluded, r.Median, r.P90, r.Max, r.Within15, r.Worst, verdict)
		}
	}
	return nil
}
