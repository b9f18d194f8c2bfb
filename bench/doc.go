// Package bench measures real serving engines from outside: it sends a
// trace to OpenAI-compatible servers open loop (each request at its
// arrival time, whatever the servers do), times every streamed chunk into
// the simulator's per-request records, scrapes the servers' Prometheus
// metrics, reads the ISRTF fork's prediction log lines, and profiles a live
// server (first tokens by prompt length, decode steps by batch and context)
// for calibration. Its records are the simulator's, so a simulated result
// and a measured one compare one to one; what only HTTP shows (a reply's
// status, the server's request id) is kept beside them in Replies.
package bench
