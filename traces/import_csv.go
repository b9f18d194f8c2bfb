package traces

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// csvTable reads a CSV file with a header row and gives named columns.
type csvTable struct {
	r    *csv.Reader
	name string
	cols map[string]int
}

func newCSVTable(data []byte, name string, want ...string) (*csvTable, error) {
	r := csv.NewReader(bytes.NewReader(data))
	r.ReuseRecord = true
	r.TrimLeadingSpace = true
	head, err := r.Read()
	if err != nil {
		return nil, fmt.Errorf("%s line 1: header: %w", name, err)
	}
	t := &csvTable{r: r, name: name, cols: map[string]int{}}
	for i, h := range head {
		t.cols[strings.TrimSpace(strings.TrimPrefix(h, "\ufeff"))] = i
	}
	for _, w := range want {
		if _, ok := t.cols[w]; !ok {
			return nil, fmt.Errorf("%s line 1: header lacks column %q (want columns %s)", name, w, strings.Join(want, ","))
		}
	}
	return t, nil
}

// next returns the next record and its line, or io.EOF.
func (t *csvTable) next() ([]string, int, error) {
	rec, err := t.r.Read()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, 0, io.EOF
		}
		return nil, 0, fmt.Errorf("%s: %w", t.name, err)
	}
	line, _ := t.r.FieldPos(0)
	return rec, line, nil
}

func (t *csvTable) int(rec []string, line int, col string) (int, error) {
	s := rec[t.cols[col]]
	v, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || v < 0 {
		return 0, fmt.Errorf("%s line %d: column %s: %q is not a count >= 0", t.name, line, col, s)
	}
	return v, nil
}

func (t *csvTable) float(rec []string, line int, col string) (float64, error) {
	s := rec[t.cols[col]]
	v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || v != v || v < 0 {
		return 0, fmt.Errorf("%s line %d: column %s: %q is not a number >= 0", t.name, line, col, s)
	}
	return v, nil
}

// azureLayouts are the timestamp styles of the Azure LLM inference traces:
// 2023 ("2023-11-16 18:17:03.9799600") and 2024 (with a zone offset).
var azureLayouts = []string{
	"2006-01-02 15:04:05.999999999",
	"2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02 15:04:05.999999999Z0700",
	"2006-01-02T15:04:05.999999999Z07:00",
}

func parseAzureTime(s string) (time.Time, error) {
	for _, l := range azureLayouts {
		if ts, err := time.Parse(l, s); err == nil {
			return ts, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not a timestamp like 2023-11-16 18:17:03.9799600 or 2024-05-10 00:00:00.009930+00:00", s)
}

// importAzure reads the Azure LLM inference trace CSV
// (TIMESTAMP,ContextTokens,GeneratedTokens). Times are made relative to the
// first row.
func importAzure(data []byte, name string, _ ImportOptions) (*Trace, error) {
	tab, err := newCSVTable(data, name, "TIMESTAMP", "ContextTokens", "GeneratedTokens")
	if err != nil {
		return nil, err
	}
	tr := &Trace{Name: "azure"}
	var base time.Time
	for {
		rec, line, err := tab.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		ts, err := parseAzureTime(strings.TrimSpace(rec[tab.cols["TIMESTAMP"]]))
		if err != nil {
			return nil, fmt.Errorf("%s line %d: column TIMESTAMP: %w", name, line, err)
		}
		in, err := tab.int(rec, line, "ContextTokens")
		if err != nil {
			return nil, err
		}
		out, err := tab.int(rec, line, "GeneratedTokens")
		if err != nil {
			return nil, err
		}
		if len(tr.Requests) == 0 {
			base = ts
		}
		tr.Requests = append(tr.Requests, Request{
			ID: "azure-" + strconv.Itoa(len(tr.Requests)), Arrival: ts.Sub(base).Seconds(),
			PromptTokens: atLeastOne(in), OutputTokens: atLeastOne(out),
		})
	}
	// Rows are time-ordered in the published files, but a hand-edited file
	// may start later than it continues: shift so the earliest is 0.
	shiftToZero(tr)
	return tr, nil
}

// importVidur reads Vidur's request CSV (arrived_at in seconds,
// num_prefill_tokens, num_decode_tokens).
func importVidur(data []byte, name string, _ ImportOptions) (*Trace, error) {
	tab, err := newCSVTable(data, name, "arrived_at", "num_prefill_tokens", "num_decode_tokens")
	if err != nil {
		return nil, err
	}
	tr := &Trace{Name: "vidur"}
	for {
		rec, line, err := tab.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		at, err := tab.float(rec, line, "arrived_at")
		if err != nil {
			return nil, err
		}
		in, err := tab.int(rec, line, "num_prefill_tokens")
		if err != nil {
			return nil, err
		}
		out, err := tab.int(rec, line, "num_decode_tokens")
		if err != nil {
			return nil, err
		}
		tr.Requests = append(tr.Requests, Request{
			ID: "vidur-" + strconv.Itoa(len(tr.Requests)), Arrival: at,
			PromptTokens: atLeastOne(in), OutputTokens: atLeastOne(out),
		})
	}
	return tr, nil
}

func shiftToZero(tr *Trace) {
	if len(tr.Requests) == 0 {
		return
	}
	lo := tr.Requests[0].Arrival
	for _, r := range tr.Requests {
		lo = min(lo, r.Arrival)
	}
	for i := range tr.Requests {
		tr.Requests[i].Arrival -= lo
	}
}
