package main

import (
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkRunMillion is the scale record: the CLI's whole path (read the
// trace, fit the predictor, simulate, summarise) on 1,000,000 requests of
// Poisson 10 req/s with default flags. Issue 26's targets, against the
// build before it: FCFS 5x faster, ISRTF 3x, peak RSS no higher (measure
// that with /usr/bin/time -v on the CLI). docs/development.md has today's.
func BenchmarkRunMillion(b *testing.B) {
	dir := b.TempDir()
	trace := filepath.Join(dir, "m.jsonl")
	devnull, _ := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	stdout := os.Stdout
	os.Stdout = devnull
	defer func() { os.Stdout = stdout }()
	if code := run([]string{"elis-sim", "trace", "gen", "--n", "1000000", "--arrivals", "poisson:10", "-o", trace}); code != 0 {
		b.Fatalf("trace gen: exit %d", code)
	}
	for _, pol := range []string{"fcfs", "isrtf"} {
		b.Run(pol, func(b *testing.B) {
			for b.Loop() {
				if code := run([]string{"elis-sim", "run", trace, "--policy", pol, "--json"}); code != 0 {
					b.Fatalf("exit %d", code)
				}
			}
		})
	}
}
