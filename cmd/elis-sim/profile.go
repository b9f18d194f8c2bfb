package main

import (
	"fmt"
	"io"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/elis-sim/elis-sim/cost"
	"github.com/elis-sim/elis-sim/internal/atomicfile"
	"github.com/elis-sim/elis-sim/setup"
)

func profileCommand() *cli.Command {
	flags := append(cliFlags(setup.DeviceFlags()), cliFlags(setup.ProfileFlags())...)
	return usageErrors(&cli.Command{
		Name:  "profile",
		Usage: "time step shapes and predictor calls on a device, or a live server, for calibrate",
		UsageText: "elis-sim profile --model tiny --device cpu -o profile.csv\n" +
			"elis-sim profile --url http://localhost:8000 --model meta-llama/Llama-3.1-8B-Instruct --max-num-batched-tokens 8192 -o profile.csv",
		Flags:  flags,
		Action: profileAction,
	})
}

func profileAction(c *cli.Context) error {
	if err := setup.CheckOut(c, "out"); err != nil {
		return err
	}
	out, u := c.String("out"), c.String("url")
	var p *cost.DeviceProfile
	var err error
	if u != "" {
		p, err = setup.URLProfile(c.Context, c, os.Stderr)
	} else {
		p, err = setup.DeviceProfile(c)
	}
	if err == nil {
		err = atomicfile.Write(out, func(w io.Writer) error { return cost.WriteDeviceProfile(w, p) })
	}
	switch {
	case err != nil:
		return err
	case u != "":
		fmt.Printf("profiled %s (%s): %d prompt lengths alone, %d decode shapes, in %s s, into %s\n", u, c.String("model"), len(p.Requests), len(p.Steps), p.Meta["profile_seconds"], out)
	default:
		fmt.Printf("profiled %d step shapes and %d predictor calls on %s (%s) into %s\n", len(p.Steps), len(p.Predictor), c.String("device"), c.String("model"), out)
	}
	return nil
}

func calibrateCommand() *cli.Command {
	return usageErrors(&cli.Command{
		Name:      "calibrate",
		Usage:     "fit the simulator's cost model to a device profile",
		ArgsUsage: "PROFILE.csv",
		UsageText: "elis-sim calibrate profile.csv -o cost.json && elis-sim run trace.json --cost-model cost.json",
		Flags:     []cli.Flag{&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Value: "cost.json", Usage: "output cost model JSON"}},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return badf("calibrate wants one PROFILE.csv, got %d arguments", c.NArg())
			}
			if err := setup.CheckOut(c, "out"); err != nil {
				return err
			}
			p, err := cost.ReadDeviceProfile(c.Args().First())
			if err != nil {
				return bad(err)
			}
			cf, err := cost.CalibrateProfile(p)
			if err != nil {
				return bad(err)
			}
			if err := cost.WriteCostFile(c.String("out"), cf); err != nil {
				return err
			}
			cf.Describe(os.Stdout, p)
			fmt.Printf("wrote %s; use it with: elis-sim run TRACE --cost-model %s\n", c.String("out"), c.String("out"))
			return nil
		},
	})
}
