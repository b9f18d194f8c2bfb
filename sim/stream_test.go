package sim

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/elis-sim/elis-sim/policies"
	"github.com/elis-sim/elis-sim/predictor"
	"github.com/elis-sim/elis-sim/traces"
)

// A run of a stream is the run of its trace, to the bit: the same records
// in the same order, the same gaps and counts, over policies that read no
// prediction and ISRTF with a given sigma, one and two workers, KV
// pressure and light load.
func TestRunStreamIsRun(t *testing.T) {
	for i, c := range []struct {
		policy, router string
		workers, kv    int
		arrivals       string
	}{
		{"fcfs", "", 1, 0, "poisson:8"},
		{"fcfs", "", 1, 400, "poisson:30"},
		{"priority", "", 1, 0, "poisson:20"},
		{"sjf-oracle", "", 1, 600, "poisson:20"},
		{"isrtf", "", 1, 500, "poisson:20"},
		{"fcfs", "least-predicted-work", 2, 500, "poisson:40"},
		{"isrtf", "round-robin", 3, 0, "gamma:0.2:0.5"},
	} {
		tr := genTrace(t, 1500, uint64(i+1), c.arrivals, traces.Uniform{Min: 1, Max: 400})
		var buf bytes.Buffer
		if err := traces.Encode(&buf, tr, true); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "t.jsonl")
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg := testConfig(t, c.policy)
		cfg.Predictor = predictor.Spec{Kind: "noisy", Sigma: 0.4}
		cfg.Workers, cfg.Router = c.workers, c.router
		if c.kv > 0 {
			cfg.Engine.NumBlocks = c.kv
		}
		run := func(f func(Config) (*Result, error)) ([]byte, *Result) {
			var recs bytes.Buffer
			cfg := cfg
			cfg.OnRecord = func(r *policies.Record) error {
				b, _ := json.Marshal(r)
				recs.Write(append(b, '\n'))
				return nil
			}
			res, err := f(cfg)
			if err != nil {
				t.Fatalf("%s: %v", c.policy, err)
			}
			return recs.Bytes(), res
		}
		want, wres := run(func(cfg Config) (*Result, error) { return Run(tr, cfg) })
		st, err := traces.OpenStream(path)
		if err != nil {
			t.Fatal(err)
		}
		got, gres := run(func(cfg Config) (*Result, error) { return RunStream(st, cfg) })
		if err := st.Err(); err != nil {
			t.Fatalf("%s: stream: %v", c.policy, err)
		}
		st.Close()
		if !bytes.Equal(got, want) {
			t.Fatalf("case %d (%s): the stream's records differ from the trace's", i, c.policy)
		}
		g, w := gres.Gaps, wres.Gaps
		if g.N() != w.N() || g.Mean() != w.Mean() || g.Max() != w.Max() || gres.Stats != wres.Stats || gres.Makespan != wres.Makespan {
			t.Fatalf("case %d (%s): stream %v gaps, %+v; trace %v gaps, %+v", i, c.policy, g.N(), gres.Stats, w.N(), wres.Stats)
		}
	}
}

// A streamed run refuses what needs the whole trace, and a run that keeps
// its records.
func TestRunStreamRefusesWhatNeedsTheTrace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "t.jsonl")
	var buf bytes.Buffer
	traces.Encode(&buf, genTrace(t, 10, 1, "poisson:1", traces.Uniform{Min: 1, Max: 5}), true)
	os.WriteFile(path, buf.Bytes(), 0o644)
	sink := func(*policies.Record) error { return nil }
	for name, mod := range map[string]func(*Config){
		"kept records": func(c *Config) { c.OnRecord = nil },
		"fitted sigma": func(c *Config) { c.Predictor = predictor.Spec{Kind: "noisy", MAE: 19.9} },
		"recorded":     func(c *Config) { c.Predictor = predictor.Spec{Kind: "recorded"} },
		"overheads":    func(c *Config) { c.Overheads.PerRequest = 0.01 },
	} {
		cfg := testConfig(t, "isrtf")
		cfg.OnRecord = sink
		mod(&cfg)
		st, err := traces.OpenStream(path)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := RunStream(st, cfg); err == nil {
			t.Errorf("%s: a streamed run went ahead", name)
		}
		st.Close()
	}
}
