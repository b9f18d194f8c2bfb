package torchsave

import (
	"archive/zip"
	"os"
	"path/filepath"
	"testing"

	"github.com/nlpodyssey/gopickle/pytorch"
	"github.com/nlpodyssey/gopickle/types"
)

// What is written reads back with a torch.load-compatible reader
// (gopickle's), every value as it was, and each tensor's data starts on
// a 64-byte boundary as torch.save places it.
func TestWriteReadsBack(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ckpt.pt")
	w := &Tensor{Shape: []int{2, 3}, Data: []float32{1, 2, 3, 4, 5, -6.5}}
	b := &Tensor{Shape: []int{2}, Data: []float32{0.25, 1e-30}}
	top := Dict{
		{"epoch", 7},
		{"model_state_dict", OrderedDict{{"layer.weight", w}, {"layer.bias", b}}},
		{"metrics", Dict{{"mae", 19.9}, {"r2", 0.852}}},
		{"history", Dict{{"val_mae", []float64{30, 25.5}}, {"big", int64(1) << 40}}},
		{"flag", true},
	}
	if err := WriteFile(path, top); err != nil {
		t.Fatal(err)
	}
	obj, err := pytorch.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	d, ok := obj.(*types.Dict)
	if !ok {
		t.Fatalf("top is %T", obj)
	}
	get := func(d *types.Dict, k string) any {
		v, _ := d.Get(k)
		return v
	}
	if e := get(d, "epoch"); e != 7 {
		t.Errorf("epoch %v", e)
	}
	sd := get(d, "model_state_dict").(*types.OrderedDict)
	var names []string
	for el := sd.List.Front(); el != nil; el = el.Next() {
		names = append(names, el.Value.(*types.OrderedDictEntry).Key.(string))
	}
	if len(names) != 2 || names[0] != "layer.weight" || names[1] != "layer.bias" {
		t.Errorf("state dict keys %v", names)
	}
	for name, want := range map[string]*Tensor{"layer.weight": w, "layer.bias": b} {
		v, _ := sd.Get(name)
		got := v.(*pytorch.Tensor)
		data := got.Source.(*pytorch.FloatStorage).Data
		if len(got.Size) != len(want.Shape) || got.StorageOffset != 0 {
			t.Errorf("%s: size %v offset %d", name, got.Size, got.StorageOffset)
		}
		for i, x := range want.Data {
			if data[i] != x {
				t.Errorf("%s[%d] = %v, want %v", name, i, data[i], x)
			}
		}
	}
	if got := get(d, "metrics").(*types.Dict); get(got, "mae") != 19.9 || get(got, "r2") != 0.852 {
		t.Errorf("metrics %v", got)
	}
	h := get(d, "history").(*types.Dict)
	if l := get(h, "val_mae").(*types.List); l.Len() != 2 || l.Get(1) != 25.5 {
		t.Errorf("history %v", l)
	}
	if v := get(h, "big"); v != 1<<40 {
		t.Errorf("big %v (%T)", v, v)
	}
	if get(d, "flag") != true {
		t.Error("flag")
	}

	z, err := zip.OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	defer z.Close()
	for _, f := range z.File {
		off, err := f.DataOffset()
		if err != nil || off%64 != 0 || f.Method != zip.Store {
			t.Errorf("%s: data at %d (%v), method %d: want stored, 64-byte aligned", f.Name, off, err, f.Method)
		}
	}
}

func TestWriteRefusesWhatItCannotWrite(t *testing.T) {
	dir := t.TempDir()
	for _, top := range []any{Dict{{"x", struct{}{}}}, Dict{{"t", &Tensor{Shape: []int{3}, Data: []float32{1}}}}} {
		p := filepath.Join(dir, "x.pt")
		if err := WriteFile(p, top); err == nil {
			t.Errorf("%v written", top)
		}
		if _, err := os.Stat(p); err == nil {
			t.Error("a failed write left a file")
		}
	}
}
