// Package sim is the discrete-event simulator: it drives the scheduler core
// of one or more engine replicas over a virtual clock, pricing each step with
// a cost model from package cost, and records what every request experienced: in its
// result, or handed to Config.OnRecord as each request finishes.
package sim
