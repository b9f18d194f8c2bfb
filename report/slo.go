package report

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/elis-sim/elis-sim/policies"
)

// SLO holds latency objectives; a zero field is not checked.
type SLO struct {
	TTFT, TPOT, JCT float64 // seconds
}

// ParseSLO reads "ttft=2s,tpot=100ms,jct=30s" (Go durations).
func ParseSLO(s string) (SLO, error) {
	var slo SLO
	if s == "" {
		return slo, nil
	}
	for _, part := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		d, err := time.ParseDuration(v)
		if !ok || err != nil {
			return SLO{}, fmt.Errorf("SLO %q: want KEY=DURATION pairs such as ttft=2s,tpot=100ms,jct=30s", part)
		}
		if d <= 0 || d > maxSLO {
			return SLO{}, fmt.Errorf("SLO %q: want a duration above 0 and at most %v", part, maxSLO)
		}
		switch k {
		case "ttft":
			slo.TTFT = d.Seconds()
		case "tpot":
			slo.TPOT = d.Seconds()
		case "jct", "e2e":
			slo.JCT = d.Seconds()
		default:
			return SLO{}, fmt.Errorf("SLO %q: unknown metric %q (valid: ttft, tpot, jct)", part, k)
		}
	}
	return slo, nil
}

// maxSLO bounds an objective: no request of a serving engine is meant to
// wait longer, and below it seconds as float64 hold every nanosecond, so
// an SLO prints back exactly.
const maxSLO = 1000 * time.Hour

// String prints the objectives as ParseSLO reads them, to the nanosecond
// (4100ms prints as 4.1s, not 4.099999999s).
func (s SLO) String() string {
	var parts []string
	for _, kv := range []struct {
		k string
		v float64
	}{{"ttft", s.TTFT}, {"tpot", s.TPOT}, {"jct", s.JCT}} {
		if kv.v > 0 {
			parts = append(parts, kv.k+"="+time.Duration(math.Round(kv.v*float64(time.Second))).String())
		}
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

// Met reports whether a finished request met every objective.
func (s SLO) Met(r *policies.Record) bool {
	if r.Finish < 0 || r.Rejected != "" {
		return false
	}
	if s.TTFT > 0 && r.FirstToken-r.Arrival > s.TTFT {
		return false
	}
	if s.JCT > 0 && r.Finish-r.Arrival > s.JCT {
		return false
	}
	if s.TPOT > 0 && r.Generated > 1 && (r.Finish-r.FirstToken)/float64(r.Generated-1) > s.TPOT {
		return false
	}
	return true
}

// Goodput is the rate of requests that met the SLO over the run's
// makespan, and their fraction of all requests.
type Goodput struct {
	SLO      string  `json:"slo"`
	RPS      float64 `json:"rps"`
	Fraction float64 `json:"fraction"`
}
