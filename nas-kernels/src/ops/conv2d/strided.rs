//! Direct forward convolution for any stride (and padding, dilation, groups) with AVX-512,
//! without an im2col matrix: the path for the strided dense convolutions (NB201's reduction
//! blocks, 3x3 stride 2), which the stride-1 kernels of `direct_avx512.rs` do not cover.
//!
//! Each image is copied once into its *phases*: the zero-padded plane split by row and column
//! remainder modulo the stride, `phase[c][qy][qx][r][j] = xpad[c][r * sh + qy][j * sw + qx]`
//! (`sh * sw` planes of `hq x wq` per channel, each `1 / (sh * sw)` of the padded plane). A
//! kernel tap `(ky, kx)` then reads one phase plane with unit stride: output `(oy, ox)` takes
//! `phase[c][(ky dh) % sh][(kx dw) % sw][oy + (ky dh) / sh][ox + (kx dw) / sw]`. So the
//! convolution is a stride-1 one on the phase planes, run in the "flat" form: output position
//! `i = oy * wq + ox` reads offset `tap + i` for every tap, the output plane is one long row
//! computed 32 positions at a time, and the `wq - ow` positions per row that wrap around are
//! computed and dropped when the result is copied into `y`.
//!
//! An output tile is 8 output channels x 32 positions (16 zmm accumulators), the loop runs over
//! the `c_in * kh * kw` taps with a precomputed offset table: per tap two vector loads and 8
//! broadcast weights for 16 FMAs. The phase copy and the input slice it reads stay in cache
//! (one image at a time; images are spread over threads, so every thread count gives the same
//! result). Without AVX-512 [`available`] is false and the dispatch keeps im2col.

use super::Conv2dParams;

/// Whether this path can run on this CPU (AVX-512F on x86-64).
pub(super) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether the default dispatch should take this path (where [`available`]) for a convolution
/// the stride-1 kernels do not take: every kernel but 1x1. A 1x1 kernel with stride 2 reads
/// only one of the four phases, so the phase copy costs more than im2col's plain gather
/// (`conv_fwd_speed`, docs/PERF.md: 19 against 22 GFLOP/s at 16 -> 8 channels, 60 against 93
/// at 32 -> 64).
pub(super) fn pays(p: &Conv2dParams) -> bool {
    p.kh * p.kw > 1
}

/// `y = conv(x, w)` (no bias) for any configuration; im2col where [`available`] is false.
pub(super) fn forward(p: &Conv2dParams, x: &[f32], w: &[f32], y: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if available() {
        avx512::forward(p, x, w, y);
        return;
    }
    super::im2col::forward(p, x, w, y)
}

/// Geometry of the phase split of one image (see the module documentation).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Phases {
    /// Rows and columns of one phase plane.
    hq: usize,
    wq: usize,
    /// Floats per input channel (`sh * sw` planes).
    cs: usize,
    /// Flat output length, `(oh - 1) * wq + ow` rounded up to whole vectors.
    len: usize,
}

#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
impl Phases {
    fn new(p: &Conv2dParams) -> Self {
        let (sh, sw) = p.stride;
        let hq = (p.h + 2 * p.padding.0).div_ceil(sh);
        let wq = (p.w + 2 * p.padding.1).div_ceil(sw);
        Phases {
            hq,
            wq,
            cs: sh * sw * hq * wq,
            len: ((p.out_h() - 1) * wq + p.out_w()).next_multiple_of(16),
        }
    }

    /// Offset into one group's phase copy of every tap `t = (icg * kh + ky) * kw + kx`.
    fn taps(&self, p: &Conv2dParams) -> Vec<usize> {
        let (sh, sw) = p.stride;
        let (dh, dw) = p.dilation;
        let pq = self.hq * self.wq;
        let mut taps = Vec::with_capacity(p.c_in / p.groups * p.kh * p.kw);
        for icg in 0..p.c_in / p.groups {
            for ky in 0..p.kh {
                for kx in 0..p.kw {
                    let (ry, rx) = (ky * dh, kx * dw);
                    let phase = (ry % sh) * sw + rx % sw;
                    taps.push(icg * self.cs + phase * pq + (ry / sh) * self.wq + rx / sw);
                }
            }
        }
        taps
    }
}

/// Copies `c` planes of `h x w` into their zero-padded phases (`dst` holds at least
/// `c * ph.cs` floats; everything in that range is written).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
fn split_phases(p: &Conv2dParams, ph: &Phases, c: usize, src: &[f32], dst: &mut [f32]) {
    let (sh, sw) = p.stride;
    let (pt, pl) = p.padding;
    let pq = ph.hq * ph.wq;
    dst[..c * ph.cs].fill(0.0);
    for ch in 0..c {
        let plane = &src[ch * p.h * p.w..(ch + 1) * p.h * p.w];
        let out = &mut dst[ch * ph.cs..(ch + 1) * ph.cs];
        for (iy, row) in plane.chunks_exact(p.w).enumerate() {
            let r = iy + pt;
            let rbase = (r % sh) * sw * pq + (r / sh) * ph.wq;
            #[cfg(target_arch = "x86_64")]
            if sw == 2 && available() {
                // SAFETY: AVX-512F checked; both phase rows hold `wq >= (w + pl + 1) / 2`
                // floats from their offsets (see `avx512::split_row2`).
                unsafe { avx512::split_row2(row, pl, &mut out[rbase..], pq, ph.wq) };
                continue;
            }
            // column phase qx holds padded columns j = j' * sw + qx, i.e. input columns
            // ix = j' * sw + qx - pl
            for qx in 0..sw {
                let first = (qx + sw * pl - pl) % sw; // first ix with (ix + pl) % sw == qx
                let d = &mut out[rbase + qx * pq..][..ph.wq];
                for (k, &v) in row.iter().skip(first).step_by(sw).enumerate() {
                    d[(first + pl) / sw + k] = v;
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::super::Conv2dParams;
    use super::super::shared::par_chunks_mut;
    use super::{Phases, split_phases};
    use crate::simd::first_lanes;
    use crate::workspace::with_scratch;

    /// Floats of slack after the phase copy: the last tile's loads run past the last plane.
    const SLACK: usize = 64;

    /// Splits one input row into its two column phases: input column `ix` goes to phase
    /// `(ix + pl) % 2` at position `(ix + pl) / 2`; `out[0..]` is phase 0's row, `out[pq..]`
    /// phase 1's, each `wq` floats.
    ///
    /// # Safety
    /// AVX-512F; `out` holds `pq + wq` floats and `2 * wq >= row.len() + pl`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn split_row2(row: &[f32], pl: usize, out: &mut [f32], pq: usize, wq: usize) {
        debug_assert!(out.len() >= pq + wq && 2 * wq >= row.len() + pl);
        // even input columns (2k) -> phase pl % 2 at k + pl / 2; odd (2k + 1) -> phase
        // (pl + 1) % 2 at k + (pl + 1) / 2
        let even_to = (pl % 2) * pq + pl / 2;
        let odd_to = ((pl + 1) % 2) * pq + pl.div_ceil(2);
        let ie = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        let io = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
        let n = row.len();
        let (src, dst) = (row.as_ptr(), out.as_mut_ptr());
        let mut i = 0;
        while i < n {
            let rem = n - i;
            // SAFETY: loads masked to the row; stores masked to the `rem / 2` (rounded)
            // values, which end inside the phase rows by the size condition above.
            unsafe {
                let a = _mm512_maskz_loadu_ps(first_lanes(rem), src.add(i));
                let b = _mm512_maskz_loadu_ps(first_lanes(rem.saturating_sub(16)), src.add(i + 16));
                let e = _mm512_permutex2var_ps(a, ie, b);
                let o = _mm512_permutex2var_ps(a, io, b);
                _mm512_mask_storeu_ps(dst.add(even_to + i / 2), first_lanes(rem.div_ceil(2)), e);
                _mm512_mask_storeu_ps(dst.add(odd_to + i / 2), first_lanes(rem / 2), o);
            }
            i += 32;
        }
    }

    /// One output tile: `R` output channels x `V` vectors of flat positions.
    /// `y[r * ys + 16 v + lane] = sum_t x[taps[t] + 16 v + lane] * w[t * ldw + r]`.
    ///
    /// # Safety
    /// AVX-512F; every `x + taps[t] + 16 V` is inside the phase copy (with its slack); `w`
    /// covers `taps.len() * ldw` floats, `y` the `R` rows of `ys` floats it stores into.
    #[target_feature(enable = "avx512f")]
    unsafe fn tile<const R: usize, const V: usize>(
        taps: &[usize],
        x: *const f32,
        w: *const f32,
        ldw: usize,
        y: *mut f32,
        ys: usize,
        m: [__mmask16; V],
    ) {
        let mut acc = [[_mm512_setzero_ps(); V]; R];
        // SAFETY: (whole body) as the caller guarantees.
        unsafe {
            for (t, &off) in taps.iter().enumerate() {
                let xs = x.add(off);
                let mut xv = [_mm512_setzero_ps(); V];
                for v in 0..V {
                    xv[v] = _mm512_loadu_ps(xs.add(16 * v));
                }
                let wk = w.add(t * ldw);
                for r in 0..R {
                    let wv = _mm512_set1_ps(*wk.add(r));
                    for v in 0..V {
                        acc[r][v] = _mm512_fmadd_ps(xv[v], wv, acc[r][v]);
                    }
                }
            }
            for r in 0..R {
                for v in 0..V {
                    _mm512_mask_storeu_ps(y.add(r * ys + 16 * v), m[v], acc[r][v]);
                }
            }
        }
    }

    macro_rules! by_r {
        ($r:expr, $v:literal, ($($a:expr),*)) => {
            match $r {
                1 => tile::<1, $v>($($a),*),
                2 => tile::<2, $v>($($a),*),
                3 => tile::<3, $v>($($a),*),
                4 => tile::<4, $v>($($a),*),
                5 => tile::<5, $v>($($a),*),
                6 => tile::<6, $v>($($a),*),
                7 => tile::<7, $v>($($a),*),
                _ => tile::<8, $v>($($a),*),
            }
        };
    }

    /// `yflat[oc][i] = sum_t xph[taps[t] + i] * wt[t * cout + oc]` for `i < len` (a multiple
    /// of 16), `cout` planes of `len` floats.
    ///
    /// # Safety
    /// AVX-512F; `xph + taps[t] + len` in bounds for every tap; `wt` holds `taps.len() * cout`
    /// floats and `yflat` `cout * len`.
    #[target_feature(enable = "avx512f")]
    unsafe fn conv_flat(
        taps: &[usize],
        xph: *const f32,
        wt: *const f32,
        cout: usize,
        len: usize,
        yflat: *mut f32,
    ) {
        let mut oc0 = 0;
        while oc0 < cout {
            let r = (cout - oc0).min(8);
            let mut i0 = 0;
            while i0 < len {
                // SAFETY: as the caller guarantees; `i0 + 16 V <= len`.
                unsafe {
                    let (x, w, y) = (xph.add(i0), wt.add(oc0), yflat.add(oc0 * len + i0));
                    if len - i0 >= 32 {
                        by_r!(r, 2, (taps, x, w, cout, y, len, [0xffff, 0xffff]));
                        i0 += 32;
                    } else {
                        by_r!(r, 1, (taps, x, w, cout, y, len, [first_lanes(len - i0)]));
                        i0 += 16;
                    }
                }
            }
            oc0 += r;
        }
    }

    pub(super) fn forward(p: &Conv2dParams, x: &[f32], w: &[f32], y: &mut [f32]) {
        let (oh, ow) = (p.out_h(), p.out_w());
        let ohw = oh * ow;
        let (cig, cog) = (p.c_in / p.groups, p.c_out / p.groups);
        let kk = p.kh * p.kw;
        let glen = cig * kk * cog;
        let xl = p.c_in * p.h * p.w;
        let ph = Phases::new(p);
        let taps = ph.taps(p);
        // every read: tap offset (inside one group's phase copy) + flat position < len; the
        // unsafe kernel relies on it, so it is checked in release builds too (one pass over
        // `c_in * kh * kw` offsets per call)
        assert!(taps.iter().all(|&t| t + ph.len <= cig * ph.cs + SLACK));
        with_scratch(p.groups * glen, |wt| {
            // wt[g][t][ocg] = w[g * cog + ocg][t]
            for g in 0..p.groups {
                for ocg in 0..cog {
                    let src = &w[(g * cog + ocg) * cig * kk..][..cig * kk];
                    for (t, &v) in src.iter().enumerate() {
                        wt[g * glen + t * cog + ocg] = v;
                    }
                }
            }
            let wt = &*wt;
            par_chunks_mut(p, y, p.c_out * ohw, &|b, yb| {
                with_scratch(p.c_in * ph.cs + SLACK + cog * ph.len + 16, |buf| {
                    let (xph, rest) = buf.split_at_mut(p.c_in * ph.cs + SLACK);
                    split_phases(p, &ph, p.c_in, &x[b * xl..(b + 1) * xl], xph);
                    xph[p.c_in * ph.cs..].fill(0.0);
                    let off = rest.as_ptr().align_offset(64);
                    let yflat = &mut rest[off..off + cog * ph.len];
                    for g in 0..p.groups {
                        // SAFETY: AVX-512F checked by `available` (the only way here); the tap
                        // offsets plus `len` stay inside group g's phase copy and the slack
                        // (checked above); `yflat` holds `cog * len` floats.
                        unsafe {
                            conv_flat(
                                &taps,
                                xph.as_ptr().add(g * cig * ph.cs),
                                wt.as_ptr().add(g * glen),
                                cog,
                                ph.len,
                                yflat.as_mut_ptr(),
                            );
                        }
                        let yg = &mut yb[g * cog * ohw..(g + 1) * cog * ohw];
                        for (oc, plane) in yg.chunks_exact_mut(ohw).enumerate() {
                            for (oy, row) in plane.chunks_exact_mut(ow).enumerate() {
                                row.copy_from_slice(&yflat[oc * ph.len + oy * ph.wq..][..ow]);
                            }
                        }
                    }
                });
            });
        });
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::reference;
    use super::*;
    use crate::threads;
    use crate::workloads::data;

    /// Forward of this path against the f64 reference: strides 1 to 3 (also different per
    /// axis), paddings 0 to 3 (also asymmetric), dilations, non-square kernels, groups,
    /// channel counts around the 8-channel register block, odd plane sizes, batch 1; and
    /// the same bits at 1 and 2 threads.
    #[test]
    fn matches_reference_any_stride() {
        let mut cases = vec![
            // NB201 reduction blocks and the main job's stride-2 shapes, batch cut down
            Conv2dParams::new(2, 16, 32, 32, 32, 3).padding(1).stride(2),
            Conv2dParams::new(2, 32, 16, 16, 64, 3).padding(1).stride(2),
            Conv2dParams::new(3, 8, 28, 28, 16, 3).padding(1).stride(2),
            Conv2dParams::new(1, 16, 14, 14, 32, 3).padding(1).stride(2),
            Conv2dParams::new(1, 16, 7, 7, 16, 3).padding(1).stride(2),
            Conv2dParams::new(1, 64, 8, 8, 64, 3).padding(1).stride(2),
            Conv2dParams::new(2, 16, 32, 32, 16, 5).padding(2).stride(2),
            Conv2dParams::new(2, 16, 32, 32, 8, 1).stride(2),
        ];
        let mut seed = 7u32;
        let mut next = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed as usize % n
        };
        while cases.len() < 60 {
            let groups = [1, 1, 1, 2, 3][next(5)];
            let mut p = Conv2dParams::new(
                1 + next(3),
                groups * [1, 3, 8, 9, 17][next(5)],
                1 + next(20),
                1 + next(40),
                groups * [1, 5, 8, 9, 16, 33][next(6)],
                1,
            );
            p.kh = 1 + next(5);
            p.kw = 1 + next(5);
            p.stride = (1 + next(3), 1 + next(3));
            p.padding = (next(4), next(4));
            p.dilation = (1 + next(2), 1 + next(2));
            p.groups = groups;
            if p.validate().is_ok() {
                cases.push(p);
            }
        }
        let before = threads::num_threads();
        for (i, p) in cases.iter().enumerate() {
            let x = data(p.x_len(), i as u32);
            let w = data(p.w_len(), i as u32 + 1000);
            let mut want = vec![0.0; p.y_len()];
            reference::forward(p, &x, &w, None, &mut want);
            let mut y = vec![f32::NAN; p.y_len()];
            threads::set_num_threads(1);
            forward(p, &x, &w, &mut y);
            for (j, (a, b)) in y.iter().zip(&want).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
                    "{p:?} y[{j}]: {a} vs {b}"
                );
            }
            threads::set_num_threads(2);
            let mut y2 = vec![f32::NAN; p.y_len()];
            forward(p, &x, &w, &mut y2);
            threads::set_num_threads(before);
            assert_eq!(y, y2, "{p:?}: 1 and 2 threads differ");
        }
    }

    #[test]
    fn phases_hold_the_padded_image() {
        // every padded position lands in its phase, padding stays zero
        for (h, w, pad, s) in [(5, 7, 1, 2), (6, 6, 0, 2), (7, 4, 2, 3), (3, 9, 1, 1)] {
            let p = Conv2dParams::new(1, 2, h, w, 1, 3).padding(pad).stride(s);
            let ph = Phases::new(&p);
            let x: Vec<f32> = (0..p.x_len()).map(|i| i as f32 + 1.0).collect();
            let mut dst = vec![f32::NAN; 2 * ph.cs];
            split_phases(&p, &ph, 2, &x, &mut dst);
            let pq = ph.hq * ph.wq;
            for c in 0..2 {
                for r in 0..ph.hq * s {
                    for j in 0..ph.wq * s {
                        let got =
                            dst[c * ph.cs + ((r % s) * s + j % s) * pq + (r / s) * ph.wq + j / s];
                        let (iy, ix) = (r as isize - pad as isize, j as isize - pad as isize);
                        let want = if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                            x[(c * h + iy as usize) * w + ix as usize]
                        } else {
                            0.0
                        };
                        assert_eq!(got, want, "{p:?} c {c} r {r} j {j}");
                    }
                }
            }
        }
    }
}
