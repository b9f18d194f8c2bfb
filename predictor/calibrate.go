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
func SigmaForMAE(jobs []Job, k int, seed uint64, mae float64) float64 {
	if k < 1 {
		k = 1
	}
	total := 0
	for _, j := range jobs {
		total += (j.Output + k - 1) / k
	}
	stride := max(1, (total+maxFitPoints-1)/maxFitPoints)
	var z, rem []float64
	i := 0
	for _, j := range jobs {
		n := (j.Output + k - 1) / k
		// the points of this job whose running index is a multiple of stride
		first := (stride - i%stride) % stride
		for p := first; p < n; p += stride {
			g := p * k
			z = append(z, normal(seed, uint64(j.Index), uint64(g)))
			rem = append(rem, float64(j.Output-g))
		}
		i += n
	}
	if len(z) == 0 {
		return 0
	}
	// A pass's exps are made side by side, its sum in point order, so
	// sigma is the same to the bit on any number of cores.
	terms := make([]float64, len(z))
	parts := min(runtime.GOMAXPROCS(0), max(1, len(z)/(1<<16)))
	measure := func(sigma float64) float64 {
		var wg sync.WaitGroup
		for w := range parts {
			lo, hi := w*len(z)/parts, (w+1)*len(z)/parts
			wg.Go(func() {
				for p := lo; p < hi; p++ {
					terms[p] = rem[p] * math.Abs(math.Exp(sigma*z[p])-1)
				}
			})
		}
		wg.Wait()
		sum := 0.0
		for _, v := range terms {
			sum += v
		}
		return sum / float64(len(z))
	}
	lo, hi := 0.0, 1.0
	for measure(hi) < mae && hi < 64 {
		hi *= 2
	}
	for range 50 {
		mid := (lo + hi) / 2
		if measure(mid) < mae {
			lo = mid
		} else {
			hi = mid
		}
	}
	return (lo + hi) / 2
}
