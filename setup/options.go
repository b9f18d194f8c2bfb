package setup

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/elis-sim/elis-sim/cost"
	"github.com/elis-sim/elis-sim/policies"
	"github.com/elis-sim/elis-sim/predictor"
)

// Options are named settings as a command reads them. *cli.Context
// (urfave/cli) satisfies it as it is; Values holds a spec's settings.
type Options interface {
	String(name string) string
	Int(name string) int
	Float64(name string) float64
	Bool(name string) bool
	Uint64(name string) uint64
	// IsSet reports whether the user gave the setting (not its default).
	IsSet(name string) bool
}

// Flag is one option: its name, its default (whose Go type is the
// option's: string, int, int64, float64, bool, uint64, time.Duration or
// []string), its help and the environment variables that may set it. The
// options a command reads are declared in tables beside the code that
// reads them (Flags for a simulated run, ServeFlags, BenchFlags...), and
// the command line is built from the tables: a name is written once.
type Flag struct {
	Name     string
	Default  any
	Usage    string
	Env      []string
	Aliases  []string
	Required bool
}

// GuardHelp lists what may follow a policy after "+".
const GuardHelp = "lazy, eager, cap=S, margin=TOKENS[:RATIO], limit=C, sync, batched, async"

// Flags are the settings of a simulated run, in the order help lists
// them: what "elis-sim run" takes as flags and a sweep spec names.
func Flags() []Flag {
	return []Flag{
		{"policy", "fcfs,isrtf", "comma-separated policies: " + strings.Join(policies.Names(), ", ") + "; each may name an ISRTF mode and guards, NAME[/MODE][+GUARD...] with guards " + GuardHelp + " (isrtf/patch+lazy+cap=2)", nil, nil, false},
		{"isrtf-mode", "paper", "ISRTF mode: paper (re-rank at window boundaries, pause keeping KV), resubmit (each window a new request), patch (order the waiting queue only)", nil, nil, false},
		{"predictor", "noisy:mae=19.9", "oracle, noisy:sigma=S, noisy:mae=TOKENS, recorded (from the trace) or constant:TOKENS", nil, nil, false},
		{"prediction-interval", 50, "re-predict every K generated tokens", []string{"VLLM_ELIS_PREDICTION_INTERVAL"}, nil, false},
		{"predictor-cost-ms", predictor.DefaultCost.PerBatch * 1e3, "fixed cost of one batched predictor call, ms (added to the step it precedes)", nil, nil, false},
		{"model", "llama-2-13b", "model preset: " + strings.Join(cost.ArchNames(), ", "), []string{"ELIS_SIM_MODEL"}, nil, false},
		{"gpu", "a100-80g", "GPU preset: " + strings.Join(cost.GPUNames(), ", "), []string{"ELIS_SIM_GPU"}, nil, false},
		{"tp", 1, "tensor parallelism (GPUs per worker)", nil, nil, false},
		{"stack", cost.DefaultStack, "serving stack the GPU preset prices: vllm-v1 (today's vLLM: CUDA graphs, FlashAttention-class kernels) or 2023 (Splitwise's engine, the ELIS paper's vLLM 0.5.0; the default for the embedded workload)", nil, nil, false},
		{"cost-model", "", "fitted cost model JSON (overrides --model, --gpu and --tp)", nil, nil, false},
		{"workers", 1, "engine replicas", nil, nil, false},
		{"router", "least-loaded", "router across workers: " + strings.Join(policies.RouterNames(), ", "), nil, nil, false},
		{"max-num-seqs", 0, "sequences per step (0: vLLM's default for the GPU)", nil, nil, false},
		{"max-num-batched-tokens", 0, "token budget per step (0: vLLM's default for the GPU)", nil, nil, false},
		{"gpu-memory-utilization", 0.9, "fraction of GPU memory vLLM may use", nil, nil, false},
		{"kv-blocks", 0, "KV cache capacity in blocks (0: from GPU memory)", nil, nil, false},
		{"block-size", 16, "tokens per KV block", nil, nil, false},
		{"max-model-len", 0, "context length (0: the model's)", nil, nil, false},
		{"long-prefill-token-threshold", 0, "cap one request's prefill chunk per step (0: off)", nil, nil, false},
		{"no-enable-prefix-caching", false, "turn off vLLM's automatic prefix caching (on by default, as in vLLM v1)", nil, nil, false},
		{"scheduler", "", "whose scheduling rules the engine follows: vllm (v1's, the default) or llama.cpp (llama-server's: --max-num-seqs slots of --max-model-len tokens each, --max-num-batched-tokens its -b; no preemption, no shared prefix cache); a cost file from profile --url of a llama.cpp server says llama.cpp", nil, nil, false},
		{"aging", "", "starvation guard N,M: a request waiting N steps is promoted for M steps", nil, nil, false},
		{"preempt-limit", 0.0, "protect a request from preemption after this fraction of its predicted length (TRAIL's C)", nil, nil, false},
		{"predictor-calls", "", "how predictor calls are made and priced: sync (one call per request on the critical path, as the vLLM patch does; the default in patch mode), batched (one call per step, as ELIS's frontend; the default otherwise) or async (batched beside the forward pass: free, its answer known one step late)", nil, nil, false},
		{"slowdown-cap", 0.0, "tail guard, any policy: a waiting request whose projected slowdown (over running alone) reaches this factor is promoted for good (0: off)", nil, nil, false},
		{"lazy-predictions", true, "call the predictor only where its answer can change an order: not while no more requests wait than the batch has places (--lazy-predictions=false, or +eager in --policy, predicts at every arrival and window as ELIS and the vLLM patch do)", nil, nil, false},
		{"displace-margin", "", "paper mode hysteresis TOKENS[:RATIO]: displace a running request only for a waiting one predicted shorter by more than TOKENS and RATIO of its remaining", nil, nil, false},
		{"seed", uint64(1), "seed of the noisy predictor and the embedded workload", []string{"ELIS_SIM_SEED"}, nil, false},
		{"check", false, "verify the scheduler's invariants after every step (slower)", nil, nil, false},
		{"slo", "", "goodput objectives, e.g. ttft=2s,tpot=100ms,jct=60s", nil, nil, false},
	}
}

// FlagNames are the names of Flags, in order.
func FlagNames() []string {
	var out []string
	for _, f := range Flags() {
		out = append(out, f.Name)
	}
	return out
}

// Values are settings given by name (a sweep spec's, a cell's), each
// checked against the Flags and holding its default until set.
// Environment variables never reach them: a cell is what its key says.
type Values struct {
	defaults map[string]any
	set      map[string]any
}

// NewValues starts Values at every Flag's default.
func NewValues() *Values {
	v := &Values{defaults: map[string]any{}, set: map[string]any{}}
	for _, f := range Flags() {
		v.defaults[f.Name] = f.Default
	}
	return v
}

// Set gives setting name the value written as text, refusing a name that
// is no Flag and a value its type cannot hold.
func (v *Values) Set(name, text string) error {
	def, ok := v.defaults[name]
	if !ok {
		return fmt.Errorf("not a flag of elis-sim run (valid: %s)", strings.Join(FlagNames(), ", "))
	}
	var val any
	var err error
	switch def.(type) {
	case string:
		val = text
	case int:
		var n int64
		n, err = strconv.ParseInt(text, 0, strconv.IntSize)
		val, err = int(n), wantIf(err, "a whole number", text)
	case uint64:
		val, err = strconv.ParseUint(text, 0, 64)
		err = wantIf(err, "a whole number", text)
	case float64:
		val, err = strconv.ParseFloat(text, 64)
		err = wantIf(err, "a number", text)
	case bool:
		val, err = strconv.ParseBool(text)
		err = wantIf(err, "true or false", text)
	}
	if err != nil {
		return err
	}
	v.set[name] = val
	return nil
}

func wantIf(err error, want, text string) error {
	if err != nil {
		return fmt.Errorf("%q: want %s", text, want)
	}
	return nil
}

func (v *Values) get(name string) any {
	if x, ok := v.set[name]; ok {
		return x
	}
	return v.defaults[name]
}

// String, Int, Float64, Bool and Uint64 read a setting (the zero value for
// a name that is no Flag, as urfave/cli does).
func (v *Values) String(name string) string   { s, _ := v.get(name).(string); return s }
func (v *Values) Int(name string) int         { n, _ := v.get(name).(int); return n }
func (v *Values) Float64(name string) float64 { x, _ := v.get(name).(float64); return x }
func (v *Values) Bool(name string) bool       { b, _ := v.get(name).(bool); return b }
func (v *Values) Uint64(name string) uint64   { n, _ := v.get(name).(uint64); return n }

// IsSet reports whether name was given.
func (v *Values) IsSet(name string) bool { _, ok := v.set[name]; return ok }

// Text is option f's value in o as text, as a spec would give it.
func Text(o Options, f Flag) string {
	switch f.Default.(type) {
	case int:
		return fmt.Sprint(o.Int(f.Name))
	case float64:
		return fmt.Sprint(o.Float64(f.Name))
	case bool:
		return fmt.Sprint(o.Bool(f.Name))
	case uint64:
		return fmt.Sprint(o.Uint64(f.Name))
	}
	return o.String(f.Name)
}
