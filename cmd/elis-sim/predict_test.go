package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// synthRows are ELIS rows whose truth the prompt tells (a haiku is short,
// an essay long), cut every 50 generated tokens, with three bad rows
// appended: a missing field, a negative count, a text over 512 tokens.
func synthRows(prompts int) (good, withBad string) {
	rng := rand.New(rand.NewPCG(1, 1))
	kinds := []struct {
		prompt string
		total  int
	}{{"Write a haiku about %s.", 30}, {"Summarize %s in one paragraph.", 150}, {"Write a detailed essay about %s.", 400}}
	topics := []string{"the ocean", "mountains", "a robot", "autumn", "trains", "coffee", "the moon", "a garden"}
	var b strings.Builder
	for p := 0; p < prompts; p++ {
		k := kinds[rng.IntN(len(kinds))]
		prompt := fmt.Sprintf(k.prompt, topics[rng.IntN(len(topics))])
		total := k.total + rng.IntN(k.total/5+1) - k.total/10
		for g := 0; g < total; g += 50 {
			fmt.Fprintf(&b, `{"input_prompt":%q,"output_prompt":%q,"number_of_output_tokens":%d,"remaining_tokens":%d}`+"\n",
				prompt, strings.TrimSpace(strings.Repeat("the ", g)), total, total-g)
		}
	}
	good = b.String()
	withBad = good + `{"input_prompt":"x","remaining_tokens":3}` + "\n" +
		`{"input_prompt":"y","output_prompt":"","number_of_output_tokens":-4,"remaining_tokens":0}` + "\n" +
		`{"input_prompt":"` + strings.Repeat("long ", 600) + `","output_prompt":"","number_of_output_tokens":9,"remaining_tokens":9}` + "\n"
	return good, withBad
}

// predict train fine-tunes the golden checkpoint's head on rows whose
// truth is learnable: validation MAE falls, the checkpoint it writes
// scores on the test split what training reported, and bad rows are
// refused or skipped with their lines, as asked.
func TestPredictTrain(t *testing.T) {
	ckpt, tok := shared(t, "golden/elis-tiny/latest_model.pt"), shared(t, "data/tokenizers/bge-tokenizer.json")
	dir := t.TempDir()
	good, withBad := synthRows(150)
	data := filepath.Join(dir, "rows.jsonl")
	os.WriteFile(data, []byte(withBad), 0o644)
	lines := strings.Count(good, "\n")
	out := filepath.Join(dir, "tuned", "tuned.pt")
	os.MkdirAll(filepath.Dir(out), 0o755)
	args := []string{"predict", "train", data, "--init", ckpt, "--tokenizer", tok, "-o", out, "--cache", filepath.Join(dir, "cache"), "--lr", "1e-3", "--epochs", "40", "--patience", "5"}

	code, msg := elis(t, args...)
	for _, want := range []string{"3 bad rows", fmt.Sprintf("line %d: missing field", lines+1), fmt.Sprintf("line %d: field \"number_of_output_tokens\": -4", lines+2),
		fmt.Sprintf("line %d: text of", lines+3)} {
		if code != 2 || !strings.Contains(msg, want) {
			t.Fatalf("bad rows refused: exit %d, want 2 and %q:\n%s", code, want, msg)
		}
	}
	if _, err := os.Stat(out); err == nil {
		t.Fatal("a refused run wrote a checkpoint")
	}

	code, msg = elis(t, append(args, "--bad-rows", "skip")...)
	if code != 0 || !strings.Contains(msg, "skipped 3 bad rows") {
		t.Fatalf("exit %d:\n%s", code, msg)
	}
	var before, after float64
	if _, err := fmt.Sscanf(msg[strings.Index(msg, "validation MAE:"):], "validation MAE: %g tokens before, %g after", &before, &after); err != nil || !(after < 0.8*before) {
		t.Fatalf("validation MAE %v -> %v (%v):\n%s", before, after, err, msg)
	}
	testLine := msg[strings.Index(msg, "on the test split: MAE "):]
	mae := strings.Fields(testLine)[5]

	// The written checkpoint scores the test split as training said, with
	// no encoder run: its encodings are the initial checkpoint's, cached.
	code, ev := elis(t, "predict", "eval", data, "--checkpoint", out, "--tokenizer", tok, "--split", "test", "--bad-rows", "skip", "--cache", filepath.Join(dir, "cache"))
	if code != 0 || !strings.Contains(ev, "the network ran on 0 of") {
		t.Fatalf("eval: exit %d:\n%s", code, ev)
	}
	row := ev[strings.Index(ev, "\nnetwork"):]
	if f := strings.Fields(row); len(f) < 3 || f[2] != strings.TrimSuffix(mae, ",") {
		t.Fatalf("eval of the tuned checkpoint: %q, training said MAE %s", row[:60], mae)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(out), "config.json")); err != nil {
		t.Errorf("no config.json beside the checkpoint: %v", err)
	}
	// A second fine-tune encodes nothing: the cache has every row.
	code, msg = elis(t, append(args, "--bad-rows", "skip", "--epochs", "1", "-o", filepath.Join(dir, "tuned", "again.pt"))...)
	if code != 0 || !strings.Contains(msg, "encoded 0 of "+strconv.Itoa(lines)) {
		t.Fatalf("second run: exit %d:\n%s", code, msg)
	}
}
