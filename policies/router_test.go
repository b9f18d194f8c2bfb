package policies

import "testing"

// prefix-affinity sends a request where its longest prefix went, within
// the load bound, and otherwise behaves as least-loaded.
func TestPrefixAffinity(t *testing.T) {
	r, _ := NewRouter("prefix-affinity")
	req := func(ids ...uint64) *Request {
		return &Request{PromptTokens: 100 * len(ids), Content: &Content{Hashes: ids, HashBlock: 100}}
	}
	loads := []Load{{Jobs: 3}, {Jobs: 1}, {Jobs: 2}}
	steps := []struct {
		r    *Request
		want int
		why  string
	}{
		{&Request{PromptTokens: 10}, 1, "no content: least loaded"},
		{req(1, 2), 1, "a new prefix: least loaded"},
		{req(1, 2, 3), 1, "extends the prefix sent to 1"},
		{req(5), 1, "another new prefix"},
		{req(1, 9), 1, "shares a block with 1's prefixes"},
	}
	for _, s := range steps {
		if got := r.Route(s.r, loads); got != s.want {
			t.Fatalf("%s: routed to %d, want %d", s.why, got, s.want)
		}
	}
	// Worker 1 now far busier than the bound (least 0 + 4): the prefix
	// goes elsewhere, and is remembered there.
	loads = []Load{{Jobs: 0}, {Jobs: 5}, {Jobs: 2}}
	if got := r.Route(req(1, 2, 3), loads); got != 0 {
		t.Fatalf("over the load bound: routed to %d, want 0", got)
	}
	loads = []Load{{Jobs: 3}, {Jobs: 1}, {Jobs: 2}}
	if got := r.Route(req(1, 2, 3, 4), loads); got != 0 {
		t.Fatalf("after moving: routed to %d, want 0", got)
	}
	// Sessions stick to one replica.
	s := &Request{PromptTokens: 10, Content: &Content{Session: 42}}
	first := r.Route(s, []Load{{Jobs: 1}, {Jobs: 0}, {Jobs: 1}})
	if got := r.Route(s, []Load{{Jobs: 0}, {Jobs: 2}, {Jobs: 0}}); got != first {
		t.Fatalf("session moved from %d to %d", first, got)
	}
}
