package predictor

import "math"

// Job is what SigmaForMAE needs of a request: its output length.
type Job struct {
	Index, Output int
}

// SigmaForMAE finds the log-normal sigma at which Noisy's mean absolute
// error over the prediction points of jobs (at 0, K, 2K, ... generated
// tokens) equals mae tokens. The error grows with sigma, so bisection
// finds it; the result is deterministic for a seed.
func SigmaForMAE(jobs []Job, k int, seed uint64, mae float64) float64 {
	measure := func(sigma float64) float64 {
		n := Noisy{Sigma: sigma, Seed: seed}
		sum, cnt := 0.0, 0
		for _, j := range jobs {
			for g := 0; g < j.Output; g += k {
				rem := j.Output - g
				sum += math.Abs(n.value(j.Index, g, rem) - float64(rem))
				cnt++
			}
		}
		if cnt == 0 {
			return 0
		}
		return sum / float64(cnt)
	}
	lo, hi := 0.0, 1.0
	for measure(hi) < mae && hi < 64 {
		hi *= 2
	}
	for i := 0; i < 50; i++ {
		mid := (lo + hi) / 2
		if measure(mid) < mae {
			lo = mid
		} else {
			hi = mid
		}
	}
	return (lo + hi) / 2
}
