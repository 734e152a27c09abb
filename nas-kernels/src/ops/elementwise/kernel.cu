// Elementwise kernels: unary maps and their backward, broadcasting binary ops, sums back to a
// broadcast shape, axpy, DARTS' weighted sum, channel concat/split copies, fills, copies and
// the backward of maximum/minimum. One thread per output element.
//
// Op codes mirror `cuda_kernel.rs` (`unary_code`, `binary_code`).

__device__ __forceinline__ float nas_unary(int op, float a, float x) {
    switch (op) {
        case 0: return fmaxf(x, 0.0f);
        case 1: return -x;
        case 2: return expf(x);
        case 3: return logf(x);
        case 4: return sqrtf(x);
        case 5: return x * x;
        case 6: return fabsf(x);
        case 7: return tanhf(x);
        case 8: return 1.0f / (1.0f + expf(-x));
        case 9: return 1.0f / x;
        case 10: return a * x;
        default: return x + a;
    }
}

__device__ __forceinline__ float nas_unary_grad(int op, float a, float x, float y, float dy) {
    switch (op) {
        case 0: return x > 0.0f ? dy : 0.0f;
        case 1: return -dy;
        case 2: return dy * y;
        case 3: return dy / x;
        case 4: return dy * 0.5f / y;
        case 5: return dy * 2.0f * x;
        case 6: return x > 0.0f ? dy : (x < 0.0f ? -dy : 0.0f);
        case 7: return dy * (1.0f - y * y);
        case 8: return dy * y * (1.0f - y);
        case 9: return -dy * y * y;
        case 10: return dy * a;
        default: return dy;
    }
}

__device__ __forceinline__ float nas_binary(int op, float a, float b) {
    switch (op) {
        case 0: return a + b;
        case 1: return a - b;
        case 2: return a * b;
        case 3: return a / b;
        case 4: return fmaxf(a, b);
        default: return fminf(a, b);
    }
}

extern "C" __global__ void ew_unary(int op, float a, const float* x, float* y, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = nas_unary(op, a, x[i]);
}
EMU_EXPORT(ew_unary)

extern "C" __global__ void ew_unary_backward(int op, float a, const float* x, const float* y,
                                             const float* dy, float* dx, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) dx[i] = nas_unary_grad(op, a, x[i], y[i], dy[i]);
}
EMU_EXPORT(ew_unary_backward)

// Same-shape operands.
extern "C" __global__ void ew_binary_flat(int op, const float* a, const float* b, float* out,
                                          int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = nas_binary(op, a[i], b[i]);
}
EMU_EXPORT(ew_binary_flat)

// Broadcasting operands: `g.dims` is the output shape, `g.sa`/`g.sb` the operands' strides.
extern "C" __global__ void ew_binary(int op, const float* a, const float* b, float* out,
                                     NasBroadcast g, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    int r = i, ia = 0, ib = 0;
    for (int d = g.rank - 1; d >= 0; d--) {
        int c = r % g.dims[d];
        r /= g.dims[d];
        ia += c * g.sa[d];
        ib += c * g.sb[d];
    }
    out[i] = nas_binary(op, a[ia], b[ib]);
}
EMU_EXPORT(ew_binary)

// `out = x` broadcast: `g.dims` the output shape, `g.sa` the strides of x (0 where broadcast).
extern "C" __global__ void ew_broadcast(const float* x, float* out, NasBroadcast g, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    int r = i, ix = 0;
    for (int d = g.rank - 1; d >= 0; d--) {
        int c = r % g.dims[d];
        r /= g.dims[d];
        ix += c * g.sa[d];
    }
    out[i] = x[ix];
}
EMU_EXPORT(ew_broadcast)

// `out[o] = sum of x over the reduced dims`: `kept.dims`/`kept.sa` are the output's dims and
// the matching strides of x; `red.dims`/`red.sa` the summed dims and their strides in x.
extern "C" __global__ void ew_sum_to_shape(const float* x, float* out, NasBroadcast kept,
                                           NasBroadcast red, int n_out, int n_red) {
    int o = blockIdx.x * blockDim.x + threadIdx.x;
    if (o >= n_out) return;
    int r = o, base = 0;
    for (int d = kept.rank - 1; d >= 0; d--) {
        int c = r % kept.dims[d];
        r /= kept.dims[d];
        base += c * kept.sa[d];
    }
    double acc = 0.0;
    for (int j = 0; j < n_red; j++) {
        int q = j, off = 0;
        for (int d = red.rank - 1; d >= 0; d--) {
            int c = q % red.dims[d];
            q /= red.dims[d];
            off += c * red.sa[d];
        }
        acc += (double)x[base + off];
    }
    out[o] = (float)acc;
}
EMU_EXPORT(ew_sum_to_shape)

extern "C" __global__ void ew_axpy(float alpha, const float* x, float* y, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] += alpha * x[i];
}
EMU_EXPORT(ew_axpy)

extern "C" __global__ void ew_fill(float* y, float v, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = v;
}
EMU_EXPORT(ew_fill)

extern "C" __global__ void ew_copy(const float* x, float* y, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = x[i];
}
EMU_EXPORT(ew_copy)

// `out (+)= sum_{j < k} w[w0 + j] * xs.p[j]`, terms added in input order; `accumulate` adds
// to `out` (the second and later chunks of more than NAS_MAX_PTRS inputs).
extern "C" __global__ void ew_weighted_sum(const float* w, int w0, NasPtrs xs, int k, float* out,
                                           int n, int accumulate) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float acc = accumulate ? out[i] : 0.0f;
    for (int j = 0; j < k; j++) acc += w[w0 + j] * xs.p[j][i];
    out[i] = acc;
}
EMU_EXPORT(ew_weighted_sum)

// `dxs.p[j] = w[w0 + j] * dy` for j = blockIdx.y.
extern "C" __global__ void ew_weighted_sum_dx(const float* w, int w0, const float* dy,
                                              NasMutPtrs dxs, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    int j = blockIdx.y;
    if (i < n) dxs.p[j][i] = w[w0 + j] * dy[i];
}
EMU_EXPORT(ew_weighted_sum_dx)

// `dw[w0 + j] = sum_i dy[i] * xs.p[j][i]`, one block per j (blockIdx.x), summed in double.
extern "C" __global__ void ew_weighted_sum_dw(const float* dy, NasPtrs xs, float* dw, int w0,
                                              int n) {
    int j = blockIdx.x;
    const float* x = xs.p[j];
    double acc = 0.0;
    for (int i = threadIdx.x; i < n; i += blockDim.x) acc += (double)dy[i] * (double)x[i];
    acc = nas_block_sum_d(acc);
    if (threadIdx.x == 0) dw[w0 + j] = (float)acc;
}
EMU_EXPORT(ew_weighted_sum_dw)

// Copies `c` channels of an `[n, cs, hw]` tensor starting at channel `s0` into an
// `[n, cd, hw]` tensor starting at channel `d0` (concat and split along channels).
extern "C" __global__ void ew_channel_copy(const float* src, int cs, int s0, float* dst, int cd,
                                           int d0, int n, int c, int hw) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    int total = n * c * hw;
    if (i >= total) return;
    int p = i % hw;
    int ch = (i / hw) % c;
    int b = i / (hw * c);
    dst[(b * cd + d0 + ch) * hw + p] = src[(b * cs + s0 + ch) * hw + p];
}
EMU_EXPORT(ew_channel_copy)

// Backward of maximum/minimum: the gradient goes to `a` where `a == y`, else to `b`.
extern "C" __global__ void ew_select_backward(const float* a, const float* y, const float* dy,
                                              float* da, float* db, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    bool a_wins = a[i] == y[i];
    da[i] = a_wins ? dy[i] : 0.0f;
    db[i] = a_wins ? 0.0f : dy[i];
}
EMU_EXPORT(ew_select_backward)
