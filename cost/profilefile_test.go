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

func FuzzParseDeviceProfile(f *testing.F) {
	var buf bytes.Buffer
	WriteDeviceProfile(&buf, &DeviceProfile{Meta: map[string]string{"device": "cpu"}, Steps: []StepSample{{PrefillTokens: 8, Seconds: 0.001}}})
	f.Add(buf.Bytes())
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParseDeviceProfile(data, "fuzz")
		if err != nil {
			return
		}
		for _, s := range p.Steps {
			if s.Seconds < 0 || s.PrefillTokens < 0 || s.DecodeSeqs < 0 {
				t.Fatalf("negative value accepted: %+v", s)
			}
		}
	})
}
