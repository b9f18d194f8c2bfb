package serve

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/elis-sim/elis-sim/policies"
)

// metrics are vLLM's Prometheus metrics, by vLLM's names, for what the
// core knows: queue lengths, KV cache use, preemptions, prefix cache
// queries and hits, TTFT and end-to-end latency, token counts.
type metrics struct {
	reg                          *prometheus.Registry
	running, waiting, kvUsage    *prometheus.GaugeVec
	preemptions, queries, hits   *prometheus.CounterVec
	promptToks, genToks, success *prometheus.CounterVec
	ttft, e2e                    *prometheus.HistogramVec
	model                        string
}

// vLLM's histogram buckets (vllm/v1/metrics/loggers.py).
var (
	ttftBuckets = []float64{0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0}
	e2eBuckets  = []float64{0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0}
)

func newMetrics(model string) *metrics {
	m := &metrics{reg: prometheus.NewRegistry(), model: model}
	// The process's own numbers, as vLLM's /metrics has Python's: memory,
	// descriptors, goroutines, for whoever watches the server under load.
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	labels := []string{"model_name", "engine"}
	gauge := func(name, help string) *prometheus.GaugeVec {
		g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
		m.reg.MustRegister(g)
		return g
	}
	counter := func(name, help string, extra ...string) *prometheus.CounterVec {
		c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, append(labels, extra...))
		m.reg.MustRegister(c)
		return c
	}
	hist := func(name, help string, b []float64) *prometheus.HistogramVec {
		h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: b}, labels)
		m.reg.MustRegister(h)
		return h
	}
	m.running = gauge("vllm:num_requests_running", "Number of requests in model execution batches.")
	m.waiting = gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.")
	m.kvUsage = gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.")
	m.preemptions = counter("vllm:num_preemptions_total", "Cumulative number of preemption from the engine.")
	m.queries = counter("vllm:prefix_cache_queries_total", "Prefix cache queries, in terms of number of queried tokens.")
	m.hits = counter("vllm:prefix_cache_hits_total", "Prefix cache hits, in terms of number of cached tokens.")
	m.promptToks = counter("vllm:prompt_tokens_total", "Number of prefill tokens processed.")
	m.genToks = counter("vllm:generation_tokens_total", "Number of generation tokens processed.")
	m.success = counter("vllm:request_success_total", "Count of successfully processed requests.", "finished_reason")
	m.ttft = hist("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", ttftBuckets)
	m.e2e = hist("vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.", e2eBuckets)
	return m
}

// observeCore reads engine i's queues and counters (in its goroutine);
// last holds the counters it last saw, so counters grow by the change.
func (m *metrics) observeCore(i int, core *policies.Scheduler, last *policies.Stats) {
	e := strconv.Itoa(i)
	m.running.WithLabelValues(m.model, e).Set(float64(core.Running()))
	m.waiting.WithLabelValues(m.model, e).Set(float64(core.Waiting()))
	if n := core.NumBlocks(); n > 0 {
		m.kvUsage.WithLabelValues(m.model, e).Set(1 - float64(core.FreeBlocks())/float64(n))
	}
	st := core.Stats()
	m.preemptions.WithLabelValues(m.model, e).Add(float64(st.Preemptions - last.Preemptions))
	m.queries.WithLabelValues(m.model, e).Add(float64(st.PrefixQueried - last.PrefixQueried))
	m.hits.WithLabelValues(m.model, e).Add(float64(st.PrefixHit - last.PrefixHit))
	*last = st
}

// observeRecord counts a request that ended.
func (m *metrics) observeRecord(r *policies.Record) {
	e := strconv.Itoa(r.Worker)
	if r.Rejected != "" || r.Finish < 0 {
		m.success.WithLabelValues(m.model, e, "abort").Inc()
		return
	}
	m.success.WithLabelValues(m.model, e, "length").Inc()
	m.promptToks.WithLabelValues(m.model, e).Add(float64(r.PromptTokens))
	m.genToks.WithLabelValues(m.model, e).Add(float64(r.Generated))
	m.ttft.WithLabelValues(m.model, e).Observe(r.FirstToken - r.Arrival)
	m.e2e.WithLabelValues(m.model, e).Observe(r.Finish - r.Arrival)
}
