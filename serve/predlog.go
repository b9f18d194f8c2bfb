package serve

import (
	"fmt"
	"io"
	"math"
	"sync"

	"github.com/elis-sim/elis-sim/policies"
)

// LogPredictions wraps p so that each prediction also writes the line the
// ISRTF fork of vLLM logs, which bench --server-log reads back:
//
//	[ELIS] Request cmpl-7 initial prediction: 150.3 tokens
//	[ELIS] Request cmpl-7 prediction updated: 150.3 -> 98.5 (at 50 tokens)
func LogPredictions(p policies.Predictor, w io.Writer) policies.Predictor {
	return &logged{p: p, w: w}
}

type logged struct {
	p  policies.Predictor
	mu sync.Mutex // engines predict from their own goroutines
	w  io.Writer
}

func (l *logged) Predict(s *policies.Seq) float64 {
	v := l.p.Predict(s)
	l.mu.Lock()
	defer l.mu.Unlock()
	if math.IsInf(s.Predicted, 1) && s.Generated == 0 {
		fmt.Fprintf(l.w, "[ELIS] Request %s initial prediction: %.1f tokens\n", s.ID, v)
	} else {
		fmt.Fprintf(l.w, "[ELIS] Request %s prediction updated: %.1f -> %.1f (at %d tokens)\n", s.ID, s.Predicted, v, s.Generated)
	}
	return v
}
