package experiment

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// Cell is one simulated run of the grid.
type Cell struct {
	Index    int // position in the grid's order
	Workload Workload
	Load     float64
	Seed     uint64
	// Values are the cell's flags: the spec's settings, then its axes'
	// values for this cell, in the spec's order.
	Values []Setting
	// Varied are the axes with more than one value, by flag: what tells
	// this cell's label apart from its neighbours'.
	Varied []Setting
	Key    string // hash of everything that determines the result
}

// Policy is the cell's --policy entry ("" when the spec names none).
func (c *Cell) Policy() string { return c.Get("policy") }

// Get is the value of a flag in the cell, "" when unset.
func (c *Cell) Get(flag string) string {
	for _, v := range c.Values {
		if v.Flag == flag {
			return v.Value
		}
	}
	return ""
}

// Label names the cell's line in tables and plots: its policy, then each
// other varied axis as flag=value (a noisy predictor as mae=N).
func (c *Cell) Label() string {
	parts := []string{c.Policy()}
	for _, v := range c.Varied {
		if v.Flag == "policy" {
			continue
		}
		if v.Flag == "predictor" && strings.HasPrefix(v.Value, "noisy:mae=") {
			parts = append(parts, "mae="+strings.TrimPrefix(v.Value, "noisy:mae="))
			continue
		}
		parts = append(parts, v.Flag+"="+v.Value)
	}
	return strings.Join(parts, " ")
}

// Grid options: what the caller knows of the flags.
type Grid struct {
	// Ignores tells settings that cannot change a cell's result, given
	// the cell's other values (the predictor's, for a policy and router
	// that read none): such cells are run once, and the setting is left
	// out of their key and label.
	Ignores func(c *Cell, flag string) bool
	// Version is the binary's version, part of every key.
	Version string
}

// Cells expands a resolved spec into its grid: workloads, then loads,
// then seeds, then the axes in the spec's order, the last varying
// fastest. Cells that an ignored setting alone tells apart are dropped
// after the first.
func (g Grid) Cells(s *Spec) []Cell {
	var out []Cell
	seen := map[string]bool{}
	for _, w := range s.Workloads {
		for _, load := range s.Loads {
			for _, seed := range s.Seeds {
				idx := make([]int, len(s.Axes))
				for {
					c := Cell{Workload: w, Load: load, Seed: seed}
					c.Values = append(c.Values, s.Settings...)
					for i, ax := range s.Axes {
						c.Values = append(c.Values, Setting{Flag: ax.Flag, Value: ax.Values[idx[i]]})
					}
					g.drop(&c)
					for _, ax := range s.Axes {
						if v := c.Get(ax.Flag); len(ax.Values) > 1 && v != "" {
							c.Varied = append(c.Varied, Setting{Flag: ax.Flag, Value: v})
						}
					}
					c.Key = g.key(s, &c)
					if !seen[c.Key] {
						seen[c.Key] = true
						c.Index = len(out)
						out = append(out, c)
					}
					if !next(idx, s.Axes) {
						break
					}
				}
			}
		}
	}
	return out
}

// drop removes the settings the cell ignores.
func (g Grid) drop(c *Cell) {
	if g.Ignores == nil {
		return
	}
	kept := c.Values[:0:0]
	for _, v := range c.Values {
		if !g.Ignores(c, v.Flag) {
			kept = append(kept, v)
		}
	}
	c.Values = kept
}

// next advances idx like an odometer over the axes; false after the last.
func next(idx []int, axes Axes) bool {
	for i := len(idx) - 1; i >= 0; i-- {
		idx[i]++
		if idx[i] < len(axes[i].Values) {
			return true
		}
		idx[i] = 0
	}
	return false
}

// key hashes what determines a cell's result: the binary, the workload
// (a scenario and its size, or the trace's content), the load, the seed
// and every flag value, sorted by flag.
func (g Grid) key(s *Spec, c *Cell) string {
	vals := map[string]string{}
	for _, v := range c.Values {
		vals[v.Flag] = v.Value
	}
	flags := make([]string, 0, len(vals))
	for f := range vals {
		flags = append(flags, f)
	}
	sort.Strings(flags)
	h := sha256.New()
	fmt.Fprintf(h, "elis-sim cell v1\nbinary %s\n", g.Version)
	if c.Workload.Scenario != "" {
		fmt.Fprintf(h, "scenario %q requests %d\n", c.Workload.Scenario, s.Requests)
	} else {
		fmt.Fprintf(h, "trace %s\n", c.Workload.TraceSHA256)
	}
	fmt.Fprintf(h, "load %s seed %d\n", strconv.FormatFloat(c.Load, 'g', -1, 64), c.Seed)
	for _, f := range flags {
		fmt.Fprintf(h, "%s=%q\n", f, vals[f])
	}
	return hex.EncodeToString(h.Sum(nil))[:24]
}

// Shard is a deterministic share of a grid: cell i belongs to shard
// i mod N.
type Shard struct{ I, N int }

// Has tells whether the shard runs cell c.
func (s Shard) Has(c *Cell) bool { return s.N <= 1 || c.Index%s.N == s.I }

func (s Shard) String() string { return fmt.Sprintf("%d/%d", s.I, s.N) }

// ParseShard reads I/N with 0 <= I < N.
func ParseShard(v string) (Shard, error) {
	a, b, ok := strings.Cut(v, "/")
	i, err1 := strconv.Atoi(a)
	n, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil || n < 1 || i < 0 || i >= n {
		return Shard{}, fmt.Errorf("%q: want I/N with 0 <= I < N, e.g. 0/4", v)
	}
	return Shard{i, n}, nil
}

// ShardFromEnv reads a batch system's task index: Slurm's array
// (SLURM_ARRAY_TASK_ID from SLURM_ARRAY_TASK_MIN, SLURM_ARRAY_TASK_COUNT
// tasks) or a Kubernetes Indexed Job (JOB_COMPLETION_INDEX, with count,
// the Job's completions, given by the caller). ok is false when neither is
// set.
func ShardFromEnv(getenv func(string) string, count int) (s Shard, ok bool, err error) {
	if id := getenv("SLURM_ARRAY_TASK_ID"); id != "" {
		i, err1 := strconv.Atoi(id)
		n, err2 := strconv.Atoi(getenv("SLURM_ARRAY_TASK_COUNT"))
		lo := 0
		if m := getenv("SLURM_ARRAY_TASK_MIN"); m != "" {
			var err3 error
			if lo, err3 = strconv.Atoi(m); err3 != nil {
				err1 = err3
			}
		}
		if err1 != nil || err2 != nil || n < 1 || i-lo < 0 || i-lo >= n {
			return Shard{}, true, fmt.Errorf("SLURM_ARRAY_TASK_ID=%s, SLURM_ARRAY_TASK_MIN=%s, SLURM_ARRAY_TASK_COUNT=%s: want an array of contiguous task IDs (--array=0-3)",
				id, getenv("SLURM_ARRAY_TASK_MIN"), getenv("SLURM_ARRAY_TASK_COUNT"))
		}
		return Shard{i - lo, n}, true, nil
	}
	if id := getenv("JOB_COMPLETION_INDEX"); id != "" {
		i, err := strconv.Atoi(id)
		if err != nil || count < 1 || i < 0 || i >= count {
			return Shard{}, true, fmt.Errorf("JOB_COMPLETION_INDEX=%s with %d completions: want 0 <= index < completions (give --shards, the Job's completions)", id, count)
		}
		return Shard{i, count}, true, nil
	}
	return Shard{}, false, nil
}

// Version identifies the running binary for cell keys: the module's
// version and VCS revision when the build recorded them, and always the
// executable's content hash, so that a rebuilt binary reruns every cell
// and the same binary reuses them.
var Version = sync.OnceValue(func() string {
	var parts []string
	if bi, ok := debug.ReadBuildInfo(); ok {
		parts = append(parts, bi.Main.Version)
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" || s.Key == "vcs.modified" {
				parts = append(parts, s.Value)
			}
		}
	}
	if exe, err := os.Executable(); err == nil {
		if f, err := os.Open(exe); err == nil {
			h := sha256.New()
			if _, err := io.Copy(h, f); err == nil { // streamed: the binary is tens of MB
				parts = append(parts, hex.EncodeToString(h.Sum(nil)[:8]))
			}
			f.Close()
		}
	}
	return strings.Join(parts, " ")
})

// Manifest is what a sweep's output directory records of its spec, so
// that shards can be merged by a later binary: the resolved spec and the
// version its cells were keyed with.
type Manifest struct {
	Spec    *Spec  `json:"spec"`
	Version string `json:"version"`
}

// Equal tells whether two manifests describe the same grid.
func (m *Manifest) Equal(o *Manifest) bool {
	a, _ := json.Marshal(m)
	b, _ := json.Marshal(o)
	return string(a) == string(b)
}
