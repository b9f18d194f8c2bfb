// Command elis-sim simulates and replays LLM serving schedules (FCFS,
// ISRTF and others) to measure what a scheduling policy does to latency.
// Run "elis-sim --help" for the commands.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/elis-sim/elis-sim/experiment"
	"github.com/elis-sim/elis-sim/setup"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

func main() {
	os.Exit(run(os.Args))
}

func run(args []string) int {
	app := newApp()
	err := app.Run(interspersed(app, args))
	if err == nil {
		return 0
	}
	fmt.Fprintln(os.Stderr, "elis-sim:", err)
	if setup.IsBad(err) || errors.Is(err, experiment.ErrDamaged) {
		return 2
	}
	var st *exitStatus
	if errors.As(err, &st) {
		return st.code
	}
	var ec cli.ExitCoder
	if errors.As(err, &ec) {
		return ec.ExitCode()
	}
	return 1
}

func newApp() *cli.App {
	return &cli.App{
		Name:    "elis-sim",
		Usage:   "simulate and replay LLM serving schedulers: FCFS against ISRTF and friends",
		Version: version,
		Description: "elis-sim answers how much iterative shortest-remaining-time-first (ISRTF) scheduling helps an\n" +
			"LLM serving engine, when, and why. \"elis-sim run\" with no arguments shows FCFS next to ISRTF\n" +
			"on an embedded ELIS-like workload.",
		Commands: []*cli.Command{
			runCommand(),
			traceCommand(),
			compareCommand(),
			plotCommand(),
			sweepCommand(),
			replayCommand(),
			profileCommand(),
			predictCommand(),
			calibrateCommand(),
			costCommand(),
			serveCommand(),
			benchCommand(),
		},
		// Without it an unknown command exits 3 with cli's own message.
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				var names []string
				for _, cmd := range c.App.Commands {
					names = append(names, cmd.Name)
				}
				return badf("unknown command %q; valid are %s (see elis-sim --help)", c.Args().First(), strings.Join(names, ", "))
			}
			return cli.ShowAppHelp(c)
		},
		OnUsageError: func(_ *cli.Context, err error, _ bool) error {
			return setup.Bad(fmt.Errorf("%w (see elis-sim --help for the valid commands and flags)", err))
		},
		HideHelpCommand: true,
	}
}

// bad marks err as bad input (exit 2); badf formats one. They are setup's,
// so that bad input is one type whichever package found it.
var (
	bad  = setup.Bad
	badf = setup.Errorf
)

// usageErrors makes a command's flag errors exit 2 like the app's, naming
// the help to read.
func usageErrors(c *cli.Command) *cli.Command {
	setUsageErrors(c, c.Name)
	return c
}

func setUsageErrors(c *cli.Command, path string) {
	c.OnUsageError = func(_ *cli.Context, err error, _ bool) error {
		return setup.Bad(fmt.Errorf("%w (see elis-sim %s --help for the valid flags)", err, path))
	}
	for _, s := range c.Subcommands {
		setUsageErrors(s, path+" "+s.Name)
	}
}

// interrupts is the two-step Ctrl-C of the wall-clock commands: the first
// cancels stop (no new arrivals; say so with msg), the second abandon (drop
// what is in flight). done releases the signal.
func interrupts(msg string) (stop, abandon context.Context, done func()) {
	stop, stopCancel := context.WithCancel(context.Background())
	abandon, abandonCancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt)
	go func() {
		if _, ok := <-sigs; !ok {
			return
		}
		fmt.Fprintln(os.Stderr, msg)
		stopCancel()
		if _, ok := <-sigs; ok {
			abandonCancel()
		}
	}()
	return stop, abandon, func() {
		signal.Stop(sigs)
		close(sigs)
		stopCancel()
		abandonCancel()
	}
}
