package traces

import (
	"bytes"
	"math"
	"math/rand/v2"
	"testing"
)

func TestGenerateSameSeedSameBytes(t *testing.T) {
	gen := func(seed uint64) []byte {
		arr, _ := ParseArrivals("gamma:0.73:10.41")
		p, _ := ParseLengths("lognormal:70:1:2048")
		o, _ := ParseLengths("uniform:50:500")
		tr, err := Generate(GenConfig{N: 500, Seed: seed, Arrivals: arr, RateMultiplier: 5, Prompt: p, Output: o})
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		Encode(&b, tr, false)
		return b.Bytes()
	}
	a, b, c := gen(7), gen(7), gen(8)
	if !bytes.Equal(a, b) {
		t.Fatal("same seed gave different bytes")
	}
	if bytes.Equal(a, c) {
		t.Fatal("different seeds gave the same bytes")
	}
}

func TestGenerateMatchesParameters(t *testing.T) {
	cases := []struct {
		arr      string
		mult     float64
		wantRate float64
		wantCV   float64
	}{
		{"poisson:4", 1, 4, 1},
		{"constant:2", 3, 6, 0},
		// gamma: mean gap shape*scale, CV 1/sqrt(shape)
		{"gamma:0.73:10.41", 5, 5 / (0.73 * 10.41), 1 / math.Sqrt(0.73)},
	}
	for _, c := range cases {
		arr, err := ParseArrivals(c.arr)
		if err != nil {
			t.Fatal(err)
		}
		tr, _ := Generate(GenConfig{N: 20000, Seed: 1, Arrivals: arr, RateMultiplier: c.mult, Prompt: Fixed(10), Output: Uniform{1, 9}})
		s := Summarize(tr)
		if math.Abs(s.Rate-c.wantRate)/c.wantRate > 0.05 || math.Abs(s.GapCV-c.wantCV) > 0.05 {
			t.Errorf("%s x%v: rate %.3f (want %.3f), CV %.3f (want %.3f)", c.arr, c.mult, s.Rate, c.wantRate, s.GapCV, c.wantCV)
		}
		if s.Prompt.Mean != 10 || s.Output.Mean < 4.8 || s.Output.Mean > 5.2 || s.Output.Max > 9 {
			t.Errorf("lengths: %+v %+v", s.Prompt, s.Output)
		}
	}
	ln := LogNormal{Mean: 200, Sigma: 0.8}
	tr, _ := Generate(GenConfig{N: 50000, Seed: 2, Arrivals: Poisson{1}, Prompt: Fixed(1), Output: ln})
	if m := Summarize(tr).Output.Mean; math.Abs(m-200) > 6 {
		t.Errorf("lognormal mean %.1f, want about 200", m)
	}
}

func TestParseSpecsRejectNonsense(t *testing.T) {
	for _, s := range []string{"poisson", "poisson:0", "poisson:-1", "gamma:1", "weibull:1", "poisson:x", "constant:NaN"} {
		if _, err := ParseArrivals(s); err == nil {
			t.Errorf("ParseArrivals(%q) accepted", s)
		}
	}
	for _, s := range []string{"fixed:0", "fixed:1.5", "uniform:5:2", "lognormal:0:1", "lognormal:10:-1", "zipf:1"} {
		if _, err := ParseLengths(s); err == nil {
			t.Errorf("ParseLengths(%q) accepted", s)
		}
	}
}

func TestMixture(t *testing.T) {
	l, err := ParseLengths("uniform:50:100+uniform:300:500")
	if err != nil {
		t.Fatal(err)
	}
	tr, _ := Generate(GenConfig{N: 2000, Arrivals: Poisson{1}, Prompt: Fixed(1), Output: l})
	short := 0
	for _, r := range tr.Requests {
		switch {
		case r.OutputTokens >= 50 && r.OutputTokens <= 100:
			short++
		case r.OutputTokens >= 300 && r.OutputTokens <= 500:
		default:
			t.Fatalf("length %d outside both components", r.OutputTokens)
		}
	}
	if short < 900 || short > 1100 {
		t.Fatalf("%d of 2000 short, want about half", short)
	}
}

func TestResample(t *testing.T) {
	src := []Request{{ID: "x", PromptTokens: 3, OutputTokens: 7}, {ID: "y", PromptTokens: 11, OutputTokens: 13}}
	tr, err := Generate(GenConfig{N: 100, Arrivals: Poisson{1}, Resample: src})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range tr.Requests {
		if !(r.PromptTokens == 3 && r.OutputTokens == 7) && !(r.PromptTokens == 11 && r.OutputTokens == 13) {
			t.Fatalf("pair not from source: %+v", r)
		}
	}
}

func FuzzParseSpecs(f *testing.F) {
	for _, s := range []string{"poisson:1", "gamma:0.73:10.41", "constant:2", "fixed:3", "uniform:1:9", "lognormal:70:1:2048", "uniform:1:2+fixed:5", "1024:0.5:3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if a, err := ParseArrivals(s); err == nil {
			if g := a.Gap(rand.New(rand.NewPCG(1, 2))); !(g >= 0) {
				t.Fatalf("%q gave gap %v", s, g)
			}
		}
		if l, err := ParseLengths(s); err == nil {
			if n := l.Draw(rand.New(rand.NewPCG(1, 2))); n < 1 {
				t.Fatalf("%q drew %d", s, n)
			}
		}
		if p, err := ParseSharedPrefix(s); err == nil && s != "" {
			tr, err := Generate(GenConfig{N: 20, Arrivals: Poisson{Rate: 1}, Prompt: Fixed(5), Output: Fixed(5), Shared: p})
			if err != nil {
				t.Fatalf("%q: %v", s, err)
			}
			for _, r := range tr.Requests {
				if err := r.Validate(); err != nil {
					t.Fatalf("%q: %v", s, err)
				}
			}
		}
	})
}

// A shared prefix goes in front of the drawn prompt of about its share of
// the requests, with one hash id per full 16-token block, equal across
// requests drawing the same system prompt; everything else is what the
// same seed gives without it.
func TestSharedPrefix(t *testing.T) {
	base := GenConfig{N: 2000, Seed: 4, Arrivals: Poisson{Rate: 1}, Prompt: Uniform{Min: 10, Max: 90}, Output: Fixed(7)}
	plain, _ := Generate(base)
	base.Shared = SharedPrefix{Tokens: 100, Fraction: 0.7, Count: 3}
	shared, _ := Generate(base)
	n, ids := 0, map[uint64]bool{}
	for i, r := range shared.Requests {
		p := plain.Requests[i]
		if r.Arrival != p.Arrival || r.OutputTokens != p.OutputTokens {
			t.Fatalf("request %d changed beyond its prompt: %+v vs %+v", i, r, p)
		}
		if r.HashIDs == nil {
			if r.PromptTokens != p.PromptTokens {
				t.Fatalf("request %d without a prefix changed", i)
			}
			continue
		}
		n++
		if r.PromptTokens != p.PromptTokens+100 || len(r.HashIDs) != 6 || r.HashBlock != 16 {
			t.Fatalf("request %d: %d prompt tokens (was %d), %d ids of %d", i, r.PromptTokens, p.PromptTokens, len(r.HashIDs), r.HashBlock)
		}
		ids[r.HashIDs[0]] = true
	}
	if n < 1300 || n > 1500 || len(ids) != 3 {
		t.Fatalf("%d of 2000 requests have a prefix (want about 1400), %d distinct (want 3)", n, len(ids))
	}
}
