package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/goccy/go-yaml"
	batchv1 "k8s.io/api/batch/v1"

	"github.com/elis-sim/elis-sim/experiment"
)

const testSpec = `# a small grid: two workloads, two loads, two seeds, three policies x two intervals
workloads:
  - scenario: fcfs-vs-isrtf
  - scenario: long-output
requests: 60
seeds: 2
loads: [1, 3]
settings:
  model: llama-2-7b
axes:
  policy: [fcfs, isrtf, srpt-oracle]
  prediction-interval: [10, 50]
report:
  metrics: [jct_mean_s, jct_p99_s]
`

func specFile(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "exp.yaml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// outputs are a sweep directory's files by name (cells and reports), with
// their bytes.
func outputs(t *testing.T, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() && !strings.HasSuffix(p, ".png") {
			b, _ := os.ReadFile(p)
			rel, _ := filepath.Rel(dir, p)
			m[rel] = string(b)
		}
		return nil
	})
	return m
}

func sameOutputs(t *testing.T, a, b map[string]string, what string) {
	t.Helper()
	var names []string
	for k := range a {
		names = append(names, k)
	}
	sort.Strings(names)
	if len(a) != len(b) {
		t.Errorf("%s: %d files against %d", what, len(b), len(a))
	}
	for _, k := range names {
		if a[k] != b[k] {
			t.Errorf("%s: %s differs", what, k)
		}
	}
}

// A spec runs its grid; four shards merged give the same bytes as the
// whole run, and so does a run that was killed halfway and restarted.
func TestSpecShardsMergeAndResume(t *testing.T) {
	spec := specFile(t, testSpec)
	whole := t.TempDir()
	if code, out := elis(t, "sweep", "--spec", spec, "--parallel", "2", "-o", whole); code != 0 {
		t.Fatalf("exit %d: %s", code, out)
	}
	ref := outputs(t, whole)
	cells := 0
	for k := range ref {
		if strings.HasPrefix(k, "cells/") {
			cells++
		}
	}
	// 2 workloads x 2 loads x 2 seeds x (FCFS once, ISRTF and the oracle
	// at 2 intervals each): FCFS reads no predictor, so the interval is
	// nothing to it.
	if cells != 40 {
		t.Fatalf("%d cell records, want 40", cells)
	}
	for _, f := range []string{"fcfs-vs-isrtf/results.csv", "fcfs-vs-isrtf/summary.txt", "long-output/predictions.log", "spec.json"} {
		if ref[f] == "" {
			t.Errorf("no %s", f)
		}
	}
	if s := ref["fcfs-vs-isrtf/summary.txt"]; !strings.Contains(s, "jct_p99_s") || strings.Contains(s, "ttft_mean_s") {
		t.Errorf("the summary shows other metrics than the spec's:\n%s", s)
	}
	if csv := ref["fcfs-vs-isrtf/results.csv"]; strings.Count(csv, "\n") != 21 || !strings.Contains(csv, "isrtf prediction-interval=10") ||
		strings.Contains(csv, "fcfs prediction-interval") {
		t.Errorf("results.csv:\n%s", csv)
	}

	var shards []string
	for i := range 4 {
		dir := filepath.Join(t.TempDir(), "shard")
		if code, out := elis(t, "sweep", "--spec", spec, "--shard", []string{"0/4", "1/4", "2/4", "3/4"}[i], "-o", dir); code != 0 {
			t.Fatalf("shard %d: exit %d: %s", i, code, out)
		}
		shards = append(shards, dir)
	}
	merged := t.TempDir()
	code, out := elis(t, append([]string{"sweep", "merge", "-o", merged}, shards[:3]...)...)
	if code == 0 || !strings.Contains(out, "10 of 40 cells are missing") {
		t.Errorf("merge of 3 shards of 4: exit %d, %s", code, out)
	}
	if _, err := os.Stat(filepath.Join(merged, "fcfs-vs-isrtf", "results.csv")); err == nil {
		t.Error("a merge with missing cells wrote results")
	}
	if code, out := elis(t, append([]string{"sweep", "merge", "-o", merged}, shards...)...); code != 0 {
		t.Fatalf("merge: exit %d: %s", code, out)
	}
	sameOutputs(t, ref, outputs(t, merged), "four shards merged")

	// Killed halfway: half the cells recorded, one record half-written
	// (a temporary file, as the atomic write leaves it), no reports.
	killed := t.TempDir()
	if code, out := elis(t, "sweep", "--spec", spec, "--shard", "0/2", "-o", killed); code != 0 {
		t.Fatalf("exit %d: %s", code, out)
	}
	os.WriteFile(filepath.Join(killed, "cells", ".0123.json.tmp42"), []byte(`{"key": "01`), 0o644)
	if code, out := elis(t, "sweep", "--spec", spec, "-o", killed); code != 0 || !strings.Contains(out, "20 run, 20 already done") {
		t.Fatalf("restart: exit %d: %s", code, out)
	}
	os.Remove(filepath.Join(killed, "cells", ".0123.json.tmp42"))
	sameOutputs(t, ref, outputs(t, killed), "killed and restarted")

	// A cell file edited by hand is bad input: named, exit 2, no report.
	cellFiles, _ := filepath.Glob(filepath.Join(shards[0], "cells", "*.json"))
	os.WriteFile(cellFiles[0], []byte("garbage"), 0o644)
	damaged := filepath.Join(t.TempDir(), "m")
	code, out = elis(t, append([]string{"sweep", "merge", "-o", damaged}, shards...)...)
	if code != 2 || !strings.Contains(out, cellFiles[0]+": not a cell record") {
		t.Errorf("merge with a damaged cell: exit %d, %s", code, out)
	}
	if _, err := os.Stat(damaged); err == nil {
		t.Error("a merge with a damaged cell wrote a directory")
	}
}

// A changed axis reruns only the cells it changes.
func TestSpecRerunsOnlyWhatChanged(t *testing.T) {
	dir := t.TempDir()
	small := strings.Replace(testSpec, "  - scenario: long-output\n", "", 1)
	if code, out := elis(t, "sweep", "--spec", specFile(t, small), "-o", dir); code != 0 {
		t.Fatalf("exit %d: %s", code, out)
	}
	wider := strings.Replace(small, "loads: [1, 3]", "loads: [1, 3, 5]", 1)
	if code, out := elis(t, "sweep", "--spec", specFile(t, wider), "-o", dir); code != 0 || !strings.Contains(out, "10 run, 20 already done") {
		t.Fatalf("exit %d: %s", code, out)
	}
}

// A malformed spec fails before any run, naming its line, and writes
// nothing.
func TestSpecErrorsNameTheLine(t *testing.T) {
	for _, c := range []struct{ from, to, want string }{
		{"requests: 60", "request: 60", `exp.yaml:5:1: unknown field "request"`},
		{"model: llama-2-7b", "modle: llama-2-7b", "exp.yaml:9: settings: modle: not a flag of elis-sim run"},
		{"model: llama-2-7b", "model: llama-9", `exp.yaml:9: cell "fcfs": --model/--gpu/--stack/--tp: unknown model "llama-9"`},
		{"prediction-interval: [10, 50]", "prediction-interval: [10, often]", `exp.yaml:12: axes: prediction-interval: "often": want a whole number`},
		{"policy: [fcfs, isrtf, srpt-oracle]", "policy: [fcfs, isrft]", `exp.yaml:11: cell "isrft": --policy: unknown policy "isrft"`},
		{"scenario: long-output", "scenario: long-outptu", `exp.yaml:4: workloads: scenario "long-outptu": valid are`},
		{"seeds: 2", "seed: 2", `exp.yaml:6:1: unknown field "seed"`},
		{"  model: llama-2-7b", "  seed: 3", "exp.yaml:9: settings: seed is set by the spec's seeds"},
	} {
		out := filepath.Join(t.TempDir(), "out")
		code, msg := elis(t, "sweep", "--spec", specFile(t, strings.Replace(testSpec, c.from, c.to, 1)), "-o", out)
		if code != 2 || !strings.Contains(msg, c.want) {
			t.Errorf("%s: exit %d, %s\nwant exit 2 and %s", c.to, code, msg, c.want)
		}
		if _, err := os.Stat(out); err == nil {
			t.Errorf("%s: output written", c.to)
		}
	}
	if code, msg := elis(t, "sweep", "--spec", specFile(t, testSpec), "--loads", "1", "-o", t.TempDir()); code != 2 || !strings.Contains(msg, "--loads: with --spec") {
		t.Errorf("--loads beside --spec: exit %d, %s", code, msg)
	}
}

// The same grid as JSON gives the same cells.
func TestSpecJSON(t *testing.T) {
	y := specFile(t, strings.Replace(testSpec, "  - scenario: long-output\n", "", 1))
	var v any
	data, _ := os.ReadFile(y)
	if err := yaml.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	js, _ := json.Marshal(v)
	j := filepath.Join(t.TempDir(), "exp.json")
	os.WriteFile(j, js, 0o644)
	a, b := t.TempDir(), t.TempDir()
	for _, r := range [][2]string{{y, a}, {j, b}} {
		if code, out := elis(t, "sweep", "--spec", r[0], "-o", r[1]); code != 0 {
			t.Fatalf("%s: exit %d: %s", r[0], code, out)
		}
	}
	ra, rb := outputs(t, a), outputs(t, b)
	delete(ra, "spec.json")
	delete(rb, "spec.json")
	sameOutputs(t, ra, rb, "JSON against YAML")
}

// The README's batch-system examples, as far as this machine allows: the
// Slurm script runs as an array task with the variables set by hand, and
// the Kubernetes manifest is a valid batch/v1 Indexed Job whose command,
// run with the index it would get, shards as the manifest says.
func TestBatchSystemExamples(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash")
	}
	bin := binary(t)
	spec := specFile(t, strings.Replace(testSpec, "  - scenario: long-output\n", "", 1))
	res := t.TempDir()
	for id := 1; id <= 3; id++ {
		cmd := exec.Command("bash", "../../examples/slurm-sweep.sh", spec, res)
		cmd.Env = append(os.Environ(), "ELIS_SIM="+bin, "SLURM_ARRAY_TASK_ID="+string(rune('0'+id)), "SLURM_ARRAY_TASK_MIN=1",
			"SLURM_ARRAY_TASK_COUNT=3", "SLURM_CPUS_PER_TASK=2")
		want := fmt.Sprintf("shard %d/3: %d of 20 cells", id-1, []int{7, 7, 6}[id-1])
		if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), want) {
			t.Fatalf("array task %d: %v\n%s", id, err, out)
		}
	}
	if out, err := exec.Command(bin, "sweep", "merge", filepath.Join(res, "shard-1"), filepath.Join(res, "shard-2"), filepath.Join(res, "shard-3"),
		"-o", filepath.Join(res, "all")).CombinedOutput(); err != nil {
		t.Fatalf("merge: %v\n%s", err, out)
	}

	data, err := os.ReadFile("../../examples/k8s-sweep-job.yaml")
	if err != nil {
		t.Fatal(err)
	}
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	var job batchv1.Job
	if err := dec.Decode(&job); err != nil {
		t.Fatalf("the manifest is not a batch/v1 Job: %v", err)
	}
	if job.APIVersion != "batch/v1" || job.Kind != "Job" || job.Spec.CompletionMode == nil || *job.Spec.CompletionMode != batchv1.IndexedCompletion || job.Spec.Completions == nil {
		t.Fatalf("not an Indexed Job: %+v", job.Spec)
	}
	n := int(*job.Spec.Completions)
	args := job.Spec.Template.Spec.Containers[0].Command
	if args[0] != "elis-sim" {
		t.Fatalf("command %v", args)
	}
	// Run each index's command as the pod would, with the spec and the
	// results volume mapped here.
	kres := t.TempDir()
	var dirs []string
	for i := range n {
		idx := string(rune('0' + i))
		var run []string
		for _, a := range args[1:] {
			a = strings.ReplaceAll(a, "$(JOB_COMPLETION_INDEX)", idx)
			a = strings.Replace(a, "/spec/sweep.yaml", spec, 1)
			a = strings.Replace(a, "/results", kres, 1)
			run = append(run, a)
		}
		cmd := exec.Command(bin, run...)
		cmd.Env = append(os.Environ(), "JOB_COMPLETION_INDEX="+idx)
		if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "shard "+idx+"/4: 5 of 20 cells") {
			t.Fatalf("index %d: %v\n%s", i, err, out)
		}
		dirs = append(dirs, filepath.Join(kres, "shard-"+idx))
	}
	if out, err := exec.Command(bin, append([]string{"sweep", "merge", "-o", filepath.Join(kres, "all")}, dirs...)...).CombinedOutput(); err != nil {
		t.Fatalf("merge: %v\n%s", err, out)
	}
	a, _ := os.ReadFile(filepath.Join(res, "all", "fcfs-vs-isrtf", "results.csv"))
	b, _ := os.ReadFile(filepath.Join(kres, "all", "fcfs-vs-isrtf", "results.csv"))
	if len(a) == 0 || !bytes.Equal(a, b) {
		t.Error("Slurm's and Kubernetes' merged results differ")
	}
}

// The example specs and docs/sweep.md's are valid, and docs/sweep.md's is the
// example file's.
func TestExampleSpecs(t *testing.T) {
	for _, p := range []string{"../../examples/sweep.yaml", "../../examples/sweep-10k.yaml"} {
		s, err := experiment.Parse(p)
		if err == nil {
			err = s.Check(p, experiment.CheckSetting)
		}
		if err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
	readme, _ := os.ReadFile("../../docs/sweep.md")
	_, block, ok := strings.Cut(string(readme), "```yaml\n")
	block, _, _ = strings.Cut(block, "```")
	file, _ := os.ReadFile("../../examples/sweep.yaml")
	strip := func(s string) string {
		var out []string
		for _, l := range strings.Split(s, "\n") {
			if l, _, _ = strings.Cut(l, "#"); strings.TrimSpace(l) != "" {
				out = append(out, strings.TrimRight(l, " "))
			}
		}
		return strings.Join(out, "\n")
	}
	if !ok || strip(block) != strip(string(file)) {
		t.Errorf("docs/sweep.md's spec is not examples/sweep.yaml:\n%s\n---\n%s", strip(block), strip(string(file)))
	}
}

// Trace workloads: a path relative to the spec, loads that scale the
// arrivals, the engine's own batch limits (not the paper's 4), and two
// traces under the same settings each run on its own requests.
func TestSpecTraceWorkload(t *testing.T) {
	dir := t.TempDir()
	for i, name := range []string{"t.jsonl", "u.jsonl"} {
		if code, out := elis(t, "trace", "gen", "--n", strconv.Itoa(80+40*i), "--seed", "3", "-o", filepath.Join(dir, name)); code != 0 {
			t.Fatalf("trace gen: exit %d: %s", code, out)
		}
	}
	spec := filepath.Join(dir, "exp.yaml")
	os.WriteFile(spec, []byte("workloads:\n  - trace: t.jsonl\n  - trace: u.jsonl\nseeds: 1\nloads: [1, 4]\naxes:\n  policy: [fcfs, isrtf]\n"), 0o644)
	t.Chdir(t.TempDir())
	code, out := elis(t, "sweep", "--spec", spec, "-o", "out")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, out)
	}
	for name, requests := range map[string]string{"t": ",80,", "u": ",120,"} {
		csv, err := os.ReadFile(filepath.Join("out", name, "results.csv"))
		if err != nil || strings.Count(string(csv), "\n") != 5 || strings.Count(string(csv), requests) != 4 {
			t.Fatalf("%s/results.csv: %v\n%s", name, err, csv)
		}
	}
	if strings.Contains(out, "max 4 seqs") {
		t.Errorf("a trace ran at the paper's batch of 4:\n%s", out)
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built.path != "" {
		os.RemoveAll(filepath.Dir(built.path))
	}
	os.Exit(code)
}

var built struct {
	once sync.Once
	path string
	err  error
	out  []byte
}

// binary builds elis-sim once for the tests that run it as a user does.
func binary(t *testing.T) string {
	t.Helper()
	built.once.Do(func() {
		dir, err := os.MkdirTemp("", "elis-sim-bin")
		if err != nil {
			built.err = err
			return
		}
		built.path = filepath.Join(dir, "elis-sim")
		built.out, built.err = exec.Command("go", "build", "-o", built.path, ".").CombinedOutput()
	})
	if built.err != nil {
		t.Fatalf("go build: %v\n%s", built.err, built.out)
	}
	return built.path
}

// A sweep killed (SIGKILL, mid-write for all it knows) and restarted
// finishes with the bytes of one that ran through.
func TestSpecKilledAndRestarted(t *testing.T) {
	bin := binary(t)
	spec := specFile(t, strings.Replace(testSpec, "requests: 60", "requests: 1500", 1))
	ref, killed := t.TempDir(), t.TempDir()
	if out, err := exec.Command(bin, "sweep", "--spec", spec, "--parallel", "2", "-o", ref).CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	cmd := exec.Command(bin, "sweep", "--spec", spec, "--parallel", "2", "-o", killed)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	// Kill it once some cells are recorded (if it finishes first, the
	// restart has nothing to do and the check still holds).
	n := 0
	for n < 5 {
		select {
		case <-exited:
			n = 1 << 30
			continue
		default:
		}
		cells, _ := os.ReadDir(filepath.Join(killed, "cells"))
		n = len(cells)
		time.Sleep(5 * time.Millisecond) // leave the cores to the sweep
	}
	cmd.Process.Kill()
	<-exited
	done, _ := os.ReadDir(filepath.Join(killed, "cells"))
	t.Logf("killed with %d of 40 cells recorded", len(done))
	if out, err := exec.Command(bin, "sweep", "--spec", spec, "-o", killed).CombinedOutput(); err != nil {
		t.Fatalf("restart: %v\n%s", err, out)
	}
	got := outputs(t, killed)
	for k := range got {
		if strings.HasPrefix(filepath.Base(k), ".") {
			delete(got, k) // a temporary file the kill left behind
		}
	}
	sameOutputs(t, outputs(t, ref), got, "killed and restarted")
}

// The plots a spec asks for are the ones drawn, and the closing line
// names only what was written.
func TestSpecPlotsAsked(t *testing.T) {
	spec := specFile(t, strings.Replace(strings.Replace(testSpec, "  - scenario: long-output\n", "", 1),
		"report:\n", "report:\n  plots: [load]\n", 1))
	out := t.TempDir()
	code, text := elis(t, "sweep", "--spec", spec, "-o", out)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, text)
	}
	files, _ := os.ReadDir(filepath.Join(out, "fcfs-vs-isrtf"))
	var names []string
	for _, f := range files {
		names = append(names, f.Name())
	}
	if strings.Join(names, " ") != "load.png results.csv summary.txt" || !strings.Contains(text, "fcfs-vs-isrtf/{results.csv,summary.txt,load.png}\n") {
		t.Fatalf("files %v; said:\n%s", names, text)
	}
}

// A workload's summary says what its cells vary (its setup line is the
// first cell's) and, after a merge with --allow-missing, how many cells
// its rows leave out.
func TestSweepSummarySaysAxesAndMissingCells(t *testing.T) {
	spec := specFile(t, testSpec)
	shard, merged := t.TempDir(), t.TempDir()
	if code, out := elis(t, "sweep", "--spec", spec, "--shard", "0/3", "-o", shard); code != 0 {
		t.Fatalf("shard: exit %d: %s", code, out)
	}
	if code, out := elis(t, "sweep", "merge", shard, "--allow-missing", "-o", merged); code != 0 {
		t.Fatalf("merge: exit %d: %s", code, out)
	}
	b, err := os.ReadFile(filepath.Join(merged, "fcfs-vs-isrtf", "summary.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if s := string(b); !strings.Contains(s, "swept --prediction-interval: 10, 50") || !regexp.MustCompile(`missing: \d+ of \d+ cells have no record`).MatchString(s) {
		t.Fatalf("summary.txt:\n%s", s)
	}
}
