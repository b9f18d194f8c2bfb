package report

import (
	"math"
	"runtime"
	"slices"
	"sync"

	"gonum.org/v1/gonum/stat"

	"github.com/elis-sim/elis-sim/internal/hist"
	"github.com/elis-sim/elis-sim/policies"
)

// Dist summarises one latency metric over requests, in seconds.
type Dist struct {
	N    int     `json:"n"`
	Mean float64 `json:"mean"`
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P95  float64 `json:"p95"`
	P99  float64 `json:"p99"`
	Max  float64 `json:"max"`
}

// Accuracy is how well the predictor did, over every prediction made.
type Accuracy struct {
	N    int     `json:"n"`
	MAE  float64 `json:"mae_tokens"`
	RMSE float64 `json:"rmse_tokens"`
	R2   float64 `json:"r2"`
}

// Summary is what a run's requests experienced. Latencies are per request:
// TTFT (arrival to first token), TPOT (time per output token after the
// first), JCT (arrival to last token: end-to-end latency, job completion
// time), queueing delay (arrival to first scheduled), normalized latency
// (JCT per output token); ITL is over every inter-token gap.
type Summary struct {
	Requests int `json:"requests"`
	Finished int `json:"finished"`
	Rejected int `json:"rejected"`
	// NotSent counts requests an interrupted client run never sent (their
	// records' Arrival is -1): they neither finished nor failed.
	NotSent     int     `json:"not_sent,omitempty"`
	TTFT        Dist    `json:"ttft_s"`
	TPOT        Dist    `json:"tpot_s"`
	ITL         Dist    `json:"itl_s"`
	JCT         Dist    `json:"jct_s"`
	Queue       Dist    `json:"queue_s"`
	NormLatency Dist    `json:"normalized_latency_s_per_token"`
	Makespan    float64 `json:"makespan_s"`
	RPS         float64 `json:"throughput_rps"`
	TPS         float64 `json:"throughput_tokens_per_s"`
	Preemptions int     `json:"preemptions"`
	// PreemptionsUnmeasured: the run could not see preemptions (a client
	// whose server exports no preemption counter); Preemptions means
	// nothing then.
	PreemptionsUnmeasured bool     `json:"preemptions_not_measured,omitempty"`
	MaxWait               float64  `json:"max_queue_s"`
	JainJCT               float64  `json:"jain_normalized_latency"` // Jain's fairness index of normalized latency
	Predictor             Accuracy `json:"predictor"`
	Goodput               *Goodput `json:"goodput,omitempty"`
	// PrefixCache is present when the engine cached prefixes.
	PrefixCache *CacheUse `json:"prefix_cache,omitempty"`
}

// CacheUse is what the prefix cache saved: prefill tokens (prompts and
// recomputation after preemption) computed, and those found cached.
type CacheUse struct {
	Computed int64 `json:"prefill_tokens_computed"`
	Hit      int64 `json:"cached_tokens"`
	// HitRate is Hit / (Hit + Computed): the share of prefill work the
	// cache served.
	HitRate float64 `json:"hit_rate"`
}

// Summarize computes a summary from per-request records, whatever produced
// them. gaps, when not nil, holds every inter-token gap (the simulator
// keeps them); otherwise ITL is left empty.
func Summarize(recs []policies.Record, gaps *hist.H) Summary {
	z := NewSummarizer(SLO{})
	for i := range recs {
		z.Add(&recs[i])
	}
	return z.Summary(gaps, nil)
}

// Summarizer builds a Summary from records given one at a time, keeping
// a few numbers a request rather than the records: what lets a run of a
// million requests stream its records to disk.
type Summarizer struct {
	slo                          SLO
	n, finished, rejected, preem int
	notSent                      int
	met, tokens                  int
	first, last                  float64
	ttft, tpot, jct, queue, norm sample
	scratch                      []float64 // for sorting a sample's chunk
	errs                         policies.PredictionErrors
	computed, hit                int64
}

// NewSummarizer starts a summary; with an SLO it also counts goodput.
func NewSummarizer(slo SLO) *Summarizer {
	return &Summarizer{slo: slo, first: math.Inf(1), last: math.Inf(-1)}
}

// Grow makes room for n more records' samples, so that a run streaming
// its records into the summary appends without reallocating (a million
// records' samples grown by doubling touch twice the memory).
func (z *Summarizer) Grow(n int) {
	for _, x := range []*sample{&z.ttft, &z.tpot, &z.jct, &z.queue, &z.norm} {
		x.x = slices.Grow(x.x, n)
		x.runs = slices.Grow(x.runs, n)
	}
}

// Add counts one request's record.
func (z *Summarizer) Add(r *policies.Record) {
	z.n++
	z.first = math.Min(z.first, r.Arrival)
	for _, p := range r.Predictions {
		z.errs.Add(p.Predicted, p.Actual)
	}
	if z.slo != (SLO{}) && z.slo.Met(r) {
		z.met++
	}
	if r.Arrival < 0 && r.Finish < 0 {
		z.notSent++
		return
	}
	if r.Rejected != "" {
		z.rejected++
		return
	}
	if r.Finish < 0 {
		return
	}
	z.finished++
	z.computed += int64(r.PrefillTokens)
	z.hit += int64(r.CachedTokens)
	z.preem += r.Preemptions
	z.tokens += r.Generated
	z.last = math.Max(z.last, r.Finish)
	z.ttft.add(r.FirstToken-r.Arrival, &z.scratch)
	z.jct.add(r.Finish-r.Arrival, &z.scratch)
	if r.FirstScheduled >= 0 { // a client (bench) cannot see it
		z.queue.add(r.FirstScheduled-r.Arrival, &z.scratch)
	}
	z.norm.add((r.Finish-r.Arrival)/float64(r.Generated), &z.scratch)
	if r.Generated > 1 {
		z.tpot.add((r.Finish-r.FirstToken)/float64(r.Generated-1), &z.scratch)
	}
}

// Summary is the summary of the records added. gaps, when not nil, gives
// the inter-token gaps; errs, when the records carried no predictions,
// the predictor's summed errors (a run that kept no history).
func (z *Summarizer) Summary(gaps *hist.H, errs *policies.PredictionErrors) Summary {
	s := Summary{Requests: z.n, Finished: z.finished, Rejected: z.rejected, NotSent: z.notSent, Preemptions: z.preem}
	// Each distribution sorts its own sample, two at a time, each sorter
	// with one scratch buffer (a million-request run sorts five samples
	// of a million values).
	type job struct {
		dst *Dist
		x   *sample
	}
	jobs := make(chan job, 5)
	for _, j := range []job{{&s.TTFT, &z.ttft}, {&s.TPOT, &z.tpot}, {&s.JCT, &z.jct}, {&s.Queue, &z.queue}, {&s.NormLatency, &z.norm}} {
		jobs <- j
	}
	close(jobs)
	var wg sync.WaitGroup
	for range min(2, runtime.GOMAXPROCS(0)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var scratch []float64
			for j := range jobs {
				if len(scratch) < len(j.x.x) {
					scratch = make([]float64, len(j.x.x))
				}
				j.x.sort(scratch)
				*j.dst = dist(j.x.x)
			}
		}()
	}
	wg.Wait()
	s.MaxWait = s.Queue.Max
	if z.computed > 0 {
		s.PrefixCache = &CacheUse{Computed: z.computed, Hit: z.hit, HitRate: float64(z.hit) / float64(z.hit+z.computed)}
	}
	s.JainJCT = jain(z.norm.x)
	if gaps != nil && gaps.N() > 0 {
		s.ITL = Dist{N: int(gaps.N()), Mean: gaps.Mean(), P50: gaps.Quantile(0.5), P90: gaps.Quantile(0.9),
			P95: gaps.Quantile(0.95), P99: gaps.Quantile(0.99), Max: gaps.Max()}
	}
	if s.Finished > 0 {
		s.Makespan = z.last - z.first
		if s.Makespan > 0 {
			s.RPS = float64(s.Finished) / s.Makespan
			s.TPS = float64(z.tokens) / s.Makespan
		}
	}
	s.Predictor = AccuracyFrom(z.errs)
	if s.Predictor.N == 0 && errs != nil {
		s.Predictor = AccuracyFrom(*errs)
	}
	if z.slo != (SLO{}) {
		g := Goodput{SLO: z.slo.String()}
		if z.n > 0 {
			g.Fraction = float64(z.met) / float64(z.n)
		}
		if s.Makespan > 0 {
			g.RPS = float64(z.met) / s.Makespan
		}
		s.Goodput = &g
	}
	return s
}

// dist summarises x, sorted.
func dist(x []float64) Dist {
	if len(x) == 0 {
		return Dist{}
	}
	q := func(p float64) float64 { return stat.Quantile(p, stat.Empirical, x, nil) }
	return Dist{N: len(x), Mean: stat.Mean(x, nil), P50: q(0.5), P90: q(0.9), P95: q(0.95), P99: q(0.99), Max: x[len(x)-1]}
}

// jain is Jain's fairness index (sum x)^2 / (n sum x^2): 1 when all equal.
func jain(x []float64) float64 {
	if len(x) == 0 {
		return 0
	}
	s, sq := 0.0, 0.0
	for _, v := range x {
		s += v
		sq += v * v
	}
	if sq == 0 {
		return 1
	}
	return s * s / (float64(len(x)) * sq)
}

// AccuracyFrom is the accuracy of predictions summed in constant memory
// (what a run keeps when it keeps no prediction history).
func AccuracyFrom(e policies.PredictionErrors) Accuracy {
	if e.N == 0 {
		return Accuracy{}
	}
	n := float64(e.N)
	a := Accuracy{N: int(e.N), MAE: e.SumAbs / n, RMSE: math.Sqrt(e.SumSq / n)}
	if sst := e.SumActualSq - e.SumActual*e.SumActual/n; sst > 0 {
		a.R2 = 1 - e.SumSq/sst
	}
	return a
}

// accuracy is the two-pass accuracy of a list of errors and the actual
// values they are errors of.
func accuracy(errs, actual []float64) Accuracy {
	if len(errs) == 0 {
		return Accuracy{}
	}
	a := Accuracy{N: len(errs)}
	sse := 0.0
	for _, e := range errs {
		a.MAE += math.Abs(e)
		sse += e * e
	}
	a.MAE /= float64(len(errs))
	a.RMSE = math.Sqrt(sse / float64(len(errs)))
	mean := stat.Mean(actual, nil)
	sst := 0.0
	for _, v := range actual {
		sst += (v - mean) * (v - mean)
	}
	if sst > 0 {
		a.R2 = 1 - sse/sst
	}
	return a
}
