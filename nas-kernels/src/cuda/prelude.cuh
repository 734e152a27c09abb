// Shared by every kernel module: prepended to each `.cu` file before NVRTC compiles it, and
// included once before all modules by the C++ emulation (build.rs).
//
// Conventions: sizes are `int` (the launch code refuses sizes over 2^31 - 1); kernels that
// reduce with the block helpers below are launched with a block of a multiple of 32 threads
// (at most 1024), and every thread of the block calls them.
#ifndef NAS_EMU
#define EMU_EXPORT(name)
#endif

#define NAS_MAX_RANK 8
#define NAS_MAX_PTRS 16
#define NAS_NEG_INF __uint_as_float(0xff800000u)

// Broadcasting geometry (elementwise module): `rank` output dims and each operand's strides
// (0 along broadcast dims).
struct NasBroadcast {
    int rank;
    int dims[NAS_MAX_RANK];
    int sa[NAS_MAX_RANK];
    int sb[NAS_MAX_RANK];
};

// Up to NAS_MAX_PTRS buffers passed by value (DARTS' weighted sum, concat/split, clipping).
struct NasPtrs {
    const float* p[NAS_MAX_PTRS];
    int n[NAS_MAX_PTRS];
};
struct NasMutPtrs {
    float* p[NAS_MAX_PTRS];
    int n[NAS_MAX_PTRS];
};

__device__ __forceinline__ float nas_warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ double nas_warp_sum_d(double v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float nas_warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_down_sync(0xffffffffu, v, o));
    return v;
}

// Sum over the block (a fixed tree: deterministic); every thread gets the result.
__device__ double nas_block_sum_d(double v) {
    __shared__ double part[32];
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    v = nas_warp_sum_d(v);
    __syncthreads();  // the previous call's readers are done with part[]
    if (lane == 0) part[w] = v;
    __syncthreads();
    if (w == 0) {
        v = lane < (int)(blockDim.x >> 5) ? part[lane] : 0.0;
        v = nas_warp_sum_d(v);
        if (lane == 0) part[0] = v;
    }
    __syncthreads();
    return part[0];
}

__device__ float nas_block_max(float v) {
    __shared__ float part[32];
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    v = nas_warp_max(v);
    __syncthreads();
    if (lane == 0) part[w] = v;
    __syncthreads();
    if (w == 0) {
        v = lane < (int)(blockDim.x >> 5) ? part[lane] : NAS_NEG_INF;
        v = nas_warp_max(v);
        if (lane == 0) part[0] = v;
    }
    __syncthreads();
    return part[0];
}

// ---------------------------------------------------------------- tiled GEMM core
// A block of 256 threads computes a TBM x TBN tile of C = A (M x K) * B (K x N), TBK of K
// at a time through shared memory; each thread holds a 4 x 4 register block (rows
// ty + 16 i, columns tx + 16 j: conflict-free shared reads). Loaders fill the shared tiles
// (`la.load(As, k0)`: As[k][m] for the tile's rows; `lb.load(Bs, k0)`: Bs[k][n]) with zeros
// outside the matrix, so the core needs no bounds checks. Used by SGEMM and by the implicit-
// GEMM convolutions.
#define TBM 64
#define TBN 64
#define TBK 16
#define TPAD 4

template <class LA, class LB>
__device__ __forceinline__ void nas_gemm_core(const LA& la, const LB& lb, int K,
                                              float (*As)[TBM + TPAD], float (*Bs)[TBN + TPAD],
                                              float acc[4][4]) {
    int t = threadIdx.x, ty = t / 16, tx = t % 16;
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) acc[i][j] = 0.0f;
    for (int k0 = 0; k0 < K; k0 += TBK) {
        la.load(As, k0);
        lb.load(Bs, k0);
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < TBK; kk++) {
            float a[4], b[4];
#pragma unroll
            for (int i = 0; i < 4; i++) a[i] = As[kk][ty + 16 * i];
#pragma unroll
            for (int j = 0; j < 4; j++) b[j] = Bs[kk][tx + 16 * j];
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int j = 0; j < 4; j++) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
        }
        __syncthreads();
    }
}

// Loaders of row-major (or transposed) matrices for nas_gemm_core: float4 reads when `vec`
// (rows contiguous along K for A, along N for B, 16-byte aligned, K resp. N a multiple of 4),
// single floats otherwise, consecutive threads reading consecutive addresses either way.
struct NasLoadA {
    const float* a;
    int M, K, lda, m0;
    bool trans, vec;
    __device__ void load(float (*As)[TBM + TPAD], int k0) const {
        int t = threadIdx.x;
        if (vec) {
            int row = t / 4, kq = (t % 4) * 4;
            int m = m0 + row, k = k0 + kq;
            float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            if (m < M && k < K) v = *reinterpret_cast<const float4*>(a + (long long)m * lda + k);
            As[kq][row] = v.x;
            As[kq + 1][row] = v.y;
            As[kq + 2][row] = v.z;
            As[kq + 3][row] = v.w;
            return;
        }
#pragma unroll
        for (int e = 0; e < 4; e++) {
            int idx = t + 256 * e, row, kk;
            if (trans) {
                kk = idx / TBM;
                row = idx % TBM;
            } else {
                row = idx / TBK;
                kk = idx % TBK;
            }
            int m = m0 + row, k = k0 + kk;
            float v = 0.0f;
            if (m < M && k < K) v = trans ? a[(long long)k * lda + m] : a[(long long)m * lda + k];
            As[kk][row] = v;
        }
    }
};

struct NasLoadB {
    const float* b;
    int N, K, ldb, n0;
    bool trans, vec;
    __device__ void load(float (*Bs)[TBN + TPAD], int k0) const {
        int t = threadIdx.x;
        if (vec) {
            int kk = t / 16, nq = (t % 16) * 4;
            int k = k0 + kk, n = n0 + nq;
            float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            if (k < K && n < N) v = *reinterpret_cast<const float4*>(b + (long long)k * ldb + n);
            Bs[kk][nq] = v.x;
            Bs[kk][nq + 1] = v.y;
            Bs[kk][nq + 2] = v.z;
            Bs[kk][nq + 3] = v.w;
            return;
        }
#pragma unroll
        for (int e = 0; e < 4; e++) {
            int idx = t + 256 * e, col, kk;
            if (trans) {
                col = idx / TBK;
                kk = idx % TBK;
            } else {
                kk = idx / TBN;
                col = idx % TBN;
            }
            int n = n0 + col, k = k0 + kk;
            float v = 0.0f;
            if (n < N && k < K) v = trans ? b[(long long)n * ldb + k] : b[(long long)k * ldb + n];
            Bs[kk][col] = v;
        }
    }
};

