package hist

import (
	"math"
	"math/rand/v2"
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

// TestLowerBoundsMatchTheLogarithm: finding a bucket from the table and
// the lower bounds gives the logarithm's bucket for every float within
// 300 ulps of every bound (where the logarithm's rounding, a few ulps,
// could make bucket not monotone; farther away it cannot cross an
// integer), at every cell's edges, and for random samples over the whole
// range.
func TestLowerBoundsMatchTheLogarithm(t *testing.T) {
	bd := table()
	lo := bd.lower
	for b := 1; b < nBuckets; b++ {
		if !(lo[b] > lo[b-1]) {
			t.Fatalf("bound %d (%g) not above bound %d (%g)", b, lo[b], b-1, lo[b-1])
		}
		bits := math.Float64bits(lo[b])
		for d := uint64(0); d <= 600; d++ {
			v := math.Float64frombits(bits - 300 + d)
			if got, want := bd.find(v), bucket(v); got != want {
				t.Fatalf("%v (bound %d %+d ulps): %d, the logarithm's %d", v, b, int(d)-300, got, want)
			}
		}
	}
	for c := range uint64(len(bd.first)) {
		for _, bits := range []uint64{(bd.base + c) << cellShift, (bd.base+c+1)<<cellShift - 1} {
			v := math.Float64frombits(bits)
			if got, want := bd.find(v), bucket(v); got != want {
				t.Fatalf("%v (cell %d): %d, the logarithm's %d", v, c, got, want)
			}
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200_000 {
		v := minV * math.Pow(10, 13*rng.Float64()-0.5)
		if got, want := bd.find(v), bucket(v); got != want {
			t.Fatalf("%v: %d, the logarithm's %d", v, got, want)
		}
	}
	for _, v := range []float64{0, -1, minV, math.Inf(1), math.MaxFloat64, 1e300, math.NaN()} {
		if got, want := bd.find(v), bucket(v); got != want || got < 0 || got >= nBuckets {
			t.Fatalf("%v: %d, the logarithm's %d", v, got, want)
		}
	}
}

// Every sample lands in the logarithm's bucket, whichever of AddN's
// shortcuts finds it: gaps alternating between two regimes as a loaded
// run's do, drifting, jumping, repeating, and the ends.
func TestAddCountsByTheLogarithm(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	var h H
	want := make([]uint64, nBuckets)
	add := func(v float64) {
		h.Add(v)
		want[bucket(v)]++
	}
	short, long := 0.008, 0.030
	for i := range 100_000 {
		switch r := rng.IntN(20); {
		case r < 9:
			short *= 1 + 1e-4*rng.Float64()
			add(short)
		case r < 18:
			long *= 1 + 1e-4*rng.Float64()
			add(long)
		case r < 19:
			add(minV * math.Pow(10, 13*rng.Float64()-0.5))
		default:
			add([]float64{0, minV, math.Inf(1), 1e300, short, long}[i%6])
		}
	}
	for b, c := range h.counts {
		if c != want[b] {
			t.Fatalf("bucket %d: %d samples, the logarithm's %d", b, c, want[b])
		}
	}
}

// BenchmarkLowerBounds is the table's cost, paid once a process.
func BenchmarkLowerBounds(b *testing.B) {
	for b.Loop() {
		newBounds()
	}
}

// BenchmarkAddN adds a run's pattern of gaps: decode steps whose gap grows
// slowly as contexts do, and now and then a step with a prompt chunk
// (steady); and gaps scattered over two decades (an overloaded run's
// steps, whose prompt chunks vary).
func BenchmarkAddN(b *testing.B) {
	steady := make([]float64, 4096)
	g := 0.0075
	for i := range steady {
		g *= 1.0001
		steady[i] = g
		if i%12 == 0 {
			steady[i] = 0.03 + g
		}
	}
	rng := rand.New(rand.NewPCG(3, 4))
	scattered := make([]float64, 4096)
	for i := range scattered {
		scattered[i] = 0.005 * math.Pow(10, 2*rng.Float64())
	}
	for _, c := range []struct {
		name string
		gaps []float64
	}{{"steady", steady}, {"scattered", scattered}} {
		b.Run(c.name, func(b *testing.B) {
			var h H
			for b.Loop() {
				for _, v := range c.gaps {
					h.AddN(v, 16)
				}
			}
		})
	}
}

// AddEach is AddN of each value in turn: the same counts, and the same
// sum to the bit (its order is theirs).
func TestAddEachIsAddNInTurn(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	var each, one H
	for range 200 {
		vs := make([]float64, rng.IntN(40))
		g := 0.005 + 0.05*rng.Float64()
		for i := range vs {
			g *= 1 + 1e-3*rng.Float64()
			vs[i] = g
			if rng.IntN(8) == 0 {
				vs[i] = minV * math.Pow(10, 13*rng.Float64()-0.5)
			}
		}
		n := uint64(rng.IntN(300))
		each.AddEach(vs, n)
		for _, v := range vs {
			one.AddN(v, n)
		}
	}
	if each.n != one.n || math.Float64bits(each.sum) != math.Float64bits(one.sum) || each.max != one.max {
		t.Fatalf("AddEach: n %d sum %v max %v; AddN: n %d sum %v max %v", each.n, each.sum, each.max, one.n, one.sum, one.max)
	}
	for b := range one.counts {
		if each.counts[b] != one.counts[b] {
			t.Fatalf("bucket %d: %d, AddN's %d", b, each.counts[b], one.counts[b])
		}
	}
}
