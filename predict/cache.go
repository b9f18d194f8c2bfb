package predict

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"

	"github.com/elis-sim/elis-sim/internal/atomicfile"
)

// Cache keeps a network's outputs on disk by the content of their inputs,
// so that evaluating the same rows again runs nothing: one file per
// network (named by what identifies it: its checkpoint's bytes and the
// device that runs it, whose precision changes the outputs), holding a
// 16-byte hash of each input's token ids and the output, width float32s
// (1 for a prediction, the hidden size for a pooled encoding).
type Cache struct {
	path  string
	width int
	known map[[16]byte][]float32
	added int
}

// OpenCache opens dir's cache of width-wide outputs for the network
// identified by id (any bytes: a checkpoint's hash and a device). A
// missing file is an empty cache; a damaged one is read up to its damage.
func OpenCache(dir string, id []byte, width int) (*Cache, error) {
	if width < 1 {
		return nil, fmt.Errorf("cache width %d: want >= 1", width)
	}
	sum := sha256.Sum256(append(append([]byte(nil), id...), fmt.Sprintf("|w%d", width)...))
	c := &Cache{path: filepath.Join(dir, fmt.Sprintf("%x.bin", sum[:12])), width: width, known: map[[16]byte][]float32{}}
	f, err := os.Open(c.path)
	if errors.Is(err, os.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := bufio.NewReader(f)
	rec := make([]byte, 16+4*width)
	for {
		if _, err := io.ReadFull(r, rec); err != nil {
			break // the end, or a torn last record
		}
		var k [16]byte
		copy(k[:], rec[:16])
		v := make([]float32, width)
		for i := range v {
			v[i] = math.Float32frombits(binary.LittleEndian.Uint32(rec[16+4*i:]))
		}
		c.known[k] = v
	}
	return c, nil
}

func cacheKey(ids []int32) [16]byte {
	h := sha256.New()
	var b [4]byte
	for _, id := range ids {
		binary.LittleEndian.PutUint32(b[:], uint32(id))
		h.Write(b[:])
	}
	var k [16]byte
	copy(k[:], h.Sum(nil))
	return k
}

// Len is the number of outputs the cache holds.
func (c *Cache) Len() int { return len(c.known) }

// Added is the number of outputs computed since it was opened.
func (c *Cache) Added() int { return c.added }

func (c *Cache) get(ids []int32) ([]float32, bool) {
	v, ok := c.known[cacheKey(ids)]
	return v, ok
}

func (c *Cache) put(ids []int32, v []float32) {
	c.known[cacheKey(ids)] = v
	c.added++
}

// Save writes the cache atomically when it learned something.
func (c *Cache) Save() error {
	if c.added == 0 {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(c.path), 0o755); err != nil {
		return err
	}
	return atomicfile.Write(c.path, func(w io.Writer) error {
		bw := bufio.NewWriter(w)
		rec := make([]byte, 16+4*c.width)
		for k, v := range c.known {
			copy(rec[:16], k[:])
			for i, x := range v {
				binary.LittleEndian.PutUint32(rec[16+4*i:], math.Float32bits(x))
			}
			bw.Write(rec)
		}
		return bw.Flush()
	})
}

// FileID is what identifies a checkpoint: a hash of its bytes.
func FileID(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil, err
	}
	return h.Sum(nil), nil
}
