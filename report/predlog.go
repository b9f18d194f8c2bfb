package report

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"sort"

	"gonum.org/v1/gonum/stat"

	"github.com/elis-sim/elis-sim/policies"
)

// WritePredictionLog writes one line per prediction event, in time order,
// in the style of the patched vLLM's log:
//
//	t=12.345s request r7 initial prediction: 150.3 tokens (actual 141)
//	t=14.002s request r7 prediction updated: 150.3 -> 98.5 (at 50 tokens, actual 91)
func WritePredictionLog(w io.Writer, recs []policies.Record) error {
	type event struct {
		id   string
		prev float64
		p    policies.Prediction
	}
	var evs []event
	for _, r := range recs {
		prev := math.NaN()
		for _, p := range r.Predictions {
			evs = append(evs, event{r.ID, prev, p})
			prev = p.Predicted
		}
	}
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].p.At < evs[j].p.At })
	bw := bufio.NewWriter(w)
	for _, e := range evs {
		if math.IsNaN(e.prev) {
			fmt.Fprintf(bw, "t=%.3fs request %s initial prediction: %.1f tokens (actual %d)\n", e.p.At, e.id, e.p.Predicted, e.p.Actual)
		} else {
			fmt.Fprintf(bw, "t=%.3fs request %s prediction updated: %.1f -> %.1f (at %d tokens, actual %d)\n", e.p.At, e.id, e.prev, e.p.Predicted, e.p.Generated, e.p.Actual)
		}
	}
	return bw.Flush()
}

// AccuracyAt is the predictor's accuracy over the predictions made after
// Generated tokens (0: at arrival, 50: after the first window, ...).
type AccuracyAt struct {
	Generated int `json:"generated"`
	Accuracy
	// Tau is Kendall's rank correlation of predicted and true remaining
	// tokens: what matters for ranking, whatever the scale. NaN (JSON
	// null) where it is undefined: one prediction, or all of them equal.
	Tau Num `json:"kendall_tau"`
}

// AccuracyByProgress groups the predictions of recs by tokens generated
// when they were made. Groups beyond maxGroups are merged into the last.
func AccuracyByProgress(recs []policies.Record, maxGroups int) []AccuracyAt {
	type pair struct{ pred, act []float64 }
	groups := map[int]*pair{}
	for _, r := range recs {
		for _, p := range r.Predictions {
			if math.IsInf(p.Predicted, 0) {
				continue
			}
			g := groups[p.Generated]
			if g == nil {
				g = &pair{}
				groups[p.Generated] = g
			}
			g.pred = append(g.pred, p.Predicted)
			g.act = append(g.act, float64(p.Actual))
		}
	}
	keys := make([]int, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	if maxGroups > 0 && len(keys) > maxGroups {
		last := groups[keys[maxGroups-1]]
		for _, k := range keys[maxGroups:] {
			last.pred = append(last.pred, groups[k].pred...)
			last.act = append(last.act, groups[k].act...)
		}
		keys = keys[:maxGroups]
	}
	var out []AccuracyAt
	for _, k := range keys {
		g := groups[k]
		errs := make([]float64, len(g.pred))
		for i := range errs {
			errs[i] = g.pred[i] - g.act[i]
		}
		a := AccuracyAt{Generated: k, Accuracy: accuracy(errs, g.act), Tau: Num(math.NaN())}
		if len(g.pred) > 1 && !allEqual(g.pred) && !allEqual(g.act) {
			// Kendall's tau is quadratic: beyond 4000 pairs use an even
			// subsample, which estimates it to about +-0.02.
			x, y := g.pred, g.act
			if n := len(x); n > 4000 {
				step := float64(n) / 4000
				xs, ys := make([]float64, 4000), make([]float64, 4000)
				for i := range xs {
					xs[i], ys[i] = x[int(float64(i)*step)], y[int(float64(i)*step)]
				}
				x, y = xs, ys
			}
			a.Tau = Num(stat.Kendall(x, y, nil))
		}
		out = append(out, a)
	}
	return out
}

func allEqual(x []float64) bool {
	for _, v := range x {
		if v != x[0] {
			return false
		}
	}
	return true
}

// WriteAccuracy writes the accuracy table; the last row may hold every
// later window.
func WriteAccuracy(w io.Writer, rows []AccuracyAt) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "%-18s %7s %9s %9s %7s %8s\n", "tokens generated", "n", "MAE", "RMSE", "R^2", "tau")
	for i, r := range rows {
		label := fmt.Sprint(r.Generated)
		if i == len(rows)-1 && i > 0 {
			label += "+"
		}
		fmt.Fprintf(bw, "%-18s %7d %9.1f %9.1f %7.3f %8s\n", label, r.N, r.MAE, r.RMSE, r.R2, r.Tau.Format(3))
	}
	return bw.Flush()
}
