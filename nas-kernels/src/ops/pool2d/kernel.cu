// Max and average pooling (NCHW, any window, stride and padding), global average pooling,
// and their backward. The backward is a gather (one thread per input element, over the
// windows that contain it), so no atomics; max pooling's backward recomputes each window's
// arg-max (the first maximum in row-major window order, padding never winning), as the CPU.

struct NasPool {
    int planes, h, w, kh, kw, sh, sw, ph, pw, oh, ow;
    int kind;  // 0 max, 1 avg (padding excluded), 2 avg (padding included)
};

__device__ __forceinline__ void pl_taps(int o, int stride, int pad, int k, int size, int& lo,
                                        int& hi) {
    int start = o * stride - pad;
    lo = max(start, 0);
    hi = max(min(start + k, size), 0);
}

extern "C" __global__ void pl_forward(const float* x, float* y, NasPool g) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    long long total = (long long)g.planes * g.oh * g.ow;
    if (i >= total) return;
    int ox = i % g.ow, oy = (i / g.ow) % g.oh;
    long long plane = i / ((long long)g.ow * g.oh);
    const float* xp = x + plane * g.h * g.w;
    int y0, y1, x0, x1;
    pl_taps(oy, g.sh, g.ph, g.kh, g.h, y0, y1);
    pl_taps(ox, g.sw, g.pw, g.kw, g.w, x0, x1);
    if (g.kind == 0) {
        float m = NAS_NEG_INF;
        for (int iy = y0; iy < y1; iy++)
            for (int ix = x0; ix < x1; ix++) m = fmaxf(m, xp[iy * g.w + ix]);
        y[i] = m;
    } else {
        float s = 0.0f;
        for (int iy = y0; iy < y1; iy++)
            for (int ix = x0; ix < x1; ix++) s += xp[iy * g.w + ix];
        int cnt = g.kind == 2 ? g.kh * g.kw : (y1 - y0) * (x1 - x0);
        y[i] = s / (float)cnt;
    }
}
EMU_EXPORT(pl_forward)

extern "C" __global__ void pl_backward(const float* x, const float* dy, float* dx, NasPool g) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    long long total = (long long)g.planes * g.h * g.w;
    if (i >= total) return;
    int ix = i % g.w, iy = (i / g.w) % g.h;
    long long plane = i / ((long long)g.w * g.h);
    const float* gp = dy + plane * g.oh * g.ow;
    // outputs whose window holds (iy, ix): oy * sh - ph <= iy < oy * sh - ph + kh
    int oy_lo = (iy + g.ph - g.kh + 1 > 0) ? (iy + g.ph - g.kh + 1 + g.sh - 1) / g.sh : 0;
    int oy_hi = min(g.oh - 1, (iy + g.ph) / g.sh);
    int ox_lo = (ix + g.pw - g.kw + 1 > 0) ? (ix + g.pw - g.kw + 1 + g.sw - 1) / g.sw : 0;
    int ox_hi = min(g.ow - 1, (ix + g.pw) / g.sw);
    float acc = 0.0f;
    for (int oy = oy_lo; oy <= oy_hi; oy++) {
        int y0, y1;
        pl_taps(oy, g.sh, g.ph, g.kh, g.h, y0, y1);
        for (int ox = ox_lo; ox <= ox_hi; ox++) {
            int x0, x1;
            pl_taps(ox, g.sw, g.pw, g.kw, g.w, x0, x1);
            float gv = gp[oy * g.ow + ox];
            if (g.kind == 0) {
                const float* xp = x + plane * g.h * g.w;
                float m = NAS_NEG_INF;
                int at = y0 * g.w + x0;
                for (int yy = y0; yy < y1; yy++)
                    for (int xx = x0; xx < x1; xx++) {
                        float v = xp[yy * g.w + xx];
                        if (v > m) {
                            m = v;
                            at = yy * g.w + xx;
                        }
                    }
                if (at == iy * g.w + ix) acc += gv;
            } else {
                int cnt = g.kind == 2 ? g.kh * g.kw : (y1 - y0) * (x1 - x0);
                acc += gv / (float)cnt;
            }
        }
    }
    dx[i] = acc;
}
EMU_EXPORT(pl_backward)

// y[plane] = mean of the plane's hw values (summed in double); one warp per plane.
extern "C" __global__ void pl_global_avg(const float* x, float* y, int planes, int hw) {
    int plane = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    int lane = threadIdx.x % 32;
    if (plane >= planes) return;
    const float* xp = x + (long long)plane * hw;
    double s = 0.0;
    for (int j = lane; j < hw; j += 32) s += (double)xp[j];
    s = nas_warp_sum_d(s);
    if (lane == 0) y[plane] = (float)(s / (double)hw);
}
EMU_EXPORT(pl_global_avg)

extern "C" __global__ void pl_global_avg_backward(const float* dy, float* dx, int hw, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) dx[i] = dy[i / hw] / (float)hw;
}
EMU_EXPORT(pl_global_avg_backward)
