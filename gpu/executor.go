package gpu

// SeqStep is one sequence's share of a scheduler step.
type SeqStep struct {
	// Tokens are the new tokens to compute: a prefill chunk, or the last
	// generated token for a decode.
	Tokens []int32
	// Pos is the position of Tokens[0]: how many tokens of the sequence are
	// already in the KV cache.
	Pos int
	// BlockTable maps the sequence's logical KV blocks to physical ones; it
	// must cover Pos+len(Tokens) tokens.
	BlockTable []int32
	// Sample asks for the next token after the last of Tokens (a prefill
	// chunk that does not end the prompt does not sample).
	Sample bool
}

// Executor runs scheduler steps of a decoder on a device, owning the
// device's paged KV cache.
type Executor interface {
	// Step computes seqs and writes, for each that samples, its next token
	// to next[i] (-1 for the others).
	Step(seqs []SeqStep, next []int32) error
	// BlockSize and NumBlocks describe the KV cache.
	BlockSize() int
	NumBlocks() int
	Close() error
}
