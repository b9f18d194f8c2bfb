package experiment

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"

	"github.com/elis-sim/elis-sim/report"
)

// Spec is an experiment file: the workloads, loads and seeds of a grid,
// the settings every cell shares and the axes it varies, and what to
// report. Settings and axes are named by the flags of "elis-sim run", so
// that anything a run can set, a spec can set or sweep.
type Spec struct {
	Workloads []Workload `yaml:"workloads" json:"workloads"`
	// Requests is the size of each generated workload (scenarios only).
	Requests int `yaml:"requests" json:"requests"`
	// Seeds are the seeds of each point: the workload's and the noisy
	// predictor's. A number n means 1..n.
	Seeds    Seeds     `yaml:"seeds" json:"seeds"`
	Loads    []float64 `yaml:"loads" json:"loads"`
	Settings Settings  `yaml:"settings" json:"settings"`
	Axes     Axes      `yaml:"axes" json:"axes"`
	Report   Report    `yaml:"report" json:"report"`
}

// Workload is one of the built-in scenarios or a trace file.
type Workload struct {
	Scenario string `yaml:"scenario,omitempty" json:"scenario,omitempty"`
	Trace    string `yaml:"trace,omitempty" json:"trace,omitempty"` // relative to the spec's directory
	// TraceSHA256 is the trace file's content hash, filled in by Resolve:
	// a cell's key depends on the trace's bytes, not on its name.
	TraceSHA256 string `yaml:"-" json:"trace_sha256,omitempty"`
	Line        int    `yaml:"-" json:"-"`
}

// Name is the workload's directory name in the output.
func (w Workload) Name() string {
	if w.Scenario != "" {
		return w.Scenario
	}
	base := filepath.Base(w.Trace)
	return strings.TrimSuffix(base, filepath.Ext(base))
}

// Report says which metrics the summaries show and which plots are drawn.
type Report struct {
	Metrics MetricNames `yaml:"metrics,omitempty" json:"metrics,omitempty"`
	Plots   PlotNames   `yaml:"plots,omitempty" json:"plots,omitempty"`
}

// MetricNames and PlotNames are lists of names each checked, with its
// line, against Metrics or Plots.
type (
	MetricNames []string
	PlotNames   []string
)

// UnmarshalYAML reads metric names.
func (n *MetricNames) UnmarshalYAML(node ast.Node) error {
	return names((*[]string)(n), node, "metrics", Metrics)
}

// UnmarshalYAML reads plot names.
func (n *PlotNames) UnmarshalYAML(node ast.Node) error {
	return names((*[]string)(n), node, "plots", Plots)
}

func names(dst *[]string, node ast.Node, what string, valid []string) error {
	seq, ok := node.(*ast.SequenceNode)
	if !ok {
		return posErr(node, "report: %s: want a list, e.g. [%s]", what, valid[0])
	}
	*dst = nil
	for _, v := range seq.Values {
		name, err := scalar(v)
		if err != nil {
			return posErr(v, "report: %s: %v", what, err)
		}
		if !slices.Contains(valid, name) {
			return posErr(v, "report: %s: unknown %q (valid: %s)", what, name, strings.Join(valid, ", "))
		}
		*dst = append(*dst, name)
	}
	return nil
}

// Metrics a sweep's summaries can show (report.CompareMetrics).
var Metrics = func() []string {
	var out []string
	for _, m := range report.CompareMetrics {
		out = append(out, m.Name)
	}
	return out
}()

// Plots a sweep can draw.
var Plots = []string{"load", "cdf", "pareto"}

// Seeds is a list of seeds, written as a count (n: 1..n) or a list.
type Seeds []uint64

// UnmarshalYAML reads a count or a list.
func (s *Seeds) UnmarshalYAML(node ast.Node) error {
	switch n := node.(type) {
	case *ast.IntegerNode:
		var k int
		if _, err := fmt.Sscan(n.GetToken().Value, &k); err != nil || k < 1 || k > maxSeeds {
			return posErr(node, "seeds: want a count from 1 to %d, or a list of seeds", maxSeeds)
		}
		*s = nil
		for i := 1; i <= k; i++ {
			*s = append(*s, uint64(i))
		}
		return nil
	case *ast.SequenceNode:
		*s = nil
		for _, v := range n.Values {
			var k uint64
			if _, err := fmt.Sscan(v.GetToken().Value, &k); err != nil || v.Type() != ast.IntegerType {
				return posErr(v, "seeds: want whole numbers")
			}
			*s = append(*s, k)
		}
		return nil
	}
	return posErr(node, "seeds: want a count or a list of seeds")
}

// Setting is one flag's value in a spec, with the line it is on.
type Setting struct {
	Flag  string `json:"flag"`
	Value string `json:"value"`
	Line  int    `json:"-"`
}

// Settings are the flags every cell shares, in file order.
type Settings []Setting

// UnmarshalYAML reads a mapping of flag names to scalars.
func (s *Settings) UnmarshalYAML(node ast.Node) error {
	*s = nil
	return eachKey(node, "settings", func(key string, line int, v ast.Node) error {
		val, err := scalar(v)
		if err != nil {
			return posErr(v, "settings: %s: %v", key, err)
		}
		*s = append(*s, Setting{Flag: key, Value: val, Line: line})
		return nil
	})
}

// Axis is one flag the grid varies and its values.
type Axis struct {
	Flag   string   `json:"flag"`
	Values []string `json:"values"`
	Line   int      `json:"-"`
}

// Axes are the flags the grid varies, in file order: the grid is the
// product of their values (and of the workloads, loads and seeds).
type Axes []Axis

// UnmarshalYAML reads a mapping of flag names to lists of scalars.
func (a *Axes) UnmarshalYAML(node ast.Node) error {
	*a = nil
	return eachKey(node, "axes", func(key string, line int, v ast.Node) error {
		seq, ok := v.(*ast.SequenceNode)
		if !ok || len(seq.Values) == 0 {
			return posErr(v, "axes: %s: want a list of values, e.g. [a, b]", key)
		}
		ax := Axis{Flag: key, Line: line}
		for _, e := range seq.Values {
			val, err := scalar(e)
			if err != nil {
				return posErr(e, "axes: %s: %v", key, err)
			}
			ax.Values = append(ax.Values, val)
		}
		*a = append(*a, ax)
		return nil
	})
}

// UnmarshalYAML reads a workload, keeping its line for later errors.
func (w *Workload) UnmarshalYAML(node ast.Node) error {
	w.Line = node.GetToken().Position.Line
	return eachKey(node, "workloads", func(key string, line int, v ast.Node) error {
		val, err := scalar(v)
		if err != nil {
			return posErr(v, "workloads: %s: %v", key, err)
		}
		switch key {
		case "scenario":
			w.Scenario = val
		case "trace":
			w.Trace = val
		default:
			return posErr(v, "workloads: unknown key %q (valid: scenario, trace)", key)
		}
		return nil
	})
}

func eachKey(node ast.Node, what string, f func(key string, line int, v ast.Node) error) error {
	var pairs []*ast.MappingValueNode
	switch n := node.(type) {
	case *ast.MappingNode:
		pairs = n.Values
	case *ast.MappingValueNode:
		pairs = []*ast.MappingValueNode{n}
	case *ast.NullNode:
		return nil
	default:
		return posErr(node, "%s: want a mapping of names to values", what)
	}
	// A key given twice is the parser's error, with both lines.
	for _, p := range pairs {
		key := p.Key.GetToken().Value
		if err := f(key, p.Key.GetToken().Position.Line, p.Value); err != nil {
			return err
		}
	}
	return nil
}

// scalar is a scalar node's text as written (a string's without quotes).
func scalar(n ast.Node) (string, error) {
	switch n.Type() {
	case ast.StringType, ast.IntegerType, ast.FloatType, ast.BoolType:
		return n.GetToken().Value, nil
	}
	return "", fmt.Errorf("want a single value (string, number or true/false), not %s", n.Type())
}

// lineError is a spec error at a line of the file.
type lineError struct {
	line, col int
	msg       string
}

func (e *lineError) Error() string { return e.msg }

func posErr(n ast.Node, format string, a ...any) error {
	tok := n.GetToken()
	return &lineError{tok.Position.Line, tok.Position.Column, fmt.Sprintf(format, a...)}
}

// Parse reads a spec, YAML or JSON, strictly: an unknown key, a value of
// the wrong kind or a key given twice is an error naming its line. Names
// of settings and axes are checked by the caller, which knows the flags
// (see Check).
func Parse(path string) (*Spec, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	sp, err := decode(data)
	if err != nil {
		return nil, fileError(path, err)
	}
	s := *sp
	if len(s.Workloads) == 0 {
		return nil, fmt.Errorf("%s: workloads: want at least one scenario or trace", path)
	}
	named := map[string]int{} // a workload's reports go to OUT/<its name>
	for i := range s.Workloads {
		w := &s.Workloads[i]
		if (w.Scenario == "") == (w.Trace == "") {
			return nil, fmt.Errorf("%s:%d: workloads: each names one scenario or one trace", path, w.Line)
		}
		// A trace's path is relative to the spec, which travels with it.
		if w.Trace != "" && !filepath.IsAbs(w.Trace) {
			w.Trace = filepath.Join(filepath.Dir(path), w.Trace)
		}
		if l, ok := named[w.Name()]; ok {
			return nil, fmt.Errorf("%s:%d: workloads: %q is also the name of line %d's workload; their reports would share one folder", path, w.Line, w.Name(), l)
		}
		named[w.Name()] = w.Line
	}
	for _, l := range s.Loads {
		if !(l > 0) {
			return nil, fmt.Errorf("%s: loads: want multipliers > 0, got %g", path, l)
		}
	}
	if s.Requests < 0 {
		return nil, fmt.Errorf("%s: requests: want >= 1", path)
	}
	return &s, nil
}

// decode reads a spec from YAML or JSON. Tags (!name) mean nothing in a
// spec and are refused before decoding (the YAML library can fail on
// tagged values); a panic of the library is an error, not a crash.
func decode(data []byte) (spec *Spec, err error) {
	file, err := parser.ParseBytes(data, 0)
	if err != nil {
		return nil, err
	}
	var s Spec
	for _, doc := range file.Docs {
		var tag *ast.TagNode
		ast.Walk(visitFunc(func(n ast.Node) bool {
			if t, ok := n.(*ast.TagNode); ok && tag == nil {
				tag = t
			}
			return tag == nil
		}), doc)
		if tag != nil {
			return nil, posErr(tag, "tags such as %s are not part of a spec", tag.Start.Value)
		}
	}
	if len(file.Docs) != 1 || file.Docs[0].Body == nil {
		return nil, fmt.Errorf("want one YAML or JSON document")
	}
	defer func() {
		if r := recover(); r != nil {
			spec, err = nil, fmt.Errorf("cannot read the spec: %v", r)
		}
	}()
	if err := yaml.NodeToValue(file.Docs[0].Body, &s, yaml.Strict()); err != nil {
		return nil, err
	}
	return &s, nil
}

type visitFunc func(ast.Node) bool

func (f visitFunc) Visit(n ast.Node) ast.Visitor {
	if f(n) {
		return f
	}
	return nil
}

func fileError(path string, err error) error {
	var le *lineError
	if errors.As(err, &le) {
		return fmt.Errorf("%s:%d:%d: %s", path, le.line, le.col, le.msg)
	}
	var ye yaml.Error
	if errors.As(err, &ye) {
		if tok := ye.GetToken(); tok != nil {
			return fmt.Errorf("%s:%d:%d: %s", path, tok.Position.Line, tok.Position.Column, ye.GetMessage())
		}
	}
	return fmt.Errorf("%s: %w", path, err)
}

// Defaults fill what a spec leaves out; maxSeeds bounds a count.
const (
	DefaultRequests = 2000
	DefaultSeeds    = 5
	maxSeeds        = 100000
)

// Reserved are names a spec sets with its own keys, not as settings or
// axes: the grid's seeds and loads, and where output goes.
var Reserved = map[string]string{"seed": "seeds", "out": "the -o flag", "n": "requests", "trace": "workloads", "scenario": "workloads", "loads": "loads"}

// Check validates the names and values of settings and axes with known
// (a flag of "elis-sim run": nil when the value is one it takes), naming
// the spec's line for each problem.
func (s *Spec) Check(path string, known func(flag, value string) error) error {
	seen := map[string]int{}
	for _, st := range s.Settings {
		if err := checkOne(path, st.Line, "settings", st.Flag, st.Value, known); err != nil {
			return err
		}
		seen[st.Flag] = st.Line
	}
	for _, ax := range s.Axes {
		if l, ok := seen[ax.Flag]; ok {
			return fmt.Errorf("%s:%d: axes: %s is also a setting (line %d): name it in one place", path, ax.Line, ax.Flag, l)
		}
		for _, v := range ax.Values {
			if err := checkOne(path, ax.Line, "axes", ax.Flag, v, known); err != nil {
				return err
			}
		}
	}
	return nil
}

func checkOne(path string, line int, where, flag, value string, known func(flag, value string) error) error {
	if key, ok := Reserved[flag]; ok {
		return fmt.Errorf("%s:%d: %s: %s is set by the spec's %s", path, line, where, flag, key)
	}
	if err := known(flag, value); err != nil {
		return fmt.Errorf("%s:%d: %s: %s: %v", path, line, where, flag, err)
	}
	return nil
}

// Resolve fills in defaults and hashes the traces' contents, so that the
// spec alone determines every cell's key.
func (s *Spec) Resolve() error {
	if s.Requests == 0 {
		s.Requests = DefaultRequests
	}
	if len(s.Seeds) == 0 {
		for i := uint64(1); i <= DefaultSeeds; i++ {
			s.Seeds = append(s.Seeds, i)
		}
	}
	if len(s.Loads) == 0 {
		s.Loads = []float64{1}
	}
	if len(s.Report.Plots) == 0 {
		s.Report.Plots = append([]string(nil), Plots...)
	}
	for i := range s.Workloads {
		w := &s.Workloads[i]
		if w.Trace == "" || w.TraceSHA256 != "" {
			continue
		}
		data, err := os.ReadFile(w.Trace)
		if err != nil {
			return fmt.Errorf("workloads: trace: %w", err)
		}
		sum := sha256.Sum256(data)
		w.TraceSHA256 = hex.EncodeToString(sum[:])
	}
	return nil
}
