package serve

import (
	"fmt"
	"io"

	"github.com/elis-sim/elis-sim/policies"
)

// WritePredictionLines writes the lines the ISRTF fork of vLLM logs for
// the predictions the core made, which bench --server-log reads back:
//
//	[ELIS] Request cmpl-7 initial prediction: 150.3 tokens
//	[ELIS] Request cmpl-7 prediction updated: 150.3 -> 98.5 (at 50 tokens)
//
// The core lists its predictions (Scheduler.ReportPredictions); the
// server writes them after each step, so no I/O happens inside the core.
func WritePredictionLines(w io.Writer, made []policies.PredictionMade) {
	for _, m := range made {
		if m.First {
			fmt.Fprintf(w, "[ELIS] Request %s initial prediction: %.1f tokens\n", m.ID, m.Predicted)
		} else {
			fmt.Fprintf(w, "[ELIS] Request %s prediction updated: %.1f -> %.1f (at %d tokens)\n", m.ID, m.Previous, m.Predicted, m.Generated)
		}
	}
}
