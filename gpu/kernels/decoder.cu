// Kernels of the decoder (bf16 weights and KV cache, fp32 residual stream),
// compiled after common.cu.

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

// block_max is block_sum's maximum.
__device__ float block_max(float v, float* shared) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    __syncthreads();
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    int warps = (blockDim.x + 31) >> 5;
    v = (threadIdx.x < warps) ? shared[threadIdx.x] : -1e30f;
    if (warp == 0) for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    if (threadIdx.x == 0) shared[0] = v;
    __syncthreads();
    return shared[0];
}

#define ATT_CHUNK 256
#define ATT_WARPS 4

// Paged causal attention, one block of 4 warps per (token, head): token t
// attends to positions 0..pos[t] of its sequence, found through its block
// table (tables + table_off[t]). Positions go in chunks of ATT_CHUNK with
// an online softmax across chunks. In a chunk each thread scores whole
// positions (q from shared memory, the key in 16-byte loads), the block
// takes the chunk's maximum and sum, then each warp accumulates every 4th
// position's value row, its lanes splitting the head dimension; the warps'
// sums are added at the end. Serves prefill chunks and decodes alike.
// d <= 256, a multiple of 8 for the 16-byte loads (else scalar loads).
extern "C" __global__ void __launch_bounds__(128) paged_attention(bf16* out, const float* qkv, const bf16* kc, const bf16* vc,
                                           const int* pos, const int* tables, const int* table_off,
                                           long long heads, long long kv_heads, long long d, long long block_size, float scale) {
    __shared__ float sq[256];
    __shared__ float sp[ATT_CHUNK];
    __shared__ long long sslot[ATT_CHUNK];
    __shared__ float red[32];
    __shared__ float sacc[ATT_WARPS][256];
    long long t = blockIdx.x, h = blockIdx.y;
    int tid = threadIdx.x, nt = blockDim.x, lane = tid & 31, warp = tid >> 5;
    long long width = (heads + 2 * kv_heads) * d, kvw = kv_heads * d;
    long long kvh = h / (heads / kv_heads);
    const float* q = qkv + t * width + h * d;
    for (int i = tid; i < d; i += nt) sq[i] = q[i] * scale;
    __syncthreads();
    const int* table = tables + table_off[t];
    long long n = (long long)pos[t] + 1;
    int per = (int)((d + 31) / 32);  // dims per lane in the value pass
    float acc[8];
#pragma unroll
    for (int k = 0; k < 8; k++) acc[k] = 0.f;
    float m = -1e30f, l = 0.f;  // running maximum and sum, alike in every thread
    bool vec = (d & 7) == 0;
    for (long long c0 = 0; c0 < n; c0 += ATT_CHUNK) {
        int cn = (int)(n - c0 < ATT_CHUNK ? n - c0 : ATT_CHUNK);
        float cmax = -1e30f;
        for (int j = tid; j < cn; j += nt) {
            long long p = c0 + j;
            long long slot = (long long)table[p / block_size] * block_size + p % block_size;
            sslot[j] = slot * kvw + kvh * d;
            const bf16* k = kc + sslot[j];
            float s = 0.f;
            if (vec) {
                const uint4* k4 = (const uint4*)k;
                for (int i = 0; i < d / 8; i++) {
                    uint4 u = k4[i];
                    const float* qq = sq + 8 * i;
                    s += qq[0] * __uint_as_float(u.x << 16) + qq[1] * __uint_as_float(u.x & 0xffff0000u);
                    s += qq[2] * __uint_as_float(u.y << 16) + qq[3] * __uint_as_float(u.y & 0xffff0000u);
                    s += qq[4] * __uint_as_float(u.z << 16) + qq[5] * __uint_as_float(u.z & 0xffff0000u);
                    s += qq[6] * __uint_as_float(u.w << 16) + qq[7] * __uint_as_float(u.w & 0xffff0000u);
                }
            } else {
                for (int i = 0; i < d; i++) s += sq[i] * bf2f(k[i]);
            }
            sp[j] = s;
            cmax = fmaxf(cmax, s);
        }
        cmax = block_max(cmax, red);  // its barriers also publish sp and sslot
        float mn = fmaxf(m, cmax), corr = __expf(m - mn);
        float csum = 0.f;
        for (int j = tid; j < cn; j += nt) {
            float w = __expf(sp[j] - mn);
            sp[j] = w;
            csum += w;
        }
        csum = block_sum(csum, red);
        l = l * corr + csum;
#pragma unroll
        for (int k = 0; k < 8; k++) acc[k] *= corr;
        for (int j = warp; j < cn; j += ATT_WARPS) {
            const bf16* v = vc + sslot[j];
            float w = sp[j];
#pragma unroll
            for (int k = 0; k < 8; k++) {
                int i = lane + 32 * k;
                if (k < per && i < d) acc[k] += w * bf2f(v[i]);
            }
        }
        m = mn;
        __syncthreads();  // the chunk's sp and sslot are read; the next may overwrite them
    }
#pragma unroll
    for (int k = 0; k < 8; k++) {
        int i = lane + 32 * k;
        if (k < per && i < d) sacc[warp][i] = acc[k];
    }
    __syncthreads();
    bf16* o = out + t * heads * d + h * d;
    for (int i = tid; i < d; i += nt) {
        float v = 0.f;
        for (int w = 0; w < ATT_WARPS; w++) v += sacc[w][i];
        o[i] = f2bf(v / l);
    }
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
