// Package engine runs the scheduler core on the wall clock: a Worker takes
// submitted requests, asks the core for each step (answering the core's
// asks for predictions with its Predictor first), executes it, and tells
// the core when it ended. A step is executed by a gpu.Executor (the served
// model's forward pass over a paged KV cache, on the CPU or a GPU) or, for
// a GPU-free stand-in, by sleeping as long as a cost model prices it and
// emitting placeholder tokens. Replay drives workers with a trace's
// arrivals, serve with HTTP requests; each token is reported as it is
// generated, and a request whose client leaves can be aborted.
package engine
