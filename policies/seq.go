package policies

import "math"

// Request is what a driver submits to the core: one request of a trace.
type Request struct {
	ID           string
	Index        int // the driver's index (its trace position); predictors use it
	Arrival      float64
	PromptTokens int
	OutputTokens int // forced output length: the request finishes after this many tokens
	Priority     int // lower is more urgent, as in vLLM
	// Content names the request's tokens for the prefix cache; nil names
	// nothing. The core keeps derived data in it: give each request its own.
	Content *Content
}

// state is where a request is in the core.
type state uint8

const (
	stWaiting state = iota
	stRunning
	stFinished
	stRejected
	stResubmit // ending an ISRTF window in resubmit mode
)

// Seq is a request inside the core. Policies read its exported fields to
// order queues and choose victims; only the core changes them.
type Seq struct {
	Request
	Generated   int     // output tokens produced so far
	Computed    int     // tokens whose KV entries exist
	Predicted   float64 // predicted remaining output tokens (+Inf: no prediction)
	Initial     float64 // the first prediction of the total output length
	Preemptions int

	// The fields every step reads sit together, after the request's
	// (the simulator's time at a million requests is mostly cache misses).
	state     state
	inBatch   bool    // scheduled in the step being built
	boundary  bool    // crossed a prediction window in the last step (ISRTF re-ranking)
	paused    bool    // waiting but holding its KV blocks (ISRTF paper mode)
	lazy      bool    // its prediction was deferred (LazyPredictions)
	asked     bool    // its prediction is asked for and not yet answered (not AsyncPredictions)
	capLater  bool    // waiting for its first prediction before the slowdown cap can time it
	initSet   bool    // Initial holds its first known prediction
	next      float64 // an asynchronous prediction not yet known (AsyncPredictions)
	arrived   int64   // the step at which it arrived (the slowdown cap)
	capEpoch  int32   // which of its waits the slowdown cap's deadline is for
	slot      int32   // Config.Slots: the slot it holds
	hashed    int32   // leading blocks of table whose identity is cached
	shared    int32   // leading blocks another request may share (kvPool.sharedBlocks)
	blocks    int     // KV blocks held
	lastToken float64
	order     int64 // queue position key: FIFO order, negative for front insertion
	queueSlot int32 // its slot in the waiting heap (waitQueue), -1 when not queued
	lastPred  int   // Generated at the last prediction
	waitSince int64 // step at which it last entered the waiting queue (aging)
	promoted  int64 // step until which aging promotes it; 0 when not promoted
	rec       measured
	serial    uint64  // the order of arrival: the private identity of its blocks
	table     []int32 // KV block ids (prefix caching): held, or last held

	// A steady decode (steady.go): while steady, Computed is sBase plus
	// the core's steady counter and Generated, lastToken and rec lag.
	steady bool
	sEpoch uint32 // moves on when it leaves the set (stale bucket entries)
	sBase  int64
	sFrom  int64 // the counter when it joined
	sKey   int64 // its running order within the set
}

// Tokens is the length of the request's known sequence: prompt plus
// generated output. A preempted request must recompute all of it.
func (s *Seq) Tokens() int { return s.PromptTokens + s.Generated }

// Remaining is the true number of output tokens still to come.
func (s *Seq) Remaining() int { return s.OutputTokens - s.Generated }

// Blocks is the number of KV blocks s holds. A driver with a real cache
// maps them to physical blocks: they grow while s computes and drop to 0
// when s is preempted, paused out of memory, or finished. (A core whose
// driver reads sums only writes a steadily decoding request's count when
// it next visits it: such a driver reads no block counts.)
func (s *Seq) Blocks() int { return s.blocks }

// BlockTable is the ids of the blocks s holds, in token order, with prefix
// caching on (nil with it off): a driver with a real cache uses them as
// its block table, since requests with a common prefix share blocks. A
// core whose driver reads sums only (Scheduler.SumsOnly) gives ids to
// named blocks only: the table then lists s's named blocks, its first.
func (s *Seq) BlockTable() []int32 {
	if s.blocks == 0 {
		return nil
	}
	return s.table[:min(s.blocks, len(s.table))]
}

func newSeq(r Request, order int64) *Seq {
	return newSeqAt(new(Seq), r, order)
}

// newSeqAt makes s a new request's Seq.
func newSeqAt(s *Seq, r Request, order int64) *Seq {
	*s = Seq{Request: r, Predicted: math.Inf(1), Initial: math.Inf(1), queueSlot: -1, order: order}
	s.rec = measured{firstScheduled: -1, firstToken: -1, finish: -1}
	return s
}

// measured is what the core measures of a request as it runs; record
// adds the request's own fields and counts (a Seq holds no copy of them).
type measured struct {
	firstScheduled, firstToken, finish, maxGap float64
	rejected                                   string
	prefillTokens, cachedTokens                int32
	predictions                                []Prediction
}

// record is q's Record so far.
func (q *Seq) record() Record {
	m := &q.rec
	return Record{ID: q.ID, Index: q.Index, Arrival: q.Arrival, FirstScheduled: m.firstScheduled, FirstToken: m.firstToken,
		Finish: m.finish, PromptTokens: q.PromptTokens, OutputTokens: q.OutputTokens, Generated: q.Generated,
		Preemptions: q.Preemptions, MaxGap: m.maxGap, Rejected: m.rejected, PrefillTokens: m.prefillTokens,
		CachedTokens: m.cachedTokens, Predictions: m.predictions}
}

// Record is what one request experienced: the core's output for reports.
// Times are those the driver gave; -1 means it never happened.
type Record struct {
	ID             string  `json:"id"`
	Index          int     `json:"-"`
	Arrival        float64 `json:"arrival_s"`
	FirstScheduled float64 `json:"first_scheduled_s"`
	FirstToken     float64 `json:"first_token_s"`
	Finish         float64 `json:"finish_s"`
	PromptTokens   int     `json:"prompt_tokens"`
	OutputTokens   int     `json:"output_tokens"`
	Generated      int     `json:"generated_tokens"`
	Preemptions    int     `json:"preemptions"`
	MaxGap         float64 `json:"max_itl_s"`
	Worker         int     `json:"worker"`
	Rejected       string  `json:"rejected,omitempty"`
	// With prefix caching on: prompt and recomputed tokens computed by
	// prefill chunks, and tokens found in the cache at admissions.
	PrefillTokens int32        `json:"prefill_tokens_computed,omitempty"`
	CachedTokens  int32        `json:"cached_tokens,omitempty"`
	Predictions   []Prediction `json:"predictions,omitempty"`
}

// Prediction is one prediction event: after Generated tokens the predictor
// said Predicted remaining tokens; Actual is the truth.
type Prediction struct {
	At        float64 `json:"at_s"`
	Generated int     `json:"generated"`
	Predicted float64 `json:"predicted"`
	Actual    int     `json:"actual"`
}
