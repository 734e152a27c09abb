// Batch norm over the channels of [n, c, hw] tensors. Training statistics: one block per
// channel, two passes in double (the mean, then the sum of squared deviations from it), each
// a fixed-order tree: numerically sound and deterministic. Normalisation and the input
// gradient: one thread per element, from per-channel coefficients.

// Training: mean, biased variance; writes save_mean, save_invstd and updates the running
// statistics that are given (the running variance takes the unbiased variance).
extern "C" __global__ void bn_stats(const float* x, float* save_mean, float* save_invstd,
                                    float* running_mean, float* running_var, int n, int c,
                                    int hw, float eps, float momentum) {
    int ch = blockIdx.x;
    long long m = (long long)n * hw;
    double s = 0.0;
    for (long long j = threadIdx.x; j < m; j += blockDim.x) {
        long long b = j / hw, p = j % hw;
        s += (double)x[(b * c + ch) * hw + p];
    }
    double mean = nas_block_sum_d(s) / (double)m;
    double q = 0.0;
    for (long long j = threadIdx.x; j < m; j += blockDim.x) {
        long long b = j / hw, p = j % hw;
        double d = (double)x[(b * c + ch) * hw + p] - mean;
        q += d * d;
    }
    double var = nas_block_sum_d(q) / (double)m;
    if (threadIdx.x == 0) {
        double mo = (double)momentum;
        if (running_mean) running_mean[ch] = (float)((1.0 - mo) * running_mean[ch] + mo * mean);
        if (running_var)
            running_var[ch] =
                (float)((1.0 - mo) * running_var[ch] + mo * var * (double)m / (double)(m - 1));
        save_mean[ch] = (float)mean;
        save_invstd[ch] = (float)(1.0 / sqrt(var + (double)eps));
    }
}
EMU_EXPORT(bn_stats)

// Evaluation: the statistics used are the running ones.
extern "C" __global__ void bn_eval_stats(const float* running_mean, const float* running_var,
                                         float* save_mean, float* save_invstd, int c, float eps) {
    int ch = blockIdx.x * blockDim.x + threadIdx.x;
    if (ch >= c) return;
    save_mean[ch] = running_mean[ch];
    save_invstd[ch] = (float)(1.0 / sqrt((double)running_var[ch] + (double)eps));
}
EMU_EXPORT(bn_eval_stats)

// y = x * scale + shift, scale = gamma * invstd, shift = beta - mean * scale.
extern "C" __global__ void bn_normalize(const float* x, const float* gamma, const float* beta,
                                        const float* mean, const float* invstd, float* y, int c,
                                        int hw, int total) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= total) return;
    int ch = (i / hw) % c;
    float scale = (gamma ? gamma[ch] : 1.0f) * invstd[ch];
    float shift = (beta ? beta[ch] : 0.0f) - mean[ch] * scale;
    y[i] = x[i] * scale + shift;
}
EMU_EXPORT(bn_normalize)

// Per channel: sum(dy) and sum(dy * (x - mean)) in double; writes dbeta, dgamma (when
// given) and the input-gradient coefficients coef[ch] = (k, c0, c1).
extern "C" __global__ void bn_backward_stats(const float* x, const float* dy, const float* gamma,
                                             const float* mean, const float* invstd, float* dgamma,
                                             float* dbeta, float* coef, int n, int c, int hw,
                                             int training) {
    int ch = blockIdx.x;
    long long m = (long long)n * hw;
    float mu = mean[ch];
    double sg = 0.0, sgx = 0.0;
    for (long long j = threadIdx.x; j < m; j += blockDim.x) {
        long long b = j / hw, p = j % hw;
        long long idx = (b * c + ch) * hw + p;
        double g = (double)dy[idx];
        sg += g;
        sgx += g * (double)(x[idx] - mu);
    }
    sg = nas_block_sum_d(sg);
    sgx = nas_block_sum_d(sgx);
    if (threadIdx.x == 0) {
        float inv = invstd[ch];
        if (dbeta) dbeta[ch] = (float)sg;
        if (dgamma) dgamma[ch] = (float)(sgx * (double)inv);
        float k = (gamma ? gamma[ch] : 1.0f) * inv;
        float c0 = 0.0f, c1 = 0.0f;
        if (training) {
            c0 = (float)(sg / (double)m);
            c1 = (float)(sgx / (double)m) * inv * inv;
        }
        coef[3 * ch] = k;
        coef[3 * ch + 1] = c0;
        coef[3 * ch + 2] = c1;
    }
}
EMU_EXPORT(bn_backward_stats)

// dx = k * (dy - c0 - (x - mean) * c1).
extern "C" __global__ void bn_backward_dx(const float* x, const float* dy, const float* mean,
                                          const float* coef, float* dx, int c, int hw, int total) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= total) return;
    int ch = (i / hw) % c;
    dx[i] = coef[3 * ch] * (dy[i] - coef[3 * ch + 1] - (x[i] - mean[ch]) * coef[3 * ch + 2]);
}
EMU_EXPORT(bn_backward_dx)
