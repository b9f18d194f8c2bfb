package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSweepWritesTablesAndPlots(t *testing.T) {
	dir := t.TempDir()
	code, out := elis(t, "sweep", "--scenario", "long-output", "--loads", "1,4", "--seeds", "2", "--n", "60", "-o", dir)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, out)
	}
	for _, f := range []string{"results.csv", "summary.txt", "load.png", "cdf-1x.png", "cdf-4x.png", "predictions.log"} {
		if st, err := os.Stat(filepath.Join(dir, "long-output", f)); err != nil || st.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
	csv, _ := os.ReadFile(filepath.Join(dir, "long-output", "results.csv"))
	if n := strings.Count(string(csv), "\n"); n != 1+3*2*2 {
		t.Errorf("results.csv has %d lines, want header + 12 runs", n)
	}
	log, _ := os.ReadFile(filepath.Join(dir, "long-output", "predictions.log"))
	if !strings.Contains(string(log), "initial prediction") || !strings.Contains(string(log), "prediction updated") {
		t.Errorf("prediction log lacks events:\n%.300s", log)
	}
}

// BenchmarkSweep is the target: 3 policies x 5 loads x 5 seeds
// over 2,000-request traces in under a minute on the 2-core machine.
func BenchmarkSweep(b *testing.B) {
	dir := b.TempDir()
	devnull, _ := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	stdout := os.Stdout
	os.Stdout = devnull
	defer func() { os.Stdout = stdout }()
	for b.Loop() {
		if code := run([]string{"elis-sim", "sweep", "--scenario", "fcfs-vs-isrtf", "--seeds", "5", "--n", "2000", "-o", dir}); code != 0 {
			b.Fatalf("exit %d", code)
		}
	}
}

// A sweep keeps no prediction history unless a scenario logs it, yet its
// ISRTF rows report the predictor's measured error and target (they were
// 0 in every scenario but long-output).
func TestSweepReportsPredictorError(t *testing.T) {
	dir := t.TempDir()
	if code, out := elis(t, "sweep", "--scenario", "fcfs-vs-isrtf", "--loads", "1", "--seeds", "1", "--n", "100", "-o", dir); code != 0 {
		t.Fatalf("exit %d: %s", code, out)
	}
	csv, _ := os.ReadFile(filepath.Join(dir, "fcfs-vs-isrtf", "results.csv"))
	lines := strings.Split(strings.TrimSpace(string(csv)), "\n")
	head := strings.Split(lines[0], ",")
	col := func(name string) int {
		for i, h := range head {
			if h == name {
				return i
			}
		}
		t.Fatalf("no column %s in %s", name, lines[0])
		return -1
	}
	for _, l := range lines[1:] {
		f := strings.Split(l, ",")
		if f[col("policy")] != "isrtf" {
			continue
		}
		if f[col("predictor_mae")] == "0" || f[col("predictor_mae_target")] == "0" {
			t.Errorf("isrtf row without its predictor's error: %s", l)
		}
	}
}

// The isrtf-variants scenario runs its own policies (FCFS, ISRTF, the
// patch and the guards) unless told otherwise, stays out of "all", and
// draws the mean-against-P99 trade per load.
func TestSweepISRTFVariants(t *testing.T) {
	dir := t.TempDir()
	code, out := elis(t, "sweep", "--scenario", "isrtf-variants", "--loads", "1,5", "--seeds", "1", "--n", "80", "-o", dir)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, out)
	}
	for _, f := range []string{"pareto-1x.png", "pareto-5x.png", "summary.txt"} {
		if st, err := os.Stat(filepath.Join(dir, "isrtf-variants", f)); err != nil || st.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
	for _, v := range []string{"isrtf/patch+sync+eager", "isrtf+cap=2"} {
		if !strings.Contains(out, v) {
			t.Errorf("the summary lacks %s", v)
		}
	}
}
