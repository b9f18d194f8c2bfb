package hist

import (
	"math"
	"sort"
	"testing"
)

func TestQuantilesCloseToExact(t *testing.T) {
	var h H
	var xs []float64
	for i := 1; i <= 10000; i++ {
		v := 1e-3 * math.Exp(float64(i%977)/200)
		xs = append(xs, v)
		h.Add(v)
	}
	sort.Float64s(xs)
	for _, p := range []float64{0.5, 0.9, 0.99} {
		exact := xs[int(math.Ceil(p*float64(len(xs))))-1]
		if got := h.Quantile(p); math.Abs(got-exact)/exact > 0.01 {
			t.Errorf("p%.0f: %g, exact %g", p*100, got, exact)
		}
	}
	if h.N() != 10000 || h.Max() != xs[len(xs)-1] {
		t.Fatal("count or max")
	}
}
