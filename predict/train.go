package predict

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"

	"gonum.org/v1/gonum/mat"

	"github.com/elis-sim/elis-sim/gpu"
	"github.com/elis-sim/elis-sim/internal/torchsave"
	"github.com/elis-sim/elis-sim/traces"
)

// Embedder gives the pooled encodings the head reads (gpu.Predictor, on
// the CPU).
type Embedder interface {
	Embed(ids [][]int32, mask [][]int32) ([][]float32, error)
	Config() gpu.BertConfig
}

// Embed returns each row's pooled encoding, batch rows a call. With a
// cache (width the encoder's hidden size, keyed by the encoder's weights),
// rows whose input it holds are not run, and those run are added: the
// encoder is frozen, so a row is encoded once for every fine-tune after.
func Embed(net Embedder, enc Encoder, rows []traces.ELISRow, batch int, cache *Cache) ([][]float32, error) {
	return cached(enc, rows, net.Config().MaxPositions, batch, cache, func(in [][]int32) ([][]float32, error) {
		return net.Embed(in, nil)
	})
}

// TrainConfig is the fine-tuning recipe; DefaultTrain is the ELIS
// trainer's (MSE on remaining tokens, Adam at 1e-4, batches of 16) with
// early stopping on the validation MAE.
type TrainConfig struct {
	Epochs   int     // at most this many passes over the training rows
	Patience int     // stop after this many epochs without a better validation MAE
	Batch    int     // rows a step
	LR       float64 // Adam's step size
	Seed     uint64  // the order rows are visited in
}

// DefaultTrain is the ELIS trainer's recipe.
var DefaultTrain = TrainConfig{Epochs: 20, Patience: 3, Batch: 16, LR: 1e-4, Seed: 42}

// Epoch is what one epoch did: its mean training loss (squared tokens) and
// the validation MAE after it (tokens).
type Epoch struct {
	N         int
	TrainLoss float64
	ValMAE    float64
}

// Progress is where training is: after step Step of at most Steps (early
// stopping may end it sooner), that step's loss; Epoch is set when the
// step ended an epoch.
type Progress struct {
	Step, Steps int
	Loss        float64
	Epoch       *Epoch
}

// Example is a row as the head sees it: a pooled encoding and the
// remaining tokens to predict.
type Example struct {
	X []float32
	Y float64
}

// mlp is the head in float64, with Adam's moments.
type mlp struct {
	w, b   []*mat.Dense // w[l] out x in, b[l] 1 x out
	mw, vw []*mat.Dense
	mb, vb []*mat.Dense
	step   int
}

func newMLP(head []gpu.HeadLayer, in int) (*mlp, error) {
	m := &mlp{}
	for l, h := range head {
		out := len(h.B)
		if out == 0 || len(h.W) != out*in {
			return nil, fmt.Errorf("head layer %d: %d weights for %d outputs from %d inputs", l, len(h.W), out, in)
		}
		w, b := mat.NewDense(out, in, nil), mat.NewDense(1, out, nil)
		for i := 0; i < out; i++ {
			for j := 0; j < in; j++ {
				w.Set(i, j, float64(h.W[i*in+j]))
			}
			b.Set(0, i, float64(h.B[i]))
		}
		m.w, m.b = append(m.w, w), append(m.b, b)
		m.mw, m.vw = append(m.mw, mat.NewDense(out, in, nil)), append(m.vw, mat.NewDense(out, in, nil))
		m.mb, m.vb = append(m.mb, mat.NewDense(1, out, nil)), append(m.vb, mat.NewDense(1, out, nil))
		in = out
	}
	if len(head) == 0 || len(head[len(head)-1].B) != 1 {
		return nil, fmt.Errorf("the head must end in one output")
	}
	return m, nil
}

// forward returns every layer's pre-activation (z) and activation (a; a[0]
// is the input).
func (m *mlp) forward(x *mat.Dense) (zs, as []*mat.Dense) {
	as = []*mat.Dense{x}
	a := x
	for l := range m.w {
		r, _ := a.Dims()
		out, _ := m.w[l].Dims()
		z := mat.NewDense(r, out, nil)
		z.Mul(a, m.w[l].T())
		bias := m.b[l].RawRowView(0)
		for i := 0; i < r; i++ {
			row := z.RawRowView(i)
			for j := range row {
				row[j] += bias[j]
			}
		}
		zs = append(zs, z)
		if l < len(m.w)-1 {
			act := mat.NewDense(r, out, nil)
			act.Apply(func(_, _ int, v float64) float64 { return math.Max(v, 0) }, z)
			a = act
		} else {
			a = z
		}
		as = append(as, a)
	}
	return zs, as
}

// trainStep does one Adam step on the batch's mean squared error and
// returns it.
func (m *mlp) trainStep(x *mat.Dense, y []float64, lr float64) float64 {
	const b1, b2, eps = 0.9, 0.999, 1e-8
	zs, as := m.forward(x)
	n := len(y)
	out := as[len(as)-1]
	dz := mat.NewDense(n, 1, nil)
	loss := 0.0
	for i := 0; i < n; i++ {
		d := out.At(i, 0) - y[i]
		loss += d * d
		dz.Set(i, 0, 2*d/float64(n))
	}
	m.step++
	bc1, bc2 := 1-math.Pow(b1, float64(m.step)), 1-math.Pow(b2, float64(m.step))
	adam := func(p, g, mm, vv *mat.Dense) {
		pr, gr, mr, vr := p.RawMatrix().Data, g.RawMatrix().Data, mm.RawMatrix().Data, vv.RawMatrix().Data
		for i, gi := range gr {
			mr[i] = b1*mr[i] + (1-b1)*gi
			vr[i] = b2*vr[i] + (1-b2)*gi*gi
			pr[i] -= lr * (mr[i] / bc1) / (math.Sqrt(vr[i]/bc2) + eps)
		}
	}
	for l := len(m.w) - 1; l >= 0; l-- {
		outN, inN := m.w[l].Dims()
		gw := mat.NewDense(outN, inN, nil)
		gw.Mul(dz.T(), as[l])
		gb := mat.NewDense(1, outN, nil)
		sum := gb.RawRowView(0)
		for i := 0; i < n; i++ {
			for j, v := range dz.RawRowView(i) {
				sum[j] += v
			}
		}
		if l > 0 {
			da := mat.NewDense(n, inN, nil)
			da.Mul(dz, m.w[l])
			prev := zs[l-1]
			da.Apply(func(i, j int, v float64) float64 {
				if prev.At(i, j) > 0 {
					return v
				}
				return 0
			}, da)
			dz = da
		}
		adam(m.w[l], gw, m.mw[l], m.vw[l])
		adam(m.b[l], gb, m.mb[l], m.vb[l])
	}
	return loss / float64(n)
}

func (m *mlp) predict(xs []Example) []float64 {
	if len(xs) == 0 {
		return nil
	}
	_, as := m.forward(batchOf(xs))
	out := as[len(as)-1]
	p := make([]float64, len(xs))
	for i := range p {
		p[i] = out.At(i, 0)
	}
	return p
}

// head is the float32 head PyTorch would hold.
func (m *mlp) head() []gpu.HeadLayer {
	out := make([]gpu.HeadLayer, len(m.w))
	for l := range m.w {
		w, b := m.w[l].RawMatrix().Data, m.b[l].RawRowView(0)
		h := gpu.HeadLayer{W: make([]float32, len(w)), B: make([]float32, len(b))}
		for i, v := range w {
			h.W[i] = float32(v)
		}
		for i, v := range b {
			h.B[i] = float32(v)
		}
		out[l] = h
	}
	return out
}

func batchOf(xs []Example) *mat.Dense {
	x := mat.NewDense(len(xs), len(xs[0].X), nil)
	for i, e := range xs {
		row := x.RawRowView(i)
		for j, v := range e.X {
			row[j] = float64(v)
		}
	}
	return x
}

// MAE is the mean absolute error of preds against the examples' targets.
func MAE(preds []float64, xs []Example) float64 {
	s := 0.0
	for i, e := range xs {
		s += math.Abs(preds[i] - e.Y)
	}
	return s / float64(max(len(xs), 1))
}

// Train fine-tunes head on train by cfg, judging each epoch by the MAE on
// val, and returns the head of the best epoch (the starting head when no
// epoch beats it), that epoch's number (0: the start) and every epoch's
// outcome; progress, when set, hears of each step and each epoch.
func Train(head []gpu.HeadLayer, train, val []Example, cfg TrainConfig, progress func(Progress)) ([]gpu.HeadLayer, int, []Epoch, error) {
	if len(train) == 0 || len(val) == 0 {
		return nil, 0, nil, fmt.Errorf("training needs rows on both sides: %d to train on, %d to validate", len(train), len(val))
	}
	if cfg.Batch < 1 || cfg.Epochs < 1 || cfg.Patience < 1 || !(cfg.LR > 0) {
		return nil, 0, nil, fmt.Errorf("training recipe %+v: want batch, epochs and patience >= 1 and a step size > 0", cfg)
	}
	m, err := newMLP(head, len(train[0].X))
	if err != nil {
		return nil, 0, nil, err
	}
	best, bestEpoch := m.head(), 0
	bestMAE := MAE(m.predict(val), val)
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x7472616e))
	var hist []Epoch
	steps, maxSteps := 0, cfg.Epochs*((len(train)+cfg.Batch-1)/cfg.Batch)
	for ep := 1; ep <= cfg.Epochs; ep++ {
		order := rng.Perm(len(train))
		sum, n := 0.0, 0
		for lo := 0; lo < len(order); lo += cfg.Batch {
			hi := min(lo+cfg.Batch, len(order))
			xs := make([]Example, 0, hi-lo)
			ys := make([]float64, 0, hi-lo)
			for _, i := range order[lo:hi] {
				xs = append(xs, train[i])
				ys = append(ys, train[i].Y)
			}
			loss := m.trainStep(batchOf(xs), ys, cfg.LR)
			sum += loss * float64(len(ys))
			n += len(ys)
			steps++
			if progress != nil {
				progress(Progress{Step: steps, Steps: maxSteps, Loss: loss})
			}
		}
		e := Epoch{N: ep, TrainLoss: sum / float64(n), ValMAE: MAE(m.predict(val), val)}
		hist = append(hist, e)
		if progress != nil {
			progress(Progress{Step: steps, Steps: maxSteps, Loss: e.TrainLoss, Epoch: &e})
		}
		if e.ValMAE < bestMAE {
			best, bestEpoch, bestMAE = m.head(), ep, e.ValMAE
		} else if ep-bestEpoch >= cfg.Patience {
			break
		}
	}
	return best, bestEpoch, hist, nil
}

// Examples are rows as the head sees them: each one's pooled encoding
// (Embed, with cache) and its remaining tokens.
func Examples(net Embedder, enc Encoder, rows []traces.ELISRow, batch int, cache *Cache) ([]Example, error) {
	emb, err := Embed(net, enc, rows, batch, cache)
	if err != nil {
		return nil, err
	}
	out := make([]Example, len(rows))
	for i := range rows {
		out[i] = Example{X: emb[i], Y: float64(rows[i].Remaining)}
	}
	return out, nil
}

// HeadPredictions are p's head's outputs on the examples' encodings.
func HeadPredictions(p *gpu.Predictor, xs []Example) []float64 {
	out := make([]float64, len(xs))
	for i, x := range xs {
		out[i] = float64(p.HeadOf(x.X))
	}
	return out
}

// ErrTooFewRows is FineTune's error when the rows cannot be split three
// ways.
var ErrTooFewRows = errors.New("too few rows")

// FineTuned is what FineTune did: the split, the tuned head, its epochs,
// and how it scores.
type FineTuned struct {
	Train, Val, Test    []traces.ELISRow
	Head                []gpu.HeadLayer
	Epoch               int // the best; 0: the starting head stayed
	History             []Epoch
	ValBefore, ValAfter float64 // validation MAE of the starting and the tuned head
	On                  string  // the split Report scores: "test", or "validation" when there is no test row
	Report              Report
}

// FineTune trains net's head on rows by cfg, the ELIS trainer's way: the
// 6:2:2 split (by row, or byPrompt), each row encoded once (cache, when
// set, is saved once every row is encoded, before training), training on
// the first part, early stopping on the second, scoring on the third.
func FineTune(net *gpu.Predictor, enc Encoder, rows []traces.ELISRow, byPrompt bool, embedBatch int, cache *Cache, cfg TrainConfig, progress func(Progress)) (*FineTuned, error) {
	ft := &FineTuned{}
	ft.Train, ft.Val, ft.Test = Split(rows, byPrompt, cfg.Seed)
	if len(ft.Train) == 0 || len(ft.Val) == 0 {
		return nil, fmt.Errorf("%d rows leave no training or validation split (6:2:2): %w", len(rows), ErrTooFewRows)
	}
	var parts [3][]Example
	for i, rs := range [][]traces.ELISRow{ft.Train, ft.Val, ft.Test} {
		var err error
		if parts[i], err = Examples(net, enc, rs, embedBatch, cache); err != nil {
			return nil, err
		}
	}
	if cache != nil {
		if err := cache.Save(); err != nil {
			return nil, fmt.Errorf("cache: %w", err)
		}
	}
	train, val, test := parts[0], parts[1], parts[2]
	ft.ValBefore = MAE(HeadPredictions(net, val), val)
	var err error
	if ft.Head, ft.Epoch, ft.History, err = Train(net.Head(), train, val, cfg, progress); err != nil {
		return nil, err
	}
	tuned, err := net.WithHead(ft.Head)
	if err != nil {
		return nil, err
	}
	ft.ValAfter = MAE(HeadPredictions(tuned, val), val)
	scoredRows, scored, on := ft.Test, test, "test"
	if len(test) == 0 {
		scoredRows, scored, on = ft.Val, val, "validation"
	}
	ft.On = on
	ft.Report = Evaluate(scoredRows, HeadPredictions(tuned, scored), MeanRemaining(ft.Train), 1)
	return ft, nil
}

// Checkpoint is what a fine-tune's checkpoint records beside the weights:
// the best epoch, the scores (mae, rmse, r2 on the scored split; val_mae)
// and each epoch's training loss and validation MAE.
func (ft *FineTuned) Checkpoint() Checkpoint {
	var losses, maes []float64
	for _, e := range ft.History {
		losses, maes = append(losses, e.TrainLoss), append(maes, e.ValMAE)
	}
	n := &ft.Report.Network
	return Checkpoint{Epoch: ft.Epoch,
		Metrics: torchsave.Dict{{Key: "mae", Value: n.MAE}, {Key: "rmse", Value: n.RMSE}, {Key: "r2", Value: n.R2}, {Key: "val_mae", Value: ft.ValAfter}},
		History: torchsave.Dict{{Key: "train_loss", Value: losses}, {Key: "val_mae", Value: maes}}}
}
