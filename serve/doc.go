// Package serve is an OpenAI-compatible HTTP server on the scheduler core:
// requests to /v1/completions and /v1/chat/completions become arrivals of
// engine workers (a device's forward passes, or a cost model that takes as
// long as it prices each step), routed over them by the core's
// Dispatcher; their tokens stream back as server-sent events as the engine
// makes them, and /metrics exposes the core's queues, KV use, preemptions
// and prefix cache under vLLM's metric names. Its life is net/http's:
// Serve answers with bounded clients (header, body, write and idle
// timeouts, a body limit, connections in all and per client address), and
// Shutdown stops admitting, lets requests in flight finish, then stops the
// engines. Errors are vLLM's {"error": {...}} object. It is a GPU-free
// stand-in for vLLM with any of elis-sim's policies, to test clients,
// routers and bench against.
package serve
