package setup

import (
	"os"
	"path/filepath"
	"strings"

	"github.com/elis-sim/elis-sim/internal/atomicfile"
	"github.com/elis-sim/elis-sim/report"
)

// CheckOut refuses an output file flag whose path could not be written.
func CheckOut(o Options, flag string) error {
	if err := atomicfile.Check(o.String(flag)); err != nil {
		return Errorf("--%s: %w", flag, err)
	}
	return nil
}

// CheckRunOutputs refuses, before any work, outputs of run or replay that
// could not be written: --out (a .json file for one policy, a directory
// for several), --plot and --log-predictions. Whatever fails here would
// otherwise fail after the run, with some outputs already written.
func CheckRunOutputs(o Options) error {
	n := len(strings.Split(o.String("policy"), ","))
	if out := o.String("out"); out != "" {
		if err := CheckOutDir(out, n); err != nil {
			return err
		}
	}
	if err := CheckPlot(o.String("plot")); err != nil {
		return err
	}
	if p := o.String("log-predictions"); p != "" {
		if err := atomicfile.Check(p); err != nil {
			return Errorf("--log-predictions: %w", err)
		}
	}
	return nil
}

// CheckPlot refuses a --plot path that is not a .png, .svg or .pdf file
// that can be written; "" is no plot.
func CheckPlot(p string) error {
	if p == "" {
		return nil
	}
	switch strings.ToLower(filepath.Ext(p)) {
	case ".png", ".svg", ".pdf":
	default:
		return Errorf("--plot %s: want a .png, .svg or .pdf name", p)
	}
	if err := atomicfile.Check(p); err != nil {
		return Errorf("--plot: %w", err)
	}
	return nil
}

// CheckOutDir checks --out for runs of n policies: a .json file for one,
// a directory (existing or to be made) for several.
func CheckOutDir(out string, n int) error {
	if strings.HasSuffix(out, ".json") {
		if n > 1 {
			return Errorf("--out %s: %d policies write a file each; give a directory", out, n)
		}
		if err := atomicfile.Check(out); err != nil {
			return Errorf("--out: %w", err)
		}
		return nil
	}
	if st, err := os.Stat(out); err == nil {
		if !st.IsDir() {
			return Errorf("--out %s: exists and is not a directory", out)
		}
		if err := atomicfile.CheckDir(out); err != nil {
			return Errorf("--out: %w", err)
		}
		return nil
	}
	if err := atomicfile.CheckDir(out); err != nil { // made, as the user named it
		return Errorf("--out %s: %w", out, err)
	}
	return nil
}

// RunOutputFlags are the outputs of a run or a replay (CheckRunOutputs
// checks them): JSON, run files, a CDF plot, the prediction log.
func RunOutputFlags() []Flag {
	return []Flag{
		{Name: "json", Default: false, Usage: "print the summaries as JSON"},
		{Name: "out", Default: "", Usage: "write run files with per-request records: a .json file for one policy, a directory for several", Aliases: []string{"o"}},
		{Name: "plot", Default: "", Usage: "write a CDF plot of the policies to this .png, .svg or .pdf file"},
		{Name: "plot-metric", Default: "jct", Usage: "metric of --plot: " + strings.Join(report.PlotMetricNames(), ", ")},
		{Name: "log-x", Default: false, Usage: "log-scale x axis in --plot"},
		{Name: "log-predictions", Default: "", Usage: "write every prediction event to this file and print the predictor's accuracy by tokens generated"},
	}
}
