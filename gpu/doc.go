// Package gpu executes the served model's forward passes and the ELIS
// predictor network on a device: pure Go on the CPU, CUDA behind the "cuda"
// build tag. Not built yet: see the open issue "gpu/".
package gpu
