package policies

// Item is one request's share of a step.
type Item struct {
	Seq     *Seq
	Tokens  int // new tokens computed in this step (1 for a decode)
	Context int // tokens already in the KV cache, which attention reads
	// Decode: the item computes the token its request generated last. A
	// one-token chunk of a prompt (or of recomputation) is a prefill.
	Decode bool
}

// Batch is one scheduler step: what to compute, plus the aggregates a cost
// model prices it by, kept as the step is built so pricing is O(1).
type Batch struct {
	Step  int64
	Items []Item
	// DecodeSeqs are items computing one token; DecodeContext sums their
	// cached contexts (the KV bytes attention reads).
	DecodeSeqs    int
	DecodeContext int64
	// PrefillTokens sums the tokens of the other items (prompt chunks and
	// recomputation); PrefillContext sums what they read from the cache and
	// PrefillAttn the causal attention work, sum of c*(p + (c+1)/2) over
	// chunks of c tokens after p cached ones.
	PrefillTokens  int
	PrefillContext int64
	PrefillAttn    float64
	// Preempted counts requests preempted while building this step.
	Preempted int
	// Predictions are the predictor calls made since the last step (at
	// arrivals and window boundaries), which a real predictor would run
	// before this step; PredictionTokens sums their input lengths, each
	// capped at PredictorInputCap.
	Predictions      int
	PredictionTokens int
	// KVCells, with Config.Slots, is the KV cells occupied while the step
	// runs: every slot's, idle ones' kept prompts included, and the
	// step's new tokens (llama.cpp's attention reads them all).
	KVCells int64
	// Lazy counts the decodes not listed in Items, with
	// Scheduler.SumsOnly: steady requests computing one token each,
	// included in DecodeSeqs and DecodeContext.
	Lazy int
	// Wait: the core needs answers to its asks (Scheduler.Asks) before it
	// can go on; the batch is empty and must not run. Answer, then call
	// Next again.
	Wait bool
}

// Tokens is the number of new tokens the step computes.
func (b *Batch) Tokens() int { return b.PrefillTokens + b.DecodeSeqs }

// Empty reports whether the step computes nothing.
func (b *Batch) Empty() bool { return len(b.Items) == 0 && b.Lazy == 0 }

// Seqs is the number of requests the step computes tokens for.
func (b *Batch) Seqs() int { return len(b.Items) + b.Lazy }

func (b *Batch) reset(step int64) {
	items := b.Items[:0]
	*b = Batch{Step: step, Items: items}
}

func (b *Batch) add(s *Seq, tokens int) {
	decode := tokens == 1 && s.Generated > 0 && s.Computed == s.Tokens()-1
	b.Items = append(b.Items, Item{Seq: s, Tokens: tokens, Context: s.Computed, Decode: decode})
	if decode {
		b.DecodeSeqs++
		b.DecodeContext += int64(s.Computed)
		return
	}
	b.PrefillTokens += tokens
	b.PrefillContext += int64(s.Computed)
	b.PrefillAttn += float64(tokens) * (float64(s.Computed) + float64(tokens+1)/2)
}

// drop removes s's item (a victim that was already scheduled this step).
func (b *Batch) drop(s *Seq) int {
	for i := range b.Items {
		it := b.Items[i]
		if it.Seq != s {
			continue
		}
		if it.Decode {
			b.DecodeSeqs--
			b.DecodeContext -= int64(it.Context)
		} else {
			b.PrefillTokens -= it.Tokens
			b.PrefillContext -= int64(it.Context)
			b.PrefillAttn -= float64(it.Tokens) * (float64(it.Context) + float64(it.Tokens+1)/2)
		}
		b.Items = append(b.Items[:i], b.Items[i+1:]...)
		return it.Tokens
	}
	return 0
}
