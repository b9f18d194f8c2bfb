package gpu

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/elis-sim/elis-sim/internal/tempfile"
	"github.com/elis-sim/elis-sim/internal/torchsave"
)

// FuzzReadCheckpoint feeds arbitrary bytes to the checkpoint readers as a
// file: a damaged or hostile .pt must be an error naming it, never a
// panic or an allocation its bytes do not pay for.
func FuzzReadCheckpoint(f *testing.F) {
	seed := filepath.Join(f.TempDir(), "seed.pt")
	sd := torchsave.OrderedDict{
		{Key: "predictor.0.weight", Value: &torchsave.Tensor{Shape: []int{2, 3}, Data: []float32{1, 2, 3, 4, 5, 6}}},
		{Key: "predictor.0.bias", Value: &torchsave.Tensor{Shape: []int{2}, Data: []float32{7, 8}}},
	}
	if err := torchsave.WriteFile(seed, torchsave.Dict{{Key: "model_state_dict", Value: sd}, {Key: "epoch", Value: 3}}); err != nil {
		f.Fatal(err)
	}
	data, err := os.ReadFile(seed)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Fuzz(func(t *testing.T, data []byte) {
		path := tempfile.Write(t, "f.pt", data)
		if ts, err := ReadStateDict(path); err == nil {
			for _, nt := range ts {
				n := 1
				for _, d := range nt.Shape {
					n *= d
				}
				if n != len(nt.Data) {
					t.Fatalf("%s: %d values for shape %v", nt.Name, len(nt.Data), nt.Shape)
				}
			}
		}
		// The predictor's reader, past its config.json.
		if obj, err := loadTorch(path); err == nil {
			_, _ = stateDict(obj)
		}
	})
}
