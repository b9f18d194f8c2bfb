// Package serve is an OpenAI-compatible HTTP server on the scheduler core:
// requests to /v1/completions and /v1/chat/completions become arrivals of
// engine workers (a device's forward passes, or a cost model that takes as
// long as it prices each step), their tokens stream back as server-sent
// events as the engine makes them, and /metrics exposes the core's queues,
// KV use, preemptions and prefix cache under vLLM's metric names. It is a
// GPU-free stand-in for vLLM with any of elis-sim's policies, to test
// clients, routers and bench against.
package serve
