package policies

import (
	"errors"
	"fmt"
	"math"
)

// Config holds the engine limits the core schedules within. The names
// follow vLLM's engine arguments.
type Config struct {
	MaxBatchedTokens int // token budget of one step (max_num_batched_tokens)
	MaxSeqs          int // sequences in one step (max_num_seqs)
	BlockSize        int // tokens per KV block (16 in vLLM)
	NumBlocks        int // KV cache capacity in blocks
	MaxModelLen      int // context length of the model
	// LongPrefillThreshold caps one request's prefill chunk per step when
	// > 0 (long_prefill_token_threshold).
	LongPrefillThreshold int
	// PredictionInterval is the ISRTF window K: a request is re-predicted
	// every K generated tokens (VLLM_ELIS_PREDICTION_INTERVAL, default 50).
	PredictionInterval int
	// LazyPredictions calls the predictor only where its answer can change
	// an order: a request arriving to an empty queue with room in the
	// batch is admitted unpredicted, and a running request's window
	// re-prediction is skipped while nothing waits (its last prediction
	// stands; not in resubmit mode, where a window ends the request). A
	// request is predicted when it must be ranked after all: when a queue
	// forms around it, or when victims are chosen by predicted work.
	LazyPredictions bool
	// AsyncPredictions runs the predictor beside the forward pass: a
	// prediction asked for before a step is known only after it, so the
	// core ranks by it one step late (and drivers price it at nothing on
	// the critical path).
	AsyncPredictions bool
	// DisplaceMargin and DisplaceRatio are the paper mode's hysteresis: a
	// running request is displaced only by a waiting one whose predicted
	// remaining is smaller by more than DisplaceMargin tokens and by more
	// than DisplaceRatio of its own, so prediction noise does not churn
	// requests of similar length.
	DisplaceMargin, DisplaceRatio float64
	// PrefixCaching is vLLM's automatic prefix caching
	// (enable_prefix_caching): on by default in vLLM v1 and in elis-sim's
	// drivers, off in the zero Config.
	PrefixCaching bool
	Guard         Guard
	// Slots schedules as llama.cpp's server does (DESIGN.md rule 20)
	// rather than as vLLM: MaxSeqs fixed slots of MaxModelLen tokens each,
	// a request taking the free slot least recently used; a step's decode
	// tokens first, then prompt tokens of the slots in slot order up to
	// the budget; no preemption (NumBlocks must hold every slot's context)
	// and no prefix caching. Each step's KVCells counts every occupied
	// cell, idle slots' kept prompts included, which llama.cpp's attention
	// reads.
	Slots bool `json:",omitempty"`
}

// Guard is the starvation guard, usable with any policy.
type Guard struct {
	// AgingSteps > 0 promotes a request that has waited this many steps
	// to the front for PromoteSteps steps (vllm-ltr used 200 and 10).
	AgingSteps, PromoteSteps int
	// PreemptLimit > 0 protects a request from preemption once it has
	// generated this fraction of its initial predicted length (TRAIL's
	// limited preemption; C = 0.8 worked best there).
	PreemptLimit float64
	// SlowdownCap > 1 bounds the tail: a waiting request whose projected
	// slowdown (steps since it arrived plus its predicted remaining
	// tokens, over its predicted length: a decode step makes a token, so
	// its length in steps is what it would take alone) reaches the cap is
	// promoted for good: first in the queue, never displaced or preempted
	// while another candidate exists.
	SlowdownCap float64
}

// Validate reports the first unusable setting.
func (c *Config) Validate() error {
	switch {
	case c.MaxBatchedTokens < 1:
		return fmt.Errorf("max_num_batched_tokens %d: want >= 1", c.MaxBatchedTokens)
	case c.MaxSeqs < 1:
		return fmt.Errorf("max_num_seqs %d: want >= 1", c.MaxSeqs)
	case c.BlockSize < 1:
		return fmt.Errorf("block size %d: want >= 1", c.BlockSize)
	case c.NumBlocks < 1:
		return fmt.Errorf("KV blocks %d: want >= 1 (the model's weights may not fit the GPU memory)", c.NumBlocks)
	case c.MaxModelLen < 2:
		return fmt.Errorf("max_model_len %d: want >= 2", c.MaxModelLen)
	case c.PredictionInterval < 1:
		return fmt.Errorf("prediction interval %d: want >= 1", c.PredictionInterval)
	case c.Guard.AgingSteps < 0 || c.Guard.PromoteSteps < 0 || (c.Guard.AgingSteps > 0 && c.Guard.PromoteSteps < 1):
		return errors.New("aging: want steps >= 1 to wait and >= 1 to promote")
	case c.DisplaceMargin < 0 || c.DisplaceRatio < 0 || c.DisplaceRatio >= 1 || math.IsNaN(c.DisplaceMargin+c.DisplaceRatio):
		return fmt.Errorf("displace margin %v tokens, ratio %v: want >= 0 tokens and a ratio in [0, 1)", c.DisplaceMargin, c.DisplaceRatio)
	case c.Guard.SlowdownCap != 0 && !(c.Guard.SlowdownCap > 1):
		return fmt.Errorf("slowdown cap %v: want a factor > 1 (0: off)", c.Guard.SlowdownCap)
	case c.Guard.PreemptLimit < 0 || math.IsNaN(c.Guard.PreemptLimit):
		return fmt.Errorf("preempt limit %v: want a fraction >= 0", c.Guard.PreemptLimit)
	case c.Slots && c.PrefixCaching:
		return errors.New("slots (llama.cpp's scheduling) keep no shared prefix cache: turn prefix caching off")
	case c.Slots && c.NumBlocks < c.MaxSeqs*((c.MaxModelLen+c.BlockSize-1)/c.BlockSize):
		return fmt.Errorf("slots: %d KV blocks of %d tokens cannot hold %d slots of %d tokens (llama.cpp never preempts)", c.NumBlocks, c.BlockSize, c.MaxSeqs, c.MaxModelLen)
	}
	return nil
}

// Predictor estimates a request's remaining output tokens after it has
// generated some. The core never calls one: it lists the predictions it
// wants (Scheduler.Asks) and a driver answers them (Scheduler.Answer),
// with a Predictor or however it likes (a network batched over the asks,
// beside the forward pass). Drivers and routers share the interface.
type Predictor interface {
	Predict(r *Request, generated int) float64
}

// PredictorInputCap is how many predictor tokens of prompt plus generated
// text a prediction reads at most (the patch truncates to 512).
const PredictorInputCap = 512

// AnswerAll answers every ask s lists with p: for a driver whose predictor
// is a lookup (the simulator's, replay's values computed before the run).
// buf is reused for the answers and returned for the next call.
func AnswerAll(s *Scheduler, p Predictor, buf []float64) []float64 {
	asks := s.Asks()
	if len(asks) == 0 {
		return buf
	}
	buf = buf[:0]
	for i := range asks {
		buf = append(buf, p.Predict(asks[i].Request, asks[i].Generated))
	}
	s.Answer(buf)
	return buf
}
