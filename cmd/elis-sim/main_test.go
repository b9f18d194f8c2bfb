package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/elis-sim/elis-sim/cost"
	"github.com/elis-sim/elis-sim/engine"
	"github.com/elis-sim/elis-sim/policies"
	"github.com/elis-sim/elis-sim/report"
	"github.com/elis-sim/elis-sim/serve"
	"github.com/elis-sim/elis-sim/traces"
)

// elis runs the CLI in-process and returns its exit code and stdout.
func elis(t *testing.T, args ...string) (int, string) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, stderr := os.Stdout, os.Stderr
	os.Stdout, os.Stderr = w, w
	done := make(chan []byte)
	go func() { b, _ := io.ReadAll(r); done <- b }()
	code := run(append([]string{"elis-sim"}, args...))
	w.Close()
	os.Stdout, os.Stderr = stdout, stderr
	return code, string(<-done)
}

// shared is a file of ../shared beside the checkout (real data and golden
// models, read in place); the test is skipped where there is none.
func shared(t *testing.T, rel string) string {
	t.Helper()
	p := filepath.Join("../../../shared", rel)
	if _, err := os.Stat(p); err != nil {
		t.Skip("no ../shared beside the checkout")
	}
	return p
}

func TestDefaultRunShowsFCFSNextToISRTF(t *testing.T) {
	code, out := elis(t, "run")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, out)
	}
	lines := strings.Split(out, "\n")
	if !strings.HasPrefix(lines[0], "setup: embedded ELIS-like workload") || !strings.Contains(lines[1], "fcfs") || !strings.Contains(lines[1], "isrtf") {
		t.Fatalf("unexpected output:\n%s", out)
	}
}

func TestTraceGenSameSeedSameBytes(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.json"), filepath.Join(dir, "b.jsonl")
	for _, p := range []string{a, b} {
		if code, out := elis(t, "trace", "gen", "--arrivals", "gamma:0.73:10.41", "--rate-multiplier", "3", "--n", "50", "--seed", "4", "-o", p); code != 0 {
			t.Fatalf("exit %d: %s", code, out)
		}
	}
	code, out := elis(t, "trace", "stats", "--json", b)
	if code != 0 || !strings.Contains(out, `"requests": 50`) {
		t.Fatalf("stats: %d %s", code, out)
	}
	again := filepath.Join(dir, "c.json")
	elis(t, "trace", "gen", "--seed", "4", "--n", "50", "--arrivals", "gamma:0.73:10.41", "--rate-multiplier", "3", "-o", again)
	x, _ := os.ReadFile(a)
	y, _ := os.ReadFile(again)
	if !bytes.Equal(x, y) {
		t.Fatal("same seed gave different bytes")
	}
}

func TestBadInputExits2WithoutOutput(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.csv")
	os.WriteFile(bad, []byte("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.68,12,3\n2023-11-16 18:15:47.1,x,3\n"), 0o644)
	out := filepath.Join(dir, "out.json")
	cases := [][]string{
		{"trace", "import", "--format", "azure", bad, "-o", out},
		{"trace", "import", "--format", "parquet", bad, "-o", out},
		{"trace", "gen", "--arrivals", "weibull:2", "-o", out},
		{"trace", "gen", "--n", "0", "-o", out},
		{"run", "--policy", "lifo", "--out", out},
		{"run", "--isrtf-mode", "sometimes"},
		{"run", "--predictor", "psychic"},
		{"run", "--gpu", "tpu-v5"},
		{"run", "--stack", "2024"},
		{"run", "--policy", "isrtf+bogus"},
		{"run", "--policy", "isrtf/fast"},
		{"run", "--bogus-flag"},
		{"run", bad},
		{"replay", "a.json", "b.json"},
		{"replay", bad, "--model", "gpt-9"},
		{"calibrate", bad},
		{"run", "--predictor", "network"},
	}
	for _, args := range cases {
		code, msg := elis(t, args...)
		if code != 2 {
			t.Errorf("%v: exit %d, want 2 (%s)", args, code, msg)
		}
		if _, err := os.Stat(out); err == nil {
			t.Errorf("%v left %s behind", args, out)
		}
	}
	_, msg := elis(t, "trace", "import", "--format", "azure", bad, "-o", out)
	if !strings.Contains(msg, bad+" line 3: column ContextTokens") {
		t.Errorf("message does not name file, line and field: %s", msg)
	}
	_, msg = elis(t, "run", "--policy", "lifo")
	if !strings.Contains(msg, "valid: fcfs") {
		t.Errorf("message does not list valid policies: %s", msg)
	}
}

func TestRunOutWritesRunFiles(t *testing.T) {
	dir := t.TempDir()
	tr := filepath.Join(dir, "t.json")
	elis(t, "trace", "gen", "--n", "40", "--arrivals", "poisson:5", "--prompt", "fixed:100", "--output", "uniform:10:300", "-o", tr)
	outDir := filepath.Join(dir, "res")
	if code, msg := elis(t, "run", tr, "--policy", "fcfs,isrtf", "--isrtf-mode", "resubmit", "--out", outDir, "--check"); code != 0 {
		t.Fatalf("exit %d: %s", code, msg)
	}
	for _, name := range []string{"fcfs.json", "isrtf-resubmit.json"} {
		r, err := report.ReadRun(filepath.Join(outDir, name))
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Records) != 40 || r.Summary.Finished != 40 {
			t.Fatalf("%s: %d records, %d finished", name, len(r.Records), r.Summary.Finished)
		}
	}
}

func TestCostShowRoundTripsThroughRun(t *testing.T) {
	code, out := elis(t, "cost", "show", "--model", "llama-3.1-8b", "--gpu", "h200")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, out)
	}
	p := filepath.Join(t.TempDir(), "cost.json")
	os.WriteFile(p, []byte(out), 0o644)
	code, out = elis(t, "run", "--cost-model", p, "--policy", "fcfs")
	if code != 0 || !strings.Contains(out, "llama-3.1-8b on h200") {
		t.Fatalf("exit %d: %s", code, out)
	}
	os.WriteFile(p, []byte(`{"model": {}}`), 0o644)
	if code, _ := elis(t, "run", "--cost-model", p); code != 2 {
		t.Fatalf("broken cost model: exit %d", code)
	}
}

func TestCompareJSONWithSingleRuns(t *testing.T) {
	dir := t.TempDir()
	if code, out := elis(t, "run", "--policy", "fcfs,isrtf", "--out", dir); code != 0 {
		t.Fatalf("exit %d: %s", code, out)
	}
	code, out := elis(t, "compare", "--json", filepath.Join(dir, "fcfs.json"), filepath.Join(dir, "isrtf.json"))
	if code != 0 || !strings.Contains(out, `"ci95": null`) {
		t.Fatalf("exit %d: %s", code, out)
	}
}

func TestReplayWithoutCUDABuildSaysHow(t *testing.T) {
	dir := t.TempDir()
	tr := filepath.Join(dir, "t.json")
	elis(t, "trace", "gen", "--n", "3", "-o", tr)
	code, msg := elis(t, "replay", tr, "--device", "cuda")
	if code != 2 || !strings.Contains(msg, "-tags cuda") {
		t.Fatalf("exit %d: %s", code, msg)
	}
}

// A request count no memory holds is refused as bad input (it panicked
// in makeslice), naming the flag and the valid range, and writes nothing.
func TestTraceGenRefusesHugeN(t *testing.T) {
	out := filepath.Join(t.TempDir(), "t.json")
	code, msg := elis(t, "trace", "gen", "--n", "10000000000000", "-o", out)
	if code != 2 || !strings.Contains(msg, "--n") || !strings.Contains(msg, "10000000") {
		t.Fatalf("exit %d: %s", code, msg)
	}
	if _, err := os.Stat(out); err == nil {
		t.Fatal("left an output file behind")
	}
}

// The Mooncake trace runs with the sharing its hash_ids describe: prefix
// caching (on by default) finds cached tokens and preempts less under
// memory pressure than the same run with --no-enable-prefix-caching, which
// shows no cache rows at all.
func TestMooncakeRunsWithPrefixSharing(t *testing.T) {
	const src = "../../../shared/data/mooncake-fast25/conversation_trace.jsonl"
	if _, err := os.Stat(src); err != nil {
		t.Skip("no ../shared beside the checkout")
	}
	dir := t.TempDir()
	tr := filepath.Join(dir, "moon.json")
	if code, out := elis(t, "trace", "import", "--format", "mooncake", src, "--max", "200", "-o", tr); code != 0 {
		t.Fatalf("import: exit %d: %s", code, out)
	}
	cost := filepath.Join(dir, "linear.json")
	os.WriteFile(cost, []byte(`{"kind": "linear", "model": "m", "device": "d", "linear": {"base_s": 0.007, "per_prefill_token_s": 0.000018, "per_decode_seq_s": 0.000003}}`), 0o644)
	args := []string{"run", tr, "--policy", "fcfs", "--cost-model", cost, "--max-model-len", "131072", "--max-num-seqs", "256", "--max-num-batched-tokens", "2048", "--kv-blocks", "6000", "--json"}
	var runs [2][]report.Run
	for i, extra := range [][]string{nil, {"--no-enable-prefix-caching"}} {
		code, out := elis(t, append(args, extra...)...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", extra, code, out)
		}
		if err := json.Unmarshal([]byte(out), &runs[i]); err != nil {
			t.Fatalf("%v: %v\n%s", extra, err, out)
		}
	}
	on, off := runs[0][0].Summary, runs[1][0].Summary
	if on.PrefixCache == nil || on.PrefixCache.HitRate < 0.2 {
		t.Errorf("with prefix caching: %+v, want a hit rate of 20%% or more", on.PrefixCache)
	}
	if off.PrefixCache != nil {
		t.Errorf("without prefix caching the summary has a cache: %+v", off.PrefixCache)
	}
	if on.Preemptions >= off.Preemptions || on.JCT.Mean >= off.JCT.Mean {
		t.Errorf("preemptions %d with the cache, %d without; mean JCT %.2f s, %.2f s", on.Preemptions, off.Preemptions, on.JCT.Mean, off.JCT.Mean)
	}
}

// bench as a user runs it, against elis-sim's own server on loopback and
// against one that answers 500: both write the run file, the failures
// recorded with their status, and compare reads them.
func TestBenchCLI(t *testing.T) {
	pol, _ := policies.New("fcfs", policies.RerankPause)
	srv, err := serve.New(serve.Config{Model: "m", MaxModelLen: 4096, Workers: 1, Router: "least-loaded", Tokens: traces.Words{}.CountTokens,
		NewWorker: func(int) (engine.Config, error) {
			eng := policies.Config{MaxBatchedTokens: 512, MaxSeqs: 16, BlockSize: 16, NumBlocks: 2000, MaxModelLen: 4096, PredictionInterval: 50, PrefixCaching: true}
			core, err := policies.NewScheduler(eng, pol)
			return engine.Config{Core: core, Coster: &cost.Linear{Base: 1e-3}}, err
		}})
	if err != nil {
		t.Fatal(err)
	}
	good := httptest.NewServer(srv)
	defer func() { good.Close(); srv.Close() }()
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "boom", 500) }))
	defer bad.Close()
	dir := t.TempDir()
	tr := filepath.Join(dir, "t.json")
	if code, out := elis(t, "trace", "gen", "--n", "12", "--arrivals", "poisson:100", "--prompt", "uniform:10:80", "--output", "uniform:2:9", "-o", tr); code != 0 {
		t.Fatalf("trace gen: %d %s", code, out)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	nothing := "http://" + ln.Addr().String()
	ln.Close()
	// Exit 0 only when every request succeeded; 1 when any failed, with
	// the first error of each kind on the terminal; the run file always.
	for _, c := range []struct {
		url, label string
		failed     int
		flags      []string
		code       int
		says       string
	}{
		{good.URL, "good", 0, nil, 0, ""},
		{bad.URL, "bad", 12, nil, 1, "12 request(s) failed with HTTP 500; the first, r0: HTTP 500: boom"},
		{bad.URL, "tolerated", 12, []string{"--allow-failures"}, 0, "failed with HTTP 500"},
		{bad.URL, "rate", 12, []string{"--max-failure-rate", "0.5"}, 1, "12 of 12 requests failed"},
		{nothing, "nothing", 12, nil, 1, "12 request(s) failed with connection refused"},
	} {
		out := filepath.Join(dir, c.label+".json")
		args := append([]string{"bench", tr, "--url", c.url, "--model", "m", "--label", c.label, "--metrics-interval", "0", "-o", out}, c.flags...)
		code, text := elis(t, args...)
		if code != c.code || !strings.Contains(text, fmt.Sprintf("failed %d of 12 sent", c.failed)) || !strings.Contains(text, c.says) {
			t.Fatalf("%s: exit %d (want %d): %s", c.label, code, c.code, text)
		}
		run, err := report.ReadRun(out)
		if err != nil {
			t.Fatal(err)
		}
		if len(run.Records) != 12 || run.Setup["source"] != "bench" || (c.failed > 0 && c.url == bad.URL) != strings.Contains(run.Records[0].Rejected, "HTTP 500") {
			t.Fatalf("%s: run file %+v", c.label, run.Records[0])
		}
		// elis-sim serve exports vLLM's preemption counter; the others
		// export nothing, and the table says "-", not 0.
		if run.Summary.PreemptionsUnmeasured != (c.url != good.URL) {
			t.Fatalf("%s: preemptions unmeasured %v", c.label, run.Summary.PreemptionsUnmeasured)
		}
		if c.url != good.URL && regexp.MustCompile(`preemptions\s+0`).MatchString(text) {
			t.Fatalf("%s: the table claims 0 preemptions it never measured:\n%s", c.label, text)
		}
	}
	if code, text := elis(t, "compare", filepath.Join(dir, "good.json"), filepath.Join(dir, "bad.json")); code != 0 {
		t.Fatalf("compare: %d %s", code, text)
	}
	for _, args := range [][]string{{"--url", "ftp://x", "--model", "m"}, {"--model", "m"}, {"--url", good.URL}, {"--url", good.URL, "--model", "m", "--max-failure-rate", "2"}} {
		if code, text := elis(t, append([]string{"bench", tr}, args...)...); code != 2 {
			t.Fatalf("bench %v: exit %d, want 2: %s", args, code, text)
		}
	}
}

// An interrupted bench is not a result: the requests it never sent are
// "not sent" (not rejected), its run file says it was interrupted, it
// exits 130, and compare refuses to set it beside a whole run unless told.
func TestBenchInterrupted(t *testing.T) {
	pol, _ := policies.New("fcfs", policies.RerankPause)
	srv, err := serve.New(serve.Config{Model: "m", MaxModelLen: 4096, Workers: 1, Router: "least-loaded", Tokens: traces.Words{}.CountTokens,
		NewWorker: func(int) (engine.Config, error) {
			eng := policies.Config{MaxBatchedTokens: 512, MaxSeqs: 16, BlockSize: 16, NumBlocks: 2000, MaxModelLen: 4096, PredictionInterval: 50}
			core, err := policies.NewScheduler(eng, pol)
			return engine.Config{Core: core, Coster: &cost.Linear{Base: 1e-3}}, err
		}})
	if err != nil {
		t.Fatal(err)
	}
	// The test interrupts the bench once a request of its has reached the
	// server: its Ctrl-C handler is set by then, however slowly it started.
	arrived := make(chan struct{}, 100)
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			select {
			case arrived <- struct{}{}:
			default:
			}
		}
		srv.ServeHTTP(w, r)
	}))
	defer func() { hs.Close(); srv.Close() }()
	dir := t.TempDir()
	tr := filepath.Join(dir, "t.json")
	// 20 requests over about 40 s: the interrupt comes long before the last.
	if code, out := elis(t, "trace", "gen", "--n", "20", "--arrivals", "poisson:0.5", "--prompt", "uniform:10:20", "--output", "uniform:2:3", "-o", tr); code != 0 {
		t.Fatalf("trace gen: %d %s", code, out)
	}
	whole, part := filepath.Join(dir, "whole.json"), filepath.Join(dir, "part.json")
	if code, out := elis(t, "bench", tr, "--url", hs.URL, "--model", "m", "--time-scale", "0.001", "-o", whole); code != 0 {
		t.Fatalf("bench at a thousand times the rate: %d %s", code, out)
	}
	for len(arrived) > 0 { // the first bench's requests
		<-arrived
	}
	cmd := boundedCommand(t, binary(t), "bench", tr, "--url", hs.URL, "--model", "m", "-o", part)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	<-arrived // its first request (arrival ~0; the other 19 come over some 40 s)
	cmd.Process.Signal(os.Interrupt)
	err = cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 130 || !strings.Contains(out.String(), "interrupted:") {
		t.Fatalf("interrupted bench: %v\n%s", err, out.String())
	}
	run, err := report.ReadRun(part)
	if err != nil {
		t.Fatal(err)
	}
	s := run.Summary
	if run.Setup["interrupted"] == "" || s.NotSent == 0 || s.Rejected != 0 || s.Finished+s.NotSent != 20 || !strings.Contains(out.String(), "not sent") {
		t.Fatalf("interrupted run file: %+v, setup %v\n%s", s, run.Setup, out.String())
	}
	if code, text := elis(t, "compare", whole, part); code != 2 || !strings.Contains(text, "interrupted") {
		t.Fatalf("compare with an interrupted run: %d %s", code, text)
	}
	if code, text := elis(t, "compare", "--allow-partial", whole, part); code != 0 || !strings.Contains(text, "warning") {
		t.Fatalf("compare --allow-partial: %d %s", code, text)
	}
}

// Policy entries with modes and guards run side by side under their own
// names, and the guards change the runs.
func TestPolicyVariants(t *testing.T) {
	code, out := elis(t, "run", "--policy", "isrtf,isrtf+eager+cap=2,isrtf/patch+sync", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, out)
	}
	var runs []report.Run
	if err := json.Unmarshal([]byte(out), &runs); err != nil {
		t.Fatal(err)
	}
	if len(runs) != 3 || runs[0].Label != "isrtf" || runs[1].Label != "isrtf+eager+cap=2" || runs[2].Label != "isrtf/patch+sync" {
		t.Fatalf("labels: %s, %s, %s", runs[0].Label, runs[1].Label, runs[2].Label)
	}
	if runs[0].Summary.JCT.Mean == runs[1].Summary.JCT.Mean || runs[0].Summary.JCT.Mean == runs[2].Summary.JCT.Mean {
		t.Fatalf("the variants ran as plain isrtf: mean JCT %v, %v, %v", runs[0].Summary.JCT.Mean, runs[1].Summary.JCT.Mean, runs[2].Summary.JCT.Mean)
	}
}
