package traces

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
)

// ImportOptions are the settings some importers need.
type ImportOptions struct {
	// Tokens counts prompt and output tokens for formats that carry only text
	// (sharegpt, elis-prompts, elis-train).
	Tokens TokenCounter
	// Rate, when > 0, gives formats without timestamps Poisson arrivals at
	// this many requests per second (seeded by Seed); otherwise all of their
	// requests arrive at time 0, an offline batch.
	Rate float64
	Seed uint64
	// OutputTokens is the output length of formats that have none
	// (elis-prompts).
	OutputTokens int
	// KeepText keeps prompt text in the trace when the format has it.
	KeepText bool
	// MultiTurn makes every answered human turn of a ShareGPT conversation
	// a request whose prompt holds the conversation so far, all of one
	// session (the prefix cache shares the history); otherwise only the
	// first turn is sent, as vLLM's benchmark does.
	MultiTurn bool
	// HashBlock, when > 0, is the tokens each Mooncake hash id names,
	// instead of the trace's 512 (BLIS, for one, reads them as one per
	// 16-token KV block).
	HashBlock int
}

// An Importer turns the bytes of a foreign trace file into a trace. name is
// used in error messages.
type Importer func(data []byte, name string, opt ImportOptions) (*Trace, error)

// importers maps format names to importers.
var importers = map[string]Importer{
	"azure":        importAzure,
	"mooncake":     importMooncake,
	"sharegpt":     importShareGPT,
	"apex":         importAPEX,
	"vidur":        importVidur,
	"elis-prompts": importELISPrompts,
	"elis-train":   importELISTrain,
}

// Formats lists the importable formats, sorted.
func Formats() []string { return slices.Sorted(maps.Keys(importers)) }

// Import reads the file at path in the named format.
func Import(format, path string, opt ImportOptions) (*Trace, error) {
	imp, ok := importers[format]
	if !ok {
		return nil, fmt.Errorf("unknown format %q (valid: %s)", format, strings.Join(Formats(), ", "))
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	t, err := imp(data, path, opt)
	if err != nil {
		return nil, err
	}
	t.SortByArrival()
	return t, nil
}

// needTokens reports a clear error when a text format has no counter.
func needTokens(format string, opt ImportOptions) error {
	if opt.Tokens == nil {
		return fmt.Errorf("format %s carries text, not token counts: give --tokenizer (a tokenizer.json, or \"words\")", format)
	}
	return nil
}

// assignArrivals gives timeless formats their arrival times.
func assignArrivals(t *Trace, opt ImportOptions) {
	if opt.Rate <= 0 {
		return
	}
	rng := rand.New(rand.NewPCG(opt.Seed, 0x696d706f7274))
	now := 0.0
	for i := range t.Requests {
		if i > 0 {
			now += rng.ExpFloat64() / opt.Rate
		}
		t.Requests[i].Arrival = now
	}
}

// atLeastOne maps a recorded count of 0 to 1: every request that reaches a
// serving engine produces at least one token.
func atLeastOne(n int) int { return max(n, 1) }
