package report

import (
	"bytes"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gonum.org/v1/plot"

	"github.com/elis-sim/elis-sim/internal/tempfile"
	"github.com/elis-sim/elis-sim/policies"
)

// fixture: three requests whose metrics are easy to compute by hand.
//
//	a: arrives 0, scheduled 1, first token 2, finish 6, 5 tokens -> TTFT 2, JCT 6, queue 1, TPOT 1
//	b: arrives 1, scheduled 1, first token 1.5, finish 3.5, 3 tokens -> TTFT 0.5, JCT 2.5, queue 0, TPOT 1
//	c: arrives 2, scheduled 4, first token 5, finish 5, 1 token -> TTFT 3, JCT 3, queue 2
func fixture() []policies.Record {
	return []policies.Record{
		{ID: "a", Arrival: 0, FirstScheduled: 1, FirstToken: 2, Finish: 6, Generated: 5, OutputTokens: 5, Preemptions: 1,
			Predictions: []policies.Prediction{{At: 0, Generated: 0, Predicted: 7, Actual: 5}, {At: 4, Generated: 2, Predicted: 2, Actual: 3}}},
		{ID: "b", Arrival: 1, FirstScheduled: 1, FirstToken: 1.5, Finish: 3.5, Generated: 3, OutputTokens: 3,
			Predictions: []policies.Prediction{{At: 1, Generated: 0, Predicted: 2, Actual: 3}}},
		{ID: "c", Arrival: 2, FirstScheduled: 4, FirstToken: 5, Finish: 5, Generated: 1, OutputTokens: 1},
	}
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func TestSummarizeByHand(t *testing.T) {
	s := Summarize(fixture(), nil)
	if s.Finished != 3 || s.Preemptions != 1 {
		t.Fatalf("counts: %+v", s)
	}
	checks := []struct {
		name      string
		got, want float64
	}{
		{"jct mean", s.JCT.Mean, (6 + 2.5 + 3) / 3.0},
		{"jct p50", s.JCT.P50, 3},
		{"jct max", s.JCT.Max, 6},
		{"ttft mean", s.TTFT.Mean, (2 + 0.5 + 3) / 3.0},
		{"queue mean", s.Queue.Mean, 1},
		{"tpot mean", s.TPOT.Mean, 1}, // c has one token: no TPOT
		{"makespan", s.Makespan, 6},
		{"rps", s.RPS, 0.5},
		{"tps", s.TPS, 9.0 / 6},
		// errors: +2, -1, -1 -> MAE 4/3, RMSE sqrt(2); actual mean 11/3, SST = 2/9+4/9+4/9 = 10/9... computed below
		{"mae", s.Predictor.MAE, 4.0 / 3},
		{"rmse", s.Predictor.RMSE, math.Sqrt(2)},
		{"r2", s.Predictor.R2, 1 - 6/((5-11.0/3)*(5-11.0/3)+2*(3-11.0/3)*(3-11.0/3))},
		// normalized latency 6/5, 2.5/3, 3/1: Jain = (sum)^2 / (3 * sum of squares)
		{"jain", s.JainJCT, math.Pow(1.2+2.5/3+3, 2) / (3 * (1.44 + 6.25/9 + 9))},
	}
	for _, c := range checks {
		if !near(c.got, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestGoodputByHand(t *testing.T) {
	slo, err := ParseSLO("ttft=2s,tpot=1500ms")
	if err != nil {
		t.Fatal(err)
	}
	z := NewSummarizer(slo)
	for _, r := range fixture() {
		z.Add(&r)
	}
	g := *z.Summary(nil, nil).Goodput
	// a: TTFT 2 <= 2 ok, TPOT 1 ok; b ok; c: TTFT 3 > 2 fails.
	if !near(g.Fraction, 2.0/3) || !near(g.RPS, 2.0/6) {
		t.Fatalf("goodput %+v", g)
	}
	for _, bad := range []string{"ttft", "ttft=fast", "latency=2s", "ttft=-1s"} {
		if _, err := ParseSLO(bad); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

func TestCompareByHand(t *testing.T) {
	mk := func(label string, jct float64) *Run {
		return &Run{Label: label, Summary: Summary{JCT: Dist{Mean: jct, P99: 2 * jct}}}
	}
	rows := Compare([]*Run{mk("fcfs", 10), mk("isrtf", 7), mk("isrtf", 9), mk("fcfs", 12)})
	if len(rows) != 2 || rows[0].Label != "fcfs" || rows[0].Runs != 2 {
		t.Fatalf("rows %+v", rows)
	}
	f, i := rows[0].Values["jct_mean_s"], rows[1].Values["jct_mean_s"]
	// means 11 and 8; sd of {10,12} = sqrt(2), t(0.975, 1) = 12.706
	if !near(f.Mean, 11) || !near(i.Mean, 8) || math.Abs(float64(f.CI95)-12.7062*math.Sqrt(2)/math.Sqrt(2)) > 1e-3 {
		t.Fatalf("estimates %+v %+v", f, i)
	}
	if !near(float64(rows[1].Change["jct_mean_s"]), (8.0-11)/11*100) {
		t.Fatalf("change %v", rows[1].Change["jct_mean_s"])
	}
	var buf bytes.Buffer
	WriteCompare(&buf, rows)
	if !strings.Contains(buf.String(), "8.000 ±") || !strings.Contains(buf.String(), "(-27.3%)") {
		t.Fatalf("table:\n%s", buf.String())
	}
}

func TestPredictionLogAndAccuracy(t *testing.T) {
	var buf bytes.Buffer
	WritePredictionLog(&buf, fixture())
	want := "t=0.000s request a initial prediction: 7.0 tokens (actual 5)\n" +
		"t=1.000s request b initial prediction: 2.0 tokens (actual 3)\n" +
		"t=4.000s request a prediction updated: 7.0 -> 2.0 (at 2 tokens, actual 3)\n"
	if buf.String() != want {
		t.Fatalf("log:\n%s\nwant:\n%s", buf.String(), want)
	}
	acc := AccuracyByProgress(fixture(), 10)
	if len(acc) != 2 || acc[0].Generated != 0 || acc[0].N != 2 || !near(acc[0].MAE, 1.5) || acc[1].N != 1 {
		t.Fatalf("accuracy %+v", acc)
	}
}

func TestPlotsWriteFiles(t *testing.T) {
	dir := t.TempDir()
	run := &Run{Label: "fcfs", Records: fixture(), ITLQuantiles: []float64{0.01, 0.02, 0.03}}
	for _, m := range PlotMetricNames() {
		v, err := Values(run, m)
		if err != nil || len(v) == 0 {
			t.Fatalf("%s: %v", m, err)
		}
	}
	v, _ := Values(run, "queue")
	p, err := CDF("queueing delay", PlotMetrics["queue"], true, []Series{{Label: "fcfs", Values: v}, {Label: "other", Values: []float64{1, 2}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"a.png", "a.svg", "a.pdf"} {
		path := filepath.Join(dir, name)
		if err := Save(p, path); err != nil {
			t.Fatal(err)
		}
		if st, err := os.Stat(path); err != nil || st.Size() < 1000 {
			t.Fatalf("%s: %v", name, err)
		}
	}
	if err := Save(p, filepath.Join(dir, "a.gif")); err == nil {
		t.Fatal("accepted .gif")
	}
	lp, err := LoadCurves("load", map[string][]LoadPoint{"fcfs": {{Load: 1, Mean: MeanCI([]float64{1, 2}), P99: MeanCI([]float64{3})}}}, []string{"fcfs"})
	if err != nil {
		t.Fatal(err)
	}
	if err := Save(lp, filepath.Join(dir, "load.png")); err != nil {
		t.Fatal(err)
	}
}

// Durations print back exactly: 4100ms was 4.099999999s.
func TestSLOPrintsExactly(t *testing.T) {
	for in, want := range map[string]string{"ttft=4100ms": "ttft=4.1s", "tpot=0.1s,jct=30s": "jct=30s,tpot=100ms", "ttft=1ns": "ttft=1ns"} {
		slo, err := ParseSLO(in)
		if err != nil || slo.String() != want {
			t.Errorf("%s: %q, %v; want %q", in, slo.String(), err, want)
		}
	}
	for _, bad := range []string{"ttft=0s", "jct=-1s", "jct=1001h", "ttft=abc"} {
		if _, err := ParseSLO(bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

func FuzzParseSLO(f *testing.F) {
	f.Add("ttft=4100ms")
	f.Add("ttft=2s,tpot=100ms,jct=30s")
	f.Fuzz(func(t *testing.T, s string) {
		slo, err := ParseSLO(s)
		if err != nil {
			return
		}
		if slo.TTFT < 0 || slo.TPOT < 0 || slo.JCT < 0 {
			t.Fatalf("%q: negative objective %+v", s, slo)
		}
		if again, err := ParseSLO(slo.String()); err != nil || again != slo {
			t.Fatalf("%q -> %q -> %+v, %v", s, slo.String(), again, err)
		}
	})
}

func TestSweepAggregates(t *testing.T) {
	mk := func(label string, jct float64) *Run {
		return &Run{Label: label, Records: fixture(), Summary: Summary{Requests: 3, JCT: Dist{Mean: jct, P99: 2 * jct}}}
	}
	runs := []SweepRun{
		{Run: mk("fcfs", 10), Policy: "fcfs", Load: 1, Seed: 1}, {Run: mk("fcfs", 12), Policy: "fcfs", Load: 1, Seed: 2},
		{Run: mk("isrtf", 8), Policy: "isrtf", Load: 1, Seed: 1}, {Run: mk("fcfs", 20), Policy: "fcfs", Load: 3, Seed: 1},
	}
	loads, curves, order := Sweep(runs, []float64{1, 3})
	if len(loads) != 2 || len(order) != 2 || order[0] != "fcfs" {
		t.Fatalf("loads %+v order %v", loads, order)
	}
	if c := curves["fcfs"]; len(c) != 2 || c[0].Mean.Mean != 11 || c[1].Mean.Mean != 20 || c[0].P99.Mean != 22 {
		t.Fatalf("fcfs curve %+v", c)
	}
	if n := len(loads[0].JCTs[0].Values); n != 6 { // two seeds x three requests
		t.Fatalf("%d JCT samples at load 1, want 6", n)
	}
	var buf bytes.Buffer
	if err := WriteSweepCSV(&buf, nil, runs); err != nil || strings.Count(buf.String(), "\n") != 5 {
		t.Fatalf("csv: %v\n%s", err, buf.String())
	}
}

// Accuracy summed in constant memory equals the accuracy of the kept
// predictions (R^2 included), so a sweep that keeps no history still
// reports its predictor's error.
func TestAccuracyFromSums(t *testing.T) {
	preds := []struct {
		p float64
		a int
	}{{120, 100}, {30, 50}, {80, 80}, {math.Inf(1), 10}, {5, 12}}
	var errs, actual []float64
	var sums policies.PredictionErrors
	for _, x := range preds {
		if !math.IsInf(x.p, 0) {
			errs = append(errs, x.p-float64(x.a))
			actual = append(actual, float64(x.a))
		}
	}
	for i := range errs {
		e, a := errs[i], actual[i]
		sums.N++
		sums.SumAbs += math.Abs(e)
		sums.SumSq += e * e
		sums.SumActual += a
		sums.SumActualSq += a * a
	}
	want, got := accuracy(errs, actual), AccuracyFrom(sums)
	if got.N != want.N || !near(got.MAE, want.MAE) || !near(got.RMSE, want.RMSE) || !near(got.R2, want.R2) {
		t.Fatalf("from sums %+v, from the list %+v", got, want)
	}
}

// Plot titles wrap inside the figure instead of running past its edge, and
// a log axis over a short range still carries several labels.
func TestWrapAndShortLogAxis(t *testing.T) {
	w := Wrap("llama-2-13b on a100-80g, embedded ELIS-like workload: 300 requests, gamma(0.73, 10.41 s) arrivals at 5x, LMSYS-like lengths", 40, 2)
	lines := strings.Split(w, "\n")
	if len(lines) != 2 || !strings.HasSuffix(lines[1], "...") {
		t.Fatalf("wrapped into %q", lines)
	}
	for _, l := range lines {
		if len(l) > 40 {
			t.Fatalf("line %q longer than 40", l)
		}
	}
	labels := 0
	for _, tk := range (ticks125{}).Ticks(3, 45) { // a decade and a half
		if tk.Label != "" {
			labels++
		}
	}
	if labels < 5 {
		t.Fatalf("%d labels between 3 and 45", labels)
	}
}

// A run file written record by record reads back whole, with and without
// records.
func TestRunFileRoundTrip(t *testing.T) {
	dir := t.TempDir()
	for _, recs := range [][]policies.Record{fixture(), nil} {
		r := &Run{Label: "isrtf", Setup: map[string]string{"policy": "isrtf"}, Summary: Summary{Requests: len(recs)}, Records: recs}
		path := filepath.Join(dir, "r.json")
		if err := WriteRun(path, r); err != nil {
			t.Fatal(err)
		}
		got, err := ReadRun(path)
		if err != nil {
			t.Fatal(err)
		}
		if got.Label != r.Label || len(got.Records) != len(recs) || got.Summary.Requests != len(recs) {
			t.Fatalf("read back %+v", got)
		}
		for i := range recs {
			if got.Records[i].ID != recs[i].ID || got.Records[i].Finish != recs[i].Finish || len(got.Records[i].Predictions) != len(recs[i].Predictions) {
				t.Fatalf("record %d: %+v, want %+v", i, got.Records[i], recs[i])
			}
		}
	}
}

// The side-by-side table prints counts whole and the change of a share in
// percentage points (it printed 109.0 and a relative % of a %).
func TestSideBySideCountsAndShares(t *testing.T) {
	mk := func(label string, preempt int, frac float64) *Run {
		return &Run{Label: label, Summary: Summary{Requests: 10, Preemptions: preempt, Rejected: 2, Goodput: &Goodput{Fraction: frac, RPS: 1}}}
	}
	var b strings.Builder
	if err := SideBySide(&b, []*Run{mk("fcfs", 0, 0.5), mk("isrtf", 109, 0.85)}); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"+35.0 pt", "preemptions", "109 "} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "109.0") || strings.Contains(out, "2.000") {
		t.Errorf("a count printed with decimals:\n%s", out)
	}
}

// FuzzReadRun reads arbitrary run files and takes what it accepts through
// everything compare and plot do with them: a hand-edited or foreign file
// is an error or a report, never a panic.
func FuzzReadRun(f *testing.F) {
	dir := f.TempDir()
	for i, recs := range [][]policies.Record{fixture(), nil} {
		path := filepath.Join(dir, fmt.Sprint(i, ".json"))
		r := &Run{Label: "isrtf", Setup: map[string]string{"policy": "isrtf", "source": "sim"}, Summary: Summary{Requests: len(recs)}, Records: recs, ITLQuantiles: []float64{0.01, 0.02}}
		if err := WriteRun(path, r); err != nil {
			f.Fatal(err)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(`{"elis_run":1,"records":[{"arrival_s":5,"finish_s":-1e308,"first_token_s":1e308}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		path := tempfile.Write(t, "run.json", data)
		r, err := ReadRun(path)
		if err != nil {
			return
		}
		other := *r
		other.Setup = map[string]string{"source": "replay"}
		maps.Copy(other.Setup, r.Setup)
		runs := []*Run{r, &other}
		_ = WriteCompare(io.Discard, Compare(runs))
		if fid := CheckFidelity(runs); fid != nil {
			_ = WriteFidelity(io.Discard, fid)
		}
		for _, metric := range PlotMetricNames() {
			v, err := Values(r, metric)
			if err != nil {
				continue
			}
			for _, logX := range []bool{false, true} {
				if p, err := CDF("fuzz", metric, logX, []Series{{Label: r.Label, Values: v}}); err == nil {
					if w, err := p.WriterTo(64, 48, "png"); err == nil {
						_, _ = w.WriteTo(io.Discard)
					}
				}
			}
		}
	})
}

// An axis over one value (every queueing delay zero at light load, a
// single point) or none draws: gonum/plot widened such a range below zero
// on a log axis, or by nothing next to a large value, and panicked ("plot
// --metric queue --log-x" of a light-load run did).
func TestLogPlotsOfOneValueDraw(t *testing.T) {
	cdf, err := CDF("queue", "queue (s)", true, []Series{{Label: "fcfs", Values: []float64{0, 0, 0}}})
	if err != nil {
		t.Fatal(err)
	}
	one, _ := Scatter("s", "x", "y", 1, []ScatterGroup{{Label: "a", X: []float64{5}, Y: []float64{5}}})
	floor, _ := Scatter("s", "x", "y", 1, []ScatterGroup{{Label: "a", X: []float64{0}, Y: []float64{0}}})
	none, _ := Scatter("s", "x", "y", 1, nil)
	curve, _ := LoadCurves("c", map[string][]LoadPoint{"fcfs": {{Load: 1, Mean: Estimate{Mean: 2}, P99: Estimate{Mean: 2}}}}, []string{"fcfs"})
	pareto, _ := Pareto("p", map[string][]LoadPoint{"fcfs": {{Load: 1, Mean: Estimate{Mean: 2}, P99: Estimate{Mean: 2}}}}, []string{"fcfs"}, 1)
	far, err := CDF("jct", "jct (s)", false, []Series{{Label: "fcfs", Values: []float64{1e20}}})
	if err != nil {
		t.Fatal(err)
	}
	for name, p := range map[string]*plot.Plot{"cdf": cdf, "scatter": one, "scatter at floor": floor, "empty scatter": none,
		"load curve": curve, "pareto": pareto, "linear cdf of one large value": far} {
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Errorf("%s: %v", name, r)
				}
			}()
			w, err := p.WriterTo(100, 80, "png")
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if _, err := w.WriteTo(io.Discard); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
		}()
	}
}

// A run file written to a device stays a device (see atomicfile).
func TestRunFileToDevice(t *testing.T) {
	run := &Run{Label: "x", Setup: map[string]string{}, Records: []policies.Record{{ID: "a", Finish: 1, Generated: 1}}}
	if err := WriteRun(os.DevNull, run); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(os.DevNull); err != nil || st.Mode()&os.ModeDevice == 0 {
		t.Fatalf("%s after WriteRun: %v %v", os.DevNull, st.Mode(), err)
	}
}
