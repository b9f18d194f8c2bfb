package cost

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
)

// DeviceProfile is what "elis-sim profile" measures on a device: timed
// scheduler steps and predictor calls, with the setup they were taken in
// ("device", "model", engine settings) as key=value metadata.
type DeviceProfile struct {
	Meta      map[string]string
	Steps     []StepSample
	Predictor []PredictorCall
	// Requests are lone requests' times to first token, from a live
	// server's profile (profile --url).
	Requests []RequestSample
}

// PredictorCall is one timed batched predictor call.
type PredictorCall struct {
	Calls, Tokens int
	Seconds       float64
}

// maxProfileValue bounds a profile's numbers: counts become ints, and no
// shape or time comes near it.
const maxProfileValue = 1 << 50

var profileHeader = []string{"kind", "prefill_tokens", "prefill_context", "prefill_attn", "decode_seqs", "decode_context", "calls", "tokens", "ms", "kv_cells"}

// profileHeaderV1 is the header before kv_cells (occupied KV cells, -1 not
// measured): such files still read, their cells not measured.
var profileHeaderV1 = profileHeader[:9]

// WriteDeviceProfile writes p as CSV: "# key=value" lines, a header, then a
// row per timing (kind "step" or "predictor").
func WriteDeviceProfile(w io.Writer, p *DeviceProfile) error {
	bw := bufio.NewWriter(w)
	keys := make([]string, 0, len(p.Meta))
	for k := range p.Meta {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(bw, "# %s=%s\n", k, p.Meta[k])
	}
	cw := csv.NewWriter(bw)
	cw.Write(profileHeader)
	f := func(v float64) string { return strconv.FormatFloat(v, 'g', 8, 64) }
	for _, s := range p.Steps {
		cw.Write([]string{"step", strconv.Itoa(s.PrefillTokens), strconv.FormatInt(s.PrefillContext, 10), f(s.PrefillAttn),
			strconv.Itoa(s.DecodeSeqs), strconv.FormatInt(s.DecodeContext, 10), "0", "0", f(s.Seconds * 1e3), strconv.FormatInt(s.KVCells, 10)})
	}
	for _, c := range p.Predictor {
		cw.Write([]string{"predictor", "0", "0", "0", "0", "0", strconv.Itoa(c.Calls), strconv.Itoa(c.Tokens), f(c.Seconds * 1e3), "0"})
	}
	for _, r := range p.Requests {
		cw.Write([]string{"request", strconv.Itoa(r.PromptTokens), "0", "0", "0", "0", "0", "0", f(r.Seconds * 1e3), strconv.FormatInt(r.KVCells, 10)})
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return err
	}
	return bw.Flush()
}

// ReadDeviceProfile reads a device profile CSV.
func ReadDeviceProfile(path string) (*DeviceProfile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseDeviceProfile(data, path)
}

// ParseDeviceProfile decodes a device profile; path is used in errors.
func ParseDeviceProfile(data []byte, path string) (*DeviceProfile, error) {
	p := &DeviceProfile{Meta: map[string]string{}}
	var body bytes.Buffer
	lines := 0
	for _, line := range strings.SplitAfter(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "# "); ok {
			k, v, _ := strings.Cut(strings.TrimSpace(rest), "=")
			p.Meta[k] = v
			lines++
			continue
		}
		body.WriteString(line)
	}
	r := csv.NewReader(&body)
	head, err := r.Read()
	cols := len(profileHeader)
	switch {
	case err == nil && strings.Join(head, ",") == strings.Join(profileHeaderV1, ","):
		cols = len(profileHeaderV1)
		r.FieldsPerRecord = cols
	case err != nil || strings.Join(head, ",") != strings.Join(profileHeader, ","):
		return nil, fmt.Errorf("profile %s line %d: want the header %s (a file from elis-sim profile)", path, lines+1, strings.Join(profileHeader, ","))
	}
	for row := lines + 2; ; row++ {
		rec, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("profile %s: %w", path, err)
		}
		if len(rec) != cols {
			return nil, fmt.Errorf("profile %s line %d: %d columns, want %d", path, row, len(rec), cols)
		}
		cells := int64(-1)
		if cols == len(profileHeader) {
			if cells, err = strconv.ParseInt(rec[9], 10, 64); err != nil || cells < -1 {
				return nil, fmt.Errorf("profile %s line %d: column kv_cells: %q is not a count (-1: not measured)", path, row, rec[9])
			}
		}
		var v [8]float64
		for i := range v {
			if v[i], err = strconv.ParseFloat(rec[i+1], 64); err != nil || !(v[i] >= 0) || math.IsInf(v[i], 0) || v[i] > maxProfileValue {
				return nil, fmt.Errorf("profile %s line %d: column %s: %q is not a finite number >= 0", path, row, profileHeader[i+1], rec[i+1])
			}
		}
		switch rec[0] {
		case "step":
			p.Steps = append(p.Steps, StepSample{PrefillTokens: int(v[0]), PrefillContext: int64(v[1]), PrefillAttn: v[2],
				DecodeSeqs: int(v[3]), DecodeContext: int64(v[4]), KVCells: max(cells, 0), Seconds: v[7] / 1e3})
		case "predictor":
			p.Predictor = append(p.Predictor, PredictorCall{Calls: int(v[5]), Tokens: int(v[6]), Seconds: v[7] / 1e3})
		case "request":
			p.Requests = append(p.Requests, RequestSample{PromptTokens: int(v[0]), KVCells: cells, Seconds: v[7] / 1e3})
		default:
			return nil, fmt.Errorf("profile %s line %d: kind %q (valid: step, predictor, request)", path, row, rec[0])
		}
	}
	if len(p.Steps) == 0 {
		return nil, fmt.Errorf("profile %s: no step timings", path)
	}
	return p, nil
}
