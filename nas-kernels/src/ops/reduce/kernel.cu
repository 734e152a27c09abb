// Reductions along an axis (x seen as [outer, len, inner]), softmax and log-softmax over rows,
// cross-entropy with integer labels, and row arg-max. Sums accumulate in double, as on the
// CPU. Row kernels use one warp per row (8 rows per 256-thread block).

// op: 0 sum, 1 mean, 2 max. One thread per (o, i) output; for inner > 1.
extern "C" __global__ void rd_cols(int op, const float* x, float* out, int outer, int len,
                                   int inner) {
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= outer * inner) return;
    int o = t / inner, i = t % inner;
    const float* p = x + (long long)o * len * inner + i;
    if (op == 2) {
        float m = NAS_NEG_INF;
        for (int l = 0; l < len; l++) {
            float v = p[(long long)l * inner];
            if (v > m) m = v;
        }
        out[t] = m;
    } else {
        double s = 0.0;
        for (int l = 0; l < len; l++) s += (double)p[(long long)l * inner];
        out[t] = (float)(op == 1 ? s * (1.0 / (double)len) : s);
    }
}
EMU_EXPORT(rd_cols)

// inner == 1: one block per output, its threads striding over the row.
extern "C" __global__ void rd_rows(int op, const float* x, float* out, int len) {
    int o = blockIdx.x;
    const float* p = x + (long long)o * len;
    if (op == 2) {
        float m = NAS_NEG_INF;
        for (int l = threadIdx.x; l < len; l += blockDim.x) {
            float v = p[l];
            if (v > m) m = v;
        }
        m = nas_block_max(m);
        if (threadIdx.x == 0) out[o] = m;
    } else {
        double s = 0.0;
        for (int l = threadIdx.x; l < len; l += blockDim.x) s += (double)p[l];
        s = nas_block_sum_d(s);
        if (threadIdx.x == 0) out[o] = (float)(op == 1 ? s * (1.0 / (double)len) : s);
    }
}
EMU_EXPORT(rd_rows)

// Sum/mean backward: one thread per element of dx.
extern "C" __global__ void rd_spread(const float* dy, float* dx, int len, int inner, float scale,
                                     int n) {
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= n) return;
    int i = j % inner, o = j / (len * inner);
    dx[j] = dy[o * inner + i] * scale;
}
EMU_EXPORT(rd_spread)

// Max backward: one thread per (o, i) column writes all of it; the gradient goes to the
// first position holding the maximum.
extern "C" __global__ void rd_max_backward(const float* x, const float* y, const float* dy,
                                           float* dx, int outer, int len, int inner) {
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= outer * inner) return;
    int o = t / inner, i = t % inner;
    float m = y[t];
    bool found = false;
    for (int l = 0; l < len; l++) {
        long long j = ((long long)o * len + l) * inner + i;
        bool hit = !found && x[j] == m;
        dx[j] = hit ? dy[t] : 0.0f;
        found = found || hit;
    }
}
EMU_EXPORT(rd_max_backward)

// op: 0 softmax, 1 log-softmax. One warp per row.
extern "C" __global__ void rd_softmax(int op, const float* x, float* y, int rows, int cols) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    int lane = threadIdx.x % 32;
    if (row >= rows) return;  // whole warps leave together
    const float* xr = x + (long long)row * cols;
    float* yr = y + (long long)row * cols;
    float m = NAS_NEG_INF;
    for (int j = lane; j < cols; j += 32) m = fmaxf(m, xr[j]);
    m = nas_warp_max(m);
    m = __shfl_sync(0xffffffffu, m, 0);
    double s = 0.0;
    for (int j = lane; j < cols; j += 32) s += (double)expf(xr[j] - m);
    s = nas_warp_sum_d(s);
    s = __shfl_sync(0xffffffffu, s, 0);
    if (op == 0) {
        float inv = (float)(1.0 / s);
        for (int j = lane; j < cols; j += 32) yr[j] = expf(xr[j] - m) * inv;
    } else {
        float lse = m + (float)log(s);
        for (int j = lane; j < cols; j += 32) yr[j] = xr[j] - lse;
    }
}
EMU_EXPORT(rd_softmax)

extern "C" __global__ void rd_softmax_backward(int op, const float* y, const float* dy, float* dx,
                                               int rows, int cols) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    int lane = threadIdx.x % 32;
    if (row >= rows) return;
    const float* yr = y + (long long)row * cols;
    const float* gr = dy + (long long)row * cols;
    float* dr = dx + (long long)row * cols;
    double s = 0.0;
    for (int j = lane; j < cols; j += 32)
        s += op == 0 ? (double)yr[j] * (double)gr[j] : (double)gr[j];
    s = nas_warp_sum_d(s);
    float sf = (float)__shfl_sync(0xffffffffu, s, 0);
    for (int j = lane; j < cols; j += 32)
        dr[j] = op == 0 ? yr[j] * (gr[j] - sf) : gr[j] - expf(yr[j]) * sf;
}
EMU_EXPORT(rd_softmax_backward)

// Mean over rows of logsumexp(row) - row[label]; one block, rows in a fixed order per thread,
// then a fixed tree.
extern "C" __global__ void rd_cross_entropy(const float* x, const unsigned* labels, float* loss,
                                            int rows, int cols) {
    double total = 0.0;
    for (int r = threadIdx.x; r < rows; r += blockDim.x) {
        const float* xr = x + (long long)r * cols;
        float m = NAS_NEG_INF;
        for (int j = 0; j < cols; j++) m = fmaxf(m, xr[j]);
        double s = 0.0;
        for (int j = 0; j < cols; j++) s += exp((double)(xr[j] - m));
        total += (double)m + log(s) - (double)xr[labels[r]];
    }
    total = nas_block_sum_d(total);
    if (threadIdx.x == 0) loss[0] = (float)(total / (double)rows);
}
EMU_EXPORT(rd_cross_entropy)

// dlogits = dloss / rows * (softmax - onehot); one warp per row.
extern "C" __global__ void rd_cross_entropy_backward(const float* x, const unsigned* labels,
                                                     const float* dloss, float* dx, int rows,
                                                     int cols) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    int lane = threadIdx.x % 32;
    if (row >= rows) return;
    const float* xr = x + (long long)row * cols;
    float* dr = dx + (long long)row * cols;
    float m = NAS_NEG_INF;
    for (int j = lane; j < cols; j += 32) m = fmaxf(m, xr[j]);
    m = nas_warp_max(m);
    m = __shfl_sync(0xffffffffu, m, 0);
    double s = 0.0;
    for (int j = lane; j < cols; j += 32) s += (double)expf(xr[j] - m);
    s = nas_warp_sum_d(s);
    s = __shfl_sync(0xffffffffu, s, 0);
    float inv = (float)(1.0 / s);
    float scale = dloss[0] / (float)rows;
    int lab = (int)labels[row];
    for (int j = lane; j < cols; j += 32) {
        float p = expf(xr[j] - m) * inv;
        if (j == lab) p -= 1.0f;
        dr[j] = p * scale;
    }
}
EMU_EXPORT(rd_cross_entropy_backward)

// The index of the first largest value of each row, as a float; one thread per row.
extern "C" __global__ void rd_argmax_rows(const float* x, float* out, int rows, int cols) {
    int r = blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= rows) return;
    const float* xr = x + (long long)r * cols;
    int best = 0;
    for (int j = 1; j < cols; j++)
        if (xr[j] > xr[best]) best = j;
    out[r] = (float)best;
}
EMU_EXPORT(rd_argmax_rows)
