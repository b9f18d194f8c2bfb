// Kernels of the elis-sim CUDA executor, compiled at start-up by NVRTC.
// bf16 values are stored as unsigned short and converted by hand, so no
// CUDA header is needed; arithmetic is fp32. Integer arguments are 64-bit
// (gorgonia.org/cu passes every kernel argument in an 8-byte slot).

typedef unsigned short bf16;

__device__ __forceinline__ float bf2f(bf16 b) { return __uint_as_float(((unsigned int)b) << 16); }
__device__ __forceinline__ bf16 f2bf(float f) {
    unsigned int u = __float_as_uint(f);
    if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x7fffffu)) return (bf16)((u >> 16) | 0x40); // NaN stays NaN
    u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even
    return (bf16)(u >> 16);
}

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

// Seeded random weights, uniform in [-scale, scale): timing runs need no
// host copy of a model.
extern "C" __global__ void fill_random_bf16(bf16* out, long long n, unsigned long long seed, float scale) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        unsigned long long x = seed ^ ((unsigned long long)i * 0x9e3779b97f4a7c15ull);
        x ^= x >> 30; x *= 0xbf58476d1ce4e5b9ull; x ^= x >> 27; x *= 0x94d049bb133111ebull; x ^= x >> 31;
        float u = (float)(x >> 40) / 16777216.f;  // [0, 1)
        out[i] = f2bf((2.f * u - 1.f) * scale);
    }
}

extern "C" __global__ void fill_bf16(bf16* out, long long n, float v) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) out[i] = f2bf(v);
}

// x[t] = embed[tokens[t]] (fp32 residual stream).
extern "C" __global__ void embed_gather(float* x, const bf16* embed, const int* tokens, long long hidden) {
    long long t = blockIdx.x;
    const bf16* row = embed + (long long)tokens[t] * hidden;
    for (long long i = threadIdx.x; i < hidden; i += blockDim.x) x[t * hidden + i] = bf2f(row[i]);
}

// out[r] = bf16(w * x[rows[r]] / rms(x[rows[r]])); rows == 0 means r itself.
extern "C" __global__ void rmsnorm(bf16* out, const float* x, const bf16* w, const int* rows, long long n, float eps) {
    __shared__ float sh[32];
    long long r = blockIdx.x;
    long long src = rows ? rows[r] : r;
    const float* xr = x + src * n;
    float ss = 0.f;
    for (long long i = threadIdx.x; i < n; i += blockDim.x) ss += xr[i] * xr[i];
    ss = block_sum(ss, sh);
    float inv = rsqrtf(ss / (float)n + eps);
    for (long long i = threadIdx.x; i < n; i += blockDim.x) out[r * n + i] = f2bf(bf2f(w[i]) * (xr[i] * inv));
}

// y[t, j] += b[j] for a [rows, n] matrix.
extern "C" __global__ void add_bias(float* y, const bf16* b, long long rows, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < rows * n; i += (long long)gridDim.x * blockDim.x) y[i] += bf2f(b[i % n]);
}

// x += y, elementwise.
extern "C" __global__ void residual_add(float* x, const float* y, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) x[i] += y[i];
}

// Rotary embedding (rotate-half) of q and k inside qkv [T, (H+2KVH)*D], in
// place, at each token's position.
extern "C" __global__ void rope(float* qkv, const int* pos, const float* inv_freq, long long heads, long long kv_heads, long long d) {
    long long t = blockIdx.x;
    long long half = d / 2, width = (heads + 2 * kv_heads) * d;
    float p = (float)pos[t];
    for (long long j = threadIdx.x; j < (heads + kv_heads) * half; j += blockDim.x) {
        long long h = j / half, i = j % half;
        float* v = qkv + t * width + h * d;
        float s, c;
        sincosf(p * inv_freq[i], &s, &c);
        float a = v[i], b = v[i + half];
        v[i] = a * c - b * s;
        v[i + half] = b * c + a * s;
    }
}

// Writes each token's k and v (from qkv) into the paged cache at its slot.
extern "C" __global__ void cache_write(bf16* kc, bf16* vc, const float* qkv, const int* slots, long long heads, long long kv_heads, long long d) {
    long long t = blockIdx.x;
    long long kvw = kv_heads * d, width = (heads + 2 * kv_heads) * d;
    const float* k = qkv + t * width + heads * d;
    const float* v = k + kvw;
    long long slot = slots[t];
    for (long long i = threadIdx.x; i < kvw; i += blockDim.x) {
        kc[slot * kvw + i] = f2bf(k[i]);
        vc[slot * kvw + i] = f2bf(v[i]);
    }
}

// merge_warps combines the online-softmax partials (m, l, acc) of the 4
// warps of an attention block and writes the normalised output row.
__device__ __forceinline__ void merge_warps(float m, float l, const float* acc, int per, long long d, bf16* out_row) {
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
                out_row[i] = f2bf(o / L);
            }
        }
    }
}

// Paged causal attention, one block (4 warps) per (token, head): token t
// attends to positions 0..pos[t] of its sequence, found through its block
// table (tables + table_off[t]). Each warp takes every 4th position with an
// online softmax; the warps' partial results are merged at the end. Serves
// prefill chunks and decodes alike. d <= 256.
extern "C" __global__ void paged_attention(bf16* out, const float* qkv, const bf16* kc, const bf16* vc,
                                           const int* pos, const int* tables, const int* table_off,
                                           long long heads, long long kv_heads, long long d, long long block_size, float scale) {
    long long t = blockIdx.x, h = blockIdx.y;
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    long long width = (heads + 2 * kv_heads) * d, kvw = kv_heads * d;
    long long kvh = h / (heads / kv_heads);
    const float* q = qkv + t * width + h * d;
    const int* table = tables + table_off[t];
    int per = (int)((d + 31) / 32);  // dims per lane
    float qr[8], acc[8];
    for (int j = 0; j < per; j++) {
        long long i = lane + 32 * j;
        qr[j] = i < d ? q[i] * scale : 0.f;
        acc[j] = 0.f;
    }
    float m = -1e30f, l = 0.f;
    long long n = (long long)pos[t] + 1;
    for (long long p = warp; p < n; p += 4) {
        long long slot = (long long)table[p / block_size] * block_size + p % block_size;
        const bf16* k = kc + slot * kvw + kvh * d;
        float s = 0.f;
        for (int j = 0; j < per; j++) {
            long long i = lane + 32 * j;
            if (i < d) s += qr[j] * bf2f(k[i]);
        }
        s = warp_sum(s);
        float mn = fmaxf(m, s);
        float corr = __expf(m - mn), w = __expf(s - mn);
        l = l * corr + w;
        const bf16* v = vc + slot * kvw + kvh * d;
        for (int j = 0; j < per; j++) {
            long long i = lane + 32 * j;
            acc[j] = acc[j] * corr + (i < d ? w * bf2f(v[i]) : 0.f);
        }
        m = mn;
    }
    merge_warps(m, l, acc, per, d, out + t * heads * d + h * d);
}

// act[t, i] = bf16(silu(gu[t, i]) * gu[t, inter + i]) for gu = [gate | up].
extern "C" __global__ void silu_mul(bf16* act, const float* gu, long long rows, long long inter) {
    for (long long k = blockIdx.x * (long long)blockDim.x + threadIdx.x; k < rows * inter; k += (long long)gridDim.x * blockDim.x) {
        long long t = k / inter, i = k % inter;
        float g = gu[t * 2 * inter + i], u = gu[t * 2 * inter + inter + i];
        act[k] = f2bf(g / (1.f + __expf(-g)) * u);
    }
}

// tokens[r] = argmax of logits row r (lowest index on ties).
extern "C" __global__ void argmax(int* tokens, const float* logits, long long vocab) {
    __shared__ float sv[1024];
    __shared__ int si[1024];
    long long r = blockIdx.x;
    const float* row = logits + r * vocab;
    float best = -3.4e38f;
    int bi = 0;
    for (long long i = threadIdx.x; i < vocab; i += blockDim.x) {
        if (row[i] > best) { best = row[i]; bi = (int)i; }
    }
    sv[threadIdx.x] = best;
    si[threadIdx.x] = bi;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) {
            float ov = sv[threadIdx.x + s];
            int oi = si[threadIdx.x + s];
            if (ov > sv[threadIdx.x] || (ov == sv[threadIdx.x] && oi < si[threadIdx.x])) { sv[threadIdx.x] = ov; si[threadIdx.x] = oi; }
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) tokens[r] = si[0];
}
