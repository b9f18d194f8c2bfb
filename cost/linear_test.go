package cost

import (
	"math"
	"testing"
)

func TestFitLinearRecoversAModel(t *testing.T) {
	truth := Linear{Base: 2e-3, PerPrefillToken: 5e-6, PerDecodeSeq: 4e-5, PerDecodeContext: 1e-8, PerPrefillAttn: 1e-9}
	var samples []StepSample
	for _, p := range []int{0, 16, 64, 256, 1024} {
		for _, d := range []int{0, 1, 4, 16} {
			for _, ctx := range []int64{128, 1024} {
				if p == 0 && d == 0 {
					continue
				}
				s := StepSample{PrefillTokens: p, PrefillAttn: float64(p) * float64(p+1) / 2, DecodeSeqs: d, DecodeContext: int64(d) * ctx}
				s.Seconds = truth.predict(&s)
				samples = append(samples, s)
			}
		}
	}
	fit, err := FitLinear(samples)
	if err != nil {
		t.Fatal(err)
	}
	pe, de := fit.StepErrors(samples)
	if pe > 0.1 || de > 0.1 || math.Abs(fit.Base-truth.Base)/truth.Base > 0.01 {
		t.Fatalf("fit %+v (errors %.3f%%, %.3f%%), truth %+v", fit, pe, de, truth)
	}
	if _, err := FitLinear(samples[:3]); err == nil {
		t.Fatal("fitted 3 samples")
	}
}
