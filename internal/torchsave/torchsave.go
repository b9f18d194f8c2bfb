// Package torchsave writes PyTorch checkpoint files, the zip-and-pickle
// format of torch.save, for the small set of values a model checkpoint
// holds: dicts and ordered dicts with string keys, strings, integers,
// floats, lists of numbers, booleans and contiguous float32 tensors.
// torch.load reads them (weights_only included: only allowed globals are
// named). The pickle library the project reads checkpoints with does not
// write, and the subset is small enough to write here.
package torchsave

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"strconv"

	"github.com/elis-sim/elis-sim/internal/atomicfile"
)

// Item is a key and its value in a Dict or an OrderedDict.
type Item struct {
	Key   string
	Value any
}

// Dict is a Python dict, written in this order.
type Dict []Item

// OrderedDict is a collections.OrderedDict (a state dict's type).
type OrderedDict []Item

// Tensor is a contiguous float32 tensor.
type Tensor struct {
	Shape []int
	Data  []float32
}

// WriteFile writes top to path as torch.save would, atomically.
func WriteFile(path string, top any) error {
	return atomicfile.Write(path, func(w io.Writer) error { return Write(w, "archive", top) })
}

// Write writes top as a torch.save zip archive whose records sit under
// prefix (torch.load accepts any).
func Write(w io.Writer, prefix string, top any) error {
	p := &pickler{}
	p.op(0x80, 2) // PROTO 2
	if err := p.value(top); err != nil {
		return err
	}
	p.op('.')
	aw := &archive{zw: zip.NewWriter(w), prefix: prefix}
	aw.add("data.pkl", p.buf.Bytes())
	aw.add(".format_version", []byte("1"))
	aw.add(".storage_alignment", []byte("64"))
	aw.add("byteorder", []byte("little"))
	for i, t := range p.storages {
		raw := make([]byte, 4*len(t.Data))
		for k, v := range t.Data {
			binary.LittleEndian.PutUint32(raw[4*k:], math.Float32bits(v))
		}
		aw.add("data/"+strconv.Itoa(i), raw)
	}
	aw.add("version", []byte("3\n"))
	if aw.err != nil {
		return aw.err
	}
	return aw.zw.Close()
}

// archive writes stored (uncompressed) zip records, each one's data
// aligned to 64 bytes as torch.save aligns them (so that torch.load may
// map them), by a padding extra field in the local header.
type archive struct {
	zw     *zip.Writer
	prefix string
	off    int64
	err    error
}

func (a *archive) add(name string, data []byte) {
	if a.err != nil {
		return
	}
	name = a.prefix + "/" + name
	const local = 30 // a local file header's fixed size
	pad := (64 - (a.off+local+int64(len(name))+4)%64) % 64
	extra := make([]byte, 4+pad)
	binary.LittleEndian.PutUint16(extra[0:], 0x4246) // "FB", the id torch uses
	binary.LittleEndian.PutUint16(extra[2:], uint16(pad))
	fh := &zip.FileHeader{Name: name, Method: zip.Store, CRC32: crc32.ChecksumIEEE(data),
		CompressedSize64: uint64(len(data)), UncompressedSize64: uint64(len(data)), Extra: extra}
	fw, err := a.zw.CreateRaw(fh)
	if err == nil {
		_, err = fw.Write(data)
	}
	a.err = err
	a.off += local + int64(len(name)) + int64(len(extra)) + int64(len(data))
}

// pickler writes pickle protocol 2 opcodes.
type pickler struct {
	buf      bytes.Buffer
	storages []*Tensor
}

func (p *pickler) op(b ...byte) { p.buf.Write(b) }

func (p *pickler) str(s string) {
	p.op('X')
	binary.Write(&p.buf, binary.LittleEndian, uint32(len(s)))
	p.buf.WriteString(s)
}

func (p *pickler) int(v int64) {
	if v >= math.MinInt32 && v <= math.MaxInt32 {
		p.op('J')
		binary.Write(&p.buf, binary.LittleEndian, int32(v))
		return
	}
	p.op(0x8a, 8) // LONG1, eight bytes of two's complement
	binary.Write(&p.buf, binary.LittleEndian, v)
}

func (p *pickler) global(module, name string) {
	p.op('c')
	p.buf.WriteString(module + "\n" + name + "\n")
}

func (p *pickler) ints(xs []int) { // a tuple of ints
	p.op('(')
	for _, x := range xs {
		p.int(int64(x))
	}
	p.op('t')
}

func (p *pickler) items(items []Item) error {
	if len(items) == 0 {
		return nil
	}
	p.op('(')
	for _, it := range items {
		p.str(it.Key)
		if err := p.value(it.Value); err != nil {
			return fmt.Errorf("%s: %w", it.Key, err)
		}
	}
	p.op('u') // SETITEMS
	return nil
}

func (p *pickler) value(v any) error {
	switch v := v.(type) {
	case Dict:
		p.op('}')
		return p.items(v)
	case OrderedDict:
		p.global("collections", "OrderedDict")
		p.op(')', 'R')
		return p.items(v)
	case string:
		p.str(v)
	case int:
		p.int(int64(v))
	case int64:
		p.int(v)
	case float64:
		p.op('G')
		binary.Write(&p.buf, binary.BigEndian, math.Float64bits(v))
	case bool:
		if v {
			p.op(0x88)
		} else {
			p.op(0x89)
		}
	case []float64:
		p.op(']')
		if len(v) > 0 {
			p.op('(')
			for _, x := range v {
				if err := p.value(x); err != nil {
					return err
				}
			}
			p.op('e') // APPENDS
		}
	case []int:
		p.op(']')
		if len(v) > 0 {
			p.op('(')
			for _, x := range v {
				p.int(int64(x))
			}
			p.op('e')
		}
	case *Tensor:
		return p.tensor(v)
	case Tensor:
		return p.tensor(&v)
	default:
		return fmt.Errorf("torchsave: cannot write a %T", v)
	}
	return nil
}

// tensor writes torch._utils._rebuild_tensor_v2(storage, 0, shape,
// stride, False, OrderedDict()), its storage a persistent id naming the
// record data/N.
func (p *pickler) tensor(t *Tensor) error {
	n := 1
	for _, d := range t.Shape {
		n *= d
	}
	if n != len(t.Data) {
		return fmt.Errorf("torchsave: tensor of shape %v holds %d values, want %d", t.Shape, len(t.Data), n)
	}
	key := strconv.Itoa(len(p.storages))
	p.storages = append(p.storages, t)
	stride := make([]int, len(t.Shape))
	s := 1
	for i := len(t.Shape) - 1; i >= 0; i-- {
		stride[i] = s
		s *= t.Shape[i]
	}
	p.global("torch._utils", "_rebuild_tensor_v2")
	p.op('(')
	p.op('(') // the persistent id: ('storage', FloatStorage, key, 'cpu', numel)
	p.str("storage")
	p.global("torch", "FloatStorage")
	p.str(key)
	p.str("cpu")
	p.int(int64(n))
	p.op('t', 'Q') // TUPLE, BINPERSID
	p.int(0)       // storage offset
	p.ints(t.Shape)
	p.ints(stride)
	p.op(0x89) // requires_grad False
	p.global("collections", "OrderedDict")
	p.op(')', 'R') // backward hooks: OrderedDict()
	p.op('t', 'R')
	return nil
}
