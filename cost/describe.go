package cost

import (
	"fmt"
	"io"
)

// Describe writes what a calibration fitted to profile p: the step cost
// model's errors on the profile's steps (and first tokens, with the
// overheads), and the predictor network's cost.
func (c *CostFile) Describe(w io.Writer, p *DeviceProfile) {
	if c.Overheads != nil {
		fmt.Fprintf(w, "fitted a linear step cost model and the overheads to %d decode steps and %d first tokens of %s on %s: mean |error| %s on decode steps, %s on first tokens; %.3g ms per request outside the steps\n",
			len(p.Steps), len(p.Requests), c.Model, c.Device, c.Errors["decode_step"], c.Errors["first_token"], c.Overheads.PerRequest*1e3)
	} else {
		fmt.Fprintf(w, "fitted a linear step cost model to %d steps of %s on %s: mean |error| %s on prefill steps, %s on decode steps\n",
			len(p.Steps), c.Model, c.Device, c.Errors["prefill_step"], c.Errors["decode_step"])
	}
	if c.Predictor != nil {
		fmt.Fprintf(w, "predictor network: %.3g ms per batch + %.3g ms per call + %.3g us per token (%s mean |error|)\n",
			c.Predictor.PerBatch*1e3, c.Predictor.PerCall*1e3, c.Predictor.PerToken*1e6, c.Errors["predictor"])
	}
}
