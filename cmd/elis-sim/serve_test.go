package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/elis-sim/elis-sim/report"
)

// boundedCommand is a command killed after 3 minutes, whatever happens:
// a process that would not stop fails its test instead of hanging the
// suite (CI runs on a busy machine).
func boundedCommand(t *testing.T, name string, args ...string) *exec.Cmd {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.WaitDelay = 2 * time.Second
	return cmd
}

// startServe runs `elis-sim serve` as a user does, on a free loopback
// port, and returns its base URL once it listens; the process is killed at
// the end of the test if it is still running.
func startServe(t *testing.T, args ...string) (*exec.Cmd, string, *syncBuilder, func() error) {
	t.Helper()
	cmd := boundedCommand(t, binary(t), append([]string{"serve", "--port", "0"}, args...)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// One Wait, shared: the test's own (after SIGTERM) and the cleanup's.
	var once sync.Once
	var waitErr error
	wait := func() error { once.Do(func() { waitErr = cmd.Wait() }); return waitErr }
	t.Cleanup(func() { cmd.Process.Kill(); wait() })
	log := &syncBuilder{}
	rd := bufio.NewReader(stderr)
	addr := regexp.MustCompile(`on (http://127\.0\.0\.1:\d+)`)
	for {
		line, err := rd.ReadString('\n')
		log.Write([]byte(line))
		if m := addr.FindStringSubmatch(line); m != nil {
			go io.Copy(log, rd)
			return cmd, m[1], log, wait
		}
		if err != nil {
			t.Fatalf("serve did not start: %v\n%s", err, log.String())
		}
	}
}

// `elis-sim serve` with no --policy starts on its own default (one
// policy), refuses token ids beyond its model's vocabulary with the sim
// engine too, wants --api-key's token, and on SIGTERM finishes the stream
// in flight, writes --out with each record's engine, and exits 0.
func TestServeCLI(t *testing.T) {
	out := filepath.Join(t.TempDir(), "serve.json")
	cmd, url, log, wait := startServe(t, "--api-key", "k", "--workers", "2", "--router", "round-robin", "-o", out)
	post := func(body string) (*http.Response, error) {
		req, _ := http.NewRequest("POST", url+"/v1/completions", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer k")
		return (&http.Client{Timeout: 2 * time.Minute}).Do(req)
	}
	resp, err := post(`{"prompt":[1,2,32000],"max_tokens":2}`)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 400 || !strings.Contains(string(b), `vocabulary of 32000`) || !strings.Contains(string(b), `"error":{`) {
		t.Fatalf("an id beyond llama-2-13b's 32,000: %d %s", resp.StatusCode, b)
	}
	if r, err := http.Post(url+"/v1/completions", "application/json", strings.NewReader(`{"prompt":[1],"max_tokens":1}`)); err != nil || r.StatusCode != 401 {
		t.Fatalf("without the key: %v %v", r, err)
	}
	for range 2 { // one to each engine, then the stream to the first
		r, err := post(`{"prompt":[1,2,3],"max_tokens":3}`)
		if err != nil || r.StatusCode != 200 {
			t.Fatalf("%v %v", r, err)
		}
		r.Body.Close()
	}
	stream, err := post(`{"prompt":[1,2,3],"max_tokens":200,"stream":true}`)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Body.Close()
	rd := bufio.NewReader(stream.Body)
	rd.ReadString('\n') // a token came: the request is in flight
	cmd.Process.Signal(syscall.SIGTERM)
	rest, err := io.ReadAll(rd)
	if err != nil || !strings.HasSuffix(string(rest), "data: [DONE]\n\n") {
		t.Fatalf("the stream in flight at SIGTERM (%v): ...%s", err, rest[max(0, len(rest)-200):])
	}
	if err := wait(); err != nil {
		t.Fatalf("serve after SIGTERM: %v\n%s", err, log)
	}
	if strings.Contains(log.String(), "panic") {
		t.Fatalf("serve panicked:\n%s", log)
	}
	run, err := report.ReadRun(out)
	if err != nil {
		t.Fatal(err)
	}
	engines := map[int]int{}
	for _, r := range run.Records {
		engines[r.Worker]++
	}
	if run.Label != "fcfs" || len(run.Records) != 3 || engines[0] != 2 || engines[1] != 1 {
		t.Fatalf("run file: policy %s, %d records, by engine %v", run.Label, len(run.Records), engines)
	}
}

// An interrupted replay is not tabled against the runs before it: FCFS
// runs whole, ISRTF is stopped partway; the table shows FCFS alone, the
// command exits 130, and ISRTF's run file says it was interrupted.
func TestReplayInterrupted(t *testing.T) {
	dir := t.TempDir()
	tr := filepath.Join(dir, "t.json")
	// 40 requests over about 20 s, in real time: FCFS's replay, then
	// ISRTF's, which is interrupted once it has begun.
	if code, out := elis(t, "trace", "gen", "--n", "40", "--arrivals", "poisson:2", "--prompt", "uniform:8:16", "--output", "uniform:2:4", "-o", tr); code != 0 {
		t.Fatalf("trace gen: %d %s", code, out)
	}
	cmd := boundedCommand(t, binary(t), "replay", tr, "--model", "tiny", "--policy", "fcfs,isrtf", "--time-scale", "0.2", "--out", filepath.Join(dir, "out"))
	var out syncBuilder
	cmd.Stdout = &out
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	rd := bufio.NewReader(stderr)
	for { // until ISRTF's replay begins
		line, err := rd.ReadString('\n')
		out.Write([]byte(line))
		if strings.HasPrefix(line, "elis-sim replay: isrtf:") {
			break
		}
		if err != nil {
			t.Fatalf("replay: %v\n%s", err, out.String())
		}
	}
	cmd.Process.Signal(syscall.SIGINT)
	io.Copy(&out, rd)
	err = cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 130 {
		t.Fatalf("interrupted replay: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "interrupted: isrtf: ") || strings.Contains(out.String(), "Δisrtf") {
		t.Fatalf("the interrupted ISRTF run was tabled beside FCFS:\n%s", out.String())
	}
	run, err := report.ReadRun(filepath.Join(dir, "out", "isrtf.json"))
	if err != nil || run.Setup["interrupted"] == "" {
		t.Fatalf("ISRTF's run file: %v %v", err, run)
	}
}

// replay reads --policy with run's grammar: modes and guards per entry
// (it used to call "isrtf+eager" an unknown policy).
func TestReplayPolicyGrammar(t *testing.T) {
	tr := filepath.Join(t.TempDir(), "t.json")
	if code, out := elis(t, "trace", "gen", "--n", "10", "--arrivals", "poisson:1000", "--prompt", "uniform:8:16", "--output", "uniform:2:8", "-o", tr); code != 0 {
		t.Fatalf("trace gen: %d %s", code, out)
	}
	code, out := elis(t, "replay", tr, "--model", "tiny", "--policy", "isrtf+eager,isrtf/patch+sync")
	if code != 0 || !strings.Contains(out, "isrtf+eager") || !strings.Contains(out, "Δisrtf/patch+sync") {
		t.Fatalf("replay with guards: exit %d\n%s", code, out)
	}
	if code, out := elis(t, "replay", tr, "--model", "tiny", "--policy", "isrtf+warp"); code != 2 || !strings.Contains(out, "unknown guard") {
		t.Fatalf("replay with an unknown guard: exit %d\n%s", code, out)
	}
}

// Output folders the user names are made, as on a fresh clone where
// results/ does not exist yet (seven README commands failed there); bad
// input still makes nothing (TestBadInputExits2AndWritesNothing).
func TestOutputFoldersAreMade(t *testing.T) {
	dir := t.TempDir()
	p := func(name string) string { return filepath.Join(dir, name) }
	for _, args := range [][]string{
		{"run", "--out", p("results/")},
		{"run", "--policy", "isrtf", "--out", p("s1/isrtf.json")},
		{"trace", "gen", "--n", "5", "-o", p("traces/t.json")},
		{"run", p("traces/t.json"), "--plot", p("plots/jct.png")},
		{"plot", p("results/fcfs.json"), "-o", p("plots/more/cdf.png")},
	} {
		if code, out := elis(t, args...); code != 0 {
			t.Fatalf("%v: exit %d\n%s", args, code, out)
		}
	}
	for _, f := range []string{"results/fcfs.json", "results/isrtf.json", "s1/isrtf.json", "traces/t.json", "plots/jct.png", "plots/more/cdf.png"} {
		if _, err := os.Stat(p(f)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

// The README's ten-line tour runs as written, on a fresh folder: the
// binary stands in for "go run ./cmd/elis-sim", a free port for 8000,
// and the tour waits for its server to answer before benching it.
func TestReadmeTour(t *testing.T) {
	t.Parallel() // it waits on the wall clock (bench's schedule), in a process of its own
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(readme), "## A ten-line tour")
	_, rest, ok2 := strings.Cut(rest, "```sh\n")
	block, _, ok3 := strings.Cut(rest, "```")
	if !ok || !ok2 || !ok3 {
		t.Fatal("the README has no tour block")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := fmt.Sprint(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()
	var script strings.Builder
	script.WriteString("set -e\n")
	for _, line := range strings.Split(block, "\n") {
		line = strings.ReplaceAll(line, "go run ./cmd/elis-sim", binary(t))
		line = strings.ReplaceAll(line, "8000", port)
		if strings.HasPrefix(line, "kill %1") {
			line = "kill %1; wait"
		}
		script.WriteString(line + "\n")
		if strings.Contains(line, " serve ") {
			fmt.Fprintf(&script, "for i in $(seq 200); do curl -sf -m 2 http://127.0.0.1:%s/health > /dev/null && break; sleep 0.05; done\n", port)
		}
	}
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "examples"), 0o755)
	spec, _ := os.ReadFile("../../examples/sweep.yaml")
	os.WriteFile(filepath.Join(dir, "examples", "sweep.yaml"), spec, 0o644)
	// A bound on the whole tour, so that a server that would not stop fails
	// the test, saying where, instead of hanging it.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", script.String())
	cmd.Dir = dir
	cmd.WaitDelay = time.Second
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the tour failed: %v\n%s\n---\n%s", err, script.String(), out)
	}
	for _, f := range []string{"t.json", "results/fcfs.json", "results/srpt-oracle.json", "jct.png", "bench/isrtf.json"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("the tour left no %s", f)
		}
	}
}
