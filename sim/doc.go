// Package sim is the discrete-event simulator: it drives the scheduler core
// of one or more engine replicas over a virtual clock, pricing each step with
// a cost model from package cost, and records what every request experienced: in its
// result, or handed to Config.OnRecord as each request finishes. It answers
// the core's asks for predictions with a predictor at once, and takes a
// stretch of pure decode steps between events in one go (the core's
// Stretch and Advance), reporting each step's gaps in time order among
// the other replicas' events, so that a run's bytes are what stepping
// through every step (Config.TokenByToken) gives.
package sim
