// Package sim is the discrete-event simulator: it drives the scheduler core
// of one or more engine replicas over a virtual clock, pricing each step with
// a cost model from package cost, and records what every request experienced: in its
// result, or handed to Config.OnRecord as each request finishes. It answers
// the core's asks for predictions with a predictor at once. It reads only
// a step's sums, so the core keeps steady decodes lazily (policies.
// Scheduler.SumsOnly) and a run costs per event rather than per running
// request; a lone worker runs a quiet stretch of decode steps in one go
// (Scheduler.Stretch and Advance), pricing each of its steps from their
// sums. Either way it writes the bytes that visiting every request at
// every step (Config.TokenByToken) gives. It takes its requests from a
// whole trace (Run) or from a traces.Stream as the run goes (RunStream),
// the same run either way.
package sim
