//! Packing of `A` and `B` blocks into the contiguous micro-panels the micro-kernels read.
//!
//! A block of `op(A)` (`mc x kc`) becomes `ceil(mc / MR)` panels of `kc x MR` floats (for each
//! `p`, the `MR` values of rows `i0..i0 + MR`), zero-padded past the last row. A block of
//! `op(B)` (`kc x nc`) becomes `ceil(nc / NR)` panels of `kc x NR` floats, zero-padded past the
//! last column. Matrices are described by strides: element `(i, p)` of `op(A)` is at
//! `a[i * rs + p * cs]`, so a transpose is just swapped strides.

/// Packs an `mc x kc` block of `op(A)` into `MR`-row panels at `out`.
///
/// # Safety
/// Every `a[i * rs + p * cs]` for `i < mc`, `p < kc` is readable, and `out` has room for
/// `ceil(mc / MR) * MR * kc` floats.
pub(crate) unsafe fn pack_a<const MR: usize>(
    mc: usize,
    kc: usize,
    a: *const f32,
    rs: usize,
    cs: usize,
    out: *mut f32,
) {
    // SAFETY: the same walk as `pack_b`, with the roles of rows and columns swapped.
    unsafe { pack_panels::<MR>(mc, kc, a, rs, cs, out) }
}

/// Packs a `kc x nc` block of `op(B)` (element `(p, j)` at `b[p * rs + j * cs]`) into
/// `NR`-column panels at `out`.
///
/// # Safety
/// Every `b[p * rs + j * cs]` for `p < kc`, `j < nc` is readable, and `out` has room for
/// `ceil(nc / NR) * NR * kc` floats.
pub(crate) unsafe fn pack_b<const NR: usize>(
    kc: usize,
    nc: usize,
    b: *const f32,
    rs: usize,
    cs: usize,
    out: *mut f32,
) {
    // SAFETY: forwarded; `x = j` walks columns (stride `cs`), `p` walks rows (stride `rs`).
    unsafe { pack_panels::<NR>(nc, kc, b, cs, rs, out) }
}

/// Packs `len` "lanes" (stride `ls`) by `kc` steps (stride `ks`) into panels of `W` lanes:
/// `out[panel * kc * W + p * W + x] = src[(panel * W + x) * ls + p * ks]`.
///
/// # Safety
/// See [`pack_a`] / [`pack_b`].
pub(crate) unsafe fn pack_panels<const W: usize>(
    len: usize,
    kc: usize,
    src: *const f32,
    ls: usize,
    ks: usize,
    out: *mut f32,
) {
    let panels = len.div_ceil(W);
    if ls == 1 {
        // Lanes contiguous: walk the source step by step (one long sequential run per step,
        // which the hardware prefetchers stream) and scatter `W`-wide pieces to the panels.
        for p in 0..kc {
            // SAFETY: `src[x + p * ks]`, `x < len`, is readable by the contract.
            let row = unsafe { std::slice::from_raw_parts(src.add(p * ks), len) };
            for panel in 0..panels {
                let x0 = panel * W;
                // SAFETY: the panel's step `p` lies inside `out` (room for `panels * W * kc`).
                let d = unsafe { &mut *(out.add(panel * kc * W + p * W) as *mut [f32; W]) };
                if let Some(s) = row[x0..].first_chunk::<W>() {
                    *d = *s;
                } else {
                    let w = len - x0;
                    d[..w].copy_from_slice(&row[x0..]);
                    d[w..].fill(0.0);
                }
            }
        }
        return;
    }
    for panel in 0..panels {
        let x0 = panel * W;
        let w = W.min(len - x0);
        // SAFETY: the panel lies inside `out` (room for `panels * W * kc`).
        let dst = unsafe { std::slice::from_raw_parts_mut(out.add(panel * kc * W), kc * W) };
        // Steps contiguous (or general strides): a transpose, walked source-sequentially
        // over eight steps at a time so reads stream and writes stay within a few lines.
        let mut p0 = 0;
        while p0 < kc {
            let pb = 8.min(kc - p0);
            for x in 0..w {
                // SAFETY: `src[(x0 + x) * ls + p * ks]` is readable for `p < kc`.
                let lane = unsafe { src.add((x0 + x) * ls + p0 * ks) };
                for q in 0..pb {
                    // SAFETY: `p0 + q < kc`, so this is `src[(x0 + x) * ls + p * ks]` with
                    // `p < kc`, readable (see above).
                    dst[(p0 + q) * W + x] = unsafe { *lane.add(q * ks) };
                }
            }
            if w < W {
                for q in 0..pb {
                    dst[(p0 + q) * W + w..(p0 + q + 1) * W].fill(0.0);
                }
            }
            p0 += pb;
        }
    }
}
