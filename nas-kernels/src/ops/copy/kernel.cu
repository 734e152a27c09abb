// Strided copies (permutes, slices, the scatter of a slice's gradient): one thread per
// element of the index box `g.dims`; `g.sa` are the source strides, `g.sb` the destination's.

extern "C" __global__ void cp_strided(const float* src, int src_off, float* dst, int dst_off,
                                      NasBroadcast g, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    int r = i, s = src_off, d = dst_off;
    for (int k = g.rank - 1; k >= 0; k--) {
        int c = r % g.dims[k];
        r /= g.dims[k];
        s += c * g.sa[k];
        d += c * g.sb[k];
    }
    dst[d] = src[s];
}
EMU_EXPORT(cp_strided)
