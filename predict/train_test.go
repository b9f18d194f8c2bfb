package predict

import (
	"encoding/json"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/elis-sim/elis-sim/gpu"
	"github.com/elis-sim/elis-sim/internal/torchsave"
	"github.com/elis-sim/elis-sim/traces"
)

// The head learns a truth it can represent: validation MAE falls to a
// small part of where it started, and the best epoch's head is returned.
func TestTrainLearnsALinearTruth(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	ex := func(n int) []Example {
		out := make([]Example, n)
		for i := range out {
			x := make([]float32, 8)
			for j := range x {
				x[j] = float32(rng.NormFloat64())
			}
			out[i] = Example{X: x, Y: 100 + 30*float64(x[0]) - 20*float64(x[1])}
		}
		return out
	}
	train, val := ex(400), ex(100)
	// A predictor of hidden size 8 for its head (32, 32, 1).
	net := gpu.RandomPredictor(gpu.BertConfig{Hidden: 8, Intermediate: 8, Layers: 1, Heads: 1, Vocab: 4, MaxPositions: 4, TypeVocab: 1}, []int{32, 32, 1}, 9)
	head := net.Head()
	score := func(h []gpu.HeadLayer) float64 {
		p, err := net.WithHead(h)
		if err != nil {
			t.Fatal(err)
		}
		return MAE(HeadPredictions(p, val), val)
	}
	start := score(head)
	var epochs int
	tuned, best, hist, err := Train(head, train, val, TrainConfig{Epochs: 300, Patience: 20, Batch: 16, LR: 1e-2, Seed: 3},
		func(p Progress) {
			if p.Epoch != nil {
				epochs++
			}
		})
	if err != nil {
		t.Fatal(err)
	}
	end := score(tuned)
	if !(end < start/10) || epochs != len(hist) || best < 1 || math.Abs(hist[best-1].ValMAE-end) > 1e-3*end+1e-3 {
		t.Fatalf("validation MAE %.2f -> %.2f over %d epochs (best %d: %+v)", start, end, len(hist), best, hist[max(best-1, 0)])
	}
	// The same seed trains the same head.
	again, _, _, _ := Train(head, train, val, TrainConfig{Epochs: 300, Patience: 20, Batch: 16, LR: 1e-2, Seed: 3}, nil)
	if again[0].W[5] != tuned[0].W[5] || again[2].B[0] != tuned[2].B[0] {
		t.Error("the same seed trained another head")
	}
}

// hashedWords is a stand-in tokenizer: [CLS]=1, a word's id from its hash,
// [SEP]=2.
type hashedWords int

func (v hashedWords) Encode(text string, special bool) ([]int, error) {
	var ids []int
	if special {
		ids = append(ids, 1)
	}
	for _, w := range strings.Fields(text) {
		h := fnv.New32a()
		h.Write([]byte(w))
		ids = append(ids, 3+int(h.Sum32()%uint32(int(v)-3)))
	}
	if special {
		ids = append(ids, 2)
	}
	return ids, nil
}

// A fine-tune written as a checkpoint reads back as the same network: the
// same predictions, bit for bit, and the initial checkpoint's keys,
// shapes and encoder weights.
func TestCheckpointRoundTrip(t *testing.T) {
	cfg := gpu.BertConfig{Hidden: 8, Intermediate: 16, Layers: 1, Heads: 2, Vocab: 60, MaxPositions: 64, TypeVocab: 2, LNEps: 1e-12}
	dir := t.TempDir()
	init := filepath.Join(dir, "init", "latest_model.pt")
	os.MkdirAll(filepath.Dir(init), 0o755)
	p := gpu.RandomPredictor(cfg, []int{16, 16, 1}, 7)
	var sd torchsave.OrderedDict
	for _, nt := range p.StateDict() {
		sd = append(sd, torchsave.Item{Key: nt.Name, Value: &torchsave.Tensor{Shape: nt.Shape, Data: nt.Data}})
	}
	if err := torchsave.WriteFile(init, torchsave.Dict{{Key: "epoch", Value: 3}, {Key: "model_state_dict", Value: sd}}); err != nil {
		t.Fatal(err)
	}
	cj, _ := json.Marshal(cfg)
	os.WriteFile(filepath.Join(dir, "init", "config.json"), cj, 0o644)
	net, err := gpu.LoadELISCheckpoint(init, "")
	if err != nil {
		t.Fatal(err)
	}
	var rows []traces.ELISRow
	kinds := []struct {
		prompt string
		total  int
	}{{"write a haiku", 30}, {"summarise this", 150}, {"write an essay", 400}}
	for i := 0; i < 60; i++ {
		k := kinds[i%3]
		for g := 0; g < k.total; g += 50 {
			rows = append(rows, traces.ELISRow{Line: len(rows) + 1, Prompt: k.prompt + " number " + string(rune('a'+i%26)),
				Output: strings.Repeat("w ", g), Total: k.total, Remaining: k.total - g})
		}
	}
	train, val, _ := Split(rows, false, 42)
	embed := func(rs []traces.ELISRow) []Example {
		xs, err := Examples(net, hashedWords(cfg.Vocab), rs, 8, nil)
		if err != nil {
			t.Fatal(err)
		}
		return xs
	}
	head, epoch, _, err := Train(net.Head(), embed(train), embed(val), TrainConfig{Epochs: 3, Patience: 3, Batch: 16, LR: 1e-3, Seed: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	tuned, err := net.WithHead(head)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "tuned.pt")
	if err := WriteCheckpoint(out, init, head, Checkpoint{Epoch: epoch, Metrics: torchsave.Dict{{Key: "mae", Value: 12.5}}}); err != nil {
		t.Fatal(err)
	}
	back, err := gpu.LoadELISCheckpoint(out, filepath.Join(dir, "init", "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	ids := make([][]int32, len(val))
	for i := range val {
		ids[i], _ = Input(hashedWords(cfg.Vocab), &val[i], cfg.MaxPositions)
	}
	want, _ := tuned.Predict(ids, nil)
	got, _ := back.Predict(ids, nil)
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("row %d: read back %v, tuned %v", i, got[i], want[i])
		}
	}
	a, _ := gpu.ReadStateDict(init)
	b, _ := gpu.ReadStateDict(out)
	if len(a) != len(b) {
		t.Fatalf("%d tensors, want %d", len(b), len(a))
	}
	changed := 0
	for i := range a {
		if a[i].Name != b[i].Name || len(a[i].Data) != len(b[i].Data) {
			t.Fatalf("entry %d: %s %v, want %s %v", i, b[i].Name, b[i].Shape, a[i].Name, a[i].Shape)
		}
		same := true
		for k := range a[i].Data {
			same = same && a[i].Data[k] == b[i].Data[k]
		}
		if !same {
			changed++
			if !strings.HasPrefix(a[i].Name, "predictor.") {
				t.Errorf("%s changed", a[i].Name)
			}
		}
	}
	if changed == 0 {
		t.Error("the head did not change")
	}
}
