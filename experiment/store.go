package experiment

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/elis-sim/elis-sim/internal/atomicfile"
	"github.com/elis-sim/elis-sim/report"
)

// Record is what a finished cell leaves behind: where it sits in the grid
// and what its run measured. It is small (no per-request records), so a
// grid of thousands is reported from its records alone.
type Record struct {
	Key      string    `json:"key"`
	Workload string    `json:"workload"`
	Load     float64   `json:"load"`
	Seed     uint64    `json:"seed"`
	Values   []Setting `json:"values"`
	Label    string    `json:"label"`
	Policy   string    `json:"policy"`
	// MAETarget is the predictor's target error, 0 when the run's own.
	MAETarget float64           `json:"predictor_mae_target"`
	Setup     map[string]string `json:"setup"`
	Summary   report.Summary    `json:"summary"`
	// JCTQuantiles are the requests' job completion times at quantiles
	// 0, 0.005, ..., 1: what the CDF plots draw.
	JCTQuantiles []float64 `json:"jct_quantiles_s"`
	// PredictionLog is ISRTF's prediction log, for workloads that keep
	// one (seed 1 only).
	PredictionLog string `json:"prediction_log,omitempty"`
}

// ErrDamaged is the error of a cell file that holds no record of its cell
// (edited, or copied from elsewhere): bad input, which its message names.
var ErrDamaged = errors.New("not a cell record")

// Store keeps one file per finished cell under dir/cells, named by the
// cell's key and written atomically: a killed sweep leaves whole records
// or none, and a rerun finds what is done.
type Store struct{ Dir string }

func (s Store) path(key string) string { return filepath.Join(s.Dir, "cells", key+".json") }

// Get reads a cell's record; ok is false when there is none.
func (s Store) Get(key string) (*Record, bool, error) {
	data, err := os.ReadFile(s.path(key))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	var r Record
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, false, fmt.Errorf("%s: %w (delete it to rerun the cell): %v", s.path(key), ErrDamaged, err)
	} else if r.Key != key {
		return nil, false, fmt.Errorf("%s: %w (delete it to rerun the cell): it holds cell %q", s.path(key), ErrDamaged, r.Key)
	}
	return &r, true, nil
}

// Has tells whether a cell is done.
func (s Store) Has(key string) bool {
	_, err := os.Stat(s.path(key))
	return err == nil
}

// Put writes a cell's record.
func (s Store) Put(r *Record) error {
	if err := os.MkdirAll(filepath.Join(s.Dir, "cells"), 0o755); err != nil {
		return err
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", " ")
	if err := enc.Encode(r); err != nil {
		return err
	}
	return atomicfile.Write(s.path(r.Key), func(w io.Writer) error {
		_, err := w.Write(buf.Bytes())
		return err
	})
}

// WriteManifest records the grid a directory's cells belong to.
func (s Store) WriteManifest(m *Manifest) error {
	if err := os.MkdirAll(s.Dir, 0o755); err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(s.Dir, "spec.json"), func(w io.Writer) error {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(m)
	})
}

// ReadManifest reads what WriteManifest wrote.
func (s Store) ReadManifest() (*Manifest, error) {
	p := filepath.Join(s.Dir, "spec.json")
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("%s: not a sweep's output (no spec.json): %w", s.Dir, err)
	}
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	if m.Spec == nil {
		return nil, fmt.Errorf("%s: no \"spec\": not a sweep's manifest", p)
	}
	return &m, nil
}
