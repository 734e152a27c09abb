//! Weight gradient of the 3x3 convolution (stride 1 or 2, column dilation 1) with AVX-512,
//! vectorised over input channels: no horizontal reductions, and each register tile covers
//! many outputs.
//!
//! `dw[oc, ic, ky, kx] = sum_{b, oy, ox} dy[b, oc, oy, ox] * xp[b, ic, s oy + ky dh, s ox + kx]`
//! (`xp` the zero-padded input, `s` the stride). The input is staged per image as blocks of
//! `L` (16 or 8) channels, channels last and zero-padded (`[icb][hp][s][wq][L]`, the transpose
//! done 16 x 16 in registers); at stride 2 each row is split into its even and odd columns
//! (`wq` positions each), so that the positions one tap reads for neighbouring outputs are
//! neighbours in the copy.
//!
//! - 16 lanes: the 16 input channels of one tap at one position are one aligned vector. A
//!   register tile holds `OCB` (1 to 3) output channels x the 9 taps, each a vector over 16
//!   input channels (27 accumulators); per output position it loads 9 input vectors and
//!   broadcasts `OCB` output-gradient values, for `9 OCB` fused multiply-adds.
//! - 8 lanes (a block of 8 channels would leave half of every 16-lane vector idle): one vector
//!   holds the 8 channels of one tap at *two neighbouring output positions* (they are
//!   neighbours in the copy), against the two positions' output gradients (each broadcast to 8
//!   lanes by one permute); the two halves of each accumulator are added at the end. A row of
//!   odd length ends with one position under a mask.
//!
//! The row-vectorised kernel of `direct_avx512.rs` (`dw_s1`) instead holds 5 output channels x
//! 3 taps of one input channel, each a vector over 16 output columns reduced horizontally at
//! the end: its 15 accumulators cover 15 outputs, so it streams the output gradient and the
//! input from L2 over and over (NB201's shapes ran at about half the forward's speed).

use std::arch::x86_64::*;

use super::Conv2dParams;
use super::shared::partial_weight_grads;
use crate::simd::{first_lanes, transpose16};
use crate::workspace::with_scratch;

/// Taps per side: only 3x3 kernels take this path.
const K: usize = 3;

/// Output positions per tile run (images are grouped until a run has this many), so that
/// loading and storing the accumulators is paid rarely.
const RUN_POSITIONS: usize = 512;

/// Whether [`backward_weight`] computes `p` (AVX-512F, stride 1 or 2 both ways, a 3x3
/// kernel, column dilation 1).
pub(crate) fn applicable(p: &Conv2dParams) -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
        && matches!(p.stride, (1, 1) | (2, 2))
        && (p.kh, p.kw) == (K, K)
        && p.dilation.1 == 1
}

/// Whether [`backward_weight`] is the faster weight gradient for `p`: at least 8 input
/// channels per group (fewer leave lanes of every vector idle).
pub(super) fn pays(p: &Conv2dParams) -> bool {
    applicable(p) && p.c_in / p.groups >= 8
}

/// Channels per staged block for `cig` input channels per group: 8 where the channels fill
/// an odd number of 8-blocks (a 16-lane block would leave 8 lanes idle in one of them), else
/// 16.
pub(crate) fn lanes_for(cig: usize) -> usize {
    if cig.div_ceil(8) % 2 == 1 { 8 } else { 16 }
}

/// Geometry of one group's staged input and output gradient.
#[derive(Clone, Copy)]
struct G {
    /// Staged positions per column phase of a row (`wp` at stride 1, `ceil(wp / 2)` at 2).
    wq: usize,
    oh: usize,
    ow: usize,
    /// Row dilation.
    dh: usize,
}

/// Offset in floats, within a staged row of `L`-channel positions split into `S` column
/// phases of `wq`, of padded column `kx` (the column tap `kx` reads for output 0).
#[inline(always)]
fn col<const L: usize, const S: usize>(kx: usize, wq: usize) -> usize {
    ((kx % S) * wq + kx / S) * L
}

/// Stages `nch <= L` channel planes of `h x w` (contiguous, from `x`) into one padded,
/// channels-last block of `L`-channel positions, padded column `c` of row `r` at
/// `out[(r * S * wq + col(c)) * L..][..L]` (lanes past `nch` zero), ReLU'd if `RELU`. The
/// padding positions of `out` are left as they are (zero from the caller).
///
/// # Safety
/// AVX-512F; `x` holds `nch * h * w` floats, `out` `(h + 2 ph) * S * wq * L`, with
/// `S * wq >= w + 2 pw`.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn stage_block<const RELU: bool, const L: usize, const S: usize>(
    x: *const f32,
    nch: usize,
    h: usize,
    w: usize,
    ph: usize,
    pw: usize,
    wq: usize,
    out: *mut f32,
) {
    let zero = _mm512_setzero_ps();
    // SAFETY: (whole body) loads are masked to the `w - x0` columns left in a row of one of
    // the `nch` planes; stores write whole positions of the padded block's interior.
    unsafe {
        for y in 0..h {
            let mut x0 = 0;
            let dst = out.add((y + ph) * S * wq * L);
            while x0 < w {
                let n = (w - x0).min(16);
                let m = first_lanes(n);
                let mut r = [zero; 16];
                for (i, ri) in r.iter_mut().enumerate().take(nch) {
                    let v = _mm512_maskz_loadu_ps(m, x.add((i * h + y) * w + x0));
                    *ri = if RELU { _mm512_max_ps(v, zero) } else { v };
                }
                transpose16(&mut r);
                let c = r;
                for (j, cj) in c.iter().enumerate().take(n) {
                    let d = dst.add(col::<L, S>(x0 + j + pw, wq));
                    if L == 16 {
                        _mm512_storeu_ps(d, *cj);
                    } else {
                        _mm256_storeu_ps(d, _mm512_castps512_ps256(*cj));
                    }
                }
                x0 += 16;
            }
        }
    }
}

/// One 16-lane register tile: adds into `acc_out[(o * 9 + t) * 16 ..][..16]` (output channel
/// `oc0 + o`, tap `t`, 16 input channels) the sums over the `nb.0` images of a run.
///
/// # Safety
/// AVX-512F; `xb` a staged 16-lane block (`hp * S * wq * 16` floats, `nb.1` floats between
/// images), `dy` the plane of output channel `oc0` (`OCB` planes of `oh * ow`, `nb.2` floats
/// between images), `acc_out` `OCB * 9 * 16` floats.
#[target_feature(enable = "avx512f")]
unsafe fn tile<const OCB: usize, const S: usize>(
    g: &G,
    nb: (usize, usize, usize),
    xb: *const f32,
    dy: *const f32,
    acc_out: *mut f32,
) {
    let (nb, xs, ys) = nb;
    let ohw = g.oh * g.ow;
    let rowf = S * g.wq * 16;
    let row = g.dh * rowf;
    let mut acc = [[_mm512_setzero_ps(); K * K]; OCB];
    // SAFETY: (whole body) tap (ky, kx) of output (oy, ox) reads padded position
    // (S oy + ky dh, S ox + kx), inside the block; the output gradient reads stay inside the
    // OCB planes of each image.
    unsafe {
        for b in 0..nb {
            for oy in 0..g.oh {
                let r0 = xb.add(b * xs + oy * S * rowf);
                let gy = dy.add(b * ys + oy * g.ow);
                for ox in 0..g.ow {
                    let mut d = [_mm512_setzero_ps(); OCB];
                    for (o, dv) in d.iter_mut().enumerate() {
                        *dv = _mm512_set1_ps(*gy.add(o * ohw + ox));
                    }
                    let xr = r0.add(ox * 16);
                    for ky in 0..K {
                        for kx in 0..K {
                            let xv = _mm512_loadu_ps(xr.add(ky * row + col::<16, S>(kx, g.wq)));
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

/// One output position pair (or, under the masks `xm = 0x00ff`, `dm = 1`, one position) of
/// the 8-lane tile: `xr` the staged position of output `ox` (tap 0), `gy` its output gradient.
///
/// # Safety
/// As [`tile8`]; `xm` covers only staged positions inside the block, `dm` only outputs of the
/// row.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn pair8<const OCB: usize, const S: usize>(
    acc: &mut [[__m512; K * K]; OCB],
    xr: *const f32,
    gy: *const f32,
    ohw: usize,
    row: usize,
    wq: usize,
    xm: __mmask16,
    dm: __mmask16,
) {
    // lanes 0..8 take the first position's gradient, lanes 8..16 the second's
    // SAFETY: (whole body) the caller's masks keep the loads inside the block and the row.
    unsafe {
        let idx = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
        let mut d = [_mm512_setzero_ps(); OCB];
        for (o, dv) in d.iter_mut().enumerate() {
            *dv = _mm512_permutexvar_ps(idx, _mm512_maskz_loadu_ps(dm, gy.add(o * ohw)));
        }
        for ky in 0..K {
            for kx in 0..K {
                let xv = _mm512_maskz_loadu_ps(xm, xr.add(ky * row + col::<8, S>(kx, wq)));
                for o in 0..OCB {
                    acc[o][ky * K + kx] = _mm512_fmadd_ps(xv, d[o], acc[o][ky * K + kx]);
                }
            }
        }
    }
}

/// One 8-lane register tile: adds into `acc_out[(o * 9 + t) * 16 ..][..16]` (output channel
/// `oc0 + o`, tap `t`; lanes `i` and `8 + i` both input channel `i` of the block, summed by
/// the caller) the sums over the `nb.0` images of a run.
///
/// # Safety
/// AVX-512F; `xb` a staged 8-lane block (`hp * S * wq * 8` floats, `nb.1` floats between
/// images), `dy` the plane of output channel `oc0` (`OCB` planes of `oh * ow`, `nb.2` floats
/// between images), `acc_out` `OCB * 9 * 16` floats.
#[target_feature(enable = "avx512f")]
unsafe fn tile8<const OCB: usize, const S: usize>(
    g: &G,
    nb: (usize, usize, usize),
    xb: *const f32,
    dy: *const f32,
    acc_out: *mut f32,
) {
    let (nb, xs, ys) = nb;
    let ohw = g.oh * g.ow;
    let rowf = S * g.wq * 8;
    let row = g.dh * rowf;
    let mut acc = [[_mm512_setzero_ps(); K * K]; OCB];
    // SAFETY: (whole body) tap (ky, kx) of outputs ox and ox + 1 (ox + 1 < ow) reads the
    // neighbouring staged positions of padded columns S ox + kx and S (ox + 1) + kx of row
    // S oy + ky dh, inside the block; the last output of an odd row reads only the first
    // (mask 0x00ff) and its own gradient (mask 1).
    unsafe {
        for b in 0..nb {
            for oy in 0..g.oh {
                let r0 = xb.add(b * xs + oy * S * rowf);
                let gy = dy.add(b * ys + oy * g.ow);
                let mut ox = 0;
                while ox + 2 <= g.ow {
                    let (xr, gr) = (r0.add(ox * 8), gy.add(ox));
                    pair8::<OCB, S>(&mut acc, xr, gr, ohw, row, g.wq, 0xffff, 0b11);
                    ox += 2;
                }
                if ox < g.ow {
                    let (xr, gr) = (r0.add(ox * 8), gy.add(ox));
                    pair8::<OCB, S>(&mut acc, xr, gr, ohw, row, g.wq, 0x00ff, 0b1);
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

/// Weight gradient `dw` (`[c_out, c_in / groups, 3, 3]`, overwritten) of a 3x3 convolution
/// ([`applicable`]), of `relu(x)` when `relu` is set, on blocks of [`lanes_for`] channels.
pub(crate) fn backward_weight(p: &Conv2dParams, x: &[f32], dy: &[f32], dw: &mut [f32], relu: bool) {
    backward_weight_lanes(p, lanes_for(p.c_in / p.groups), x, dy, dw, relu)
}

/// [`backward_weight`] on blocks of `lanes` (8 or 16) input channels.
pub(crate) fn backward_weight_lanes(
    p: &Conv2dParams,
    lanes: usize,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    relu: bool,
) {
    assert!(applicable(p) && matches!(lanes, 8 | 16), "{p:?} {lanes}");
    match (lanes, p.stride.0) {
        (8, 1) => run::<8, 1>(p, x, dy, dw, relu),
        (8, _) => run::<8, 2>(p, x, dy, dw, relu),
        (_, 1) => run::<16, 1>(p, x, dy, dw, relu),
        _ => run::<16, 2>(p, x, dy, dw, relu),
    }
}

/// [`backward_weight_lanes`] for `L` lanes and stride `S`.
fn run<const L: usize, const S: usize>(
    p: &Conv2dParams,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    relu: bool,
) {
    let (oh, ow) = (p.out_h(), p.out_w());
    let (cig, cog) = (p.c_in / p.groups, p.c_out / p.groups);
    let (ph, pw) = p.padding;
    let (hp, wp) = (p.h + 2 * ph, p.w + 2 * pw);
    let wq = wp.div_ceil(S);
    let g = G {
        wq,
        oh,
        ow,
        dh: p.dilation.0,
    };
    debug_assert!(S * (oh - 1) + (K - 1) * g.dh < hp && S * (ow - 1) + K - 1 < wp);
    let kk = K * K;
    let cib = cig.div_ceil(L);
    let block = hp * S * wq * L;
    // one image staged: every group's input-channel blocks
    let ximg = p.groups * cib * block;
    let (hw, ohw) = (p.h * p.w, oh * ow);
    let (xl, yl) = (p.c_in * hw, p.c_out * ohw);
    let nbv = RUN_POSITIONS.div_ceil(ohw).clamp(1, 16).min(p.n);
    // the transposed partial gradient: [group][icb][oc][tap][16 lanes]
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
                            let c0 = gi * cig + icb * L;
                            let nch = (cig - icb * L).min(L);
                            let src = &xi[c0 * hw..(c0 + nch) * hw];
                            let dst = &mut xb[i * ximg + (gi * cib + icb) * block..][..block];
                            // SAFETY: AVX-512F (`applicable`); `src` holds the `nch` planes,
                            // `dst` one padded block.
                            unsafe {
                                let (s, d) = (src.as_ptr(), dst.as_mut_ptr());
                                if relu {
                                    stage_block::<true, L, S>(s, nch, p.h, p.w, ph, pw, wq, d)
                                } else {
                                    stage_block::<false, L, S>(s, nch, p.h, p.w, ph, pw, wq, d)
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
                                match (L, o) {
                                    (8, 1) => tile8::<1, S>(&g, nbs, xs, ds, os),
                                    (8, 2) => tile8::<2, S>(&g, nbs, xs, ds, os),
                                    (8, _) => tile8::<3, S>(&g, nbs, xs, ds, os),
                                    (_, 1) => tile::<1, S>(&g, nbs, xs, ds, os),
                                    (_, 2) => tile::<2, S>(&g, nbs, xs, ds, os),
                                    _ => tile::<3, S>(&g, nbs, xs, ds, os),
                                }
                            }
                            oc0 += o;
                        }
                    }
                }
                b0 += nb;
            }
            // back to [oc][ic][tap] (at 8 lanes, lanes i and 8 + i both hold channel i)
            for gi in 0..p.groups {
                for oc in 0..cog {
                    for ic in 0..cig {
                        let (icb, lane) = (ic / L, ic % L);
                        let src = ((gi * cib + icb) * cog + oc) * kk * 16 + lane;
                        let dst = ((gi * cog + oc) * cig + ic) * kk;
                        for t in 0..kk {
                            let v = dwt[src + t * 16];
                            accv[dst + t] += if L == 8 { v + dwt[src + t * 16 + 8] } else { v };
                        }
                    }
                }
            }
        });
    });
}
