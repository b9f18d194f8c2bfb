package cost

import (
	"encoding/json"
	"fmt"
	"math"
	"os"

	"github.com/elis-sim/elis-sim/policies"
)

// StepCoster prices a scheduler step in seconds.
type StepCoster interface {
	StepTime(b *policies.Batch) float64
}

// Roofline prices a step operator by operator: each takes the longer of its
// FLOPs at the achieved compute rate and its bytes at the achieved memory
// rate, plus a fixed launch cost; a step adds a host overhead and, with
// tensor parallelism, two all-reduces per layer.
type Roofline struct {
	Arch Arch `json:"model"`
	GPU  GPU  `json:"gpu"`
	TP   int  `json:"tensor_parallel"`
}

// NewRoofline builds the cost model of a model preset on a GPU preset of
// the vllm-v1 stack.
func NewRoofline(model, gpu string, tp int) (*Roofline, error) {
	return NewRooflineStack(model, gpu, DefaultStack, tp)
}

// NewRooflineStack builds the cost model of a model preset on a GPU preset
// of a serving stack (Stacks).
func NewRooflineStack(model, gpu, stack string, tp int) (*Roofline, error) {
	a, err := LookupArch(model)
	if err != nil {
		return nil, err
	}
	g, err := LookupGPUStack(gpu, stack)
	if err != nil {
		return nil, err
	}
	if !a.splitsOver(tp) {
		return nil, fmt.Errorf("tensor parallelism %d: must divide the %d attention heads of %s", tp, a.Heads, model)
	}
	return &Roofline{Arch: a, GPU: g, TP: tp}, nil
}

// LoadRoofline reads a fitted cost model from a JSON file.
func LoadRoofline(path string) (*Roofline, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Roofline
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("cost model %s: %w", path, err)
	}
	if err := r.fill(""); err != nil {
		return nil, fmt.Errorf("cost model %s: %w", path, err)
	}
	return &r, nil
}

// fill gives a roofline read from a file its defaults (tensor parallelism
// 1, two-byte weights) and checks it.
func (r *Roofline) fill(prefix string) error {
	if r.TP == 0 {
		r.TP = 1
	}
	if r.Arch.DtypeBytes == 0 {
		r.Arch.DtypeBytes = 2
	}
	return r.check(prefix)
}

// gemm prices an [m,k] x [k,n] product.
func (r *Roofline) gemm(m, n, k float64) float64 {
	if m == 0 {
		return 0
	}
	e := &r.GPU.Eff
	b := float64(r.Arch.DtypeBytes)
	flops := 2 * m * n * k
	bytes := (n*k + m*(n+k)) * b
	eff := e.GemmFLOP
	if h := e.GemmHalfShard; h > 0 && r.TP > 1 {
		s := min(n, k) // the sharded dimension is the smaller one
		eff *= s / (s + h)
	}
	return max(flops/(r.GPU.PeakFLOPS*eff), bytes/(r.GPU.MemBW*e.GemmBW)) + e.GemmLaunch
}

// elem prices an elementwise pass over bytes.
func (r *Roofline) elem(bytes float64) float64 {
	return bytes/(r.GPU.MemBW*r.GPU.Eff.ElemBW) + r.GPU.Eff.ElemLaunch
}

// attention prices one layer's attention: decode reads the cached KV of
// every decode sequence; prefill does causal attention work attn
// (sum of c*(p+(c+1)/2) over chunks).
func (r *Roofline) attention(decodeSeqs int, decodeCtx int64, prefillTokens int, prefillAttn float64) float64 {
	a := r.attnTerms()
	return a.price(decodeSeqs, decodeCtx, prefillTokens, prefillAttn)
}

// attnTerms are attention's constants: bytes of KV a context token reads,
// and work a token of attention does, each with its rate.
type attnTerms struct {
	kvPerTok, kvRate, flopsPerTok, flopRate, launch float64
	// bound says which of decode attention's two times is the longer at
	// every context: +1 its reads, -1 its work, 0 either. Their ratio is
	// the same at every context, and one at least 1e-9 from 1 is one
	// that rounding (an ulp or two a time) cannot turn, so a price
	// divides once and is the max to the bit.
	bound int
}

func (r *Roofline) attnTerms() attnTerms {
	a, e := &r.Arch, &r.GPU.Eff
	tp := float64(r.TP)
	t := attnTerms{
		kvPerTok:    float64(2*a.KVHeads*a.HeadDim()*a.DtypeBytes) / tp,
		kvRate:      r.GPU.MemBW * e.AttnBW,
		flopsPerTok: 4 * float64(a.Heads*a.HeadDim()) / tp,
		flopRate:    r.GPU.PeakFLOPS * e.AttnFLOP,
		launch:      e.AttnLaunch,
	}
	t.setBound()
	return t
}

func (a *attnTerms) setBound() {
	a.bound = 0
	ok := func(v float64) bool { return v > 0 && !math.IsInf(v, 1) }
	if ok(a.kvPerTok) && ok(a.kvRate) && ok(a.flopsPerTok) && ok(a.flopRate) {
		switch ratio := (a.kvPerTok / a.kvRate) / (a.flopsPerTok / a.flopRate); {
		case ratio > 1+1e-9:
			a.bound = 1
		case ratio < 1-1e-9:
			a.bound = -1
		}
	}
}

// decode is decode attention's time over ctx context tokens, before its
// launch: the longer of its reads and its work.
func (a *attnTerms) decode(ctx float64) float64 {
	switch a.bound {
	case 1:
		return a.kvPerTok * ctx / a.kvRate
	case -1:
		return a.flopsPerTok * ctx / a.flopRate
	}
	return max(a.kvPerTok*ctx/a.kvRate, a.flopsPerTok*ctx/a.flopRate)
}

func (a *attnTerms) price(decodeSeqs int, decodeCtx int64, prefillTokens int, prefillAttn float64) float64 {
	t := 0.0
	if decodeSeqs > 0 {
		t += a.decode(float64(decodeCtx)) + a.launch
	}
	if prefillTokens > 0 {
		t += a.flopsPerTok*prefillAttn/a.flopRate + a.launch
	}
	return t
}

// StepTime prices one scheduler step.
func (r *Roofline) StepTime(b *policies.Batch) float64 {
	tokens := b.Tokens()
	if tokens == 0 {
		return 0
	}
	return r.stepTime(float64(tokens), b.Seqs(), b.DecodeSeqs, b.DecodeContext, b.PrefillTokens, b.PrefillAttn)
}

func (r *Roofline) stepTime(tokens float64, seqs, decodeSeqs int, decodeCtx int64, prefillTokens int, prefillAttn float64) float64 {
	var t shapeTerms
	r.shape(&t, tokens, seqs)
	return r.priceShape(&t, decodeSeqs, decodeCtx, prefillTokens, prefillAttn)
}

// shapeTerms are the parts of a step's price that depend on its shape
// alone (its tokens and sequences), not on what attention reads: a run of
// decode steps whose contexts grow shares them.
type shapeTerms struct {
	tokens         float64
	seqs           int
	pre            float64    // the input norm and the QKV GEMM
	post           [5]float64 // output GEMM, norm, MLP up, activation, MLP down
	allReduce      float64    // with tensor parallelism: per layer
	head, overhead float64
}

func (r *Roofline) shape(t *shapeTerms, tokens float64, seqs int) {
	a, e := &r.Arch, &r.GPU.Eff
	tp := float64(r.TP)
	hd := float64(a.HeadDim())
	h := float64(a.Hidden)
	inter := float64(a.Intermediate) / tp
	db := float64(a.DtypeBytes)
	up := inter
	if a.Gated {
		up = 2 * inter
	}
	t.tokens, t.seqs = tokens, seqs
	t.pre = r.elem(2*tokens*h*db) + // input norm
		r.gemm(tokens, float64(a.Heads+2*a.KVHeads)*hd/tp, h)
	t.post = [5]float64{
		r.gemm(tokens, h, float64(a.Heads)*hd/tp),
		r.elem(2 * tokens * h * db), // post-attention norm
		r.gemm(tokens, up, h),
		r.elem(3 * tokens * inter * db), // activation (and gate multiply)
		r.gemm(tokens, h, inter),
	}
	t.allReduce = 0
	if r.TP > 1 {
		// Ring all-reduce of the activations after attention and after the MLP.
		t.allReduce = 2 * (2*(tp-1)/tp*tokens*h*db/r.GPU.LinkBW + e.CommLatency + 2*(tp-1)*e.CommStepLatency)
	}
	t.head = r.elem(2*float64(seqs)*h*db) + r.gemm(float64(seqs), float64(a.Vocab)/tp, h)
	t.overhead = e.StepOverhead
}

// priceShape adds attention to a shape's terms, in the order a layer runs
// its operators (floating-point sums keep that order, so a price is the
// same to the bit however its terms were kept).
func (r *Roofline) priceShape(t *shapeTerms, decodeSeqs int, decodeCtx int64, prefillTokens int, prefillAttn float64) float64 {
	return r.priceShapeWith(t, r.attention(decodeSeqs, decodeCtx, prefillTokens, prefillAttn))
}

// priceShapeWith is priceShape with attention priced.
func (r *Roofline) priceShapeWith(t *shapeTerms, attn float64) float64 {
	layer := t.pre + attn +
		t.post[0] + t.post[1] + t.post[2] + t.post[3] + t.post[4]
	if r.TP > 1 {
		layer += t.allReduce
	}
	return float64(r.Arch.Layers)*layer + t.head + t.overhead
}

// ForRun is the pricer of one run of c: for a roofline, one that keeps
// attention's constants and the shape terms of the steps it priced last,
// recomputing only attention for a shape it has seen (a run of decode
// steps keeps its shape, and a simulated step cost a quarter of its time
// in the roofline), to the same bits as c. The roofline must not change
// while it is used, and it is not safe for concurrent use: one per run.
// Other models are their own.
func ForRun(c StepCoster) StepCoster {
	if r, ok := c.(*Roofline); ok {
		return &rooflineRun{r: r, attn: r.attnTerms()}
	}
	return c
}

// rooflineRun keeps shapes in a small table by their tokens and
// sequences (a step's shape is mostly one of a few: the decode batch, and
// it with an admission's prompt chunk).
type rooflineRun struct {
	r      *Roofline
	attn   attnTerms
	shapes [1 << shapeBits]shapeTerms
}

const shapeBits = 6

func (p *rooflineRun) StepTime(b *policies.Batch) float64 {
	tokens := b.Tokens()
	if tokens == 0 {
		return 0
	}
	return p.r.priceShapeWith(p.shape(tokens, b.Seqs()), p.attn.price(b.DecodeSeqs, b.DecodeContext, b.PrefillTokens, b.PrefillAttn))
}

// shape is the terms of a step of tokens tokens and seqs sequences, from
// the table when they are there.
func (p *rooflineRun) shape(tokens, seqs int) *shapeTerms {
	// Fibonacci hashing of both: a decode step has tokens == seqs, and a
	// sum of small multiples of them left most of the table unused.
	h := (uint64(tokens)<<32 | uint64(uint32(seqs))) * 0x9e3779b97f4a7c15
	t := &p.shapes[h>>(64-shapeBits)]
	if t.tokens != float64(tokens) || t.seqs != seqs { // an empty slot has 0 tokens
		p.r.shape(t, float64(tokens), seqs)
	}
	return t
}

// StretchEnds prices a stretch's steps with the shape looked up once:
// only attention changes as the contexts grow. A stretch of decodes alone
// whose attention one side bounds (the usual one) keeps every term of
// the price in registers and sums them in priceShapeWith's order, to its
// bits (a stretch's step costs a few nanoseconds, about half of them here).
func (p *rooflineRun) StretchEnds(ends []float64, b *policies.Batch, t float64, k int, until float64) []float64 {
	if b.Tokens() == 0 {
		return stretchEnds(p, ends, b, t, k, until)
	}
	sh := p.shape(b.Tokens(), b.Seqs())
	ctx, n := b.DecodeContext, int64(b.DecodeSeqs)
	if n == 0 || b.PrefillTokens > 0 || p.attn.bound == 0 {
		for range k {
			ctx += n
			e := t + p.r.priceShapeWith(sh, p.attn.price(b.DecodeSeqs, ctx, b.PrefillTokens, b.PrefillAttn))
			ends = append(ends, e)
			if !(until > e) {
				break
			}
			t = e
		}
		return ends
	}
	// Attention is the bound side's per-token amount over its rate
	// (attnTerms.decode), and its price 0 + that + launch, which is that
	// + launch: neither is -0 (both positive, or a sum that cancels to +0).
	per, rate := p.attn.kvPerTok, p.attn.kvRate
	if p.attn.bound < 0 {
		per, rate = p.attn.flopsPerTok, p.attn.flopRate
	}
	launch := p.attn.launch
	pre, post := sh.pre, sh.post
	allReduce, tp := sh.allReduce, p.r.TP > 1
	layers, head, overhead := float64(p.r.Arch.Layers), sh.head, sh.overhead
	for range k {
		ctx += n
		layer := pre + (per*float64(ctx)/rate + launch) + post[0] + post[1] + post[2] + post[3] + post[4]
		if tp {
			layer += allReduce
		}
		e := t + (layers*layer + head + overhead)
		ends = append(ends, e)
		if !(until > e) {
			break
		}
		t = e
	}
	return ends
}

// StretchCoster is a StepCoster that prices a quiet stretch (a run of
// steps that differ only in their decodes' contexts, each one token
// longer a step; DESIGN.md rule 22) in one call, to the bits StepTime
// gives each step: a simulator then spends a few nanoseconds a step.
type StretchCoster interface {
	StepCoster
	// StretchEnds appends to ends the ends of up to k steps run back to
	// back from t, the first b with each decode one token longer, up to
	// the first that does not end before until (the step in which
	// something happens at until).
	StretchEnds(ends []float64, b *policies.Batch, t float64, k int, until float64) []float64
}

// StretchEnds is c's StretchEnds, or its StepTime step by step.
func StretchEnds(c StepCoster, ends []float64, b *policies.Batch, t float64, k int, until float64) []float64 {
	if s, ok := c.(StretchCoster); ok {
		return s.StretchEnds(ends, b, t, k, until)
	}
	return stretchEnds(c, ends, b, t, k, until)
}

func stretchEnds(c StepCoster, ends []float64, b *policies.Batch, t float64, k int, until float64) []float64 {
	step := *b
	for range k {
		step.DecodeContext += int64(step.DecodeSeqs)
		e := t + c.StepTime(&step)
		ends = append(ends, e)
		if !(until > e) {
			break
		}
		t = e
	}
	return ends
}

// DecodeSeconds is one decode step of batch sequences with ctx tokens of
// context each.
func (r *Roofline) DecodeSeconds(batch, ctx int) float64 {
	return r.stepTime(float64(batch), batch, batch, int64(batch)*int64(ctx), 0, 0)
}

// PrefillSeconds is one request's prompt of tokens tokens computed alone,
// in chunks of at most budget tokens (chunked prefill), to its first token.
func (r *Roofline) PrefillSeconds(tokens, budget int) float64 {
	t := 0.0
	for p := 0; p < tokens; {
		c := min(budget, tokens-p)
		t += r.stepTime(float64(c), 1, 0, 0, c, float64(c)*(float64(p)+float64(c+1)/2))
		p += c
	}
	return t
}

// KVBlocks is vLLM's KV capacity on one replica: the memory it may use
// (gpu_memory_utilization of each GPU) less the weights and an activation
// reserve, in blocks of blockSize tokens.
func (r *Roofline) KVBlocks(util float64, blockSize int) int {
	const reserve = 2 << 30 // activations, CUDA graphs and workspace per GPU, bytes
	avail := (r.GPU.MemBytes*util - reserve) * float64(r.TP)
	avail -= r.Arch.WeightBytes()
	if avail <= 0 {
		return 0
	}
	return int(avail / (r.Arch.KVBytesPerToken() * float64(blockSize)))
}
