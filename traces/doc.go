// Package traces holds the workload a run replays: a list of requests, each
// with its arrival time and its prompt and output lengths. It reads and
// writes the native elis-sim trace format (JSON for people, JSONL for large
// traces), imports public trace formats (Azure, Mooncake, ShareGPT, APEX,
// Vidur and the two ELIS formats), generates synthetic traces from arrival
// processes and length distributions, and summarises a trace's statistics.
//
// The native format, version 1, as JSON:
//
//	{"elis_trace": 1, "name": "demo", "requests": [
//	  {"id": "r0", "arrival_s": 0.0, "prompt_tokens": 120, "output_tokens": 87,
//	   "prompt": "optional text", "priority": 0,
//	   "predictions": [{"generated": 0, "remaining": 90.5}, {"generated": 50, "remaining": 41}]}
//	]}
//
// As JSONL the first line is a header object {"elis_trace": 1, "name": ...}
// and every following line is one request object. Requests are kept in
// arrival order; readers sort stably by arrival time. A JSONL trace in
// arrival order can also be read as a run takes its requests (Stream),
// never whole.
package traces
