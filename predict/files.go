package predict

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/elis-sim/elis-sim/gpu"
	"github.com/elis-sim/elis-sim/internal/atomicfile"
	"github.com/elis-sim/elis-sim/traces"
)

// CopyConfigBeside puts the encoder's config.json beside a written
// checkpoint, where loaders look for it, unless one is there.
func CopyConfigBeside(init, out string) error {
	src := filepath.Join(filepath.Dir(init), "config.json")
	dst := filepath.Join(filepath.Dir(out), "config.json")
	if _, err := os.Stat(dst); err == nil {
		return nil
	}
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return atomicfile.Write(dst, func(w io.Writer) error { _, err := w.Write(data); return err })
}

// Score is net's predictions for rows, encoded with enc, batch rows a
// call. With a cache folder (cacheDir; "" for none) work done before is
// reused: on the CPU the pooled encodings, keyed by the encoder's weights,
// so any head on the same encoder (a fine-tune's) is scored without
// running the encoder; on a GPU the outputs, keyed by the checkpoint file
// and the device, whose precision changes them. The cache, saved, is
// returned for its counts.
func Score(net gpu.PredictorNet, enc Encoder, rows []traces.ELISRow, batch int, cacheDir, checkpoint, device string) ([]float64, *Cache, error) {
	var cache *Cache
	var err error
	host, onHost := net.(*gpu.Predictor)
	if cacheDir != "" {
		if onHost {
			cache, err = OpenCache(filepath.Join(cacheDir, "embeddings"), host.EncoderID(), host.Cfg.Hidden)
		} else {
			var id []byte
			if id, err = FileID(checkpoint); err != nil {
				return nil, nil, fmt.Errorf("checkpoint %s: %w", checkpoint, err)
			}
			cache, err = OpenCache(filepath.Join(cacheDir, "predictions"), append(id, []byte("|"+device)...), 1)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("cache %s: %w", cacheDir, err)
		}
	}
	var preds []float64
	if onHost {
		xs, err := Examples(host, enc, rows, batch, cache)
		if err != nil {
			return nil, nil, err
		}
		preds = HeadPredictions(host, xs)
	} else if preds, err = Predict(net, enc, rows, batch, cache); err != nil {
		return nil, nil, err
	}
	if cache != nil {
		if err := cache.Save(); err != nil {
			return nil, nil, fmt.Errorf("cache %s: %w", cacheDir, err)
		}
	}
	return preds, cache, nil
}
