// Helpers of the elis-sim CUDA kernels, compiled at start-up by NVRTC
// before decoder.cu or encoder.cu. 16-bit values are stored as unsigned
// short and converted by hand (bf16 with bit operations, fp16 with the
// cvt instruction), so no CUDA header is needed; arithmetic is fp32.
// Integer arguments are 64-bit: every kernel argument travels in an 8-byte
// slot.

typedef unsigned short bf16;
typedef unsigned short u16;

__device__ __forceinline__ float bf2f(bf16 b) { return __uint_as_float(((unsigned int)b) << 16); }
__device__ __forceinline__ bf16 f2bf(float f) {
    unsigned int u = __float_as_uint(f);
    if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x7fffffu)) return (bf16)((u >> 16) | 0x40); // NaN stays NaN
    u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even
    return (bf16)(u >> 16);
}

__device__ __forceinline__ float h2f(u16 h) { float f; asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h)); return f; }
__device__ __forceinline__ u16 f2h(float f) { u16 h; asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f)); return h; }

// ELEM_FP16 chooses the 16-bit format of a module's stored activations
// and weights where a kernel uses ld16/st16: 1 for IEEE half, 0 for bf16.
#ifndef ELEM_FP16
#define ELEM_FP16 0
#endif
__device__ __forceinline__ float ld16(u16 v) { return ELEM_FP16 ? h2f(v) : bf2f(v); }
__device__ __forceinline__ u16 st16(float f) { return ELEM_FP16 ? f2h(f) : f2bf(f); }

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// block_sum reduces over a block of up to 1024 threads; every thread gets
// the total.
__device__ float block_sum(float v, float* shared) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    int warps = (blockDim.x + 31) >> 5;
    v = (threadIdx.x < warps) ? shared[threadIdx.x] : 0.f;
    if (warp == 0) v = warp_sum(v);
    if (threadIdx.x == 0) shared[0] = v;
    __syncthreads();
    return shared[0];
}

// merge_warps combines the online-softmax partials (m, l, acc) of the 4
// warps of an attention block and writes the normalised output row.
__device__ __forceinline__ void merge_warps(float m, float l, const float* acc, int per, long long d, u16* out_row) {
    __shared__ float sm[4], sl[4], sacc[4][256];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) { sm[warp] = m; sl[warp] = l; }
    for (int j = 0; j < per; j++) {
        long long i = lane + 32 * j;
        if (i < d) sacc[warp][i] = acc[j];
    }
    __syncthreads();
    if (warp == 0) {
        float M = fmaxf(fmaxf(sm[0], sm[1]), fmaxf(sm[2], sm[3]));
        float L = 0.f, c[4];
        for (int w = 0; w < 4; w++) { c[w] = __expf(sm[w] - M); L += sl[w] * c[w]; }
        for (int j = 0; j < per; j++) {
            long long i = lane + 32 * j;
            if (i < d) {
                float o = 0.f;
                for (int w = 0; w < 4; w++) o += sacc[w][i] * c[w];
                out_row[i] = st16(o / L);
            }
        }
    }
}
