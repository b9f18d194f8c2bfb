package bench

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Scrape is one server's metrics over a run: each scrape's values of the
// metrics bench follows, summed over their labels.
type Scrape struct {
	URL     string
	Samples []Sample
	Err     string // the last scrape's error, if any
}

// Sample is one scrape.
type Sample struct {
	At     float64
	Values map[string]float64
}

// Followed are the vLLM metrics bench keeps: queue lengths, KV cache use
// (v1's name and v0's), preemptions, prefix cache queries and hits.
var Followed = []string{
	"vllm:num_requests_running", "vllm:num_requests_waiting",
	"vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc",
	"vllm:num_preemptions_total", "vllm:prefix_cache_queries_total", "vllm:prefix_cache_hits_total",
}

type scraper struct {
	client *http.Client
	url    string
	key    string
	since  func() float64
	mu     sync.Mutex
	out    Scrape
}

func newScraper(c *http.Client, base, key string, since func() float64) *scraper {
	return &scraper{client: c, url: strings.TrimSuffix(base, "/") + "/metrics", key: key, since: since, out: Scrape{URL: base}}
}

// scrape reads the metrics once; a failure is remembered, not fatal: a
// server without /metrics still serves a bench run.
func (s *scraper) scrape() {
	at := s.since()
	vals, err := s.fetch()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.out.Err = err.Error()
		return
	}
	s.out.Samples = append(s.out.Samples, Sample{At: at, Values: vals})
}

func (s *scraper) fetch() (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return nil, err
	}
	if s.key != "" {
		req.Header.Set("Authorization", "Bearer "+s.key)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: HTTP %d", s.url, resp.StatusCode)
	}
	return ParseMetrics(resp.Body)
}

func (s *scraper) result() Scrape {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out
}

// ParseMetrics reads Prometheus text and returns the Followed metrics
// present, each summed over its label sets (samples that are NaN or
// infinite left out).
func ParseMetrics(r io.Reader) (map[string]float64, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("parsing metrics: %w", err)
	}
	out := map[string]float64{}
	for _, name := range Followed {
		f, ok := fams[name]
		if !ok {
			// Prometheus's Python client names a counter's family without
			// _total in its TYPE line.
			if f, ok = fams[strings.TrimSuffix(name, "_total")]; !ok {
				continue
			}
		}
		sum, n := 0.0, 0
		for _, m := range f.GetMetric() {
			// Prometheus text allows NaN and infinities; they say nothing
			// of a queue or a cache, and a run file cannot hold them.
			if v := value(f.GetType(), m); !math.IsNaN(v) && !math.IsInf(v, 0) {
				sum, n = sum+v, n+1
			}
		}
		if n > 0 && !math.IsInf(sum, 0) {
			out[name] = sum
		}
	}
	return out, nil
}

func value(t dto.MetricType, m *dto.Metric) float64 {
	switch t {
	case dto.MetricType_COUNTER:
		return m.GetCounter().GetValue()
	case dto.MetricType_GAUGE:
		return m.GetGauge().GetValue()
	case dto.MetricType_UNTYPED:
		return m.GetUntyped().GetValue()
	}
	return 0
}
