package traces

import (
	"fmt"
	"io"
	"sort"

	"gonum.org/v1/gonum/stat"
)

// Dist summarises a token-count distribution.
type Dist struct {
	Mean float64 `json:"mean"`
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	Max  float64 `json:"max"`
}

// Stats summarises a trace.
type Stats struct {
	Requests int     `json:"requests"`
	Duration float64 `json:"duration_s"`
	Rate     float64 `json:"rate_rps"`
	// GapCV is the coefficient of variation of inter-arrival times: 1 for
	// Poisson, above 1 for bursty arrivals.
	GapCV  float64 `json:"interarrival_cv"`
	Prompt Dist    `json:"prompt_tokens"`
	Output Dist    `json:"output_tokens"`
}

// Summarize computes the statistics of t, whose requests are in arrival
// order. Percentiles are empirical (the smallest value with at least that
// fraction of values at or below it).
func Summarize(t *Trace) Stats {
	n := len(t.Requests)
	s := Stats{Requests: n, Duration: t.Duration(), Rate: t.Rate()}
	if n == 0 {
		return s
	}
	if n > 2 {
		gaps := make([]float64, n-1)
		for i := 1; i < n; i++ {
			gaps[i-1] = t.Requests[i].Arrival - t.Requests[i-1].Arrival
		}
		mean, std := stat.MeanStdDev(gaps, nil)
		if mean > 0 {
			s.GapCV = std / mean
		}
	}
	in := make([]float64, n)
	out := make([]float64, n)
	for i, r := range t.Requests {
		in[i], out[i] = float64(r.PromptTokens), float64(r.OutputTokens)
	}
	s.Prompt, s.Output = summarizeDist(in), summarizeDist(out)
	return s
}

func summarizeDist(x []float64) Dist {
	sort.Float64s(x)
	q := func(p float64) float64 { return stat.Quantile(p, stat.Empirical, x, nil) }
	return Dist{Mean: stat.Mean(x, nil), P50: q(0.5), P90: q(0.9), P99: q(0.99), Max: x[len(x)-1]}
}

// WriteText writes the statistics as the table "elis-sim trace stats"
// prints, for the trace called name.
func (s Stats) WriteText(w io.Writer, name string) error {
	fmt.Fprintf(w, "trace %s\n", name)
	fmt.Fprintf(w, "  requests        %d\n", s.Requests)
	fmt.Fprintf(w, "  duration        %.1f s\n", s.Duration)
	fmt.Fprintf(w, "  mean rate       %.4g req/s\n", s.Rate)
	fmt.Fprintf(w, "  inter-arrival   CV %.3f\n", s.GapCV)
	fmt.Fprintf(w, "  %-14s %9s %8s %8s %8s %8s\n", "tokens", "mean", "p50", "p90", "p99", "max")
	for _, row := range []struct {
		n string
		d Dist
	}{{"prompt", s.Prompt}, {"output", s.Output}} {
		fmt.Fprintf(w, "  %-14s %9.1f %8.0f %8.0f %8.0f %8.0f\n", row.n, row.d.Mean, row.d.P50, row.d.P90, row.d.P99, row.d.Max)
	}
	return nil
}
