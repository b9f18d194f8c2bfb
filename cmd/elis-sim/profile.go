package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

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
	)
	return usageErrors(&cli.Command{
		Name:      "profile",
		Usage:     "time step shapes and predictor calls on a device, for calibrate",
		UsageText: "elis-sim profile --model tiny --device cpu -o profile.csv",
		Flags:     flags,
		Action:    profileAction,
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
	if err := checkOut(c, "out"); err != nil {
		return err
	}
	m, err := gpu.LoadModel(c.String("model"), c.Uint64("seed"))
	if err != nil {
		return badf("--model: %w", err)
	}
	eng := replayEngine(c, m)
	if err := checkMemory(c, m, eng); err != nil {
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
			if err := checkOut(c, "out"); err != nil {
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
			fmt.Printf("fitted a linear step cost model to %d steps of %s on %s: mean |error| %s on prefill steps, %s on decode steps\n",
				len(p.Steps), cf.Model, cf.Device, cf.Errors["prefill_step"], cf.Errors["decode_step"])
			if cf.Predictor != nil {
				fmt.Printf("predictor network: %.3g ms per batch + %.3g ms per call + %.3g us per token (%s mean |error|)\n",
					cf.Predictor.PerBatch*1e3, cf.Predictor.PerCall*1e3, cf.Predictor.PerToken*1e6, cf.Errors["predictor"])
			}
			fmt.Printf("wrote %s; use it with: elis-sim run TRACE --cost-model %s\n", c.String("out"), c.String("out"))
			return nil
		},
	})
}
