package traces

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"os"
	"runtime"
	"strings"
	"sync"
	"unsafe"

	segjson "github.com/segmentio/encoding/json"

	"github.com/elis-sim/elis-sim/internal/atomicfile"
)

// header is the first object of a native trace: the whole document in JSON,
// the first line in JSONL.
type header struct {
	Version *int   `json:"elis_trace"`
	Name    string `json:"name,omitempty"`
}

// IsJSONL reports whether path names a JSONL trace (by its extension).
func IsJSONL(path string) bool {
	return strings.HasSuffix(path, ".jsonl")
}

// ReadFile reads a native trace; the extension .jsonl selects JSONL, any
// other JSON. Errors name the file, the line and the field.
func ReadFile(path string) (*Trace, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(data, path, IsJSONL(path))
}

// Parse reads a native trace from data. name is used in error messages.
func Parse(data []byte, name string, jsonl bool) (*Trace, error) {
	var t *Trace
	var err error
	if jsonl {
		t, err = parseJSONL(data, name)
	} else {
		t, err = parseJSON(data, name)
	}
	if err != nil {
		return nil, err
	}
	if len(t.Requests) == 0 {
		return nil, fmt.Errorf("trace %s: no requests; a run needs at least one", name)
	}
	if i, j, dup := repeatedID(len(t.Requests), func(i int) string { return t.Requests[i].ID }); dup {
		return nil, fmt.Errorf("trace %s: request %d: id %q repeats request %d", name, i, t.Requests[i].ID, j)
	}
	t.SortByArrival()
	return t, nil
}

// smallTrace is the size below which repeatedID maps the ids as strings.
const smallTrace = 4096

// repeatedID finds the first request whose id an earlier one has: i, and
// the earlier j. Ids are hashed to 64 bits (side by side), sorted by the
// hash's top 33 bits (a radix sort, stable, so equal keys keep file
// order), and neighbours with equal keys compared by hash, then by id: a
// million-request trace's map of the strings was a fifth of its load, and
// a sort by the whole hash twice this one.
func repeatedID(n int, id func(i int) string) (i, j int, dup bool) {
	if n < smallTrace {
		byID := make(map[string]int, n)
		for i := range n {
			if j, ok := byID[id(i)]; ok {
				return i, j, true
			}
			byID[id(i)] = i
		}
		return 0, 0, false
	}
	hs := make([]uint64, n)
	seed := maphash.MakeSeed()
	parts := runtime.GOMAXPROCS(0)
	var wg sync.WaitGroup
	for w := range parts {
		wg.Go(func() {
			for i := w * n / parts; i < (w+1)*n/parts; i++ {
				hs[i] = maphash.String(seed, id(i))
			}
		})
	}
	wg.Wait()
	return firstRepeat(hs, func(x, y int) bool { return id(x) == id(y) })
}

// firstRepeat finds the first item, by index, whose hash in hs an earlier
// one's equals and same says is the same: i, and the earlier j.
func firstRepeat(hs []uint64, same func(x, y int) bool) (i, j int, dup bool) {
	n := len(hs)
	type keyed struct {
		h uint64
		i int32
	}
	a, b := make([]keyed, n), make([]keyed, n)
	for i, h := range hs {
		a[i] = keyed{h, int32(i)}
	}
	// Three passes of 11 bits: the top 33 bits order the keys, and the
	// scatter writes to 2048 places at a time, which stay in cache.
	const bits, passes = 11, 3
	var count [1 << bits]int
	for p := range passes {
		shift := 64 - bits*(passes-p)
		clear(count[:])
		for _, x := range a {
			count[x.h>>shift&(1<<bits-1)]++
		}
		at := 0
		for d, c := range count {
			count[d] = at
			at += c
		}
		for _, x := range a {
			d := x.h >> shift & (1<<bits - 1)
			b[count[d]] = x
			count[d]++
		}
		a, b = b, a
	}
	top := func(h uint64) uint64 { return h >> (64 - bits*passes) }
	i = n
	for s := 0; s < n; {
		e := s + 1
		for e < n && top(a[e].h) == top(a[s].h) {
			e++
		}
		// A run of equal keys, in file order: each member against the
		// ones before it (two different ids sharing a key are rare).
		for x := s + 1; x < e; x++ {
			for y := s; y < x; y++ {
				if a[y].h == a[x].h && same(int(a[y].i), int(a[x].i)) {
					if int(a[x].i) < i {
						i, j = int(a[x].i), int(a[y].i)
					}
					break
				}
			}
		}
		s = e
	}
	return i, j, i < n
}

func lineAt(data []byte, off int64) int {
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	return bytes.Count(data[:off], []byte{'\n'}) + 1
}

func checkVersion(h *header, name string, line int) error {
	if h.Version == nil {
		return fmt.Errorf(`trace %s line %d: missing "elis_trace" version field (want %d); is this a trace to import with "elis-sim trace import"?`, name, line, Version)
	}
	if *h.Version != Version {
		return fmt.Errorf(`trace %s line %d: field "elis_trace": version %d, this build reads version %d`, name, line, *h.Version, Version)
	}
	return nil
}

func parseJSON(data []byte, name string) (*Trace, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	fail := func(err error) error {
		return fmt.Errorf("trace %s line %d: %w", name, lineAt(data, dec.InputOffset()), err)
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, fail(errors.New("want a JSON object {\"elis_trace\": 1, \"requests\": [...]}"))
	}
	t := &Trace{}
	var version *int
	sawRequests := false
	seenKeys := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fail(err)
		}
		key, _ := tok.(string)
		if seenKeys[key] {
			return nil, fail(fmt.Errorf("field %q appears twice", key))
		}
		seenKeys[key] = true
		switch key {
		case "elis_trace":
			var v int
			if err := dec.Decode(&v); err != nil {
				return nil, fail(fmt.Errorf(`field "elis_trace": %w`, err))
			}
			version = &v
		case "name":
			if err := dec.Decode(&t.Name); err != nil {
				return nil, fail(fmt.Errorf(`field "name": %w`, err))
			}
		case "requests":
			sawRequests = true
			if tok, err := dec.Token(); err != nil || tok != json.Delim('[') {
				return nil, fail(errors.New(`field "requests": want an array`))
			}
			for dec.More() {
				start := dec.InputOffset()
				if i := bytes.IndexByte(data[start:], '{'); i >= 0 {
					start += int64(i) // skip the comma and blanks before the object
				}
				var r Request
				if err := decodeRequest(dec, &r); err != nil {
					return nil, fmt.Errorf("trace %s line %d: request %d: %w", name, lineAt(data, start), len(t.Requests), err)
				}
				t.Requests = append(t.Requests, r)
			}
			if _, err := dec.Token(); err != nil {
				return nil, fail(err)
			}
		default:
			return nil, fail(fmt.Errorf("unknown field %q (valid: elis_trace, name, requests)", key))
		}
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, fail(err)
	}
	if tok, err := dec.Token(); err != io.EOF {
		if err != nil {
			return nil, fail(err)
		}
		return nil, fail(fmt.Errorf("unexpected %v after the trace object: a trace file holds one object", tok))
	}
	if err := checkVersion(&header{Version: version}, name, 1); err != nil {
		return nil, err
	}
	if !sawRequests {
		return nil, fmt.Errorf(`trace %s: missing field "requests"`, name)
	}
	return t, nil
}

func decodeRequest(dec *json.Decoder, r *Request) error {
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return err
	}
	return unmarshalRequest(raw, r)
}

// unmarshalRequest decodes one request object. segmentio's decoder, a
// drop-in for encoding/json's that reads a trace line five times faster,
// takes it first (a million-request trace spent most of its load time
// here); a line it refuses is read again by encoding/json, whose message
// names the fault as users have always seen it. FuzzRequestLine checks
// that the two accept the same lines and decode them alike.
func unmarshalRequest(raw []byte, r *Request) error {
	rest, err := segjson.Parse(raw, r, segjson.DisallowUnknownFields)
	if err != nil || len(bytes.TrimSpace(rest)) > 0 {
		*r = Request{}
		if err := decodeOne(raw, r); err != nil {
			return err
		}
	}
	return r.Validate()
}

// decodeOne decodes exactly one JSON value with only known fields into v.
func decodeOne(raw []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return err
	}
	if _, err := d.Token(); err != io.EOF {
		return errors.New("more than one JSON value: one object a line")
	}
	return nil
}

// parseHeader reads a JSONL trace's header, line line of name: the
// trace's name.
func parseHeader(b []byte, name string, line int) (string, error) {
	var h header
	if err := decodeOne(b, &h); err != nil {
		return "", fmt.Errorf("trace %s line %d: header (valid fields: elis_trace, name): %w", name, line, err)
	}
	if err := checkVersion(&h, name, line); err != nil {
		return "", err
	}
	return h.Name, nil
}

func parseJSONL(data []byte, name string) (*Trace, error) {
	t := &Trace{}
	line, off := 0, 0
	sawHeader := false
	for off < len(data) && !sawHeader {
		end := off + bytes.IndexByte(data[off:], '\n')
		if end < off {
			end = len(data)
		}
		line++
		b := bytes.TrimSpace(data[off:end])
		off = end + 1
		if len(b) == 0 {
			continue
		}
		n, err := parseHeader(b, name, line)
		if err != nil {
			return nil, err
		}
		t.Name = n
		sawHeader = true
	}
	if !sawHeader {
		return nil, fmt.Errorf(`trace %s: empty; want a header line {"elis_trace": %d}`, name, Version)
	}
	reqs, err := parseRequestLines(data[min(off, len(data)):], line+1, name)
	if err != nil {
		return nil, err
	}
	t.Requests = reqs
	return t, nil
}

// parseRequestLines decodes one request a line from data, whose first
// line is numbered first. Large inputs are cut at line ends into a piece
// a CPU, decoded side by side (JSON decoding is most of reading a big
// trace); the first error by line is the one reported.
func parseRequestLines(data []byte, first int, name string) ([]Request, error) {
	pieces := 1
	if len(data) > 1<<20 {
		pieces = runtime.GOMAXPROCS(0)
	}
	type part struct {
		data  []byte
		first int
		off   int       // where its stretch of all starts
		reqs  []Request // decoded, in place in all
		err   error
	}
	parts := make([]part, 0, pieces)
	total := 0
	for start, line := 0, first; start < len(data); {
		end := len(data)
		if len(parts) < pieces-1 {
			if cut := start + (len(data)-start)/(pieces-len(parts)); cut < len(data) {
				if nl := bytes.IndexByte(data[cut:], '\n'); nl >= 0 {
					end = cut + nl + 1
				}
			}
		}
		parts = append(parts, part{data: data[start:end], first: line})
		n := bytes.Count(data[start:end], []byte{'\n'})
		line += n
		total += n + 1 // at most a request a line
		start = end
	}
	// Every piece decodes into its own stretch of one slice, so that the
	// requests (a million of them, holding pointers) are never copied
	// again but to close the gaps blank lines leave.
	all := make([]Request, total)
	touch(all)
	off := 0
	for i := range parts {
		n := bytes.Count(parts[i].data, []byte{'\n'}) + 1
		parts[i].off, parts[i].reqs = off, all[off:off:off+n]
		off += n
	}
	var wg sync.WaitGroup
	for i := range parts {
		wg.Add(1)
		go func(p *part) {
			defer wg.Done()
			line := p.first
			for rest := p.data; len(rest) > 0; line++ {
				end := bytes.IndexByte(rest, '\n')
				if end < 0 {
					end = len(rest)
				}
				b := bytes.TrimSpace(rest[:end])
				rest = rest[min(end+1, len(rest)):]
				if len(b) == 0 {
					continue
				}
				p.reqs = p.reqs[:len(p.reqs)+1]
				if err := unmarshalRequest(b, &p.reqs[len(p.reqs)-1]); err != nil {
					p.err = fmt.Errorf("trace %s line %d: %w", name, line, err)
					return
				}
			}
		}(&parts[i])
	}
	wg.Wait()
	n := 0
	for _, p := range parts {
		if p.err != nil {
			return nil, p.err
		}
		if p.off != n {
			copy(all[n:], p.reqs) // close the gap blank lines left
		}
		n += len(p.reqs)
	}
	clear(all[n:])
	return all[:n:n], nil
}

// touch writes to every page of rs, fresh memory, from one thread before
// the pieces decode into it. Page faults taken by two threads at once cost
// several times one thread's on the development VM: a million-request
// trace decoded in 0.35-0.41 s into untouched memory, in 0.16-0.18 s with
// this first (touching 152 MB took 0.08 s of that).
func touch(rs []Request) {
	const stride = max(1, 4096/int(unsafe.Sizeof(Request{}))) // writes less than a page apart
	for i := 0; i < len(rs); i += stride {
		rs[i].PromptTokens = 0
	}
}

// Encode writes t in the native format: JSON with one request per line, or
// JSONL. The same trace always gives the same bytes.
func Encode(w io.Writer, t *Trace, jsonl bool) error {
	bw := bufio.NewWriterSize(w, 1<<16)
	name, _ := json.Marshal(t.Name)
	if jsonl {
		fmt.Fprintf(bw, "{\"elis_trace\":%d,\"name\":%s}\n", Version, name)
	} else {
		fmt.Fprintf(bw, "{\"elis_trace\": %d, \"name\": %s, \"requests\": [\n", Version, name)
	}
	for i := range t.Requests {
		b, err := json.Marshal(&t.Requests[i])
		if err != nil {
			return err
		}
		bw.Write(b)
		if !jsonl && i < len(t.Requests)-1 {
			bw.WriteByte(',')
		}
		bw.WriteByte('\n')
	}
	if !jsonl {
		bw.WriteString("]}\n")
	}
	return bw.Flush()
}

// WriteFile writes t to path atomically, as JSONL when path ends in .jsonl.
func WriteFile(path string, t *Trace) error {
	return atomicfile.Write(path, func(w io.Writer) error { return Encode(w, t, IsJSONL(path)) })
}
