// Kernels of the BERT encoder and the ELIS head, compiled after common.cu.
// Weights and matrix inputs are 16-bit in the module's format (ld16/st16:
// fp16 or bf16, by ELEM_FP16); the residual stream is fp32. Tokens of all
// sequences are packed without padding; seq_start and seq_len give each
// token its sequence.

// x[t] = word[tok[t]] + pos[p[t]] + type0.
extern "C" __global__ void bert_embed(float* x, const u16* word, const u16* pos, const u16* type0,
                                      const int* tokens, const int* positions, long long hidden) {
    long long t = blockIdx.x;
    const u16* w = word + (long long)tokens[t] * hidden;
    const u16* p = pos + (long long)positions[t] * hidden;
    for (long long i = threadIdx.x; i < hidden; i += blockDim.x) x[t * hidden + i] = ld16(w[i]) + ld16(p[i]) + ld16(type0[i]);
}

// LayerNorm of each row of x (fp32) into x itself and a 16-bit copy h.
extern "C" __global__ void layernorm(float* x, u16* h, const u16* w, const u16* b, long long n, float eps) {
    __shared__ float sh[32];
    long long r = blockIdx.x;
    float* xr = x + r * n;
    float s = 0.f;
    for (long long i = threadIdx.x; i < n; i += blockDim.x) s += xr[i];
    float mean = block_sum(s, sh) / (float)n;
    float v = 0.f;
    for (long long i = threadIdx.x; i < n; i += blockDim.x) { float d = xr[i] - mean; v += d * d; }
    float inv = rsqrtf(block_sum(v, sh) / (float)n + eps);
    for (long long i = threadIdx.x; i < n; i += blockDim.x) {
        float o = (xr[i] - mean) * inv * ld16(w[i]) + ld16(b[i]);
        xr[i] = o;
        h[r * n + i] = st16(o);
    }
}

// y = act(y + b) for a [rows, n] matrix (act 0: none, 1: ReLU, 2: GELU
// with erf); when out is not null its 16-bit copy goes there; when res is
// not null the residual res is added after the bias.
extern "C" __global__ void bias_act(float* y, const u16* b, const float* res, u16* out, long long rows, long long n, long long act) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < rows * n; i += (long long)gridDim.x * blockDim.x) {
        float v = y[i] + ld16(b[i % n]);
        if (act == 1) v = fmaxf(v, 0.f);
        else if (act == 2) v = 0.5f * v * (1.f + erff(v * 0.70710678118654752f));
        if (res) v += res[i];
        y[i] = v;
        if (out) out[i] = st16(v);
    }
}

// Bidirectional attention over the token's own sequence (qkv packed
// [T, 3H]), one block of 4 warps per (token, head), online softmax.
extern "C" __global__ void bert_attention(u16* out, const float* qkv, const int* seq_start, const int* seq_len,
                                          long long heads, long long d, float scale) {
    long long t = blockIdx.x, h = blockIdx.y;
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    long long H = heads * d, width = 3 * H;
    const float* q = qkv + t * width + h * d;
    int per = (int)((d + 31) / 32);
    float qr[8], acc[8];
    for (int j = 0; j < per; j++) {
        long long i = lane + 32 * j;
        qr[j] = i < d ? q[i] * scale : 0.f;
        acc[j] = 0.f;
    }
    float m = -1e30f, l = 0.f;
    long long s0 = seq_start[t], n = seq_len[t];
    for (long long p = warp; p < n; p += 4) {
        const float* k = qkv + (s0 + p) * width + H + h * d;
        const float* v = k + H;
        float s = 0.f;
        for (int j = 0; j < per; j++) {
            long long i = lane + 32 * j;
            if (i < d) s += qr[j] * k[i];
        }
        s = warp_sum(s);
        float mn = fmaxf(m, s), corr = __expf(m - mn), w = __expf(s - mn);
        l = l * corr + w;
        for (int j = 0; j < per; j++) {
            long long i = lane + 32 * j;
            acc[j] = acc[j] * corr + (i < d ? w * v[i] : 0.f);
        }
        m = mn;
    }
    merge_warps(m, l, acc, per, d, out + t * H + h * d);
}

// pooled[s] = mean of x over sequence s's tokens, 16-bit.
extern "C" __global__ void mean_pool(u16* pooled, const float* x, const int* starts, const int* lens, long long hidden) {
    long long s = blockIdx.x;
    long long s0 = starts[s], n = lens[s];
    for (long long i = threadIdx.x; i < hidden; i += blockDim.x) {
        float acc = 0.f;
        for (long long t = 0; t < n; t++) acc += x[(s0 + t) * hidden + i];
        pooled[s * hidden + i] = st16(acc / (float)n);
    }
}
