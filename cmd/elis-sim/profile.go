package main

import (
	"fmt"
	"github.com/elis-sim/elis-sim/setup"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/elis-sim/elis-sim/bench"
	"github.com/elis-sim/elis-sim/cost"
	"github.com/elis-sim/elis-sim/gpu"
	"github.com/elis-sim/elis-sim/internal/atomicfile"
	"github.com/elis-sim/elis-sim/replay"
)

func profileCommand() *cli.Command {
	flags := append(deviceFlags(),
		&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Value: "profile.csv", Usage: "output CSV"},
		&cli.StringFlag{Name: "prefill", Value: ints(replay.DefaultShapes.Prefill), Usage: "prefill chunk sizes to time"},
		&cli.StringFlag{Name: "batches", Value: ints(replay.DefaultShapes.Batches), Usage: "decode batch sizes to time"},
		&cli.StringFlag{Name: "contexts", Value: ints(replay.DefaultShapes.Contexts), Usage: "cached tokens per decode sequence"},
		&cli.IntFlag{Name: "reps", Value: replay.DefaultShapes.Reps, Usage: "timed repetitions per shape (median kept)"},
		&cli.IntFlag{Name: "max-num-seqs", Usage: "engine setting recorded for calibrate (default: replay's)"},
		&cli.IntFlag{Name: "max-num-batched-tokens", Usage: "engine setting recorded for calibrate (default: replay's)"},
		&cli.IntFlag{Name: "kv-blocks", Usage: "KV cache blocks (default: replay's)"},
		&cli.IntFlag{Name: "block-size", Value: 16, Usage: "tokens per KV block"},
		&cli.IntFlag{Name: "max-model-len", Usage: "context length recorded for calibrate"},
		&cli.IntFlag{Name: "long-prefill-token-threshold", Usage: "engine setting recorded for calibrate"},
		&cli.Uint64Flag{Name: "seed", Value: 1, Usage: "seed of random weights"},
		&cli.StringFlag{Name: "url", Usage: "profile a live OpenAI-compatible server instead (vLLM, elis-sim serve): --model is the served name; --prefill the prompt lengths timed alone, --batches x --contexts the concurrent decodes"},
		&cli.IntFlag{Name: "decode", Value: bench.DefaultProfileShapes.Decode, Usage: "with --url: tokens each concurrent request generates"},
		&cli.DurationFlag{Name: "timeout", Value: 10 * time.Minute, Usage: "with --url: per request"},
		&cli.IntFlag{Name: "vocab", Usage: "with --url: prompt token ids are drawn from 1000 to below this (0: the server's vocabulary where /v1/models says it, as llama.cpp's does, else 32000)"},
		&cli.StringFlag{Name: "api-key-env", Value: "OPENAI_API_KEY", Usage: "with --url: environment variable holding the API key"},
	)
	return usageErrors(&cli.Command{
		Name:  "profile",
		Usage: "time step shapes and predictor calls on a device, or a live server, for calibrate",
		UsageText: "elis-sim profile --model tiny --device cpu -o profile.csv\n" +
			"elis-sim profile --url http://localhost:8000 --model meta-llama/Llama-3.1-8B-Instruct --max-num-batched-tokens 8192 -o profile.csv",
		Flags:  flags,
		Action: profileAction,
	})
}

func ints(v []int) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, ",")
}

func parseInts(flag, s string) ([]int, error) {
	var out []int
	for _, p := range strings.Split(s, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || v < 1 {
			return nil, badf("--%s %q: want positive integers separated by commas", flag, s)
		}
		out = append(out, v)
	}
	return out, nil
}

func profileAction(c *cli.Context) error {
	if err := setup.CheckOut(c, "out"); err != nil {
		return err
	}
	if c.String("url") != "" {
		return profileURL(c)
	}
	m, err := gpu.LoadModel(c.String("model"), c.Uint64("seed"))
	if err != nil {
		return badf("--model: %w", err)
	}
	eng := setup.DeviceEngine(c, m)
	if err := setup.CheckMemory(c, m, eng); err != nil {
		return err
	}
	sh := replay.Shapes{Reps: c.Int("reps"), Budget: eng.MaxBatchedTokens}
	for _, f := range []struct {
		name string
		dst  *[]int
	}{{"prefill", &sh.Prefill}, {"batches", &sh.Batches}, {"contexts", &sh.Contexts}} {
		if *f.dst, err = parseInts(f.name, c.String(f.name)); err != nil {
			return err
		}
	}
	if sh.Reps < 1 {
		return badf("--reps: want >= 1")
	}
	exec, err := gpu.NewExecutor(c.String("device"), 0, m, eng.BlockSize, eng.NumBlocks)
	if err != nil {
		return bad(err)
	}
	defer exec.Close()
	steps, err := replay.Profile(exec, m.Cfg.Vocab, sh)
	if err != nil {
		return err
	}
	p := &cost.DeviceProfile{Steps: steps, Meta: map[string]string{
		"device": c.String("device"), "model": c.String("model"), "block_size": strconv.Itoa(eng.BlockSize),
		"kv_blocks": strconv.Itoa(eng.NumBlocks), "max_num_seqs": strconv.Itoa(eng.MaxSeqs),
		"max_num_batched_tokens": strconv.Itoa(eng.MaxBatchedTokens), "max_model_len": strconv.Itoa(eng.MaxModelLen),
		"long_prefill_token_threshold": strconv.Itoa(eng.LongPrefillThreshold), "predictor_model": c.String("predictor-model"),
	}}
	if pm := c.String("predictor-model"); pm != "none" {
		host, err := gpu.LoadPredictorNet(pm, c.Uint64("seed"))
		if err != nil {
			return badf("--predictor-model: %w", err)
		}
		net, err := gpu.OnDevice(c.String("device"), 0, host)
		if err != nil {
			return bad(err)
		}
		defer net.Close()
		if p.Predictor, err = replay.ProfilePredictor(net, []int{1, 4, 16}, []int{32, 128, 512}, sh.Reps); err != nil {
			return err
		}
	}
	if err := atomicfile.Write(c.String("out"), func(w io.Writer) error { return cost.WriteDeviceProfile(w, p) }); err != nil {
		return err
	}
	fmt.Printf("profiled %d step shapes and %d predictor calls on %s (%s) into %s\n", len(p.Steps), len(p.Predictor), c.String("device"), c.String("model"), c.String("out"))
	return nil
}

// profileURL profiles a live server: lone requests' times to first token
// and concurrent decodes' token gaps, for calibrate.
func profileURL(c *cli.Context) error {
	u := c.String("url")
	if p, err := url.Parse(u); err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
		return badf("--url %q: want http://HOST:PORT or https://HOST:PORT", u)
	}
	sh := bench.DefaultProfileShapes
	var err error
	for _, f := range []struct {
		name string
		dst  *[]int
	}{{"prefill", &sh.Prompts}, {"batches", &sh.Batches}, {"contexts", &sh.Contexts}} {
		if c.IsSet(f.name) {
			if *f.dst, err = parseInts(f.name, c.String(f.name)); err != nil {
				return err
			}
		}
	}
	if c.IsSet("reps") {
		sh.Reps = c.Int("reps")
	}
	sh.Decode = c.Int("decode")
	if sh.Reps < 1 || sh.Decode < 2 {
		return badf("--reps >= 1 and --decode >= 2, got %d and %d", sh.Reps, sh.Decode)
	}
	if v := c.Int("vocab"); v != 0 && v <= 1000 {
		return badf("--vocab %d: want more than 1000 (or 0: the server's)", v)
	}
	cfg := bench.Config{URLs: []string{u}, Model: c.String("model"), APIKey: os.Getenv(c.String("api-key-env")), Seed: c.Uint64("seed"),
		Timeout: c.Duration("timeout"), Vocab: c.Int("vocab"), Client: &http.Client{}}
	// Shapes the server cannot hold (a prompt over a slot's context, a
	// batch over its slots) are left out, and the rest said.
	info := bench.Discover(c.Context, cfg.Client, u, cfg.APIKey, cfg.Model)
	fitted, err := info.Fit(sh)
	if err != nil {
		return bad(err)
	}
	if fmt.Sprint(fitted) != fmt.Sprint(sh) {
		fmt.Fprintf(os.Stderr, "elis-sim profile: the server has %d slots of %d tokens (model context %d): timing prompts %v, batches %v, contexts %v\n",
			info.Slots, info.SlotContext, info.MaxModelLen, fitted.Prompts, fitted.Batches, fitted.Contexts)
	}
	p, err := bench.Profile(c.Context, cfg, fitted)
	if err != nil {
		return err
	}
	// The engine limits calibrate writes into the cost file: the flags',
	// else what a slot-based server says of itself (its slots, a slot's
	// context and the KV they hold together).
	if info.Slots > 0 && info.SlotContext > 0 {
		p.Meta["max_num_seqs"] = strconv.Itoa(info.Slots)
		p.Meta["max_model_len"] = strconv.Itoa(info.SlotContext)
		p.Meta["kv_blocks"] = strconv.Itoa(info.Slots * info.SlotContext / 16)
	}
	for _, k := range []string{"max-num-batched-tokens", "max-num-seqs", "kv-blocks", "max-model-len"} {
		if c.IsSet(k) {
			p.Meta[strings.ReplaceAll(k, "-", "_")] = strconv.Itoa(c.Int(k))
		}
	}
	if err := atomicfile.Write(c.String("out"), func(w io.Writer) error { return cost.WriteDeviceProfile(w, p) }); err != nil {
		return err
	}
	fmt.Printf("profiled %s (%s): %d prompt lengths alone, %d decode shapes, in %s s, into %s\n", u, c.String("model"), len(p.Requests), len(p.Steps), p.Meta["profile_seconds"], c.String("out"))
	return nil
}

func calibrateCommand() *cli.Command {
	return usageErrors(&cli.Command{
		Name:      "calibrate",
		Usage:     "fit the simulator's cost model to a device profile",
		ArgsUsage: "PROFILE.csv",
		UsageText: "elis-sim calibrate profile.csv -o cost.json && elis-sim run trace.json --cost-model cost.json",
		Flags:     []cli.Flag{&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Value: "cost.json", Usage: "output cost model JSON"}},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return badf("calibrate wants one PROFILE.csv, got %d arguments", c.NArg())
			}
			if err := setup.CheckOut(c, "out"); err != nil {
				return err
			}
			p, err := cost.ReadDeviceProfile(c.Args().First())
			if err != nil {
				return bad(err)
			}
			cf, err := cost.CalibrateProfile(p)
			if err != nil {
				return bad(err)
			}
			if err := cost.WriteCostFile(c.String("out"), cf); err != nil {
				return err
			}
			if cf.Overheads != nil {
				fmt.Printf("fitted a linear step cost model and the overheads to %d decode steps and %d first tokens of %s on %s: mean |error| %s on decode steps, %s on first tokens; %.3g ms per request outside the steps\n",
					len(p.Steps), len(p.Requests), cf.Model, cf.Device, cf.Errors["decode_step"], cf.Errors["first_token"], cf.Overheads.PerRequest*1e3)
			} else {
				fmt.Printf("fitted a linear step cost model to %d steps of %s on %s: mean |error| %s on prefill steps, %s on decode steps\n",
					len(p.Steps), cf.Model, cf.Device, cf.Errors["prefill_step"], cf.Errors["decode_step"])
			}
			if cf.Predictor != nil {
				fmt.Printf("predictor network: %.3g ms per batch + %.3g ms per call + %.3g us per token (%s mean |error|)\n",
					cf.Predictor.PerBatch*1e3, cf.Predictor.PerCall*1e3, cf.Predictor.PerToken*1e6, cf.Errors["predictor"])
			}
			fmt.Printf("wrote %s; use it with: elis-sim run TRACE --cost-model %s\n", c.String("out"), c.String("out"))
			return nil
		},
	})
}
