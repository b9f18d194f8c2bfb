package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/elis-sim/elis-sim/gpu"
	"github.com/elis-sim/elis-sim/predict"
	"github.com/elis-sim/elis-sim/report"
	"github.com/elis-sim/elis-sim/traces"
)

func predictCommand() *cli.Command {
	return usageErrors(&cli.Command{
		Name:  "predict",
		Usage: "the output-length predictor network as a tool",
		Subcommands: []*cli.Command{{
			Name:      "eval",
			Usage:     "score a predictor checkpoint on ELIS training rows",
			ArgsUsage: "DATA.jsonl",
			UsageText: "elis-sim predict eval rows.jsonl --checkpoint latest_model.pt --tokenizer bge-tokenizer.json --split test --split-by prompt",
			Description: "Runs the network over rows {input_prompt, output_prompt, number_of_output_tokens,\n" +
				"remaining_tokens} (its input: the prompt, then the answer's text so far) and reports MAE,\n" +
				"RMSE, R^2 and Kendall's tau of the predicted remaining tokens, overall and by tokens\n" +
				"generated, beside a constant baseline (the mean remaining tokens of the training split).\n" +
				"--split test scores the test part of a 6:2:2 split: by row, as the ELIS trainer splits\n" +
				"(slices of one answer land on both sides), or --split-by prompt. For scale, the ELIS paper\n" +
				"reports MAE 19.9 tokens, RMSE 34.3, R^2 0.852.",
			Flags: append(networkFlags(),
				&cli.StringFlag{Name: "split", Value: "all", Usage: "rows scored: all, or test (of a 6:2:2 split)"},
				&cli.StringFlag{Name: "split-by", Value: "row", Usage: "row (the trainer's) or prompt (no prompt on two sides)"},
				&cli.Uint64Flag{Name: "seed", Value: 42, Usage: "seed of the split"},
				&cli.IntFlag{Name: "batch", Value: 32, Usage: "rows a network call"},
				&cli.IntFlag{Name: "groups", Value: 8, Usage: "groups by tokens generated (the last holds the rest)"},
				&cli.StringFlag{Name: "cache", Value: defaultPredictionCache(), Usage: "folder keeping the network's outputs by input content, per checkpoint and device, so a second run is instant (\"\": none)"},
				&cli.BoolFlag{Name: "json", Usage: "print JSON"},
				&cli.StringFlag{Name: "plot", Usage: "draw predicted against actual remaining tokens to this .png, .svg or .pdf file"},
			),
			Action: predictEval,
		}, {
			Name:      "trace",
			Usage:     "record a predictor network's predictions into a trace, for run --predictor recorded",
			ArgsUsage: "TRACE",
			UsageText: "elis-sim predict trace lmsys.json --checkpoint latest_model.pt --tokenizer bge-tokenizer.json -o lmsys-pred.json",
			Description: "Writes, for every request, the network's predicted remaining tokens at 0, K, 2K, ...\n" +
				"generated tokens into the trace's predictions. A trace carries prompts, not answers, so the\n" +
				"network reads the prompt alone (as replay's network predictor does): its estimate of the whole\n" +
				"answer, less what was generated, is the remaining tokens at each point. Every request needs its\n" +
				"prompt text (apex, sharegpt and elis-train imports keep it).",
			Flags: append(networkFlags(),
				&cli.IntFlag{Name: "prediction-interval", Value: 50, Usage: "K: a prediction every K generated tokens", EnvVars: []string{"VLLM_ELIS_PREDICTION_INTERVAL"}},
				&cli.IntFlag{Name: "batch", Value: 32, Usage: "prompts a network call"},
				&cli.Uint64Flag{Name: "seed", Value: 42, Usage: "seed of random weights (bge-base / tiny)"},
				&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Value: "-", Usage: "output trace (.json or .jsonl); - for stdout"},
			),
			Action: predictTrace,
		}},
	})
}

// networkFlags name the predictor network of a predict command.
func networkFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "checkpoint", Required: true, Usage: "ELIS checkpoint .pt (config.json beside it), or bge-base / tiny (random weights)"},
		&cli.StringFlag{Name: "tokenizer", Required: true, Usage: "the network's tokenizer.json (bge's)", EnvVars: []string{"ELIS_SIM_TOKENIZER"}},
		&cli.StringFlag{Name: "device", Value: "cpu", Usage: "where the network runs: " + strings.Join(gpu.Devices(), ", ")},
	}
}

// predictorNet loads --checkpoint with --tokenizer onto --device.
func predictorNet(c *cli.Context) (gpu.PredictorNet, traces.HFTokenizer, error) {
	tc, err := traces.LoadTokenCounter(c.String("tokenizer"))
	if err != nil {
		return nil, traces.HFTokenizer{}, badf("--tokenizer: %w", err)
	}
	enc, ok := tc.(traces.HFTokenizer)
	if !ok {
		return nil, traces.HFTokenizer{}, badf("--tokenizer: want a tokenizer.json, not %q", c.String("tokenizer"))
	}
	host, err := gpu.LoadPredictorNet(c.String("checkpoint"), c.Uint64("seed"))
	if err != nil {
		return nil, traces.HFTokenizer{}, badf("--checkpoint: %w", err)
	}
	net, err := gpu.OnDevice(c.String("device"), 0, host)
	if err != nil {
		return nil, traces.HFTokenizer{}, bad(err)
	}
	return net, enc, nil
}

func predictTrace(c *cli.Context) error {
	if c.NArg() != 1 {
		return badf("predict trace wants one TRACE, got %d arguments", c.NArg())
	}
	if err := checkOut(c, "out"); err != nil {
		return err
	}
	if c.Int("prediction-interval") < 1 || c.Int("batch") < 1 {
		return badf("--prediction-interval and --batch: want >= 1")
	}
	tr, err := traces.ReadFile(c.Args().First())
	if err != nil {
		return bad(err)
	}
	net, enc, err := predictorNet(c)
	if err != nil {
		return err
	}
	defer net.Close()
	if err := predict.RecordTrace(net, enc, tr, c.Int("prediction-interval"), c.Int("batch")); err != nil {
		return bad(fmt.Errorf("%s: %w", c.Args().First(), err))
	}
	return traces.WriteFile(c.String("out"), tr)
}

func predictEval(c *cli.Context) error {
	if c.NArg() != 1 {
		return badf("predict eval wants one DATA.jsonl, got %d arguments", c.NArg())
	}
	split, by := c.String("split"), c.String("split-by")
	if split != "all" && split != "test" {
		return badf("--split %q: valid are all, test", split)
	}
	if by != "row" && by != "prompt" {
		return badf("--split-by %q: valid are row, prompt", by)
	}
	if c.Int("batch") < 1 || c.Int("groups") < 1 {
		return badf("--batch and --groups: want >= 1")
	}
	if err := checkPlot(c.String("plot")); err != nil {
		return err
	}
	rows, err := traces.ReadELISRows(c.Args().First())
	if err != nil {
		return bad(err)
	}
	net, enc, err := predictorNet(c)
	if err != nil {
		return err
	}
	defer net.Close()

	scored, train := rows, rows
	what := fmt.Sprintf("all %d rows", len(rows))
	if split == "test" {
		var test []traces.ELISRow
		train, _, test = predict.Split(rows, by == "prompt", c.Uint64("seed"))
		if len(test) == 0 {
			return badf("%s: %d rows leave no test split", c.Args().First(), len(rows))
		}
		scored = test
		what = fmt.Sprintf("the test split (%d of %d rows; 6:2:2 by %s, seed %d)", len(test), len(rows), by, c.Uint64("seed"))
		if by == "row" {
			fmt.Fprintln(os.Stderr, "elis-sim: a split by row puts slices of one prompt's answer on both sides; --split-by prompt keeps prompts apart")
		}
	}
	var cache *predict.Cache
	if dir := c.String("cache"); dir != "" {
		id, err := predict.FileID(c.String("checkpoint"))
		if err != nil {
			return badf("--checkpoint: %v", err)
		}
		if cache, err = predict.OpenCache(dir, append(id, []byte("|"+c.String("device"))...)); err != nil {
			return fmt.Errorf("--cache: %w", err)
		}
	}
	preds, err := predict.Predict(net, enc, scored, c.Int("batch"), cache)
	if err != nil {
		return err
	}
	if cache != nil {
		if err := cache.Save(); err != nil {
			return fmt.Errorf("--cache: %w", err)
		}
		fmt.Fprintf(os.Stderr, "elis-sim: the network ran on %d of %d rows; the cache in %s held the rest\n", cache.Added(), len(scored), c.String("cache"))
	}
	rep := predict.Evaluate(scored, preds, predict.MeanRemaining(train), c.Int("groups"))
	if path := c.String("plot"); path != "" {
		p, err := report.Scatter(fmt.Sprintf("predicted against actual remaining tokens, %d rows", len(scored)),
			"actual remaining tokens", "predicted remaining tokens (below 1 drawn at 1)", 1, predict.ScatterGroups(scored, preds, c.Int("groups")))
		if err != nil {
			return err
		}
		if err := report.Save(p, path); err != nil {
			return err
		}
	}
	if c.Bool("json") {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	fmt.Printf("%s on %s, network on %s\n", c.String("checkpoint"), what, c.String("device"))
	fmt.Printf("%-24s %7s %9s %9s %7s %8s\n", "predictor", "n", "MAE", "RMSE", "R^2", "tau")
	for _, r := range []struct {
		name string
		a    report.AccuracyAt
	}{{"network", rep.Network}, {fmt.Sprintf("constant %.1f", rep.Constant), rep.Baseline}} {
		fmt.Printf("%-24s %7d %9.1f %9.1f %7.3f %8s\n", r.name, r.a.N, r.a.MAE, r.a.RMSE, r.a.R2, r.a.Tau.Format(3))
	}
	fmt.Println("\nthe network by tokens generated:")
	return report.WriteAccuracy(os.Stdout, rep.ByProgress)
}

// defaultPredictionCache is where predict eval keeps outputs: the user's
// cache folder ("" when the system names none).
func defaultPredictionCache() string {
	dir, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "elis-sim", "predictions")
}
