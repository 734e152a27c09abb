//! AVX-512 micro-kernel: an 8 x 32 tile in 16 zmm accumulators, masked stores at the edges,
//! and a 16 x 16 register transpose for packing `B` when it is stored transposed.

// AVX-512 intrinsics are stable since Rust 1.89; the workspace MSRV predates them.
#![allow(clippy::incompatible_msrv)]

use std::arch::x86_64::*;

use crate::simd::transpose16;

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

/// [`super::pack::pack_panels`] with the transposing case (steps contiguous, `ks == 1`) done
/// by 16 x 16 register transposes; other cases use the portable code. `W` is 8 or a multiple
/// of 16.
///
/// # Safety
/// As for [`super::pack::pack_panels`], and the CPU must support AVX-512F.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn pack_panels<const W: usize>(
    len: usize,
    kc: usize,
    src: *const f32,
    ls: usize,
    ks: usize,
    out: *mut f32,
) {
    if ks != 1 || ls == 1 || !(W == 8 || W & 15 == 0) {
        // SAFETY: forwarded.
        return unsafe { super::pack::pack_panels::<W>(len, kc, src, ls, ks, out) };
    }
    let padded = len.div_ceil(W) * W;
    let kc16 = kc / 16 * 16;
    // Where lane `x`, step `p` goes in the panels.
    let dst = |x: usize, p: usize| (x / W) * kc * W + p * W + x % W;
    let mut g = 0;
    while g < padded {
        let mut p0 = 0;
        while p0 < kc16 {
            let mut r = [_mm512_setzero_ps(); 16];
            for i in 0..16 {
                if g + i < len {
                    // SAFETY: lane `g + i < len`, steps `p0 .. p0 + 16 <= kc` are readable.
                    r[i] = unsafe { _mm512_loadu_ps(src.add((g + i) * ls + p0)) };
                }
            }
            transpose16(&mut r);
            for q in 0..16 {
                // SAFETY: lanes `g .. g + 16` (or `g .. g + 8` when only that panel exists)
                // lie in the `padded` lanes `out` has room for.
                unsafe {
                    if W & 15 == 0 {
                        _mm512_storeu_ps(out.add(dst(g, p0 + q)), r[q]);
                    } else {
                        let lo = _mm512_castps512_ps256(r[q]);
                        _mm256_storeu_ps(out.add(dst(g, p0 + q)), lo);
                        if g + 8 < padded {
                            let hi = _mm512_extractf64x4_pd::<1>(_mm512_castps_pd(r[q]));
                            _mm256_storeu_ps(out.add(dst(g + 8, p0 + q)), _mm256_castpd_ps(hi));
                        }
                    }
                }
            }
            p0 += 16;
        }
        for p in kc16..kc {
            for x in g..(g + 16).min(padded) {
                // SAFETY: as above; lanes past `len` are zero padding.
                unsafe {
                    *out.add(dst(x, p)) = if x < len { *src.add(x * ls + p) } else { 0.0 };
                }
            }
        }
        g += 16;
    }
}

/// Packs A for the AVX-512 kernel (see [`super::pack::pack_a`]).
///
/// # Safety
/// As for [`super::pack::pack_a`], and the CPU must support AVX-512F.
pub(crate) unsafe fn pack_a(
    mc: usize,
    kc: usize,
    a: *const f32,
    rs: usize,
    cs: usize,
    out: *mut f32,
) {
    // SAFETY: forwarded; the kernel table only uses this when AVX-512F is available.
    unsafe { pack_panels::<MR>(mc, kc, a, rs, cs, out) }
}

/// Packs B for the AVX-512 kernel (see [`super::pack::pack_b`]).
///
/// # Safety
/// As for [`super::pack::pack_b`], and the CPU must support AVX-512F.
pub(crate) unsafe fn pack_b(
    kc: usize,
    nc: usize,
    b: *const f32,
    rs: usize,
    cs: usize,
    out: *mut f32,
) {
    // SAFETY: forwarded; the kernel table only uses this when AVX-512F is available.
    unsafe { pack_panels::<NR>(nc, kc, b, cs, rs, out) }
}

/// Rows of a dot-product tile (see [`dot_tile`]).
pub(crate) const DOT_R: usize = 4;
/// Columns of a dot-product tile.
pub(crate) const DOT_C: usize = 6;

/// Dot-product micro-kernel for `A * B^T` with both operands contiguous along the depth: for
/// an `R x C` tile, accumulates `A[i, p..p+kc] . B[j, p..p+kc]` as 16-lane partial sums into
/// `acc[i * acc_rs + j * 16 ..][..16]` (loaded first unless `first`). No packing is needed;
/// the lanes are summed once at the end of the whole product.
///
/// # Safety
/// `a[i * lda + p]` for `i < R`, `p < kc` and `b[j * ldb + p]` for `j < C`, `p < kc` are
/// readable, `acc` has room for the tile, and the CPU supports AVX-512F.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn dot_tile<const R: usize, const C: usize>(
    kc: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    ldb: usize,
    acc_ptr: *mut f32,
    acc_rs: usize,
    first: bool,
) {
    let mut acc = [[_mm512_setzero_ps(); C]; R];
    if !first {
        for i in 0..R {
            for j in 0..C {
                // SAFETY: the tile's accumulators lie in `acc_ptr` by the contract.
                acc[i][j] = unsafe { _mm512_loadu_ps(acc_ptr.add(i * acc_rs + j * 16)) };
            }
        }
    }
    let full = kc / 16 * 16;
    let mut p = 0;
    while p < full {
        let mut av = [_mm512_setzero_ps(); R];
        for i in 0..R {
            // SAFETY: `p + 16 <= kc`.
            av[i] = unsafe { _mm512_loadu_ps(a.add(i * lda + p)) };
        }
        for j in 0..C {
            // SAFETY: `p + 16 <= kc`.
            let bv = unsafe { _mm512_loadu_ps(b.add(j * ldb + p)) };
            for i in 0..R {
                acc[i][j] = _mm512_fmadd_ps(av[i], bv, acc[i][j]);
            }
        }
        p += 16;
    }
    if p < kc {
        let mask: __mmask16 = (1u16 << (kc - p)) - 1;
        let mut av = [_mm512_setzero_ps(); R];
        for i in 0..R {
            // SAFETY: only the lanes `p .. kc` are read.
            av[i] = unsafe { _mm512_maskz_loadu_ps(mask, a.add(i * lda + p)) };
        }
        for j in 0..C {
            // SAFETY: only the lanes `p .. kc` are read.
            let bv = unsafe { _mm512_maskz_loadu_ps(mask, b.add(j * ldb + p)) };
            for i in 0..R {
                acc[i][j] = _mm512_fmadd_ps(av[i], bv, acc[i][j]);
            }
        }
    }
    for i in 0..R {
        for j in 0..C {
            // SAFETY: as above.
            unsafe { _mm512_storeu_ps(acc_ptr.add(i * acc_rs + j * 16), acc[i][j]) };
        }
    }
}

/// Signature of the [`dot_tile`] instances.
pub(crate) type DotFn =
    unsafe fn(usize, *const f32, usize, *const f32, usize, *mut f32, usize, bool);

/// The [`dot_tile`] instance for an `r x c` tile (`1 <= r <= DOT_R`, `1 <= c <= DOT_C`).
pub(crate) fn dot_fn(r: usize, c: usize) -> DotFn {
    macro_rules! table {
        ($($r:literal => [$($c:literal),*]),*) => {
            match (r, c) {
                $($(($r, $c) => dot_tile::<$r, $c>,)*)*
                _ => dot_tile::<1, 1>,
            }
        };
    }
    table!(
        1 => [1, 2, 3, 4, 5, 6],
        2 => [1, 2, 3, 4, 5, 6],
        3 => [1, 2, 3, 4, 5, 6],
        4 => [1, 2, 3, 4, 5, 6]
    )
}

/// Finishes a row of the dot-product path: `c[j] = alpha * sum(lanes[j * 16..][..16]) +
/// beta * c[j]` for `j < count` (`c[j]` not read when `beta` is 0). Sixteen outputs at a time
/// go through a transpose-and-add tree (45 vector instructions instead of 256 dependent
/// scalar additions); the rest are summed pairwise.
///
/// # Safety
/// `lanes` holds `16 * count` floats, `c` has `count` writable floats, and the CPU supports
/// AVX-512F.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn sum_lanes_into(
    lanes: *const f32,
    count: usize,
    c: *mut f32,
    alpha: f32,
    beta: f32,
) {
    let full = count / 16 * 16;
    let mut j = 0;
    while j < full {
        let mut v = [_mm512_setzero_ps(); 16];
        for (t, vt) in v.iter_mut().enumerate() {
            // SAFETY: `j + t < count`.
            *vt = unsafe { _mm512_loadu_ps(lanes.add((j + t) * 16)) };
        }
        // Pairs: [a0+a2, b0+b2, a1+a3, b1+b3] in every 128-bit lane.
        let mut w = [_mm512_setzero_ps(); 8];
        for (k, wk) in w.iter_mut().enumerate() {
            let (a, b) = (v[2 * k], v[2 * k + 1]);
            *wk = _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b));
        }
        // Quads: four outputs' partial sums in every 128-bit lane.
        let mut x = [_mm512_setzero_ps(); 4];
        for (k, xk) in x.iter_mut().enumerate() {
            let (a, b) = (w[2 * k], w[2 * k + 1]);
            *xk = _mm512_add_ps(
                _mm512_shuffle_ps::<0x44>(a, b),
                _mm512_shuffle_ps::<0xEE>(a, b),
            );
        }
        // Across the 128-bit lanes: output 4k + q ends in lane k, position q.
        let z01 = _mm512_add_ps(
            _mm512_shuffle_f32x4::<0x88>(x[0], x[1]),
            _mm512_shuffle_f32x4::<0xDD>(x[0], x[1]),
        );
        let z23 = _mm512_add_ps(
            _mm512_shuffle_f32x4::<0x88>(x[2], x[3]),
            _mm512_shuffle_f32x4::<0xDD>(x[2], x[3]),
        );
        let s = _mm512_add_ps(
            _mm512_shuffle_f32x4::<0x88>(z01, z23),
            _mm512_shuffle_f32x4::<0xDD>(z01, z23),
        );
        let mut out = _mm512_mul_ps(_mm512_set1_ps(alpha), s);
        // SAFETY: `j + 16 <= count`.
        unsafe {
            if beta != 0.0 {
                out = _mm512_fmadd_ps(_mm512_set1_ps(beta), _mm512_loadu_ps(c.add(j)), out);
            }
            _mm512_storeu_ps(c.add(j), out);
        }
        j += 16;
    }
    for j in full..count {
        // SAFETY: `j < count`.
        let l = unsafe { std::slice::from_raw_parts(lanes.add(j * 16), 16) };
        let mut h = [0.0f32; 8];
        for (t, ht) in h.iter_mut().enumerate() {
            *ht = l[t] + l[t + 8];
        }
        let s = ((h[0] + h[4]) + (h[2] + h[6])) + ((h[1] + h[5]) + (h[3] + h[7]));
        // SAFETY: `j < count`.
        unsafe {
            let cp = c.add(j);
            let v = alpha * s;
            *cp = if beta == 0.0 { v } else { v + beta * *cp };
        }
    }
}
