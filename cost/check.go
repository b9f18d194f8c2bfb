package cost

import (
	"encoding/json"
	"fmt"
	"io"
)

// CheckOptions are what "elis-sim cost check" compares the presets with.
type CheckOptions struct {
	Profile, ProfileGPU string // an operator profile and the GPU it was measured on
	Splitwise           string // Splitwise's perf_model.csv
	Fit                 bool   // also fit the efficiencies and print them
	HeldOut             bool   // fit on part of Splitwise's timings and judge on the rest
}

// Measurements reads the options' timing files.
func (c CheckOptions) Measurements() ([]Measurement, error) {
	var ms []Measurement
	if c.Profile != "" {
		m, err := ReadTorchProfile(c.Profile, c.ProfileGPU)
		if err != nil {
			return nil, err
		}
		ms = append(ms, m...)
	}
	if c.Splitwise != "" {
		m, err := ReadSplitwise(c.Splitwise)
		if err != nil {
			return nil, err
		}
		ms = append(ms, m...)
	}
	return ms, nil
}

// WriteCheck writes the presets' check: against real vLLM on reference
// shapes, then against the measurements ms (each GPU's error by class,
// with c.Fit its fitted efficiencies, with c.HeldOut the held-out splits).
func WriteCheck(w io.Writer, ms []Measurement, c CheckOptions) error {
	rows, err := VLLMReference()
	if err != nil {
		return err
	}
	fmt.Fprintln(w, "vLLM reference: one request alone, llama-3.1-8b on H100 (ms; reference = BLIS's fit on real vLLM)")
	fmt.Fprintf(w, "%-30s %10s %10s %10s %10s %10s  %s\n", "shape", "vllm-v1", "2023", "reference", "floor", "FA roof", "target")
	ms3 := func(v float64) string {
		if v == 0 {
			return "-"
		}
		return fmt.Sprintf("%.2f", v*1e3)
	}
	for _, r := range rows {
		verdict := "met"
		if !r.OK {
			verdict = "MISSED"
		}
		fmt.Fprintf(w, "%-30s %10s %10s %10s %10s %10s  %s: %s\n", r.Shape, ms3(r.Preset), ms3(r.Preset2023), ms3(r.Reference), ms3(r.Floor), ms3(r.FARoofline), r.Target, verdict)
	}
	if len(ms) == 0 {
		return nil
	}
	fmt.Fprintln(w, "\nmeasured timings against the 2023-stack presets (Splitwise's engine; PyTorch eager operators)")
	byGPU := map[string][]Measurement{}
	var order []string
	for _, m := range ms {
		if _, ok := byGPU[m.GPU]; !ok {
			order = append(order, m.GPU)
		}
		byGPU[m.GPU] = append(byGPU[m.GPU], m)
	}
	fmt.Fprintf(w, "%-22s %-13s %5s %10s %10s %10s  %s\n", "gpu", "class", "n", "mean|err|", "median", "max", "worst case")
	for _, name := range order {
		g, _ := LookupGPUStack(name, "2023")
		for _, r := range Errors(g, byGPU[name]) {
			fmt.Fprintf(w, "%-22s %-13s %5d %9.1f%% %9.1f%% %9.1f%%  %s\n", r.GPU, r.Class, r.N, r.MeanAbsPct, r.MedianPct, r.MaxAbsPct, r.WorstLabel)
		}
		if c.Fit {
			f := Fit(g, byGPU[name])
			b, _ := json.MarshalIndent(f.Eff, "", "  ")
			fmt.Fprintf(w, "fitted efficiencies for %s:\n%s\n", name, b)
		}
	}
	if c.HeldOut {
		var sw []Measurement
		for _, m := range ms {
			if m.Class == "prefill_step" || m.Class == "decode_step" {
				sw = append(sw, m)
			}
		}
		rows, err := HeldOut(sw, 8000)
		if err != nil {
			return err
		}
		fmt.Fprintln(w, "\nheld out (2023 stack; targets: median <= 8%, 90% within 15%, none beyond 25%)")
		fmt.Fprintf(w, "%-40s %5s %5s %8s %8s %8s %9s  %s\n", "split", "n", "excl", "median", "p90", "max", "within15", "worst")
		for _, r := range rows {
			verdict := ""
			if !r.OK {
				verdict = " (misses)"
			}
			fmt.Fprintf(w, "%-40s %5d %5d %7.1f%% %7.1f%% %7.1f%% %8.0f%%  %s%s\n", r.Split, r.N, r.Excluded, r.Median, r.P90, r.Max, r.Within15, r.Worst, verdict)
		}
	}
	return nil
}
