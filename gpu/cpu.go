package gpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"sync"
)

// CPU executes a decoder in pure Go, float32 with float32 accumulation
// per dot product. It is for tests and tiny models, and the reference the
// CUDA executor is checked against: NewCPUEmulating rounds where the CUDA
// executor does.
type CPU struct {
	w           *Weights
	prec        Precision
	blockSize   int
	numBlocks   int
	k, v        [][]float32 // per layer: [block][offset][kvHeads*headDim]
	cos, sin    []float32   // rope tables, [position][headDim/2]
	Temperature float64     // 0: greedy
	rng         *rand.Rand
}

// NewCPU builds a CPU executor with a KV cache of numBlocks blocks of
// blockSize tokens. seed drives temperature sampling.
func NewCPU(w *Weights, blockSize, numBlocks int, seed uint64) (*CPU, error) {
	if blockSize < 1 || numBlocks < 1 {
		return nil, fmt.Errorf("KV cache: block size %d and blocks %d must be >= 1", blockSize, numBlocks)
	}
	c := &w.Cfg
	e := &CPU{w: w, blockSize: blockSize, numBlocks: numBlocks, rng: rand.New(rand.NewPCG(seed, 1))}
	per := numBlocks * blockSize * c.KVHeads * c.HeadDim
	for range c.Layers {
		e.k = append(e.k, make([]float32, per))
		e.v = append(e.v, make([]float32, per))
	}
	e.ropeTables(max(c.MaxPositions, numBlocks*blockSize))
	return e, nil
}

// NewCPUEmulating is NewCPU (greedy) rounding as the CUDA executor does in
// format p: weights stored in p (matrices only for TF32), the inputs of
// every matrix product (normed hidden states, the attention output, the
// SiLU product) rounded to p, and for BF16 and FP16 the KV cache stored in
// p; the residual stream, attention scores and accumulations stay float32.
// With BF16 it is the reference the CUDA executor must match closely; the
// float32 executor bounds what bf16 itself costs.
func NewCPUEmulating(w *Weights, p Precision, blockSize, numBlocks int) (*CPU, error) {
	e, err := NewCPU(w.Rounded(p), blockSize, numBlocks, 0)
	if err != nil {
		return nil, err
	}
	e.prec = p
	return e, nil
}

// Rounded returns a copy of w with its weights stored in format p: every
// tensor for BF16 and FP16, the matrices alone for TF32 (whose storage is
// float32). F32 returns w itself.
func (w *Weights) Rounded(p Precision) *Weights {
	if p == F32 {
		return w
	}
	vec := p.storedVector
	mat := p.rounded
	out := &Weights{Cfg: w.Cfg, Embed: vec(w.Embed), Norm: vec(w.Norm), LMHead: mat(w.LMHead)}
	if &w.LMHead[0] == &w.Embed[0] && p.storesWeights() {
		out.LMHead = out.Embed
	}
	for _, l := range w.Layers {
		out.Layers = append(out.Layers, Layer{AttnNorm: vec(l.AttnNorm), MLPNorm: vec(l.MLPNorm),
			Wq: mat(l.Wq), Wk: mat(l.Wk), Wv: mat(l.Wv), Wo: mat(l.Wo), Bq: vec(l.Bq), Bk: vec(l.Bk), Bv: vec(l.Bv),
			Wgate: mat(l.Wgate), Wup: mat(l.Wup), Wdown: mat(l.Wdown)})
	}
	return out
}

func (e *CPU) ropeTables(n int) {
	inv := e.w.Cfg.InvFreq()
	half := len(inv)
	e.cos = make([]float32, n*half)
	e.sin = make([]float32, n*half)
	for p := 0; p < n; p++ {
		for i, f := range inv {
			// float32 angle, as the reference computes it
			a := float64(float32(p) * float32(f))
			e.cos[p*half+i] = float32(math.Cos(a))
			e.sin[p*half+i] = float32(math.Sin(a))
		}
	}
}

func (e *CPU) BlockSize() int { return e.blockSize }
func (e *CPU) NumBlocks() int { return e.numBlocks }
func (e *CPU) Close() error   { return nil }

// Step implements Executor.
func (e *CPU) Step(seqs []SeqStep, next []int32) error {
	logits, err := e.Forward(seqs, false)
	if err != nil {
		return err
	}
	for i, s := range seqs {
		next[i] = -1
		if s.Sample {
			next[i] = e.sample(logits[i])
		}
	}
	return nil
}

func (e *CPU) sample(logits []float32) int32 {
	if e.Temperature <= 0 {
		best := 0
		for i, v := range logits {
			if v > logits[best] {
				best = i
			}
		}
		return int32(best)
	}
	mx := logits[0]
	for _, v := range logits {
		mx = max(mx, v)
	}
	sum := 0.0
	p := make([]float64, len(logits))
	for i, v := range logits {
		p[i] = math.Exp(float64(v-mx) / e.Temperature)
		sum += p[i]
	}
	u := e.rng.Float64() * sum
	for i, v := range p {
		u -= v
		if u <= 0 {
			return int32(i)
		}
	}
	return int32(len(p) - 1)
}

// Forward runs one step and returns, per sequence, the logits of its last
// token, or of every token when all is set (for checks against
// references).
func (e *CPU) Forward(seqs []SeqStep, all bool) ([][]float32, error) {
	c := &e.w.Cfg
	T := 0
	for i, s := range seqs {
		end := s.Pos + len(s.Tokens)
		if len(s.Tokens) == 0 {
			return nil, fmt.Errorf("sequence %d: no tokens", i)
		}
		if (end+e.blockSize-1)/e.blockSize > len(s.BlockTable) {
			return nil, fmt.Errorf("sequence %d: block table of %d blocks cannot hold %d tokens", i, len(s.BlockTable), end)
		}
		if end > len(e.cos)/(c.HeadDim/2) {
			return nil, fmt.Errorf("sequence %d: position %d beyond the rope table", i, end)
		}
		for _, b := range s.BlockTable {
			if b < 0 || int(b) >= e.numBlocks {
				return nil, fmt.Errorf("sequence %d: block %d outside the cache of %d", i, b, e.numBlocks)
			}
		}
		for _, t := range s.Tokens {
			if t < 0 || int(t) >= c.Vocab {
				return nil, fmt.Errorf("sequence %d: token %d outside the vocabulary of %d", i, t, c.Vocab)
			}
		}
		T += len(s.Tokens)
	}
	H, q, kv := c.Hidden, c.Heads*c.HeadDim, c.KVHeads*c.HeadDim
	x := make([]float32, T*H)
	row := 0
	for _, s := range seqs {
		for _, t := range s.Tokens {
			copy(x[row*H:(row+1)*H], e.w.Embed[int(t)*H:(int(t)+1)*H])
			row++
		}
	}
	h := make([]float32, T*H)
	qb, kb, vb := make([]float32, T*q), make([]float32, T*kv), make([]float32, T*kv)
	att := make([]float32, T*q)
	gate, up := make([]float32, T*c.Intermediate), make([]float32, T*c.Intermediate)
	tmp := make([]float32, T*H)
	for li := range e.w.Layers {
		l := &e.w.Layers[li]
		rmsNorm(h, x, l.AttnNorm, H, float32(c.RMSEps))
		e.prec.roundAll(h)
		matmul(qb, h, l.Wq, l.Bq, T, H, q)
		matmul(kb, h, l.Wk, l.Bk, T, H, kv)
		matmul(vb, h, l.Wv, l.Bv, T, H, kv)
		row = 0
		for _, s := range seqs {
			for j := range s.Tokens {
				pos := s.Pos + j
				e.rope(qb[row*q:(row+1)*q], c.Heads, pos)
				e.rope(kb[row*kv:(row+1)*kv], c.KVHeads, pos)
				off := e.slot(s.BlockTable, pos) * kv
				copy(e.k[li][off:off+kv], kb[row*kv:(row+1)*kv])
				copy(e.v[li][off:off+kv], vb[row*kv:(row+1)*kv])
				if e.prec.storesWeights() {
					e.prec.roundAll(e.k[li][off : off+kv])
					e.prec.roundAll(e.v[li][off : off+kv])
				}
				row++
			}
		}
		row = 0
		for _, s := range seqs {
			flash := e.prec == BF16 && flashAttention(c.HeadDim, len(s.Tokens))
			last := s.Pos + len(s.Tokens) - 1
			for j := range s.Tokens {
				if flash {
					e.attendFlash(att[row*q:(row+1)*q], qb[row*q:(row+1)*q], li, s.BlockTable, s.Pos+j, last)
				} else {
					e.attend(att[row*q:(row+1)*q], qb[row*q:(row+1)*q], li, s.BlockTable, s.Pos+j+1)
				}
				row++
			}
		}
		e.prec.roundAll(att)
		matmul(tmp, att, l.Wo, nil, T, q, H)
		addInto(x, tmp)
		rmsNorm(h, x, l.MLPNorm, H, float32(c.RMSEps))
		e.prec.roundAll(h)
		matmul(gate, h, l.Wgate, nil, T, H, c.Intermediate)
		matmul(up, h, l.Wup, nil, T, H, c.Intermediate)
		for i, g := range gate {
			gate[i] = g / (1 + float32(math.Exp(float64(-g)))) * up[i]
		}
		e.prec.roundAll(gate)
		matmul(tmp, gate, l.Wdown, nil, T, c.Intermediate, H)
		addInto(x, tmp)
	}
	// Final norm and LM head on the rows that need logits.
	out := make([][]float32, len(seqs))
	row = 0
	for i, s := range seqs {
		first, n := row+len(s.Tokens)-1, 1
		if all {
			first, n = row, len(s.Tokens)
		}
		hn := make([]float32, n*H)
		rmsNorm(hn, x[first*H:(first+n)*H], e.w.Norm, H, float32(c.RMSEps))
		e.prec.roundAll(hn)
		out[i] = make([]float32, n*c.Vocab)
		matmul(out[i], hn, e.w.LMHead, nil, n, H, c.Vocab)
		row += len(s.Tokens)
	}
	return out, nil
}

// slot is the cache row of a sequence position.
func (e *CPU) slot(table []int32, pos int) int {
	return int(table[pos/e.blockSize])*e.blockSize + pos%e.blockSize
}

// rope rotates each head of v (rotate-half convention) for position pos.
func (e *CPU) rope(v []float32, heads, pos int) {
	d := e.w.Cfg.HeadDim
	half := d / 2
	cos, sin := e.cos[pos*half:(pos+1)*half], e.sin[pos*half:(pos+1)*half]
	for h := 0; h < heads; h++ {
		x := v[h*d : (h+1)*d]
		for i := 0; i < half; i++ {
			a, b := x[i], x[i+half]
			x[i] = a*cos[i] - b*sin[i]
			x[i+half] = b*cos[i] + a*sin[i]
		}
	}
}

// attend computes causal attention of one query over the first n cached
// positions of its sequence, through the block table.
func (e *CPU) attend(out, q []float32, layer int, table []int32, n int) {
	c := &e.w.Cfg
	d, kv := c.HeadDim, c.KVHeads*c.HeadDim
	group := c.Heads / c.KVHeads
	scale := float32(1 / math.Sqrt(float64(d)))
	scores := make([]float32, n)
	for h := 0; h < c.Heads; h++ {
		qh := q[h*d : (h+1)*d]
		kvh := (h / group) * d
		mx := float32(math.Inf(-1))
		for p := 0; p < n; p++ {
			off := e.slot(table, p)*kv + kvh
			scores[p] = dot(qh, e.k[layer][off:off+d]) * scale
			mx = max(mx, scores[p])
		}
		var sum float32
		for p := range scores {
			scores[p] = float32(math.Exp(float64(scores[p] - mx)))
			sum += scores[p]
		}
		o := out[h*d : (h+1)*d]
		clear(o)
		for p := 0; p < n; p++ {
			off := e.slot(table, p)*kv + kvh
			w := scores[p] / sum
			for i, v := range e.v[layer][off : off+d] {
				o[i] += w * v
			}
		}
	}
}

// attendFlash is attend as the CUDA tensor-core kernel computes it (for
// the bf16 emulation): the query scaled and rounded to bf16, keys in
// blocks of flashBlock positions up to last (the step's last position of
// the sequence) with a running maximum, each block's probabilities summed
// unrounded but rounded to bf16 before they weight the values, and the
// accumulator rescaled as the maximum grows.
func (e *CPU) attendFlash(out, q []float32, layer int, table []int32, qpos, last int) {
	c := &e.w.Cfg
	d, kv := c.HeadDim, c.KVHeads*c.HeadDim
	group := c.Heads / c.KVHeads
	scale := float32(1 / math.Sqrt(float64(d)))
	qs, acc := make([]float32, d), make([]float32, d)
	scores := make([]float32, flashBlock)
	const masked = float32(-1e30)
	for h := 0; h < c.Heads; h++ {
		for i := range qs {
			qs[i] = bf16Round(q[h*d+i] * scale)
		}
		kvh := (h / group) * d
		m, l := masked, float32(0)
		clear(acc)
		for kb := 0; kb <= last; kb += flashBlock {
			hi := min(kb+flashBlock, last+1)
			mx := masked
			for p := kb; p < hi; p++ {
				s := masked
				if p <= qpos {
					off := e.slot(table, p)*kv + kvh
					s = dot(qs, e.k[layer][off:off+d])
				}
				scores[p-kb] = s
				mx = max(mx, s)
			}
			mn := max(m, mx)
			corr := float32(math.Exp(float64(m - mn)))
			for i := range acc {
				acc[i] *= corr
			}
			var sum float32
			for p := kb; p < hi; p++ {
				w := float32(math.Exp(float64(scores[p-kb] - mn)))
				sum += w
				if w == 0 {
					continue
				}
				w = bf16Round(w)
				off := e.slot(table, p)*kv + kvh
				for i, v := range e.v[layer][off : off+d] {
					acc[i] += w * v
				}
			}
			l = l*corr + sum
			m = mn
		}
		for i := range acc {
			out[h*d+i] = acc[i] / l
		}
	}
}

func dot(a, b []float32) float32 {
	var s float32
	for i, v := range a {
		s += v * b[i]
	}
	return s
}

func addInto(dst, src []float32) {
	for i, v := range src {
		dst[i] += v
	}
}

func rmsNorm(dst, x, w []float32, n int, eps float32) {
	for r := 0; r < len(x)/n; r++ {
		xr := x[r*n : (r+1)*n]
		var ss float32
		for _, v := range xr {
			ss += v * v
		}
		inv := float32(1 / math.Sqrt(float64(ss/float32(n)+eps)))
		for i, v := range xr {
			dst[r*n+i] = w[i] * (v * inv)
		}
	}
}

// matmul computes out[t][o] = x[t] . W[o] + b[o] for rows t < T, W being
// [O][I]; large products are split over the CPU's cores by output.
func matmul(out, x, W, b []float32, T, I, O int) {
	work := func(lo, hi int) {
		t := 0
		// Four rows at a time share each weight load and give the CPU four
		// independent sums; each sum still runs over i in order, so the
		// result is the one-row loop's to the bit.
		for ; t+4 <= T; t += 4 {
			x0, x1, x2, x3 := x[t*I:(t+1)*I], x[(t+1)*I:(t+2)*I], x[(t+2)*I:(t+3)*I], x[(t+3)*I:(t+4)*I]
			for o := lo; o < hi; o++ {
				w := W[o*I : (o+1)*I]
				var s0, s1, s2, s3 float32
				for i, v := range w {
					s0 += x0[i] * v
					s1 += x1[i] * v
					s2 += x2[i] * v
					s3 += x3[i] * v
				}
				if b != nil {
					s0, s1, s2, s3 = s0+b[o], s1+b[o], s2+b[o], s3+b[o]
				}
				out[t*O+o], out[(t+1)*O+o], out[(t+2)*O+o], out[(t+3)*O+o] = s0, s1, s2, s3
			}
		}
		for ; t < T; t++ {
			xr := x[t*I : (t+1)*I]
			for o := lo; o < hi; o++ {
				s := dot(xr, W[o*I:(o+1)*I])
				if b != nil {
					s += b[o]
				}
				out[t*O+o] = s
			}
		}
	}
	n := runtime.GOMAXPROCS(0)
	if T*I*O < 1<<16 || n == 1 {
		work(0, O)
		return
	}
	var wg sync.WaitGroup
	chunk := (O + n - 1) / n
	for lo := 0; lo < O; lo += chunk {
		wg.Add(1)
		go func(lo, hi int) { defer wg.Done(); work(lo, hi) }(lo, min(lo+chunk, O))
	}
	wg.Wait()
}
