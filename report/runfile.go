package report

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/elis-sim/elis-sim/internal/atomicfile"
	"github.com/elis-sim/elis-sim/policies"
)

// RunVersion is the version of the run file format.
const RunVersion = 1

// Run is one run's results as written by "elis-sim run --out" (and, later,
// replay): its label, its setup in words and numbers, the summary, and
// optionally every request's record. compare and plot read these files.
type Run struct {
	Version int               `json:"elis_run"`
	Label   string            `json:"label"`
	Setup   map[string]string `json:"setup"`
	Summary Summary           `json:"summary"`
	// ITLQuantiles are the inter-token gaps at quantiles 0, 0.005, ...,
	// 1 (seconds), for CDF plots: every gap is too many to keep.
	ITLQuantiles []float64         `json:"itl_quantiles_s,omitempty"`
	Records      []policies.Record `json:"records,omitempty"`
}

// WriteRun writes r as indented JSON, atomically.
func WriteRun(path string, r *Run) error {
	r.Version = RunVersion
	return atomicfile.Write(path, func(w io.Writer) error {
		enc := json.NewEncoder(w)
		enc.SetIndent("", " ")
		return enc.Encode(r)
	})
}

// ReadRun reads a run file.
func ReadRun(path string) (*Run, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Run
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("run file %s: %w", path, err)
	}
	if r.Version != RunVersion {
		return nil, fmt.Errorf("run file %s: \"elis_run\" version %d, want %d (is it a run file from elis-sim run --out?)", path, r.Version, RunVersion)
	}
	return &r, nil
}
