//! The naive triple-loop GEMM every fast path is tested against.

/// `C = alpha * op(A) * op(B) + beta * C` by the textbook triple loop (f32 accumulation in
/// increasing `k` order). Same argument convention as [`super::sgemm`]; `C` is not read when
/// `beta == 0`.
///
/// This is the reference: slow, obviously correct, public so that tests elsewhere can use it.
///
/// # Panics
/// If a slice is too short for its shape and leading dimension (it indexes them directly).
pub fn sgemm_naive(
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
