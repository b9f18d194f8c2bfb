package gpu

// How the CUDA executor splits a step's attention, shared with the CPU
// emulation so that it rounds where the CUDA path does.
//
// A sequence with at least flashMinTokens new tokens in a step (a prefill
// chunk) takes the tensor-core kernel: tiles of up to 64 queries, keys in
// blocks of flashBlock positions, bf16 query and probabilities into the
// matrix units, an online softmax across blocks. The others (decodes,
// short chunks) take the CUDA-core kernel, which keeps queries and
// probabilities in fp32.
const (
	flashMinTokens = 16
	flashBlock     = 64
	flashTile      = 64
)

// flashAttention says whether a sequence with tokens new tokens and head
// dimension d takes the tensor-core kernel (compiled for d of 16, 32, 64
// and 128).
func flashAttention(d, tokens int) bool {
	return tokens >= flashMinTokens && (d == 16 || d == 32 || d == 64 || d == 128)
}

// attentionSplits chooses how many splits of the key positions the
// CUDA-core attention kernel takes when blocks (token x KV head) would
// leave the GPU's 132 multiprocessors idle: enough for about four blocks
// each, no split shorter than 32 positions, at most 32. maxLen is the
// longest context among the tokens. It returns the splits and the
// positions per split.
func attentionSplits(blocks, maxLen int) (splits, splitLen int) {
	const target, minLen, most = 528, 32, 32
	splits = 1
	if blocks > 0 && blocks < target {
		splits = min((target+blocks-1)/blocks, (maxLen+minLen-1)/minLen, most)
	}
	splits = max(splits, 1)
	return splits, (maxLen + splits - 1) / splits
}
