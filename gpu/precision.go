package gpu

import (
	"fmt"
	"math"

	"github.com/x448/float16"
)

// Precision is a number format a forward pass stores its weights and
// matrix-product inputs in. The CPU executor and predictor can emulate
// each exactly where the CUDA path rounds, so a CUDA result is checked
// against a reference that made the same roundings (tight), and the
// float32 reference outputs bound what the format itself costs (loose).
type Precision int

const (
	// F32 rounds nothing: the float32 reference.
	F32 Precision = iota
	// BF16 is bfloat16: 8 exponent bits, 7 stored mantissa bits (relative
	// spacing 2^-8). The CUDA executor's format.
	BF16
	// FP16 is IEEE half: 5 exponent bits, 10 mantissa bits, largest 65504.
	FP16
	// TF32 is the tensor cores' float32 mode: float32 storage, matrix
	// inputs rounded to 10 mantissa bits.
	TF32
)

var precisionNames = []string{"f32", "bf16", "fp16", "tf32"}

func (p Precision) String() string {
	if p < 0 || int(p) >= len(precisionNames) {
		return fmt.Sprintf("Precision(%d)", int(p))
	}
	return precisionNames[p]
}

// ParsePrecision reads f32, bf16, fp16 or tf32.
func ParsePrecision(s string) (Precision, error) {
	for i, n := range precisionNames {
		if s == n {
			return Precision(i), nil
		}
	}
	return 0, fmt.Errorf("precision %q: valid are f32, bf16, fp16, tf32", s)
}

// Round returns x as the format stores it, rounded to nearest even.
func (p Precision) Round(x float32) float32 {
	switch p {
	case BF16:
		return bf16Round(x)
	case FP16:
		return fp16Round(x)
	case TF32:
		return mantissaRound(x, 13)
	}
	return x
}

// storesWeights says whether the format is also the weights' storage (it
// is for bf16 and fp16; tf32 keeps float32 storage and rounds inside the
// matrix unit).
func (p Precision) storesWeights() bool { return p == BF16 || p == FP16 }

// storedVector is how a weight that is no matrix (a norm, a bias, an
// embedding) is stored: rounded for BF16 and FP16, float32 for TF32.
func (p Precision) storedVector(xs []float32) []float32 {
	if !p.storesWeights() {
		return xs
	}
	return p.rounded(xs)
}

// roundAll rounds xs in place.
func (p Precision) roundAll(xs []float32) {
	if p == F32 {
		return
	}
	for i, v := range xs {
		xs[i] = p.Round(v)
	}
}

// rounded returns a rounded copy of xs (xs itself for F32 or nil).
func (p Precision) rounded(xs []float32) []float32 {
	if p == F32 || xs == nil {
		return xs
	}
	out := make([]float32, len(xs))
	for i, v := range xs {
		out[i] = p.Round(v)
	}
	return out
}

// bf16Round keeps the top 16 bits of a float32, rounding to nearest even;
// NaN stays NaN. It is the conversion the CUDA kernels and the weight
// upload use.
func bf16Round(x float32) float32 {
	return math.Float32frombits(uint32(bf16Bits(x)) << 16)
}

func bf16Bits(x float32) uint16 {
	u := math.Float32bits(x)
	if u&0x7f800000 == 0x7f800000 && u&0x7fffff != 0 {
		return uint16(u>>16) | 0x40
	}
	u += 0x7fff + (u>>16)&1
	return uint16(u >> 16)
}

// mantissaRound drops the low drop bits of x's mantissa, rounding to
// nearest even.
func mantissaRound(x float32, drop uint) float32 {
	u := math.Float32bits(x)
	if u&0x7f800000 == 0x7f800000 {
		return x
	}
	half := uint32(1)<<(drop-1) - 1
	u += half + (u>>drop)&1
	return math.Float32frombits(u &^ (uint32(1)<<drop - 1))
}

// fp16Round rounds x to IEEE half precision (subnormals included;
// overflow to infinity) and back.
func fp16Round(x float32) float32 {
	a := math.Abs(float64(x))
	switch {
	case math.IsNaN(a) || math.IsInf(a, 0) || a == 0:
		return x
	case a >= 65520: // rounds past the largest half, 65504
		return float32(math.Copysign(math.Inf(1), float64(x)))
	case a < 6.103515625e-05: // subnormal: a fixed step of 2^-24
		q := math.RoundToEven(a * (1 << 24))
		return float32(math.Copysign(q/(1<<24), float64(x)))
	}
	return mantissaRound(x, 13)
}

// fp16Bits is x as IEEE half bits, rounded to nearest even.
func fp16Bits(x float32) uint16 { return float16.Fromfloat32(x).Bits() }
