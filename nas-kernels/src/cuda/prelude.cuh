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
// at a time through shared memory; each thread holds 16 accumulators acc[4][4], whose place
// in the tile `nas_acc_row` / `nas_acc_col` give. Loaders fill the shared tiles
// (`la.load(As, k0)`: As[k][m] for the tile's rows; `lb.load(Bs, k0)`: Bs[k][n]) with zeros
// outside the matrix, so the core needs no bounds checks. Used by SGEMM and by the implicit-
// GEMM convolutions, through `nas_gemm<TF32>`: the exact-f32 core (`nas_gemm_core`, FMA on
// CUDA cores) or the TF32 tensor-core core (`nas_gemm_core_tf32`, compute capability >= 8.0).
#define TBM 64
#define TBN 64
#define TBK 16
#define TPAD 4

// f32: each thread holds a 4 x 4 register block, rows ty + 16 i and columns tx + 16 j
// (conflict-free shared reads).
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


// ---------------------------------------------------------------- TF32 tensor cores
// `mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32`: a warp multiplies a 16 x 8 tile of A
// by an 8 x 8 tile of B into a 16 x 8 f32 accumulator. With g = lane / 4, q = lane % 4, the
// PTX ISA's fragment layout (mma.m16n8k8, .tf32) is
//   a0 = A[g][q], a1 = A[g + 8][q], a2 = A[g][q + 4], a3 = A[g + 8][q + 4]
//   b0 = B[q][g], b1 = B[q + 4][g]
//   c0 = C[g][2q], c1 = C[g][2q + 1], c2 = C[g + 8][2q], c3 = C[g + 8][2q + 1]
// and the operands are TF32 values in 32-bit registers: f32s rounded by cvt.rna.tf32.f32 to
// a 10-bit mantissa (round to nearest, ties away from zero; low 13 bits zero). The emulated
// device (emu.h) defines both functions on the CPU with the same layout and rounding.
#ifndef NAS_EMU
__device__ __forceinline__ unsigned nas_cvt_tf32(float x) {
#if __CUDA_ARCH__ >= 800
    unsigned r;
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
    return r;
#else
    __trap();  // the host launches the TF32 kernels on compute capability >= 8.0 only
    return 0u;
#endif
}
__device__ __forceinline__ void nas_mma_tf32(float d[4], const unsigned a[4], const unsigned b[2]) {
#if __CUDA_ARCH__ >= 800
    asm("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
        "{%8, %9}, {%0, %1, %2, %3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#else
    __trap();
#endif
}
#endif

// TF32: the 8 warps of the block tile the 64 x 64 block tile as 2 x 4 warp tiles of 32 rows x
// 16 columns; a warp's tile is 2 x 2 mma tiles of 16 x 8, acc[2 mi + ni][c0..c3]. A TBK = 16
// slice of K is two mma steps: step s takes the shared rows k = 2 kk + s (kk = 0..7, the mma's
// k index), so a fragment load reads As[2q + s (+ 8)][row0 + g]: bank 8q + g (+ const), the
// 32 lanes on 32 banks with the row stride TBM + TPAD = 68. Every operand is rounded to TF32
// as it leaves shared memory; the sums stay in f32.
template <class LA, class LB>
__device__ __forceinline__ void nas_gemm_core_tf32(const LA& la, const LB& lb, int K,
                                                   float (*As)[TBM + TPAD],
                                                   float (*Bs)[TBN + TPAD], float acc[4][4]) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    int g = lane >> 2, q = lane & 3;
    int r0 = (warp >> 2) * 32 + g, c0 = (warp & 3) * 16 + g;
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) acc[i][j] = 0.0f;
    for (int k0 = 0; k0 < K; k0 += TBK) {
        la.load(As, k0);
        lb.load(Bs, k0);
        __syncthreads();
#pragma unroll
        for (int s = 0; s < 2; s++) {
            int klo = 2 * q + s, khi = klo + 8;
            unsigned a[2][4], b[2][2];
#pragma unroll
            for (int mi = 0; mi < 2; mi++) {
                int r = r0 + 16 * mi;
                a[mi][0] = nas_cvt_tf32(As[klo][r]);
                a[mi][1] = nas_cvt_tf32(As[klo][r + 8]);
                a[mi][2] = nas_cvt_tf32(As[khi][r]);
                a[mi][3] = nas_cvt_tf32(As[khi][r + 8]);
            }
#pragma unroll
            for (int ni = 0; ni < 2; ni++) {
                int c = c0 + 8 * ni;
                b[ni][0] = nas_cvt_tf32(Bs[klo][c]);
                b[ni][1] = nas_cvt_tf32(Bs[khi][c]);
            }
#pragma unroll
            for (int mi = 0; mi < 2; mi++)
#pragma unroll
                for (int ni = 0; ni < 2; ni++) nas_mma_tf32(acc[2 * mi + ni], a[mi], b[ni]);
        }
        __syncthreads();
    }
}

// The block tile's row and column of the calling thread's acc[i][j].
template <bool TF32>
__device__ __forceinline__ int nas_acc_row(int i, int j) {
    if constexpr (TF32)
        return (threadIdx.x >> 7) * 32 + (i >> 1) * 16 + ((threadIdx.x & 31) >> 2) + 8 * (j >> 1);
    else
        return threadIdx.x / 16 + 16 * i;
}
template <bool TF32>
__device__ __forceinline__ int nas_acc_col(int i, int j) {
    if constexpr (TF32)
        return ((threadIdx.x >> 5) & 3) * 16 + (i & 1) * 8 + 2 * (threadIdx.x & 3) + (j & 1);
    else
        return threadIdx.x % 16 + 16 * j;
}

template <bool TF32, class LA, class LB>
__device__ __forceinline__ void nas_gemm(const LA& la, const LB& lb, int K,
                                         float (*As)[TBM + TPAD], float (*Bs)[TBN + TPAD],
                                         float acc[4][4]) {
    if constexpr (TF32)
        nas_gemm_core_tf32(la, lb, K, As, Bs, acc);
    else
        nas_gemm_core(la, lb, K, As, Bs, acc);
}
