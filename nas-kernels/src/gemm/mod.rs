//! Single-precision matrix multiplication, row-major.

/// `C = alpha * op(A) * op(B) + beta * C`, all matrices row-major.
///
/// `op(A)` is `m x k` (`A` is `m x k` with leading dimension `lda`, or `k x m` when `trans_a`),
/// `op(B)` is `k x n` (`B` is `k x n` with `ldb`, or `n x k` when `trans_b`), `C` is `m x n` with
/// `ldc`. When `beta == 0`, `C` is not read (NaNs in it do not propagate), as in BLAS.
///
/// # Panics
/// If a slice is too short for its shape and leading dimension.
#[allow(clippy::too_many_arguments)]
pub fn sgemm(
    trans_a: bool,
    trans_b: bool,
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: &[f32],
    lda: usize,
    b: &[f32],
    ldb: usize,
    beta: f32,
    c: &mut [f32],
    ldc: usize,
) {
    for i in 0..m {
        for j in 0..n {
            let mut acc = 0.0f32;
            for p in 0..k {
                let av = if trans_a {
                    a[p * lda + i]
                } else {
                    a[i * lda + p]
                };
                let bv = if trans_b {
                    b[j * ldb + p]
                } else {
                    b[p * ldb + j]
                };
                acc += av * bv;
            }
            let cij = &mut c[i * ldc + j];
            *cij = if beta == 0.0 {
                alpha * acc
            } else {
                alpha * acc + beta * *cij
            };
        }
    }
}
