//go:build cuda

package gpu

import (
	_ "embed"
	"fmt"
	"math"
	"slices"
	"unsafe"

	"gorgonia.org/cu"
)

//go:embed kernels/common.cu
var commonSource string

//go:embed kernels/decoder.cu
var decoderCode string

// decoderSource is the decoder's program: bf16 throughout.
var decoderSource = kernelSource{code: decoderCode, defines: []string{"ELEM_FP16=0"},
	names: []string{"fill_random_bf16", "fill_bf16", "embed_gather", "rmsnorm", "residual_rmsnorm", "add_bias", "residual_add", "rope",
		"cache_write", "paged_attention_p1", "paged_attention_p2", "paged_attention_p4", "paged_attention_p8", "attention_combine", "silu_mul", "argmax",
		"flash_prefill_d16", "flash_prefill_d32", "flash_prefill_d64", "flash_prefill_d128"}}

func init() {
	cudaCount = func() int {
		n, err := cu.NumDevices()
		if err != nil {
			return 0
		}
		return n
	}
	newCUDA = func(cfg Config, w *Weights, ordinal, blockSize, numBlocks int, seed uint64) (Executor, error) {
		if w == nil {
			return NewCUDARandomOn(ordinal, cfg, blockSize, numBlocks, seed)
		}
		return NewCUDAOn(ordinal, w, blockSize, numBlocks)
	}
}

type cudaLayer struct {
	attnNorm, mlpNorm devPtr
	wqkv, bqkv, wo    devPtr
	wgu, wdown        devPtr
}

// CUDA executes a Llama-family decoder on an NVIDIA GPU: bf16 weights and
// KV cache, fp32 activations and accumulation, GEMMs through cuBLAS
// (GemmEx), the rest in the project's kernels compiled by NVRTC.
type CUDA struct {
	cudaBase
	cfg       Config
	bs, nb    int
	embed     devPtr
	lmHead    devPtr
	norm      devPtr
	invFreq   devPtr
	layers    []cudaLayer
	kc, vc    []devPtr
	capT      int
	capS      int
	x, qkv    devPtr // fp32 [T, H], [T, q+2kv]
	tmp, gu   devPtr // fp32 [T, H], [T, 2I]
	h, att    devPtr // bf16 [T, H], [T, q]
	act       devPtr // bf16 [T, I]
	hs        devPtr // bf16 [S, H]
	logits    devPtr // fp32 [S, V]
	argmaxOut devPtr
	part      devPtr // split attention partials, grown on demand
	partCap   int64
}

// NewCUDA uploads w to GPU 0 and allocates a KV cache of numBlocks blocks
// of blockSize tokens.
func NewCUDA(w *Weights, blockSize, numBlocks int) (*CUDA, error) {
	return NewCUDAOn(0, w, blockSize, numBlocks)
}

// NewCUDAOn is NewCUDA on GPU ordinal.
func NewCUDAOn(ordinal int, w *Weights, blockSize, numBlocks int) (*CUDA, error) {
	e, err := newCUDAShell(ordinal, w.Cfg, blockSize, numBlocks)
	if err != nil {
		return nil, err
	}
	err = e.dev.do(func() error { return e.upload(w) })
	if err != nil {
		e.Close()
		return nil, err
	}
	return e, nil
}

// NewCUDARandom builds a decoder of shape cfg with seeded random weights
// generated on the GPU: timing runs of 8B-parameter models need no host
// copy.
func NewCUDARandom(cfg Config, blockSize, numBlocks int, seed uint64) (*CUDA, error) {
	return NewCUDARandomOn(0, cfg, blockSize, numBlocks, seed)
}

// NewCUDARandomOn is NewCUDARandom on GPU ordinal.
func NewCUDARandomOn(ordinal int, cfg Config, blockSize, numBlocks int, seed uint64) (*CUDA, error) {
	e, err := newCUDAShell(ordinal, cfg, blockSize, numBlocks)
	if err != nil {
		return nil, err
	}
	err = e.dev.do(func() error { return e.randomize(seed) })
	if err != nil {
		e.Close()
		return nil, err
	}
	return e, nil
}

func newCUDAShell(ordinal int, cfg Config, blockSize, numBlocks int) (*CUDA, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if g := cfg.Heads / cfg.KVHeads; cfg.HeadDim > 256 || g > 8 || g*cfg.HeadDim > 1024 {
		return nil, fmt.Errorf("head_dim %d with %d query heads per KV head: the attention kernel supports head_dim up to 256, up to 8 query heads per KV head, and 1024 for their product", cfg.HeadDim, g)
	}
	e := &CUDA{cfg: cfg, bs: blockSize, nb: numBlocks}
	if err := e.start(ordinal, decoderSource, BF16); err != nil {
		e.Close()
		return nil, err
	}
	err := e.dev.do(func() error {
		var err error
		kvw := int64(numBlocks) * int64(blockSize) * int64(cfg.KVHeads*cfg.HeadDim) * 2
		for range cfg.Layers {
			k, err := e.alloc(kvw)
			if err != nil {
				return e.oom(err, "KV cache", kvw*2*int64(cfg.Layers))
			}
			v, err := e.alloc(kvw)
			if err != nil {
				return e.oom(err, "KV cache", kvw*2*int64(cfg.Layers))
			}
			e.kc, e.vc = append(e.kc, k), append(e.vc, v)
		}
		inv := cfg.InvFreq()
		f := make([]float32, len(inv))
		for i, v := range inv {
			f[i] = float32(v)
		}
		if e.invFreq, err = e.alloc(int64(4 * len(f))); err != nil {
			return err
		}
		if err := cu.MemcpyHtoD(e.invFreq, unsafe.Pointer(&f[0]), int64(4*len(f))); err != nil {
			return err
		}
		return cu.Synchronize()
	})
	if err != nil {
		e.Close()
		return nil, err
	}
	return e, nil
}

func (e *CUDA) upload(w *Weights) error {
	var err error
	must := func(p devPtr, e2 error) devPtr {
		if err == nil {
			err = e2
		}
		return p
	}
	e.embed = must(e.put(BF16, w.Embed))
	e.lmHead = e.embed
	if &w.LMHead[0] != &w.Embed[0] {
		e.lmHead = must(e.put(BF16, w.LMHead))
	}
	e.norm = must(e.put(BF16, w.Norm))
	for _, l := range w.Layers {
		cl := cudaLayer{
			attnNorm: must(e.put(BF16, l.AttnNorm)), mlpNorm: must(e.put(BF16, l.MLPNorm)),
			wqkv: must(e.put(BF16, l.Wq, l.Wk, l.Wv)), wo: must(e.put(BF16, l.Wo)),
			wgu: must(e.put(BF16, l.Wgate, l.Wup)), wdown: must(e.put(BF16, l.Wdown)),
		}
		if l.Bq != nil {
			cl.bqkv = must(e.put(BF16, l.Bq, l.Bk, l.Bv))
		}
		e.layers = append(e.layers, cl)
	}
	if err != nil {
		return err
	}
	// The copies ran on the legacy stream; the kernels run on ours.
	return cu.Synchronize()
}

func (e *CUDA) randomize(seed uint64) error {
	c := &e.cfg
	q, kv := c.Heads*c.HeadDim, c.KVHeads*c.HeadDim
	next := seed
	rnd := func(rows, cols int) (devPtr, error) {
		n := int64(rows) * int64(cols)
		p, err := e.alloc(2 * n)
		if err != nil {
			return 0, e.oom(err, "weights", 2*n)
		}
		next = next*6364136223846793005 + 1442695040888963407
		// uniform with std 1/sqrt(cols): half-width sqrt(3/cols)
		return p, e.call("fill_random_bf16", 1024, 1, 256, p, n, next, float32(math.Sqrt(3/float64(cols))))
	}
	ones := func(n int) (devPtr, error) {
		p, err := e.alloc(int64(2 * n))
		if err != nil {
			return 0, err
		}
		return p, e.call("fill_bf16", 64, 1, 256, p, int64(n), float32(1))
	}
	var err error
	must := func(p devPtr, e2 error) devPtr {
		if err == nil {
			err = e2
		}
		return p
	}
	e.embed = must(rnd(c.Vocab, c.Hidden))
	e.lmHead = e.embed
	if !c.TiedEmbed {
		e.lmHead = must(rnd(c.Vocab, c.Hidden))
	}
	e.norm = must(ones(c.Hidden))
	for range c.Layers {
		cl := cudaLayer{attnNorm: must(ones(c.Hidden)), mlpNorm: must(ones(c.Hidden)),
			wqkv: must(rnd(q+2*kv, c.Hidden)), wo: must(rnd(c.Hidden, q)),
			wgu: must(rnd(2*c.Intermediate, c.Hidden)), wdown: must(rnd(c.Hidden, c.Intermediate))}
		if c.QKVBias {
			cl.bqkv = must(rnd(1, q+2*kv))
		}
		e.layers = append(e.layers, cl)
	}
	if err != nil {
		return err
	}
	return e.stream.Synchronize()
}

// scratch grows the activation buffers to T tokens and S sampled rows.
// Old buffers are freed and zeroed first, so a failed growth leaves no
// stale pointer behind to be freed again.
func (e *CUDA) scratch(T, S int) error {
	c := &e.cfg
	if T > e.capT || S > e.capS {
		e.dropGraphs() // they point at the buffers about to be replaced
	}
	if T > e.capT {
		e.freeAll(&e.x, &e.qkv, &e.tmp, &e.gu, &e.h, &e.att, &e.act)
		e.capT = 0
		q, kv := c.Heads*c.HeadDim, c.KVHeads*c.HeadDim
		t := int64(T)
		sizes := []int64{4 * t * int64(c.Hidden), 4 * t * int64(q+2*kv), 4 * t * int64(c.Hidden), 4 * t * int64(2*c.Intermediate),
			2 * t * int64(c.Hidden), 2 * t * int64(q), 2 * t * int64(c.Intermediate)}
		ptrs := []*devPtr{&e.x, &e.qkv, &e.tmp, &e.gu, &e.h, &e.att, &e.act}
		var total int64
		for _, s := range sizes {
			total += s
		}
		for i, s := range sizes {
			p, err := e.alloc(s)
			if err != nil {
				e.freeAll(ptrs...)
				return e.oom(err, fmt.Sprintf("activations of a %d-token step", T), total)
			}
			*ptrs[i] = p
		}
		e.capT = T
	}
	if S > e.capS {
		e.freeAll(&e.hs, &e.logits, &e.argmaxOut)
		e.capS = 0
		var err error
		if e.hs, err = e.alloc(2 * int64(S) * int64(c.Hidden)); err == nil {
			if e.logits, err = e.alloc(4 * int64(S) * int64(c.Vocab)); err == nil {
				e.argmaxOut, err = e.alloc(4 * int64(S))
			}
		}
		if err != nil {
			e.freeAll(&e.hs, &e.logits, &e.argmaxOut)
			return e.oom(err, fmt.Sprintf("logits of %d rows", S), 4*int64(S)*int64(c.Vocab))
		}
		e.capS = S
	}
	return nil
}

func (e *CUDA) BlockSize() int { return e.bs }
func (e *CUDA) NumBlocks() int { return e.nb }

// Step implements Executor: greedy next tokens, computed on the GPU.
func (e *CUDA) Step(seqs []SeqStep, next []int32) error {
	_, err := e.forward(seqs, next, false)
	return err
}

// Logits runs a step and returns the logits of each sampling sequence's
// last token (nil for the others), for checks against the CPU executor.
func (e *CUDA) Logits(seqs []SeqStep) ([][]float32, error) {
	next := make([]int32, len(seqs))
	return e.forward(seqs, next, true)
}

func (e *CUDA) forward(seqs []SeqStep, next []int32, wantLogits bool) ([][]float32, error) {
	c := &e.cfg
	if len(seqs) == 0 {
		return nil, nil // an empty step computes nothing
	}
	if len(next) < len(seqs) {
		return nil, fmt.Errorf("%d sequences but room for %d next tokens", len(seqs), len(next))
	}
	// Host-side metadata: per token its id, position, cache slot and
	// block-table offset; the flat block tables; the rows to sample.
	var tokens, pos, slots, offs, tables, rows []int32
	for i, s := range seqs {
		end := s.Pos + len(s.Tokens)
		if len(s.Tokens) == 0 || (end+e.bs-1)/e.bs > len(s.BlockTable) {
			return nil, fmt.Errorf("sequence %d: %d tokens at %d do not fit its %d blocks", i, len(s.Tokens), s.Pos, len(s.BlockTable))
		}
		off := int32(len(tables))
		for _, b := range s.BlockTable {
			if b < 0 || int(b) >= e.nb {
				return nil, fmt.Errorf("sequence %d: block %d outside the cache of %d", i, b, e.nb)
			}
		}
		tables = append(tables, s.BlockTable...)
		for j, t := range s.Tokens {
			if t < 0 || int(t) >= c.Vocab {
				return nil, fmt.Errorf("sequence %d: token %d outside the vocabulary", i, t)
			}
			p := s.Pos + j
			tokens = append(tokens, t)
			pos = append(pos, int32(p))
			slots = append(slots, s.BlockTable[p/e.bs]*int32(e.bs)+int32(p%e.bs))
			offs = append(offs, off)
		}
		if s.Sample {
			rows = append(rows, int32(len(tokens)-1))
		}
	}
	// Attention: prefill chunks in tiles on the tensor cores, the other
	// tokens one block each on the CUDA cores.
	var core, tileTok, tileLen []int32
	first, maxCore := 0, 0
	for _, s := range seqs {
		n := len(s.Tokens)
		if flashAttention(c.HeadDim, n) {
			for lo := 0; lo < n; lo += flashTile {
				tileTok, tileLen = append(tileTok, int32(first+lo)), append(tileLen, int32(min(flashTile, n-lo)))
			}
		} else {
			for j := range n {
				core = append(core, int32(first+j))
			}
			maxCore = max(maxCore, s.Pos+n)
		}
		first += n
	}
	T, S := len(tokens), len(rows)
	meta := slices.Concat(tokens, pos, slots, offs, rows, core, tileTok, tileLen, tables)
	var out [][]float32
	err := e.dev.do(func() error {
		if err := e.scratch(T, max(S, 1)); err != nil {
			return err
		}
		if err := e.putMeta(meta); err != nil {
			return err
		}
		at := func(k int) devPtr { return e.meta + devPtr(4*k) }
		nc, nt := len(core), len(tileTok)
		dTok, dPos, dSlot, dOff, dRows := at(0), at(T), at(2*T), at(3*T), at(4*T)
		dCore, dTileTok, dTileLen, dTab := at(4*T+S), at(4*T+S+nc), at(4*T+S+nc+nt), at(4*T+S+nc+2*nt)
		flash := fmt.Sprintf("flash_prefill_d%d", c.HeadDim)
		coreAtt := "paged_attention_p8" // head dimensions per lane: the fewest that hold d
		for _, per := range []int{4, 2, 1} {
			if c.HeadDim <= 32*per {
				coreAtt = fmt.Sprintf("paged_attention_p%d", per)
			}
		}
		scale := float32(1 / math.Sqrt(float64(c.HeadDim)))
		// contexts in buckets of 256 positions, so that a decode's splits,
		// and so its graph, change only every 256 tokens
		splits, splitLen := attentionSplits(nc*c.KVHeads, (maxCore+255)/256*256)
		part := devPtr(0)
		if splits > 1 {
			need := int64(nc) * int64(c.Heads) * int64(splits) * int64(c.HeadDim+2) * 4
			if need > e.partCap {
				e.dropGraphs()
				e.freeAll(&e.part)
				e.partCap = 0
				p, err := e.alloc(2 * need)
				if err != nil {
					return e.oom(err, "attention partials", 2*need)
				}
				e.part, e.partCap = p, 2*need
			}
			part = e.part
		}
		H, I := c.Hidden, c.Intermediate
		q, kv := c.Heads*c.HeadDim, c.KVHeads*c.HeadDim
		eps := float32(c.RMSEps)
		steps := []func() error{func() error { return e.call("embed_gather", T, 1, 256, e.x, e.embed, dTok, int64(H)) }}
		for li := range e.layers {
			l := &e.layers[li]
			kc, vc := e.kc[li], e.vc[li]
			if li == 0 { // later layers' norms are fused with the residual add before them
				steps = append(steps, func() error {
					return e.call("rmsnorm", T, 1, 256, e.h, e.x, l.attnNorm, devPtr(0), int64(H), eps)
				})
			}
			// after the MLP: the residual add, fused with the next layer's norm
			afterMLP := func() error { return e.call("residual_add", 1024, 1, 256, e.x, e.tmp, int64(T*H)) }
			if li+1 < len(e.layers) {
				next := &e.layers[li+1]
				afterMLP = func() error {
					return e.call("residual_rmsnorm", T, 1, 256, e.h, e.x, e.tmp, next.attnNorm, int64(H), eps)
				}
			}
			steps = append(steps,
				func() error { return e.gemm("gemm qkv", e.qkv, e.h, l.wqkv, T, q+2*kv, H) },
				func() error {
					if l.bqkv == 0 {
						return nil
					}
					return e.call("add_bias", (q+2*kv+255)/256, min(T, 65535), 256, e.qkv, l.bqkv, int64(T), int64(q+2*kv))
				},
				func() error {
					return e.call("rope", T, 1, 128, e.qkv, dPos, e.invFreq, int64(c.Heads), int64(c.KVHeads), int64(c.HeadDim))
				},
				func() error {
					return e.call("cache_write", T, 1, 128, kc, vc, e.qkv, dSlot, int64(c.Heads), int64(c.KVHeads), int64(c.HeadDim))
				},
				func() error {
					if nt == 0 {
						return nil
					}
					return e.call(flash, nt, c.Heads, 128, e.att, e.qkv, kc, vc, dPos, dTab, dOff, dTileTok, dTileLen,
						int64(c.Heads), int64(c.KVHeads), int64(e.bs), scale)
				},
				func() error {
					if nc == 0 {
						return nil
					}
					err := e.call3(coreAtt, nc, c.KVHeads, splits, 128, e.att, part, e.qkv, kc, vc, dPos, dTab, dOff, dCore,
						int64(c.Heads), int64(c.KVHeads), int64(c.HeadDim), int64(e.bs), scale, int64(splitLen))
					if err != nil || splits == 1 {
						return err
					}
					return e.call("attention_combine", nc, c.Heads, 128, e.att, part, dCore, int64(c.Heads), int64(c.HeadDim), int64(splits))
				},
				func() error { return e.gemm("gemm o", e.tmp, e.att, l.wo, T, H, q) },
				func() error {
					return e.call("residual_rmsnorm", T, 1, 256, e.h, e.x, e.tmp, l.mlpNorm, int64(H), eps)
				},
				func() error { return e.gemm("gemm gate_up", e.gu, e.h, l.wgu, T, 2*I, H) },
				func() error {
					return e.call("silu_mul", max(1, (I+1023)/1024), min(T, 65535), 256, e.act, e.gu, int64(T), int64(I))
				},
				func() error { return e.gemm("gemm down", e.tmp, e.act, l.wdown, T, H, I) },
				afterMLP,
			)
		}
		if S > 0 {
			steps = append(steps,
				func() error { return e.call("rmsnorm", S, 1, 256, e.hs, e.x, e.norm, dRows, int64(H), eps) },
				func() error { return e.gemm("gemm lm_head", e.logits, e.hs, e.lmHead, S, c.Vocab, H) },
				func() error { return e.call("argmax", S, 1, 1024, e.argmaxOut, e.logits, int64(c.Vocab)) })
		}
		compute := func() error {
			for _, f := range steps {
				if err := f(); err != nil {
					return err
				}
			}
			return nil
		}
		// Steps without prefill tiles (decodes) repeat their shape from
		// step to step: they replay a captured graph of their launches,
		// keyed by everything the launches' arguments depend on.
		var err error
		if nt == 0 && T <= maxGraphTokens {
			err = e.graph(graphKey{int64(T), int64(S), int64(nc), int64(splits), int64(splitLen)}, compute)
		} else {
			err = compute()
		}
		if err != nil {
			return err
		}
		if S == 0 {
			return e.stream.Synchronize()
		}
		ids := make([]int32, S)
		if err := cu.MemcpyDtoHAsync(unsafe.Pointer(&ids[0]), e.argmaxOut, int64(4*S), e.stream); err != nil {
			return err
		}
		if wantLogits {
			out = make([][]float32, S)
			flat := make([]float32, S*c.Vocab)
			if err := cu.MemcpyDtoHAsync(unsafe.Pointer(&flat[0]), e.logits, int64(4*len(flat)), e.stream); err != nil {
				return err
			}
			if err := e.stream.Synchronize(); err != nil {
				return err
			}
			for r := range out {
				out[r] = flat[r*c.Vocab : (r+1)*c.Vocab]
			}
		}
		if err := e.stream.Synchronize(); err != nil {
			return err
		}
		r := 0
		for i, s := range seqs {
			next[i] = -1
			if s.Sample {
				next[i] = ids[r]
				r++
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if wantLogits {
		full := make([][]float32, len(seqs))
		r := 0
		for i, s := range seqs {
			if s.Sample {
				full[i] = out[r]
				r++
			}
		}
		return full, nil
	}
	return nil, nil
}
