package gpu

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path"

	"github.com/nlpodyssey/gopickle/pickle"
	"github.com/nlpodyssey/gopickle/pytorch"
)

// maxPickle bounds a checkpoint's data.pkl, which holds the structure and
// none of the tensor bytes: a few kilobytes for a predictor.
const maxPickle = 64 << 20

// loadTorch reads a torch.save file with gopickle, after checking what
// gopickle takes on trust. gopickle allocates whatever a length in the
// pickle or a storage's declared size asks for before reading it, loops
// forever on an empty file (its pre-1.6 path), and panics on formats it
// half supports; a damaged checkpoint must instead be an error. So only
// the zip format (torch.save since PyTorch 1.6, the ELIS trainer's) is
// read; every length in data.pkl must fit in the bytes that follow it;
// every storage must fit in its record; and a panic left over is an error.
func loadTorch(file string) (obj any, err error) {
	st, err := os.Stat(file)
	if err != nil {
		return nil, err
	}
	zr, err := zip.OpenReader(file)
	if err != nil {
		return nil, fmt.Errorf("not a PyTorch checkpoint in torch.save's zip format (PyTorch 1.6 and later): %w", err)
	}
	defer zr.Close()
	records := make(map[string]*zip.File, len(zr.File))
	for _, f := range zr.File {
		_, name := path.Split(f.Name) // gopickle finds records by their last element
		records[name] = f
	}
	rec, ok := records["data.pkl"]
	if !ok {
		return nil, errors.New("no data.pkl record: not a torch.save archive")
	}
	if rec.UncompressedSize64 > maxPickle {
		return nil, fmt.Errorf("data.pkl is %d bytes, over the %d a checkpoint's structure needs", rec.UncompressedSize64, maxPickle)
	}
	r, err := rec.Open()
	if err != nil {
		return nil, fmt.Errorf("data.pkl: %w", err)
	}
	data, err := io.ReadAll(io.LimitReader(r, maxPickle))
	r.Close()
	if err != nil {
		return nil, fmt.Errorf("data.pkl: %w", err)
	}
	if err := checkPickle(data); err != nil {
		return nil, fmt.Errorf("data.pkl: %w", err)
	}
	if err := checkStorages(data, records, uint64(st.Size())); err != nil {
		return nil, fmt.Errorf("data.pkl: %w", err)
	}
	defer func() {
		if p := recover(); p != nil {
			obj, err = nil, fmt.Errorf("unreadable checkpoint (the pickle reader failed: %v)", p)
		}
	}()
	return pytorch.Load(file)
}

// Pickle opcodes by the argument that follows them (Python's pickletools
// documents each): a fixed number of bytes, a length of 1, 4 or 8 bytes
// and then that many bytes, or lines ending in '\n'.
var (
	pickleFixed = map[byte]int{
		'(': 0, '.': 0, '0': 0, '1': 0, '2': 0, 'N': 0, 'R': 0, 'b': 0, 'a': 0, 'e': 0,
		's': 0, 'u': 0, 'd': 0, '}': 0, 'l': 0, ']': 0, 't': 0, ')': 0, 'o': 0, 'Q': 0,
		0x81: 0, 0x85: 0, 0x86: 0, 0x87: 0, 0x88: 0, 0x89: 0, 0x8f: 0, 0x90: 0, 0x91: 0,
		0x92: 0, 0x93: 0, 0x94: 0, 0x97: 0, 0x98: 0,
		0x80: 1, 'K': 1, 'h': 1, 'q': 1, 0x82: 1,
		'M': 2, 0x83: 2,
		'J': 4, 'j': 4, 'r': 4, 0x84: 4,
		'G': 8,
	}
	pickleCounted = map[byte]int{
		'U': 1, 'C': 1, 0x8c: 1, 0x8a: 1,
		'T': 4, 'B': 4, 'X': 4, 0x8b: 4,
		0x8d: 8, 0x8e: 8, 0x96: 8,
	}
	pickleLines = map[byte]int{
		'I': 1, 'L': 1, 'S': 1, 'V': 1, 'F': 1, 'P': 1, 'g': 1, 'p': 1,
		'c': 2, 'i': 2,
	}
)

// checkPickle walks data's opcodes up to STOP and refuses an unknown one,
// or a length or frame larger than what is left.
func checkPickle(data []byte) error {
	for i := 0; i < len(data); {
		op, at := data[i], i
		i++
		if n, ok := pickleFixed[op]; ok {
			if n > len(data)-i {
				return fmt.Errorf("opcode 0x%02x at byte %d: its argument runs past the end", op, at)
			}
			i += n
			if op == '.' {
				return nil
			}
			continue
		}
		if op == 0x95 { // FRAME: an 8-byte length; the framed opcodes follow inline
			if 8 > len(data)-i {
				return fmt.Errorf("frame at byte %d: its length runs past the end", at)
			}
			if n := binary.LittleEndian.Uint64(data[i:]); n > uint64(len(data)-i-8) {
				return fmt.Errorf("frame at byte %d: %d bytes, %d left", at, n, len(data)-i-8)
			}
			i += 8
			continue
		}
		if w, ok := pickleCounted[op]; ok {
			if w > len(data)-i {
				return fmt.Errorf("opcode 0x%02x at byte %d: its length runs past the end", op, at)
			}
			var n uint64
			switch w {
			case 1:
				n = uint64(data[i])
			case 4:
				n = uint64(binary.LittleEndian.Uint32(data[i:]))
			case 8:
				n = binary.LittleEndian.Uint64(data[i:])
			}
			i += w
			if n > uint64(len(data)-i) {
				return fmt.Errorf("opcode 0x%02x at byte %d: %d bytes, %d left", op, at, n, len(data)-i)
			}
			i += int(n)
			continue
		}
		if lines, ok := pickleLines[op]; ok {
			for range lines {
				nl := bytes.IndexByte(data[i:], '\n')
				if nl < 0 {
					return fmt.Errorf("opcode 0x%02x at byte %d: its line has no end", op, at)
				}
				i += nl + 1
			}
			continue
		}
		return fmt.Errorf("unknown opcode 0x%02x at byte %d", op, at)
	}
	return errors.New("no STOP opcode: truncated")
}

// storageBytes is the element size of the storage classes torch.save
// names in a persistent id.
var storageBytes = map[string]uint64{
	"DoubleStorage": 8, "FloatStorage": 4, "HalfStorage": 2, "BFloat16Storage": 2,
	"LongStorage": 8, "IntStorage": 4, "ShortStorage": 2, "CharStorage": 1,
	"ByteStorage": 1, "BoolStorage": 1,
}

// checkStorages unpickles data with every class a stand-in and checks
// each storage it names — ('storage', class, key, location, size) — has
// a record of at least size elements, before gopickle allocates them. A
// record's sizes are the zip directory's word, so it must be stored
// uncompressed (torch.save's way: its records are aligned for mapping) and
// lie within the file's size.
func checkStorages(data []byte, records map[string]*zip.File, fileSize uint64) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("unreadable pickle (%v)", p)
		}
	}()
	u := pickle.NewUnpickler(bytes.NewReader(data))
	u.FindClass = func(module, name string) (any, error) { return &standIn{module, name}, nil }
	u.PersistentLoad = func(id any) (any, error) {
		t, ok := id.(interface {
			Len() int
			Get(int) any
		})
		if !ok || t.Len() < 5 {
			return nil, fmt.Errorf("persistent id %v is not a storage", id)
		}
		class, _ := t.Get(1).(*standIn)
		key, _ := t.Get(2).(string)
		size, sizeOK := t.Get(4).(int)
		if class == nil || !sizeOK || size < 0 {
			return nil, fmt.Errorf("persistent id %v is not a storage", id)
		}
		elem, ok := storageBytes[class.name]
		if !ok {
			return nil, fmt.Errorf("storage class %s.%s is not one this reader knows", class.module, class.name)
		}
		rec, ok := records[key]
		if !ok {
			return nil, fmt.Errorf("storage %q has no record", key)
		}
		if rec.Method != zip.Store || rec.UncompressedSize64 != rec.CompressedSize64 || rec.CompressedSize64 > fileSize {
			return nil, fmt.Errorf("storage %q: its record is compressed or larger than the file", key)
		}
		if need := uint64(size) * elem; uint64(size) > rec.UncompressedSize64 || need > rec.UncompressedSize64 {
			return nil, fmt.Errorf("storage %q claims %d elements of %d bytes; its record holds %d bytes", key, size, elem, rec.UncompressedSize64)
		}
		return &standIn{}, nil
	}
	_, err = u.Load()
	return err
}

// standIn takes the place of any class or object during checkStorages:
// what it builds does not matter, only the storages named.
type standIn struct{ module, name string }

func (s *standIn) Call(...any) (any, error)  { return &standIn{}, nil }
func (s *standIn) PyNew(...any) (any, error) { return &standIn{}, nil }
func (s *standIn) PySetState(any) error      { return nil }
