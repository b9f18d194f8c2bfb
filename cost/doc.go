// Package cost prices scheduler steps: the roofline presets (a model's
// operators on a GPU: GEMMs, attention over the paged KV cache, norms, the
// LM head, tensor-parallel all-reduces, a per-step overhead), linear models
// fitted to timed steps, the device profiles they are fitted to, and the
// cost files that carry either to a run. Every driver that needs a step's
// duration without running it (the simulator, serve's simulated engine,
// calibration) asks this package; it knows nothing of clocks or requests.
package cost
