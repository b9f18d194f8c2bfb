package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// run reads a JSONL trace as it goes, a JSON one whole, and one whose
// arrivals go back whole too: the same runs, to the byte, but for the
// trace's name.
func TestRunReadsAJSONLTraceAsItGoes(t *testing.T) {
	dir := t.TempDir()
	js, jsl := filepath.Join(dir, "t.json"), filepath.Join(dir, "t.jsonl")
	for _, p := range []string{js, jsl} {
		if code, out := elis(t, "trace", "gen", "--n", "3000", "--arrivals", "poisson:20", "--seed", "9", "-o", p); code != 0 {
			t.Fatalf("trace gen: exit %d: %s", code, out)
		}
	}
	// The same requests, the first two lines after the header swapped.
	b, err := os.ReadFile(jsl)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(b), "\n")
	lines[1], lines[2] = lines[2], lines[1]
	back := filepath.Join(dir, "b.jsonl")
	if err := os.WriteFile(back, []byte(strings.Join(lines, "")), 0o644); err != nil {
		t.Fatal(err)
	}
	runOf := func(path string) string {
		code, out := elis(t, "run", path, "--policy", "fcfs,priority,sjf-oracle", "--kv-blocks", "600", "--json")
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", path, code, out)
		}
		return strings.ReplaceAll(out, path, "TRACE")
	}
	want := runOf(js)
	if got := runOf(jsl); got != want {
		t.Fatalf("the streamed trace's runs differ from the loaded one's:\n%s\n%s", got, want)
	}
	if got := runOf(back); got != want {
		t.Fatalf("the trace read whole after its stream went back differs from the loaded one:\n%s\n%s", got, want)
	}
}
