package setup

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/elis-sim/elis-sim/policies"
)

// Policy is one --policy entry, NAME[/MODE][+GUARD...]: a policy, the
// ISRTF mode when it names one, and guards (isrtf/patch+lazy+cap=2), so
// that variants of a policy run side by side in one table or sweep.
type Policy struct {
	Entry   string // as written
	Name    string // the policy
	Mode    policies.Rerank
	ModeSet bool
	guards  []func(*Knobs)
}

// Knobs are what a policy entry sets on a run, whichever driver runs it.
type Knobs struct {
	Policy *string
	Mode   *policies.Rerank
	Engine *policies.Config
	// Sync prices predictor calls one request at a time (the vLLM patch's
	// way) instead of one batched call per step.
	Sync *bool
}

// ParsePolicies reads a comma-separated list of entries.
func ParsePolicies(list string) ([]*Policy, error) {
	var out []*Policy
	for _, e := range strings.Split(list, ",") {
		p, err := ParsePolicy(strings.TrimSpace(e))
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// ParsePolicy reads NAME[/MODE][+GUARD...].
func ParsePolicy(entry string) (*Policy, error) {
	parts := strings.Split(entry, "+")
	p := &Policy{Entry: entry, Name: parts[0]}
	if name, mode, ok := strings.Cut(parts[0], "/"); ok {
		m, err := policies.ParseRerank(mode)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", entry, err)
		}
		p.Name, p.Mode, p.ModeSet = name, m, true
	}
	if _, err := policies.New(p.Name, policies.RerankPause); err != nil {
		return nil, err
	}
	for _, g := range parts[1:] {
		key, val, _ := strings.Cut(g, "=")
		num := func() (float64, error) {
			v, err := strconv.ParseFloat(val, 64)
			if err != nil || !(v >= 0) {
				return 0, fmt.Errorf("%q: guard %q wants a number", entry, g)
			}
			return v, nil
		}
		switch key {
		case "lazy", "eager":
			lazy := key == "lazy"
			p.guards = append(p.guards, func(k *Knobs) { k.Engine.LazyPredictions = lazy })
		case "sync", "batched", "async":
			sync, async := key == "sync", key == "async"
			p.guards = append(p.guards, func(k *Knobs) { *k.Sync, k.Engine.AsyncPredictions = sync, async })
		case "cap", "limit":
			v, err := num()
			if err != nil {
				return nil, err
			}
			if key == "cap" {
				p.guards = append(p.guards, func(k *Knobs) { k.Engine.Guard.SlowdownCap = v })
			} else {
				p.guards = append(p.guards, func(k *Knobs) { k.Engine.Guard.PreemptLimit = v })
			}
		case "margin":
			m, r, err := parseMargin(val)
			if err != nil {
				return nil, fmt.Errorf("%q: guard %q wants margin=TOKENS[:RATIO]", entry, g)
			}
			p.guards = append(p.guards, func(k *Knobs) { k.Engine.DisplaceMargin, k.Engine.DisplaceRatio = m, r })
		default:
			return nil, fmt.Errorf("%q: unknown guard %q (valid: %s)", entry, g, GuardHelp)
		}
	}
	return p, nil
}

// parseMargin reads TOKENS[:RATIO].
func parseMargin(s string) (tokens, ratio float64, err error) {
	tok, r, hasRatio := strings.Cut(s, ":")
	if tokens, err = strconv.ParseFloat(tok, 64); err == nil && hasRatio {
		ratio, err = strconv.ParseFloat(r, 64)
	}
	return tokens, ratio, err
}

// Apply sets the entry's policy, its mode when it names one, and its
// guards on k.
func (p *Policy) Apply(k Knobs) {
	*k.Policy = p.Name
	if p.ModeSet {
		*k.Mode = p.Mode
	}
	for _, g := range p.guards {
		g(&k)
	}
}

// Label names the entry's run in tables and plots: an entry with a mode or
// guards is its own name; a plain policy that re-ranks by prediction gets
// the run's mode when it is not the paper's.
func (p *Policy) Label(mode policies.Rerank) string {
	if p.ModeSet || len(p.guards) > 0 {
		return p.Entry
	}
	if policies.Reranks(p.Name) && mode != policies.RerankPause {
		return p.Name + "/" + mode.String()
	}
	return p.Name
}
