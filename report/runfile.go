package report

import (
	"bufio"
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

// WriteRun writes r as JSON, atomically: everything but the records
// indented, then one record a line. The records are encoded one at a
// time, so a million of them cost a record's memory, not the file's.
func WriteRun(path string, r *Run) error {
	r.Version = RunVersion
	return atomicfile.Write(path, func(w io.Writer) error {
		bw := bufio.NewWriterSize(w, 1<<20)
		head := *r
		head.Records = nil
		b, err := json.MarshalIndent(&head, "", " ")
		if err != nil {
			return err
		}
		if len(r.Records) == 0 {
			bw.Write(b)
			bw.WriteString("\n")
			return bw.Flush()
		}
		bw.Write(b[:len(b)-2]) // the head without its closing "\n}"
		bw.WriteString(",\n \"records\": [\n")
		for i := range r.Records {
			rb, err := json.Marshal(&r.Records[i])
			if err != nil {
				return err
			}
			if i > 0 {
				bw.WriteString(",\n")
			}
			bw.Write(rb)
		}
		bw.WriteString("\n ]\n}\n")
		return bw.Flush()
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
