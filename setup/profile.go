package setup

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/elis-sim/elis-sim/bench"
	"github.com/elis-sim/elis-sim/cost"
	"github.com/elis-sim/elis-sim/gpu"
	"github.com/elis-sim/elis-sim/replay"
)

// parseInts reads a list of positive integers.
func parseInts(flag, s string) ([]int, error) {
	var out []int
	for _, p := range strings.Split(s, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || v < 1 {
			return nil, Errorf("--%s %q: want positive integers separated by commas", flag, s)
		}
		out = append(out, v)
	}
	return out, nil
}

// DeviceProfile times the step shapes the options name (prefill chunks,
// decode batches over cached contexts) on their device and model, and the
// predictor network's calls, for calibrate. The profile's meta records
// the engine the shapes were timed under.
func DeviceProfile(o Options) (*cost.DeviceProfile, error) {
	m, err := gpu.LoadModel(o.String("model"), o.Uint64("seed"))
	if err != nil {
		return nil, Errorf("--model: %w", err)
	}
	eng := DeviceEngine(o, m)
	if err := CheckMemory(o, m, eng); err != nil {
		return nil, err
	}
	sh := replay.Shapes{Reps: o.Int("reps"), Budget: eng.MaxBatchedTokens}
	for _, f := range []struct {
		name string
		dst  *[]int
	}{{"prefill", &sh.Prefill}, {"batches", &sh.Batches}, {"contexts", &sh.Contexts}} {
		if *f.dst, err = parseInts(f.name, o.String(f.name)); err != nil {
			return nil, err
		}
	}
	if sh.Reps < 1 {
		return nil, Errorf("--reps: want >= 1")
	}
	exec, err := gpu.NewExecutor(o.String("device"), 0, m, eng.BlockSize, eng.NumBlocks)
	if err != nil {
		return nil, Bad(err)
	}
	defer exec.Close()
	steps, err := replay.Profile(exec, m.Cfg.Vocab, sh)
	if err != nil {
		return nil, err
	}
	p := &cost.DeviceProfile{Steps: steps, Meta: map[string]string{
		"device": o.String("device"), "model": o.String("model"), "block_size": strconv.Itoa(eng.BlockSize),
		"kv_blocks": strconv.Itoa(eng.NumBlocks), "max_num_seqs": strconv.Itoa(eng.MaxSeqs),
		"max_num_batched_tokens": strconv.Itoa(eng.MaxBatchedTokens), "max_model_len": strconv.Itoa(eng.MaxModelLen),
		"long_prefill_token_threshold": strconv.Itoa(eng.LongPrefillThreshold), "predictor_model": o.String("predictor-model"),
	}}
	if pm := o.String("predictor-model"); pm != "none" {
		host, err := gpu.LoadPredictorNet(pm, o.Uint64("seed"))
		if err != nil {
			return nil, Errorf("--predictor-model: %w", err)
		}
		net, err := gpu.OnDevice(o.String("device"), 0, host)
		if err != nil {
			return nil, Bad(err)
		}
		defer net.Close()
		if p.Predictor, err = replay.ProfilePredictor(net, []int{1, 4, 16}, []int{32, 128, 512}, sh.Reps); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// URLProfile profiles the live server the url option names: lone
// requests' times to first token and concurrent decodes' token gaps, for
// calibrate. Shapes the server cannot hold are left out, and notes says
// which were kept.
func URLProfile(ctx context.Context, o Options, notes io.Writer) (*cost.DeviceProfile, error) {
	u := o.String("url")
	if p, err := url.Parse(u); err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
		return nil, Errorf("--url %q: want http://HOST:PORT or https://HOST:PORT", u)
	}
	sh := bench.DefaultProfileShapes
	var err error
	for _, f := range []struct {
		name string
		dst  *[]int
	}{{"prefill", &sh.Prompts}, {"batches", &sh.Batches}, {"contexts", &sh.Contexts}} {
		if o.IsSet(f.name) {
			if *f.dst, err = parseInts(f.name, o.String(f.name)); err != nil {
				return nil, err
			}
		}
	}
	if o.IsSet("reps") {
		sh.Reps = o.Int("reps")
	}
	sh.Decode = o.Int("decode")
	if sh.Reps < 1 || sh.Decode < 2 {
		return nil, Errorf("--reps >= 1 and --decode >= 2, got %d and %d", sh.Reps, sh.Decode)
	}
	if v := o.Int("vocab"); v != 0 && v <= 1000 {
		return nil, Errorf("--vocab %d: want more than 1000 (or 0: the server's)", v)
	}
	cfg := bench.Config{URLs: []string{u}, Model: o.String("model"), APIKey: os.Getenv(o.String("api-key-env")), Seed: o.Uint64("seed"),
		Timeout: duration(o, "timeout"), Vocab: o.Int("vocab"), Client: &http.Client{}}
	// Shapes the server cannot hold (a prompt over a slot's context, a
	// batch over its slots) are left out, and the rest said.
	info := bench.Discover(ctx, cfg.Client, u, cfg.APIKey, cfg.Model)
	fitted, err := info.Fit(sh)
	if err != nil {
		return nil, Bad(err)
	}
	if fmt.Sprint(fitted) != fmt.Sprint(sh) {
		fmt.Fprintf(notes, "elis-sim profile: the server has %d slots of %d tokens (model context %d): timing prompts %v, batches %v, contexts %v\n",
			info.Slots, info.SlotContext, info.MaxModelLen, fitted.Prompts, fitted.Batches, fitted.Contexts)
	}
	p, err := bench.Profile(ctx, cfg, fitted)
	if err != nil {
		return nil, err
	}
	// The engine limits calibrate writes into the cost file: the flags',
	// else what a slot-based server says of itself (its slots, a slot's
	// context and the KV they hold together).
	if info.Slots > 0 && info.SlotContext > 0 {
		p.Meta["max_num_seqs"] = strconv.Itoa(info.Slots)
		p.Meta["max_model_len"] = strconv.Itoa(info.SlotContext)
		p.Meta["kv_blocks"] = strconv.Itoa(info.Slots * ((info.SlotContext + 15) / 16))
		p.Meta["scheduler"] = "llama.cpp" // slots: llama-server's scheduling
	}
	for _, k := range []string{"max-num-batched-tokens", "max-num-seqs", "kv-blocks", "max-model-len"} {
		if o.IsSet(k) {
			p.Meta[strings.ReplaceAll(k, "-", "_")] = strconv.Itoa(o.Int(k))
		}
	}
	return p, nil
}

// ProfileFlags are the options of "elis-sim profile" beyond the device's
// (DeviceFlags): the shapes to time, the engine recorded for calibrate, and
// a live server to profile instead.
func ProfileFlags() []Flag {
	return []Flag{
		{Name: "out", Default: "profile.csv", Usage: "output CSV", Aliases: []string{"o"}},
		{Name: "prefill", Default: ints(replay.DefaultShapes.Prefill), Usage: "prefill chunk sizes to time"},
		{Name: "batches", Default: ints(replay.DefaultShapes.Batches), Usage: "decode batch sizes to time"},
		{Name: "contexts", Default: ints(replay.DefaultShapes.Contexts), Usage: "cached tokens per decode sequence"},
		{Name: "reps", Default: replay.DefaultShapes.Reps, Usage: "timed repetitions per shape (median kept)"},
		{Name: "max-num-seqs", Default: 0, Usage: "engine setting recorded for calibrate (default: replay's)"},
		{Name: "max-num-batched-tokens", Default: 0, Usage: "engine setting recorded for calibrate (default: replay's)"},
		{Name: "kv-blocks", Default: 0, Usage: "KV cache blocks (default: replay's)"},
		{Name: "block-size", Default: 16, Usage: "tokens per KV block"},
		{Name: "max-model-len", Default: 0, Usage: "context length recorded for calibrate"},
		{Name: "long-prefill-token-threshold", Default: 0, Usage: "engine setting recorded for calibrate"},
		{Name: "seed", Default: uint64(1), Usage: "seed of random weights"},
		{Name: "url", Default: "", Usage: "profile a live OpenAI-compatible server instead (vLLM, elis-sim serve): --model is the served name; --prefill the prompt lengths timed alone, --batches x --contexts the concurrent decodes"},
		{Name: "decode", Default: bench.DefaultProfileShapes.Decode, Usage: "with --url: tokens each concurrent request generates"},
		{Name: "timeout", Default: time.Duration(10 * time.Minute), Usage: "with --url: per request"},
		{Name: "vocab", Default: 0, Usage: "with --url: prompt token ids are drawn from 1000 to below this (0: the server's vocabulary where /v1/models says it, as llama.cpp's does, else 32000)"},
		{Name: "api-key-env", Default: "OPENAI_API_KEY", Usage: "with --url: environment variable holding the API key"},
	}
}

// ints writes a list of integers as an option takes it.
func ints(v []int) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, ",")
}
