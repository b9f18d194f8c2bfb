//go:build cuda

package gpu

import (
	"fmt"
	"math"
	"unsafe"

	"gorgonia.org/cu"
)

type cudaLinear struct{ w, b cu.DevicePtr }

type cudaBertLayer struct {
	qkv, o, up, down       cudaLinear
	ln1w, ln1b, ln2w, ln2b cu.DevicePtr
}

// CUDAPredictor runs the ELIS predictor (BERT encoder, masked mean
// pooling, the Linear+ReLU head) on a GPU, batched over requests: bf16
// weights, fp32 activations, tokens of all inputs packed without padding.
type CUDAPredictor struct {
	cudaBase
	cfg            BertConfig
	word, pos, typ cu.DevicePtr
	embw, embb     cu.DevicePtr
	layers         []cudaBertLayer
	head           []cudaLinear
	headOut        []int
	capT, capS     int
	x, qkv, tmp    cu.DevicePtr // fp32 [T, H], [T, 3H], [T, max(H, I)]
	h, att, act    cu.DevicePtr // bf16 [T, H], [T, H], [T, I]
	pooled         cu.DevicePtr // bf16 [S, max width]
	hout           cu.DevicePtr // fp32 [S, max width]
	meta           cu.DevicePtr
	metaCap        int
}

func init() {
	newCUDAPredictor = func(p *Predictor) (PredictorNet, error) { return NewCUDAPredictor(p) }
}

// Config returns the encoder's shape.
func (e *CUDAPredictor) Config() BertConfig { return e.cfg }

// NewCUDAPredictor uploads p to GPU 0.
func NewCUDAPredictor(p *Predictor) (*CUDAPredictor, error) {
	e := &CUDAPredictor{cfg: p.Cfg}
	if err := e.start(0); err != nil {
		e.Close()
		return nil, err
	}
	err := e.dev.do(func() error {
		var err error
		put := func(parts ...[]float32) cu.DevicePtr {
			if err != nil {
				return 0
			}
			var d cu.DevicePtr
			d, err = e.put(parts...)
			return d
		}
		H := p.Cfg.Hidden
		e.word, e.pos, e.typ = put(p.word), put(p.pos), put(p.typ[:H])
		e.embw, e.embb = put(p.embLNW), put(p.embLNB)
		for _, l := range p.layers {
			e.layers = append(e.layers, cudaBertLayer{
				qkv:  cudaLinear{put(l.q.W, l.k.W, l.v.W), put(l.q.B, l.k.B, l.v.B)},
				o:    cudaLinear{put(l.o.W), put(l.o.B)},
				up:   cudaLinear{put(l.up.W), put(l.up.B)},
				down: cudaLinear{put(l.down.W), put(l.down.B)},
				ln1w: put(l.ln1W), ln1b: put(l.ln1B), ln2w: put(l.ln2W), ln2b: put(l.ln2B),
			})
		}
		for _, l := range p.head {
			e.head = append(e.head, cudaLinear{put(l.W), put(l.B)})
			e.headOut = append(e.headOut, len(l.B))
		}
		return err
	})
	if err != nil {
		e.Close()
		return nil, err
	}
	return e, nil
}

func (e *CUDAPredictor) scratch(T, S int) error {
	c := &e.cfg
	wide := c.Hidden
	for _, n := range e.headOut {
		wide = max(wide, n)
	}
	if T > e.capT {
		for _, p := range []cu.DevicePtr{e.x, e.qkv, e.tmp, e.h, e.att, e.act} {
			if p != 0 {
				e.free(p)
			}
		}
		t, H, I := int64(T), int64(c.Hidden), int64(c.Intermediate)
		for _, b := range []struct {
			p    *cu.DevicePtr
			size int64
		}{{&e.x, 4 * t * H}, {&e.qkv, 12 * t * H}, {&e.tmp, 4 * t * max(H, I)}, {&e.h, 2 * t * H}, {&e.att, 2 * t * H}, {&e.act, 2 * t * I}} {
			var err error
			if *b.p, err = e.alloc(b.size); err != nil {
				return e.oom(err, fmt.Sprintf("predictor activations for %d tokens", T), b.size)
			}
		}
		e.capT = T
	}
	if S > e.capS {
		for _, p := range []cu.DevicePtr{e.pooled, e.hout} {
			if p != 0 {
				e.free(p)
			}
		}
		var err error
		if e.pooled, err = e.alloc(2 * int64(S*wide)); err != nil {
			return err
		}
		if e.hout, err = e.alloc(4 * int64(S*wide)); err != nil {
			return err
		}
		e.capS = S
	}
	return nil
}

// Predict returns the head's scalar for each input, like Predictor.Predict.
func (e *CUDAPredictor) Predict(ids [][]int32, mask [][]int32) ([]float32, error) {
	c := &e.cfg
	var toks, pos, tStart, tLen, sStart, sLen []int32
	for s, seq := range ids {
		if len(seq) == 0 || len(seq) > c.MaxPositions {
			return nil, fmt.Errorf("sequence %d: %d tokens, want 1 to %d", s, len(seq), c.MaxPositions)
		}
		start := int32(len(toks))
		for i, t := range seq {
			if mask != nil && mask[s][i] == 0 {
				continue
			}
			if t < 0 || int(t) >= c.Vocab {
				return nil, fmt.Errorf("sequence %d: token %d outside the vocabulary", s, t)
			}
			toks = append(toks, t)
			pos = append(pos, int32(i))
		}
		n := int32(len(toks)) - start
		if n == 0 {
			return nil, fmt.Errorf("sequence %d: every token is masked", s)
		}
		for range n {
			tStart, tLen = append(tStart, start), append(tLen, n)
		}
		sStart, sLen = append(sStart, start), append(sLen, n)
	}
	T, S := len(toks), len(ids)
	meta := append(append(append(append(append(append([]int32(nil), toks...), pos...), tStart...), tLen...), sStart...), sLen...)
	out := make([]float32, S)
	err := e.dev.do(func() error {
		if err := e.scratch(T, S); err != nil {
			return err
		}
		if len(meta) > e.metaCap {
			if e.meta != 0 {
				e.free(e.meta)
			}
			var err error
			if e.meta, err = e.alloc(int64(8 * len(meta))); err != nil {
				return err
			}
			e.metaCap = 2 * len(meta)
		}
		if err := cu.MemcpyHtoDAsync(e.meta, unsafe.Pointer(&meta[0]), int64(4*len(meta)), e.stream); err != nil {
			return err
		}
		at := func(k int) cu.DevicePtr { return e.meta + cu.DevicePtr(4*k) }
		dTok, dPos, dTS, dTL, dSS, dSL := at(0), at(T), at(2*T), at(3*T), at(4*T), at(4*T+S)
		H, I := c.Hidden, c.Intermediate
		eps := float32(c.LNEps)
		run := []func() error{
			func() error {
				return e.launch("bert_embed", T, 1, 256, e.x, e.word, e.pos, e.typ, dTok, dPos, int64(H))
			},
			func() error { return e.launch("layernorm", T, 1, 256, e.x, e.h, e.embw, e.embb, int64(H), eps) },
		}
		for li := range e.layers {
			l := &e.layers[li]
			run = append(run,
				func() error { return e.blas.linear(uintptr(e.qkv), uintptr(e.h), uintptr(l.qkv.w), T, 3*H, H) },
				func() error {
					return e.launch("bias_act", 1024, 1, 256, e.qkv, l.qkv.b, cu.DevicePtr(0), cu.DevicePtr(0), int64(T), int64(3*H), int64(0))
				},
				func() error {
					return e.launch("bert_attention", T, c.Heads, 128, e.att, e.qkv, dTS, dTL, int64(c.Heads), int64(H/c.Heads),
						float32(1/math.Sqrt(float64(H/c.Heads))))
				},
				func() error { return e.blas.linear(uintptr(e.tmp), uintptr(e.att), uintptr(l.o.w), T, H, H) },
				func() error {
					return e.launch("bias_act", 1024, 1, 256, e.tmp, l.o.b, e.x, cu.DevicePtr(0), int64(T), int64(H), int64(0))
				},
				func() error { return e.launch("layernorm", T, 1, 256, e.tmp, e.h, l.ln1w, l.ln1b, int64(H), eps) },
				func() error { return cu.MemcpyDtoDAsync(e.x, e.tmp, int64(4*T*H), e.stream) },
				func() error { return e.blas.linear(uintptr(e.tmp), uintptr(e.h), uintptr(l.up.w), T, I, H) },
				func() error {
					return e.launch("bias_act", 1024, 1, 256, e.tmp, l.up.b, cu.DevicePtr(0), e.act, int64(T), int64(I), int64(2))
				},
				func() error { return e.blas.linear(uintptr(e.tmp), uintptr(e.act), uintptr(l.down.w), T, H, I) },
				func() error {
					return e.launch("bias_act", 1024, 1, 256, e.tmp, l.down.b, e.x, cu.DevicePtr(0), int64(T), int64(H), int64(0))
				},
				func() error { return e.launch("layernorm", T, 1, 256, e.tmp, e.h, l.ln2w, l.ln2b, int64(H), eps) },
				func() error { return cu.MemcpyDtoDAsync(e.x, e.tmp, int64(4*T*H), e.stream) },
			)
		}
		run = append(run, func() error { return e.launch("mean_pool", S, 1, 256, e.pooled, e.x, dSS, dSL, int64(H)) })
		in := H
		for k := range e.head {
			l, n, last := e.head[k], e.headOut[k], k == len(e.head)-1
			act, bf := int64(1), e.pooled
			if last {
				act, bf = 0, cu.DevicePtr(0)
			}
			kIn := in
			run = append(run,
				func() error { return e.blas.linear(uintptr(e.hout), uintptr(e.pooled), uintptr(l.w), S, n, kIn) },
				func() error {
					return e.launch("bias_act", 256, 1, 256, e.hout, l.b, cu.DevicePtr(0), bf, int64(S), int64(n), act)
				})
			in = n
		}
		for _, f := range run {
			if err := f(); err != nil {
				return err
			}
		}
		if err := cu.MemcpyDtoHAsync(unsafe.Pointer(&out[0]), e.hout, int64(4*S), e.stream); err != nil {
			return err
		}
		return e.stream.Synchronize()
	})
	return out, err
}
