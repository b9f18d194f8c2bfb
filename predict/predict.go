// Package predict uses the output-length predictor network (an ELIS
// checkpoint: a BERT encoder, mean pooling and a Linear+ReLU head that
// estimates the remaining output tokens) as a tool. It evaluates it on
// rows of the ELIS trainer's data, as its users judge a checkpoint before
// scheduling with it (error and rank correlation overall and by tokens
// generated, beside a constant baseline, on a split made as the trainer
// makes it or by prompt), records its predictions into a trace so that
// the simulator schedules by the network's own errors, and fine-tunes the
// head on the user's rows by the trainer's recipe (the encoder frozen, its
// pooled vectors computed once), writing a checkpoint in the trainer's
// layout.
package predict

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/elis-sim/elis-sim/gpu"
	"github.com/elis-sim/elis-sim/policies"
	"github.com/elis-sim/elis-sim/report"
	"github.com/elis-sim/elis-sim/traces"
)

// Encoder turns text into the network's token ids, with [CLS] and [SEP]
// when special is set (traces.HFTokenizer is one).
type Encoder interface {
	Encode(text string, special bool) ([]int, error)
}

// Input is the network's input for a row: its prompt followed by the
// answer's text so far, encoded with the special tokens and cut to
// maxPositions keeping the final [SEP].
func Input(enc Encoder, r *traces.ELISRow, maxPositions int) ([]int32, error) {
	text := r.Prompt
	if r.Output != "" {
		text += " " + r.Output
	}
	ids, err := enc.Encode(text, true)
	if err != nil {
		return nil, fmt.Errorf("line %d: %w", r.Line, err)
	}
	if len(ids) > maxPositions {
		ids = append(ids[:maxPositions-1:maxPositions-1], ids[len(ids)-1])
	}
	out := make([]int32, len(ids))
	for i, v := range ids {
		out[i] = int32(v)
	}
	return out, nil
}

// Predict runs net over rows, batch rows a call, and returns each row's
// predicted remaining tokens. With a cache, rows whose input it holds are
// not run, and those run are added to it.
func Predict(net gpu.PredictorNet, enc Encoder, rows []traces.ELISRow, batch int, cache *Cache) ([]float64, error) {
	vs, err := cached(enc, rows, net.Config().MaxPositions, batch, cache, func(in [][]int32) ([][]float32, error) {
		p, err := net.Predict(in, nil)
		out := make([][]float32, len(p))
		for i, v := range p {
			out[i] = []float32{v}
		}
		return out, err
	})
	if err != nil {
		return nil, err
	}
	out := make([]float64, len(rows))
	for i, v := range vs {
		out[i] = float64(v[0])
	}
	return out, nil
}

// cached runs a network's call over the rows' inputs, batch rows a call,
// except on the inputs cache holds (nil: none), which it adds those run
// to.
func cached(enc Encoder, rows []traces.ELISRow, maxPositions, batch int, cache *Cache, call func([][]int32) ([][]float32, error)) ([][]float32, error) {
	batch = max(batch, 1)
	out := make([][]float32, len(rows))
	var todo []int
	var inputs [][]int32
	for i := range rows {
		in, err := Input(enc, &rows[i], maxPositions)
		if err != nil {
			return nil, err
		}
		if cache != nil {
			if v, ok := cache.get(in); ok {
				out[i] = v
				continue
			}
		}
		todo = append(todo, i)
		inputs = append(inputs, in)
	}
	for lo := 0; lo < len(todo); lo += batch {
		hi := min(lo+batch, len(todo))
		vs, err := call(inputs[lo:hi])
		if err != nil {
			return nil, err
		}
		for k, v := range vs {
			out[todo[lo+k]] = v
			if cache != nil {
				cache.put(inputs[lo+k], v)
			}
		}
	}
	return out, nil
}

// Split cuts rows 6:2:2 into train, validation and test: rows shuffled
// with seed (the trainer's way, which puts slices of one prompt's answer
// on both sides), or, byPrompt, whole prompts shuffled so that no prompt
// is on two sides.
func Split(rows []traces.ELISRow, byPrompt bool, seed uint64) (train, val, test []traces.ELISRow) {
	rng := rand.New(rand.NewPCG(seed, 0x73706c6974))
	if !byPrompt {
		perm := rng.Perm(len(rows))
		nTrain, nVal := len(rows)*6/10, len(rows)*2/10
		for k, i := range perm {
			switch {
			case k < nTrain:
				train = append(train, rows[i])
			case k < nTrain+nVal:
				val = append(val, rows[i])
			default:
				test = append(test, rows[i])
			}
		}
		return train, val, test
	}
	var prompts []string
	group := map[string][]traces.ELISRow{}
	for _, r := range rows {
		if _, ok := group[r.Prompt]; !ok {
			prompts = append(prompts, r.Prompt)
		}
		group[r.Prompt] = append(group[r.Prompt], r)
	}
	perm := rng.Perm(len(prompts))
	nTrain, nVal := len(prompts)*6/10, len(prompts)*2/10
	for k, i := range perm {
		g := group[prompts[i]]
		switch {
		case k < nTrain:
			train = append(train, g...)
		case k < nTrain+nVal:
			val = append(val, g...)
		default:
			test = append(test, g...)
		}
	}
	return train, val, test
}

// Report is an evaluation: the network's accuracy over the rows and by
// tokens generated, and a constant prediction's beside it.
type Report struct {
	Rows       int                 `json:"rows"`
	Network    report.AccuracyAt   `json:"network"`  // Generated: the fewest tokens generated
	Baseline   report.AccuracyAt   `json:"baseline"` // predicting BaselineValue every time
	Constant   float64             `json:"baseline_value"`
	ByProgress []report.AccuracyAt `json:"by_tokens_generated"`
}

// Evaluate scores preds (one a row) against the rows' remaining tokens,
// with the constant baseline beside them; by tokens generated in at most
// groups groups (the last holds the rest).
func Evaluate(rows []traces.ELISRow, preds []float64, constant float64, groups int) Report {
	rec := func(pred func(i int) float64) []policies.Record {
		out := make([]policies.Record, len(rows))
		for i := range rows {
			out[i].Predictions = []policies.Prediction{{Generated: rows[i].Generated(), Predicted: pred(i), Actual: rows[i].Remaining}}
		}
		return out
	}
	net := rec(func(i int) float64 { return preds[i] })
	base := rec(func(int) float64 { return constant })
	r := Report{Rows: len(rows), Constant: constant, ByProgress: report.AccuracyByProgress(net, groups)}
	if all := report.AccuracyByProgress(net, 1); len(all) == 1 {
		r.Network = all[0]
	}
	if all := report.AccuracyByProgress(base, 1); len(all) == 1 {
		r.Baseline = all[0]
	}
	return r
}

// MeanRemaining is the constant baseline: the mean remaining tokens of
// rows (those the network would be trained on).
func MeanRemaining(rows []traces.ELISRow) float64 {
	if len(rows) == 0 {
		return 0
	}
	s := 0.0
	for _, r := range rows {
		s += float64(r.Remaining)
	}
	return s / float64(len(rows))
}

// RecordTrace writes the network's predictions into tr, for the simulator
// to schedule by (run --predictor recorded): for every request, at 0, k,
// 2k, ... generated tokens, the remaining tokens the network predicts. A
// trace carries prompts but not answers, so the network reads the prompt
// alone, as replay's network predictor does: its output estimates the
// whole answer, and the remaining tokens at each point are that estimate
// less what was generated. Every request must carry its prompt text.
func RecordTrace(net gpu.PredictorNet, enc Encoder, tr *traces.Trace, k, batch int) error {
	if k < 1 {
		return fmt.Errorf("prediction interval %d: want >= 1", k)
	}
	// One row a prediction point: the prompt alone (whose estimate of the
	// whole answer, less what was generated, is the remaining tokens), or,
	// where the trace carries the answer's text, the prompt and the text
	// so far, which the network reads as the vLLM patch feeds it.
	var rows []traces.ELISRow
	type point struct{ req, gen int }
	var points []point
	for i, r := range tr.Requests {
		if r.Prompt == "" {
			return fmt.Errorf("request %s has no prompt text (import a trace that carries it, such as apex, sharegpt or elis-train)", r.ID)
		}
		if r.Output == "" {
			rows = append(rows, traces.ELISRow{Line: i + 1, Prompt: r.Prompt})
			points = append(points, point{i, -1})
			continue
		}
		words := strings.Fields(r.Output)
		for g := 0; g < r.OutputTokens; g += k {
			// The first g of its OutputTokens tokens, as that share of the
			// answer's words (the served model's tokens are not known).
			n := min(len(words), int(math.Round(float64(len(words))*float64(g)/float64(r.OutputTokens))))
			rows = append(rows, traces.ELISRow{Line: i + 1, Prompt: r.Prompt, Output: strings.Join(words[:n], " ")})
			points = append(points, point{i, g})
		}
	}
	preds, err := Predict(net, enc, rows, batch, nil)
	if err != nil {
		return err
	}
	for i := range tr.Requests {
		tr.Requests[i].Predictions = tr.Requests[i].Predictions[:0]
	}
	for j, pt := range points {
		r := &tr.Requests[pt.req]
		if pt.gen >= 0 {
			r.Predictions = append(r.Predictions, traces.Prediction{Generated: pt.gen, Remaining: max(preds[j], 0)})
			continue
		}
		for g := 0; g < r.OutputTokens; g += k {
			r.Predictions = append(r.Predictions, traces.Prediction{Generated: g, Remaining: max(preds[j]-float64(g), 0)})
		}
	}
	return nil
}

// ScatterGroups are the rows' (actual, predicted) remaining tokens for a
// scatter plot, one group a tokens-generated value as Evaluate groups
// them (the last group holds the rest).
func ScatterGroups(rows []traces.ELISRow, preds []float64, groups int) []report.ScatterGroup {
	var gens []int
	seen := map[int]bool{}
	for _, r := range rows {
		if g := r.Generated(); !seen[g] {
			seen[g] = true
			gens = append(gens, g)
		}
	}
	slices.Sort(gens)
	index := map[int]int{}
	for i, g := range gens {
		index[g] = min(i, max(groups, 1)-1)
	}
	out := make([]report.ScatterGroup, min(len(gens), max(groups, 1)))
	for i := range out {
		out[i].Label = fmt.Sprintf("%d generated", gens[i])
	}
	if len(gens) > len(out) {
		out[len(out)-1].Label += "+"
	}
	for i, r := range rows {
		g := &out[index[r.Generated()]]
		g.X = append(g.X, float64(r.Remaining))
		g.Y = append(g.Y, preds[i])
	}
	return out
}

// TooLong lists the rows whose text (prompt and answer so far, with
// [CLS] and [SEP]) is over maxPositions tokens: the encoder cannot read
// them whole. Each comes with an error naming its line.
func TooLong(enc Encoder, rows []traces.ELISRow, maxPositions int, file string) (idx []int, errs []error, err error) {
	for i := range rows {
		text := rows[i].Prompt
		if rows[i].Output != "" {
			text += " " + rows[i].Output
		}
		ids, err := enc.Encode(text, true)
		if err != nil {
			return nil, nil, fmt.Errorf("%s line %d: %w", file, rows[i].Line, err)
		}
		if len(ids) > maxPositions {
			idx = append(idx, i)
			errs = append(errs, fmt.Errorf("%s line %d: text of %d tokens, over the encoder's %d", file, rows[i].Line, len(ids), maxPositions))
		}
	}
	return idx, errs, nil
}
