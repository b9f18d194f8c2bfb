package cost

import "github.com/elis-sim/elis-sim/policies"

// EngineDefaults are vLLM's engine settings for a model on a GPU: the
// OpenAI server's budgets (8192 tokens and 1024 sequences on large-memory
// non-A100 GPUs, 2048 and 256 otherwise), 16-token blocks, prefix caching
// on, and the KV capacity left by gpu_memory_utilization util.
func EngineDefaults(r *Roofline, util float64) policies.Config {
	c := policies.Config{MaxBatchedTokens: 2048, MaxSeqs: 256, BlockSize: 16, MaxModelLen: r.Arch.MaxModelLen, PredictionInterval: 50, PrefixCaching: true}
	if r.GPU.Large {
		c.MaxBatchedTokens, c.MaxSeqs = 8192, 1024
	}
	c.NumBlocks = r.KVBlocks(util, c.BlockSize)
	return c
}
