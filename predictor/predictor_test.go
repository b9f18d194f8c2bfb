package predictor

import (
	"math"
	"runtime"
	"testing"

	"github.com/elis-sim/elis-sim/policies"
)

func req(index, output int) *policies.Request {
	return &policies.Request{Index: index, OutputTokens: output}
}

func TestNoisyIsDeterministicAndUnbiasedInLog(t *testing.T) {
	n := Noisy{Sigma: 0.5, Seed: 3}
	if n.Predict(req(4, 100), 50) != n.Predict(req(4, 100), 50) {
		t.Fatal("same request and point gave different predictions")
	}
	sumLog, sumSq := 0.0, 0.0
	const N = 20000
	for i := 0; i < N; i++ {
		l := math.Log(n.Predict(req(i, 100), 0) / 100)
		sumLog += l
		sumSq += l * l
	}
	mean := sumLog / N
	sd := math.Sqrt(sumSq/N - mean*mean)
	if math.Abs(mean) > 0.02 || math.Abs(sd-0.5) > 0.02 {
		t.Fatalf("log error mean %.3f sd %.3f, want 0 and 0.5", mean, sd)
	}
}

func TestSigmaForMAEHitsTarget(t *testing.T) {
	var jobs []Job
	for i := 0; i < 2000; i++ {
		jobs = append(jobs, Job{Index: i, Output: 20 + (i*37)%400})
	}
	sigma := SigmaForMAE(jobs, 50, 9, 19.9)
	n := Noisy{Sigma: sigma, Seed: 9}
	sum, cnt := 0.0, 0
	for _, j := range jobs {
		for g := 0; g < j.Output; g += 50 {
			sum += math.Abs(n.Predict(req(j.Index, j.Output), g) - float64(j.Output-g))
			cnt++
		}
	}
	if mae := sum / float64(cnt); math.Abs(mae-19.9) > 0.01 {
		t.Fatalf("sigma %.4f gives MAE %.3f, want 19.9", sigma, mae)
	}
}

// The fit's exps are made on every core, its sums in point order: the
// same sigma to the bit on one core as on several.
func TestSigmaForMAEIsTheSameOnAnyCores(t *testing.T) {
	var jobs []Job
	for i := range 50_000 {
		jobs = append(jobs, Job{Index: i, Output: 20 + (i*37)%400})
	}
	was := runtime.GOMAXPROCS(1)
	one := SigmaForMAE(jobs, 50, 9, 19.9)
	runtime.GOMAXPROCS(max(4, was))
	many := SigmaForMAE(jobs, 50, 9, 19.9)
	runtime.GOMAXPROCS(was)
	if math.Float64bits(one) != math.Float64bits(many) {
		t.Fatalf("sigma %v on one core, %v on several", one, many)
	}
}

func TestRecordedAndConstant(t *testing.T) {
	r := Recorded{{{0, 90}, {50, 41}}, nil}
	if v := r.Predict(req(0, 100), 60); v != 41 {
		t.Fatalf("got %v", v)
	}
	if v := r.Predict(req(0, 100), 10); v != 90 {
		t.Fatalf("got %v", v)
	}
	if v := r.Predict(req(1, 100), 0); !math.IsInf(v, 1) {
		t.Fatalf("missing recording gave %v", v)
	}
	if Constant(7).Predict(req(0, 100), 0) != 7 || (Oracle{}).Predict(req(0, 100), 30) != 70 {
		t.Fatal("constant/oracle")
	}
}

func TestParseSpec(t *testing.T) {
	for in, want := range map[string]Spec{
		"oracle": {Kind: "oracle"}, "noisy:sigma=0.4": {Kind: "noisy", Sigma: 0.4},
		"noisy:mae=19.9": {Kind: "noisy", MAE: 19.9}, "constant:100": {Kind: "constant", Value: 100}, "recorded": {Kind: "recorded"},
	} {
		got, err := ParseSpec(in)
		if err != nil || got != want {
			t.Errorf("%s: %+v %v", in, got, err)
		}
		if got.String() != in {
			t.Errorf("String() %q, want %q", got.String(), in)
		}
	}
	for _, in := range []string{"", "magic", "noisy", "noisy:sigma=-1", "noisy:mu=1", "constant:x", "oracle:1"} {
		if _, err := ParseSpec(in); err == nil {
			t.Errorf("accepted %q", in)
		}
	}
}

func FuzzParseSpec(f *testing.F) {
	for _, s := range []string{"oracle", "noisy:sigma=0.4", "noisy:mae=19.9", "constant:100"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		spec, err := ParseSpec(s)
		if err != nil {
			return
		}
		if _, err := ParseSpec(spec.String()); err != nil {
			t.Fatalf("%q parsed to %+v whose String %q does not parse", s, spec, spec.String())
		}
	})
}

// A step's prediction cost: one batch, one call each, or nothing beside
// the forward pass.
func TestStepSeconds(t *testing.T) {
	c := Cost{PerBatch: 5e-3, PerToken: 1e-6}
	if got := c.StepSeconds(3, 100, false, false); got != c.Seconds(3, 100) || math.Abs(got-(5e-3+1e-4)) > 1e-12 {
		t.Errorf("batched: %v", got)
	}
	if got := c.StepSeconds(3, 100, true, false); math.Abs(got-(15e-3+1e-4)) > 1e-12 {
		t.Errorf("sync: %v", got)
	}
	if got := c.StepSeconds(3, 100, true, true); got != 0 {
		t.Errorf("async: %v", got)
	}
}
