package traces

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"

	"gonum.org/v1/gonum/stat/distuv"
)

// Arrivals draws inter-arrival gaps in seconds.
type Arrivals interface {
	Gap(rng *rand.Rand) float64
}

// Poisson arrivals at Rate requests per second.
type Poisson struct{ Rate float64 }

// Gap draws an exponential gap.
func (p Poisson) Gap(rng *rand.Rand) float64 { return rng.ExpFloat64() / p.Rate }

// Gamma arrivals: gaps drawn from Gamma(Shape, Scale seconds). ELIS fitted
// shape 0.73 and scale 10.41 s to a production service.
type Gamma struct{ Shape, Scale float64 }

// Gap draws a gamma gap.
func (g Gamma) Gap(rng *rand.Rand) float64 {
	return distuv.Gamma{Alpha: g.Shape, Beta: 1 / g.Scale, Src: rng}.Rand()
}

// Constant arrivals: one every 1/Rate seconds.
type Constant struct{ Rate float64 }

// Gap returns 1/Rate.
func (c Constant) Gap(*rand.Rand) float64 { return 1 / c.Rate }

// Lengths draws token counts, always at least 1.
type Lengths interface {
	Draw(rng *rand.Rand) int
}

// Fixed lengths.
type Fixed int

// Draw returns the fixed length.
func (f Fixed) Draw(*rand.Rand) int { return int(f) }

// Uniform lengths in [Min, Max].
type Uniform struct{ Min, Max int }

// Draw returns a uniform length.
func (u Uniform) Draw(rng *rand.Rand) int { return u.Min + rng.IntN(u.Max-u.Min+1) }

// LogNormal lengths with the given mean (tokens) and sigma (of the log),
// capped at Max when Max > 0.
type LogNormal struct {
	Mean, Sigma float64
	Max         int
}

// Draw returns a log-normal length.
func (l LogNormal) Draw(rng *rand.Rand) int {
	mu := math.Log(l.Mean) - l.Sigma*l.Sigma/2
	v := int(math.Round(math.Exp(mu + l.Sigma*rng.NormFloat64())))
	if l.Max > 0 && v > l.Max {
		v = l.Max
	}
	return max(v, 1)
}

// ParseArrivals reads an arrival process: "poisson:RATE", "gamma:SHAPE:SCALE"
// or "constant:RATE" (rates in requests per second, scale in seconds).
func ParseArrivals(spec string) (Arrivals, error) {
	name, args, err := splitSpec(spec)
	if err != nil {
		return nil, err
	}
	bad := func() error {
		return fmt.Errorf("arrival process %q: want poisson:RATE, gamma:SHAPE:SCALE or constant:RATE with positive numbers", spec)
	}
	switch name {
	case "poisson", "constant":
		if len(args) != 1 || args[0] <= 0 {
			return nil, bad()
		}
		if name == "poisson" {
			return Poisson{Rate: args[0]}, nil
		}
		return Constant{Rate: args[0]}, nil
	case "gamma":
		if len(args) != 2 || args[0] <= 0 || args[1] <= 0 {
			return nil, bad()
		}
		return Gamma{Shape: args[0], Scale: args[1]}, nil
	}
	return nil, bad()
}

// ParseLengths reads a length distribution: "fixed:N", "uniform:MIN:MAX",
// "lognormal:MEAN:SIGMA[:MAX]", or an equal mixture of them joined by "+"
// ("uniform:50:100+uniform:100:300+uniform:300:500").
func ParseLengths(spec string) (Lengths, error) {
	if strings.Contains(spec, "+") {
		var m Mixture
		for _, part := range strings.Split(spec, "+") {
			l, err := ParseLengths(part)
			if err != nil {
				return nil, err
			}
			m = append(m, l)
		}
		return m, nil
	}
	name, args, err := splitSpec(spec)
	if err != nil {
		return nil, err
	}
	bad := func() error {
		return fmt.Errorf("length distribution %q: want fixed:N, uniform:MIN:MAX or lognormal:MEAN:SIGMA[:MAX] with N, MIN >= 1, MAX >= MIN, MEAN >= 1, SIGMA >= 0", spec)
	}
	isInt := func(v float64) bool { return v == math.Trunc(v) && v >= 1 && v < 1<<31 }
	switch name {
	case "fixed":
		if len(args) != 1 || !isInt(args[0]) {
			return nil, bad()
		}
		return Fixed(int(args[0])), nil
	case "uniform":
		if len(args) != 2 || !isInt(args[0]) || !isInt(args[1]) || args[1] < args[0] {
			return nil, bad()
		}
		return Uniform{Min: int(args[0]), Max: int(args[1])}, nil
	case "lognormal":
		if len(args) < 2 || len(args) > 3 || args[0] < 1 || args[1] < 0 || (len(args) == 3 && !isInt(args[2])) {
			return nil, bad()
		}
		l := LogNormal{Mean: args[0], Sigma: args[1]}
		if len(args) == 3 {
			l.Max = int(args[2])
		}
		return l, nil
	}
	return nil, bad()
}

func splitSpec(spec string) (string, []float64, error) {
	parts := strings.Split(spec, ":")
	args := make([]float64, 0, len(parts)-1)
	for _, p := range parts[1:] {
		v, err := strconv.ParseFloat(p, 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			return "", nil, fmt.Errorf("%q: %q is not a number", spec, p)
		}
		args = append(args, v)
	}
	return parts[0], args, nil
}

// GenConfig describes a synthetic trace.
type GenConfig struct {
	N              int
	Seed           uint64
	Arrivals       Arrivals
	RateMultiplier float64 // divides every gap; the paper's 1x/3x/5x loads
	Prompt, Output Lengths
	// Resample, when set, draws (prompt, output) pairs jointly from these
	// requests instead of from Prompt and Output.
	Resample []Request
	Name     string
	// Shared gives a share of the requests a common system prompt.
	Shared SharedPrefix
}

// SharedPrefix is a system prompt that Fraction of the requests start
// with: Count distinct prompts of Tokens tokens each, one drawn uniformly
// per request and put before its own prompt. Its full blocks of
// SharedBlock tokens get hash ids, so a prefix cache can share them.
type SharedPrefix struct {
	Tokens   int
	Fraction float64
	Count    int
}

// SharedBlock is the tokens each hash id of a generated shared prefix
// names: vLLM's block size, so the ids mark every block the cache can
// share.
const SharedBlock = 16

// ParseSharedPrefix reads TOKENS:FRACTION[:COUNT] ("" is none).
func ParseSharedPrefix(spec string) (SharedPrefix, error) {
	if spec == "" {
		return SharedPrefix{}, nil
	}
	bad := fmt.Errorf("%q: want TOKENS:FRACTION[:COUNT], e.g. 1024:0.8 (80%% of requests start with one 1,024-token system prompt) or 512:1:4 (every request starts with one of 4)", spec)
	parts := strings.Split(spec, ":")
	if len(parts) < 2 || len(parts) > 3 {
		return SharedPrefix{}, bad
	}
	var p SharedPrefix
	var err error
	if p.Tokens, err = strconv.Atoi(parts[0]); err != nil || p.Tokens < SharedBlock || p.Tokens > MaxTokens {
		return SharedPrefix{}, fmt.Errorf("%w (TOKENS from %d to %d)", bad, SharedBlock, MaxTokens)
	}
	if p.Fraction, err = strconv.ParseFloat(parts[1], 64); err != nil || !(p.Fraction > 0 && p.Fraction <= 1) {
		return SharedPrefix{}, fmt.Errorf("%w (FRACTION in (0, 1])", bad)
	}
	p.Count = 1
	if len(parts) == 3 {
		if p.Count, err = strconv.Atoi(parts[2]); err != nil || p.Count < 1 || p.Count > 1<<20 {
			return SharedPrefix{}, fmt.Errorf("%w (COUNT from 1 to %d)", bad, 1<<20)
		}
	}
	return p, nil
}

// MaxGenerate is the most requests one generated trace holds: ten times
// the largest runs the simulator is sized for (1M requests), about 1 GB of
// trace JSON; more would only exhaust memory.
const MaxGenerate = 10_000_000

// Generate builds a trace from c. The same config gives the same trace.
func Generate(c GenConfig) (*Trace, error) {
	if c.N < 1 || c.N > MaxGenerate {
		return nil, fmt.Errorf("--n %d: want 1 to %d requests", c.N, MaxGenerate)
	}
	if c.Arrivals == nil {
		return nil, fmt.Errorf("no arrival process")
	}
	if c.RateMultiplier <= 0 {
		c.RateMultiplier = 1
	}
	if c.Resample == nil && (c.Prompt == nil || c.Output == nil) {
		return nil, fmt.Errorf("need prompt and output length distributions, or a trace to resample")
	}
	rng := rand.New(rand.NewPCG(c.Seed, 0x656c6973))
	t := &Trace{Name: c.Name, Requests: make([]Request, c.N)}
	now := 0.0
	for i := range t.Requests {
		if i > 0 {
			now += c.Arrivals.Gap(rng) / c.RateMultiplier
		}
		r := Request{ID: "r" + strconv.Itoa(i), Arrival: now}
		if c.Resample != nil {
			src := &c.Resample[rng.IntN(len(c.Resample))]
			r.PromptTokens, r.OutputTokens, r.Prompt = src.PromptTokens, src.OutputTokens, src.Prompt
		} else {
			r.PromptTokens = max(c.Prompt.Draw(rng), 1)
			r.OutputTokens = max(c.Output.Draw(rng), 1)
		}
		t.Requests[i] = r
	}
	if c.Shared.Fraction > 0 {
		c.Shared.apply(t, c.Seed)
	}
	return t, nil
}

// apply puts the shared prefixes in front of their requests' prompts,
// drawing from its own stream so that the rest of the trace is what the
// same seed gives without them.
func (p SharedPrefix) apply(t *Trace, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 0x70726566))
	blocks := p.Tokens / SharedBlock
	for i := range t.Requests {
		if rng.Float64() >= p.Fraction {
			continue
		}
		r := &t.Requests[i]
		which := uint64(rng.IntN(max(p.Count, 1)))
		r.PromptTokens = min(r.PromptTokens+p.Tokens, MaxTokens)
		r.HashIDs, r.HashBlock = make([]uint64, blocks), SharedBlock
		for b := range r.HashIDs {
			r.HashIDs[b] = which<<32 | uint64(b)
		}
	}
}

// Mixture draws from one of its distributions, chosen uniformly: the ISRTF
// test guide's mix of short, medium and long outputs.
type Mixture []Lengths

// Draw picks a component, then draws from it.
func (m Mixture) Draw(rng *rand.Rand) int { return m[rng.IntN(len(m))].Draw(rng) }
