package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/elis-sim/elis-sim/internal/hist"
	"github.com/elis-sim/elis-sim/policies"
	"github.com/elis-sim/elis-sim/report"
	"github.com/elis-sim/elis-sim/serve"
	"github.com/elis-sim/elis-sim/setup"
)

func serveCommand() *cli.Command {
	flags := append(policyFlag(simFlags(), "fcfs", "the one policy the server runs: "+strings.Join(policies.Names(), ", ")+"; NAME[/MODE][+GUARD...] with guards "+setup.GuardHelp+" (isrtf/patch+lazy)"),
		cliFlags(setup.ServeFlags())...)
	return usageErrors(&cli.Command{
		Name:  "serve",
		Usage: "an OpenAI-compatible server whose steps come from the scheduler core",
		Description: "Serves /v1/completions and /v1/chat/completions (streaming or not; max_tokens, min_tokens,\n" +
			"ignore_eos, priority, token-id prompts), /v1/models, /health and /metrics (vLLM's metric names), with\n" +
			"one --policy of the core. With --engine sim each step lasts, on the wall clock, what the cost model\n" +
			"(--model/--gpu/--tp or --cost-model, as in run) prices it at, and tokens are placeholders: a GPU-free\n" +
			"stand-in for vLLM to test clients, routers and bench against. Output lengths are max_tokens (the\n" +
			"stand-in never stops early). Predictive policies log the ISRTF fork's [ELIS] lines on stderr.\n" +
			"Errors are vLLM's object, {\"error\": {\"message\", \"type\", \"param\", \"code\"}}. Clients are bounded: header, body,\n" +
			"write and idle timeouts, a body limit, connections in all and per client address.\n" +
			"SIGTERM or Ctrl-C stops admitting requests (503), finishes those in flight (at most\n" +
			"--shutdown-timeout), stops the engines, writes --out, exits 0; a second signal abandons what is left.",
		UsageText: "elis-sim serve --policy isrtf --model llama-3.1-8b --gpu h100 --port 8000",
		Flags:     flags,
		Action:    serveAction,
	})
}

func serveAction(c *cli.Context) error {
	if c.NArg() > 0 {
		return badf("serve takes no arguments, got %q", c.Args().First())
	}
	if err := setup.CheckOut(c, "out"); err != nil {
		return err
	}
	sv, err := setup.ParseServe(c)
	if err != nil {
		return err
	}
	for _, w := range sv.Warnings {
		fmt.Fprintf(os.Stderr, "elis-sim serve: %s\n", w)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(c.String("host"), fmt.Sprint(c.Int("port"))))
	if err != nil {
		return badf("--host/--port: %v", err)
	}
	var predLog io.Writer
	if sv.Predictive() {
		predLog = os.Stderr // the fork's [ELIS] lines, which bench --server-log reads
	}
	var mu sync.Mutex
	var recs []policies.Record
	var gaps hist.H
	scfg := sv.Config(predLog, func(g float64, n int) { mu.Lock(); gaps.AddN(g, uint64(n)); mu.Unlock() },
		func(r policies.Record) { mu.Lock(); recs = append(recs, r); mu.Unlock() })
	scfg.APIKey = c.String("api-key")
	srv, err := serve.New(scfg)
	if err != nil {
		ln.Close()
		return err
	}
	fmt.Fprintf(os.Stderr, "elis-sim serve: %s | policy %s | model %q on http://%s (engine %s)\n", sv.Sim.Engine, sv.Label(), sv.Name, ln.Addr(), sv.Device)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	select {
	case err := <-served: // the listener failed: nothing to drain
		srv.Close()
		return err
	case <-sigs:
	}
	fmt.Fprintln(os.Stderr, "elis-sim serve: draining requests in flight (a second signal abandons them)")
	ctx, cancel := context.WithTimeout(context.Background(), c.Duration("shutdown-timeout"))
	defer cancel()
	go func() {
		select {
		case <-sigs:
			cancel()
		case <-ctx.Done():
		}
	}()
	err = srv.Shutdown(ctx)
	<-served
	if err != nil {
		fmt.Fprintf(os.Stderr, "elis-sim serve: %v\n", err)
	}
	if out := c.String("out"); out != "" {
		mu.Lock()
		defer mu.Unlock()
		if werr := report.WriteRun(out, sv.RunOf(recs, &gaps)); werr != nil {
			return werr
		}
	}
	return err
}
