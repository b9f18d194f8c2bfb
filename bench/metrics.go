package bench

import (
	"bufio"
	"bytes"
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

// Followed are the server metrics bench keeps. vLLM's: queue lengths, KV
// cache use (v1's name and v0's), preemptions, prefix cache queries and
// hits. llama.cpp's server's: requests in slots and deferred (waiting for
// one), KV cache use (as a ratio and in cells), decode calls and busy slots per call, prompt and
// generated tokens. What a server does not export is not measured.
var Followed = []string{
	"vllm:num_requests_running", "vllm:num_requests_waiting",
	"vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc",
	"vllm:num_preemptions_total", "vllm:prefix_cache_queries_total", "vllm:prefix_cache_hits_total",
	"llamacpp:requests_processing", "llamacpp:requests_deferred", "llamacpp:kv_cache_usage_ratio", "llamacpp:kv_cache_tokens",
	"llamacpp:n_decode_total", "llamacpp:n_busy_slots_per_decode",
	"llamacpp:prompt_tokens_total", "llamacpp:tokens_predicted_total",
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

// Bounds on a scrape: what bench reads of a /metrics body, and what it
// keeps of it (the lines of the Followed metrics) for the parser. A
// server's /metrics is tens of kilobytes; one that sends more than this
// is misbehaving, and its scrape fails rather than the bench's memory.
const (
	maxMetricsBody = 16 << 20
	maxMetricsKept = 1 << 20
	maxMetricsLine = 64 << 10
)

// followedLines copies from r the lines that can matter to the Followed
// metrics (their samples and their # TYPE and # HELP lines), within the
// bounds above.
func followedLines(r io.Reader) ([]byte, error) {
	br := bufio.NewReaderSize(io.LimitReader(r, maxMetricsBody+1), 64<<10)
	var kept bytes.Buffer
	read := 0
	for {
		line, err := readLine(br, &read)
		if line != nil && follows(line) {
			if kept.Len()+len(line)+1 > maxMetricsKept {
				return nil, fmt.Errorf("metrics: over %d bytes of samples of the followed metrics", maxMetricsKept)
			}
			kept.Write(line)
			kept.WriteByte('\n')
		}
		if read > maxMetricsBody {
			return nil, fmt.Errorf("metrics: the body is over %d bytes", maxMetricsBody)
		}
		if err == io.EOF {
			return kept.Bytes(), nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading metrics: %w", err)
		}
	}
}

// readLine returns the next line without its newline; a line longer than
// maxMetricsLine is skipped whole (nil). read counts the bytes consumed.
func readLine(br *bufio.Reader, read *int) ([]byte, error) {
	var line []byte
	long := false
	for {
		frag, err := br.ReadSlice('\n')
		*read += len(frag)
		if !long {
			line = append(line, frag...)
			if len(line) > maxMetricsLine {
				line, long = nil, true
			}
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if long {
			return nil, err
		}
		return bytes.TrimRight(line, "\r\n"), err
	}
}

// follows reports whether a line of Prometheus text is about a Followed
// metric.
func follows(line []byte) bool {
	name := line
	if bytes.HasPrefix(line, []byte("#")) {
		f := bytes.Fields(line)
		if len(f) < 3 || (string(f[1]) != "TYPE" && string(f[1]) != "HELP") {
			return false
		}
		name = f[2]
	}
	for _, m := range Followed {
		if bytes.HasPrefix(name, []byte(m)) || bytes.HasPrefix(name, []byte(strings.TrimSuffix(m, "_total"))) {
			return true
		}
	}
	return false
}

func (s *scraper) result() Scrape {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out
}

// ParseMetrics reads Prometheus text and returns the Followed metrics
// present, each summed over its label sets (samples that are NaN or
// infinite left out). Only the Followed metrics' lines reach the parser,
// and a body over a few megabytes is refused: memory stays small whatever
// a server sends.
func ParseMetrics(r io.Reader) (map[string]float64, error) {
	lines, err := followedLines(r)
	if err != nil {
		return nil, err
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(lines))
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
