// Package replay runs a trace for real: the same scheduler core and
// policies as the simulator, driven by the wall clock, with every step
// executed by a gpu executor (the served model's forward pass over a paged
// KV cache) and the predictor network run at every prediction point, so its
// cost is real. The arrivals and the engines run as one group: the first
// error stops them all and is returned at once. Its per-request records have the simulator's format, so a
// simulated result can be checked one to one. It also profiles an executor
// over step shapes, the input of the simulator's calibration.
package replay
