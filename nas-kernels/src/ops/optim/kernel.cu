// Optimizer updates (SGD with momentum/Nesterov/weight decay, Adam) as one elementwise pass,
// and gradient clipping by the global L2 norm: per-block partial sums of squares in double,
// added in a fixed order by one block, the scale read from the device (no host round trip).

extern "C" __global__ void opt_sgd(float* w, const float* g, float* buf, float lr, float momentum,
                                   float dampening, int nesterov, float weight_decay, int first,
                                   int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float d = weight_decay != 0.0f ? g[i] + weight_decay * w[i] : g[i];
    if (buf) {
        float b = first ? d : momentum * buf[i] + (1.0f - dampening) * d;
        buf[i] = b;
        d = nesterov ? d + momentum * b : b;
    }
    w[i] -= lr * d;
}
EMU_EXPORT(opt_sgd)

// `step_size = lr / (1 - beta1^t)` and `bc2_sqrt = sqrt(1 - beta2^t)` come from the host.
extern "C" __global__ void opt_adam(float* w, const float* g, float* m, float* v, float beta1,
                                    float beta2, float eps, float weight_decay, float step_size,
                                    float bc2_sqrt, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float d = weight_decay != 0.0f ? g[i] + weight_decay * w[i] : g[i];
    float mi = beta1 * m[i] + (1.0f - beta1) * d;
    float vi = beta2 * v[i] + (1.0f - beta2) * d * d;
    m[i] = mi;
    v[i] = vi;
    float denom = sqrtf(vi) / bc2_sqrt + eps;
    w[i] -= step_size * mi / denom;
}
EMU_EXPORT(opt_adam)

// partial[(slot0 + y) * blocks + x] = sum of squares of block x's share of buffer y (double).
extern "C" __global__ void opt_sumsq_partial(NasPtrs xs, double* partial, int slot0, int blocks) {
    int j = blockIdx.y;
    const float* p = xs.p[j];
    int n = xs.n[j];
    double acc = 0.0;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blocks * blockDim.x) {
        double v = (double)p[i];
        acc += v * v;
    }
    acc = nas_block_sum_d(acc);
    if (threadIdx.x == 0) partial[(long long)(slot0 + j) * blocks + blockIdx.x] = acc;
}
EMU_EXPORT(opt_sumsq_partial)

// total[0] = sqrt(sum of the partials); one block.
extern "C" __global__ void opt_norm_total(const double* partial, int count, float* total) {
    double acc = 0.0;
    for (int i = threadIdx.x; i < count; i += blockDim.x) acc += partial[i];
    acc = nas_block_sum_d(acc);
    if (threadIdx.x == 0) total[0] = (float)sqrt(acc);
}
EMU_EXPORT(opt_norm_total)

// Multiplies buffer blockIdx.y by max_norm / (total + 1e-6) when that is below 1.
extern "C" __global__ void opt_clip_scale(NasMutPtrs xs, const float* total, float max_norm) {
    int j = blockIdx.y;
    float coef = max_norm / (total[0] + 1e-6f);
    if (!(coef < 1.0f)) return;
    float* p = xs.p[j];
    int n = xs.n[j];
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
        p[i] *= coef;
}
EMU_EXPORT(opt_clip_scale)
