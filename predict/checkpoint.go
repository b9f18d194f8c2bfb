package predict

import (
	"fmt"
	"strings"

	"github.com/elis-sim/elis-sim/gpu"
	"github.com/elis-sim/elis-sim/internal/torchsave"
)

// Checkpoint is what a fine-tune writes besides the weights, in the ELIS
// trainer's keys: the epoch, the metrics and their history.
type Checkpoint struct {
	Epoch   int
	Metrics torchsave.Dict // e.g. mae, rmse, r2, val_mae
	History torchsave.Dict // e.g. train_loss, val_mae: lists by epoch
}

// WriteCheckpoint writes a checkpoint in the ELIS trainer's layout to
// path: the state dict of init (same keys, order, dtypes and shapes: the
// encoder and its pooler as they were) with the head's predictor.N
// entries replaced by head, plus epoch, metrics and history. The vLLM
// patch and LoadELISCheckpoint read it as they read the trainer's.
func WriteCheckpoint(path, init string, head []gpu.HeadLayer, c Checkpoint) error {
	sd, err := gpu.ReadStateDict(init)
	if err != nil {
		return err
	}
	// The head's Linear layers in order: predictor.N.weight/bias, N rising.
	var heads []int
	for i, t := range sd {
		if strings.HasPrefix(t.Name, "predictor.") && strings.HasSuffix(t.Name, ".weight") {
			heads = append(heads, i)
		}
	}
	if len(heads) != len(head) {
		return fmt.Errorf("%s has %d head layers, the tuned head %d", init, len(heads), len(head))
	}
	byName := map[string][]float32{}
	for k, i := range heads {
		name := strings.TrimSuffix(sd[i].Name, ".weight")
		byName[name+".weight"] = head[k].W
		byName[name+".bias"] = head[k].B
	}
	out := make(torchsave.OrderedDict, 0, len(sd))
	for _, t := range sd {
		data := t.Data
		if v, ok := byName[t.Name]; ok {
			if len(v) != len(t.Data) {
				return fmt.Errorf("%s: %d values, the tuned head has %d", t.Name, len(t.Data), len(v))
			}
			data = v
			delete(byName, t.Name)
		}
		out = append(out, torchsave.Item{Key: t.Name, Value: &torchsave.Tensor{Shape: t.Shape, Data: data}})
	}
	if len(byName) > 0 {
		return fmt.Errorf("%s: the head's layers are not all predictor.N.weight and .bias", init)
	}
	top := torchsave.Dict{{Key: "epoch", Value: c.Epoch}, {Key: "model_state_dict", Value: out}}
	if c.Metrics != nil {
		top = append(top, torchsave.Item{Key: "metrics", Value: c.Metrics})
	}
	if c.History != nil {
		top = append(top, torchsave.Item{Key: "history", Value: c.History})
	}
	return torchsave.WriteFile(path, top)
}
