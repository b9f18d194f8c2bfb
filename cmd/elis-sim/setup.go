package main

import (
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/elis-sim/elis-sim/setup"
)

// simFlags are the flags that set up a simulated run (shared with sweep
// and serve), declared in setup.Flags: one table of names, defaults and
// help for the CLI and a sweep spec alike.
func simFlags() []cli.Flag { return cliFlags(setup.Flags()) }

// cliFlags are a table of setup's options as command-line flags.
func cliFlags(table []setup.Flag) []cli.Flag {
	var out []cli.Flag
	for _, f := range table {
		n, u, env, al, req := f.Name, f.Usage, f.Env, f.Aliases, f.Required
		switch d := f.Default.(type) {
		case string:
			out = append(out, &cli.StringFlag{Name: n, Value: d, Usage: u, EnvVars: env, Aliases: al, Required: req})
		case int:
			out = append(out, &cli.IntFlag{Name: n, Value: d, Usage: u, EnvVars: env, Aliases: al, Required: req})
		case int64:
			out = append(out, &cli.Int64Flag{Name: n, Value: d, Usage: u, EnvVars: env, Aliases: al, Required: req})
		case float64:
			out = append(out, &cli.Float64Flag{Name: n, Value: d, Usage: u, EnvVars: env, Aliases: al, Required: req})
		case bool:
			out = append(out, &cli.BoolFlag{Name: n, Value: d, Usage: u, EnvVars: env, Aliases: al, Required: req})
		case uint64:
			out = append(out, &cli.Uint64Flag{Name: n, Value: d, Usage: u, EnvVars: env, Aliases: al, Required: req})
		case time.Duration:
			out = append(out, &cli.DurationFlag{Name: n, Value: d, Usage: u, EnvVars: env, Aliases: al, Required: req})
		case []string:
			sf := &cli.StringSliceFlag{Name: n, Usage: u, EnvVars: env, Aliases: al, Required: req}
			if len(d) > 0 {
				sf.Value = cli.NewStringSlice(d...)
			}
			out = append(out, sf)
		default:
			panic(fmt.Sprintf("setup flag %s: default of type %T", n, d))
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
