//go:build cuda

package gpu

import (
	_ "embed"
	"fmt"
	"math"
	"runtime"
	"unsafe"

	"gorgonia.org/cu"
	"gorgonia.org/cu/nvrtc"
)

//go:embed kernels/decoder.cu
var decoderSource string

//go:embed kernels/encoder.cu
var encoderSource string

// kernelNames are the kernels both sources define.
var kernelNames = []string{"fill_random_bf16", "fill_bf16", "embed_gather", "rmsnorm", "add_bias", "residual_add", "rope",
	"cache_write", "paged_attention", "silu_mul", "argmax", "bert_embed", "layernorm", "bias_act", "bert_attention", "mean_pool"}

func init() {
	newCUDA = func(cfg Config, w *Weights, ordinal, blockSize, numBlocks int, seed uint64) (Executor, error) {
		if w == nil {
			return NewCUDARandomOn(ordinal, cfg, blockSize, numBlocks, seed)
		}
		return NewCUDAOn(ordinal, w, blockSize, numBlocks)
	}
}

// deviceThread runs every CUDA call on one OS thread that holds the
// context: the driver API binds contexts to threads, and Go moves
// goroutines between threads.
type deviceThread struct {
	calls chan func()
	ctx   cu.CUContext
}

func newDeviceThread(ordinal int) (*deviceThread, error) {
	d := &deviceThread{calls: make(chan func())}
	ready := make(chan error)
	go func() {
		runtime.LockOSThread()
		dev, err := cu.GetDevice(ordinal)
		if err == nil {
			d.ctx, err = dev.MakeContext(cu.SchedAuto)
		}
		if err == nil {
			err = cu.SetCurrentContext(d.ctx)
		}
		ready <- err
		if err != nil {
			return
		}
		for f := range d.calls {
			f()
		}
	}()
	if err := <-ready; err != nil {
		return nil, fmt.Errorf("CUDA device %d: %w", ordinal, err)
	}
	return d, nil
}

// do runs f on the device thread and waits for it.
func (d *deviceThread) do(f func() error) error {
	done := make(chan error)
	d.calls <- func() { done <- f() }
	return <-done
}

type cudaLayer struct {
	attnNorm, mlpNorm cu.DevicePtr
	wqkv, bqkv, wo    cu.DevicePtr
	wgu, wdown        cu.DevicePtr
}

// cudaBase is what every model on a GPU needs: its device thread, stream,
// cuBLAS handle, kernels and allocations.
type cudaBase struct {
	dev    *deviceThread
	blas   *cublas
	stream cu.Stream
	fn     map[string]cu.Function
	allocs []cu.DevicePtr
}

// start opens GPU ordinal, compiles the kernels and creates the stream and
// the cuBLAS handle.
func (e *cudaBase) start(ordinal int) error {
	dev, err := newDeviceThread(ordinal)
	if err != nil {
		return err
	}
	e.dev, e.fn = dev, map[string]cu.Function{}
	return dev.do(func() error {
		if err := e.compile(); err != nil {
			return err
		}
		var err error
		if e.stream, err = cu.MakeStream(cu.NonBlocking); err != nil {
			return err
		}
		if e.blas, err = newCublas(); err != nil {
			return err
		}
		return e.blas.setStream(uintptr(unsafe.Pointer(e.stream.C())))
	})
}

// CUDA executes a Llama-family decoder on an NVIDIA GPU: bf16 weights and
// KV cache, fp32 activations and accumulation, GEMMs through cuBLAS
// (GemmEx), the rest in the project's kernels compiled by NVRTC.
type CUDA struct {
	cudaBase
	cfg       Config
	bs, nb    int
	embed     cu.DevicePtr
	lmHead    cu.DevicePtr
	norm      cu.DevicePtr
	invFreq   cu.DevicePtr
	layers    []cudaLayer
	kc, vc    []cu.DevicePtr
	capT      int
	capS      int
	x, qkv    cu.DevicePtr // fp32 [T, H], [T, q+2kv]
	tmp, gu   cu.DevicePtr // fp32 [T, H], [T, 2I]
	h, att    cu.DevicePtr // bf16 [T, H], [T, q]
	act       cu.DevicePtr // bf16 [T, I]
	hs        cu.DevicePtr // bf16 [S, H]
	logits    cu.DevicePtr // fp32 [S, V]
	meta      cu.DevicePtr // int32 metadata, grown on demand
	metaCap   int
	argmaxOut cu.DevicePtr
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
	if cfg.HeadDim > 256 {
		return nil, fmt.Errorf("head_dim %d: the attention kernel supports up to 256", cfg.HeadDim)
	}
	e := &CUDA{cfg: cfg, bs: blockSize, nb: numBlocks}
	if err := e.start(ordinal); err != nil {
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
		return cu.MemcpyHtoD(e.invFreq, unsafe.Pointer(&f[0]), int64(4*len(f)))
	})
	if err != nil {
		e.Close()
		return nil, err
	}
	return e, nil
}

func (e *cudaBase) oom(err error, what string, bytes int64) error {
	return fmt.Errorf("device out of memory allocating the %s (%.2f GiB): %w; lower --kv-blocks or --max-num-batched-tokens, or pick a smaller --model", what, float64(bytes)/(1<<30), err)
}

func (e *cudaBase) compile() error {
	prog, err := nvrtc.CreateProgram(decoderSource+"\n"+encoderSource, "elis-sim.cu")
	if err != nil {
		return fmt.Errorf("nvrtc: %w", err)
	}
	defer prog.Destroy()
	// No --use_fast_math: rotary angles reach 1e5 radians, where the fast
	// sine and cosine are far off.
	if err := prog.Compile("-default-device", "--std=c++14"); err != nil {
		log, _ := prog.GetLog()
		return fmt.Errorf("nvrtc compile: %w\n%s", err, log)
	}
	ptx, err := prog.GetPTX()
	if err != nil {
		return err
	}
	mod, err := cu.LoadData(ptx)
	if err != nil {
		return fmt.Errorf("loading kernels: %w", err)
	}
	for _, name := range kernelNames {
		if e.fn[name], err = mod.Function(name); err != nil {
			return fmt.Errorf("kernel %s: %w", name, err)
		}
	}
	return nil
}

func (e *cudaBase) alloc(bytes int64) (cu.DevicePtr, error) {
	p, err := cu.MemAlloc(max(bytes, 4))
	if err != nil {
		return 0, err
	}
	e.allocs = append(e.allocs, p)
	return p, nil
}

// launch runs a kernel on the stream; args are device pointers, integers
// (passed as int64) and float32s (in an 8-byte slot).
func (e *cudaBase) launch(name string, gx, gy, block int, args ...any) error {
	slots := make([]uint64, len(args))
	params := make([]unsafe.Pointer, len(args))
	for i, a := range args {
		switch v := a.(type) {
		case cu.DevicePtr:
			slots[i] = uint64(v)
		case int:
			slots[i] = uint64(int64(v))
		case int64:
			slots[i] = uint64(v)
		case uint64:
			slots[i] = v
		case float32:
			slots[i] = uint64(math.Float32bits(v))
		default:
			return fmt.Errorf("kernel %s: argument %d of type %T", name, i, a)
		}
		params[i] = unsafe.Pointer(&slots[i])
	}
	if err := e.fn[name].Launch(gx, gy, 1, block, 1, 1, 0, e.stream, params); err != nil {
		return fmt.Errorf("kernel %s: %w", name, err)
	}
	return nil
}

func toBF16(x []float32) []uint16 {
	out := make([]uint16, len(x))
	for i, f := range x {
		u := math.Float32bits(f)
		if u&0x7f800000 == 0x7f800000 && u&0x7fffff != 0 {
			out[i] = uint16(u>>16) | 0x40
			continue
		}
		u += 0x7fff + (u>>16)&1
		out[i] = uint16(u >> 16)
	}
	return out
}

// put uploads the concatenation of parts as bf16.
func (e *cudaBase) put(parts ...[]float32) (cu.DevicePtr, error) {
	var all []float32
	for _, p := range parts {
		all = append(all, p...)
	}
	b := toBF16(all)
	p, err := e.alloc(int64(2 * len(b)))
	if err != nil {
		return 0, e.oom(err, "weights", int64(2*len(b)))
	}
	return p, cu.MemcpyHtoD(p, unsafe.Pointer(&b[0]), int64(2*len(b)))
}

func (e *CUDA) upload(w *Weights) error {
	var err error
	must := func(p cu.DevicePtr, e2 error) cu.DevicePtr {
		if err == nil {
			err = e2
		}
		return p
	}
	e.embed = must(e.put(w.Embed))
	e.lmHead = e.embed
	if &w.LMHead[0] != &w.Embed[0] {
		e.lmHead = must(e.put(w.LMHead))
	}
	e.norm = must(e.put(w.Norm))
	for _, l := range w.Layers {
		cl := cudaLayer{
			attnNorm: must(e.put(l.AttnNorm)), mlpNorm: must(e.put(l.MLPNorm)),
			wqkv: must(e.put(l.Wq, l.Wk, l.Wv)), wo: must(e.put(l.Wo)),
			wgu: must(e.put(l.Wgate, l.Wup)), wdown: must(e.put(l.Wdown)),
		}
		if l.Bq != nil {
			cl.bqkv = must(e.put(l.Bq, l.Bk, l.Bv))
		}
		e.layers = append(e.layers, cl)
	}
	return err
}

func (e *CUDA) randomize(seed uint64) error {
	c := &e.cfg
	q, kv := c.Heads*c.HeadDim, c.KVHeads*c.HeadDim
	next := seed
	rnd := func(rows, cols int) (cu.DevicePtr, error) {
		n := int64(rows) * int64(cols)
		p, err := e.alloc(2 * n)
		if err != nil {
			return 0, e.oom(err, "weights", 2*n)
		}
		next = next*6364136223846793005 + 1442695040888963407
		// uniform with std 1/sqrt(cols): half-width sqrt(3/cols)
		return p, e.launch("fill_random_bf16", 1024, 1, 256, p, n, next, float32(math.Sqrt(3/float64(cols))))
	}
	ones := func(n int) (cu.DevicePtr, error) {
		p, err := e.alloc(int64(2 * n))
		if err != nil {
			return 0, err
		}
		return p, e.launch("fill_bf16", 64, 1, 256, p, int64(n), float32(1))
	}
	var err error
	must := func(p cu.DevicePtr, e2 error) cu.DevicePtr {
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
func (e *CUDA) scratch(T, S int) error {
	c := &e.cfg
	if T > e.capT {
		q, kv := c.Heads*c.HeadDim, c.KVHeads*c.HeadDim
		for _, p := range []cu.DevicePtr{e.x, e.qkv, e.tmp, e.gu, e.h, e.att, e.act} {
			if p != 0 {
				e.free(p)
			}
		}
		t := int64(T)
		sizes := []int64{4 * t * int64(c.Hidden), 4 * t * int64(q+2*kv), 4 * t * int64(c.Hidden), 4 * t * int64(2*c.Intermediate),
			2 * t * int64(c.Hidden), 2 * t * int64(q), 2 * t * int64(c.Intermediate)}
		ptrs := []*cu.DevicePtr{&e.x, &e.qkv, &e.tmp, &e.gu, &e.h, &e.att, &e.act}
		var total int64
		for _, s := range sizes {
			total += s
		}
		for i, s := range sizes {
			p, err := e.alloc(s)
			if err != nil {
				return e.oom(err, fmt.Sprintf("activations of a %d-token step", T), total)
			}
			*ptrs[i] = p
		}
		e.capT = T
	}
	if S > e.capS {
		for _, p := range []cu.DevicePtr{e.hs, e.logits, e.argmaxOut} {
			if p != 0 {
				e.free(p)
			}
		}
		var err error
		if e.hs, err = e.alloc(2 * int64(S) * int64(c.Hidden)); err != nil {
			return err
		}
		if e.logits, err = e.alloc(4 * int64(S) * int64(c.Vocab)); err != nil {
			return e.oom(err, "logits", 4*int64(S)*int64(c.Vocab))
		}
		if e.argmaxOut, err = e.alloc(4 * int64(S)); err != nil {
			return err
		}
		e.capS = S
	}
	return nil
}

func (e *cudaBase) free(p cu.DevicePtr) {
	cu.MemFree(p)
	for i, a := range e.allocs {
		if a == p {
			e.allocs = append(e.allocs[:i], e.allocs[i+1:]...)
			break
		}
	}
}

func (e *CUDA) BlockSize() int { return e.bs }
func (e *CUDA) NumBlocks() int { return e.nb }

// Close frees the device memory and ends the device thread.
func (e *cudaBase) Close() error {
	if e.dev == nil {
		return nil
	}
	e.dev.do(func() error {
		for _, p := range e.allocs {
			cu.MemFree(p)
		}
		e.allocs = nil
		if e.blas != nil {
			e.blas.destroy()
		}
		return nil
	})
	close(e.dev.calls)
	e.dev = nil
	return nil
}

// Step implements Executor: greedy next tokens, computed on the GPU.
func (e *CUDA) Step(seqs []SeqStep, next []int32) error {
	_, err := e.run(seqs, next, false)
	return err
}

// Logits runs a step and returns the logits of each sampling sequence's
// last token (nil for the others), for checks against the CPU executor.
func (e *CUDA) Logits(seqs []SeqStep) ([][]float32, error) {
	next := make([]int32, len(seqs))
	return e.run(seqs, next, true)
}

func (e *CUDA) run(seqs []SeqStep, next []int32, wantLogits bool) ([][]float32, error) {
	c := &e.cfg
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
	T, S := len(tokens), len(rows)
	meta := append(append(append(append(append(append([]int32(nil), tokens...), pos...), slots...), offs...), rows...), tables...)
	var out [][]float32
	err := e.dev.do(func() error {
		if err := e.scratch(T, max(S, 1)); err != nil {
			return err
		}
		if len(meta) > e.metaCap {
			if e.meta != 0 {
				e.free(e.meta)
			}
			var err error
			if e.meta, err = e.alloc(int64(4 * 2 * len(meta))); err != nil {
				return err
			}
			e.metaCap = 2 * len(meta)
		}
		if err := cu.MemcpyHtoDAsync(e.meta, unsafe.Pointer(&meta[0]), int64(4*len(meta)), e.stream); err != nil {
			return err
		}
		at := func(k int) cu.DevicePtr { return e.meta + cu.DevicePtr(4*k) }
		dTok, dPos, dSlot, dOff, dRows, dTab := at(0), at(T), at(2*T), at(3*T), at(4*T), at(4*T+S)
		H, I := c.Hidden, c.Intermediate
		q, kv := c.Heads*c.HeadDim, c.KVHeads*c.HeadDim
		eps := float32(c.RMSEps)
		steps := []func() error{func() error { return e.launch("embed_gather", T, 1, 256, e.x, e.embed, dTok, int64(H)) }}
		for li := range e.layers {
			l := &e.layers[li]
			kc, vc := e.kc[li], e.vc[li]
			steps = append(steps,
				func() error {
					return e.launch("rmsnorm", T, 1, 256, e.h, e.x, l.attnNorm, cu.DevicePtr(0), int64(H), eps)
				},
				func() error { return e.blas.linear(uintptr(e.qkv), uintptr(e.h), uintptr(l.wqkv), T, q+2*kv, H) },
				func() error {
					if l.bqkv == 0 {
						return nil
					}
					return e.launch("add_bias", 1024, 1, 256, e.qkv, l.bqkv, int64(T), int64(q+2*kv))
				},
				func() error {
					return e.launch("rope", T, 1, 128, e.qkv, dPos, e.invFreq, int64(c.Heads), int64(c.KVHeads), int64(c.HeadDim))
				},
				func() error {
					return e.launch("cache_write", T, 1, 128, kc, vc, e.qkv, dSlot, int64(c.Heads), int64(c.KVHeads), int64(c.HeadDim))
				},
				func() error {
					return e.launch("paged_attention", T, c.Heads, 128, e.att, e.qkv, kc, vc, dPos, dTab, dOff,
						int64(c.Heads), int64(c.KVHeads), int64(c.HeadDim), int64(e.bs), float32(1/math.Sqrt(float64(c.HeadDim))))
				},
				func() error { return e.blas.linear(uintptr(e.tmp), uintptr(e.att), uintptr(l.wo), T, H, q) },
				func() error { return e.launch("residual_add", 1024, 1, 256, e.x, e.tmp, int64(T*H)) },
				func() error {
					return e.launch("rmsnorm", T, 1, 256, e.h, e.x, l.mlpNorm, cu.DevicePtr(0), int64(H), eps)
				},
				func() error { return e.blas.linear(uintptr(e.gu), uintptr(e.h), uintptr(l.wgu), T, 2*I, H) },
				func() error { return e.launch("silu_mul", 1024, 1, 256, e.act, e.gu, int64(T), int64(I)) },
				func() error { return e.blas.linear(uintptr(e.tmp), uintptr(e.act), uintptr(l.wdown), T, H, I) },
				func() error { return e.launch("residual_add", 1024, 1, 256, e.x, e.tmp, int64(T*H)) },
			)
		}
		for _, f := range steps {
			if err := f(); err != nil {
				return err
			}
		}
		if S == 0 {
			return e.stream.Synchronize()
		}
		if err := e.launch("rmsnorm", S, 1, 256, e.hs, e.x, e.norm, dRows, int64(H), eps); err != nil {
			return err
		}
		if err := e.blas.linear(uintptr(e.logits), uintptr(e.hs), uintptr(e.lmHead), S, c.Vocab, H); err != nil {
			return err
		}
		if err := e.launch("argmax", S, 1, 1024, e.argmaxOut, e.logits, int64(c.Vocab)); err != nil {
			return err
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
