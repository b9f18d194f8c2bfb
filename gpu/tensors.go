package gpu

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// tensorSet looks tensors up by name with their expected shapes, keeping
// the first error so a loader can ask for everything, then check once.
type tensorSet struct {
	ts   map[string]*Tensor
	from string // file or folder, for messages
	err  error
}

func (s *tensorSet) get(name string, shape ...int) []float32 {
	if s.err != nil {
		return nil
	}
	t, ok := s.ts[name]
	if !ok {
		s.err = fmt.Errorf("%s: missing tensor %q", s.from, name)
		return nil
	}
	if fmt.Sprint(t.Shape) != fmt.Sprint(shape) {
		s.err = fmt.Errorf("%s: tensor %q has shape %v, the config wants %v", s.from, name, t.Shape, shape)
		return nil
	}
	return t.Data
}

// randMatrix draws an [out][in] matrix with std 1/sqrt(in), which keeps
// activations of random models in range.
func randMatrix(rng *rand.Rand, out, in int) []float32 {
	m := make([]float32, out*in)
	s := 1 / math.Sqrt(float64(in))
	for i := range m {
		m[i] = float32(rng.NormFloat64() * s)
	}
	return m
}

func filled(n int, v float32) []float32 {
	out := make([]float32, n)
	for i := range out {
		out[i] = v
	}
	return out
}
