package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/schollz/progressbar/v3"
	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/elis-sim/elis-sim/gpu"
	"github.com/elis-sim/elis-sim/internal/atomicfile"
	"github.com/elis-sim/elis-sim/predict"
	"github.com/elis-sim/elis-sim/report"
	"github.com/elis-sim/elis-sim/setup"
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
			Flags:  cliFlags(setup.EvalFlags()),
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
			Flags:  cliFlags(setup.PredictTraceFlags()),
			Action: predictTrace,
		}, {
			Name:      "train",
			Usage:     "fine-tune a predictor checkpoint's head on your rows, as the ELIS trainer trains it",
			ArgsUsage: "DATA.jsonl",
			UsageText: "elis-sim predict train rows.jsonl --init latest_model.pt --tokenizer bge-tokenizer.json -o tuned.pt",
			Description: "Trains the head (the Linear+ReLU layers after the frozen encoder) on the training part of a\n" +
				"6:2:2 split of the rows with the ELIS trainer's recipe: MSE on the remaining tokens, Adam at\n" +
				"1e-4, batches of 16; after each epoch the validation MAE, and training stops when it has not\n" +
				"improved for --patience epochs, keeping the best epoch's head. The encoder is frozen, so each\n" +
				"row is encoded once (and cached: --cache). The output is a PyTorch checkpoint in the trainer's\n" +
				"layout (model_state_dict with the same keys, dtypes and shapes, epoch, metrics, history), so\n" +
				"the vLLM patch loads it (VLLM_ELIS_CHECKPOINT) and elis-sim too; its config.json is copied\n" +
				"beside it.",
			Flags:  cliFlags(setup.TrainFlags()),
			Action: predictTrain,
		}},
	})
}

func predictTrain(c *cli.Context) error {
	if c.NArg() != 1 {
		return badf("predict train wants one DATA.jsonl, got %d arguments", c.NArg())
	}
	out := c.String("out")
	if err := atomicfile.Check(out); err != nil {
		return badf("--out: %w", err)
	}
	if by := c.String("split-by"); by != "row" && by != "prompt" {
		return badf("--split-by %q: valid are row, prompt", by)
	}
	if c.String("device") != "cpu" {
		return badf("--device %q: the encoder's pooled output for training is computed on the cpu only, so far", c.String("device"))
	}
	cfg := predict.TrainConfig{Epochs: c.Int("epochs"), Patience: c.Int("patience"), Batch: c.Int("batch"), LR: c.Float64("lr"), Seed: c.Uint64("seed")}
	if cfg.Epochs < 1 || cfg.Patience < 1 || cfg.Batch < 1 || !(cfg.LR > 0) || c.Int("embed-batch") < 1 {
		return badf("--epochs, --patience, --batch and --embed-batch: want >= 1; --lr: want > 0")
	}
	init := c.String("init")
	enc, err := setup.HFTokenizer(c.String("tokenizer"), "--tokenizer: name the network's tokenizer.json")
	if err != nil {
		return err
	}
	net, err := gpu.LoadELISCheckpoint(init, "")
	if err != nil {
		return badf("--init: %w", err)
	}
	rows, err := setup.TrainingRows(c, c.Args().First(), enc, net.Cfg.MaxPositions, os.Stderr)
	if err != nil {
		return err
	}
	var cache *predict.Cache
	if dir := c.String("cache"); dir != "" {
		if cache, err = predict.OpenCache(filepath.Join(dir, "embeddings"), net.EncoderID(), net.Cfg.Hidden); err != nil {
			return fmt.Errorf("--cache: %w", err)
		}
	}
	var bar *progressbar.ProgressBar
	progress := func(p predict.Progress) {
		if bar == nil && term.IsTerminal(int(os.Stderr.Fd())) {
			bar = progressbar.NewOptions(p.Steps, progressbar.OptionSetWriter(os.Stderr), progressbar.OptionSetDescription("training"),
				progressbar.OptionShowCount(), progressbar.OptionClearOnFinish())
		}
		switch {
		case bar != nil && p.Epoch != nil:
			bar.Describe(fmt.Sprintf("epoch %d, validation MAE %.1f", p.Epoch.N, p.Epoch.ValMAE))
		case bar != nil:
			bar.Set(p.Step)
		case p.Epoch != nil:
			fmt.Fprintf(os.Stderr, "epoch %d: training loss %.1f, validation MAE %.1f\n", p.Epoch.N, p.Epoch.TrainLoss, p.Epoch.ValMAE)
		}
	}
	ft, err := predict.FineTune(net, enc, rows, c.String("split-by") == "prompt", c.Int("embed-batch"), cache, cfg, progress)
	if bar != nil {
		bar.Finish()
	}
	if errors.Is(err, predict.ErrTooFewRows) {
		return badf("%s: %w", c.Args().First(), err)
	}
	if err != nil {
		return err
	}
	if cache != nil {
		fmt.Fprintf(os.Stderr, "elis-sim: encoded %d of %d rows; the cache in %s held the rest\n", cache.Added(), len(rows), c.String("cache"))
	}
	if err := predict.WriteCheckpoint(out, init, ft.Head, ft.Checkpoint()); err != nil {
		return err
	}
	if err := predict.CopyConfigBeside(init, out); err != nil {
		return err
	}
	rep := &ft.Report
	fmt.Printf("%s: %d rows (%d train, %d validation, %d test; split by %s, seed %d)\n", c.Args().First(), len(rows), len(ft.Train), len(ft.Val), len(ft.Test), c.String("split-by"), c.Uint64("seed"))
	fmt.Printf("validation MAE: %.1f tokens before, %.1f after (best epoch %d of %d run)\n", ft.ValBefore, ft.ValAfter, ft.Epoch, len(ft.History))
	fmt.Printf("on the %s split: MAE %.1f, RMSE %.1f, R^2 %.3f (constant %.1f: MAE %.1f)\n", ft.On, rep.Network.MAE, rep.Network.RMSE, rep.Network.R2, rep.Constant, rep.Baseline.MAE)
	fmt.Printf("wrote %s\n", out)
	return nil
}

func predictTrace(c *cli.Context) error {
	if c.NArg() != 1 {
		return badf("predict trace wants one TRACE, got %d arguments", c.NArg())
	}
	if err := setup.CheckOut(c, "out"); err != nil {
		return err
	}
	if c.Int("prediction-interval") < 1 || c.Int("batch") < 1 {
		return badf("--prediction-interval and --batch: want >= 1")
	}
	tr, err := traces.ReadFile(c.Args().First())
	if err != nil {
		return bad(err)
	}
	net, enc, err := setup.PredictorNet(c)
	if err != nil {
		return err
	}
	defer net.Close()
	if err := predict.RecordTrace(net, enc, tr, c.Int("prediction-interval"), c.Int("batch")); err != nil {
		return bad(fmt.Errorf("%s: %w", c.Args().First(), err))
	}
	if err := traces.WriteFile(c.String("out"), tr); err != nil {
		return err
	}
	n := 0
	for _, r := range tr.Requests {
		n += len(r.Predictions)
	}
	fmt.Printf("wrote %s: %d requests, %d recorded predictions (every %d tokens); simulate with --predictor recorded\n", c.String("out"), len(tr.Requests), n, c.Int("prediction-interval"))
	return nil
}

func predictEval(c *cli.Context) error {
	if c.NArg() != 1 {
		return badf("predict eval wants one DATA.jsonl, got %d arguments", c.NArg())
	}
	if err := setup.CheckSplit(c); err != nil {
		return err
	}
	if c.Int("batch") < 1 || c.Int("groups") < 1 {
		return badf("--batch and --groups: want >= 1")
	}
	if err := setup.CheckPlot(c.String("plot")); err != nil {
		return err
	}
	net, enc, err := setup.PredictorNet(c)
	if err != nil {
		return err
	}
	defer net.Close()
	rows, err := setup.TrainingRows(c, c.Args().First(), enc, net.Config().MaxPositions, os.Stderr)
	if err != nil {
		return err
	}

	scored, train, what, err := setup.EvalRows(c, c.Args().First(), rows, os.Stderr)
	if err != nil {
		return err
	}
	preds, cache, err := predict.Score(net, enc, scored, c.Int("batch"), c.String("cache"), c.String("checkpoint"), c.String("device"))
	if err != nil {
		return err
	}
	if cache != nil {
		fmt.Fprintf(os.Stderr, "elis-sim: the network ran on %d of %d rows; the cache in %s held the rest\n", cache.Added(), len(scored), c.String("cache"))
	}
	rep := predict.Evaluate(scored, preds, predict.MeanRemaining(train), c.Int("groups"))
	if path := c.String("plot"); path != "" {
		p, err := report.Scatter(fmt.Sprintf("predicted against actual remaining tokens, %d rows", len(scored)),
			"actual remaining tokens", "predicted remaining tokens\n(below 1 drawn at 1)", 1, predict.ScatterGroups(scored, preds, c.Int("groups")))
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
