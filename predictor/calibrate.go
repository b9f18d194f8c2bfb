package predictor

import (
	"math"
	"runtime"
	"sync"
)

// Job is what SigmaForMAE needs of a request: its output length.
type Job struct {
	Index, Output int
}

// maxFitPoints bounds the prediction points SigmaForMAE measures: past
// it, an even subsample of them, so the fit costs the same for a thousand
// requests of a million tokens as for a million requests.
const maxFitPoints = 1 << 20

// SigmaForMAE finds the log-normal sigma at which Noisy's mean absolute
// error over the prediction points of jobs (at 0, K, 2K, ... generated
// tokens) equals mae tokens. The error grows with sigma, so bisection
// finds it; the result is deterministic for a seed. Each point's standard
// normal draw is made once, so a bisection pass costs one exp a point
// (made on every core), and at most maxFitPoints points (evenly spaced
// among all) are measured.
//
// Most passes are not measured at all: two measurements just either side
// of the root, found by Newton's method, bound the error from above below
// the one and from below above the other, with room for every rounding
// the measurement makes, and a pass whose midpoint falls outside the two
// takes the branch the bound proves. The answer is the plain bisection's
// to the bit, in about half its passes.
func SigmaForMAE(jobs []Job, k int, seed uint64, mae float64) float64 {
	sigma, _ := fitSigma(jobs, k, seed, mae)
	return sigma
}

// fitSigma is SigmaForMAE, which also says how many passes it measured.
func fitSigma(jobs []Job, k int, seed uint64, mae float64) (sigma float64, passes int) {
	f := pointsOf(jobs, max(k, 1), seed)
	if len(f.z) == 0 {
		return 0, 0
	}
	// The plain bisection: hi doubles until the error reaches mae (or 64),
	// then fifty halvings. Every exact measurement also bounds the error
	// on one side of its sigma.
	pr := newProof(len(f.z), mae)
	lo, hi := 0.0, 1.0
	for {
		m := f.measure(hi, true)
		pr.learn(hi, m)
		if !(m.mean < mae && hi < 64) {
			pr.top(hi, m)
			if pr.below < hi {
				f.bracket(pr, hi, m)
			}
			break
		}
		hi *= 2
	}
	for range 50 {
		mid := (lo + hi) / 2
		var less bool
		switch {
		case mid <= pr.below:
			less = true
		case mid >= pr.above:
			less = false
		default:
			less = f.measure(mid, false).mean < mae
		}
		if less {
			lo = mid
		} else {
			hi = mid
		}
	}
	return (lo + hi) / 2, f.passes
}

// points are the prediction points a fit measures: each one's standard
// normal draw and the tokens it has still to generate.
type points struct {
	z, rem []float64
	terms  []float64 // a pass's terms, by point
	parts  int       // goroutines a pass uses
	passes int       // measurements made
}

// pointsOf lists the points of jobs, at most maxFitPoints of them: those
// whose running index over all the jobs' points is a multiple of the
// stride. Their draws are made side by side, each job's by the goroutine
// that knows where its points start.
func pointsOf(jobs []Job, k int, seed uint64) *points {
	parts := min(runtime.GOMAXPROCS(0), max(1, len(jobs)/(1<<14)))
	starts := make([]int, parts+1) // running index at each part's first job
	total := 0
	for w := range parts {
		starts[w] = total
		for _, j := range jobs[w*len(jobs)/parts : (w+1)*len(jobs)/parts] {
			total += (j.Output + k - 1) / k
		}
	}
	starts[parts] = total
	stride := max(1, (total+maxFitPoints-1)/maxFitPoints)
	// Points below running index i: ceil(i/stride).
	at := func(i int) int { return (i + stride - 1) / stride }
	m := at(total)
	f := &points{z: make([]float64, m), rem: make([]float64, m), terms: make([]float64, m)}
	var wg sync.WaitGroup
	for w := range parts {
		wg.Go(func() {
			i, out := starts[w], at(starts[w])
			for _, j := range jobs[w*len(jobs)/parts : (w+1)*len(jobs)/parts] {
				n := (j.Output + k - 1) / k
				for p := (stride - i%stride) % stride; p < n; p += stride {
					g := p * k
					f.z[out] = normal(seed, uint64(j.Index), uint64(g))
					f.rem[out] = float64(j.Output - g)
					out++
				}
				i += n
			}
		})
	}
	wg.Wait()
	f.parts = min(runtime.GOMAXPROCS(0), max(1, m/(1<<16)))
	return f
}

// measured is one pass's result at a sigma.
type measured struct {
	mean float64 // the mean error, made as the bisection compares it
	sum  float64 // the sum of the terms, in point order
	// With extras: bound is at least the sum over points of
	// rem * (max(1, e^(sigma z)) + 1) * (1 + |sigma z|), which bounds each
	// term's rounding error (in units of 2^-53, times 16) at this sigma and
	// every smaller one; slope is the mean's derivative in sigma.
	bound, slope float64
}

// measure makes one pass at sigma. Its exps are made side by side, its
// sum in point order, so the mean is the same to the bit on any number of
// cores.
func (f *points) measure(sigma float64, extras bool) measured {
	f.passes++
	var wg sync.WaitGroup
	bound := make([]float64, f.parts)
	slope := make([]float64, f.parts)
	for w := range f.parts {
		lo, hi := w*len(f.z)/f.parts, (w+1)*len(f.z)/f.parts
		wg.Go(func() {
			if !extras {
				for p := lo; p < hi; p++ {
					f.terms[p] = f.rem[p] * math.Abs(math.Exp(sigma*f.z[p])-1)
				}
				return
			}
			b, d := 0.0, 0.0
			for p := lo; p < hi; p++ {
				x := sigma * f.z[p]
				e := math.Exp(x)
				f.terms[p] = f.rem[p] * math.Abs(e-1)
				b += f.rem[p] * (max(1, e) + 1) * (1 + math.Abs(x))
				d += f.rem[p] * math.Abs(f.z[p]) * e
			}
			bound[w], slope[w] = b, d
		})
	}
	wg.Wait()
	m := measured{}
	for _, v := range f.terms {
		m.sum += v
	}
	n := float64(len(f.z))
	m.mean = m.sum / n
	for w := range f.parts {
		m.bound += bound[w]
		m.slope += slope[w]
	}
	m.slope /= n
	return m
}

// bracket measures just either side of the root of mean(sigma) = mae in
// (0, top), found by Newton's method (on a sample of the points first,
// then on all), so that pr proves every pass but the last few of the
// bisection. It only ever adds measurements: whatever it finds, the
// bisection's answer is the same.
func (f *points) bracket(pr *proof, top float64, atTop measured) {
	// The secant through 0 and top starts the search.
	s := top * pr.mae / atTop.mean
	if len(f.z) >= 1<<15 {
		sample := &points{parts: 1}
		for p := 0; p < len(f.z); p += 16 {
			sample.z = append(sample.z, f.z[p])
			sample.rem = append(sample.rem, f.rem[p])
		}
		sample.terms = make([]float64, len(sample.z))
		s, _ = sample.newton(s, pr.mae, 0, top, 1e-4, nil)
	}
	s, m := f.newton(s, pr.mae, max(pr.below, 0), min(pr.above, top), 1e-6, pr)
	if !(m.slope > 0 && m.mean > 0 && s > 0) {
		return
	}
	// The proof's room about the root, in sigma: the sum's relative room
	// over the error's elasticity, with margin.
	elasticity := s * m.slope / m.mean
	rho := 3 * (pr.rel + 64*u*m.bound/m.sum) / elasticity
	for _, at := range []float64{s * (1 - rho), s * (1 + rho)} {
		if at > pr.below && at < pr.above {
			pr.learn(at, f.measure(at, true))
		}
	}
}

// newton runs Newton's method for mean(sigma) = mae from s, kept inside
// (lo, hi), until a step moves sigma by at most tol of itself; it returns
// the next estimate and the last measurement, each of which it tells pr
// (when not nil).
func (f *points) newton(s, mae, lo, hi, tol float64, pr *proof) (float64, measured) {
	var m measured
	for range 12 {
		m = f.measure(s, true)
		if pr != nil {
			pr.learn(s, m)
			lo, hi = max(lo, pr.below), min(hi, pr.above)
		}
		if !(m.slope > 0) || math.IsInf(m.bound, 0) || math.IsNaN(m.sum) {
			return s, m
		}
		next := s - (m.mean-mae)/m.slope
		if !(next > lo && next < hi) {
			next = (lo + hi) / 2
		}
		step := math.Abs(next - s)
		s = next
		if step <= tol*s {
			break
		}
	}
	return s, m
}

// u is the unit roundoff of float64.
const u = 0x1p-53

// proof holds what exact measurements prove of the mean error: at every
// sigma in [0, below] it is less than mae, at every sigma in [above, top]
// (top: the bisection's first hi) at least mae.
//
// Why a measurement proves it. Let T(s) be the exact sum of the terms
// rem*|e^(s z) - 1|: every term grows with s >= 0, so T does. A term as
// measured is within h*b of its exact value, b = rem*(e+1)*(1+|x|) with
// x = s*z, e = e^x and h = 16u (u = 2^-53): s*z rounds by u, which moves
// e by |x|u; math.Exp is within 4 ulp (8u, TestExpIsWithinFourULP); the
// subtraction and the product round by u each. The n terms' sum in order
// is within g = (n-1)u/(1-(n-1)u) of the terms' sum, so the measured sum
// S(s) is within g*T(s) + 2h*B(s) of T(s), B the sum of the b. B's terms
// at any s' in [0, s] are at most rem*(max(1, e)+1)*(1+|x|) at s, whose
// sum is the bound a measurement with extras reports. So for s' <= s:
// S(s') <= (1+g)T(s) + 2hB <= (S(s) + 2hB)(1+g)/(1-g) + 2hB; and for s'
// in [s, top]: S(s') >= (S(s) - 2hB)(1-g)/(1+g) - 2hB(top). The mean is
// the sum over n, rounded, which keeps order: when these bounds, over n,
// fall below mae or reach it, so does every mean they bound.
type proof struct {
	n, mae       float64
	rel          float64 // g, rounded up
	below, above float64
	topBound     float64 // B at top; +Inf until top is known
}

func newProof(n int, mae float64) *proof {
	k := float64(n-1) * u
	return &proof{n: float64(n), mae: mae, rel: k / (1 - k) * (1 + 0x1p-20), below: -1, above: math.Inf(1), topBound: math.Inf(1)}
}

// top records the bisection's first hi and its measurement.
func (pr *proof) top(at float64, m measured) {
	pr.topBound = m.bound
	pr.learn(at, m)
}

// learn adds what measurement m at sigma at, made with extras, proves.
func (pr *proof) learn(at float64, m measured) {
	if math.IsNaN(m.sum) || math.IsNaN(m.bound) || math.IsInf(m.bound, 0) {
		return
	}
	g, h := pr.rel, 16*u
	room := 1 + 2*g/(1-g) + 16*u // (1+g)/(1-g) and this arithmetic's own roundings
	if hi := (m.sum+2*h*m.bound)*room + 2*h*m.bound; hi/pr.n < pr.mae && at > pr.below {
		pr.below = at
	}
	if lo := (m.sum-2*h*m.bound)*(2-room) - 2*h*pr.topBound; lo > 0 && lo/pr.n >= pr.mae && at < pr.above {
		pr.above = at
	}
}
