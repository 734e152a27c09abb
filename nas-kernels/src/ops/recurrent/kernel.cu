// Embedding rows and the LSTM (equations in `ops/recurrent/mod.rs`). Correctness first: the
// recurrent products of the sequence kernels are plain per-thread dot products, one launch
// per step (a tiled version is speed work).

__device__ __forceinline__ float rc_sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

// out[r, :] = table[idx[r], :], one thread per element.
extern "C" __global__ void rc_gather(const float* table, const unsigned* idx, float* out, int rows,
                                     int cols) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= rows * cols) return;
    int r = i / cols, c = i % cols;
    out[i] = table[(long long)idx[r] * cols + c];
}
EMU_EXPORT(rc_gather)

// table[idx[r], :] += src[r, :], one thread per column walking the rows in order (repeated
// indices add up in index order, as on the CPU).
extern "C" __global__ void rc_scatter_add(const float* src, const unsigned* idx, float* table,
                                          int rows, int cols) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= cols) return;
    for (int r = 0; r < rows; r++) table[(long long)idx[r] * cols + c] += src[(long long)r * cols + c];
}
EMU_EXPORT(rc_scatter_add)

// The pointwise LSTM step of element e = (row, unit): pre-activations `g` (row stride 4h)
// become activated gates in `a`; writes h and c.
__device__ __forceinline__ void rc_point(const float* g, float* a, float c_prev, float* h_out,
                                         float* c_out, int h, int j) {
    float i = rc_sigmoid(g[j]), f = rc_sigmoid(g[h + j]), gg = tanhf(g[2 * h + j]),
          o = rc_sigmoid(g[3 * h + j]);
    float c = f * c_prev + i * gg;
    a[j] = i;
    a[h + j] = f;
    a[2 * h + j] = gg;
    a[3 * h + j] = o;
    *c_out = c;
    *h_out = o * tanhf(c);
}

// The backward of rc_point from the activated gates `a`: writes the pre-activation gradients
// to `d` (row stride 4h) and returns the gradient of c_prev.
__device__ __forceinline__ float rc_point_bwd(const float* a, float c_prev, float c, float dh,
                                              float dc, float* d, int h, int j) {
    float i = a[j], f = a[h + j], g = a[2 * h + j], o = a[3 * h + j];
    float tc = tanhf(c);
    float dct = dc + dh * o * (1.0f - tc * tc);
    d[j] = dct * g * i * (1.0f - i);
    d[h + j] = dct * c_prev * f * (1.0f - f);
    d[2 * h + j] = dct * i * (1.0f - g * g);
    d[3 * h + j] = dh * tc * o * (1.0f - o);
    return dct * f;
}

// lstm_cell: gates [n, 4h], c_prev [n, h] -> act [n, 4h], hc [2, n, h] (h, then c).
extern "C" __global__ void rc_cell_fwd(const float* gates, const float* c_prev, float* act,
                                       float* hc, int n, int h) {
    int e = blockIdx.x * blockDim.x + threadIdx.x;
    if (e >= n * h) return;
    int r = e / h, j = e % h;
    long long row = (long long)r * 4 * h;
    rc_point(gates + row, act + row, c_prev[e], hc + e, hc + (long long)n * h + e, h, j);
}
EMU_EXPORT(rc_cell_fwd)

// lstm_cell_backward: act, c_prev, hc, dhc [2, n, h] -> dgates [n, 4h], dc_prev [n, h].
extern "C" __global__ void rc_cell_bwd(const float* act, const float* c_prev, const float* hc,
                                       const float* dhc, float* dgates, float* dc_prev, int n,
                                       int h) {
    int e = blockIdx.x * blockDim.x + threadIdx.x;
    if (e >= n * h) return;
    int r = e / h, j = e % h;
    long long row = (long long)r * 4 * h, nh = (long long)n * h;
    dc_prev[e] = rc_point_bwd(act + row, c_prev[e], hc[nh + e], dhc[e], dhc[nh + e],
                              dgates + row, h, j);
}
EMU_EXPORT(rc_cell_bwd)

// Step t of lstm_sequence, part 1: act[t] = xg[t] + h_{t-1} w_hh^T (h_{-1} = h0), one thread
// per element of [n, 4h].
extern "C" __global__ void rc_seq_gates(const float* xg, const float* w_hh, const float* h0,
                                        const float* hs, float* act, int t, int n, int h) {
    int e = blockIdx.x * blockDim.x + threadIdx.x;
    if (e >= n * 4 * h) return;
    int r = e / (4 * h), k = e % (4 * h);
    const float* hp = t == 0 ? h0 + (long long)r * h : hs + ((long long)(t - 1) * n + r) * h;
    const float* w = w_hh + (long long)k * h;
    float s = 0.0f;
    for (int j = 0; j < h; j++) s += hp[j] * w[j];
    long long o = (long long)t * n * 4 * h + e;
    act[o] = xg[o] + s;
}
EMU_EXPORT(rc_seq_gates)

// Step t of lstm_sequence, part 2: the pointwise step on act[t] (in place) with c_{t-1}
// (c_{-1} = c0); writes hs[t], cs[t].
extern "C" __global__ void rc_seq_point(float* act, const float* c0, float* hs, float* cs, int t,
                                        int n, int h) {
    int e = blockIdx.x * blockDim.x + threadIdx.x;
    if (e >= n * h) return;
    int r = e / h, j = e % h;
    long long nh = (long long)n * h;
    float cp = t == 0 ? c0[e] : cs[(long long)(t - 1) * nh + e];
    float* a = act + (long long)t * n * 4 * h + (long long)r * 4 * h;
    rc_point(a, a, cp, hs + t * nh + e, cs + t * nh + e, h, j);
}
EMU_EXPORT(rc_seq_point)

// Step t of lstm_sequence_backward, part 1: with dh = dhs[t] + dhn and dc = dcn (the
// gradients carried from step t + 1), writes dxg[t] and the new dcn (of c_{t-1}).
extern "C" __global__ void rc_seq_bwd_point(const float* act, const float* c0, const float* cs,
                                            const float* dhs, const float* dhn, float* dcn,
                                            float* dxg, int t, int n, int h) {
    int e = blockIdx.x * blockDim.x + threadIdx.x;
    if (e >= n * h) return;
    int r = e / h, j = e % h;
    long long nh = (long long)n * h, row = (long long)t * n * 4 * h + (long long)r * 4 * h;
    float cp = t == 0 ? c0[e] : cs[(long long)(t - 1) * nh + e];
    dcn[e] = rc_point_bwd(act + row, cp, cs[t * nh + e], dhs[t * nh + e] + dhn[e], dcn[e],
                          dxg + row, h, j);
}
EMU_EXPORT(rc_seq_bwd_point)

// Step t of lstm_sequence_backward, part 2: dhn = dxg[t] w_hh (the gradient of h_{t-1}), one
// thread per element of [n, h].
extern "C" __global__ void rc_seq_bwd_dh(const float* dxg, const float* w_hh, float* dhn, int t,
                                         int n, int h) {
    int e = blockIdx.x * blockDim.x + threadIdx.x;
    if (e >= n * h) return;
    int r = e / h, j = e % h;
    const float* d = dxg + (long long)t * n * 4 * h + (long long)r * 4 * h;
    float s = 0.0f;
    for (int k = 0; k < 4 * h; k++) s += d[k] * w_hh[(long long)k * h + j];
    dhn[e] = s;
}
EMU_EXPORT(rc_seq_bwd_dh)
