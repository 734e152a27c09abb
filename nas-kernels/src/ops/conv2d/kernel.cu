// 2-D convolution (NCHW, weight [c_out, c_in / groups, kh, kw]) forward and backward.
// - Forward and weight gradient: implicit GEMM on the prelude's tiled core, the im2col
//   matrix read on the fly (never written); groups on blockIdx.z; the weight gradient splits
//   its long reduction (n * out_h * out_w) over blockIdx.z too, the partial sums added in a
//   fixed order by cv_sum_splits (deterministic). Both have a `_tf32` twin on TF32 tensor
//   cores (the prelude's `nas_gemm<true>`), launched when TF32 is on (`Cuda::set_tf32`).
// - Input gradient: a gather, one thread per input element.
// - Depthwise (groups == c_in == c_out): direct kernels.
// - `relu`: the input is read through max(x, 0) (DARTS' ReLU-conv); a non-null `mask` in the
//   input gradient multiplies it by (mask > 0).

struct NasConv {
    int n, ci, h, w, co, kh, kw, sh, sw, ph, pw, dh, dw, groups, oh, ow;
};

// The im2col value at (k = (ci, ky, kx) within the group, col = (b, oy, ox)), 0 outside.
__device__ __forceinline__ float cv_im2col(const float* x, const NasConv& g, int grp, int k,
                                           int col, bool relu) {
    int cig = g.ci / g.groups, khw = g.kh * g.kw, ohw = g.oh * g.ow;
    int ci = k / khw, r = k % khw, ky = r / g.kw, kx = r % g.kw;
    int b = col / ohw, p = col % ohw, oy = p / g.ow, ox = p % g.ow;
    int iy = oy * g.sh - g.ph + ky * g.dh, ix = ox * g.sw - g.pw + kx * g.dw;
    if (iy < 0 || iy >= g.h || ix < 0 || ix >= g.w) return 0.0f;
    float v = x[(((long long)b * g.ci + grp * cig + ci) * g.h + iy) * g.w + ix];
    return relu ? fmaxf(v, 0.0f) : v;
}

// B of the forward GEMM: im2col, [K = cig*kh*kw, N = n*oh*ow].
struct CvLoadCols {
    const float* x;
    NasConv g;
    int grp, n0, K, N;
    bool relu;
    __device__ void load(float (*Bs)[TBN + TPAD], int k0) const {
#pragma unroll
        for (int e = 0; e < 4; e++) {
            int idx = threadIdx.x + 256 * e, kk = idx / TBN, col = idx % TBN;
            int k = k0 + kk, n = n0 + col;
            Bs[kk][col] = (k < K && n < N) ? cv_im2col(x, g, grp, k, n, relu) : 0.0f;
        }
    }
};

template <bool TF32>
__device__ __forceinline__ void cv_forward_body(const float* x, const float* w, const float* bias,
                                                float* y, NasConv g, int relu, int vec) {
    __shared__ float As[TBK][TBM + TPAD];
    __shared__ float Bs[TBK][TBN + TPAD];
    int grp = blockIdx.z;
    int cog = g.co / g.groups, K = (g.ci / g.groups) * g.kh * g.kw, N = g.n * g.oh * g.ow;
    NasLoadA la;
    la.a = w + (long long)grp * cog * K;
    la.M = cog;
    la.K = K;
    la.lda = K;
    la.m0 = blockIdx.y * TBM;
    la.trans = false;
    la.vec = vec != 0;
    CvLoadCols lb;
    lb.x = x;
    lb.g = g;
    lb.grp = grp;
    lb.n0 = blockIdx.x * TBN;
    lb.K = K;
    lb.N = N;
    lb.relu = relu != 0;
    float acc[4][4];
    nas_gemm<TF32>(la, lb, K, As, Bs, acc);
    int ohw = g.oh * g.ow;
#pragma unroll
    for (int i = 0; i < 4; i++) {
#pragma unroll
        for (int j = 0; j < 4; j++) {
            int m = la.m0 + nas_acc_row<TF32>(i, j), n = lb.n0 + nas_acc_col<TF32>(i, j);
            if (m >= cog || n >= N) continue;
            int oc = grp * cog + m;
            float bv = bias ? bias[oc] : 0.0f;
            int b = n / ohw, p = n % ohw;
            y[((long long)b * g.co + oc) * ohw + p] = acc[i][j] + bv;
        }
    }
}

extern "C" __global__ void cv_forward(const float* x, const float* w, const float* bias, float* y,
                                      NasConv g, int relu, int vec) {
    cv_forward_body<false>(x, w, bias, y, g, relu, vec);
}
EMU_EXPORT(cv_forward)

// The same on TF32 tensor cores (compute capability >= 8.0; `Cuda::set_tf32`).
extern "C" __global__ void cv_forward_tf32(const float* x, const float* w, const float* bias,
                                           float* y, NasConv g, int relu, int vec) {
    cv_forward_body<true>(x, w, bias, y, g, relu, vec);
}
EMU_EXPORT(cv_forward_tf32)

// A of the weight-gradient GEMM: dy as [cog, cols], cols = (b, p) from `kbase`.
struct CvLoadDy {
    const float* dy;
    NasConv g;
    int grp, m0, kbase, K;
    __device__ void load(float (*As)[TBM + TPAD], int k0) const {
        int cog = g.co / g.groups, ohw = g.oh * g.ow;
#pragma unroll
        for (int e = 0; e < 4; e++) {
            int idx = threadIdx.x + 256 * e, row = idx / TBK, kk = idx % TBK;
            int m = m0 + row, k = k0 + kk;
            float v = 0.0f;
            if (m < cog && k < K) {
                int col = kbase + k, b = col / ohw, p = col % ohw;
                v = dy[((long long)b * g.co + grp * cog + m) * ohw + p];
            }
            As[kk][row] = v;
        }
    }
};

// B of the weight-gradient GEMM: im2col transposed, [cols, cig*kh*kw].
struct CvLoadColsT {
    const float* x;
    NasConv g;
    int grp, n0, kbase, K, N;
    bool relu;
    __device__ void load(float (*Bs)[TBN + TPAD], int k0) const {
#pragma unroll
        for (int e = 0; e < 4; e++) {
            int idx = threadIdx.x + 256 * e, col = idx / TBK, kk = idx % TBK;
            int n = n0 + col, k = k0 + kk;
            Bs[kk][col] = (n < N && k < K) ? cv_im2col(x, g, grp, n, kbase + k, relu) : 0.0f;
        }
    }
};

// blockIdx.z = grp * splits + s; split s sums cols [s * chunk, min((s + 1) * chunk, cols))
// into dst[s][co][cig*kh*kw].
template <bool TF32>
__device__ __forceinline__ void cv_backward_weight_body(const float* x, const float* dy,
                                                        float* dst, NasConv g, int relu,
                                                        int splits, int chunk) {
    __shared__ float As[TBK][TBM + TPAD];
    __shared__ float Bs[TBK][TBN + TPAD];
    int grp = blockIdx.z / splits, s = blockIdx.z % splits;
    int cog = g.co / g.groups, Kw = (g.ci / g.groups) * g.kh * g.kw;
    int cols = g.n * g.oh * g.ow;
    int kbase = s * chunk;
    int K = min(chunk, cols - kbase);
    CvLoadDy la;
    la.dy = dy;
    la.g = g;
    la.grp = grp;
    la.m0 = blockIdx.y * TBM;
    la.kbase = kbase;
    la.K = K;
    CvLoadColsT lb;
    lb.x = x;
    lb.g = g;
    lb.grp = grp;
    lb.n0 = blockIdx.x * TBN;
    lb.kbase = kbase;
    lb.K = K;
    lb.N = Kw;
    lb.relu = relu != 0;
    float acc[4][4];
    nas_gemm<TF32>(la, lb, K > 0 ? K : 0, As, Bs, acc);
#pragma unroll
    for (int i = 0; i < 4; i++) {
#pragma unroll
        for (int j = 0; j < 4; j++) {
            int m = la.m0 + nas_acc_row<TF32>(i, j), n = lb.n0 + nas_acc_col<TF32>(i, j);
            if (m >= cog || n >= Kw) continue;
            dst[((long long)s * g.co + grp * cog + m) * Kw + n] = acc[i][j];
        }
    }
}

extern "C" __global__ void cv_backward_weight(const float* x, const float* dy, float* dst,
                                              NasConv g, int relu, int splits, int chunk) {
    cv_backward_weight_body<false>(x, dy, dst, g, relu, splits, chunk);
}
EMU_EXPORT(cv_backward_weight)

// The same on TF32 tensor cores (compute capability >= 8.0; `Cuda::set_tf32`).
extern "C" __global__ void cv_backward_weight_tf32(const float* x, const float* dy, float* dst,
                                                   NasConv g, int relu, int splits, int chunk) {
    cv_backward_weight_body<true>(x, dy, dst, g, relu, splits, chunk);
}
EMU_EXPORT(cv_backward_weight_tf32)

// out[i] = sum_s parts[s * len + i], s in order.
extern "C" __global__ void cv_sum_splits(const float* parts, float* out, int splits, int len) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= len) return;
    float acc = 0.0f;
    for (int s = 0; s < splits; s++) acc += parts[(long long)s * len + i];
    out[i] = acc;
}
EMU_EXPORT(cv_sum_splits)

// db[oc] = sum over (b, p) of dy; one block per output channel.
extern "C" __global__ void cv_bias_grad(const float* dy, float* db, int n, int co, int ohw) {
    int oc = blockIdx.x;
    double acc = 0.0;
    for (int i = threadIdx.x; i < n * ohw; i += blockDim.x) {
        int b = i / ohw, p = i % ohw;
        acc += (double)dy[((long long)b * co + oc) * ohw + p];
    }
    acc = nas_block_sum_d(acc);
    if (threadIdx.x == 0) db[oc] = (float)acc;
}
EMU_EXPORT(cv_bias_grad)

// dx[b, ci, iy, ix] = sum over the outputs it fed; one thread per input element.
extern "C" __global__ void cv_backward_input(const float* w, const float* dy, const float* mask,
                                             float* dx, NasConv g) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    long long total = (long long)g.n * g.ci * g.h * g.w;
    if (i >= total) return;
    int ix = i % g.w, iy = (i / g.w) % g.h, ci = (i / ((long long)g.w * g.h)) % g.ci;
    int b = i / ((long long)g.w * g.h * g.ci);
    int cig = g.ci / g.groups, cog = g.co / g.groups;
    int grp = ci / cig, cil = ci % cig;
    float acc = 0.0f;
    for (int ky = 0; ky < g.kh; ky++) {
        int ty = iy + g.ph - ky * g.dh;
        if (ty < 0 || ty % g.sh != 0) continue;
        int oy = ty / g.sh;
        if (oy >= g.oh) continue;
        for (int kx = 0; kx < g.kw; kx++) {
            int tx = ix + g.pw - kx * g.dw;
            if (tx < 0 || tx % g.sw != 0) continue;
            int ox = tx / g.sw;
            if (ox >= g.ow) continue;
            for (int m = 0; m < cog; m++) {
                int oc = grp * cog + m;
                float wv = w[(((long long)oc * cig + cil) * g.kh + ky) * g.kw + kx];
                acc = fmaf(wv, dy[(((long long)b * g.co + oc) * g.oh + oy) * g.ow + ox], acc);
            }
        }
    }
    if (mask && !(mask[i] > 0.0f)) acc = 0.0f;
    dx[i] = acc;
}
EMU_EXPORT(cv_backward_input)

// Depthwise forward: one thread per output element.
extern "C" __global__ void cv_dw_forward(const float* x, const float* w, const float* bias,
                                         float* y, NasConv g, int relu) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    long long total = (long long)g.n * g.co * g.oh * g.ow;
    if (i >= total) return;
    int ox = i % g.ow, oy = (i / g.ow) % g.oh;
    long long plane = i / ((long long)g.ow * g.oh);
    int c = plane % g.co;
    const float* xp = x + plane * g.h * g.w;
    const float* wp = w + (long long)c * g.kh * g.kw;
    float acc = 0.0f;
    for (int ky = 0; ky < g.kh; ky++) {
        int iy = oy * g.sh - g.ph + ky * g.dh;
        if (iy < 0 || iy >= g.h) continue;
        for (int kx = 0; kx < g.kw; kx++) {
            int ix = ox * g.sw - g.pw + kx * g.dw;
            if (ix < 0 || ix >= g.w) continue;
            float v = xp[iy * g.w + ix];
            if (relu) v = fmaxf(v, 0.0f);
            acc = fmaf(wp[ky * g.kw + kx], v, acc);
        }
    }
    y[i] = acc + (bias ? bias[c] : 0.0f);
}
EMU_EXPORT(cv_dw_forward)

// Depthwise weight gradient: one block per (c, ky, kx).
extern "C" __global__ void cv_dw_backward_weight(const float* x, const float* dy, float* dw,
                                                 NasConv g, int relu) {
    int khw = g.kh * g.kw;
    int c = blockIdx.x / khw, r = blockIdx.x % khw, ky = r / g.kw, kx = r % g.kw;
    int ohw = g.oh * g.ow;
    double acc = 0.0;
    for (int j = threadIdx.x; j < g.n * ohw; j += blockDim.x) {
        int b = j / ohw, p = j % ohw, oy = p / g.ow, ox = p % g.ow;
        int iy = oy * g.sh - g.ph + ky * g.dh, ix = ox * g.sw - g.pw + kx * g.dw;
        if (iy < 0 || iy >= g.h || ix < 0 || ix >= g.w) continue;
        float v = x[(((long long)b * g.ci + c) * g.h + iy) * g.w + ix];
        if (relu) v = fmaxf(v, 0.0f);
        acc += (double)v * (double)dy[((long long)b * g.co + c) * ohw + p];
    }
    acc = nas_block_sum_d(acc);
    if (threadIdx.x == 0) dw[blockIdx.x] = (float)acc;
}
EMU_EXPORT(cv_dw_backward_weight)
