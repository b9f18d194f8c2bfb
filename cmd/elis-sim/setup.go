package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/elis-sim/elis-sim/setup"
)

// simFlags are the flags that set up a simulated run (shared with sweep
// and serve), declared from setup.Flags: one table of names, defaults and
// help for the CLI and a sweep spec alike.
func simFlags() []cli.Flag {
	var out []cli.Flag
	for _, f := range setup.Flags() {
		switch d := f.Default.(type) {
		case string:
			out = append(out, &cli.StringFlag{Name: f.Name, Value: d, Usage: f.Usage, EnvVars: f.Env})
		case int:
			out = append(out, &cli.IntFlag{Name: f.Name, Value: d, Usage: f.Usage, EnvVars: f.Env})
		case float64:
			out = append(out, &cli.Float64Flag{Name: f.Name, Value: d, Usage: f.Usage, EnvVars: f.Env})
		case bool:
			out = append(out, &cli.BoolFlag{Name: f.Name, Value: d, Usage: f.Usage, EnvVars: f.Env})
		case uint64:
			out = append(out, &cli.Uint64Flag{Name: f.Name, Value: d, Usage: f.Usage, EnvVars: f.Env})
		default:
			panic(fmt.Sprintf("setup flag %s: default of type %T", f.Name, d))
		}
	}
	return out
}

// policyFlag gives a command's --policy the default it uses (and, when
// usage is set, its own help), so that the default help shows is the one
// the command runs: serve runs one policy (vLLM's default, fcfs), a sweep
// compares three.
func policyFlag(flags []cli.Flag, def, usage string) []cli.Flag {
	for i, f := range flags {
		if sf, ok := f.(*cli.StringFlag); ok && sf.Name == "policy" {
			one := *sf
			one.Value = def
			if usage != "" {
				one.Usage = usage
			}
			flags[i] = &one
		}
	}
	return flags
}
