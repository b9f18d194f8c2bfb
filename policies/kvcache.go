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
//
// A counted pool (a driver that reads no block table: Scheduler.SumsOnly)
// gives a block an id only while it is named: a private block nobody has
// named is one of a count, held by its request or free in a run of the
// free queue, since nothing can tell such blocks apart. Eviction, hits and
// the free queue's order of named blocks are the same as an uncounted
// pool's, but a million-request run takes and frees its prompts' and
// outputs' blocks a run at a time rather than one by one.
type kvPool struct {
	caching bool
	counted bool
	bs, n   int // tokens per block, blocks
	free    int

	hash    []uint64 // a block's identity, 0 when it has none
	indexed []bool   // the index may name the block (its key is shared)
	ref     []int32  // requests holding the block
	// The free queue, head first, is a list linked through prev and next
	// by node: node i < n is block i, node n the sentinel, and (counted
	// pools only) a node above n a run of runs[node-n-1] unnamed blocks.
	prev, next []int32
	runs       []int32
	spareRuns  []int32 // run nodes out of the queue
	anon       []int32 // counted: ids of the unnamed blocks, held or free
	index      map[uint64]int32
	hits       []int32   // lookup scratch
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

// count makes an untouched caching pool counted: its blocks, all free
// and unnamed, become one run, their ids a stack handing out the lowest
// first.
func (p *kvPool) count() {
	if !p.caching || p.counted {
		return
	}
	p.counted = true
	s := p.sentinel()
	p.next[s], p.prev[s] = s, s
	p.free = 0
	p.pushRun(p.n)
	p.anon = make([]int32, p.n)
	for i := range p.anon {
		p.anon[i] = int32(p.n - 1 - i)
	}
}

func (p *kvPool) sentinel() int32 { return int32(len(p.hash)) }

func (p *kvPool) isRun(node int32) bool { return node > p.sentinel() }

// link puts node at the free queue's tail; cut takes it out.
func (p *kvPool) link(node int32) {
	s := p.sentinel()
	t := p.prev[s]
	p.next[t], p.prev[node] = node, t
	p.next[node], p.prev[s] = s, node
}

func (p *kvPool) cut(node int32) {
	a, b := p.prev[node], p.next[node]
	p.next[a], p.prev[b] = b, a
}

// pushTail frees named block id at the queue's tail.
func (p *kvPool) pushTail(id int32) {
	p.link(id)
	p.free++
}

// pushRun frees k unnamed blocks at the queue's tail (counted pools).
func (p *kvPool) pushRun(k int) {
	if k == 0 {
		return
	}
	p.free += k
	if t := p.prev[p.sentinel()]; p.isRun(t) {
		p.runs[t-p.sentinel()-1] += int32(k)
		return
	}
	var node int32
	if m := len(p.spareRuns); m > 0 {
		node = p.spareRuns[m-1]
		p.spareRuns = p.spareRuns[:m-1]
	} else {
		node = p.sentinel() + 1 + int32(len(p.runs))
		p.runs = append(p.runs, 0)
		p.prev = append(p.prev, 0)
		p.next = append(p.next, 0)
	}
	p.runs[node-p.sentinel()-1] = int32(k)
	p.link(node)
}

// unlink takes free block id out of the queue (a cached block reused).
func (p *kvPool) unlink(id int32) {
	p.cut(id)
	p.free--
}

// evict forgets block id's identity.
func (p *kvPool) evict(id int32) {
	if h := p.hash[id]; h != 0 {
		if p.indexed[id] && p.index[h] == id {
			delete(p.index, h)
		}
		p.hash[id], p.indexed[id] = 0, false
	}
}

// take removes the free queue's head, evicting its cached identity.
func (p *kvPool) take() int32 {
	id := p.next[p.sentinel()]
	p.unlink(id)
	p.evict(id)
	p.ref[id] = 1
	return id
}

// takeRun takes k blocks from the free queue's head, unnamed (counted
// pools only): a run gives its count, a named block is evicted and its id
// joins the unnamed ones.
func (p *kvPool) takeRun(k int) {
	s := p.sentinel()
	for k > 0 {
		h := p.next[s]
		if !p.isRun(h) {
			p.unlink(h)
			p.evict(h)
			p.anon = append(p.anon, h)
			k--
			continue
		}
		r := &p.runs[h-s-1]
		c := min(int(*r), k)
		*r -= int32(c)
		k -= c
		p.free -= c
		if *r == 0 {
			p.cut(h)
			p.spareRuns = append(p.spareRuns, h)
		}
	}
}

// takeUnnamed takes k blocks that stay unnamed: from the queue's head in
// a caching pool (which then counts them), from the count otherwise.
func (p *kvPool) takeUnnamed(k int) {
	if p.caching {
		p.takeRun(k)
	} else {
		p.free -= k
	}
}

// idFor gives an unnamed block held by a request an id to be named by
// (counted pools).
func (p *kvPool) idFor() int32 {
	m := len(p.anon)
	id := p.anon[m-1]
	p.anon = p.anon[:m-1]
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
// blocks when it allocates them). hits come only with a q holding no
// blocks.
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
	held := q.blocks + len(hits)
	n := (upTo + p.bs - 1) / p.bs
	if p.counted {
		p.takeRun(n - held) // nothing when held suffices
	} else {
		for i := held; i < n; i++ {
			q.table = append(q.table, p.take())
		}
	}
	q.blocks = max(n, held)
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
// to its first limit blocks. In a counted pool q's table holds its named
// blocks, and a block named now gets its id.
func (p *kvPool) name(q *Seq, tokens int, limit int32) {
	held := len(q.table)
	if p.counted {
		held = q.blocks
	}
	for full := min(int32(min(tokens/p.bs, held)), limit); q.hashed < full; q.hashed++ {
		j := q.hashed
		key, shared := q.blockKey(int(j), p.bs)
		if int(j) == len(q.table) { // counted: unnamed until now
			q.table = append(q.table, p.idFor())
		}
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
// find its private blocks where it left them; when q is gone (finished or
// aborted) a counted pool frees its private blocks unnamed, since nobody
// else can look them up.
func (p *kvPool) release(q *Seq, gone bool) {
	if !p.caching {
		p.free += q.blocks
		q.blocks = 0
		return
	}
	// Only the blocks q holds: a request that already gave them back (a
	// preempted one, waiting) keeps its table as a memory, not a claim.
	// In a counted pool its unnamed blocks are its last ones.
	named, unnamed := q.blocks, 0
	if p.counted && q.blocks > 0 {
		named = len(q.table)
		unnamed = q.blocks - named
	}
	for j := named - 1; j >= 0; j-- {
		id := q.table[j]
		if p.ref[id]--; p.ref[id] != 0 {
			continue
		}
		if gone && p.counted && !p.indexed[id] {
			p.evict(id)
			p.anon = append(p.anon, id)
			unnamed++
			continue
		}
		p.pushRun(unnamed)
		unnamed = 0
		p.pushTail(id)
	}
	if p.counted {
		p.pushRun(unnamed)
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
// reference count is its number of holders, every block is held, free in
// the queue, or (counted pools) unnamed, exactly one of them, the free
// queue's blocks are the free count, and the index points at blocks of
// its keys.
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
	unnamedHeld := 0
	for _, q := range holders {
		named := q.blocks
		if p.counted && q.blocks > 0 {
			if named = len(q.table); named > q.blocks || int(q.hashed) != named {
				return fmt.Errorf("request %s holds %d blocks with %d in its table, %d named", q.ID, q.blocks, len(q.table), q.hashed)
			}
			unnamedHeld += q.blocks - named
		} else if q.blocks != len(q.table) && q.blocks != 0 {
			return fmt.Errorf("request %s holds %d blocks with %d in its table", q.ID, q.blocks, len(q.table))
		}
		for _, id := range q.table[:named] {
			refs[id]++
		}
	}
	where := make([]int8, len(p.ref)) // 1 free in the queue, 2 unnamed
	queued, unnamedFree := 0, 0
	for node, n := p.next[p.sentinel()], 0; node != p.sentinel(); node = p.next[node] {
		if n++; n > len(p.next) {
			return fmt.Errorf("the free queue loops")
		}
		if p.isRun(node) {
			k := int(p.runs[node-p.sentinel()-1])
			if k <= 0 {
				return fmt.Errorf("a run of %d blocks in the free queue", k)
			}
			queued += k
			unnamedFree += k
			continue
		}
		if refs[node] != 0 || where[node] != 0 {
			return fmt.Errorf("block %d is in the free queue and held by %d requests", node, refs[node])
		}
		where[node] = 1
		queued++
	}
	for _, id := range p.anon {
		if refs[id] != 0 || where[id] != 0 || p.hash[id] != 0 {
			return fmt.Errorf("unnamed block %d is held by %d requests, free in the queue (%v) or named", id, refs[id], where[id] == 1)
		}
		where[id] = 2
	}
	if len(p.anon) != unnamedHeld+unnamedFree {
		return fmt.Errorf("%d unnamed block ids for %d unnamed blocks held and %d free", len(p.anon), unnamedHeld, unnamedFree)
	}
	for id, r := range refs {
		if p.ref[id] != r {
			return fmt.Errorf("block %d: reference count %d, held by %d requests", id, p.ref[id], r)
		}
		if r == 0 && where[id] == 0 {
			return fmt.Errorf("block %d is neither held, free nor unnamed", id)
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
