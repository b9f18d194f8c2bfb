package cost

import (
	"bytes"
	"math"
	"strings"
	"testing"
)

func TestDeviceProfileRoundTrip(t *testing.T) {
	p := &DeviceProfile{Meta: map[string]string{"device": "cpu", "kv_blocks": "64"},
		Steps:     []StepSample{{PrefillTokens: 32, PrefillAttn: 528, Seconds: 0.002}, {DecodeSeqs: 4, DecodeContext: 512, Seconds: 0.001}},
		Predictor: []PredictorCall{{Calls: 2, Tokens: 64, Seconds: 0.0005}}}
	var buf bytes.Buffer
	if err := WriteDeviceProfile(&buf, p); err != nil {
		t.Fatal(err)
	}
	got, err := ParseDeviceProfile(buf.Bytes(), "p.csv")
	if err != nil {
		t.Fatal(err)
	}
	if got.Meta["kv_blocks"] != "64" || len(got.Steps) != 2 || got.Steps[1].DecodeContext != 512 || math.Abs(got.Predictor[0].Seconds-0.0005) > 1e-12 {
		t.Fatalf("round trip: %+v", got)
	}
	bad := strings.Replace(buf.String(), "step,32", "step,x", 1)
	if _, err := ParseDeviceProfile([]byte(bad), "p.csv"); err == nil || !strings.Contains(err.Error(), "p.csv line") {
		t.Fatalf("bad number: %v", err)
	}
}

// FuzzParseDeviceProfile: a device profile (elis-sim profile's CSV, with
// or without the kv_cells column) parses from any bytes into finite,
// non-negative shapes and times, or is refused with an error.
func FuzzParseDeviceProfile(f *testing.F) {
	var buf bytes.Buffer
	WriteDeviceProfile(&buf, &DeviceProfile{Meta: map[string]string{"device": "cpu"}, Steps: []StepSample{{PrefillTokens: 8, Seconds: 0.001}}})
	f.Add(buf.Bytes())
	f.Add([]byte("# device=x\nkind,prefill_tokens,prefill_context,prefill_attn,decode_seqs,decode_context,calls,tokens,ms,kv_cells\nstep,0,0,0,1,160,0,0,6.5,8030\nrequest,16,0,0,0,0,0,0,5.9,15\npredictor,0,0,0,0,0,1,32,1.5,0\n"))
	f.Add([]byte("kind,prefill_tokens,prefill_context,prefill_attn,decode_seqs,decode_context,calls,tokens,ms\nstep,512,0,131328,0,0,0,0,20.5\n"))
	f.Add([]byte("kind,prefill_tokens,prefill_context,prefill_attn,decode_seqs,decode_context,calls,tokens,ms,kv_cells\nstep,0,0,0,1,1,0,0,NaN,-1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParseDeviceProfile(data, "p.csv")
		if err != nil {
			return
		}
		ok := func(v float64) bool { return v >= 0 && !math.IsInf(v, 0) }
		for _, s := range p.Steps {
			if !ok(s.Seconds) || !ok(s.PrefillAttn) || s.PrefillTokens < 0 || s.DecodeSeqs < 0 || s.DecodeContext < 0 || s.PrefillContext < 0 || s.KVCells < 0 {
				t.Fatalf("step %+v", s)
			}
		}
		for _, r := range p.Requests {
			if !ok(r.Seconds) || r.PromptTokens < 0 || r.KVCells < -1 {
				t.Fatalf("request %+v", r)
			}
		}
		for _, c := range p.Predictor {
			if !ok(c.Seconds) || c.Calls < 0 || c.Tokens < 0 {
				t.Fatalf("predictor call %+v", c)
			}
		}
	})
}
