// Single-precision GEMM: C = alpha * op(A) op(B) + beta * C, row-major, optional transposes,
// batched over blockIdx.z (B shared across the batch or not). The tiled core is in the
// prelude (shared-memory tiles, 4 x 4 register blocks); the loaders here read float4s when
// the rows are contiguous along K (A) or N (B), 16-byte aligned, and K (resp. N) is a
// multiple of 4, and single floats otherwise (the loaders are in the prelude: the
// convolutions read their weights with them too). `mm_sgemm` is exact f32 (FMA);
// `mm_sgemm_tf32` is the same GEMM on TF32 tensor cores (compute capability >= 8.0, launched
// only when TF32 is switched on: `Cuda::set_tf32`).

// flags: bit 0 trans_a, bit 1 trans_b, bit 2 vector loads of A, bit 3 of B, bit 4 B shared
// across the batch. `z0` is the first batch index of this launch (grids hold <= 65535).
template <bool TF32>
__device__ __forceinline__ void mm_sgemm_body(const float* a, const float* b, float* c, int M,
                                              int N, int K, float alpha, float beta, int flags,
                                              int z0) {
    __shared__ float As[TBK][TBM + TPAD];
    __shared__ float Bs[TBK][TBN + TPAD];
    bool ta = flags & 1, tb = flags & 2;
    long long z = (long long)z0 + blockIdx.z;
    NasLoadA la;
    la.a = a + z * M * K;
    la.M = M;
    la.K = K;
    la.lda = ta ? M : K;
    la.m0 = blockIdx.y * TBM;
    la.trans = ta;
    la.vec = (flags & 4) != 0;
    NasLoadB lb;
    lb.b = b + ((flags & 16) ? 0 : z * K * N);
    lb.N = N;
    lb.K = K;
    lb.ldb = tb ? K : N;
    lb.n0 = blockIdx.x * TBN;
    lb.trans = tb;
    lb.vec = (flags & 8) != 0;
    float acc[4][4];
    nas_gemm<TF32>(la, lb, K, As, Bs, acc);
    float* cz = c + z * M * N;
#pragma unroll
    for (int i = 0; i < 4; i++) {
#pragma unroll
        for (int j = 0; j < 4; j++) {
            int m = la.m0 + nas_acc_row<TF32>(i, j), n = lb.n0 + nas_acc_col<TF32>(i, j);
            if (m >= M || n >= N) continue;
            float v = alpha * acc[i][j];
            if (beta != 0.0f) v += beta * cz[(long long)m * N + n];
            cz[(long long)m * N + n] = v;
        }
    }
}

extern "C" __global__ void mm_sgemm(const float* a, const float* b, float* c, int M, int N,
                                    int K, float alpha, float beta, int flags, int z0) {
    mm_sgemm_body<false>(a, b, c, M, N, K, alpha, beta, flags, z0);
}
EMU_EXPORT(mm_sgemm)

extern "C" __global__ void mm_sgemm_tf32(const float* a, const float* b, float* c, int M, int N,
                                         int K, float alpha, float beta, int flags, int z0) {
    mm_sgemm_body<true>(a, b, c, M, N, K, alpha, beta, flags, z0);
}
EMU_EXPORT(mm_sgemm_tf32)
