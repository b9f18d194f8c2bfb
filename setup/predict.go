package setup

import (
	"cmp"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/elis-sim/elis-sim/gpu"
	"github.com/elis-sim/elis-sim/predict"
	"github.com/elis-sim/elis-sim/traces"
)

// TrainingRows reads the ELIS rows of path for the predictor network
// (maxPositions of it), refusing or skipping the bad ones as the bad-rows
// option says, each named by its line; truncate cuts text over the
// encoder's limit instead of counting it bad. Skipped rows are said on
// notes.
func TrainingRows(o Options, path string, enc predict.Encoder, maxPositions int, notes io.Writer) ([]traces.ELISRow, error) {
	mode := o.String("bad-rows")
	if mode != "refuse" && mode != "skip" {
		return nil, Errorf("--bad-rows %q: valid are refuse, skip", mode)
	}
	rows, badRows, err := traces.ReadELISRowsSkipping(path)
	if err != nil {
		return nil, Bad(err)
	}
	if !o.Bool("truncate") {
		idx, errs, err := predict.TooLong(enc, rows, maxPositions, path)
		if err != nil {
			return nil, Bad(err)
		}
		badRows = append(badRows, errs...)
		for k := len(idx) - 1; k >= 0; k-- {
			rows = slices.Delete(rows, idx[k], idx[k]+1)
		}
	}
	if len(badRows) == 0 {
		return rows, nil
	}
	slices.SortStableFunc(badRows, func(a, b error) int { return cmp.Compare(lineOf(a), lineOf(b)) })
	var sb strings.Builder
	for i, e := range badRows {
		if i == 10 {
			fmt.Fprintf(&sb, "\n  ... and %d more", len(badRows)-10)
			break
		}
		fmt.Fprintf(&sb, "\n  %v", e)
	}
	if mode == "refuse" {
		return nil, Errorf("%s: %d bad rows (--bad-rows skip leaves them out; --truncate cuts long text):%s", path, len(badRows), sb.String())
	}
	fmt.Fprintf(notes, "elis-sim: %s: skipped %d bad rows of %d:%s\n", path, len(badRows), len(rows)+len(badRows), sb.String())
	if len(rows) == 0 {
		return nil, Errorf("%s: no good rows", path)
	}
	return rows, nil
}

// lineOf is the line an error of a rows file names ("FILE line N: ...").
func lineOf(err error) int {
	_, rest, _ := strings.Cut(err.Error(), " line ")
	n, _ := strconv.Atoi(strings.SplitN(rest, ":", 2)[0])
	return n
}

// PredictorNet loads the checkpoint option's predictor network onto the
// device option's executor, with its tokenizer (the tokenizer option).
func PredictorNet(o Options) (gpu.PredictorNet, traces.HFTokenizer, error) {
	enc, err := HFTokenizer(o.String("tokenizer"), "--tokenizer: name the network's tokenizer.json")
	if err != nil {
		return nil, enc, err
	}
	host, err := gpu.LoadPredictorNet(o.String("checkpoint"), o.Uint64("seed"))
	if err != nil {
		return nil, traces.HFTokenizer{}, Errorf("--checkpoint: %w", err)
	}
	net, err := gpu.OnDevice(o.String("device"), 0, host)
	if err != nil {
		return nil, traces.HFTokenizer{}, Bad(err)
	}
	return net, enc, nil
}

// networkFlags name the predictor network of a predict command.
func networkFlags() []Flag {
	return []Flag{
		{Name: "checkpoint", Default: "", Usage: "ELIS checkpoint .pt (config.json beside it), or bge-base / tiny (random weights)", Required: true},
		{Name: "tokenizer", Default: "", Usage: "the network's tokenizer.json (bge's)", Env: []string{"ELIS_SIM_TOKENIZER"}, Required: true},
		{Name: "device", Default: "cpu", Usage: "where the network runs: " + strings.Join(gpu.Devices(), ", ")},
	}
}

// rowsFlags say what becomes of bad training rows.
func rowsFlags() []Flag {
	return []Flag{
		{Name: "bad-rows", Default: "refuse", Usage: "rows with a missing field, a negative count or text over the encoder's 512 tokens: refuse (list them, exit 2) or skip (leave them out, saying how many)"},
		{Name: "truncate", Default: false, Usage: "cut text over the encoder's limit to it (keeping [SEP], as the trainer's tokenizer does) instead of counting it a bad row"},
	}
}

// EvalFlags are the options of "elis-sim predict eval".
func EvalFlags() []Flag {
	return append(append(networkFlags(),
		Flag{Name: "split", Default: "all", Usage: "rows scored: all, or test (of a 6:2:2 split)"},
		Flag{Name: "split-by", Default: "row", Usage: "row (the trainer's) or prompt (no prompt on two sides)"},
		Flag{Name: "seed", Default: uint64(42), Usage: "seed of the split"},
		Flag{Name: "batch", Default: 32, Usage: "rows a network call"},
		Flag{Name: "groups", Default: 8, Usage: "groups by tokens generated (the last holds the rest)"},
		Flag{Name: "cache", Default: DefaultCache(), Usage: "folder keeping, by input content, the encoder's pooled outputs (cpu: per encoder, so any head on it, a fine-tune's too, is scored at once) or the network's outputs (cuda: per checkpoint and device), so a second run is instant (\"\": none)"},
		Flag{Name: "json", Default: false, Usage: "print JSON"},
		Flag{Name: "plot", Default: "", Usage: "draw predicted against actual remaining tokens to this .png, .svg or .pdf file"},
	), rowsFlags()...)
}

// PredictTraceFlags are the options of "elis-sim predict trace".
func PredictTraceFlags() []Flag {
	return append(networkFlags(),
		Flag{Name: "prediction-interval", Default: 50, Usage: "K: a prediction every K generated tokens", Env: []string{"VLLM_ELIS_PREDICTION_INTERVAL"}},
		Flag{Name: "batch", Default: 32, Usage: "prompts a network call"},
		Flag{Name: "seed", Default: uint64(42), Usage: "seed of random weights (bge-base / tiny)"},
		Flag{Name: "out", Default: "-", Usage: "output trace (.json or .jsonl); - for stdout", Aliases: []string{"o"}},
	)
}

// TrainFlags are the options of "elis-sim predict train".
func TrainFlags() []Flag {
	return append([]Flag{
		{Name: "init", Default: "", Usage: "the ELIS checkpoint to start from (config.json beside it)", Required: true},
		{Name: "tokenizer", Default: "", Usage: "the network's tokenizer.json (bge's)", Env: []string{"ELIS_SIM_TOKENIZER"}, Required: true},
		{Name: "device", Default: "cpu", Usage: "where the encoder runs: cpu (the head trains on the CPU)"},
		{Name: "out", Default: "", Usage: "the tuned checkpoint (.pt)", Aliases: []string{"o"}, Required: true},
		{Name: "epochs", Default: predict.DefaultTrain.Epochs, Usage: "at most this many epochs"},
		{Name: "patience", Default: predict.DefaultTrain.Patience, Usage: "stop after this many epochs without a better validation MAE"},
		{Name: "batch", Default: predict.DefaultTrain.Batch, Usage: "rows a training step"},
		{Name: "lr", Default: float64(predict.DefaultTrain.LR), Usage: "Adam's step size"},
		{Name: "split-by", Default: "row", Usage: "row (the trainer's 6:2:2 split) or prompt (no prompt on two sides)"},
		{Name: "seed", Default: uint64(42), Usage: "seed of the split and of the order rows are visited in"},
		{Name: "embed-batch", Default: 32, Usage: "rows an encoder call"},
		{Name: "cache", Default: DefaultCache(), Usage: "folder keeping pooled encodings by input content, per encoder, so rows are encoded once across fine-tunes and evaluations (\"\": none)"},
	}, rowsFlags()...)
}

// DefaultCache is where predict keeps pooled encodings (embeddings/) and
// outputs (predictions/): the user's cache folder ("" when the system
// names none).
func DefaultCache() string {
	dir, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "elis-sim")
}

// CheckSplit checks the split options of predict eval.
func CheckSplit(o Options) error {
	if split := o.String("split"); split != "all" && split != "test" {
		return Errorf("--split %q: valid are all, test", split)
	}
	if by := o.String("split-by"); by != "row" && by != "prompt" {
		return Errorf("--split-by %q: valid are row, prompt", by)
	}
	return nil
}

// EvalRows are the rows predict eval scores and those its constant
// baseline learns from, as the split options say: all of path's rows, or
// the test part of a 6:2:2 split (by row, as the ELIS trainer splits, or
// by prompt); what describes them. A split by row is noted on notes.
func EvalRows(o Options, path string, rows []traces.ELISRow, notes io.Writer) (scored, train []traces.ELISRow, what string, err error) {
	if o.String("split") != "test" {
		return rows, rows, fmt.Sprintf("all %d rows", len(rows)), nil
	}
	by, seed := o.String("split-by"), o.Uint64("seed")
	train, _, test := predict.Split(rows, by == "prompt", seed)
	if len(test) == 0 {
		return nil, nil, "", Errorf("%s: %d rows leave no test split", path, len(rows))
	}
	if by == "row" {
		fmt.Fprintln(notes, "elis-sim: a split by row puts slices of one prompt's answer on both sides; --split-by prompt keeps prompts apart")
	}
	return test, train, fmt.Sprintf("the test split (%d of %d rows; 6:2:2 by %s, seed %d)", len(test), len(rows), by, seed), nil
}
