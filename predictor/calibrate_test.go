package predictor

import (
	"math"
	"math/big"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"
)

// plainSigma is SigmaForMAE as it was before it learned to skip passes:
// every bisection pass measured. The fit must match it to the bit.
func plainSigma(jobs []Job, k int, seed uint64, mae float64) float64 {
	k = max(k, 1)
	f := pointsOf(jobs, k, seed)
	if len(f.z) == 0 {
		return 0
	}
	lo, hi := 0.0, 1.0
	for f.measure(hi, false).mean < mae && hi < 64 {
		hi *= 2
	}
	for range 50 {
		mid := (lo + hi) / 2
		if f.measure(mid, false).mean < mae {
			lo = mid
		} else {
			hi = mid
		}
	}
	return (lo + hi) / 2
}

// The fit skips the passes whose outcome its bounds prove, so its sigma
// is the plain bisection's to the bit: over random workloads, window
// sizes and targets from a hundredth of a token to beyond any sigma up
// to 64.
func TestSigmaForMAESkipsOnlyProvenPasses(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 8))
	n := 150
	if testing.Short() {
		n = 40
	}
	for c := range n {
		jobs := make([]Job, 1+rng.IntN(2000))
		for i := range jobs {
			out := 1 + rng.IntN(1+rng.IntN(4000))
			if rng.IntN(10) == 0 {
				out = 1 + rng.IntN(3)
			}
			jobs[i] = Job{Index: rng.IntN(1 << 20), Output: out}
		}
		k := 1 + rng.IntN(120)
		seed := rng.Uint64()
		var mae float64
		switch c % 5 {
		case 0:
			mae = rng.Float64() * 0.1
		case 1:
			mae = 1 + rng.Float64()*60
		case 2:
			mae = math.Exp(rng.Float64() * 14) // up to beyond what sigma 64 reaches
		default:
			mae = 5 + rng.Float64()*40
		}
		want, got := plainSigma(jobs, k, seed, mae), SigmaForMAE(jobs, k, seed, mae)
		if c%5 == 1 {
			mae = want // hard by design: the root itself
			want, got = plainSigma(jobs, k, seed, mae), SigmaForMAE(jobs, k, seed, mae)
		}
		if math.Float64bits(want) != math.Float64bits(got) {
			t.Fatalf("case %d (%d jobs, k %d, mae %v): sigma %v, the plain bisection's %v", c, len(jobs), k, mae, got, want)
		}
	}
}

// What the proof claims holds where it is at risk: at sigmas just below
// its lower end and just above its upper one, from 1e-16 to 1e-6 of
// sigma away, where the measured error is a few roundings from mae.
func TestProofHoldsAtItsEdges(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	for c := range 12 {
		jobs := make([]Job, 500+rng.IntN(20000))
		for i := range jobs {
			jobs[i] = Job{Index: i, Output: 1 + rng.IntN(1500)}
		}
		mae := 3 + rng.Float64()*50
		f := pointsOf(jobs, 1+rng.IntN(60), uint64(c))
		pr := newProof(len(f.z), mae)
		top := 1.0
		for {
			m := f.measure(top, true)
			if !(m.mean < mae && top < 64) {
				pr.top(top, m)
				f.bracket(pr, top, m)
				break
			}
			top *= 2
		}
		if pr.below < 0 || pr.above > top {
			t.Fatalf("case %d: the proof holds nothing: below %v, above %v", c, pr.below, pr.above)
		}
		for d := 1e-16; d < 1e-6; d *= 1.5 {
			if s := pr.below * (1 - d); f.measure(s, false).mean >= mae {
				t.Fatalf("case %d: proven below mae up to %v, but at %v it is not", c, pr.below, s)
			}
			if s := pr.above * (1 + d); s <= top && f.measure(s, false).mean < mae {
				t.Fatalf("case %d: proven at least mae from %v, but at %v it is not", c, pr.above, s)
			}
		}
	}
}

// The proof spares most passes: a fit of 50,000 requests measures
// fewer than 30 of the plain bisection's 51.
func TestSigmaForMAEMeasuresFewerPasses(t *testing.T) {
	jobs := make([]Job, 50_000)
	for i := range jobs {
		jobs[i] = Job{Index: i, Output: 20 + (i*37)%800}
	}
	_, passes := fitSigma(jobs, 50, 9, 19.9)
	if passes >= 30 {
		t.Fatalf("the fit measured %d passes", passes)
	}
	t.Logf("%d passes", passes)
}

// At a million requests the fit measures a million points a pass.
func BenchmarkSigmaForMAE(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	jobs := make([]Job, 1_000_000)
	for i := range jobs {
		jobs[i] = Job{Index: i, Output: 1 + int(rng.ExpFloat64()*250)}
	}
	b.Run("fit", func(b *testing.B) {
		for b.Loop() {
			SigmaForMAE(jobs, 50, 7, 19.9)
		}
	})
	b.Run("plain", func(b *testing.B) {
		for b.Loop() {
			plainSigma(jobs, 50, 7, 19.9)
		}
	})
}

// The fit's proof takes math.Exp to be within 4 ulp of e^x. Checked
// against 256-bit arithmetic where the fit's exponents lie (about the
// origin) and across the whole range the result is normal in.
func TestExpIsWithinFourULP(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	n := 20000
	if testing.Short() {
		n = 2000
	}
	worst := 0.0
	for i := range n {
		x := rng.NormFloat64() * 3
		if i%2 == 1 {
			x = (rng.Float64()*2 - 1) * 700
		}
		want := bigExp(x)
		got := new(big.Float).SetPrec(256).SetFloat64(math.Exp(x))
		diff, _ := new(big.Float).Sub(got, want).Float64()
		ref, _ := want.Float64()
		ulp := math.Nextafter(ref, math.Inf(1)) - ref
		if e := math.Abs(diff) / ulp; e > worst {
			worst = e
		}
		if math.Abs(diff) > 4*ulp {
			t.Fatalf("math.Exp(%v) = %v, %v ulp from e^x", x, math.Exp(x), math.Abs(diff)/ulp)
		}
	}
	t.Logf("worst error %.3f ulp", worst)
}

// bigExp is e^x to 256 bits: the series at x/2^16, squared 16 times.
func bigExp(x float64) *big.Float {
	const prec, halvings = 320, 16
	y := new(big.Float).SetPrec(prec).SetFloat64(x)
	y.SetMantExp(y, -halvings)
	sum := new(big.Float).SetPrec(prec).SetInt64(1)
	term := new(big.Float).SetPrec(prec).SetInt64(1)
	for k := int64(1); k < 40; k++ {
		term.Mul(term, y)
		term.Quo(term, new(big.Float).SetPrec(prec).SetInt64(k))
		sum.Add(sum, term)
	}
	for range halvings {
		sum.Mul(sum, sum)
	}
	return sum
}

// The points are listed side by side, each part from where its jobs'
// points start: the same points, in the same order, as one loop lists.
func TestPointsAreListedInOrderOnAnyCores(t *testing.T) {
	rng := rand.New(rand.NewPCG(6, 7))
	jobs := make([]Job, 70_000)
	for i := range jobs {
		jobs[i] = Job{Index: i * 3, Output: 1 + rng.IntN(900)}
	}
	for _, k := range []int{1, 7, 50} {
		var z, rem []float64
		total := 0
		for _, j := range jobs {
			total += (j.Output + k - 1) / k
		}
		stride := max(1, (total+maxFitPoints-1)/maxFitPoints)
		i := 0
		for _, j := range jobs {
			for g := 0; g < j.Output; g += k {
				if i%stride == 0 {
					z = append(z, normal(11, uint64(j.Index), uint64(g)))
					rem = append(rem, float64(j.Output-g))
				}
				i++
			}
		}
		was := runtime.GOMAXPROCS(4)
		f := pointsOf(jobs, k, 11)
		runtime.GOMAXPROCS(was)
		if !slices.Equal(f.z, z) || !slices.Equal(f.rem, rem) {
			t.Fatalf("k %d (stride %d): %d points listed, %d by one loop, or not the same", k, stride, len(f.z), len(z))
		}
	}
}
