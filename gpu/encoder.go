package gpu

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
)

// BertConfig is a BERT encoder's shape (bge-base-en-v1.5: 12 layers,
// hidden 768, 12 heads, intermediate 3072, vocabulary 30,522).
type BertConfig struct {
	Hidden       int     `json:"hidden_size"`
	Intermediate int     `json:"intermediate_size"`
	Layers       int     `json:"num_hidden_layers"`
	Heads        int     `json:"num_attention_heads"`
	Vocab        int     `json:"vocab_size"`
	MaxPositions int     `json:"max_position_embeddings"`
	TypeVocab    int     `json:"type_vocab_size"`
	LNEps        float64 `json:"layer_norm_eps"`
}

// BgeBase is the shape of BAAI/bge-base-en-v1.5.
var BgeBase = BertConfig{Hidden: 768, Intermediate: 3072, Layers: 12, Heads: 12, Vocab: 30522, MaxPositions: 512, TypeVocab: 2, LNEps: 1e-12}

type linear struct{ W, B []float32 } // W [out][in]

type bertLayer struct {
	q, k, v, o, up, down linear
	ln1W, ln1B           []float32 // after attention
	ln2W, ln2B           []float32 // after the MLP
}

// Predictor is the ELIS output-length predictor: a BERT encoder, masked
// mean pooling, and a head of Linear+ReLU layers ending in one scalar (8
// layers in ELIS: 768->1024, six 1024->1024, 1024->1).
type Predictor struct {
	Cfg              BertConfig
	word, pos, typ   []float32
	embLNW, embLNB   []float32
	layers           []bertLayer
	head             []linear
	headIn, headOuts []int
	prec             Precision // rounding of the matrix-product inputs (Emulating)
}

// Emulating returns a copy of p that rounds as the CUDA predictor does in
// format prec: weights stored in prec (the linear layers' matrices alone
// for TF32), and every matrix product's input (normed hidden states, the
// attention output, the GELU output, the pooled vector, the head's
// activations) rounded to prec; the residual stream, attention and
// accumulations stay float32. F32 returns p.
func (p *Predictor) Emulating(prec Precision) *Predictor {
	if prec == F32 {
		return p
	}
	vec := prec.storedVector
	lin := func(l linear) linear { return linear{W: prec.rounded(l.W), B: vec(l.B)} }
	q := &Predictor{Cfg: p.Cfg, word: vec(p.word), pos: vec(p.pos), typ: vec(p.typ), embLNW: vec(p.embLNW), embLNB: vec(p.embLNB),
		headIn: p.headIn, headOuts: p.headOuts, prec: prec}
	for _, l := range p.layers {
		q.layers = append(q.layers, bertLayer{q: lin(l.q), k: lin(l.k), v: lin(l.v), o: lin(l.o), up: lin(l.up), down: lin(l.down),
			ln1W: vec(l.ln1W), ln1B: vec(l.ln1B), ln2W: vec(l.ln2W), ln2B: vec(l.ln2B)})
	}
	for _, l := range p.head {
		q.head = append(q.head, lin(l))
	}
	return q
}

// RandomPredictor builds a predictor with seeded weights: the ELIS shape
// is RandomPredictor(BgeBase, []int{1024, 1024, 1024, 1024, 1024, 1024, 1024, 1}, seed).
func RandomPredictor(cfg BertConfig, head []int, seed uint64) *Predictor {
	rng := rand.New(rand.NewPCG(seed, 0x656c6973))
	mat := func(out, in int) []float32 { return randMatrix(rng, out, in) }
	vec := filled
	H := cfg.Hidden
	p := &Predictor{Cfg: cfg, word: mat(cfg.Vocab, H), pos: mat(cfg.MaxPositions, H), typ: mat(cfg.TypeVocab, H),
		embLNW: vec(H, 1), embLNB: vec(H, 0)}
	for i := 0; i < cfg.Layers; i++ {
		p.layers = append(p.layers, bertLayer{
			q: linear{mat(H, H), vec(H, 0)}, k: linear{mat(H, H), vec(H, 0)}, v: linear{mat(H, H), vec(H, 0)}, o: linear{mat(H, H), vec(H, 0)},
			up: linear{mat(cfg.Intermediate, H), vec(cfg.Intermediate, 0)}, down: linear{mat(H, cfg.Intermediate), vec(H, 0)},
			ln1W: vec(H, 1), ln1B: vec(H, 0), ln2W: vec(H, 1), ln2B: vec(H, 0)})
	}
	in := H
	for _, out := range head {
		p.head = append(p.head, linear{mat(out, in), vec(out, 0)})
		in = out
	}
	return p
}

// Predict returns the head's scalar for each sequence of token ids (with
// [CLS] and [SEP] as the tokenizer gives them); mask marks real tokens (nil:
// all of them). Sequences are padded to the longest internally.
func (p *Predictor) Predict(ids [][]int32, mask [][]int32) ([]float32, error) {
	emb, err := p.Embed(ids, mask)
	if err != nil {
		return nil, err
	}
	out := make([]float32, len(ids))
	for s, v := range emb {
		out[s] = p.HeadOf(v)
	}
	return out, nil
}

// Embed returns each sequence's pooled encoding: the frozen encoder's
// output, masked-mean pooled over its tokens ([CLS] and [SEP] included),
// which is all the head sees. Training the head needs these once per row.
func (p *Predictor) Embed(ids [][]int32, mask [][]int32) ([][]float32, error) {
	c := &p.Cfg
	H := c.Hidden
	out := make([][]float32, len(ids))
	for s, seq := range ids {
		n := len(seq)
		if n == 0 || n > c.MaxPositions {
			return nil, fmt.Errorf("sequence %d: %d tokens, want 1 to %d", s, n, c.MaxPositions)
		}
		m := make([]float32, n)
		for i := range m {
			m[i] = 1
			if mask != nil && mask[s][i] == 0 {
				m[i] = 0
			}
		}
		x := make([]float32, n*H)
		for i, t := range seq {
			if t < 0 || int(t) >= c.Vocab {
				return nil, fmt.Errorf("sequence %d: token %d outside the vocabulary of %d", s, t, c.Vocab)
			}
			for j := 0; j < H; j++ {
				x[i*H+j] = p.word[int(t)*H+j] + p.pos[i*H+j] + p.typ[j]
			}
		}
		layerNorm(x, x, p.embLNW, p.embLNB, H, float32(c.LNEps))
		for li := range p.layers {
			p.layer(x, m, &p.layers[li])
		}
		// masked mean pooling
		pooled := make([]float32, H)
		var cnt float32
		for i := 0; i < n; i++ {
			for j := 0; j < H; j++ {
				pooled[j] += x[i*H+j] * m[i]
			}
			cnt += m[i]
		}
		for j := range pooled {
			pooled[j] /= max(cnt, 1e-9)
		}
		out[s] = pooled
	}
	return out, nil
}

// HeadOf runs the head on one pooled encoding.
func (p *Predictor) HeadOf(pooled []float32) float32 {
	v := append([]float32(nil), pooled...)
	for k, l := range p.head {
		p.prec.roundAll(v)
		o := make([]float32, len(l.B))
		matmul(o, v, l.W, l.B, 1, len(v), len(o))
		if k < len(p.head)-1 {
			for i, a := range o {
				o[i] = max(a, 0)
			}
		}
		v = o
	}
	return v[0]
}

// HeadLayer is one Linear layer of the head: W is [out][in], row-major
// (PyTorch's layout), B has out values.
type HeadLayer struct{ W, B []float32 }

// Head returns a copy of the head's layers, first to last.
func (p *Predictor) Head() []HeadLayer {
	out := make([]HeadLayer, len(p.head))
	for i, l := range p.head {
		out[i] = HeadLayer{W: append([]float32(nil), l.W...), B: append([]float32(nil), l.B...)}
	}
	return out
}

// WithHead returns p with another head of the same shape (the encoder is
// shared, not copied).
func (p *Predictor) WithHead(head []HeadLayer) (*Predictor, error) {
	if len(head) != len(p.head) {
		return nil, fmt.Errorf("head of %d layers, want %d", len(head), len(p.head))
	}
	q := *p
	q.head = make([]linear, len(head))
	for i, l := range head {
		if len(l.W) != len(p.head[i].W) || len(l.B) != len(p.head[i].B) {
			return nil, fmt.Errorf("head layer %d: %d weights and %d biases, want %d and %d", i, len(l.W), len(l.B), len(p.head[i].W), len(p.head[i].B))
		}
		q.head[i] = linear{W: append([]float32(nil), l.W...), B: append([]float32(nil), l.B...)}
	}
	return &q, nil
}

// EncoderID identifies the encoder's weights (a hash of them and its
// shape): pooled encodings cached under it stay valid for any head.
func (p *Predictor) EncoderID() []byte {
	h := sha256.New()
	fmt.Fprintf(h, "%+v|%v|", p.Cfg, p.prec)
	put := func(xs ...[]float32) {
		var b [4]byte
		for _, x := range xs {
			for _, v := range x {
				binary.LittleEndian.PutUint32(b[:], math.Float32bits(v))
				h.Write(b[:])
			}
		}
	}
	put(p.word, p.pos, p.typ, p.embLNW, p.embLNB)
	for _, l := range p.layers {
		put(l.q.W, l.q.B, l.k.W, l.k.B, l.v.W, l.v.B, l.o.W, l.o.B, l.up.W, l.up.B, l.down.W, l.down.B, l.ln1W, l.ln1B, l.ln2W, l.ln2B)
	}
	return h.Sum(nil)
}

func (p *Predictor) layer(x, m []float32, l *bertLayer) {
	c := &p.Cfg
	H, n := c.Hidden, len(m)
	d := H / c.Heads
	q, k, v := make([]float32, n*H), make([]float32, n*H), make([]float32, n*H)
	xin := p.prec.rounded(x)
	matmul(q, xin, l.q.W, l.q.B, n, H, H)
	matmul(k, xin, l.k.W, l.k.B, n, H, H)
	matmul(v, xin, l.v.W, l.v.B, n, H, H)
	att := make([]float32, n*H)
	scale := float32(1 / math.Sqrt(float64(d)))
	scores := make([]float32, n)
	for h := 0; h < c.Heads; h++ {
		for i := 0; i < n; i++ {
			mx := float32(math.Inf(-1))
			for j := 0; j < n; j++ {
				s := dot(q[i*H+h*d:i*H+(h+1)*d], k[j*H+h*d:j*H+(h+1)*d]) * scale
				if m[j] == 0 {
					s = float32(math.Inf(-1)) // padding is never attended to
				}
				scores[j] = s
				mx = max(mx, s)
			}
			var sum float32
			for j := range scores {
				scores[j] = float32(math.Exp(float64(scores[j] - mx)))
				sum += scores[j]
			}
			o := att[i*H+h*d : i*H+(h+1)*d]
			for j := 0; j < n; j++ {
				w := scores[j] / sum
				for t := 0; t < d; t++ {
					o[t] += w * v[j*H+h*d+t]
				}
			}
		}
	}
	tmp := make([]float32, n*H)
	p.prec.roundAll(att)
	matmul(tmp, att, l.o.W, l.o.B, n, H, H)
	addInto(tmp, x)
	layerNorm(x, tmp, l.ln1W, l.ln1B, H, float32(c.LNEps))
	mid := make([]float32, n*c.Intermediate)
	matmul(mid, p.prec.rounded(x), l.up.W, l.up.B, n, H, c.Intermediate)
	for i, a := range mid {
		mid[i] = float32(0.5 * float64(a) * (1 + math.Erf(float64(a)/math.Sqrt2)))
	}
	p.prec.roundAll(mid)
	matmul(tmp, mid, l.down.W, l.down.B, n, c.Intermediate, H)
	addInto(tmp, x)
	layerNorm(x, tmp, l.ln2W, l.ln2B, H, float32(c.LNEps))
}

func layerNorm(dst, x, w, b []float32, n int, eps float32) {
	for r := 0; r < len(x)/n; r++ {
		xr := x[r*n : (r+1)*n]
		var mean, vr float64
		for _, v := range xr {
			mean += float64(v)
		}
		mean /= float64(n)
		for _, v := range xr {
			vr += (float64(v) - mean) * (float64(v) - mean)
		}
		inv := 1 / math.Sqrt(vr/float64(n)+float64(eps))
		for i, v := range xr {
			dst[r*n+i] = float32((float64(v)-mean)*inv)*w[i] + b[i]
		}
	}
}
