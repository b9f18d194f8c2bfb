package gpu

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"

	"github.com/x448/float16"
)

// Tensor is a dense float32 array in row-major order.
type Tensor struct {
	Shape []int
	Data  []float32
}

// Numel is the number of elements.
func (t *Tensor) Numel() int {
	n := 1
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// ReadSafetensors reads every tensor of a .safetensors file, converting
// F32, F16 and BF16 to float32.
func ReadSafetensors(path string) (map[string]*Tensor, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseSafetensors(data, path)
}

// ParseSafetensors decodes safetensors bytes; name is used in errors.
func ParseSafetensors(data []byte, name string) (map[string]*Tensor, error) {
	if len(data) < 8 {
		return nil, fmt.Errorf("safetensors %s: too short for a header", name)
	}
	n := binary.LittleEndian.Uint64(data)
	if n > uint64(len(data)-8) {
		return nil, fmt.Errorf("safetensors %s: header of %d bytes overruns the %d-byte file", name, n, len(data))
	}
	var head map[string]json.RawMessage
	if err := json.Unmarshal(data[8:8+n], &head); err != nil {
		return nil, fmt.Errorf("safetensors %s: header: %w", name, err)
	}
	body := data[8+n:]
	out := make(map[string]*Tensor, len(head))
	keys := make([]string, 0, len(head))
	for k := range head {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if k == "__metadata__" {
			continue
		}
		var info struct {
			Dtype   string   `json:"dtype"`
			Shape   []int    `json:"shape"`
			Offsets [2]int64 `json:"data_offsets"`
		}
		if err := json.Unmarshal(head[k], &info); err != nil {
			return nil, fmt.Errorf("safetensors %s: tensor %q: %w", name, k, err)
		}
		t := &Tensor{Shape: info.Shape}
		size := map[string]int{"F32": 4, "F16": 2, "BF16": 2}[info.Dtype]
		if size == 0 {
			return nil, fmt.Errorf("safetensors %s: tensor %q: dtype %s (valid: F32, F16, BF16)", name, k, info.Dtype)
		}
		// Count elements without overflow: no tensor holds more values than
		// the file has bytes.
		numel := 1
		for _, d := range info.Shape {
			if d < 0 || (d > 0 && numel > len(body)/d) {
				return nil, fmt.Errorf("safetensors %s: tensor %q: shape %v does not fit the file", name, k, info.Shape)
			}
			numel *= d
		}
		lo, hi := info.Offsets[0], info.Offsets[1]
		if lo < 0 || lo > hi || hi > int64(len(body)) || hi-lo != int64(numel)*int64(size) {
			return nil, fmt.Errorf("safetensors %s: tensor %q: offsets %v do not hold %v %s", name, k, info.Offsets, info.Shape, info.Dtype)
		}
		raw := body[lo:hi]
		t.Data = make([]float32, numel)
		for i := range t.Data {
			switch info.Dtype {
			case "F32":
				t.Data[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
			case "F16":
				t.Data[i] = float16.Frombits(binary.LittleEndian.Uint16(raw[2*i:])).Float32()
			case "BF16":
				t.Data[i] = math.Float32frombits(uint32(binary.LittleEndian.Uint16(raw[2*i:])) << 16)
			}
		}
		out[k] = t
	}
	return out, nil
}

// ReadModelTensors reads a Hugging Face model folder's weights: one
// model.safetensors, or the shards listed by model.safetensors.index.json.
func ReadModelTensors(dir string) (map[string]*Tensor, error) {
	index := filepath.Join(dir, "model.safetensors.index.json")
	if data, err := os.ReadFile(index); err == nil {
		var idx struct {
			WeightMap map[string]string `json:"weight_map"`
		}
		if err := json.Unmarshal(data, &idx); err != nil {
			return nil, fmt.Errorf("%s: %w", index, err)
		}
		files := map[string]bool{}
		for _, f := range idx.WeightMap {
			files[f] = true
		}
		out := map[string]*Tensor{}
		for f := range files {
			ts, err := ReadSafetensors(filepath.Join(dir, f))
			if err != nil {
				return nil, err
			}
			for k, v := range ts {
				out[k] = v
			}
		}
		return out, nil
	}
	return ReadSafetensors(filepath.Join(dir, "model.safetensors"))
}
