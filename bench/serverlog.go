package bench

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"strconv"
	"strings"

	"github.com/elis-sim/elis-sim/policies"
)

// The ISRTF fork's prediction lines, wherever they sit in a log line
// (after vLLM's own prefix of level, time and file):
//
//	[ELIS] Request cmpl-7 initial prediction: 150.3 tokens
//	[ELIS] Request cmpl-7 prediction updated: 150.3 -> 98.5 (at 50 tokens)
var (
	initialLine = regexp.MustCompile(`\[ELIS\] Request (\S+) initial prediction: ([-+0-9.eEinfaINF]+) tokens`)
	updatedLine = regexp.MustCompile(`\[ELIS\] Request (\S+) prediction updated: \S+ -> ([-+0-9.eEinfaINF]+) \(at (\d+) tokens\)`)
)

// ServerLog holds the predictions a server logged, by its request id.
type ServerLog map[string][]policies.Prediction

// ReadServerLog reads the fork's [ELIS] lines from r, skipping every other
// line. name is used in errors.
func ReadServerLog(r io.Reader, name string) (ServerLog, error) {
	out := ServerLog{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	line := 0
	for sc.Scan() {
		line++
		t := sc.Text()
		if !strings.Contains(t, "[ELIS]") {
			continue
		}
		var id, val string
		gen := 0
		if m := initialLine.FindStringSubmatch(t); m != nil {
			id, val = m[1], m[2]
		} else if m := updatedLine.FindStringSubmatch(t); m != nil {
			id, val = m[1], m[2]
			gen, _ = strconv.Atoi(m[3])
		} else {
			continue // another [ELIS] line
		}
		v, err := strconv.ParseFloat(val, 64)
		if err == nil && math.IsNaN(v) {
			err = errors.New("not a number of tokens") // the regexp lets "nan" through
		}
		if err != nil {
			return nil, fmt.Errorf("%s line %d: prediction %q: %w", name, line, val, err)
		}
		out[id] = append(out[id], policies.Prediction{At: -1, Generated: gen, Predicted: v})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s line %d: %w", name, line+1, err)
	}
	return out, nil
}

// Attach gives each of res's records the predictions logged for its
// server id (vLLM logs its internal id, the stream's id plus a suffix like
// "-0"), with the true remaining tokens from what the request generated.
// It returns how many records got predictions.
func (l ServerLog) Attach(res *Result) int {
	if len(l) == 0 {
		return 0
	}
	byPrefix := map[string][]policies.Prediction{}
	for id, ps := range l {
		byPrefix[id] = ps
		if i := strings.LastIndexByte(id, '-'); i > 0 {
			if _, err := strconv.Atoi(id[i+1:]); err == nil {
				byPrefix[id[:i]] = ps
			}
		}
	}
	n := 0
	for i := range res.Records {
		r, id := &res.Records[i], res.Replies[i].ServerID
		ps, ok := byPrefix[id]
		if !ok || id == "" {
			continue
		}
		total := r.Generated
		if total == 0 {
			total = r.OutputTokens
		}
		r.Predictions = make([]policies.Prediction, len(ps))
		for k, p := range ps {
			p.Actual = total - p.Generated
			r.Predictions[k] = p
		}
		n++
	}
	return n
}
