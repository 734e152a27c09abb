//! AVX2 + FMA micro-kernel: a 6 x 16 tile in 12 ymm accumulators.

use std::arch::x86_64::*;

/// Rows of the AVX2 micro-tile.
pub(crate) const MR: usize = 6;
/// Columns of the AVX2 micro-tile (two ymm vectors).
pub(crate) const NR: usize = 16;

/// AVX2/FMA version of [`super::scalar::kernel`] (same contract, `MR x NR` = 6 x 16).
///
/// # Safety
/// As for the scalar kernel, and the CPU must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn kernel(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    alpha: f32,
    beta: f32,
    mr: usize,
    nr: usize,
) {
    let mut acc = [_mm256_setzero_ps(); 2 * MR];
    let mut ap = a;
    let mut bp = b;
    for _ in 0..kc {
        // SAFETY: the caller guarantees `kc * MR` floats at `a` and `kc * NR` at `b`.
        unsafe {
            let b0 = _mm256_loadu_ps(bp);
            let b1 = _mm256_loadu_ps(bp.add(8));
            for i in 0..MR {
                let av = _mm256_broadcast_ss(&*ap.add(i));
                acc[2 * i] = _mm256_fmadd_ps(av, b0, acc[2 * i]);
                acc[2 * i + 1] = _mm256_fmadd_ps(av, b1, acc[2 * i + 1]);
            }
            ap = ap.add(MR);
            bp = bp.add(NR);
        }
    }
    let va = _mm256_set1_ps(alpha);
    if mr == MR && nr == NR {
        let vb = _mm256_set1_ps(beta);
        for i in 0..MR {
            for h in 0..2 {
                // SAFETY: a full tile: rows `0..MR`, columns `0..NR` are in C.
                unsafe {
                    let cp = c.add(i * ldc + 8 * h);
                    let mut r = _mm256_mul_ps(acc[2 * i + h], va);
                    if beta != 0.0 {
                        r = _mm256_fmadd_ps(vb, _mm256_loadu_ps(cp), r);
                    }
                    _mm256_storeu_ps(cp, r);
                }
            }
        }
    } else {
        let mut tile = [0.0f32; MR * NR];
        for (v, chunk) in acc.iter().zip(tile.chunks_exact_mut(8)) {
            // SAFETY: `chunk` holds 8 floats.
            unsafe { _mm256_storeu_ps(chunk.as_mut_ptr(), *v) };
        }
        // SAFETY: forwarded from the caller.
        unsafe { super::store_tile(&tile, NR, c, ldc, alpha, beta, mr, nr) };
    }
}
