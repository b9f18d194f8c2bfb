package setup

import (
	"cmp"
	"fmt"
	"io"
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
