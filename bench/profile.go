package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/elis-sim/elis-sim/cost"
	"github.com/elis-sim/elis-sim/traces"
)

// ProfileShapes are what Profile times on a live server.
type ProfileShapes struct {
	// Prompts are the prompt lengths timed alone, output 1: each a
	// request's time to first token.
	Prompts []int
	// Batches of concurrent requests with Contexts-token prompts, each
	// generating Decode tokens: the gaps between their tokens, once all
	// decode, are decode steps at that batch and context.
	Batches  []int
	Contexts []int
	Decode   int
	Reps     int // timings per shape; the median is kept
}

// DefaultProfileShapes time a server in a minute or two.
var DefaultProfileShapes = ProfileShapes{Prompts: []int{16, 128, 512, 1024, 2048}, Batches: []int{1, 4, 16}, Contexts: []int{128, 1024}, Decode: 48, Reps: 3}

// Profile times a live OpenAI-compatible server with crafted requests, as
// profile does a device: lone requests' times to first token by prompt
// length, and decode steps at each batch and context from the gaps between
// the tokens of concurrent requests. Prompts are random token ids, fresh
// for every request, so the prefix cache never serves them. The result
// feeds calibrate, which fits a cost file of the server's own deployment
// (steps and the overheads outside them).
func Profile(ctx context.Context, cfg Config, sh ProfileShapes) (*cost.DeviceProfile, error) {
	if len(cfg.URLs) != 1 {
		return nil, fmt.Errorf("profile one server at a time, got %d URLs", len(cfg.URLs))
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{}
	}
	cfg.Vocab = cfg.vocab(ctx)
	if sh.Reps < 1 {
		sh.Reps = 1
	}
	p := &cost.DeviceProfile{Meta: map[string]string{"device": cfg.URLs[0], "model": cfg.Model, "source": "profile --url", "vocab": fmt.Sprint(cfg.Vocab)}}
	start := time.Now()
	seq := 0
	// Each request's prompt is drawn from a fresh seed, so that no two
	// requests share a block.
	request := func(prompt, output int) *traces.Request {
		seq++
		return &traces.Request{ID: fmt.Sprintf("profile-%d", seq), PromptTokens: prompt, OutputTokens: output}
	}
	// Where the server counts its occupied KV cells (llama.cpp's, whose
	// attention reads them all, idle slots' kept prompts included), each
	// timing records how many others held while it ran: read after it,
	// less its own.
	sc := newScraper(cfg.Client, cfg.URLs[0], cfg.APIKey, func() float64 { return 0 })
	cells := func(own int) int64 {
		vals, err := sc.fetch()
		v, ok := vals["llamacpp:kv_cache_tokens"]
		if err != nil || !ok {
			return -1
		}
		return max(int64(v)-int64(own), 0)
	}
	var mu sync.Mutex
	retries := 0
	send := func(r *traces.Request) (*streamTimes, error) {
		c := cfg
		c.Seed = cfg.Seed ^ rand.Uint64()
		st, err := c.sendTimed(ctx, cfg.URLs[0], r, 0)
		mu.Lock()
		retries += st.retries
		mu.Unlock()
		return st, err
	}
	for _, n := range sh.Prompts {
		var ts, cs []float64
		for range sh.Reps {
			st, err := send(request(n, 1))
			if err != nil {
				return nil, fmt.Errorf("prompt of %d tokens: %w", n, err)
			}
			ts = append(ts, st.first)
			cs = append(cs, float64(cells(n+1)))
		}
		p.Requests = append(p.Requests, cost.RequestSample{PromptTokens: n, KVCells: int64(median(cs)), Seconds: median(ts)})
	}
	for _, ctxLen := range sh.Contexts {
		for _, b := range sh.Batches {
			var gaps, cs []float64
			used := sh.Decode
			for range sh.Reps {
				// A busy server may start the last request after the first
				// has finished: each retry decodes twice as many tokens.
				var g float64
				var err error
				for try, decode := 0, sh.Decode; try < 3; try, decode = try+1, decode*2 {
					used = decode
					if g, err = decodeGaps(ctx, send, request, b, ctxLen, decode); !errors.Is(err, errNotTogether) {
						break
					}
				}
				if err != nil {
					return nil, fmt.Errorf("decode at batch %d, context %d: %w", b, ctxLen, err)
				}
				gaps = append(gaps, g)
				// The window's middle: each request half way through.
				cs = append(cs, float64(cells(b*used/2)))
			}
			// Context grows by a token a step: the window's middle.
			mid := int64(ctxLen + used/2)
			p.Steps = append(p.Steps, cost.StepSample{DecodeSeqs: b, DecodeContext: int64(b) * mid, KVCells: max(int64(median(cs)), 0), Seconds: median(gaps)})
		}
	}
	p.Meta["profile_seconds"] = fmt.Sprintf("%.1f", time.Since(start).Seconds())
	// Resends after the server closed a kept-alive connection (llama.cpp's
	// server closes every streamed one): none of them timed twice.
	p.Meta["retries"] = fmt.Sprint(retries)
	return p, nil
}

// decodeGaps runs b requests at once and returns the median gap between
// tokens over the window where all b were decoding: after the last one's
// first token, before the first one's last.
func decodeGaps(ctx context.Context, send func(*traces.Request) (*streamTimes, error), request func(int, int) *traces.Request, b, ctxLen, decode int) (float64, error) {
	res := make([]*streamTimes, b)
	errs := make([]error, b)
	var wg sync.WaitGroup
	t0 := time.Now()
	for i := range b {
		r := request(ctxLen, decode)
		wg.Add(1)
		go func() {
			defer wg.Done()
			res[i], errs[i] = send(r)
			if res[i] != nil {
				res[i].offset = res[i].sent.Sub(t0).Seconds()
			}
		}()
	}
	wg.Wait()
	lo, hi := 0.0, 1e18
	for i, r := range res {
		if errs[i] != nil {
			return 0, errs[i]
		}
		lo = max(lo, r.offset+r.first)
		hi = min(hi, r.offset+r.chunks[len(r.chunks)-1])
	}
	var gaps []float64
	for _, r := range res {
		for k := 1; k < len(r.chunks); k++ {
			a, z := r.offset+r.chunks[k-1], r.offset+r.chunks[k]
			if a >= lo && z <= hi {
				gaps = append(gaps, z-a)
			}
		}
	}
	if len(gaps) == 0 {
		return 0, fmt.Errorf("the %d requests %w (give --decode more tokens)", b, errNotTogether)
	}
	return median(gaps), nil
}

// errNotTogether: a decode shape's requests never all decoded at once.
var errNotTogether = errors.New("never decoded together")

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)/2]
}
