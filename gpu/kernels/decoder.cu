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

// x[r] += y[r], then out[r] = bf16(w * x[r] / rms(x[r])): the residual add
// and the next norm in one pass (residual_add then rmsnorm, fused).
extern "C" __global__ void residual_rmsnorm(bf16* out, float* x, const float* y, const bf16* w, long long n, float eps) {
    __shared__ float sh[32];
    long long r = blockIdx.x;
    float* xr = x + r * n;
    const float* yr = y + r * n;
    float ss = 0.f;
    for (long long i = threadIdx.x; i < n; i += blockDim.x) {
        float v = xr[i] + yr[i];
        xr[i] = v;
        ss += v * v;
    }
    ss = block_sum(ss, sh);
    float inv = rsqrtf(ss / (float)n + eps);
    for (long long i = threadIdx.x; i < n; i += blockDim.x) out[r * n + i] = f2bf(bf2f(w[i]) * (xr[i] * inv));
}

// y[t, j] += b[j] for a [rows, n] matrix.
// Rows stride over blockIdx.y, columns over x: no division per element.
extern "C" __global__ void add_bias(float* y, const bf16* b, long long rows, long long n) {
    for (long long r = blockIdx.y; r < rows; r += gridDim.y)
        for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
            y[r * n + i] += bf2f(b[i]);
}

// x += y, elementwise.
extern "C" __global__ void residual_add(float* x, const float* y, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) x[i] += y[i];
}

// Rotary embedding (rotate-half) of q and k inside qkv [T, (H+2KVH)*D], in
// place, at each token's position.
extern "C" __global__ void rope(float* qkv, const int* pos, const float* inv_freq, long long heads, long long kv_heads, long long d) {
    long long t = blockIdx.x;
    int half = (int)(d / 2), n = (int)((heads + kv_heads) * half);
    long long width = (heads + 2 * kv_heads) * d;
    float p = (float)pos[t];
    for (int j = threadIdx.x; j < n; j += blockDim.x) {
        int h = j / half, i = j % half;
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

#define ATT_CHUNK 128 // positions per chunk: one per thread of a 128-thread block
#define GMAX 8         // most query heads per KV head

// head_reduce reduces v[hh] (hh < group) over the block, by maximum or
// sum, into out[hh] in shared memory: one pass and two barriers for the
// whole group. red holds a row per warp.
template <bool MAX>
__device__ __forceinline__ void head_reduce(const float* v, int group, float (*red)[GMAX], float* out) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
#pragma unroll
    for (int hh = 0; hh < GMAX; hh++) {
        if (hh < group) {
            float x = v[hh];
            for (int o = 16; o > 0; o >>= 1) {
                float y = __shfl_xor_sync(0xffffffffu, x, o);
                x = MAX ? fmaxf(x, y) : x + y;
            }
            if (lane == 0) red[warp][hh] = x;
        }
    }
    __syncthreads();
    if (threadIdx.x < group) {
        float x = red[0][threadIdx.x];
        for (int w = 1; w < warps; w++) x = MAX ? fmaxf(x, red[w][threadIdx.x]) : x + red[w][threadIdx.x];
        out[threadIdx.x] = x;
    }
    __syncthreads();
}

// Paged causal attention on CUDA cores for the tokens in tok_list
// (decodes and short chunks). One block of 128 threads per (token, KV
// head, split): it serves the KV head's whole group of query heads, so
// each key and value row is read once for the group, and positions
// [z*split_len, (z+1)*split_len) of the token's 0..pos[t] go to split z,
// so that a batch of one still fills the GPU. Token t's positions are
// found through its block table (tables + table_off[t]) in chunks of 128
// with an online softmax: each thread scores one position against every
// head of the group (16-byte key loads), the block reduces all heads'
// maxima and sums at once, then each warp accumulates every 4th position's
// value row for every head, its lanes holding PER dimensions each; the
// warps' sums are added at the end. With one split the block writes the
// normalised output; with several it writes (max, sum, accumulator) to
// part for attention_combine. Launch with 128 threads; group <= GMAX,
// group * d <= 1024, d <= 32 * PER, and d a multiple of 8 for the 16-byte
// loads (else scalar loads).
template <int PER>
__device__ __forceinline__ void paged_attention_impl(bf16* out, float* part, const float* qkv, const bf16* kc,
                                                     const bf16* vc, const int* pos, const int* tables, const int* table_off,
                                                     const int* tok_list, long long heads, long long kv_heads, long long d,
                                                     long long block_size, float scale, long long split_len) {
    __shared__ float sq[GMAX * 128];
    __shared__ float sp[GMAX][ATT_CHUNK];
    __shared__ long long sslot[ATT_CHUNK];
    __shared__ float red[32][GMAX];
    __shared__ float smax[GMAX], ssum[GMAX], sm[GMAX], sl[GMAX];
    __shared__ float sacc[4][GMAX * 128];
    long long b = blockIdx.x, t = tok_list[b], kvh = blockIdx.y, z = blockIdx.z;
    int tid = threadIdx.x, nt = blockDim.x, lane = tid & 31, warp = tid >> 5;
    int group = (int)(heads / kv_heads), di = (int)d, gd = group * di, bs = (int)block_size;
    long long width = (heads + 2 * kv_heads) * d, kvw = kv_heads * d;
    const float* q = qkv + t * width + kvh * group * d;  // the group's query heads are consecutive
    for (int i = tid; i < gd; i += nt) sq[i] = q[i] * scale;
    const int* table = tables + table_off[t];
    int n = pos[t] + 1;
    int lo = (int)(z * split_len), hi = lo + (int)split_len < n ? lo + (int)split_len : n;
    float m[GMAX], l[GMAX], acc[GMAX][PER];
#pragma unroll
    for (int hh = 0; hh < GMAX; hh++) {
        m[hh] = -1e30f, l[hh] = 0.f;
#pragma unroll
        for (int k = 0; k < PER; k++) acc[hh][k] = 0.f;
    }
    bool vec = (di & 7) == 0;
    __syncthreads();
    for (int c0 = lo; c0 < hi; c0 += ATT_CHUNK) {
        int cn = hi - c0 < ATT_CHUNK ? hi - c0 : ATT_CHUNK;
        float s[GMAX];
#pragma unroll
        for (int hh = 0; hh < GMAX; hh++) s[hh] = -1e30f;
        if (tid < cn) {
            int p = c0 + tid;
            long long slot = (long long)table[p / bs] * bs + p % bs;
            sslot[tid] = slot * kvw + kvh * d;
            const bf16* k = kc + sslot[tid];
#pragma unroll
            for (int hh = 0; hh < GMAX; hh++) s[hh] = 0.f;
            if (vec) {
                const uint4* k4 = (const uint4*)k;
#pragma unroll 4
                for (int i = 0; i < di / 8; i++) {
                    uint4 u = k4[i];
                    float kf[8] = {__uint_as_float(u.x << 16), __uint_as_float(u.x & 0xffff0000u),
                                   __uint_as_float(u.y << 16), __uint_as_float(u.y & 0xffff0000u),
                                   __uint_as_float(u.z << 16), __uint_as_float(u.z & 0xffff0000u),
                                   __uint_as_float(u.w << 16), __uint_as_float(u.w & 0xffff0000u)};
#pragma unroll
                    for (int hh = 0; hh < GMAX; hh++) {
                        if (hh < group) {
                            const float* qq = sq + hh * di + 8 * i;
#pragma unroll
                            for (int e = 0; e < 8; e++) s[hh] += qq[e] * kf[e];
                        }
                    }
                }
            } else {
                for (int i = 0; i < di; i++) {
                    float kf = bf2f(k[i]);
#pragma unroll
                    for (int hh = 0; hh < GMAX; hh++)
                        if (hh < group) s[hh] += sq[hh * di + i] * kf;
                }
            }
        }
        head_reduce<true>(s, group, red, smax);
        float corr[GMAX], w[GMAX];
#pragma unroll
        for (int hh = 0; hh < GMAX; hh++) {
            if (hh < group) {
                float mn = fmaxf(m[hh], smax[hh]);
                corr[hh] = __expf(m[hh] - mn);
                m[hh] = mn;
                w[hh] = tid < cn ? __expf(s[hh] - mn) : 0.f;
                sp[hh][tid] = w[hh];
            }
        }
        head_reduce<false>(w, group, red, ssum);  // its barriers also publish sp and sslot
#pragma unroll
        for (int hh = 0; hh < GMAX; hh++) {
            if (hh < group) {
                l[hh] = l[hh] * corr[hh] + ssum[hh];
#pragma unroll
                for (int k = 0; k < PER; k++) acc[hh][k] *= corr[hh];
            }
        }
        for (int j = warp; j < cn; j += 4) {
            const bf16* v = vc + sslot[j];
            float vv[PER];
#pragma unroll
            for (int k = 0; k < PER; k++) vv[k] = lane + 32 * k < di ? bf2f(v[lane + 32 * k]) : 0.f;
#pragma unroll
            for (int hh = 0; hh < GMAX; hh++) {
                if (hh < group) {
                    float x = sp[hh][j];
#pragma unroll
                    for (int k = 0; k < PER; k++) acc[hh][k] += x * vv[k];
                }
            }
        }
        __syncthreads();  // the chunk's sp and sslot are read; the next chunk may overwrite them
    }
#pragma unroll
    for (int hh = 0; hh < GMAX; hh++) {
        if (hh < group) {
#pragma unroll
            for (int k = 0; k < PER; k++)
                if (lane + 32 * k < di) sacc[warp][hh * di + lane + 32 * k] = acc[hh][k];
        }
    }
    if (tid == 0) {
#pragma unroll
        for (int hh = 0; hh < GMAX; hh++) sm[hh] = m[hh], sl[hh] = l[hh];
    }
    __syncthreads();
    long long splits = gridDim.z;
    for (int idx = tid; idx < gd; idx += nt) {
        int hh = idx / di, dim = idx - hh * di;
        float o = sacc[0][idx] + sacc[1][idx] + sacc[2][idx] + sacc[3][idx];
        if (part == 0) {
            out[t * heads * d + (kvh * group + hh) * d + dim] = f2bf(o / sl[hh]);
        } else {
            // partials of (token b, query head h, split z): max, sum, accumulator
            float* pr = part + ((b * heads + kvh * group + hh) * splits + z) * (d + 2);
            pr[2 + dim] = o;
            if (dim == 0) pr[0] = sm[hh], pr[1] = sl[hh];
        }
    }
}

#define PAGED_ATTENTION(PER)                                                                                           \
    extern "C" __global__ void __launch_bounds__(128) paged_attention_p##PER(                                        \
        bf16* out, float* part, const float* qkv, const bf16* kc, const bf16* vc, const int* pos, const int* tables, \
        const int* table_off, const int* tok_list, long long heads, long long kv_heads, long long d,                  \
        long long block_size, float scale, long long split_len) {                                                    \
        paged_attention_impl<PER>(out, part, qkv, kc, vc, pos, tables, table_off, tok_list, heads, kv_heads, d,      \
                                  block_size, scale, split_len);                                                     \
    }
PAGED_ATTENTION(1)
PAGED_ATTENTION(2)
PAGED_ATTENTION(4)
PAGED_ATTENTION(8)

// attention_combine merges the splits of paged_attention: one block per
// (listed token, query head).
extern "C" __global__ void attention_combine(bf16* out, const float* part, const int* tok_list, long long heads, long long d,
                                             long long splits) {
    long long b = blockIdx.x, h = blockIdx.y, t = tok_list[b];
    const float* pr = part + (b * heads + h) * splits * (d + 2);
    float M = -1e30f;
    for (long long z = 0; z < splits; z++) M = fmaxf(M, pr[z * (d + 2)]);
    float L = 0.f;
    for (long long z = 0; z < splits; z++) L += pr[z * (d + 2) + 1] * __expf(pr[z * (d + 2)] - M);
    for (long long i = threadIdx.x; i < d; i += blockDim.x) {
        float o = 0.f;
        for (long long z = 0; z < splits; z++) o += pr[z * (d + 2) + 2 + i] * __expf(pr[z * (d + 2)] - M);
        out[t * heads * d + h * d + i] = f2bf(o / L);
    }
}

// ---- Prefill attention on tensor cores ----------------------------------
//
// One block of 4 warps per (tile, head); a tile is up to 64 consecutive
// new tokens of one sequence (tile_tok: its first token, tile_len: how
// many), each warp owning 16 query rows. Keys and values come through the
// block table in blocks of 64 positions into shared memory; S = Q K^T and
// O += P V run on mma.sync m16n8k16 (bf16 in, fp32 accumulate), with an
// online softmax across blocks. Q is scaled then rounded to bf16, P is
// summed in fp32 but rounded to bf16 for the product: the CPU emulation
// (attendFlash) does the same.

#define FA_N 64

__device__ __forceinline__ unsigned pack_bf16(float lo, float hi) {
    return (unsigned)f2bf(lo) | ((unsigned)f2bf(hi) << 16);
}

// c += a . b for one m16n8k16 tile: a row-major 16x16, b column-major 16x8.
__device__ __forceinline__ void mma_bf16(float* c, const unsigned* a, const unsigned* b) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// cp_async16 copies 16 bytes from global src to shared dst without
// passing through registers; with bytes 0 it writes 16 zero bytes.
__device__ __forceinline__ void cp_async16(void* dst, const void* src, int bytes) {
    unsigned d;
    asm("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(d) : "l"(dst));
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(d), "l"(src), "r"(bytes));
}

template <int D>
__device__ __forceinline__ void flash_prefill(bf16* out, const float* qkv, const bf16* kc, const bf16* vc,
                                              const int* pos, const int* tables, const int* table_off,
                                              const int* tile_tok, const int* tile_len,
                                              long long heads, long long kv_heads, long long block_size, float scale) {
    const int S = D + 8;  // shared row stride in bf16: rows 16 bytes apart in banks
    __shared__ uint4 ks4[FA_N * (D + 8) / 8];
    __shared__ uint4 vs4[FA_N * (D + 8) / 8];
    bf16* ks = (bf16*)ks4;
    bf16* vs = (bf16*)vs4;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, tig = lane & 3;
    long long h = blockIdx.y;
    int t0 = tile_tok[blockIdx.x], nq = tile_len[blockIdx.x];
    long long width = (heads + 2 * kv_heads) * D, kvw = kv_heads * D;
    long long kvh = h / (heads / kv_heads);
    const int* table = tables + table_off[t0];
    int p0 = pos[t0], last = p0 + nq - 1, bs = (int)block_size;
    int r0 = warp * 16 + g, r1 = r0 + 8;
    bool v0 = r0 < nq, v1 = r1 < nq;
    int qp0 = p0 + r0, qp1 = p0 + r1;

    unsigned qa[D / 16][4];
    {
        const float* q0 = qkv + (long long)(t0 + (v0 ? r0 : 0)) * width + h * D;
        const float* q1 = qkv + (long long)(t0 + (v1 ? r1 : 0)) * width + h * D;
#pragma unroll
        for (int kk = 0; kk < D / 16; kk++) {
            int c = kk * 16 + tig * 2;
            qa[kk][0] = v0 ? pack_bf16(q0[c] * scale, q0[c + 1] * scale) : 0u;
            qa[kk][1] = v1 ? pack_bf16(q1[c] * scale, q1[c + 1] * scale) : 0u;
            qa[kk][2] = v0 ? pack_bf16(q0[c + 8] * scale, q0[c + 9] * scale) : 0u;
            qa[kk][3] = v1 ? pack_bf16(q1[c + 8] * scale, q1[c + 9] * scale) : 0u;
        }
    }
    float o[D / 8][4];
#pragma unroll
    for (int j = 0; j < D / 8; j++) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.f;
    float m0 = -1e30f, m1 = -1e30f, l0 = 0.f, l1 = 0.f;

    for (int kb = 0; kb <= last; kb += FA_N) {
        __syncthreads();  // the previous block's keys and values are consumed
        // every 16-byte piece of the key and value blocks in flight at
        // once (cp.async, straight to shared memory); positions past the
        // tile's last query are zero-filled
        for (int i = threadIdx.x; i < FA_N * (D / 8); i += blockDim.x) {
            int r = i / (D / 8), c = (i % (D / 8)) * 8, p = kb + r;
            long long off = 0;
            if (p <= last) off = ((long long)table[p / bs] * bs + p % bs) * kvw + kvh * D + c;
            int bytes = p <= last ? 16 : 0;
            cp_async16(ks + r * S + c, kc + off, bytes);
            cp_async16(vs + r * S + c, vc + off, bytes);
        }
        asm volatile("cp.async.commit_group;\n" ::);
        asm volatile("cp.async.wait_group 0;\n" ::);
        __syncthreads();

        float s[FA_N / 8][4];
#pragma unroll
        for (int j = 0; j < FA_N / 8; j++) {
            s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.f;
#pragma unroll
            for (int kk = 0; kk < D / 16; kk++) {
                const bf16* kr = ks + (j * 8 + g) * S + kk * 16 + tig * 2;
                unsigned b[2];
                b[0] = *(const unsigned*)kr;
                b[1] = *(const unsigned*)(kr + 8);
                mma_bf16(s[j], qa[kk], b);
            }
        }
        float mx0 = -1e30f, mx1 = -1e30f;
#pragma unroll
        for (int j = 0; j < FA_N / 8; j++) {
            int kp = kb + j * 8 + tig * 2;
            if (kp > qp0) s[j][0] = -1e30f;
            if (kp + 1 > qp0) s[j][1] = -1e30f;
            if (kp > qp1) s[j][2] = -1e30f;
            if (kp + 1 > qp1) s[j][3] = -1e30f;
            mx0 = fmaxf(mx0, fmaxf(s[j][0], s[j][1]));
            mx1 = fmaxf(mx1, fmaxf(s[j][2], s[j][3]));
        }
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
        float mn0 = fmaxf(m0, mx0), mn1 = fmaxf(m1, mx1);
        float c0 = expf(m0 - mn0), c1 = expf(m1 - mn1);
        float sum0 = 0.f, sum1 = 0.f;
        unsigned pa[FA_N / 16][4];
#pragma unroll
        for (int j = 0; j < FA_N / 8; j++) {
            float a = expf(s[j][0] - mn0), b = expf(s[j][1] - mn0);
            float c = expf(s[j][2] - mn1), d = expf(s[j][3] - mn1);
            sum0 += a + b;
            sum1 += c + d;
            // the C tiles of keys 16i..16i+7 and 16i+8..16i+15 are the A
            // fragment of step i of P V
            pa[j / 2][(j & 1) * 2] = pack_bf16(a, b);
            pa[j / 2][(j & 1) * 2 + 1] = pack_bf16(c, d);
        }
        sum0 += __shfl_xor_sync(0xffffffffu, sum0, 1);
        sum0 += __shfl_xor_sync(0xffffffffu, sum0, 2);
        sum1 += __shfl_xor_sync(0xffffffffu, sum1, 1);
        sum1 += __shfl_xor_sync(0xffffffffu, sum1, 2);
        l0 = l0 * c0 + sum0;
        l1 = l1 * c1 + sum1;
        m0 = mn0;
        m1 = mn1;
#pragma unroll
        for (int j = 0; j < D / 8; j++) {
            o[j][0] *= c0;
            o[j][1] *= c0;
            o[j][2] *= c1;
            o[j][3] *= c1;
        }
#pragma unroll
        for (int i = 0; i < FA_N / 16; i++) {
#pragma unroll
            for (int j = 0; j < D / 8; j++) {
                const bf16* vr = vs + (i * 16 + tig * 2) * S + j * 8 + g;
                unsigned b[2];
                b[0] = (unsigned)vr[0] | ((unsigned)vr[S] << 16);
                b[1] = (unsigned)vr[8 * S] | ((unsigned)vr[9 * S] << 16);
                mma_bf16(o[j], pa[i], b);
            }
        }
    }
    bf16* o0 = out + (long long)(t0 + r0) * heads * D + h * D;
    bf16* o1 = out + (long long)(t0 + r1) * heads * D + h * D;
#pragma unroll
    for (int j = 0; j < D / 8; j++) {
        int c = j * 8 + tig * 2;
        if (v0) {
            o0[c] = f2bf(o[j][0] / l0);
            o0[c + 1] = f2bf(o[j][1] / l0);
        }
        if (v1) {
            o1[c] = f2bf(o[j][2] / l1);
            o1[c + 1] = f2bf(o[j][3] / l1);
        }
    }
}

#define FLASH_PREFILL(D)                                                                                                  \
    extern "C" __global__ void __launch_bounds__(128) flash_prefill_d##D(                                               \
        bf16* out, const float* qkv, const bf16* kc, const bf16* vc, const int* pos, const int* tables,                 \
        const int* table_off, const int* tile_tok, const int* tile_len, long long heads, long long kv_heads,            \
        long long block_size, float scale) {                                                                          \
        flash_prefill<D>(out, qkv, kc, vc, pos, tables, table_off, tile_tok, tile_len, heads, kv_heads, block_size, scale); \
    }
FLASH_PREFILL(16)
FLASH_PREFILL(32)
FLASH_PREFILL(64)
FLASH_PREFILL(128)

// act[t, i] = bf16(silu(gu[t, i]) * gu[t, inter + i]) for gu = [gate | up].
// act[t, i] = bf16(silu(gu[t, i]) * gu[t, inter + i]) for gu = [gate | up]:
// rows over blockIdx.y, four columns a thread (16-byte loads) over x when
// inter is a multiple of 4.
extern "C" __global__ void silu_mul(bf16* act, const float* gu, long long rows, long long inter) {
    for (long long t = blockIdx.y; t < rows; t += gridDim.y) {
        const float* g = gu + t * 2 * inter;
        const float* u = g + inter;
        bf16* a = act + t * inter;
        if ((inter & 3) == 0) {
            for (long long i = 4 * (blockIdx.x * (long long)blockDim.x + threadIdx.x); i < inter; i += 4 * (long long)gridDim.x * blockDim.x) {
                float4 gv = *(const float4*)(g + i), uv = *(const float4*)(u + i);
                uint2 o;
                o.x = pack_bf16(gv.x / (1.f + __expf(-gv.x)) * uv.x, gv.y / (1.f + __expf(-gv.y)) * uv.y);
                o.y = pack_bf16(gv.z / (1.f + __expf(-gv.z)) * uv.z, gv.w / (1.f + __expf(-gv.w)) * uv.w);
                *(uint2*)(a + i) = o;
            }
        } else {
            for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < inter; i += (long long)gridDim.x * blockDim.x)
                a[i] = f2bf(g[i] / (1.f + __expf(-g[i])) * u[i]);
        }
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
