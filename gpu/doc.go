// Package gpu executes the served model's forward passes on a device, one
// scheduler step at a time: a mixed batch of prefill chunks and decode
// tokens over a paged KV cache, returning each sequence's next token; and
// the ELIS predictor network (a BERT encoder, mean pooling, a Linear+ReLU
// head). The CPU executor is pure Go and in the default build; it can
// round as the GPU does (bf16, fp16, tf32), which makes it the reference
// the CUDA executor, behind the "cuda" build tag, is checked against.
// Models are Llama-family decoders (Llama 2, Llama 3 with rope scaling,
// Qwen2 with QKV bias) configured from a Hugging Face config.json or a
// preset, with weights from safetensors (fp32, fp16, bf16; sharded) or
// seeded random values.
package gpu
