package setup

import (
	"fmt"
	"strings"
	"testing"

	"github.com/elis-sim/elis-sim/policies"
)

// The policy grammar, NAME[/MODE][+GUARD...]: each guard sets what it
// names on the run, the mode replaces the run's, and labels say what ran.
func TestParsePolicy(t *testing.T) {
	for _, c := range []struct {
		entry, label string
		check        func(eng policies.Config, mode policies.Rerank, sync bool) bool
	}{
		{"fcfs", "fcfs", func(e policies.Config, m policies.Rerank, s bool) bool { return m == policies.RerankPause && !s }},
		{"isrtf", "isrtf", func(e policies.Config, m policies.Rerank, s bool) bool { return m == policies.RerankPause }},
		{"isrtf/patch+sync+eager", "isrtf/patch+sync+eager", func(e policies.Config, m policies.Rerank, s bool) bool {
			return m == policies.RerankNone && s && !e.LazyPredictions
		}},
		{"isrtf+async", "isrtf+async", func(e policies.Config, m policies.Rerank, s bool) bool { return e.AsyncPredictions && !s }},
		{"isrtf+cap=2+limit=0.5", "isrtf+cap=2+limit=0.5", func(e policies.Config, m policies.Rerank, s bool) bool {
			return e.Guard.SlowdownCap == 2 && e.Guard.PreemptLimit == 0.5
		}},
		{"isrtf+margin=20:0.1", "isrtf+margin=20:0.1", func(e policies.Config, m policies.Rerank, s bool) bool {
			return e.DisplaceMargin == 20 && e.DisplaceRatio == 0.1
		}},
	} {
		p, err := ParsePolicy(c.entry)
		if err != nil {
			t.Fatalf("%s: %v", c.entry, err)
		}
		var name string
		mode, eng, sync := policies.RerankPause, policies.Config{LazyPredictions: true}, false
		p.Apply(Knobs{Policy: &name, Mode: &mode, Engine: &eng, Sync: &sync})
		if name != strings.Split(strings.Split(c.entry, "+")[0], "/")[0] || !c.check(eng, mode, sync) || p.Label(policies.RerankPause) != c.label {
			t.Errorf("%s: policy %s, mode %v, sync %v, engine %+v, label %s", c.entry, name, mode, sync, eng, p.Label(policies.RerankPause))
		}
	}
	// A plain re-ranking policy is labelled with the run's mode when it is
	// not the paper's; others never are.
	for entry, want := range map[string]string{"isrtf": "isrtf/resubmit", "srpt-oracle": "srpt-oracle/resubmit", "fcfs": "fcfs"} {
		p, _ := ParsePolicy(entry)
		if got := p.Label(policies.RerankResubmit); got != want {
			t.Errorf("%s under resubmit: label %s, want %s", entry, got, want)
		}
	}
	for _, bad := range []string{"lifo", "isrtf/fast", "isrtf+cap", "isrtf+cap=-1", "isrtf+margin=x", "isrtf+warp"} {
		if _, err := ParsePolicy(bad); err == nil {
			t.Errorf("%q: accepted", bad)
		}
	}
}

// Values check each setting against the Flags: its name and its type.
func TestValues(t *testing.T) {
	v := NewValues()
	if v.Int("prediction-interval") != 50 || v.Bool("lazy-predictions") != true || v.Uint64("seed") != 1 || v.IsSet("seed") {
		t.Fatalf("defaults: %d %v %d", v.Int("prediction-interval"), v.Bool("lazy-predictions"), v.Uint64("seed"))
	}
	for name, text := range map[string]string{"prediction-interval": "25", "lazy-predictions": "false", "seed": "7", "slowdown-cap": "1.5", "policy": "sjf"} {
		if err := v.Set(name, text); err != nil {
			t.Fatalf("%s=%s: %v", name, text, err)
		}
	}
	if v.Int("prediction-interval") != 25 || v.Bool("lazy-predictions") || v.Uint64("seed") != 7 || v.Float64("slowdown-cap") != 1.5 || v.String("policy") != "sjf" || !v.IsSet("seed") {
		t.Fatal("set values not read back")
	}
	for name, text := range map[string]string{"prediction-interval": "2.5", "seed": "-1", "slowdown-cap": "x", "lazy-predictions": "maybe", "warp": "1"} {
		if err := v.Set(name, text); err == nil {
			t.Errorf("%s=%s: accepted", name, text)
		}
	}
}

// ParseSim's bad input is *Error, which commands map to exit 2.
func TestParseSimBadInput(t *testing.T) {
	for name, text := range map[string]string{"policy": "lifo", "isrtf-mode": "fast", "predictor": "psychic", "router": "random", "aging": "x", "gpu-memory-utilization": "2"} {
		v := NewValues()
		if err := v.Set(name, text); err != nil {
			t.Fatal(err)
		}
		if _, err := ParseSim(v, false); !IsBad(err) || !strings.Contains(err.Error(), "--"+name) {
			t.Errorf("%s=%s: %v", name, text, err)
		}
	}
}

// A policy entry read once sets up any driver's run: here a simulator
// config from a sweep cell's settings.
func ExampleParseSim() {
	v := NewValues()
	v.Set("policy", "fcfs,isrtf/patch+sync")
	v.Set("max-num-seqs", "8")
	s, err := ParseSim(v, false)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, p := range s.Policies {
		cfg := s.ConfigFor(s.Base, p)
		fmt.Printf("%s: policy %s, mode %s, sync calls %v, %d seqs\n", s.Label(p), cfg.Policy, cfg.Mode, cfg.SyncPredictions, cfg.Engine.MaxSeqs)
	}
	// Output:
	// fcfs: policy fcfs, mode paper, sync calls false, 8 seqs
	// isrtf/patch+sync: policy isrtf, mode patch, sync calls true, 8 seqs
}

// run streams a trace exactly when every run can take it so: its records
// streamed, and no run needing the trace whole (a noisy predictor fitted
// to a target error, recorded predictions).
func TestStreamableRuns(t *testing.T) {
	for _, c := range []struct {
		policy, predictor string
		streamed          bool
		want              bool
	}{
		{"fcfs,priority,sjf-oracle", "", true, true},
		{"fcfs", "", false, false},                        // records kept (--log-predictions)
		{"fcfs,isrtf", "", true, false},                   // the default noisy:mae=19.9 is fitted
		{"fcfs,isrtf", "noisy:sigma=0.3", true, true},     // given its sigma
		{"isrtf", "recorded", true, false},                // predictions in the trace
		{"fcfs,sjf-oracle", "noisy:mae=19.9", true, true}, // nothing reads it
	} {
		v := NewValues()
		if err := v.Set("policy", c.policy); err != nil {
			t.Fatal(err)
		}
		if c.predictor != "" {
			if err := v.Set("predictor", c.predictor); err != nil {
				t.Fatal(err)
			}
		}
		s, err := ParseSim(v, false)
		if err != nil {
			t.Fatalf("%s %s: %v", c.policy, c.predictor, err)
		}
		var st *Stream
		if c.streamed {
			st = &Stream{}
		}
		if got := s.streamable(st); got != c.want {
			t.Errorf("--policy %s --predictor %q, streamed %v: streamable %v, want %v", c.policy, c.predictor, c.streamed, got, c.want)
		}
	}
}
