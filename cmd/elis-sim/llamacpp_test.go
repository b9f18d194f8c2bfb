package main

import (
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/elis-sim/elis-sim/cost"
	"github.com/elis-sim/elis-sim/report"
)

// startLlamaServer starts ../shared/llamacpp's llama-server (llama.cpp's
// OpenAI-compatible server, a real engine nobody here wrote) on a free
// loopback port with 4 slots, and returns its base URL; the test is
// skipped where the checkout has no ../shared/llamacpp beside it.
func startLlamaServer(t *testing.T) string {
	t.Helper()
	bin := shared(t, "llamacpp/llama-server")
	model := shared(t, "llamacpp/anchor-4l-512h-v8000.gguf")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	var log syncBuilder
	cmd := boundedCommand(t, bin, "-m", model, "--alias", "anchor", "--host", "127.0.0.1", "--port", fmt.Sprint(port),
		"--parallel", "4", "--ctx-size", "4096", "-b", "2048", "-ub", "512", "--metrics", "-t", "1")
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// One Wait, in its goroutine; the cleanup kills and waits for it (a
	// second Wait could block for ever).
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() { cmd.Process.Kill(); <-exited })
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(2 * time.Minute)
	for { // until it answers /health (loading the model takes a moment)
		if time.Now().After(deadline) {
			t.Fatalf("llama-server did not answer /health in 2 minutes\n%s", log.String())
		}
		select {
		case <-exited:
			t.Fatalf("llama-server exited: %v\n%s", waitErr, log.String())
		default:
		}
		if r, err := client.Get(url + "/health"); err == nil {
			r.Body.Close()
			if r.StatusCode == 200 {
				return url
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// bench, profile --url and compare against llama.cpp's server, as a user
// runs them: bench reads the server's vocabulary (token ids beyond it
// crash that server) and its llama.cpp metrics, and says that preemptions
// were not measured; profile --url fits its shapes to the server's slots
// and slot context; compare sets the bench run beside itself. None fails.
func TestLlamaServer(t *testing.T) {
	url := startLlamaServer(t)
	dir := t.TempDir()
	p := func(name string) string { return filepath.Join(dir, name) }
	if code, out := elis(t, "trace", "gen", "--n", "12", "--arrivals", "poisson:20", "--prompt", "uniform:20:300", "--output", "uniform:4:32", "-o", p("t.json")); code != 0 {
		t.Fatalf("trace gen: %d %s", code, out)
	}
	code, out := elis(t, "bench", p("t.json"), "--url", url, "--model", "anchor", "--label", "fcfs", "--metrics-interval", "200ms", "--timeout", "2m", "-o", p("bench.json"))
	if code != 0 || !strings.Contains(out, "failed 0 of 12 sent") {
		t.Fatalf("bench: exit %d\n%s", code, out)
	}
	run, err := report.ReadRun(p("bench.json"))
	if err != nil {
		t.Fatal(err)
	}
	if run.Server == nil || run.Server.PeakRunning == nil || run.Server.MeanKVUsage == nil || !run.Summary.PreemptionsUnmeasured {
		t.Fatalf("llama.cpp's metrics not read: %+v", run.Server)
	}
	code, out = elis(t, "profile", "--url", url, "--model", "anchor", "--prefill", "16,64,128,256,4096", "--batches", "1,2,4,16",
		"--contexts", "64,512", "--decode", "16", "--reps", "1", "--max-num-batched-tokens", "2048", "--timeout", "2m", "-o", p("profile.csv"))
	if code != 0 || !strings.Contains(out, "timing prompts [16 64 128 256], batches [1 2 4]") {
		t.Fatalf("profile --url: exit %d\n%s", code, out)
	}
	// The profile knows the server schedules by slots and counts the KV
	// cells its timings ran beside; the cost file prices them and says
	// llama.cpp's scheduling, which run then follows.
	prof, err := cost.ReadDeviceProfile(p("profile.csv"))
	if err != nil || prof.Meta["scheduler"] != "llama.cpp" || prof.Requests[len(prof.Requests)-1].KVCells < 0 {
		t.Fatalf("profile: %v %+v", err, prof)
	}
	if code, out := elis(t, "calibrate", p("profile.csv"), "-o", p("cost.json")); code != 0 {
		t.Fatalf("calibrate: exit %d\n%s", code, out)
	}
	if cf, err := cost.LoadCostFile(p("cost.json")); err != nil || cf.Engine == nil || !cf.Engine.Slots || cf.Engine.MaxSeqs != 4 {
		t.Fatalf("cost file: %v %+v", err, cf)
	}
	if code, out := elis(t, "run", p("t.json"), "--cost-model", p("cost.json"), "--policy", "fcfs", "--out", p("sim.json")); code != 0 || !strings.Contains(out, "llama.cpp scheduling: 4 slots of 1024 tokens") {
		t.Fatalf("run: exit %d\n%s", code, out)
	}
	// compare sets the simulation beside the measurement, request by
	// request. How close they are is wall-clock and lives in a script.
	code, out = elis(t, "compare", p("bench.json"), p("sim.json"))
	if code != 0 || !strings.Contains(out, "simulated against measured") || !strings.Contains(out, "fcfs request by request (12 paired by id)") {
		t.Fatalf("compare: exit %d\n%s", code, out)
	}
}

// syncBuilder is a strings.Builder a process's output goroutines write to
// while the test reads it.
type syncBuilder struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuilder) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuilder) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
