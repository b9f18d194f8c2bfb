package report

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

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
	ITLQuantiles []float64 `json:"itl_quantiles_s,omitempty"`
	// Server is what a real server's /metrics said during a bench run.
	Server  *ServerMetrics    `json:"server,omitempty"`
	Records []policies.Record `json:"records,omitempty"`
	// PlotValues holds, by metric, the per-request values a plot needs
	// when the records themselves were streamed to disk, not kept.
	PlotValues map[string][]float64 `json:"-"`
}

// ServerMetrics is a server's Prometheus metrics over a bench run: the
// samples scraped, and what they add up to.
type ServerMetrics struct {
	// Series holds each scrape: seconds from the start, and each metric's
	// value summed over its labels (a histogram's _count and _sum).
	Series []MetricSample `json:"series"`
	// Changes of the counters from the first scrape to the last, and the
	// gauges' peaks and means over the scrapes; absent when the server
	// has no such metric.
	Preemptions   *float64 `json:"preemptions,omitempty"`
	PeakRunning   *float64 `json:"peak_running,omitempty"`
	PeakWaiting   *float64 `json:"peak_waiting,omitempty"`
	MeanKVUsage   *float64 `json:"mean_kv_cache_usage,omitempty"`
	PrefixHitRate *float64 `json:"prefix_cache_hit_rate,omitempty"`
}

// MetricSample is one scrape of a server's metrics.
type MetricSample struct {
	At     float64            `json:"at_s"`
	Values map[string]float64 `json:"values"`
}

// WriteRun writes r as JSON, atomically: everything but the records
// indented, then one record a line.
func WriteRun(path string, r *Run) error {
	w, err := NewRunWriter(path)
	if err != nil {
		return err
	}
	for i := range r.Records {
		if err := w.Add(&r.Records[i]); err != nil {
			w.Abort()
			return err
		}
	}
	return w.Close(r)
}

// RunWriter writes a run file whose records come one at a time, as a run
// finishes them, so that a million records cost a record's memory: they
// go to a hidden file beside path as they come, and Close writes the
// file's head (the summary is known only at the end) and then copies
// them after it, atomically. The file reads like any run file.
type RunWriter struct {
	path string
	tmp  *os.File
	bw   *bufio.Writer
	n    int
}

// NewRunWriter starts a run file at path, making its directory when the
// path names one that does not exist yet.
func NewRunWriter(path string) (*RunWriter, error) {
	dir := filepath.Dir(path)
	if atomicfile.Special(path) {
		dir = "" // a device (/dev/null): the records wait in the temporary folder
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", path, err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".records*")
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", path, err)
	}
	return &RunWriter{path: path, tmp: tmp, bw: bufio.NewWriterSize(tmp, 1<<20)}, nil
}

// Add writes one record.
func (w *RunWriter) Add(r *policies.Record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if w.n > 0 {
		w.bw.WriteString(",\n")
	}
	w.n++
	_, err = w.bw.Write(b)
	return err
}

// Close writes the run file: head (without its records) and the records
// added. A failure leaves no file at path.
func (w *RunWriter) Close(head *Run) error {
	defer w.Abort()
	if err := w.bw.Flush(); err != nil {
		return fmt.Errorf("write %s: %w", w.path, err)
	}
	h := *head
	h.Version, h.Records = RunVersion, nil
	b, err := json.MarshalIndent(&h, "", " ")
	if err != nil {
		return err
	}
	return atomicfile.Write(w.path, func(out io.Writer) error {
		if w.n == 0 {
			_, err := out.Write(append(b, '\n'))
			return err
		}
		out.Write(b[:len(b)-2]) // the head without its closing "\n}"
		io.WriteString(out, ",\n \"records\": [\n")
		if _, err := w.tmp.Seek(0, io.SeekStart); err != nil {
			return err
		}
		if _, err := io.Copy(out, w.tmp); err != nil {
			return err
		}
		_, err := io.WriteString(out, "\n ]\n}\n")
		return err
	})
}

// Abort drops what was written; it is safe after Close.
func (w *RunWriter) Abort() {
	if w.tmp != nil {
		w.tmp.Close()
		os.Remove(w.tmp.Name())
		w.tmp = nil
	}
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
