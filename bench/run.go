package bench

import (
	"fmt"
	"io"
	"math"
	"strings"

	"github.com/elis-sim/elis-sim/report"
)

// Run is the result as a run file labelled label, for a trace described
// by desc, sent as cfg says: records, summary, and what the servers'
// metrics said (preemptions come from there: a client cannot see them).
func (res *Result) Run(label, desc string, cfg Config) *report.Run {
	endpoint := cfg.Endpoint
	if endpoint == "" {
		endpoint = "completions"
	}
	summary := fmt.Sprintf("setup: bench %s | %s | model %s, endpoint %s, time scale %g, %s lengths",
		desc, strings.Join(cfg.URLs, ", "), cfg.Model, endpoint, cfg.TimeScale,
		map[bool]string{false: "forced", true: "free"}[cfg.FreeLengths])
	setup := map[string]string{"source": "bench", "summary": summary, "policy": label, "workload": desc,
		"engine": strings.Join(cfg.URLs, ", "), "model": cfg.Model,
		"send_lag_p50_s": fmt.Sprint(res.Lag.P50), "send_lag_p99_s": fmt.Sprint(res.Lag.P99), "send_lag_max_s": fmt.Sprint(res.Lag.Max),
		"failed": fmt.Sprint(res.Failed), "retries": fmt.Sprint(res.Retries)}
	if res.Interrupted {
		setup["interrupted"] = fmt.Sprintf("stopped early: %d of %d requests sent", res.Sent, len(res.Records))
	}
	run := report.NewRun(label, setup, res.Records, &res.Gaps, nil, report.SLO{})
	run.Server = ServerMetrics(res.Metrics)
	if p := run.Server; p != nil && p.Preemptions != nil {
		run.Summary.Preemptions = int(math.Round(*p.Preemptions))
	} else {
		run.Summary.PreemptionsUnmeasured = true // a client cannot see them
	}
	return run
}

// ServerMetrics sums the servers' scrapes: counters' changes over the
// run, gauges' peaks and means over servers and scrapes.
func ServerMetrics(scrapes []Scrape) *report.ServerMetrics {
	if len(scrapes) == 0 {
		return nil
	}
	sm := &report.ServerMetrics{}
	change := func(name string) (float64, bool) {
		total, ok := 0.0, false
		for _, s := range scrapes {
			if len(s.Samples) < 2 {
				continue
			}
			a, okA := s.Samples[0].Values[name]
			b, okB := s.Samples[len(s.Samples)-1].Values[name]
			if okA && okB {
				total += b - a
				ok = true
			}
		}
		return total, ok
	}
	gauge := func(names ...string) (peak, mean float64, ok bool) {
		n := 0
		for _, s := range scrapes {
			for _, smp := range s.Samples {
				for _, name := range names {
					if v, has := smp.Values[name]; has {
						peak = math.Max(peak, v)
						mean += v
						n++
						ok = true
						break
					}
				}
			}
		}
		if n > 0 {
			mean /= float64(n)
		}
		return peak, mean, ok
	}
	ptr := func(v float64) *float64 { return &v }
	if v, ok := change("vllm:num_preemptions_total"); ok {
		sm.Preemptions = ptr(v)
	}
	q, okQ := change("vllm:prefix_cache_queries_total")
	h, okH := change("vllm:prefix_cache_hits_total")
	if okQ && okH && q > 0 {
		sm.PrefixHitRate = ptr(h / q)
	}
	if p, _, ok := gauge("vllm:num_requests_running", "llamacpp:requests_processing"); ok {
		sm.PeakRunning = ptr(p)
	}
	if p, _, ok := gauge("vllm:num_requests_waiting", "llamacpp:requests_deferred"); ok {
		sm.PeakWaiting = ptr(p)
	}
	if _, m, ok := gauge("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc", "llamacpp:kv_cache_usage_ratio"); ok {
		sm.MeanKVUsage = ptr(m)
	}
	for i, s := range scrapes {
		for _, smp := range s.Samples {
			vals := map[string]float64{}
			for k, v := range smp.Values {
				vals[fmt.Sprintf("%s{server=%d}", k, i)] = v
			}
			sm.Series = append(sm.Series, report.MetricSample{At: smp.At, Values: vals})
		}
	}
	return sm
}

// WriteSummary writes what bench prints of a run: its setup line, the
// send lag and failures, and its table.
func (res *Result) WriteSummary(w io.Writer, run *report.Run) error {
	fmt.Fprintln(w, run.Setup["summary"])
	fmt.Fprintf(w, "send lag: p50 %.1f ms, p99 %.1f ms, max %.1f ms; failed %d of %d sent", res.Lag.P50*1e3, res.Lag.P99*1e3, res.Lag.Max*1e3, res.Failed, res.Sent)
	if res.Retries > 0 {
		fmt.Fprintf(w, "; %d resent after the server closed a kept-alive connection", res.Retries)
	}
	fmt.Fprintln(w)
	return report.SideBySide(w, []*report.Run{run})
}

// Warnings are what the user should know of a run's measurement: a
// client that fell behind its schedule, scrapes that failed, preemptions
// the servers do not count.
func (res *Result) Warnings(run *report.Run) []string {
	var out []string
	if res.Lag.P99 > 0.05 {
		out = append(out, "warning: the client fell behind its schedule (p99 send lag over 50 ms); the load was lighter than the trace's")
	}
	for _, s := range res.Metrics {
		if s.Err != "" {
			out = append(out, fmt.Sprintf("%s/metrics: %s", s.URL, s.Err))
		}
	}
	if len(res.Metrics) > 0 && run.Summary.PreemptionsUnmeasured {
		out = append(out, "preemptions not measured: the server exports no vllm:num_preemptions_total")
	}
	return out
}

// Verdict says whether the run is a result: an error when it was
// interrupted, or when more than allowed (a fraction of those sent) of
// its requests failed.
func (res *Result) Verdict(allowed float64) error {
	if res.Interrupted {
		return fmt.Errorf("interrupted: %d of %d requests sent, %d failed", res.Sent, len(res.Records), res.Failed)
	}
	if res.Failed > 0 && float64(res.Failed) > allowed*float64(res.Sent) {
		return fmt.Errorf("%d of %d requests failed (allowed: a fraction of %g; see --max-failure-rate, --allow-failures)", res.Failed, res.Sent, allowed)
	}
	return nil
}
