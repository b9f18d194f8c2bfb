package report

import (
	"fmt"
	"image/color"
	"io"
	"maps"
	"math"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"

	"github.com/elis-sim/elis-sim/internal/atomicfile"
	"github.com/elis-sim/elis-sim/policies"
)

// PlotMetrics are the metrics a CDF can show, with their axis labels.
var PlotMetrics = map[string]string{
	"jct":   "job completion time, arrival to last token (s)",
	"ttft":  "time to first token (s)",
	"tpot":  "time per output token after the first (ms)",
	"itl":   "inter-token gap (ms)",
	"queue": "queueing delay, arrival to first scheduled (s)",
	"norm":  "normalized latency, JCT per output token (s)",
}

// PlotMetricNames lists PlotMetrics' keys, sorted.
func PlotMetricNames() []string { return slices.Sorted(maps.Keys(PlotMetrics)) }

// Values returns one sample per request of metric (per token gap
// quantiles for itl) from a run, in the unit of its axis label.
func Values(r *Run, metric string) ([]float64, error) {
	if _, ok := PlotMetrics[metric]; !ok {
		return nil, fmt.Errorf("unknown metric %q (valid: %s)", metric, strings.Join(PlotMetricNames(), ", "))
	}
	if metric == "itl" {
		if len(r.ITLQuantiles) == 0 {
			return nil, fmt.Errorf("run %q has no inter-token gaps recorded", r.Label)
		}
		out := make([]float64, len(r.ITLQuantiles))
		for i, v := range r.ITLQuantiles {
			out[i] = v * 1e3
		}
		return out, nil
	}
	if v, ok := r.PlotValues[metric]; ok {
		return v, nil
	}
	if len(r.Records) == 0 {
		return nil, fmt.Errorf("run %q has no per-request records (write it with --out)", r.Label)
	}
	var out []float64
	for i := range r.Records {
		if v, ok := MetricValue(&r.Records[i], metric); ok {
			out = append(out, v)
		}
	}
	return out, nil
}

// MetricValue is one request's value of a per-request PlotMetrics metric,
// in its axis unit; false for a request that has none (rejected,
// unfinished, a single token for tpot).
func MetricValue(rec *policies.Record, metric string) (float64, bool) {
	if rec.Finish < 0 || rec.Rejected != "" {
		return 0, false
	}
	switch metric {
	case "jct":
		return rec.Finish - rec.Arrival, true
	case "ttft":
		return rec.FirstToken - rec.Arrival, true
	case "queue":
		return rec.FirstScheduled - rec.Arrival, true
	case "norm":
		return (rec.Finish - rec.Arrival) / float64(rec.Generated), true
	case "tpot":
		if rec.Generated > 1 {
			return (rec.Finish - rec.FirstToken) / float64(rec.Generated-1) * 1e3, true
		}
	}
	return 0, false
}

// Series is a named sample.
type Series struct {
	Label  string
	Values []float64
	// N is how many requests the values stand for, when they are a few
	// quantiles of each run rather than every request (0: len(Values)).
	N int
}

// ecdf is a sample drawn as an empirical CDF: it implements plotter.XYer.
type ecdf struct{ x []float64 }

func (e ecdf) Len() int                    { return len(e.x) }
func (e ecdf) XY(i int) (float64, float64) { return e.x[i], float64(i+1) / float64(len(e.x)) }

// Wrap breaks s into lines of at most width bytes at spaces, keeping at
// most lines lines (the last ending in "..." when text was left out): a
// plot's title is drawn in one piece and would run past its edges.
func Wrap(s string, width, lines int) string {
	var out []string
	cur := ""
	for _, w := range strings.Fields(s) {
		switch {
		case cur == "":
			cur = w
		case len(cur)+1+len(w) <= width:
			cur += " " + w
		default:
			out = append(out, cur)
			cur = w
		}
	}
	if cur != "" {
		out = append(out, cur)
	}
	if len(out) > lines {
		out = out[:lines]
		last := out[lines-1]
		if len(last) > width-3 {
			last = last[:width-3]
		}
		out[lines-1] = last + "..."
	}
	return strings.Join(out, "\n")
}

// newPlot is a plot with the house style. A y label longer than the data
// area is tall makes gonum/plot shrink the area to fit it: keep each line
// of one short (break it with "\n").
func newPlot(title, xlabel, ylabel string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.Title.TextStyle.Font.Size = vg.Points(13)
	p.X.Label.Text = xlabel
	p.Y.Label.Text = ylabel
	for _, a := range []*plot.Axis{&p.X, &p.Y} {
		a.Label.TextStyle.Font.Size = vg.Points(13)
		a.Tick.Label.Font.Size = vg.Points(11)
	}
	p.Legend.TextStyle.Font.Size = vg.Points(12)
	p.Add(plotter.NewGrid())
	return p
}

// CDF draws one empirical CDF per series.
func CDF(title, xlabel string, logX bool, series []Series) (*plot.Plot, error) {
	p := newPlot(title, xlabel, "fraction of requests at or below x")
	p.Y.Min, p.Y.Max = 0, 1
	p.Legend.Top = false
	p.Legend.Left = false
	for i, s := range series {
		x := append([]float64(nil), s.Values...)
		sort.Float64s(x)
		if len(x) == 0 {
			return nil, fmt.Errorf("series %q is empty", s.Label)
		}
		if lo, hi := x[0], x[len(x)-1]; !(lo >= -maxAxis && hi <= maxAxis) {
			return nil, fmt.Errorf("series %q has values no axis can show (%v to %v)", s.Label, lo, hi)
		}
		if logX {
			clampPositive(x)
		}
		l, err := plotter.NewLine(ecdf{x})
		if err != nil {
			return nil, err
		}
		l.StepStyle = plotter.PostStep
		l.Color = seriesColor(i)
		l.Dashes = plotutil.Dashes(i)
		l.Width = vg.Points(2)
		p.Add(l)
		n := s.N
		if n == 0 {
			n = len(x)
		}
		p.Legend.Add(fmt.Sprintf("%s (n=%d)", s.Label, n), l)
	}
	if logX {
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = ticks125{}
		p.X.Label.Text += ", log scale"
	}
	fitRanges(p)
	endOnTick(&p.X)
	return p, nil
}

// maxAxis bounds the values a plot draws: past it the padding and ticks
// of an axis overflow. No latency comes near it; a damaged file can.
const maxAxis = 1e300

// fitRanges gives each axis of p a range gonum/plot can draw. An axis
// over one value (every queueing delay zero at light load, one load, one
// point) gets a range around it and one with no data a default: gonum/plot
// would widen the first by a unit each way, which a log scale cannot show
// below zero and which vanishes next to a large value, and start the second
// at zero; either panics.
func fitRanges(p *plot.Plot) {
	for _, a := range []*plot.Axis{&p.X, &p.Y} {
		_, log := a.Scale.(plot.LogScale)
		switch {
		case a.Min > a.Max && log:
			a.Min, a.Max = 1, 10
		case a.Min > a.Max:
			a.Min, a.Max = 0, 1
		case a.Min == a.Max && log && a.Min > 0:
			a.Min, a.Max = a.Min/2, a.Max*2
		case a.Min == a.Max && !log:
			d := math.Max(math.Abs(a.Min)/10, 1)
			a.Min, a.Max = a.Min-d, a.Max+d
		}
	}
}

// clampPositive replaces values <= 0 (a zero queueing delay) with half the
// smallest positive one, so a log axis can show them.
func clampPositive(sorted []float64) {
	lo := math.Inf(1)
	for _, v := range sorted {
		if v > 0 {
			lo = v
			break
		}
	}
	if math.IsInf(lo, 1) {
		lo = 1e-6
	}
	for i, v := range sorted {
		if v <= 0 {
			sorted[i] = lo / 2
		}
	}
}

// LoadPoint is one policy's result at one offered load.
type LoadPoint struct {
	Load      float64
	Mean, P99 Estimate
}

// LoadCurves draws mean (solid) and P99 (dashed) JCT against offered load,
// one colour per policy, with 95% confidence bars when seeds allow.
func LoadCurves(title string, curves map[string][]LoadPoint, order []string) (*plot.Plot, error) {
	p := newPlot(title, "offered load (x the trace's arrival rate)", "JCT (s, log scale)\nmean solid, P99 dashed")
	p.Legend.Top = true
	p.Legend.Left = true
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = ticks125{}
	lo, hi := math.Inf(1), math.Inf(-1)   // of the points
	blo, bhi := math.Inf(1), math.Inf(-1) // of their bars
	var loads []float64
	for _, name := range order {
		for _, pt := range curves[name] {
			if !slices.Contains(loads, pt.Load) {
				loads = append(loads, pt.Load)
			}
		}
	}
	sort.Float64s(loads)
	// Series side by side at each load (dodged by a fraction of the
	// loads' spacing), so that equal results do not hide one another.
	step := 1.0
	for k := 1; k < len(loads); k++ {
		step = math.Min(step, loads[k]-loads[k-1])
	}
	dodge := func(i int) float64 {
		if len(order) < 2 {
			return 0
		}
		return (float64(i)/float64(len(order)-1) - 0.5) * 0.3 * step
	}
	for i, name := range order {
		pts := curves[name]
		for k := range 2 { // the mean, then P99
			xy := make(plotter.XYs, len(pts))
			errs := make(plotter.YErrors, len(pts))
			for j, pt := range pts {
				e := pt.Mean
				if k == 1 {
					e = pt.P99
				}
				xy[j].X, xy[j].Y = pt.Load+dodge(i), e.Mean
				ci := float64(e.CI95)
				if math.IsNaN(ci) {
					ci = 0
				}
				// On the log axis a bar may not reach zero or below.
				errs[j].Low, errs[j].High = math.Min(ci, 0.99*e.Mean), ci
				lo, hi = math.Min(lo, e.Mean), math.Max(hi, e.Mean)
				blo, bhi = math.Min(blo, e.Mean-errs[j].Low), math.Max(bhi, e.Mean+ci)
			}
			l, s, err := plotter.NewLinePoints(xy)
			if err != nil {
				return nil, err
			}
			l.Color, s.Color = seriesColor(i), seriesColor(i)
			l.Width = vg.Points(2)
			s.Shape, s.Radius = seriesShape(i), vg.Points(3)
			if k == 1 {
				l.Dashes = []vg.Length{vg.Points(6), vg.Points(3)}
			}
			eb, err := plotter.NewYErrorBars(struct {
				plotter.XYs
				plotter.YErrors
			}{xy, errs})
			if err != nil {
				return nil, err
			}
			eb.Color = seriesColor(i)
			p.Add(l, s, eb)
			if k == 0 { // one legend entry a series: the line style says which
				p.Legend.Add(name, l, s)
			}
		}
	}
	// Every load labelled.
	var ticks []plot.Tick
	for _, x := range loads {
		ticks = append(ticks, plot.Tick{Value: x, Label: strconv.FormatFloat(x, 'g', -1, 64) + "x"})
	}
	if len(ticks) > 0 {
		p.X.Tick.Marker = plot.ConstantTicks(ticks)
		p.X.Min, p.X.Max = loads[0]-0.3*step, loads[len(loads)-1]+0.3*step
	}
	if lo > 0 && hi >= lo {
		// Every bar whole on the log axis, a margin below the lowest point
		// and above the highest (the legend is outside the data).
		span := math.Log10(hi/lo) + 0.1
		p.Y.Min = math.Min(blo, lo/math.Pow(10, 0.1*span))
		p.Y.Max = math.Max(bhi, hi*math.Pow(10, 0.1*span))
	}
	fitRanges(p)
	endOnTick(&p.Y)
	return p, nil
}

// Save writes p to path as PNG, SVG or PDF by the extension, atomically.
func Save(p *plot.Plot, path string) error {
	ext := strings.ToLower(strings.TrimPrefix(filepath.Ext(path), "."))
	switch ext {
	case "png", "svg", "pdf":
	default:
		return fmt.Errorf("plot file %s: want a .png, .svg or .pdf name", path)
	}
	wt, err := render(p, 8*vg.Inch, 5*vg.Inch, ext)
	if err != nil {
		return err
	}
	return atomicfile.Write(path, func(w io.Writer) error { _, err := wt.WriteTo(w); return err })
}

// render draws p on a canvas of format ext whose data area is w by h,
// with the legend outside it: in a column to the right of the axes, below
// the title, so that it covers no data however many entries it has (the
// image grows by the column's width).
func render(p *plot.Plot, w, h vg.Length, ext string) (vg.CanvasWriterTo, error) {
	lg := p.Legend
	probe := draw.New(vgimg.New(w, h))
	lr := lg.Rectangle(probe)
	lw := lr.Max.X - lr.Min.X
	if lw <= 0 {
		return draw.NewFormattedCanvas(w, h, ext)
	}
	pad := vg.Points(12)
	cw, err := draw.NewFormattedCanvas(w+lw+3*pad, h, ext)
	if err != nil {
		return nil, err
	}
	dc := draw.New(cw)
	p.Legend = plot.NewLegend() // none inside the data area
	p.Draw(draw.Crop(dc, 0, -(lw + 3*pad), 0, 0))
	p.Legend = lg
	title := vg.Length(0)
	if p.Title.Text != "" {
		r := p.Title.TextStyle.Rectangle(p.Title.Text)
		title = r.Max.Y - r.Min.Y + p.Title.Padding
	}
	col := draw.Crop(dc, dc.Max.X-dc.Min.X-lw-2*pad, -pad, 0, -title-pad)
	lg.Top, lg.Left = true, true
	lg.Draw(col)
	return cw, nil
}

// endOnTick stretches an axis to the next tick its marker labels, so the
// axis never ends past its last label with data beyond it unread. (On a
// log axis gonum/plot also squeezes the data area when an unlabelled tick
// is the last.)
func endOnTick(a *plot.Axis) {
	if !(a.Max > a.Min) {
		return
	}
	if _, log := a.Scale.(plot.LogScale); log {
		if a.Min <= 0 {
			return
		}
		for _, t := range a.Tick.Marker.Ticks(a.Min, a.Max*10) {
			if t.Label != "" && t.Value >= a.Max {
				a.Max = t.Value
				return
			}
		}
		return
	}
	var labeled []float64
	for _, t := range a.Tick.Marker.Ticks(a.Min, a.Max) {
		if t.Label != "" {
			labeled = append(labeled, t.Value)
		}
	}
	if n := len(labeled); n >= 2 && labeled[n-1] < a.Max {
		step := labeled[n-1] - labeled[n-2]
		a.Max = labeled[n-1] + step*math.Ceil((a.Max-labeled[n-1])/step)
	}
}

// ticks125 labels a log axis at 1, 2 and 5 times powers of ten, so short
// ranges still get readable labels.
type ticks125 struct{}

func (ticks125) Ticks(lo, hi float64) []plot.Tick {
	if lo <= 0 {
		lo = hi / 1e6
	}
	// Label 1, 2 and 5 a decade over wide ranges; over two decades or
	// less, enough more mantissas that a short axis still reads.
	labeled := map[int]bool{1: true, 2: true, 5: true}
	if decades := math.Log10(hi / lo); decades <= 1 {
		labeled = map[int]bool{1: true, 2: true, 3: true, 4: true, 5: true, 6: true, 7: true, 8: true, 9: true}
	} else if decades <= 2 {
		labeled = map[int]bool{1: true, 2: true, 3: true, 5: true, 7: true}
	}
	var ts []plot.Tick
	for e := math.Floor(math.Log10(lo)); e <= math.Ceil(math.Log10(hi)); e++ {
		for m := 1; m < 10; m++ {
			v := float64(m) * math.Pow(10, e)
			if v < lo || v > hi {
				continue
			}
			label := ""
			if labeled[m] {
				label = strconv.FormatFloat(v, 'g', -1, 64)
			}
			ts = append(ts, plot.Tick{Value: v, Label: label})
		}
	}
	return ts
}

// ScatterGroup is one colour of a scatter plot.
type ScatterGroup struct {
	Label string
	X, Y  []float64
}

// Scatter draws groups of points on log axes with the y = x diagonal:
// predicted against actual values, one colour a group. Values below floor
// (a log axis has no 0, and a count below one token says nothing more)
// are drawn at floor.
func Scatter(title, xlabel, ylabel string, floor float64, groups []ScatterGroup) (*plot.Plot, error) {
	p := newPlot(title, xlabel, ylabel)
	p.X.Scale, p.Y.Scale = plot.LogScale{}, plot.LogScale{}
	p.X.Tick.Marker, p.Y.Tick.Marker = ticks125{}, ticks125{}
	p.Legend.Top, p.Legend.Left = true, true
	lo, hi := math.Inf(1), math.Inf(-1)
	for i, g := range groups {
		if len(g.X) == 0 {
			continue
		}
		pts := make(plotter.XYs, len(g.X))
		for j := range g.X {
			pts[j].X, pts[j].Y = math.Max(g.X[j], floor), math.Max(g.Y[j], floor)
			lo, hi = math.Min(lo, math.Min(pts[j].X, pts[j].Y)), math.Max(hi, math.Max(pts[j].X, pts[j].Y))
		}
		s, err := plotter.NewScatter(pts)
		if err != nil {
			return nil, err
		}
		s.GlyphStyle.Color = seriesColor(i)
		s.GlyphStyle.Shape = seriesShape(i)
		s.GlyphStyle.Radius = vg.Points(2)
		p.Add(s)
		p.Legend.Add(g.Label, s)
	}
	if lo > 0 && hi >= lo {
		if err := addGuide(p, plotter.XYs{{X: lo, Y: lo}, {X: hi, Y: hi}}, "predicted = actual"); err != nil {
			return nil, err
		}
	}
	fitRanges(p)
	endOnTick(&p.X)
	endOnTick(&p.Y)
	return p, nil
}

// addGuide draws a grey dashed reference line through pts, in the legend
// as label.
func addGuide(p *plot.Plot, pts plotter.XYs, label string) error {
	l, err := plotter.NewLine(pts)
	if err != nil {
		return err
	}
	l.Dashes = []vg.Length{vg.Points(4), vg.Points(4)}
	l.Color = color.Gray{Y: 120}
	p.Add(l)
	p.Legend.Add(label, l)
	return nil
}

// ciPoint is a point with its intervals, for gonum/plot's error bars.
type ciPoint struct {
	plotter.XYs
	plotter.XErrors
	plotter.YErrors
}

// Pareto draws each label's mean JCT against its P99 JCT at one load, the
// trade a tail guard makes: lower-left is better on both, and the points
// no other beats on both (the Pareto front) are joined. Each point has its
// 95% intervals over seeds both ways, when there are several seeds.
func Pareto(title string, curves map[string][]LoadPoint, order []string, load float64) (*plot.Plot, error) {
	p := newPlot(title, "mean job completion time (s)", "P99 job completion time (s)")
	p.Legend.Top = true
	type pt struct{ x, y float64 }
	var all []pt
	for i, label := range order {
		for _, lp := range curves[label] {
			if lp.Load != load || math.IsNaN(lp.Mean.Mean) {
				continue
			}
			s, err := plotter.NewScatter(plotter.XYs{{X: lp.Mean.Mean, Y: lp.P99.Mean}})
			if err != nil {
				return nil, err
			}
			s.GlyphStyle.Color = seriesColor(i)
			s.GlyphStyle.Shape = seriesShape(i)
			s.GlyphStyle.Radius = vg.Points(4)
			p.Add(s)
			p.Legend.Add(label, s)
			all = append(all, pt{lp.Mean.Mean, lp.P99.Mean})
			// The 95% intervals over seeds, both ways, where there are
			// seeds enough for one.
			if mx, my := float64(lp.Mean.CI95), float64(lp.P99.CI95); !math.IsNaN(mx) && !math.IsNaN(my) {
				// A time is never negative: bars stop short of 0 (a
				// log-free axis would otherwise reach below it).
				ci := ciPoint{XYs: plotter.XYs{{X: lp.Mean.Mean, Y: lp.P99.Mean}},
					XErrors: plotter.XErrors{{Low: -math.Min(mx, 0.99*lp.Mean.Mean), High: mx}},
					YErrors: plotter.YErrors{{Low: -math.Min(my, 0.99*lp.P99.Mean), High: my}}}
				xb, err := plotter.NewXErrorBars(ci)
				if err != nil {
					return nil, err
				}
				yb, err := plotter.NewYErrorBars(ci)
				if err != nil {
					return nil, err
				}
				xb.LineStyle.Color, yb.LineStyle.Color = seriesColor(i), seriesColor(i)
				p.Add(xb, yb)
			}
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].x < all[j].x })
	var front plotter.XYs
	best := math.Inf(1)
	for _, q := range all {
		if q.y < best {
			front = append(front, plotter.XY{X: q.x, Y: q.y})
			best = q.y
		}
	}
	if len(front) > 1 {
		if err := addGuide(p, front, "Pareto front"); err != nil {
			return nil, err
		}
	}
	fitRanges(p)
	// A margin, so that no marker or interval end sits on the frame.
	for _, ax := range []*plot.Axis{&p.X, &p.Y} {
		m := (ax.Max - ax.Min) * 0.06
		ax.Min, ax.Max = ax.Min-m, ax.Max+m
	}
	return p, nil
}
