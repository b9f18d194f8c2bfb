// Package policies is the scheduler core of elis-sim and its scheduling
// policies. The core is a deterministic state machine with no clock and no
// I/O, after etcd-io/raft: a driver asks it for the next batch at a time it
// names, runs the batch (on a cost model or on a device), and tells it what
// the batch produced and when it ended. Where a policy needs predictions the
// core does not call a predictor: it lists asks (Scheduler.Asks), and the
// driver answers them before the next step (Scheduler.Answer, or
// AnswerAll with a Predictor). It follows vLLM v1's scheduling rules
// (running requests first, a per-step token budget, chunked prefill, a paged
// KV cache with automatic prefix caching, preemption by recomputation) and
// lets a Policy order the queues and pick preemption victims: FCFS,
// priority, SJF, oracle SJF/SRPT and ISRTF with its three modes and its
// guards (lazy or asynchronous predictions, displacement hysteresis, a
// slowdown cap). Routers, the policies that spread requests over engine
// replicas (least loaded, round robin, by predicted work, by prefix
// affinity), live here too, with the Dispatcher every driver routes and
// keeps replica load through. A driver that only prices steps (the
// simulator) sets Scheduler.SumsOnly, and the core then keeps requests
// that decode steadily as offsets of one counter, so a step costs per
// event rather than per running request, and can complete a quiet stretch
// of such steps at once (Scheduler.Stretch, Advance). DESIGN.md, beside this file, states the
// scheduling rules the core follows; the code cites them by number.
package policies
