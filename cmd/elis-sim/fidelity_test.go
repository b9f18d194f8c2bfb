package main

import (
	"encoding/json"
	"math"
	"path/filepath"
	"testing"

	"github.com/elis-sim/elis-sim/report"
)

// TestFidelityLoopOnCPU runs the whole profile -> calibrate -> simulate
// loop against replay on the CPU with a small random model, as a user
// would from the README, and checks that every file and the fidelity
// table come out whole. It asserts no bound on the simulator's error: a
// replay's times are this machine's wall clock while other tests run
// beside it (identical replays on a busy 2-core machine gave mean JCT
// from 1.67 s to 3.57 s). scripts/cpu-fidelity runs the same loop and
// reports the errors, for a quiet machine.
func TestFidelityLoopOnCPU(t *testing.T) {
	if testing.Short() {
		t.Skip("replays in real time")
	}
	dir := t.TempDir()
	p := func(name string) string { return filepath.Join(dir, name) }
	steps := [][]string{
		{"trace", "gen", "--n", "30", "--arrivals", "poisson:10", "--prompt", "uniform:16:200", "--output", "uniform:8:100", "--seed", "4", "-o", p("t.json")},
		{"profile", "--model", "small", "--reps", "3", "--batches", "1,2,4,8", "--contexts", "16,64,256", "--prefill", "8,32,64,128,256", "-o", p("profile.csv")},
		{"calibrate", p("profile.csv"), "-o", p("cost.json")},
		{"replay", p("t.json"), "--model", "small", "--policy", "fcfs,isrtf", "--max-num-seqs", "4", "--out", p("replay")},
		{"run", p("t.json"), "--cost-model", p("cost.json"), "--policy", "fcfs,isrtf", "--max-num-seqs", "4", "--out", p("sim")},
	}
	// Warm up first: go test starts this package while others still run.
	warm := append(append([]string(nil), steps[1][:len(steps[1])-1]...), p("warmup.csv"))
	warm[4] = "1" // --reps 1
	if code, out := elis(t, warm...); code != 0 {
		t.Fatalf("warm-up profile: exit %d\n%s", code, out)
	}
	for _, args := range steps {
		if code, out := elis(t, args...); code != 0 {
			t.Fatalf("%v: exit %d\n%s", args, code, out)
		}
	}
	code, out := elis(t, "compare", "--json", p("replay/fcfs.json"), p("replay/isrtf.json"), p("sim/fcfs.json"), p("sim/isrtf.json"))
	if code != 0 {
		t.Fatalf("compare: exit %d\n%s", code, out)
	}
	var res struct {
		Fidelity *report.Fidelity `json:"fidelity"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.Fidelity == nil || len(res.Fidelity.Rows) != 24 {
		t.Fatalf("compare --json: %v\n%s", err, out)
	}
	// The loop's plumbing is checked here: every metric of both policies
	// was replayed and simulated. How close they are depends on how fast
	// this machine is while the test runs (go test runs other packages
	// beside it), so no bound is asserted: scripts/cpu-fidelity reports
	// the errors on a quiet machine.
	for _, r := range res.Fidelity.Rows {
		if !(r.Replay >= 0) || !(r.Sim >= 0) || math.IsInf(r.Replay, 0) || math.IsInf(r.Sim, 0) {
			t.Errorf("%s %s: replay %v, sim %v: want finite values >= 0", r.Label, r.Metric, r.Replay, r.Sim)
		}
		t.Logf("%s %s: replay %.4g, sim %.4g, error %+.1f%%", r.Label, r.Metric, r.Replay, r.Sim, float64(r.ErrorPct))
	}
	if _, ok := res.Fidelity.ChangeError["isrtf"]; !ok {
		t.Errorf("compare gave no FCFS-to-ISRTF change error: %+v", res.Fidelity.ChangeError)
	}
}
