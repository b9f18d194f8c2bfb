package traces

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"os"
	"slices"
	"sync"
)

// ErrReadWhole is what a Stream ends with when its trace must be read
// whole instead (ReadFile): a request arrives before the one above it
// (a run takes requests in arrival order, and ReadFile sorts them), or
// two ids may repeat (the stream keeps their hashes only; ReadFile tells
// for sure, and names them).
var ErrReadWhole = errors.New("the trace must be read whole: arrivals go back, or two ids may repeat")

// A Stream reads a JSONL trace's requests while a run takes them: a
// goroutine decodes ahead into a few chunks that are reused once taken, so
// a run of a million requests neither waits for the whole file nor holds
// it. (Held whole, a million requests and their file were 0.24 GB of an
// FCFS run's 0.55, and memory is dear to take on the development VM: the
// same run into memory already faulted in took a fifth less time.) It
// checks what ReadFile checks -- the header, each line, that no
// id repeats -- and that arrivals never go back; where it cannot tell, it
// ends with ErrReadWhole.
//
// Peek and Pop take the requests in file order; once Peek says there are
// no more, Err says whether they all were (the first error by line, or a
// repeated id, which only the end can tell), and Len, Duration and Rate
// describe them as Trace's methods describe a trace. Close stops the
// reader early. A Stream is read by one goroutine.
type Stream struct {
	Name string // the trace's, from its header
	path string

	chunks chan []Request // decoded, in order; closed after the last
	free   chan []Request // taken, for reuse
	done   chan struct{}  // closed by Close
	once   sync.Once

	cur   []Request
	at    int
	taken int // requests popped

	// Written by the reader before it closes chunks.
	err         error
	n           int
	first, last float64
}

const (
	streamChunk = 4096 // requests a chunk
	streamAhead = 8    // chunks decoded ahead of the run
)

// OpenStream opens the JSONL trace at path and reads its header; errors
// name the file and the line, as ReadFile's do.
func OpenStream(path string) (*Stream, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	r := bufio.NewReaderSize(f, 1<<20)
	s := &Stream{path: path, chunks: make(chan []Request, streamAhead), free: make(chan []Request, streamAhead+2), done: make(chan struct{})}
	line := 0
	for {
		b, rerr := readLine(r)
		if len(b) > 0 || rerr == nil {
			line++
		}
		if b = bytes.TrimSpace(b); len(b) > 0 {
			if s.Name, err = parseHeader(b, path, line); err != nil {
				f.Close()
				return nil, err
			}
			break
		}
		if rerr != nil {
			f.Close()
			if rerr == io.EOF {
				return nil, fmt.Errorf(`trace %s: empty; want a header line {"elis_trace": %d}`, path, Version)
			}
			return nil, rerr
		}
	}
	go s.read(f, r, line)
	return s, nil
}

// readLine is r's next line, its newline included, however long.
func readLine(r *bufio.Reader) ([]byte, error) {
	b, err := r.ReadSlice('\n')
	if err != bufio.ErrBufferFull {
		return b, err
	}
	long := append([]byte(nil), b...)
	for err == bufio.ErrBufferFull {
		b, err = r.ReadSlice('\n')
		long = append(long, b...)
	}
	return long, err
}

// read decodes the requests after the header, line line, into chunks.
func (s *Stream) read(f *os.File, r *bufio.Reader, line int) {
	defer f.Close()
	defer close(s.chunks)
	seed := maphash.MakeSeed()
	var hs []uint64 // the ids' hashes
	var chunk []Request
	send := func() bool {
		select {
		case s.chunks <- chunk:
			chunk = nil
			return true
		case <-s.done:
			return false
		}
	}
	for {
		b, err := readLine(r)
		if len(b) > 0 || err == nil {
			line++
		}
		if b = bytes.TrimSpace(b); len(b) > 0 {
			if chunk == nil {
				select {
				case chunk = <-s.free:
				default:
					chunk = make([]Request, 0, streamChunk)
				}
			}
			chunk = append(chunk, Request{})
			q := &chunk[len(chunk)-1]
			if uerr := unmarshalRequest(b, q); uerr != nil {
				s.err = fmt.Errorf("trace %s line %d: %w", s.path, line, uerr)
				return
			}
			if s.n == 0 {
				s.first = q.Arrival
			} else if q.Arrival < s.last {
				s.err = ErrReadWhole
				return
			}
			s.last = q.Arrival
			s.n++
			hs = append(hs, maphash.String(seed, q.ID))
			if len(chunk) == streamChunk && !send() {
				return
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			s.err = fmt.Errorf("trace %s: %w", s.path, err)
			return
		}
	}
	if len(chunk) > 0 && !send() {
		return
	}
	if s.n == 0 {
		s.err = fmt.Errorf("trace %s: no requests; a run needs at least one", s.path)
	} else if hashRepeats(hs) {
		s.err = ErrReadWhole
	}
}

// Peek is the next request, nil and false when there are no more (then
// Err says why). It stays valid until the Pop after it.
func (s *Stream) Peek() (*Request, bool) {
	for s.at >= len(s.cur) {
		if s.cur != nil {
			// Not cleared: the reader overwrites each request it reuses,
			// and clearing was a tenth of a megabyte a chunk.
			select {
			case s.free <- s.cur[:0]:
			default:
			}
			s.cur = nil
		}
		c, ok := <-s.chunks
		if !ok {
			return nil, false
		}
		s.cur, s.at = c, 0
	}
	return &s.cur[s.at], true
}

// Pop takes the request Peek gave.
func (s *Stream) Pop() { s.at++; s.taken++ }

// Taken is how many requests Pop took: the index of the one Peek gives.
func (s *Stream) Taken() int { return s.taken }

// Err is why the requests ended: nil when the file's were all read and
// good. It is known once Peek has said there are no more.
func (s *Stream) Err() error { return s.err }

// Close stops the reader; the stream gives no more requests. It may be
// called more than once.
func (s *Stream) Close() {
	s.once.Do(func() {
		close(s.done)
		for range s.chunks { // let the reader finish
		}
		s.cur = nil
	})
}

// Len, Duration and Rate are the trace's request count, time from the
// first arrival to the last, and mean arrival rate, once Peek has said
// there are no more: as Trace's.
func (s *Stream) Len() int { return s.n }

func (s *Stream) Duration() float64 {
	if s.n == 0 {
		return 0
	}
	return s.last - s.first
}

func (s *Stream) Rate() float64 {
	if d := s.Duration(); d > 0 {
		return float64(s.n) / d
	}
	return 0
}

// hashRepeats reports whether two of hs are equal. It sorts hs in place,
// taking no memory: it runs beside a simulation, and on the development
// VM two threads taking page faults at once cost several times one.
func hashRepeats(hs []uint64) bool {
	slices.Sort(hs)
	for i := 1; i < len(hs); i++ {
		if hs[i] == hs[i-1] {
			return true
		}
	}
	return false
}
