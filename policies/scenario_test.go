package policies

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"
)

// scriptPredictor returns scripted predictions: for each request, the
// entry with the largest generated count not above the request's; without
// one, the true remaining tokens.
type scriptPredictor map[string][][2]float64

func (p scriptPredictor) Predict(r *Request, generated int) float64 {
	v := float64(r.OutputTokens - generated)
	for _, e := range p[r.ID] {
		if int(e[0]) <= generated {
			v = e[1]
		}
	}
	return v
}

// TestScenarios runs the scripts in testdata/: each file is a sequence of
// commands and the expected output of each.
//
//	config policy=fcfs budget=16 seqs=4 blocks=8 block=4 maxlen=1000 [mode=paper] [interval=50] [threshold=0] [aging=N,M] [limit=0.8] [caching] [lazy] [async] [margin=TOKENS,RATIO] [cap=S] [slots] [sums]
//	add id=a prompt=10 output=3 [priority=0] [pred=0:5,2:1] [t=0] [hashes=1,2,3 hashblock=8] [session=7]
//	step [n=1]     schedule one step, print it (after the asks it stopped for), complete it one second later
//	advance [n=N]  schedule one step and the quiet stretch after it (Stretch, at most N-1 steps), complete them a second apart (Advance)
//	state          print the queues and the free blocks
//	cache          print the prefix cache: free queue (head first), block tables, hits
//	abort id=a     the client of a left: drop it
func TestScenarios(t *testing.T) {
	datadriven.Walk(t, "testdata", func(t *testing.T, path string) {
		var s *Scheduler
		preds := scriptPredictor{}
		var answers []float64
		ids := map[string]int{}
		now := 0.0
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			args := map[string]string{}
			for _, a := range d.CmdArgs {
				args[a.Key] = strings.Join(a.Vals, ",")
			}
			num := func(k string, def int) int {
				v, ok := args[k]
				if !ok {
					return def
				}
				n, err := strconv.Atoi(v)
				if err != nil {
					d.Fatalf(t, "%s=%s: %v", k, v, err)
				}
				return n
			}
			switch d.Cmd {
			case "config":
				mode, err := ParseRerank(orDefault(args["mode"], "paper"))
				if err != nil {
					d.Fatalf(t, "%v", err)
				}
				pol, err := New(orDefault(args["policy"], "fcfs"), mode)
				if err != nil {
					d.Fatalf(t, "%v", err)
				}
				cfg := Config{MaxBatchedTokens: num("budget", 16), MaxSeqs: num("seqs", 4), BlockSize: num("block", 4),
					NumBlocks: num("blocks", 8), MaxModelLen: num("maxlen", 1000), PredictionInterval: num("interval", 50),
					LongPrefillThreshold: num("threshold", 0)}
				_, cfg.PrefixCaching = args["caching"]
				_, cfg.LazyPredictions = args["lazy"]
				_, cfg.AsyncPredictions = args["async"]
				_, cfg.Slots = args["slots"]
				if c, ok := args["cap"]; ok {
					cfg.Guard.SlowdownCap, _ = strconv.ParseFloat(c, 64)
				}
				if m, ok := args["margin"]; ok {
					fmt.Sscanf(m, "%g,%g", &cfg.DisplaceMargin, &cfg.DisplaceRatio)
				}
				if a, ok := args["aging"]; ok {
					fmt.Sscanf(a, "%d,%d", &cfg.Guard.AgingSteps, &cfg.Guard.PromoteSteps)
				}
				if l, ok := args["limit"]; ok {
					cfg.Guard.PreemptLimit, _ = strconv.ParseFloat(l, 64)
				}
				s, err = NewScheduler(cfg, pol)
				if err != nil {
					return "error: " + err.Error()
				}
				s.KeepHistory = true
				_, s.SumsOnly = args["sums"]
				now = 0
				clear(ids)
				return "ok"
			case "add":
				id := args["id"]
				if p, ok := args["pred"]; ok {
					for _, e := range strings.Split(p, ",") {
						var g, v float64
						fmt.Sscanf(e, "%g:%g", &g, &v)
						preds[id] = append(preds[id], [2]float64{g, v})
					}
				}
				r := Request{ID: id, Index: len(ids), Arrival: now, PromptTokens: num("prompt", 1), OutputTokens: num("output", 1), Priority: num("priority", 0)}
				r.Content = &Content{}
				if h, ok := args["hashes"]; ok {
					for _, v := range strings.Split(h, ",") {
						n, _ := strconv.ParseUint(v, 10, 64)
						r.Content.Hashes = append(r.Content.Hashes, n)
					}
					r.Content.HashBlock = num("hashblock", 4)
				}
				r.Content.Session = uint64(num("session", 0))
				ids[id] = r.Index
				s.Add(r, now)
				answers = AnswerAll(s, preds, answers)
				var out []string
				for _, r := range s.TakeFinished() {
					out = append(out, fmt.Sprintf("rejected %s: %s", r.ID, r.Rejected))
				}
				return orDefault(strings.Join(out, "\n"), "ok")
			case "step":
				n := num("n", 1)
				var out []string
				for i := 0; i < n; i++ {
					out = append(out, step(s, &now, preds))
					if err := s.CheckInvariants(); err != nil {
						d.Fatalf(t, "%v", err)
					}
				}
				return strings.Join(out, "\n")
			case "advance":
				b := s.Schedule(now)
				if b.Wait {
					d.Fatalf(t, "the step waits for predictions")
				}
				first := b.Step
				k := s.Stretch(num("n", 32) - 1)
				if k > 0 {
					// The step built and the copies but the last end at
					// once; the last is built, and ends as any step.
					ends := make([]float64, k)
					for i := range ends {
						now++
						ends[i] = now
					}
					s.Advance(ends)
					if err := s.CheckInvariants(); err != nil {
						d.Fatalf(t, "%v", err)
					}
				}
				now++
				s.Complete(now)
				if err := s.CheckInvariants(); err != nil {
					d.Fatalf(t, "%v", err)
				}
				out := fmt.Sprintf("steps %d-%d: a stretch of %d after the first", first, first+int64(k), k)
				for _, r := range s.TakeFinished() {
					out += " | done " + r.ID
				}
				return out + fmt.Sprintf(" | free %d", s.FreeBlocks())
			case "state":
				return dumpState(s)
			case "cache":
				return dumpCache(s)
			case "abort":
				if !s.Abort(ids[args["id"]], now) {
					return "not in the core"
				}
				if err := s.CheckInvariants(); err != nil {
					d.Fatalf(t, "%v", err)
				}
				recs := s.TakeFinished()
				return fmt.Sprintf("%s: %s | free %d", recs[0].ID, recs[0].Rejected, s.FreeBlocks())
			}
			d.Fatalf(t, "unknown command %q", d.Cmd)
			return ""
		})
	})
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// step builds one step, answering the core's asks as the simulator does:
// before it, and whenever it waits for them.
func step(s *Scheduler, now *float64, preds Predictor) string {
	var answers []float64
	answers = AnswerAll(s, preds, answers)
	b := s.Schedule(*now)
	var waited []string // the predictions the step stopped for
	for b.Wait {
		for _, a := range s.Asks() {
			waited = append(waited, fmt.Sprintf("%s@%d", a.Request.ID, a.Generated))
		}
		answers = AnswerAll(s, preds, answers)
		b = s.Schedule(*now)
	}
	answers = AnswerAll(s, preds, answers) // asynchronous asks: beside the step
	var sb strings.Builder
	if len(waited) > 0 {
		fmt.Fprintf(&sb, "asks %s; ", strings.Join(waited, " "))
	}
	fmt.Fprintf(&sb, "step %d:", b.Step)
	if b.Empty() {
		sb.WriteString(" idle")
	}
	if b.Lazy > 0 {
		fmt.Fprintf(&sb, " steady %d over %d cached", b.Lazy, b.DecodeContext-decodeContext(b.Items))
	}
	for _, it := range b.Items {
		kind := "d"
		if it.Tokens > 1 || it.Context < it.Seq.PromptTokens {
			kind = "p"
		}
		fmt.Fprintf(&sb, " %s:%s%d", it.Seq.ID, kind, it.Tokens)
	}
	fmt.Fprintf(&sb, " | tokens %d", b.Tokens())
	if b.Preempted > 0 {
		fmt.Fprintf(&sb, " | preempted %d", b.Preempted)
	}
	if b.Predictions > 0 {
		fmt.Fprintf(&sb, " | predictions %d", b.Predictions)
	}
	if b.KVCells > 0 {
		fmt.Fprintf(&sb, " | cells %d", b.KVCells)
	}
	*now++
	s.Complete(*now)
	AnswerAll(s, preds, answers)
	recs := s.TakeFinished()
	sort.Slice(recs, func(i, j int) bool { return recs[i].ID < recs[j].ID })
	for _, r := range recs {
		fmt.Fprintf(&sb, " | done %s", r.ID)
	}
	fmt.Fprintf(&sb, " | free %d", s.FreeBlocks())
	return sb.String()
}

// decodeContext sums the contexts of the decodes listed in items.
func decodeContext(items []Item) int64 {
	var c int64
	for _, it := range items {
		if it.Decode {
			c += int64(it.Context)
		}
	}
	return c
}

func dumpState(s *Scheduler) string {
	var sb strings.Builder
	sb.WriteString("running:")
	for _, q := range s.running {
		c, gen, steady := s.computed(q), q.Generated, ""
		if q.steady {
			gen, steady = c-q.PromptTokens+1, " steady"
		}
		fmt.Fprintf(&sb, " %s(gen=%d comp=%d blk=%d%s%s)", q.ID, gen, c, s.blocksOf(q), predString(q), steady)
	}
	sb.WriteString("\nwaiting:")
	w := slices.Collect(s.waiting.All())
	sort.Slice(w, func(i, j int) bool { return s.pol.Less(w[i], w[j]) })
	for _, q := range w {
		extra := ""
		if q.paused {
			extra = " paused"
		}
		if q.promoted != 0 {
			extra += " promoted"
		}
		fmt.Fprintf(&sb, " %s(gen=%d comp=%d blk=%d%s%s)", q.ID, q.Generated, q.Computed, q.blocks, predString(q), extra)
	}
	fmt.Fprintf(&sb, "\nfree: %d", s.kv.free)
	return sb.String()
}

func predString(q *Seq) string {
	if q.rec.predictions == nil {
		return ""
	}
	return fmt.Sprintf(" pred=%g", q.Predicted)
}

// dumpCache prints the free queue from its head (the next block evicted),
// marking cached blocks with * and a run of k unnamed blocks (a counted
// pool's) as kx-, each running or waiting request's block
// table, and the hit counters.
func dumpCache(s *Scheduler) string {
	var sb strings.Builder
	p := s.kv
	sb.WriteString("free queue:")
	for id := p.next[p.sentinel()]; id != p.sentinel(); id = p.next[id] {
		if p.isRun(id) {
			fmt.Fprintf(&sb, " %dx-", p.runs[id-p.sentinel()-1]) // unnamed blocks of a counted pool
			continue
		}
		fmt.Fprintf(&sb, " %d", id)
		if p.hash[id] != 0 {
			sb.WriteString("*")
		}
	}
	all := append(slices.Clone(s.running), slices.Collect(s.waiting.All())...)
	sort.Slice(all, func(i, j int) bool { return all[i].ID < all[j].ID })
	for _, q := range all {
		if q.blocks > 0 {
			fmt.Fprintf(&sb, "\n%s: %v", q.ID, q.BlockTable())
		}
	}
	fmt.Fprintf(&sb, "\nhit %d of %d tokens", s.stats.PrefixHit, s.stats.PrefixQueried)
	return sb.String()
}
