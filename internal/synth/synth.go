// Package synth makes the token ids of prompts a trace gives only as
// lengths, the same way for every driver that needs them (replay's
// engines, bench's client): tokens a request's content names -- its hash
// ids' blocks, a session's stream -- are drawn from those names, so that
// requests a prefix cache deems equal are equal token for token; the rest
// are drawn from the request's index.
package synth

import (
	"math/rand/v2"

	"github.com/elis-sim/elis-sim/policies"
)

// Mix is the splitmix64 finaliser: a well-mixed 64-bit hash of x.
func Mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// Tokens draws ids from [Low, Vocab) with Seed.
type Tokens struct {
	Seed  uint64
	Low   int // ids below it are left alone (vocabularies keep special tokens there)
	Vocab int
}

func (t Tokens) span() uint64 { return uint64(max(t.Vocab-t.Low, 1)) }

// Prompt appends to dst the n prompt tokens of request index with
// content c (nil: none named).
func (t Tokens) Prompt(dst []int32, index int, c *policies.Content, n int) []int32 {
	if c == nil {
		c = &policies.Content{}
	}
	span := t.span()
	rng := rand.New(rand.NewPCG(t.Seed, uint64(index)))
	chain := uint64(0)
	for i := 0; i < n; i++ {
		switch {
		case c.Session != 0:
			dst = append(dst, t.Stream(c.Session, i))
		case c.HashBlock > 0 && i < len(c.Hashes)*c.HashBlock:
			if i%c.HashBlock == 0 {
				chain = Mix(chain ^ Mix(c.Hashes[i/c.HashBlock]))
			}
			dst = append(dst, int32(t.Low)+int32(Mix(chain^uint64(i))%span))
		default:
			dst = append(dst, int32(t.Low)+int32(rng.Uint64N(span)))
		}
	}
	return dst
}

// Stream is token i of a session's stream. A session's outputs are its
// stream too, so a later turn, whose prompt holds them, finds in a cache
// the very tokens it would compute.
func (t Tokens) Stream(session uint64, i int) int32 {
	return int32(t.Low) + int32(Mix(session^Mix(t.Seed+uint64(i)))%t.span())
}
