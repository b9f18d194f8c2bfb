package main

import (
	"fmt"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/elis-sim/elis-sim/bench"
	"github.com/elis-sim/elis-sim/report"
	"github.com/elis-sim/elis-sim/setup"
	"github.com/elis-sim/elis-sim/traces"
)

func benchCommand() *cli.Command {
	return usageErrors(&cli.Command{
		Name:      "bench",
		Usage:     "send a trace to OpenAI-compatible servers (vLLM, elis-sim serve) and record what each request experienced",
		ArgsUsage: "TRACE",
		Description: "Open loop: every request is sent at its arrival time (times --time-scale), streamed, and timed\n" +
			"chunk by chunk; output lengths are forced to the trace's (max_tokens = min_tokens, ignore_eos) unless\n" +
			"--free-lengths. Prompts are the trace's text, or exactly prompt_tokens token ids (equal hash ids or\n" +
			"sessions give equal tokens, so the server's prefix cache sees the trace's sharing). Records have\n" +
			"run's format, for compare and plot; failed requests are recorded with their error, never retried.\n" +
			"/metrics is scraped beside the sender at the start, the end and every --metrics-interval; what a server\n" +
			"does not export is \"not measured\" (-), never 0. --server-log reads the ISRTF fork's [ELIS]\n" +
			"prediction lines (a file, or - for stdin) for the predictor's accuracy.\n" +
			"Ctrl-C stops sending and waits for requests in flight; a second Ctrl-C abandons them.\n" +
			"Exit status: 0 when every request succeeded (or the failures are within --max-failure-rate); 1 when\n" +
			"more failed (the first error of each kind is printed); 2 for bad input; 130 when interrupted (requests\n" +
			"never sent are counted as \"not sent\" and the run file is marked). The run file is written in every case.",
		UsageText: "elis-sim bench trace.json --url http://localhost:8000 --model meta-llama/Llama-3.1-8B-Instruct --label isrtf -o bench/isrtf.json",
		Flags:     cliFlags(setup.BenchFlags()),
		Action:    benchAction,
	})
}

func benchAction(c *cli.Context) error {
	if c.NArg() != 1 {
		return badf("bench wants one TRACE, got %d arguments", c.NArg())
	}
	if err := setup.CheckOut(c, "out"); err != nil {
		return err
	}
	cfg, err := setup.ParseBench(c)
	if err != nil {
		return err
	}
	tr, err := traces.ReadFile(c.Args().First())
	if err != nil {
		return bad(err)
	}
	var slog bench.ServerLog

	stop, abandon, done := interrupts("elis-sim bench: stopped sending; Ctrl-C again to abandon requests in flight")
	defer done()
	// The server log on stdin is read while the run goes (docker logs -f
	// ... | elis-sim bench ... --server-log -).
	logDone := make(chan error, 1)
	if c.String("server-log") == "-" {
		go func() {
			var err error
			slog, err = bench.ReadServerLog(os.Stdin, "stdin")
			logDone <- err
		}()
	}
	cfg.Warn = os.Stderr
	if term.IsTerminal(int(os.Stderr.Fd())) {
		bar := progressbar.NewOptions(len(tr.Requests), progressbar.OptionSetWriter(os.Stderr),
			progressbar.OptionSetDescription("bench "+c.String("label")), progressbar.OptionShowCount(), progressbar.OptionClearOnFinish())
		cfg.Progress = func(done, _ int) { bar.Set(done) }
	}
	res, err := bench.Run(stop, abandon, tr, cfg)
	if err != nil {
		return err
	}
	switch p := c.String("server-log"); {
	case p == "-":
		// stdin ends when the piped log does; a run that ended first does
		// not wait for it longer than a moment.
		select {
		case err := <-logDone:
			if err != nil {
				return bad(fmt.Errorf("--server-log: %w", err))
			}
		case <-time.After(2 * time.Second):
			fmt.Fprintln(os.Stderr, "elis-sim bench: the server log on stdin is still open; its lines so far are used")
		}
	case p != "":
		f, err := os.Open(p)
		if err != nil {
			return badf("--server-log: %v", err)
		}
		slog, err = bench.ReadServerLog(f, p)
		f.Close()
		if err != nil {
			return bad(fmt.Errorf("--server-log: %w", err))
		}
	}
	if n := slog.Attach(res); c.String("server-log") != "" {
		fmt.Fprintf(os.Stderr, "elis-sim bench: predictions from the server log for %d of %d requests\n", n, len(res.Records))
	}
	run := res.Run(c.String("label"), fmt.Sprintf("%s: %d requests", c.Args().First(), len(tr.Requests)), cfg)
	if out := c.String("out"); out != "" {
		if err := report.WriteRun(out, run); err != nil {
			return err
		}
	}
	if c.Bool("json") {
		if err := report.WriteBriefs(os.Stdout, []*report.Run{run}); err != nil {
			return err
		}
	} else if err := res.WriteSummary(os.Stdout, run); err != nil {
		return err
	}
	for _, w := range res.Warnings(run) {
		fmt.Fprintf(os.Stderr, "elis-sim bench: %s\n", w)
	}
	return benchStatus(c, res)
}

// benchStatus is bench's exit: what failed, by kind, on the terminal, and
// a status that says whether the run is a result (see the command's
// description).
func benchStatus(c *cli.Context, res *bench.Result) error {
	for _, f := range res.Failures() {
		fmt.Fprintf(os.Stderr, "elis-sim bench: %d request(s) failed with %s; the first, %s: %s\n", f.Count, f.Kind, f.First.ID, f.First.Rejected)
	}
	allowed := c.Float64("max-failure-rate")
	if c.Bool("allow-failures") {
		allowed = 1
	}
	switch err := res.Verdict(allowed); {
	case err == nil:
		return nil
	case res.Interrupted:
		return &exitStatus{exitInterrupted, err}
	default:
		return &exitStatus{exitFailed, err}
	}
}
