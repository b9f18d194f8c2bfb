package policies

import (
	"fmt"
	"math"
)

// The KV cache: a pool of fixed-size blocks and, with prefix caching on,
// vLLM v1's automatic prefix cache (DESIGN.md rule 8, as in
// vllm/v1/core/block_pool.py and kv_cache_manager.py of the v0.11 line):
//
//   - every full block has an identity chained from its parent block's, so
//     equal identities mean equal tokens from the request's start;
//   - a free block keeps its contents (and identity) until it is reused:
//     free blocks wait in a queue, new blocks come from its head, and a
//     block taken from the head forgets its identity (eviction);
//   - a request admitted with nothing computed (new, preempted or
//     resubmitted) takes the longest run of cached blocks from its start,
//     but computes at least its last token;
//   - taking a cached block that has no user removes it from the free
//     queue, so the capacity check counts it like a new block;
//   - blocks are cached as they fill, output included, and a finished or
//     preempted request frees its blocks last block first, so its tail is
//     evicted before its head; a block nobody else can share (private:
//     content no other request names) is named only when its request
//     gives it back to be readmitted, the one time its identity is read
//     (ours: what vLLM would cache, at less cost).
//
// With caching off the pool only counts free blocks, as before.

// Content names what a request's tokens are, so the prefix cache can tell
// blocks of equal content apart from blocks of equal length. The zero
// value says the request shares nothing with any other (its own blocks
// still hit when it is readmitted).
type Content struct {
	// Hashes identify the prompt's leading blocks of HashBlock tokens each
	// (Mooncake's hash_ids): two requests whose first k hashes are equal
	// have equal first k*HashBlock tokens. The last hash may cover a
	// partial block.
	Hashes    []uint64
	HashBlock int
	// Session, when nonzero, says the request's prompt and output are a
	// prefix of one token stream shared by the session: the turns of a
	// conversation, each of whose prompts holds the history so far.
	Session uint64

	chain []uint64 // chained identities of Hashes, made on first use
}

// NewContent is the content named by a trace's fields, nil when they name
// nothing (most requests: no allocation).
func NewContent(hashes []uint64, hashBlock int, session uint64) *Content {
	if len(hashes) == 0 && session == 0 {
		return nil
	}
	return &Content{Hashes: hashes, HashBlock: hashBlock, Session: session}
}

// mix is a 64-bit hash of two words (the splitmix64 finaliser over a
// multiply-xor of both); it never returns 0, which marks "no identity".
func mix(a, b uint64) uint64 {
	h := a*0x9e3779b97f4a7c15 ^ (b + 0x632be59bd9b4e019 + a<<6 + a>>2)
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	if h == 0 {
		h = 1
	}
	return h
}

// Seeds keep the three kinds of identity apart.
const (
	seedChain   = 0x1f0e8d9c7b6a5948
	seedSession = 0x5e5510a5e5510a55
)

// blockKey is the identity of q's block j (tokens [j*bs, (j+1)*bs)) and
// whether another request can share it. Blocks the content does not name
// are private: keyed by the request's serial, they hit only for q.
func (q *Seq) blockKey(j, bs int) (key uint64, shared bool) {
	c := q.Content
	if c == nil {
		return 1<<63 | q.serial<<24 | uint64(j)&(1<<24-1), false
	}
	if c.Session != 0 {
		return mix(c.Session^seedSession, uint64(j)), true
	}
	if end := (j + 1) * bs; c.HashBlock > 0 && end <= q.PromptTokens && end <= len(c.Hashes)*c.HashBlock {
		if c.chain == nil {
			c.chain = make([]uint64, len(c.Hashes))
			h := uint64(seedChain)
			for i, id := range c.Hashes {
				h = mix(h, id)
				c.chain[i] = h
			}
		}
		return mix(c.chain[(end-1)/c.HashBlock], uint64(j)), true
	}
	// A private key needs no hashing: the serial and the block number
	// side by side, with the top bit set (a shared key, a 64-bit hash,
	// equals one with negligible odds).
	return 1<<63 | q.serial<<24 | uint64(j)&(1<<24-1), false
}

// kvPool is the block pool. free counts blocks no request holds, cached
// or not; the rest of the fields exist with caching on only.
type kvPool struct {
	caching bool
	bs, n   int // tokens per block, blocks
	free    int

	hash       []uint64 // a block's identity, 0 when it has none
	indexed    []bool   // the index may name the block (its key is shared)
	ref        []int32  // requests holding the block
	prev, next []int32  // the free queue, linked through block ids; n is its sentinel
	index      map[uint64]int32
	hits       []int32   // lookup scratch
	mark       []bool    // queuedBefore scratch, all false between calls
	spare      [][]int32 // block tables of finished requests, for reuse
}

func newKVPool(n, bs int, caching bool) *kvPool {
	p := &kvPool{caching: caching, bs: bs, n: n, free: n}
	if !caching {
		return p
	}
	p.hash = make([]uint64, n)
	p.indexed = make([]bool, n)
	p.ref = make([]int32, n)
	p.prev = make([]int32, n+1)
	p.next = make([]int32, n+1)
	p.index = make(map[uint64]int32)
	// All blocks start free, in id order.
	for i := 0; i <= n; i++ {
		p.prev[i] = int32((i + n) % (n + 1))
		p.next[i] = int32((i + 1) % (n + 1))
	}
	return p
}

func (p *kvPool) sentinel() int32 { return int32(len(p.hash)) }

func (p *kvPool) pushTail(id int32) {
	s := p.sentinel()
	t := p.prev[s]
	p.next[t], p.prev[id] = id, t
	p.next[id], p.prev[s] = s, id
	p.free++
}

func (p *kvPool) unlink(id int32) {
	a, b := p.prev[id], p.next[id]
	p.next[a], p.prev[b] = b, a
	p.free--
}

// take removes the free queue's head, evicting its cached identity.
func (p *kvPool) take() int32 {
	id := p.next[p.sentinel()]
	p.unlink(id)
	if h := p.hash[id]; h != 0 {
		if p.indexed[id] && p.index[h] == id {
			delete(p.index, h)
		}
		p.hash[id], p.indexed[id] = 0, false
	}
	p.ref[id] = 1
	return id
}

// lookup finds the longest run of q's blocks still cached, leaving their
// ids in p.hits. q holds no blocks. At least q's last token stays to be
// computed, as vLLM caps a hit at num_tokens - 1.
func (p *kvPool) lookup(q *Seq) int {
	p.hits = p.hits[:0]
	limit := (q.Tokens() - 1) / p.bs
	for j := 0; j < limit; j++ {
		key, shared := q.blockKey(j, p.bs)
		var id int32
		if shared {
			var ok bool
			if id, ok = p.index[key]; !ok {
				break
			}
		} else {
			// A private block can only be where q left it.
			if j >= len(q.table) || p.hash[q.table[j]] != key {
				break
			}
			id = q.table[j]
		}
		p.hits = append(p.hits, id)
	}
	return len(p.hits) * p.bs
}

// need is how many free blocks q must take to hold upTo tokens, given the
// cached blocks hits it would reuse (vLLM counts a reused block that has
// no user as taken from the free blocks).
func (p *kvPool) need(q *Seq, upTo int, hits []int32) int {
	n := (upTo+p.bs-1)/p.bs - q.blocks - len(hits)
	for _, id := range hits {
		if p.ref[id] == 0 {
			n++
		}
	}
	return n
}

// grow gives q blocks for upTo tokens, reusing hits first, and caches
// the identities of the blocks those tokens fill (vLLM caches a step's
// blocks when it allocates them).
func (p *kvPool) grow(q *Seq, upTo int, hits []int32) {
	if !p.caching {
		n := (upTo+p.bs-1)/p.bs - q.blocks
		p.free -= n
		q.blocks += n
		return
	}
	if q.blocks == 0 {
		if q.table == nil {
			q.table = p.newTable(q)
		}
		q.table = q.table[:0]
		q.hashed = 0
	}
	for _, id := range hits {
		if p.ref[id] == 0 {
			p.unlink(id)
		}
		p.ref[id]++
		q.table = append(q.table, id)
		q.hashed++ // already cached under the same identity
	}
	for n := (upTo + p.bs - 1) / p.bs; len(q.table) < n; {
		q.table = append(q.table, p.take())
	}
	q.blocks = len(q.table)
	p.cache(q, upTo)
}

// sharedBlocks is how many of q's leading blocks another request may
// share (blockKey's shared ones): all of a session's, the prompt's full
// blocks its hashes name, none of the rest.
func (p *kvPool) sharedBlocks(q *Seq) int32 {
	switch c := q.Content; {
	case c == nil:
		return 0
	case c.Session != 0:
		return math.MaxInt32
	case c.HashBlock > 0:
		return int32(min(q.PromptTokens, len(c.Hashes)*c.HashBlock) / p.bs)
	}
	return 0
}

// cache names q's blocks that another request may share and that are full
// once tokens tokens are computed, as vLLM caches a step's blocks when it
// allocates them. A private block's identity is read only by q's own
// readmission, so it is named when q lets its blocks go to come back
// (keep), and never when q finishes: most blocks of most traces are
// private, and a finished request's are never named.
func (p *kvPool) cache(q *Seq, tokens int) { p.name(q, tokens, q.shared) }

// keep names q's blocks that are full once tokens tokens are computed,
// private ones included, before q gives them back to be readmitted
// (preempted, paused or resubmitted): it finds them where it left them.
func (p *kvPool) keep(q *Seq, tokens int) { p.name(q, tokens, math.MaxInt32) }

// name names q's blocks that are full once tokens tokens are computed, up
// to its first limit blocks.
func (p *kvPool) name(q *Seq, tokens int, limit int32) {
	for full := min(int32(min(tokens/p.bs, len(q.table))), limit); q.hashed < full; q.hashed++ {
		j := q.hashed
		key, shared := q.blockKey(int(j), p.bs)
		id := q.table[j]
		p.hash[id] = key
		if shared {
			p.indexed[id] = true
			if _, ok := p.index[key]; !ok {
				p.index[key] = id
			}
		}
	}
}

// release frees q's blocks, last first, so its tail is evicted before its
// head. With caching on q keeps its block ids so that a readmission can
// find its private blocks where it left them.
func (p *kvPool) release(q *Seq) {
	if !p.caching {
		p.free += q.blocks
		q.blocks = 0
		return
	}
	// Only the blocks q holds: a request that already gave them back (a
	// preempted one, waiting) keeps its table as a memory, not a claim.
	for j := q.blocks - 1; j >= 0; j-- {
		id := q.table[j]
		if p.ref[id]--; p.ref[id] == 0 {
			p.pushTail(id)
		}
	}
	q.blocks = 0
}

// forget drops q's memory of its blocks (it finished: it is never
// readmitted), keeping its table's memory for another request.
func (p *kvPool) forget(q *Seq) {
	if q.table != nil && len(p.spare) < 4096 {
		p.spare = append(p.spare, q.table[:0])
	}
	q.table = nil
}

// newTable is an empty block table for q, with room for all of q's
// tokens: a finished request's table when one is large enough, since a
// million-request run would otherwise allocate one per request.
func (p *kvPool) newTable(q *Seq) []int32 {
	n := (q.PromptTokens + q.OutputTokens + p.bs - 1) / p.bs
	if k := len(p.spare); k > 0 {
		t := p.spare[k-1]
		p.spare = p.spare[:k-1]
		if cap(t) >= n {
			return t
		}
	}
	return make([]int32, 0, n)
}

// check verifies the pool against the requests holding blocks: without
// caching, held plus free blocks are the capacity; with it, every block's
// reference count is its number of holders, the free queue holds exactly
// the blocks nobody holds, and the index points at blocks of its keys.
func (p *kvPool) check(holders []*Seq) error {
	if !p.caching {
		held := 0
		for _, q := range holders {
			held += q.blocks
		}
		if held+p.free != p.n || p.free < 0 {
			return fmt.Errorf("%d blocks held + %d free != capacity %d", held, p.free, p.n)
		}
		return nil
	}
	refs := make([]int32, len(p.ref))
	for _, q := range holders {
		if q.blocks != len(q.table) && q.blocks != 0 {
			return fmt.Errorf("request %s holds %d blocks with %d in its table", q.ID, q.blocks, len(q.table))
		}
		for _, id := range q.table[:q.blocks] {
			refs[id]++
		}
	}
	queued := 0
	for id := p.next[p.sentinel()]; id != p.sentinel(); id = p.next[id] {
		if refs[id] != 0 {
			return fmt.Errorf("block %d is in the free queue and held by %d requests", id, refs[id])
		}
		if queued++; queued > len(p.ref) {
			return fmt.Errorf("the free queue loops")
		}
	}
	for id, r := range refs {
		if p.ref[id] != r {
			return fmt.Errorf("block %d: reference count %d, held by %d requests", id, p.ref[id], r)
		}
	}
	if queued != p.free {
		return fmt.Errorf("%d blocks in the free queue, %d counted free", queued, p.free)
	}
	for key, id := range p.index {
		if p.hash[id] != key {
			return fmt.Errorf("the prefix index names block %d for a key it does not hold", id)
		}
	}
	return nil
}

// queuedBefore is how many of the first limit blocks of the free queue
// come before the first of ids (limit when none does): what take may hand
// out before it evicts one of them. It walks at most limit blocks.
func (p *kvPool) queuedBefore(ids []int32, limit int) int {
	if p.mark == nil {
		p.mark = make([]bool, len(p.hash))
	}
	for _, id := range ids {
		p.mark[id] = true
	}
	n := 0
	for id := p.next[p.sentinel()]; id != p.sentinel() && n < limit && !p.mark[id]; id = p.next[id] {
		n++
	}
	for _, id := range ids {
		p.mark[id] = false
	}
	return n
}
