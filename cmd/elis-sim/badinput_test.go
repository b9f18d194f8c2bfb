package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/elis-sim/elis-sim/policies"
	"github.com/elis-sim/elis-sim/report"
)

// Bad input is refused the same way everywhere: exit status 2, a message
// naming the flag, file or field and what would be valid, and no output
// left behind. Each case was accepted, or refused otherwise, before.
func TestBadInputExits2AndWritesNothing(t *testing.T) {
	dir := t.TempDir()
	p := func(name string) string { return filepath.Join(dir, name) }
	write := func(name, content string) string {
		if err := os.WriteFile(p(name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p(name)
	}
	trace := write("t.jsonl", "{\"elis_trace\":1}\n{\"id\":\"a\",\"arrival_s\":0,\"prompt_tokens\":8,\"output_tokens\":4}\n")
	empty := write("empty.json", `{"elis_trace": 1, "requests": []}`)
	azure := write("azure.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6805900,374,44\n2023-11-16 18:15:50.9951690,396,109\n")
	cost := write("cost.json", `{"kind":"linear","linear":{"base_s":-1}}`)
	noEff := write("noeff.json", `{"kind":"roofline","roofline":{"model":{"layers":40,"hidden":5120,"heads":40,"kv_heads":40,"intermediate":13824,"vocab":32000},"gpu":{"peak_flops":312e12,"mem_bw":2.039e12,"mem_bytes":85899345920}}}`)
	// A checkpoint's reader looks for config.json beside it first.
	write("config.json", `{"hidden_size":8,"num_attention_heads":2,"num_hidden_layers":1,"vocab_size":16,"max_position_embeddings":16,"intermediate_size":16}`)
	emptyPT, textPT := write("empty.pt", ""), write("text.pt", "not a checkpoint\n")
	rows := write("rows.jsonl", `{"prompt":"hi","generated":"","remaining":3}`+"\n")
	notTokenizer := write("tokenizer.json", `{"model":{}}`)
	// Read as the run goes (a stream): the error comes at the end.
	var long strings.Builder
	long.WriteString("{\"elis_trace\":1}\n")
	for i := range 300 {
		fmt.Fprintf(&long, "{\"id\":\"r%d\",\"arrival_s\":%d,\"prompt_tokens\":8,\"output_tokens\":4}\n", i, i)
	}
	badLate := write("late.jsonl", long.String()+"{\"id\":\"x\",\"arrival_s\":400,\"prompt_tokens\":8}\n")
	repeated := write("repeated.jsonl", long.String()+"{\"id\":\"r7\",\"arrival_s\":400,\"prompt_tokens\":8,\"output_tokens\":4}\n")
	cases := []struct {
		name   string
		args   []string
		want   string
		absent []string // paths that must not exist afterwards
	}{
		{"unknown command", []string{"bogus"}, `unknown command "bogus"`, nil},
		{"unwritable log before the run", []string{"run", "--out", p("d"), "--log-predictions", "/proc/x.log"}, "--log-predictions", []string{p("d")}},
		{"unwritable plot", []string{"run", "--out", p("d2"), "--plot", "/proc/x.png"}, "--plot", []string{p("d2")}},
		{"plot extension", []string{"run", "--plot", p("x.gif")}, "want a .png, .svg or .pdf", []string{p("x.gif")}},
		{"one file for two policies", []string{"run", "-o", p("x.json")}, "give a directory", []string{p("x.json")}},
		{"trace gen into a directory", []string{"trace", "gen", "--n", "3", "-o", dir}, "is a directory", nil},
		{"import window backwards", []string{"trace", "import", "--format", "azure", azure, "--from", "100", "--to", "50", "-o", p("w.json")}, "--from 100 --to 50", []string{p("w.json")}},
		{"import empty window", []string{"trace", "import", "--format", "azure", azure, "--from", "1000", "-o", p("w.json")}, "no request arrives", []string{p("w.json")}},
		{"negative rate", []string{"trace", "import", "--format", "azure", azure, "--rate", "-2", "-o", p("w.json")}, "--rate -2", []string{p("w.json")}},
		{"replay time scale 0", []string{"replay", trace, "--model", "tiny", "--time-scale", "0", "--out", p("r")}, "--time-scale 0", []string{p("r")}},
		{"replay time scale -1", []string{"replay", trace, "--model", "tiny", "--time-scale", "-1"}, "--time-scale -1", nil},
		{"empty trace", []string{"run", empty, "--out", p("e")}, "no requests", []string{p("e")}},
		{"bad last line of a streamed trace", []string{"run", badLate, "--policy", "fcfs", "--out", p("bl.json")}, "late.jsonl line 302: field \"output_tokens\"", []string{p("bl.json")}},
		{"repeated id in a streamed trace", []string{"run", repeated, "--policy", "fcfs,priority", "--out", p("rp")}, `request 300: id "r7" repeats request 7`, []string{p("rp")}},
		{"negative cost coefficient", []string{"run", trace, "--cost-model", cost}, `field "linear.base_s": -1`, nil},
		// Without efficiencies every step cost infinity: the run printed zeros and exited 0.
		{"roofline without efficiencies", []string{"run", trace, "--cost-model", noEff, "--out", p("ne")}, `field "roofline.gpu.efficiency.gemm_flop": 0`, []string{p("ne")}},
		{"noisy sigma not a number", []string{"run", trace, "--predictor", "noisy:sigma=abc"}, `sigma="abc" is not a finite number`, nil},
		{"recorded without predictions", []string{"run", trace, "--predictor", "recorded"}, "no recorded predictions", nil},
		{"missing checkpoint", []string{"replay", trace, "--model", "tiny", "--predictor-model", p("nope.pt")}, "nope.pt: no such file", nil},
		// An empty checkpoint hung the reader (gopickle's pre-1.6 path).
		{"empty checkpoint", []string{"replay", trace, "--model", "tiny", "--predictor-model", emptyPT}, "empty.pt: not a PyTorch checkpoint in torch.save's zip format", nil},
		{"text as checkpoint", []string{"replay", trace, "--model", "tiny", "--predictor-model", textPT}, "text.pt: not a PyTorch checkpoint", nil},
		// A JSON file that is not a tokenizer panicked in the library.
		{"not a tokenizer", []string{"predict", "eval", rows, "--checkpoint", textPT, "--tokenizer", notTokenizer}, "tokenizer.json: not a tokenizer.json this reader understands", nil},
	}
	for _, c := range cases {
		code, out := elis(t, c.args...)
		if code != 2 || !strings.Contains(out, c.want) {
			t.Errorf("%s: exit %d, want 2 and a message with %q:\n%s", c.name, code, c.want, out)
		}
		for _, a := range c.absent {
			if _, err := os.Stat(a); err == nil {
				t.Errorf("%s: left %s behind", c.name, a)
			}
		}
	}
}

// The engine limits' help says 0 means the default; run accepts it.
func TestZeroLimitsMeanDefaults(t *testing.T) {
	code, out := elis(t, "run", "--max-num-seqs", "0", "--max-num-batched-tokens", "0", "--kv-blocks", "0", "--max-model-len", "0", "--json")
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
}

// "elis-sim replay --gpus 4", the usage the tool was specified with,
// replays the embedded workload; on the CPU the workers share the cores
// and the setup line says so.
func TestReplayWithoutTrace(t *testing.T) {
	code, out := elis(t, "replay", "--gpus", "2", "--policy", "fcfs", "--time-scale", "0.02")
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	if !strings.Contains(out, "embedded ELIS-like workload for the CPU") || !strings.Contains(out, "2 workers sharing") {
		t.Fatalf("setup line does not say what ran:\n%s", out)
	}
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[0] == "rejected" && f[1] != "0" {
			t.Fatalf("the embedded workload does not fit the default model:\n%s", out)
		}
	}
}

// Run files written as records stream out of the simulator hold what the
// files written from kept records hold (the records in the order they
// finished, not trace order).
func TestStreamedRunFilesMatchKeptRecords(t *testing.T) {
	dir := t.TempDir()
	streamed, kept := filepath.Join(dir, "s"), filepath.Join(dir, "k")
	if code, out := elis(t, "run", "--out", streamed); code != 0 {
		t.Fatalf("exit %d: %s", code, out)
	}
	if code, out := elis(t, "run", "--out", kept, "--log-predictions", filepath.Join(dir, "p.log")); code != 0 {
		t.Fatalf("exit %d: %s", code, out)
	}
	for _, pol := range []string{"fcfs", "isrtf"} {
		a, err := report.ReadRun(filepath.Join(streamed, pol+".json"))
		if err != nil {
			t.Fatal(err)
		}
		b, err := report.ReadRun(filepath.Join(kept, pol+".json"))
		if err != nil {
			t.Fatal(err)
		}
		if len(a.Records) != len(b.Records) || a.Summary.JCT != b.Summary.JCT || a.Summary.Predictor.N != b.Summary.Predictor.N {
			t.Fatalf("%s: streamed %d records, %+v; kept %d, %+v", pol, len(a.Records), a.Summary.JCT, len(b.Records), b.Summary.JCT)
		}
		byID := map[string]policies.Record{}
		for _, r := range b.Records {
			byID[r.ID] = r
		}
		for _, r := range a.Records {
			k := byID[r.ID]
			if r.Finish != k.Finish || len(r.Predictions) != len(k.Predictions) {
				t.Fatalf("%s record %s: streamed %+v, kept %+v", pol, r.ID, r, k)
			}
		}
	}
}

// predict eval scores the golden ELIS checkpoint on rows the way a user
// runs it, and refuses a bad row naming its line.
func TestPredictEval(t *testing.T) {
	ckpt, tok := shared(t, "golden/elis-tiny/latest_model.pt"), shared(t, "data/tokenizers/bge-tokenizer.json")
	dir := t.TempDir()
	data := filepath.Join(dir, "rows.jsonl")
	var b strings.Builder
	for i, p := range []string{"why is the sky blue", "write a poem", "hello there", "list three colours", "explain gravity"} {
		n := 60 + 40*i
		for g := 0; g < n; g += 50 {
			b.WriteString(`{"input_prompt":"` + p + `","output_prompt":"` + strings.Repeat("word ", g) + `","number_of_output_tokens":` + strconv.Itoa(n) + `,"remaining_tokens":` + strconv.Itoa(n-g) + "}\n")
		}
	}
	os.WriteFile(data, []byte(b.String()), 0o644)
	png := filepath.Join(dir, "scatter.png")
	cache := filepath.Join(dir, "cache")
	code, out := elis(t, "predict", "eval", data, "--checkpoint", ckpt, "--tokenizer", tok, "--split", "test", "--split-by", "prompt", "--plot", png, "--cache", cache)
	if code != 0 || !strings.Contains(out, "network") || !strings.Contains(out, "constant") || !strings.Contains(out, "tokens generated") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	// A second run takes every output from the cache, and reports the same.
	code, again := elis(t, "predict", "eval", data, "--checkpoint", ckpt, "--tokenizer", tok, "--split", "test", "--split-by", "prompt", "--cache", cache)
	if code != 0 || !strings.Contains(again, "the network ran on 0 of") || !strings.Contains(out, "the network ran on") {
		t.Fatalf("second run: exit %d:\n%s", code, again)
	}
	strip := func(s string) string { return s[strings.Index(s, "predictor "):] }
	if strip(out) != strip(again) {
		t.Fatalf("the cached run reports otherwise:\n%s\n%s", out, again)
	}
	if st, err := os.Stat(png); err != nil || st.Size() == 0 {
		t.Fatalf("no plot: %v", err)
	}
	os.WriteFile(data, []byte(b.String()+`{"input_prompt":"x","number_of_output_tokens":10,"remaining_tokens":11}`+"\n"), 0o644)
	code, out = elis(t, "predict", "eval", data, "--checkpoint", ckpt, "--tokenizer", tok, "--cache", "")
	if code != 2 || !strings.Contains(out, "line 17") || !strings.Contains(out, "remaining_tokens") {
		t.Fatalf("bad row: exit %d:\n%s", code, out)
	}
}

// predict trace records the golden network's predictions into an APEX
// import, and the simulator schedules by them.
func TestPredictTraceThenRunRecorded(t *testing.T) {
	ckpt, tok, apex := shared(t, "golden/elis-tiny/latest_model.pt"), shared(t, "data/tokenizers/bge-tokenizer.json"), shared(t, "data/apex-lmsys/lmsys_05.jsonl")
	dir := t.TempDir()
	tr, pred := filepath.Join(dir, "t.json"), filepath.Join(dir, "p.json")
	if code, out := elis(t, "trace", "import", "--format", "apex", apex, "--max", "40", "-o", tr); code != 0 {
		t.Fatalf("import: exit %d: %s", code, out)
	}
	if code, out := elis(t, "predict", "trace", tr, "--checkpoint", ckpt, "--tokenizer", tok, "-o", pred); code != 0 {
		t.Fatalf("predict trace: exit %d: %s", code, out)
	}
	code, out := elis(t, "run", pred, "--policy", "fcfs,isrtf+eager", "--predictor", "recorded") // eager: predict with no queue too
	if code != 0 || !strings.Contains(out, "predictor recorded") || !strings.Contains(out, "predictor MAE") {
		t.Fatalf("run --predictor recorded: exit %d:\n%s", code, out)
	}
}
