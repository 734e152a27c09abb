// Counter-based random fills: Philox4x32-10 (Salmon et al., SC 2011). Element i uses the
// counter (i / 4 as 64 bits, 0, 0) under the key (seed low 32 bits, seed high 32 bits) and
// takes output word i % 4, so every element is a pure function of (seed, i): the same values
// on every device and for any launch shape. One thread per counter (four elements).
//
// dist: 0 uniform [a, b), 1 normal (mean a, std b; Box-Muller over words (0, 1) and (2, 3)),
// 2 standard Gumbel, 3 inverted-dropout mask (drop probability a).

__device__ __forceinline__ void rn_philox(unsigned c[4], unsigned k0, unsigned k1) {
    for (int r = 0; r < 10; r++) {
        unsigned hi0 = __umulhi(0xD2511F53u, c[0]), lo0 = 0xD2511F53u * c[0];
        unsigned hi1 = __umulhi(0xCD9E8D57u, c[2]), lo1 = 0xCD9E8D57u * c[2];
        unsigned n0 = hi1 ^ c[1] ^ k0, n2 = hi0 ^ c[3] ^ k1;
        c[0] = n0;
        c[1] = lo1;
        c[2] = n2;
        c[3] = lo0;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
}

// (x >> 8) * 2^-24: uniform on [0, 1) with 24 random bits.
__device__ __forceinline__ float rn_unit(unsigned x) { return (float)(x >> 8) * 5.9604645e-8f; }

extern "C" __global__ void rn_fill(float* out, int n, unsigned k0, unsigned k1, int dist, float a,
                                   float b) {
    long long q = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    long long first = q * 4;
    if (first >= n) return;
    unsigned c[4] = {(unsigned)(q & 0xffffffffu), (unsigned)(q >> 32), 0u, 0u};
    rn_philox(c, k0, k1);
    float v[4];
    if (dist == 1) {
        for (int h = 0; h < 2; h++) {
            double u1 = ((double)(c[2 * h] >> 8) + 1.0) * 5.9604644775390625e-8;
            double u2 = (double)(c[2 * h + 1] >> 8) * 5.9604644775390625e-8;
            double r = sqrt(-2.0 * log(u1));
            double t = 6.283185307179586 * u2;
            v[2 * h] = (float)((double)a + (double)b * r * cos(t));
            v[2 * h + 1] = (float)((double)a + (double)b * r * sin(t));
        }
    } else {
        for (int j = 0; j < 4; j++) {
            if (dist == 0) {
                v[j] = a + (b - a) * rn_unit(c[j]);
            } else if (dist == 2) {
                double u = ((double)(c[j] >> 8) + 0.5) * 5.9604644775390625e-8;
                v[j] = (float)(-log(-log(u)));
            } else {
                float keep = 1.0f - a;
                v[j] = rn_unit(c[j]) < keep ? 1.0f / keep : 0.0f;
            }
        }
    }
    for (int j = 0; j < 4 && first + j < n; j++) out[first + j] = v[j];
}
EMU_EXPORT(rn_fill)
