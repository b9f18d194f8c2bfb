package experiment

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// The malformed specs of testdata/bad-specs.txt each fail with their line.
func TestParseRejectsMalformedSpecs(t *testing.T) {
	data, err := os.ReadFile("testdata/bad-specs.txt")
	if err != nil {
		t.Fatal(err)
	}
	var cases []string
	for _, c := range strings.Split(string(data), "\n----\n") {
		cases = append(cases, c)
	}
	for _, c := range cases {
		lines := strings.Split(strings.TrimSpace(c), "\n")
		for len(lines) > 0 && strings.HasPrefix(lines[0], "#") {
			lines = lines[1:]
		}
		name, body := lines[0], lines[1:]
		want := strings.TrimPrefix(body[len(body)-1], "want: ")
		body = body[:len(body)-1]
		t.Run(name, func(t *testing.T) {
			t.Chdir(t.TempDir())
			if err := os.WriteFile("spec.yaml", []byte(strings.Join(body, "\n")+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Parse("spec.yaml")
			if err == nil || !strings.HasPrefix(err.Error(), want) {
				t.Errorf("error %v\nwant %s", err, want)
			}
		})
	}
}

func writeSpec(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "exp.yaml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

const gridSpec = `
workloads:
  - scenario: s
seeds: 2
loads: [1, 2]
settings:
  model: m
axes:
  policy: [fcfs, isrtf]
  predictor: ["noisy:mae=10", "noisy:mae=40"]
`

func cellsOf(t *testing.T, text, version string) []Cell {
	t.Helper()
	s, err := Parse(writeSpec(t, text))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Resolve(); err != nil {
		t.Fatal(err)
	}
	g := Grid{Version: version, Ignores: func(c *Cell, flag string) bool { return flag == "predictor" && c.Policy() == "fcfs" }}
	return g.Cells(s)
}

// The grid is loads x seeds x axes, with a policy that ignores an axis run
// once; labels name what varies.
func TestCellsExpandTheGrid(t *testing.T) {
	cells := cellsOf(t, gridSpec, "v1")
	var got []string
	for _, c := range cells {
		got = append(got, fmt.Sprintf("%g/%d/%s", c.Load, c.Seed, c.Label()))
	}
	want := "1/1/fcfs 1/1/isrtf mae=10 1/1/isrtf mae=40 1/2/fcfs 1/2/isrtf mae=10 1/2/isrtf mae=40 " +
		"2/1/fcfs 2/1/isrtf mae=10 2/1/isrtf mae=40 2/2/fcfs 2/2/isrtf mae=10 2/2/isrtf mae=40"
	if g := strings.Join(got, " "); g != want {
		t.Errorf("cells:\n%s\nwant\n%s", g, want)
	}
	for i, c := range cells {
		if c.Index != i || c.Get("model") != "m" {
			t.Errorf("cell %d: index %d, model %q", i, c.Index, c.Get("model"))
		}
	}
}

// A key changes with what determines a result and nothing else: a new
// axis value adds cells and keeps the others' keys; a new binary changes
// them all.
func TestKeysFollowWhatDeterminesTheResult(t *testing.T) {
	keys := func(cells []Cell) map[string]bool {
		m := map[string]bool{}
		for _, c := range cells {
			m[c.Key] = true
		}
		return m
	}
	a := keys(cellsOf(t, gridSpec, "v1"))
	if len(a) != 12 {
		t.Fatalf("%d distinct keys for 12 cells", len(a))
	}
	if b := keys(cellsOf(t, gridSpec, "v1")); fmt.Sprint(a) != fmt.Sprint(b) {
		t.Error("the same spec gave other keys")
	}
	more := strings.Replace(gridSpec, `"noisy:mae=40"]`, `"noisy:mae=40", "noisy:mae=80"]`, 1)
	b := keys(cellsOf(t, more, "v1"))
	kept := 0
	for k := range a {
		if b[k] {
			kept++
		}
	}
	if kept != 12 || len(b) != 16 {
		t.Errorf("a third MAE: %d of 12 keys kept, %d cells; want 12 and 16", kept, len(b))
	}
	// Key order in the file and comments do not matter; a setting does.
	reordered := strings.Replace(gridSpec, "seeds: 2\nloads: [1, 2]", "loads: [1, 2] # loads\nseeds: 2", 1)
	if c := keys(cellsOf(t, reordered, "v1")); fmt.Sprint(a) != fmt.Sprint(c) {
		t.Error("reordering the file changed keys")
	}
	for k := range keys(cellsOf(t, strings.Replace(gridSpec, "model: m", "model: n", 1), "v1")) {
		if a[k] {
			t.Error("another model kept a key")
		}
	}
	for k := range keys(cellsOf(t, gridSpec, "v2")) {
		if a[k] {
			t.Error("another binary kept a key")
		}
	}
}

// A trace workload's key is its content's, not its name's.
func TestTraceKeyIsItsContent(t *testing.T) {
	dir := t.TempDir()
	tr := filepath.Join(dir, "t.jsonl")
	spec := "workloads:\n  - trace: " + tr + "\nseeds: 1\n"
	key := func(content string) string {
		if err := os.WriteFile(tr, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return cellsOf(t, spec, "v1")[0].Key
	}
	a, b, c := key("x\n"), key("y\n"), key("x\n")
	if a == b || a != c {
		t.Errorf("keys %s %s %s: want the first and last equal, the middle other", a, b, c)
	}
}

// Shards partition the grid: every cell in exactly one.
func TestShardsPartitionTheGrid(t *testing.T) {
	cells := cellsOf(t, gridSpec, "v1")
	for _, n := range []int{1, 2, 3, 5, 12, 20} {
		count := make([]int, len(cells))
		for i := 0; i < n; i++ {
			s, err := ParseShard(fmt.Sprintf("%d/%d", i, n))
			if err != nil {
				t.Fatal(err)
			}
			for j := range cells {
				if s.Has(&cells[j]) {
					count[j]++
				}
			}
		}
		for j, k := range count {
			if k != 1 {
				t.Errorf("%d shards: cell %d in %d", n, j, k)
			}
		}
	}
	for _, bad := range []string{"4/4", "-1/4", "1", "a/b", "0/0"} {
		if _, err := ParseShard(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestShardFromEnv(t *testing.T) {
	env := func(kv ...string) func(string) string {
		m := map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return func(k string) string { return m[k] }
	}
	for _, c := range []struct {
		env     func(string) string
		count   int
		want    Shard
		ok, bad bool
	}{
		{env(), 0, Shard{}, false, false},
		{env("SLURM_ARRAY_TASK_ID", "2", "SLURM_ARRAY_TASK_COUNT", "4"), 0, Shard{2, 4}, true, false},
		{env("SLURM_ARRAY_TASK_ID", "4", "SLURM_ARRAY_TASK_MIN", "1", "SLURM_ARRAY_TASK_COUNT", "4"), 0, Shard{3, 4}, true, false},
		{env("SLURM_ARRAY_TASK_ID", "4", "SLURM_ARRAY_TASK_COUNT", "4"), 0, Shard{}, true, true},
		{env("JOB_COMPLETION_INDEX", "1"), 3, Shard{1, 3}, true, false},
		{env("JOB_COMPLETION_INDEX", "1"), 0, Shard{}, true, true},
	} {
		s, ok, err := ShardFromEnv(c.env, c.count)
		if ok != c.ok || (err != nil) != c.bad || (!c.bad && s != c.want) {
			t.Errorf("got %v %v %v, want %v %v (error: %v)", s, ok, err, c.want, c.ok, c.bad)
		}
	}
}

// A sweep that stops halfway (here: its run fails at the seventh cell)
// keeps what finished and, rerun, runs only the rest; Gather then finds
// every cell.
func TestRunResumes(t *testing.T) {
	cells := cellsOf(t, gridSpec, "v1")
	store := Store{Dir: t.TempDir()}
	var calls atomic.Int32
	fn := func(c *Cell) (*Record, error) {
		if calls.Add(1) == 7 {
			return nil, fmt.Errorf("killed")
		}
		return &Record{Label: c.Label(), Load: c.Load, Seed: c.Seed}, nil
	}
	st, err := Run(store, cells, 1, fn, nil)
	if err == nil || st.Ran != 6 {
		t.Fatalf("first run: %+v, %v; want 6 cells and the error", st, err)
	}
	if missing := Missing([]Store{store}, cells); len(missing) != 6 {
		t.Errorf("%d missing after the failure, want 6", len(missing))
	}
	st, err = Run(store, cells, 2, fn, nil)
	if err != nil || st.Ran != 6 || st.Cached != 6 {
		t.Fatalf("rerun: %+v, %v; want 6 run and 6 cached", st, err)
	}
	var recs []*Record
	err = Gather([]Store{store}, cells, func(r *Record) error { recs = append(recs, r); return nil })
	if err != nil || len(Missing([]Store{store}, cells)) != 0 || len(recs) != 12 {
		t.Fatalf("gather: %d records, %v", len(recs), err)
	}
	for i, r := range recs {
		if r.Key != cells[i].Key {
			t.Errorf("record %d has key %s, want %s", i, r.Key, cells[i].Key)
		}
	}
}

// A record file that is not one is an error naming it, not a silent rerun.
func TestStoreRefusesForeignFiles(t *testing.T) {
	store := Store{Dir: t.TempDir()}
	if err := os.MkdirAll(filepath.Join(store.Dir, "cells"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(store.Dir, "cells", "abc.json"), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := store.Get("abc"); err == nil || !strings.Contains(err.Error(), "abc.json") {
		t.Errorf("error %v, want one naming the file", err)
	}
}

// FuzzParse: any input is a spec or an error, never a panic.
func FuzzParse(f *testing.F) {
	f.Add([]byte(gridSpec))
	data, _ := os.ReadFile("testdata/bad-specs.txt")
	for _, c := range strings.Split(string(data), "\n----\n") {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p := filepath.Join(t.TempDir(), "f.yaml")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		s, err := Parse(p)
		if err == nil && len(s.Workloads) == 0 {
			t.Error("a spec without workloads parsed")
		}
	})
}

// A manifest without its spec (an edited spec.json) is refused with its
// path and the reason, not a "<nil>".
func TestManifestWithoutSpec(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "spec.json"), []byte(`{"version": "x"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Store{Dir: dir}.ReadManifest()
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "spec.json")+`: no "spec"`) {
		t.Fatalf("%v", err)
	}
}
