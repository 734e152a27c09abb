//! Weight gradient of the stride-1 3x3 convolution (column dilation 1) with AVX-512, vectorised
//! over 16 input channels: no horizontal reductions, and each register tile covers many
//! outputs.
//!
//! `dw[oc, ic, ky, kx] = sum_{b, oy, ox} dy[b, oc, oy, ox] * xp[b, ic, oy + ky dh, ox + kx]`
//! (`xp` the zero-padded input). The input is staged per image as blocks of 16 channels,
//! channels last and zero-padded (`[icb][hp][wp][16]`, the transpose done 16 x 16 in
//! registers), so the 16 input channels of one tap at one position are one aligned vector. A
//! register tile holds `OCB` (1 to 3) output channels x the 9 taps, each a vector over 16 input
//! channels (27 accumulators); per output position it loads 9 input vectors and broadcasts
//! `OCB` output-gradient values, for `9 OCB` fused multiply-adds.
//!
//! The row-vectorised kernel of `direct_avx512.rs` (`dw_s1`) instead holds 5 output channels x
//! 3 taps of one input channel, each a vector over 16 output columns reduced horizontally at
//! the end: its 15 accumulators cover 15 outputs, so it streams the output gradient and the
//! input from L2 over and over (NB201's shapes ran at about half the forward's speed).

use std::arch::x86_64::*;

use super::Conv2dParams;
use super::shared::partial_weight_grads;
use crate::workspace::with_scratch;

/// Taps per side: only 3x3 kernels take this path.
const K: usize = 3;

/// Output positions per tile run (images are grouped until a run has this many), so that
/// loading and storing the accumulators is paid rarely.
const RUN_POSITIONS: usize = 512;

/// Whether [`backward_weight`] computes `p` (AVX-512F, stride 1, a 3x3 kernel, column
/// dilation 1).
pub(crate) fn applicable(p: &Conv2dParams) -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
        && p.stride == (1, 1)
        && (p.kh, p.kw) == (K, K)
        && p.dilation.1 == 1
}

/// Whether [`backward_weight`] is the faster weight gradient for `p`: at least 16 input
/// channels per group (fewer leave lanes of every vector idle).
pub(super) fn pays(p: &Conv2dParams) -> bool {
    applicable(p) && p.c_in / p.groups >= 16
}

/// Geometry of one group's staged input and output gradient.
#[derive(Clone, Copy)]
struct G {
    /// Padded input columns.
    wp: usize,
    oh: usize,
    ow: usize,
    /// Row dilation.
    dh: usize,
}

#[inline(always)]
fn mask(n: usize) -> __mmask16 {
    if n >= 16 {
        0xffff
    } else {
        ((1u32 << n) - 1) as u16
    }
}

/// Transposes 16 rows of 16 floats in registers: `c[j][i] = r[i][j]`.
#[inline(always)]
unsafe fn transpose16(r: &[__m512; 16]) -> [__m512; 16] {
    // SAFETY: register-only AVX-512F operations; the caller has AVX-512F.
    unsafe {
        let mut t = [_mm512_setzero_ps(); 16];
        for i in 0..8 {
            t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
            t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
        }
        // u[4 q + k]: column 4 L + k of rows 4 q .. 4 q + 3, in 128-bit lane L
        let mut u = [_mm512_setzero_ps(); 16];
        for q in 0..4 {
            let (a0, a1) = (_mm512_castps_pd(t[4 * q]), _mm512_castps_pd(t[4 * q + 2]));
            let (b0, b1) = (
                _mm512_castps_pd(t[4 * q + 1]),
                _mm512_castps_pd(t[4 * q + 3]),
            );
            u[4 * q] = _mm512_castpd_ps(_mm512_unpacklo_pd(a0, a1));
            u[4 * q + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a0, a1));
            u[4 * q + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b0, b1));
            u[4 * q + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b0, b1));
        }
        let mut c = [_mm512_setzero_ps(); 16];
        for k in 0..4 {
            let v_lo = _mm512_shuffle_f32x4::<0x44>(u[k], u[4 + k]);
            let v_hi = _mm512_shuffle_f32x4::<0xEE>(u[k], u[4 + k]);
            let w_lo = _mm512_shuffle_f32x4::<0x44>(u[8 + k], u[12 + k]);
            let w_hi = _mm512_shuffle_f32x4::<0xEE>(u[8 + k], u[12 + k]);
            c[k] = _mm512_shuffle_f32x4::<0x88>(v_lo, w_lo);
            c[4 + k] = _mm512_shuffle_f32x4::<0xDD>(v_lo, w_lo);
            c[8 + k] = _mm512_shuffle_f32x4::<0x88>(v_hi, w_hi);
            c[12 + k] = _mm512_shuffle_f32x4::<0xDD>(v_hi, w_hi);
        }
        c
    }
}

/// Stages `nch <= 16` channel planes of `h x w` (contiguous, from `x`) into one padded,
/// channels-last block `out[(y + ph) * wp + x + pw][0..16]` (lanes past `nch` zero), ReLU'd
/// if `RELU`. The padding positions of `out` are left as they are (zero from the caller).
///
/// # Safety
/// AVX-512F; `x` holds `nch * h * w` floats, `out` `(h + 2 ph) * wp * 16`.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn stage_block<const RELU: bool>(
    x: *const f32,
    nch: usize,
    h: usize,
    w: usize,
    ph: usize,
    pw: usize,
    wp: usize,
    out: *mut f32,
) {
    let zero = _mm512_setzero_ps();
    // SAFETY: (whole body) loads are masked to the `w - x0` columns left in a row of one of
    // the `nch` planes; stores write whole positions of the padded block's interior.
    unsafe {
        for y in 0..h {
            let mut x0 = 0;
            while x0 < w {
                let n = (w - x0).min(16);
                let m = mask(n);
                let mut r = [zero; 16];
                for (i, ri) in r.iter_mut().enumerate().take(nch) {
                    let v = _mm512_maskz_loadu_ps(m, x.add((i * h + y) * w + x0));
                    *ri = if RELU { _mm512_max_ps(v, zero) } else { v };
                }
                let c = transpose16(&r);
                let dst = out.add(((y + ph) * wp + x0 + pw) * 16);
                for (j, cj) in c.iter().enumerate().take(n) {
                    _mm512_storeu_ps(dst.add(16 * j), *cj);
                }
                x0 += 16;
            }
        }
    }
}

/// One register tile: adds into `acc_out[(o * 9 + t) * 16 ..][..16]` (output channel `oc0 + o`,
/// tap `t`, 16 input channels) the sums over the `nb.0` images of a run.
///
/// # Safety
/// AVX-512F; `xb` a staged block (`hp * wp * 16` floats, `nb.1` floats between images), `dy`
/// the plane of output channel `oc0` (`OCB` planes of `oh * ow`, `nb.2` floats between
/// images), `acc_out` `OCB * 9 * 16` floats.
#[target_feature(enable = "avx512f")]
unsafe fn tile<const OCB: usize>(
    g: &G,
    nb: (usize, usize, usize),
    xb: *const f32,
    dy: *const f32,
    acc_out: *mut f32,
) {
    let (nb, xs, ys) = nb;
    let ohw = g.oh * g.ow;
    let row = g.dh * g.wp * 16;
    let mut acc = [[_mm512_setzero_ps(); K * K]; OCB];
    // SAFETY: (whole body) tap (ky, kx) of output (oy, ox) reads padded position
    // (oy + ky dh, ox + kx), inside the block (oh + 2 dh = hp, ow + 2 = wp); the output
    // gradient reads stay inside the OCB planes of each image.
    unsafe {
        for b in 0..nb {
            for oy in 0..g.oh {
                let r0 = xb.add(b * xs + oy * g.wp * 16);
                let gy = dy.add(b * ys + oy * g.ow);
                for ox in 0..g.ow {
                    let mut d = [_mm512_setzero_ps(); OCB];
                    for (o, dv) in d.iter_mut().enumerate() {
                        *dv = _mm512_set1_ps(*gy.add(o * ohw + ox));
                    }
                    let xr = r0.add(ox * 16);
                    for ky in 0..K {
                        for kx in 0..K {
                            let xv = _mm512_loadu_ps(xr.add(ky * row + kx * 16));
                            for o in 0..OCB {
                                acc[o][ky * K + kx] =
                                    _mm512_fmadd_ps(xv, d[o], acc[o][ky * K + kx]);
                            }
                        }
                    }
                }
            }
        }
        for (o, a) in acc.iter().enumerate() {
            for (t, v) in a.iter().enumerate() {
                let p = acc_out.add((o * K * K + t) * 16);
                _mm512_storeu_ps(p, _mm512_add_ps(_mm512_loadu_ps(p), *v));
            }
        }
    }
}

/// Output channels per register tile for the `rem` channels left: 3, but 2 + 2 rather than
/// 3 + 1 (a single channel's 9 accumulators are load-bound).
fn ocb(rem: usize) -> usize {
    match rem {
        1 => 1,
        2 | 4 => 2,
        _ => 3,
    }
}

/// The 64-byte aligned `len` floats at the start of `buf` (which holds `len + 16`).
fn aligned(buf: &mut [f32], len: usize) -> &mut [f32] {
    let off = buf.as_ptr().align_offset(64);
    &mut buf[off..off + len]
}

/// Weight gradient `dw` (`[c_out, c_in / groups, 3, 3]`, overwritten) of a stride-1 3x3
/// convolution with column dilation 1 ([`applicable`]), of `relu(x)` when `relu` is set.
pub(crate) fn backward_weight(p: &Conv2dParams, x: &[f32], dy: &[f32], dw: &mut [f32], relu: bool) {
    assert!(applicable(p));
    let (oh, ow) = (p.out_h(), p.out_w());
    let (cig, cog) = (p.c_in / p.groups, p.c_out / p.groups);
    let (ph, pw) = p.padding;
    let (hp, wp) = (p.h + 2 * ph, p.w + 2 * pw);
    let g = G {
        wp,
        oh,
        ow,
        dh: p.dilation.0,
    };
    debug_assert!(oh + (K - 1) * g.dh == hp && ow + K - 1 == wp);
    let kk = K * K;
    let cib = cig.div_ceil(16);
    let block = hp * wp * 16;
    // one image staged: every group's input-channel blocks
    let ximg = p.groups * cib * block;
    let (hw, ohw) = (p.h * p.w, oh * ow);
    let (xl, yl) = (p.c_in * hw, p.c_out * ohw);
    let nbv = RUN_POSITIONS.div_ceil(ohw).clamp(1, 16).min(p.n);
    // the transposed partial gradient: [group][icb][oc][tap][16 input channels]
    let tlen = p.groups * cib * cog * kk * 16;
    partial_weight_grads(p, dw, &|accv, mine| {
        with_scratch(nbv * ximg + tlen + 32, |scratch| {
            let (xbuf, rest) = scratch.split_at_mut(nbv * ximg + 16);
            let xb = aligned(xbuf, nbv * ximg);
            let dwt = aligned(rest, tlen);
            // the padding is never written below: zero once
            xb.fill(0.0);
            dwt.fill(0.0);
            let mut b0 = mine.start;
            while b0 < mine.end {
                let nb = (mine.end - b0).min(nbv);
                for i in 0..nb {
                    let xi = &x[(b0 + i) * xl..(b0 + i + 1) * xl];
                    for gi in 0..p.groups {
                        for icb in 0..cib {
                            let c0 = gi * cig + icb * 16;
                            let nch = (cig - icb * 16).min(16);
                            let src = &xi[c0 * hw..(c0 + nch) * hw];
                            let dst = &mut xb[i * ximg + (gi * cib + icb) * block..][..block];
                            // SAFETY: AVX-512F (`applicable`); `src` holds the `nch` planes,
                            // `dst` one padded block.
                            unsafe {
                                let (s, d) = (src.as_ptr(), dst.as_mut_ptr());
                                if relu {
                                    stage_block::<true>(s, nch, p.h, p.w, ph, pw, wp, d)
                                } else {
                                    stage_block::<false>(s, nch, p.h, p.w, ph, pw, wp, d)
                                }
                            }
                        }
                    }
                }
                let dyr = &dy[b0 * yl..(b0 + nb) * yl];
                for gi in 0..p.groups {
                    for icb in 0..cib {
                        let xblk = &xb[(gi * cib + icb) * block..];
                        let mut oc0 = 0;
                        while oc0 < cog {
                            let o = ocb(cog - oc0);
                            let dyo = &dyr[(gi * cog + oc0) * ohw..];
                            let out = &mut dwt[((gi * cib + icb) * cog + oc0) * kk * 16..];
                            assert!(
                                xblk.len() >= (nb - 1) * ximg + block
                                    && dyo.len() >= (nb - 1) * yl + o * ohw
                                    && out.len() >= o * kk * 16
                            );
                            let (xs, ds, os) = (xblk.as_ptr(), dyo.as_ptr(), out.as_mut_ptr());
                            let nbs = (nb, ximg, yl);
                            // SAFETY: AVX-512F; the sizes were checked above.
                            unsafe {
                                match o {
                                    1 => tile::<1>(&g, nbs, xs, ds, os),
                                    2 => tile::<2>(&g, nbs, xs, ds, os),
                                    _ => tile::<3>(&g, nbs, xs, ds, os),
                                }
                            }
                            oc0 += o;
                        }
                    }
                }
                b0 += nb;
            }
            // back to [oc][ic][tap]
            for gi in 0..p.groups {
                for oc in 0..cog {
                    for ic in 0..cig {
                        let (icb, lane) = (ic / 16, ic % 16);
                        let src = ((gi * cib + icb) * cog + oc) * kk * 16 + lane;
                        let dst = ((gi * cog + oc) * cig + ic) * kk;
                        for t in 0..kk {
                            accv[dst + t] += dwt[src + t * 16];
                        }
                    }
                }
            }
        });
    });
}
