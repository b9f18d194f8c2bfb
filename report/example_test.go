package report_test

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/elis-sim/elis-sim/policies"
	"github.com/elis-sim/elis-sim/report"
)

// Read a run file, as compare and plot do: its label, its setup, its
// summary and, when it kept them, every request's record. Here one is
// written first from two records (elis-sim run --out writes them).
func Example() {
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "isrtf.json")
	recs := []policies.Record{
		{ID: "a", Arrival: 0, FirstScheduled: 0, FirstToken: 0.2, Finish: 2.2, PromptTokens: 100, OutputTokens: 50, Generated: 50},
		{ID: "b", Arrival: 1, FirstScheduled: 1.5, FirstToken: 1.7, Finish: 3.7, PromptTokens: 40, OutputTokens: 80, Generated: 80},
	}
	run := &report.Run{Label: "isrtf", Setup: map[string]string{"source": "sim"}, Summary: report.Summarize(recs, nil), Records: recs}
	if err := report.WriteRun(path, run); err != nil {
		fmt.Println(err)
		return
	}

	r, err := report.ReadRun(path)
	if err != nil {
		fmt.Println(err)
		return
	}
	s := r.Summary
	fmt.Printf("%s (%s): %d requests, mean JCT %.2f s, mean TTFT %.2f s, mean queueing %.2f s\n",
		r.Label, r.Setup["source"], s.Requests, s.JCT.Mean, s.TTFT.Mean, s.Queue.Mean)
	for _, rec := range r.Records {
		fmt.Printf("%s: %d tokens in %.1f s\n", rec.ID, rec.Generated, rec.Finish-rec.Arrival)
	}
	// Output:
	// isrtf (sim): 2 requests, mean JCT 2.45 s, mean TTFT 0.45 s, mean queueing 0.25 s
	// a: 50 tokens in 2.2 s
	// b: 80 tokens in 2.7 s
}
