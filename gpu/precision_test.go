package gpu

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/x448/float16"
)

// fp16Round agrees with an independent float16 conversion, subnormals and
// overflow included; bf16Round and TF32 keep the bits they should.
func TestPrecisionRound(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 200000; i++ {
		x := float32(rng.NormFloat64() * math.Pow(10, rng.Float64()*12-8))
		want := float16.Fromfloat32(x).Float32()
		if got := FP16.Round(x); got != want && !(math.IsInf(float64(got), 0) && math.IsInf(float64(want), 0)) {
			t.Fatalf("fp16(%g) = %g, want %g", x, got, want)
		}
		b := BF16.Round(x)
		if math.Float32bits(b)&0xffff != 0 || math.Abs(float64(b-x)) > math.Abs(float64(x))/256 {
			t.Fatalf("bf16(%g) = %g", x, b)
		}
		f := TF32.Round(x)
		if math.Float32bits(f)&0x1fff != 0 || math.Abs(float64(f-x)) > math.Abs(float64(x))/2048 {
			t.Fatalf("tf32(%g) = %g", x, f)
		}
	}
	if BF16.Round(1+1.0/256) != 1 || BF16.Round(1+3.0/256) != 1+4.0/256 { // ties to even
		t.Fatal("bf16 does not round ties to even")
	}
	if !math.IsNaN(float64(BF16.Round(float32(math.NaN())))) {
		t.Fatal("bf16 lost a NaN")
	}
	for _, s := range []string{"f32", "bf16", "fp16", "tf32"} {
		p, err := ParsePrecision(s)
		if err != nil || p.String() != s {
			t.Fatalf("%s: %v %v", s, p, err)
		}
	}
	if _, err := ParsePrecision("fp8"); err == nil {
		t.Fatal("accepted fp8")
	}
}
