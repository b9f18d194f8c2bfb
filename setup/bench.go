package setup

import (
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/elis-sim/elis-sim/bench"
	"github.com/elis-sim/elis-sim/policies"
)

// ParseBench reads and checks the options of "elis-sim bench": the
// servers' URLs, the model they serve, how requests are sent and routed.
// The API key is read from the environment variable the options name.
// Bad options come back as *Error.
func ParseBench(o Options) (bench.Config, error) {
	cfg := bench.Config{URLs: stringsOf(o, "url"), Model: o.String("model"), Endpoint: o.String("endpoint"), TimeScale: o.Float64("time-scale"),
		FreeLengths: o.Bool("free-lengths"), Timeout: duration(o, "timeout"), APIKey: os.Getenv(o.String("api-key-env")),
		Router: o.String("router"), MetricsInterval: duration(o, "metrics-interval"), NoMetrics: o.Bool("no-metrics"),
		Vocab: o.Int("vocab"), Seed: o.Uint64("seed"), Wait: duration(o, "wait")}
	if len(cfg.URLs) == 0 {
		return cfg, Errorf("--url is required: the server's base URL, such as http://localhost:8000")
	}
	if cfg.Model == "" {
		return cfg, Errorf("--model is required: the model name the server serves (its /v1/models lists it)")
	}
	if r := o.Float64("max-failure-rate"); r < 0 || r > 1 {
		return cfg, Errorf("--max-failure-rate %v: want a fraction from 0 to 1", r)
	}
	for _, u := range cfg.URLs {
		p, err := url.Parse(u)
		if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			return cfg, Errorf("--url %q: want http://HOST:PORT or https://HOST:PORT", u)
		}
	}
	if e := cfg.Endpoint; e != "completions" && e != "chat" {
		return cfg, Errorf("--endpoint %q: want completions or chat", e)
	}
	if cfg.TimeScale <= 0 {
		return cfg, Errorf("--time-scale %v: want a number > 0", cfg.TimeScale)
	}
	if _, err := policies.NewRouter(cfg.Router); err != nil {
		return cfg, Errorf("--router: %w", err)
	}
	if v := cfg.Vocab; v != 0 && v <= 1000 {
		return cfg, Errorf("--vocab %d: want more than 1000 (or 0: the server's)", v)
	}
	if p := o.String("server-log"); p != "" && p != "-" {
		f, err := os.Open(p)
		if err != nil {
			return cfg, Errorf("--server-log: %v", err)
		}
		f.Close()
	}
	return cfg, nil
}

// stringsOf reads a list option: a urfave/cli context's string slice, or
// comma-separated text.
func stringsOf(o Options, name string) []string {
	if s, ok := o.(interface{ StringSlice(string) []string }); ok {
		return s.StringSlice(name)
	}
	if v := o.String(name); v != "" {
		return strings.Split(v, ",")
	}
	return nil
}

// BenchFlags are the options of "elis-sim bench": the servers, how the
// trace's requests are sent to them, what is scraped and how failures
// count.
func BenchFlags() []Flag {
	return []Flag{
		{Name: "url", Default: []string(nil), Usage: "server base URL; repeat to spread requests over several servers with --router"},
		{Name: "model", Default: "", Usage: "the model name the server serves (required)"},
		{Name: "label", Default: "bench", Usage: "the run's label in tables and plots (say, the server's policy)"},
		{Name: "out", Default: "", Usage: "run file to write (records, summary, server metrics)", Aliases: []string{"o"}},
		{Name: "endpoint", Default: "completions", Usage: "completions (token-id prompts where the trace has no text) or chat"},
		{Name: "time-scale", Default: float64(1), Usage: "multiply arrival times (0.5 doubles the rate)"},
		{Name: "free-lengths", Default: false, Usage: "let the model stop on its own instead of forcing the trace's output lengths"},
		{Name: "timeout", Default: time.Duration(30 * time.Minute), Usage: "per request (0: none)"},
		{Name: "wait", Default: time.Duration(0), Usage: "wait up to this long for every server to answer /v1/models before sending (a server still starting; 0: send at once)"},
		{Name: "api-key-env", Default: "OPENAI_API_KEY", Usage: "environment variable holding the API key (sent as a bearer token when set)"},
		{Name: "router", Default: "least-loaded", Usage: "over several --url: least-loaded (outstanding requests), round-robin, prefix-affinity"},
		{Name: "metrics-interval", Default: time.Duration(5 * time.Second), Usage: "scrape /metrics this often (0: at the start and the end only)"},
		{Name: "no-metrics", Default: false, Usage: "do not scrape /metrics"},
		{Name: "server-log", Default: "", Usage: "the server's log with the ISRTF fork's [ELIS] lines: a file, or - for stdin"},
		{Name: "vocab", Default: 0, Usage: "synthetic prompts use token ids from 1000 to below this (0: the server's vocabulary where /v1/models says it, as llama.cpp's does, else 32000)"},
		{Name: "seed", Default: uint64(1), Usage: "seed of synthetic prompts", Env: []string{"ELIS_SIM_SEED"}},
		{Name: "json", Default: false, Usage: "print the summary as JSON"},
		{Name: "max-failure-rate", Default: 0.0, Usage: "exit 0 as long as at most this fraction of the requests sent failed (0: none may)"},
		{Name: "allow-failures", Default: false, Usage: "exit 0 whatever failed (same as --max-failure-rate 1)"},
	}
}
