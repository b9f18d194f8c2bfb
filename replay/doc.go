// Package replay drives the same scheduler core as the simulator with the
// wall clock and real forward passes on a gpu backend, so that a simulated
// result can be checked on hardware. Not built yet: see the open issue
// "Replay".
package replay
