//! Register-blocked direct convolution for stride 1 with AVX-512 (x86-64, detected at run
//! time; [`available`] says whether this path may run).
//!
//! The image is copied once into a zero-padded buffer, so the inner loops have no bounds
//! logic: an output tile of `R` channels x `16 * V` columns of one row lives in registers while
//! the loop runs over input channels and kernel taps, each step one unaligned load of the
//! shifted input row and `R` broadcast weights.

use std::arch::x86_64::*;

use super::Conv2dParams;
use super::shared::{par_chunks_mut, par_split_mut, partial_weight_grads, threads_for};
use crate::simd::first_lanes;
use crate::workspace::with_scratch;

/// Floats of slack after each padded buffer: vector loads may run past the last row.
const SLACK: usize = 64;

/// Whether the CPU supports AVX-512F.
pub(super) fn available() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
}

/// Geometry of one stride-1 convolution of a padded image.
#[derive(Clone, Copy)]
struct S1 {
    cin: usize,
    cout: usize,
    kh: usize,
    kw: usize,
    dh: usize,
    dw: usize,
    hp: usize,
    wp: usize,
    oh: usize,
    ow: usize,
}

/// Copies `c` planes of `h x w` into a zero-padded `[c, h + 2 ph, w + 2 pw]` buffer (+ slack),
/// applying ReLU to the values on the way when `relu` is set (a convolution of `relu(x)`
/// without a ReLU tensor).
///
/// Rows are short (8 to 34 floats), so they are moved with masked vector loads and stores
/// rather than `copy_from_slice`, whose per-call cost dominated at these lengths.
#[allow(clippy::too_many_arguments)]
fn pad_into(
    src: &[f32],
    c: usize,
    h: usize,
    w: usize,
    ph: usize,
    pw: usize,
    dst: &mut [f32],
    relu: bool,
) {
    let (hp, wp) = (h + 2 * ph, w + 2 * pw);
    assert!(src.len() >= c * h * w && dst.len() >= c * hp * wp);
    // SAFETY: AVX-512F is available wherever this module's kernels run (`available`); the
    // bounds were checked above.
    unsafe {
        if relu {
            pad_rows::<true>(src.as_ptr(), c, h, w, ph, pw, dst.as_mut_ptr())
        } else {
            pad_rows::<false>(src.as_ptr(), c, h, w, ph, pw, dst.as_mut_ptr())
        }
    };
    dst[c * hp * wp..].fill(0.0);
}

/// One plane of [`pad_into`] into a buffer whose padding is already zero (from an earlier
/// [`pad_into`] or [`zero_padded`] of the same geometry): only the `h` interior rows are
/// written. Planes padded one after another into one scratch buffer thus zero it once.
#[allow(clippy::too_many_arguments)]
fn pad_plane_interior(
    src: &[f32],
    h: usize,
    w: usize,
    ph: usize,
    pw: usize,
    dst: &mut [f32],
    relu: bool,
) {
    let wp = w + 2 * pw;
    assert!(src.len() >= h * w && dst.len() >= (h + 2 * ph) * wp);
    // SAFETY: AVX-512F is available wherever this module's kernels run (`available`); the
    // bounds were checked above.
    unsafe {
        let dst = dst.as_mut_ptr().add(ph * wp + pw);
        if relu {
            copy_rows::<true>(src.as_ptr(), h, w, wp, dst)
        } else {
            copy_rows::<false>(src.as_ptr(), h, w, wp, dst)
        }
    }
}

/// Zeroes `buf` (a padded plane plus slack) so that [`pad_plane_interior`] can fill it.
fn zero_padded(buf: &mut [f32]) {
    buf.fill(0.0);
}

/// `h` rows of `w` floats from `src` (contiguous) to `dst` (row pitch `pitch`), ReLU'd if
/// `RELU`.
///
/// # Safety
/// AVX-512F; `src` holds `h * w` floats, `dst` `(h - 1) * pitch + w`.
#[target_feature(enable = "avx512f")]
unsafe fn copy_rows<const RELU: bool>(
    src: *const f32,
    h: usize,
    w: usize,
    pitch: usize,
    dst: *mut f32,
) {
    let zero = _mm512_setzero_ps();
    // SAFETY: (whole body) every load is masked to the `w` floats of one source row, every
    // store to the `w` floats of one destination row.
    unsafe {
        for y in 0..h {
            let (from, to) = (src.add(y * w), dst.add(y * pitch));
            let mut j = 0;
            while j < w {
                let m = first_lanes(w - j);
                let mut v = _mm512_maskz_loadu_ps(m, from.add(j));
                if RELU {
                    v = _mm512_max_ps(v, zero);
                }
                _mm512_mask_storeu_ps(to.add(j), m, v);
                j += 16;
            }
        }
    }
}

/// The row loops of [`pad_into`].
///
/// # Safety
/// AVX-512F; `src` holds `c * h * w` floats, `dst` `c * (h + 2 ph) * (w + 2 pw)`.
#[target_feature(enable = "avx512f")]
unsafe fn pad_rows<const RELU: bool>(
    src: *const f32,
    c: usize,
    h: usize,
    w: usize,
    ph: usize,
    pw: usize,
    dst: *mut f32,
) {
    let (hp, wp) = (h + 2 * ph, w + 2 * pw);
    let zero = _mm512_setzero_ps();
    // SAFETY: (whole body) every store is masked to the `wp` floats of one padded row, every
    // load to the `w` floats of one source row.
    // (nested loops over planes and rows: a division per row cost more than its copy on small
    // planes)
    unsafe {
        for ch in 0..c {
            for y in 0..hp {
                let row = dst.add((ch * hp + y) * wp);
                let mut j = 0;
                while j < wp {
                    _mm512_mask_storeu_ps(row.add(j), first_lanes(wp - j), zero);
                    j += 16;
                }
                if y < ph || y >= ph + h {
                    continue;
                }
                let from = src.add((ch * h + y - ph) * w);
                let mut j = 0;
                while j < w {
                    let m = first_lanes(w - j);
                    let mut v = _mm512_maskz_loadu_ps(m, from.add(j));
                    if RELU {
                        v = _mm512_max_ps(v, zero);
                    }
                    _mm512_mask_storeu_ps(row.add(pw + j), m, v);
                    j += 16;
                }
            }
        }
    }
}

/// Output length of the "flat" form of a stride-1 convolution, when it needs fewer vectors.
///
/// Small planes (8x8, say) fill only half of each 16-lane vector row by row. The flat form
/// treats the padded plane as one long row: output position `i = oy * wp + ox` is the same
/// sum over taps at offsets `ky * dh * wp + kx * dw`, so the row kernel runs over
/// `(oh - 1) * wp + ow` positions at once and the `wp - ow` positions that wrap around a row
/// end are computed and thrown away. The length is rounded up to whole vectors, so flat planes
/// start 64-byte aligned in an aligned buffer (loads that split cache lines cost double).
fn flat_len(s: &S1) -> Option<usize> {
    let len = ((s.oh - 1) * s.wp + s.ow).next_multiple_of(16);
    (len / 16 < s.oh * s.ow.div_ceil(16)).then_some(len)
}

/// The 64-byte aligned `len` floats at the start of `buf` (which holds `len + 16`).
fn aligned(buf: &mut [f32], len: usize) -> &mut [f32] {
    let off = buf.as_ptr().align_offset(64);
    &mut buf[off..off + len]
}

/// The geometry that runs the row kernels over the flat form of `s` (`len` outputs in one row).
fn flat(s: &S1, len: usize) -> S1 {
    S1 {
        oh: 1,
        ow: len,
        ..*s
    }
}

/// Copies rows of `flat[c][oy * wp + ox]` (`ox < ow`, plane stride `len`) into `y[c][oy][ox]`.
fn unflatten(flat: &[f32], c: usize, len: usize, oh: usize, ow: usize, wp: usize, y: &mut [f32]) {
    assert!(oh > 0 && wp >= ow && flat.len() >= (c - 1) * len + (oh - 1) * wp + ow);
    assert!(y.len() >= c * oh * ow && len >= (oh - 1) * wp + ow);
    // SAFETY: AVX-512F is available wherever this module's kernels run (`available`); every
    // row read lies inside `flat` and every row written inside `y` (checked above).
    unsafe { unflatten_rows(flat.as_ptr(), c, len, oh, ow, wp, y.as_mut_ptr()) }
}

/// The row copies of [`unflatten`], with masked vector moves (the rows are 5 to 16 floats,
/// where a `memcpy` call per row cost more than the copy).
///
/// # Safety
/// AVX-512F; the bounds asserted in [`unflatten`].
#[target_feature(enable = "avx512f")]
unsafe fn unflatten_rows(
    flat: *const f32,
    c: usize,
    len: usize,
    oh: usize,
    ow: usize,
    wp: usize,
    y: *mut f32,
) {
    // SAFETY: (whole body) loads and stores are masked to the `ow` floats of one row.
    unsafe {
        for ch in 0..c {
            for oy in 0..oh {
                let (from, to) = (flat.add(ch * len + oy * wp), y.add((ch * oh + oy) * ow));
                let mut j = 0;
                while j < ow {
                    let m = first_lanes(ow - j);
                    _mm512_mask_storeu_ps(to.add(j), m, _mm512_maskz_loadu_ps(m, from.add(j)));
                    j += 16;
                }
            }
        }
    }
}

/// The inverse of [`unflatten`]: `dst[c][oy * wp + ox] = y[c][oy][ox]`, zeros elsewhere.
fn flatten(y: &[f32], c: usize, len: usize, oh: usize, ow: usize, wp: usize, dst: &mut [f32]) {
    for ch in 0..c {
        let plane = &mut dst[ch * len..(ch + 1) * len];
        for oy in 0..oh {
            plane[oy * wp..oy * wp + ow].copy_from_slice(&y[(ch * oh + oy) * ow..][..ow]);
            let end = if oy + 1 < oh { (oy + 1) * wp } else { len };
            plane[oy * wp + ow..end].fill(0.0);
        }
    }
}

/// One output tile: `R` output channels x `V` vectors, vector `v` at `v * step.0` floats into
/// the padded input and `v * step.1` into each output plane: `(16, 16)` for `V` vectors of one
/// row, `(wp, ow)` for one vector in each of `V` rows (planes at most 16 wide, which would
/// otherwise leave `R` accumulators, too few to hide the multiply-add latency).
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn tile<const R: usize, const V: usize>(
    s: &S1,
    x: *const f32,
    w: *const f32,
    ldw: usize,
    y: *mut f32,
    m: [__mmask16; V],
    step: (usize, usize),
) {
    let mut acc = [[_mm512_setzero_ps(); V]; R];
    let plane = s.hp * s.wp;
    // SAFETY: (whole body) the caller guarantees that x, w and y cover the tile, with slack
    // for the loads past the row end.
    unsafe {
        for ic in 0..s.cin {
            for ky in 0..s.kh {
                let xr = x.add(ic * plane + ky * s.dh * s.wp);
                let wr = w.add((ic * s.kh + ky) * s.kw * ldw);
                for kx in 0..s.kw {
                    let xs = xr.add(kx * s.dw);
                    let mut xv = [_mm512_setzero_ps(); V];
                    for v in 0..V {
                        xv[v] = _mm512_loadu_ps(xs.add(step.0 * v));
                    }
                    let wk = wr.add(kx * ldw);
                    for r in 0..R {
                        let wv = _mm512_set1_ps(*wk.add(r));
                        for v in 0..V {
                            acc[r][v] = _mm512_fmadd_ps(xv[v], wv, acc[r][v]);
                        }
                    }
                }
            }
        }
        for r in 0..R {
            for v in 0..V {
                _mm512_mask_storeu_ps(y.add(r * s.oh * s.ow + step.1 * v), m[v], acc[r][v]);
            }
        }
    }
}

macro_rules! by_r {
    ($r:expr, $f:ident, $v:literal, ($($a:expr),*)) => {
        match $r {
            1 => $f::<1, $v>($($a),*),
            2 => $f::<2, $v>($($a),*),
            3 => $f::<3, $v>($($a),*),
            4 => $f::<4, $v>($($a),*),
            5 => $f::<5, $v>($($a),*),
            6 => $f::<6, $v>($($a),*),
            7 => $f::<7, $v>($($a),*),
            _ => $f::<8, $v>($($a),*),
        }
    };
}

/// `y[oc, oy, ox] = sum_{ic, ky, kx} wt[((ic * kh + ky) * kw + kx) * ldw + oc] *
/// xp[ic, oy + ky * dh, ox + kx * dw]` for one padded image.
///
/// # Safety
/// AVX-512F available; `xp` holds `cin * hp * wp + SLACK` floats, `wt` the transposed weights,
/// `y` `cout * oh * ow` floats.
#[target_feature(enable = "avx512f")]
unsafe fn conv_s1(s: &S1, xp: *const f32, wt: *const f32, ldw: usize, y: *mut f32) {
    if s.ow <= 16 && s.oh > 1 {
        // SAFETY: the caller's contract.
        unsafe { conv_s1_rows(s, xp, wt, ldw, y) };
        return;
    }
    let mut oc0 = 0;
    while oc0 < s.cout {
        let r = (s.cout - oc0).min(8);
        for oy in 0..s.oh {
            let mut ox0 = 0;
            while ox0 < s.ow {
                let rem = s.ow - ox0;
                // SAFETY: offsets stay inside the buffers described above.
                unsafe {
                    let xr = xp.add(oy * s.wp + ox0);
                    let yo = y.add(oc0 * s.oh * s.ow + oy * s.ow + ox0);
                    let w0 = wt.add(oc0);
                    let step = (16, 16);
                    // three vectors per tile, but two and two for the last four (a tile of
                    // one vector has only `R` accumulators)
                    if rem > 32 && rem.div_ceil(16) != 4 {
                        let m = [0xffff, 0xffff, first_lanes(rem - 32)];
                        by_r!(r, tile, 3, (s, xr, w0, ldw, yo, m, step));
                        ox0 += 48;
                    } else if rem > 16 {
                        let m = [0xffff, first_lanes(rem - 16)];
                        by_r!(r, tile, 2, (s, xr, w0, ldw, yo, m, step));
                        ox0 += 32;
                    } else {
                        let m = [first_lanes(rem)];
                        by_r!(r, tile, 1, (s, xr, w0, ldw, yo, m, step));
                        ox0 += 16;
                    }
                }
            }
        }
        oc0 += r;
    }
}

/// [`conv_s1`] for rows of at most 16 outputs: each tile takes one vector from each of up to
/// three rows, so that `R x 3` accumulators are in flight instead of `R`.
///
/// # Safety
/// As [`conv_s1`], with `s.ow <= 16`.
#[target_feature(enable = "avx512f")]
unsafe fn conv_s1_rows(s: &S1, xp: *const f32, wt: *const f32, ldw: usize, y: *mut f32) {
    let m = first_lanes(s.ow);
    let step = (s.wp, s.ow);
    let mut oc0 = 0;
    while oc0 < s.cout {
        let r = (s.cout - oc0).min(8);
        let mut oy = 0;
        while oy < s.oh {
            // SAFETY: offsets stay inside the buffers described at `conv_s1`; each tile's
            // vectors are whole rows `oy..oy + V` below `oh`.
            unsafe {
                let xr = xp.add(oy * s.wp);
                let yo = y.add(oc0 * s.oh * s.ow + oy * s.ow);
                let w0 = wt.add(oc0);
                match s.oh - oy {
                    1 => by_r!(r, tile, 1, (s, xr, w0, ldw, yo, [m], step)),
                    2 => by_r!(r, tile, 2, (s, xr, w0, ldw, yo, [m; 2], step)),
                    _ => by_r!(r, tile, 3, (s, xr, w0, ldw, yo, [m; 3], step)),
                }
            }
            oy += (s.oh - oy).min(3);
        }
        oc0 += r;
    }
}

/// Weight-gradient tile: `acc_out[r * cin * kh * kw + t]` += the
/// correlation of `R` output-gradient planes with `T` horizontally shifted input rows, summed
/// over `nb` images (`xs` and `ys` floats apart) so that small planes still give the
/// accumulators a long run before they are written back.
#[target_feature(enable = "avx512f")]
unsafe fn dw_tile<const R: usize, const T: usize>(
    s: &S1,
    nb: (usize, usize, usize),
    x: *const f32,
    dy: *const f32,
    acc_out: *mut f32,
) {
    let (nb, xs, ys) = nb;
    let mut acc = [[_mm512_setzero_ps(); T]; R];
    let ohw = s.oh * s.ow;
    // SAFETY: see `dw_s1`.
    unsafe {
        for b in 0..nb {
            for oy in 0..s.oh {
                let xr = x.add(b * xs + oy * s.wp);
                let gr = dy.add(b * ys + oy * s.ow);
                let mut ox0 = 0;
                while ox0 < s.ow {
                    let m = first_lanes(s.ow - ox0);
                    let mut xv = [_mm512_setzero_ps(); T];
                    for t in 0..T {
                        xv[t] = _mm512_loadu_ps(xr.add(ox0 + t * s.dw));
                    }
                    for r in 0..R {
                        let g = _mm512_maskz_loadu_ps(m, gr.add(r * ohw + ox0));
                        for t in 0..T {
                            acc[r][t] = _mm512_fmadd_ps(g, xv[t], acc[r][t]);
                        }
                    }
                    ox0 += 16;
                }
            }
        }
        let kk = s.kh * s.kw;
        for r in 0..R {
            for t in 0..T {
                *acc_out.add(r * s.cin * kk + t) += _mm512_reduce_add_ps(acc[r][t]);
            }
        }
    }
}

macro_rules! by_rt {
    ($r:expr, $t:expr, ($($a:expr),*)) => {
        match ($r, $t) {
            (1, 1) => dw_tile::<1, 1>($($a),*),
            (1, 2) => dw_tile::<1, 2>($($a),*),
            (1, _) => dw_tile::<1, 3>($($a),*),
            (2, 1) => dw_tile::<2, 1>($($a),*),
            (2, 2) => dw_tile::<2, 2>($($a),*),
            (2, _) => dw_tile::<2, 3>($($a),*),
            (3, 1) => dw_tile::<3, 1>($($a),*),
            (3, 2) => dw_tile::<3, 2>($($a),*),
            (3, _) => dw_tile::<3, 3>($($a),*),
            (4, 1) => dw_tile::<4, 1>($($a),*),
            (4, 2) => dw_tile::<4, 2>($($a),*),
            (4, _) => dw_tile::<4, 3>($($a),*),
            (_, 1) => dw_tile::<5, 1>($($a),*),
            (_, 2) => dw_tile::<5, 2>($($a),*),
            (_, _) => dw_tile::<5, 3>($($a),*),
        }
    };
}

/// Adds the weight gradient of `nb.0` images into `accv` (`[cout, cin, kh, kw]`).
///
/// # Safety
/// AVX-512F available; `xp` padded images as in [`conv_s1`], `nb.1` floats apart; `dy`
/// `cout * oh * ow` floats per image, `nb.2` floats apart; `accv` `cout * cin * kh * kw` floats.
#[target_feature(enable = "avx512f")]
unsafe fn dw_s1(s: &S1, nb: (usize, usize, usize), xp: *const f32, dy: *const f32, accv: *mut f32) {
    let kk = s.kh * s.kw;
    let plane = s.hp * s.wp;
    let ohw = s.oh * s.ow;
    if kk == 1 {
        // 1x1: block over input channels instead of taps, by presenting the channel stride as
        // the tap stride (the accumulator layout [oc][ic] matches since kh * kw == 1)
        let s1 = S1 { dw: plane, ..*s };
        let mut oc0 = 0;
        while oc0 < s.cout {
            let r = (s.cout - oc0).min(5); // at most 5 x 3 accumulators, as below
            let mut ic0 = 0;
            while ic0 < s.cin {
                let t = (s.cin - ic0).min(3);
                // SAFETY: channel offsets stay inside the padded image.
                unsafe {
                    let x = xp.add(ic0 * plane);
                    let g = dy.add(oc0 * ohw);
                    let a = accv.add(oc0 * s.cin + ic0);
                    by_rt!(r, t, (&s1, nb, x, g, a));
                }
                ic0 += t;
            }
            oc0 += r;
        }
        return;
    }
    let mut oc0 = 0;
    while oc0 < s.cout {
        // 5 x 3 accumulators: with 8 x 3 LLVM spilled them to the stack (39 against 70
        // GFLOP/s at 64x8x8)
        let r = (s.cout - oc0).min(5);
        for ic in 0..s.cin {
            for ky in 0..s.kh {
                let mut kx0 = 0;
                while kx0 < s.kw {
                    let t = (s.kw - kx0).min(3);
                    // SAFETY: offsets stay inside the buffers described above.
                    unsafe {
                        let x = xp.add(ic * plane + ky * s.dh * s.wp + kx0 * s.dw);
                        let g = dy.add(oc0 * ohw);
                        let a = accv.add((oc0 * s.cin + ic) * kk + ky * s.kw + kx0);
                        by_rt!(r, t, (s, nb, x, g, a));
                    }
                    kx0 += t;
                }
            }
        }
        oc0 += r;
    }
}

/// One image of a stride-1 convolution: `y = conv(xpad, wt)` per group, `cig` input and `cog`
/// output channels per group, through the flat form when `fl` says it is shorter.
#[allow(clippy::too_many_arguments)]
fn run_s1(
    s: &S1,
    fl: Option<usize>,
    groups: usize,
    cig: usize,
    cog: usize,
    xpad: &[f32],
    wt: &[f32],
    y: &mut [f32],
) {
    let (plane, glen) = (s.hp * s.wp, cig * s.kh * s.kw * cog);
    let ohw = s.oh * s.ow;
    debug_assert!(xpad.len() >= groups * cig * plane + SLACK && y.len() == groups * cog * ohw);
    match fl {
        None => {
            for g in 0..groups {
                // SAFETY: AVX-512F checked by `available` (the only way to reach this path);
                // the padded image has slack for the loads past a row end; group g's output
                // planes lie inside `y`.
                unsafe {
                    conv_s1(
                        s,
                        xpad.as_ptr().add(g * cig * plane),
                        wt.as_ptr().add(g * glen),
                        cog,
                        y.as_mut_ptr().add(g * cog * ohw),
                    );
                }
            }
        }
        Some(len) => {
            let sf = flat(s, len);
            with_scratch(cog * len + 16, |buf| {
                let yflat = aligned(buf, cog * len);
                for g in 0..groups {
                    // SAFETY: as above; the flat output is `cog` planes of `len`, and its
                    // loads end inside the padded plane plus slack (see `flat_len`).
                    unsafe {
                        conv_s1(
                            &sf,
                            xpad.as_ptr().add(g * cig * plane),
                            wt.as_ptr().add(g * glen),
                            cog,
                            yflat.as_mut_ptr(),
                        );
                    }
                    unflatten(
                        yflat,
                        cog,
                        len,
                        s.oh,
                        s.ow,
                        s.wp,
                        &mut y[g * cog * ohw..][..cog * ohw],
                    );
                }
            });
        }
    }
}

pub(super) fn forward(p: &Conv2dParams, x: &[f32], w: &[f32], y: &mut [f32]) {
    forward_staged(p, x, w, y, false)
}

/// [`forward`] of `relu(x)`: the ReLU is applied while each image is copied into its padded
/// scratch plane, so no ReLU'd tensor is written.
pub(super) fn forward_relu(p: &Conv2dParams, x: &[f32], w: &[f32], y: &mut [f32]) {
    forward_staged(p, x, w, y, true)
}

fn forward_staged(p: &Conv2dParams, x: &[f32], w: &[f32], y: &mut [f32], relu: bool) {
    let (oh, ow) = (p.out_h(), p.out_w());
    let (cig, cog) = (p.c_in / p.groups, p.c_out / p.groups);
    let (ph, pw) = p.padding;
    let (hp, wp) = (p.h + 2 * ph, p.w + 2 * pw);
    let kk = p.kh * p.kw;
    let glen = cig * kk * cog;
    let xl = p.c_in * p.h * p.w;
    let s = S1 {
        cin: cig,
        cout: cog,
        kh: p.kh,
        kw: p.kw,
        dh: p.dilation.0,
        dw: p.dilation.1,
        hp,
        wp,
        oh,
        ow,
    };
    with_scratch(p.groups * glen, |wt| {
        for g in 0..p.groups {
            for ocg in 0..cog {
                for icg in 0..cig {
                    for t in 0..kk {
                        wt[g * glen + (icg * kk + t) * cog + ocg] =
                            w[((g * cog + ocg) * cig + icg) * kk + t];
                    }
                }
            }
        }
        let wt = &*wt;
        let fl = flat_len(&s);
        par_chunks_mut(p, y, p.c_out * oh * ow, &|b, yb| {
            with_scratch(p.c_in * hp * wp + SLACK, |xpad| {
                pad_into(
                    &x[b * xl..(b + 1) * xl],
                    p.c_in,
                    p.h,
                    p.w,
                    ph,
                    pw,
                    xpad,
                    relu,
                );
                run_s1(&s, fl, p.groups, cig, cog, xpad, wt, yb);
            });
        });
    });
}

pub(super) fn backward_input(p: &Conv2dParams, w: &[f32], dy: &[f32], dx: &mut [f32]) {
    backward_input_masked(p, w, dy, dx, None)
}

/// [`backward_input`], then ReLU's backward where `mask` is given (`dx = 0` where
/// `mask <= 0`; the gradient of a convolution of `relu(mask)`), applied to each image's
/// gradient as soon as it is computed, while it is still in cache.
pub(super) fn backward_input_masked(
    p: &Conv2dParams,
    w: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    mask: Option<&[f32]>,
) {
    let (oh, ow) = (p.out_h(), p.out_w());
    let (cig, cog) = (p.c_in / p.groups, p.c_out / p.groups);
    let (dh, dw) = p.dilation;
    // the input gradient is a stride-1 convolution of dy padded by d * (k - 1) - p
    let qh = dh * (p.kh - 1) - p.padding.0;
    let qw = dw * (p.kw - 1) - p.padding.1;
    let (hp, wp) = (oh + 2 * qh, ow + 2 * qw);
    let kk = p.kh * p.kw;
    let glen = cig * kk * cog;
    let yl = p.c_out * oh * ow;
    let s = S1 {
        cin: cog,
        cout: cig,
        kh: p.kh,
        kw: p.kw,
        dh,
        dw,
        hp,
        wp,
        oh: p.h,
        ow: p.w,
    };
    with_scratch(p.groups * glen, |wt| {
        for g in 0..p.groups {
            for ocg in 0..cog {
                for icg in 0..cig {
                    for ky in 0..p.kh {
                        for kx in 0..p.kw {
                            wt[g * glen + ((ocg * p.kh + ky) * p.kw + kx) * cig + icg] =
                                w[((g * cog + ocg) * cig + icg) * kk
                                    + (p.kh - 1 - ky) * p.kw
                                    + (p.kw - 1 - kx)];
                        }
                    }
                }
            }
        }
        let wt = &*wt;
        let fl = flat_len(&s);
        let xl = p.c_in * p.h * p.w;
        par_chunks_mut(p, dx, xl, &|b, dxb| {
            with_scratch(p.c_out * hp * wp + SLACK, |gpad| {
                pad_into(
                    &dy[b * yl..(b + 1) * yl],
                    p.c_out,
                    oh,
                    ow,
                    qh,
                    qw,
                    gpad,
                    false,
                );
                run_s1(&s, fl, p.groups, cog, cig, gpad, wt, dxb);
                if let Some(m) = mask {
                    relu_mask(dxb, &m[b * xl..(b + 1) * xl]);
                }
            });
        });
    });
}

pub(super) fn backward_weight(p: &Conv2dParams, x: &[f32], dy: &[f32], dw: &mut [f32]) {
    backward_weight_staged(p, x, dy, dw, false)
}

/// [`backward_weight`] of a convolution of `relu(x)`: the ReLU is applied while each image is
/// copied into its padded scratch plane.
pub(super) fn backward_weight_relu(p: &Conv2dParams, x: &[f32], dy: &[f32], dw: &mut [f32]) {
    backward_weight_staged(p, x, dy, dw, true)
}

fn backward_weight_staged(p: &Conv2dParams, x: &[f32], dy: &[f32], dw: &mut [f32], relu: bool) {
    let (oh, ow) = (p.out_h(), p.out_w());
    let (cig, cog) = (p.c_in / p.groups, p.c_out / p.groups);
    let (ph, pw) = p.padding;
    let (hp, wp) = (p.h + 2 * ph, p.w + 2 * pw);
    let kk = p.kh * p.kw;
    let xl = p.c_in * p.h * p.w;
    let s = S1 {
        cin: cig,
        cout: cog,
        kh: p.kh,
        kw: p.kw,
        dh: p.dilation.0,
        dw: p.dilation.1,
        hp,
        wp,
        oh,
        ow,
    };
    // 1x1 without padding is already flat (wp == ow); otherwise the flat form needs the output
    // gradient laid out with the padded row stride, zeros in the wrapped-around positions
    let fl = if kk == 1 && (ph, pw) == (0, 0) {
        None
    } else {
        flat_len(&s)
    };
    let s = if kk == 1 && (ph, pw) == (0, 0) {
        let hw = oh * ow;
        S1 {
            oh: 1,
            ow: hw,
            hp: 1,
            wp: hw,
            ..s
        }
    } else {
        s
    };
    let (ks, glen_y) = match fl {
        Some(len) => (flat(&s, len), cog * len),
        None => (s, cog * oh * ow),
    };
    let yl = p.c_out * oh * ow;
    // images per tile run: enough output vectors (256 for 3x3, 64 for 1x1; measured best with
    // `conv_stages`) that zeroing and reducing the accumulators is paid rarely (64x8x8 3x3:
    // 45 -> 74 GFLOP/s against one image per run)
    let run_vectors = if kk == 1 { 64 } else { 256 };
    let nbv = (run_vectors / (ks.oh * ks.ow.div_ceil(16))).clamp(1, 16);
    let ximg = p.c_in * hp * wp;
    let yimg = p.groups * glen_y;
    // an unpadded 1x1 reads the images in place when no vector load can run past the end (and
    // no ReLU is applied)
    let x_as_is = kk == 1 && (ph, pw) == (0, 0) && (p.h * p.w).is_multiple_of(16) && !relu;
    partial_weight_grads(p, dw, &|accv, mine| {
        with_scratch(nbv * (ximg + yimg) + SLACK + 16, |scratch| {
            let (xpad, rest) = scratch.split_at_mut(nbv * ximg + SLACK);
            let dyflat = aligned(rest, nbv * yimg);
            let mut b0 = mine.start;
            while b0 < mine.end {
                let nb = (mine.end - b0).min(nbv);
                for i in 0..nb {
                    let b = b0 + i;
                    if !x_as_is {
                        let xb = &x[b * xl..(b + 1) * xl];
                        let dst = &mut xpad[i * ximg..(i + 1) * ximg + SLACK];
                        pad_into(xb, p.c_in, p.h, p.w, ph, pw, dst, relu);
                    }
                    if let Some(len) = fl {
                        let dst = &mut dyflat[i * yimg..(i + 1) * yimg];
                        flatten(&dy[b * yl..(b + 1) * yl], p.c_out, len, oh, ow, wp, dst);
                    }
                }
                let (dyk, ys): (&[f32], usize) = match fl {
                    Some(_) => (dyflat, yimg),
                    None => (&dy[b0 * yl..], yl),
                };
                let xk: &[f32] = if x_as_is { &x[b0 * xl..] } else { xpad };
                for g in 0..p.groups {
                    // SAFETY: as in `forward`; accv is this task's own; each of the
                    // `nb` images holds `cog` output-gradient planes of
                    // `ks.oh * ks.ow` per group.
                    unsafe {
                        dw_s1(
                            &ks,
                            (nb, ximg, ys),
                            xk.as_ptr().add(g * cig * hp * wp),
                            dyk.as_ptr().add(g * glen_y),
                            accv.as_mut_ptr().add(g * cog * cig * kk),
                        );
                    }
                }
                b0 += nb;
            }
        });
    });
}

// ------------------------------------------------------------------------------- depthwise

/// Depthwise output tile: `RB` rows x `V` vectors of one plane; weights of one channel.
#[target_feature(enable = "avx512f")]
unsafe fn dw_plane_tile<const RB: usize, const V: usize>(
    s: &S1,
    x: *const f32,
    w: *const f32,
    y: *mut f32,
    m: [__mmask16; V],
) {
    let mut acc = [[_mm512_setzero_ps(); V]; RB];
    // SAFETY: the caller guarantees that x (padded plane + slack), w and y cover the tile.
    unsafe {
        for ky in 0..s.kh {
            for kx in 0..s.kw {
                let wv = _mm512_set1_ps(*w.add(ky * s.kw + kx));
                let base = x.add(ky * s.dh * s.wp + kx * s.dw);
                for r in 0..RB {
                    for v in 0..V {
                        let xv = _mm512_loadu_ps(base.add(r * s.wp + 16 * v));
                        acc[r][v] = _mm512_fmadd_ps(xv, wv, acc[r][v]);
                    }
                }
            }
        }
        for r in 0..RB {
            for v in 0..V {
                _mm512_mask_storeu_ps(y.add(r * s.ow + 16 * v), m[v], acc[r][v]);
            }
        }
    }
}

macro_rules! by_rb {
    ($r:expr, $v:literal, ($($a:expr),*)) => {
        match $r {
            1 => dw_plane_tile::<1, $v>($($a),*),
            2 => dw_plane_tile::<2, $v>($($a),*),
            3 => dw_plane_tile::<3, $v>($($a),*),
            _ => dw_plane_tile::<4, $v>($($a),*),
        }
    };
}

/// Depthwise output tile for a square `K x K` kernel, no row dilation: `RB` rows x `V`
/// vectors of one plane, the `K * K` weights held in registers.
///
/// Each input row vector is loaded once and added into every output row it feeds (row `r`
/// takes input row `r + ky` with weight row `ky`), instead of once per (output row, kernel
/// row) pair as in [`dw_plane_tile`]: 3x3 over 4 rows loads 6 rows instead of 12. Every loop
/// has a constant trip count, so LLVM unrolls them and the accumulators stay in registers.
#[target_feature(enable = "avx512f")]
unsafe fn dw_rows_tile<const RB: usize, const V: usize, const K: usize>(
    s: &S1,
    x: *const f32,
    w: *const f32,
    y: *mut f32,
    m: [__mmask16; V],
) {
    let mut acc = [[_mm512_setzero_ps(); V]; RB];
    // SAFETY: the caller guarantees that x (padded plane + slack), w (`K * K`) and y cover the
    // tile.
    unsafe {
        let mut wv = [[_mm512_setzero_ps(); K]; K];
        for ky in 0..K {
            for kx in 0..K {
                wv[ky][kx] = _mm512_set1_ps(*w.add(ky * K + kx));
            }
        }
        for i in 0..RB + K - 1 {
            let xr = x.add(i * s.wp);
            for kx in 0..K {
                let xs = xr.add(kx * s.dw);
                let mut xv = [_mm512_setzero_ps(); V];
                for v in 0..V {
                    xv[v] = _mm512_loadu_ps(xs.add(16 * v));
                }
                for ky in 0..K {
                    if i >= ky && i - ky < RB {
                        for v in 0..V {
                            acc[i - ky][v] = _mm512_fmadd_ps(xv[v], wv[ky][kx], acc[i - ky][v]);
                        }
                    }
                }
            }
        }
        for r in 0..RB {
            for v in 0..V {
                _mm512_mask_storeu_ps(y.add(r * s.ow + 16 * v), m[v], acc[r][v]);
            }
        }
    }
}

/// [`dw_rows_tile`] for `rb` rows (1 to 4). Uses of `s`: `wp` and `ow` are the input and
/// output row strides, `dw` the column dilation.
#[target_feature(enable = "avx512f")]
unsafe fn dw_rows_k<const V: usize, const K: usize>(
    s: &S1,
    rb: usize,
    (x, w, y): (*const f32, *const f32, *mut f32),
    m: [__mmask16; V],
) {
    // SAFETY: forwarded from `dw_rows`.
    unsafe {
        match rb {
            1 => dw_rows_tile::<1, V, K>(s, x, w, y, m),
            2 => dw_rows_tile::<2, V, K>(s, x, w, y, m),
            3 => dw_rows_tile::<3, V, K>(s, x, w, y, m),
            _ => dw_rows_tile::<4, V, K>(s, x, w, y, m),
        }
    }
}

/// Whether [`dw_plane`] takes the row-sharing tiles: square 3x3 and 5x5 kernels with row
/// dilation 1 or 2, on planes of several rows (the flat form is one long row).
fn shares_rows(s: &S1) -> bool {
    s.oh > 1 && matches!(s.dh, 1 | 2) && s.kh == s.kw && matches!(s.kh, 3 | 5)
}

/// [`dw_plane`] with the row-sharing tiles of a `K x K` kernel.
///
/// Row dilation 2 is two interleaved undilated problems: output rows `0, 2, 4, ...` read
/// input rows `0, 2, 4, ...` only, so each parity runs as tiles on doubled row strides. 5x5
/// runs one vector wide (`examples/small_ops.rs`, 2026-12-07: with two, its 25 weights and 8
/// accumulators do not fit the 32 registers and LLVM spills, slower than [`dw_plane_tile`]).
///
/// # Safety
/// As [`dw_plane`].
#[target_feature(enable = "avx512f")]
unsafe fn dw_plane_rows<const K: usize>(s: &S1, xp: *const f32, w: *const f32, y: *mut f32) {
    let dh = s.dh;
    let sd = S1 {
        wp: dh * s.wp,
        ow: dh * s.ow,
        ..*s
    };
    let mut oy = 0;
    while oy < s.oh {
        let rows = (s.oh - oy).min(4 * dh);
        for par in 0..dh.min(rows) {
            // rows oy + par, oy + par + dh, ... below oy + rows
            let rb = (rows - par).div_ceil(dh);
            let mut ox0 = 0;
            while ox0 < s.ow {
                let rem = s.ow - ox0;
                let r0 = oy + par;
                // SAFETY: offsets inside the buffers described at `dw_plane`; the tile's
                // `rb` rows on stride `dh` end inside the output plane.
                unsafe {
                    let t = (xp.add(r0 * s.wp + ox0), w, y.add(r0 * s.ow + ox0));
                    if K == 3 && rem > 16 {
                        dw_rows_k::<2, K>(&sd, rb, t, [0xffff, first_lanes(rem - 16)]);
                        ox0 += 32;
                    } else {
                        dw_rows_k::<1, K>(&sd, rb, t, [first_lanes(rem)]);
                        ox0 += 16;
                    }
                }
            }
        }
        oy += rows;
    }
}

/// One depthwise plane: `y[oy, ox] = sum w[ky, kx] * xp[oy + ky dh, ox + kx dw]`.
///
/// # Safety
/// AVX-512F; `xp` holds `hp * wp + SLACK` floats, `w` `kh * kw`, `y` `oh * ow`.
#[target_feature(enable = "avx512f")]
unsafe fn dw_plane(s: &S1, xp: *const f32, w: *const f32, y: *mut f32) {
    if shares_rows(s) {
        // SAFETY: the caller's contract.
        unsafe {
            if s.kh == 3 {
                dw_plane_rows::<3>(s, xp, w, y)
            } else {
                dw_plane_rows::<5>(s, xp, w, y)
            }
        }
        return;
    }
    let mut oy = 0;
    while oy < s.oh {
        let rb = (s.oh - oy).min(4);
        let mut ox0 = 0;
        while ox0 < s.ow {
            let rem = s.ow - ox0;
            // SAFETY: offsets inside the buffers described above.
            unsafe {
                let xr = xp.add(oy * s.wp + ox0);
                let yo = y.add(oy * s.ow + ox0);
                if rem > 16 {
                    by_rb!(rb, 2, (s, xr, w, yo, [0xffff, first_lanes(rem - 16)]));
                    ox0 += 32;
                } else {
                    by_rb!(rb, 1, (s, xr, w, yo, [first_lanes(rem)]));
                    ox0 += 16;
                }
            }
        }
        oy += rb;
    }
}

/// Depthwise weight-gradient tile: taps `[ky0, ky0 + TR) x [kx0, kx0 + TC)` of one plane,
/// summed over the whole plane; returns the `TR x TC` sums (row-major).
#[target_feature(enable = "avx512f")]
unsafe fn dw_grad_tile<const TR: usize, const TC: usize>(
    s: &S1,
    x: *const f32,
    dy: *const f32,
    out: &mut [f32],
) {
    let mut acc = [[_mm512_setzero_ps(); TC]; TR];
    // SAFETY: x is a padded plane (+ slack) offset to the first tap, dy `oh * ow` floats.
    unsafe {
        for oy in 0..s.oh {
            let mut ox0 = 0;
            while ox0 < s.ow {
                let g = _mm512_maskz_loadu_ps(first_lanes(s.ow - ox0), dy.add(oy * s.ow + ox0));
                for a in 0..TR {
                    let xr = x.add((oy + a * s.dh) * s.wp + ox0);
                    for b in 0..TC {
                        acc[a][b] =
                            _mm512_fmadd_ps(g, _mm512_loadu_ps(xr.add(b * s.dw)), acc[a][b]);
                    }
                }
                ox0 += 16;
            }
        }
    }
    for a in 0..TR {
        for b in 0..TC {
            out[a * TC + b] = _mm512_reduce_add_ps(acc[a][b]);
        }
    }
}

/// Depthwise weight gradient of `TR` kernel rows x `TC` kernel columns over one plane, those
/// taps at once: each input row vector is loaded once and multiplied with the
/// output-gradient rows of every kernel row it meets (output row `i - a dh` for kernel row
/// `a`), where [`dw_grad_tile`] loads it once per (output row, tap). Returns the `TR * TC`
/// sums (row-major); `x` starts at the first tap's row.
#[target_feature(enable = "avx512f")]
unsafe fn dw_grad_rows<const TR: usize, const TC: usize>(
    s: &S1,
    x: *const f32,
    dy: *const f32,
    out: &mut [f32],
) {
    let mut acc = [[_mm512_setzero_ps(); TC]; TR];
    // SAFETY: (whole body) x holds at least `oh + (TR - 1) dh` rows of the padded plane
    // (+ slack), dy `oh * ow` floats (loads masked to the row).
    unsafe {
        for i in 0..s.oh + (TR - 1) * s.dh {
            let mut ox0 = 0;
            while ox0 < s.ow {
                let m = first_lanes(s.ow - ox0);
                let xr = x.add(i * s.wp + ox0);
                let mut xv = [_mm512_setzero_ps(); TC];
                for b in 0..TC {
                    xv[b] = _mm512_loadu_ps(xr.add(b * s.dw));
                }
                for a in 0..TR {
                    if i >= a * s.dh && i - a * s.dh < s.oh {
                        let g = _mm512_maskz_loadu_ps(m, dy.add((i - a * s.dh) * s.ow + ox0));
                        for b in 0..TC {
                            acc[a][b] = _mm512_fmadd_ps(g, xv[b], acc[a][b]);
                        }
                    }
                }
                ox0 += 16;
            }
        }
    }
    for a in 0..TR {
        for b in 0..TC {
            out[a * TC + b] = _mm512_reduce_add_ps(acc[a][b]);
        }
    }
}

/// Adds the weight gradient of one plane into `dwc` (`kh * kw`).
///
/// # Safety
/// As [`dw_plane`], with `dy` `oh * ow` floats.
#[target_feature(enable = "avx512f")]
unsafe fn dw_plane_grad(s: &S1, xp: *const f32, dy: *const f32, dwc: &mut [f32]) {
    // 3x3 in one pass; 5x5 as kernel rows 0-2 and 3-4 (all 25 taps at once would need 31
    // of the 32 registers, and measured slower than the tiles below)
    if s.kh == s.kw && matches!(s.kh, 3 | 5) {
        let mut sums = [0.0f32; 25];
        // SAFETY: the caller's contract; kernel row 3 starts `3 dh` rows into the plane.
        unsafe {
            if s.kh == 3 {
                dw_grad_rows::<3, 3>(s, xp, dy, &mut sums)
            } else {
                dw_grad_rows::<3, 5>(s, xp, dy, &mut sums[..15]);
                dw_grad_rows::<2, 5>(s, xp.add(3 * s.dh * s.wp), dy, &mut sums[15..]);
            }
        }
        for (d, v) in dwc.iter_mut().zip(sums) {
            *d += v;
        }
        return;
    }
    let mut tmp = [0.0f32; 9];
    let mut ky0 = 0;
    while ky0 < s.kh {
        let tr = (s.kh - ky0).min(3);
        let mut kx0 = 0;
        while kx0 < s.kw {
            let tc = (s.kw - kx0).min(3);
            // SAFETY: offsets inside the padded plane.
            unsafe {
                let x = xp.add(ky0 * s.dh * s.wp + kx0 * s.dw);
                match (tr, tc) {
                    (1, 1) => dw_grad_tile::<1, 1>(s, x, dy, &mut tmp),
                    (1, 2) => dw_grad_tile::<1, 2>(s, x, dy, &mut tmp),
                    (1, _) => dw_grad_tile::<1, 3>(s, x, dy, &mut tmp),
                    (2, 1) => dw_grad_tile::<2, 1>(s, x, dy, &mut tmp),
                    (2, 2) => dw_grad_tile::<2, 2>(s, x, dy, &mut tmp),
                    (2, _) => dw_grad_tile::<2, 3>(s, x, dy, &mut tmp),
                    (_, 1) => dw_grad_tile::<3, 1>(s, x, dy, &mut tmp),
                    (_, 2) => dw_grad_tile::<3, 2>(s, x, dy, &mut tmp),
                    (_, _) => dw_grad_tile::<3, 3>(s, x, dy, &mut tmp),
                }
            }
            for a in 0..tr {
                for b in 0..tc {
                    dwc[(ky0 + a) * s.kw + kx0 + b] += tmp[a * tc + b];
                }
            }
            kx0 += tc;
        }
        ky0 += tr;
    }
}

/// The geometry of one depthwise plane: `(hp, wp)` padded input, `(oh, ow)` output.
fn depthwise_geometry(p: &Conv2dParams, (hp, wp): (usize, usize), (oh, ow): (usize, usize)) -> S1 {
    S1 {
        cin: 1,
        cout: 1,
        kh: p.kh,
        kw: p.kw,
        dh: p.dilation.0,
        dw: p.dilation.1,
        hp,
        wp,
        oh,
        ow,
    }
}

/// Runs [`dw_plane`] over every plane: `src` planes of `(h, w)` padded by `(ph, pw)` (and
/// ReLU'd if `relu`), channel `c` with the weights `w[c * kh * kw..]`, into `dst` planes of
/// `s.oh * s.ow`; with `mask`, each output plane is then zeroed where the matching plane of
/// `mask` is not positive (ReLU's backward, while the plane is in cache).
#[allow(clippy::too_many_arguments)]
fn depthwise_planes(
    p: &Conv2dParams,
    s: &S1,
    src: (&[f32], usize, usize),
    (ph, pw): (usize, usize),
    w: &[f32],
    dst: &mut [f32],
    relu: bool,
    mask: Option<&[f32]>,
) {
    let (src, h, w_in) = src;
    let (hw, ohw, kk) = (h * w_in, s.oh * s.ow, p.kh * p.kw);
    // small planes: one long row over the flat padded plane fills the vector lanes
    let fl = flat_len(s);
    let flat_len_or_0 = fl.unwrap_or(0);
    // one task per thread, each over a run of images with one scratch buffer whose padding is
    // zeroed once
    let parts = threads_for(p).min(p.n).max(1);
    let image = p.c_in * ohw;
    par_split_mut(p, dst, image, parts, |_, images, dimg| {
        with_scratch(s.hp * s.wp + SLACK + flat_len_or_0 + 16, |buf| {
            let (pad, rest) = buf.split_at_mut(s.hp * s.wp + SLACK);
            zero_padded(pad);
            for (k, b) in images.enumerate() {
                let db = &mut dimg[k * image..(k + 1) * image];
                for c in 0..p.c_in {
                    let i = b * p.c_in + c;
                    pad_plane_interior(&src[i * hw..(i + 1) * hw], h, w_in, ph, pw, pad, relu);
                    let yi = &mut db[c * ohw..(c + 1) * ohw];
                    // SAFETY: AVX-512F checked by `available`; `dw_plane` writes the
                    // `s.oh * s.ow` floats of plane `yi` (or of `yflat`); the flat form's
                    // loads end inside the padded plane plus slack (see `flat_len`).
                    unsafe {
                        let wc = w.as_ptr().add(c * kk);
                        match fl {
                            None => dw_plane(s, pad.as_ptr(), wc, yi.as_mut_ptr()),
                            Some(len) => {
                                let yflat = aligned(rest, len);
                                dw_plane(&flat(s, len), pad.as_ptr(), wc, yflat.as_mut_ptr());
                                unflatten(yflat, 1, len, s.oh, s.ow, s.wp, yi);
                            }
                        }
                    }
                    if let Some(m) = mask {
                        relu_mask(yi, &m[i * ohw..(i + 1) * ohw]);
                    }
                }
            }
        });
    });
}

/// Depthwise forward (`groups == c_in == c_out`, stride 1) of `x`, or of `relu(x)`.
fn depthwise_forward_s1(p: &Conv2dParams, x: &[f32], w: &[f32], y: &mut [f32], relu: bool) {
    let pad = p.padding;
    let s = depthwise_geometry(
        p,
        (p.h + 2 * pad.0, p.w + 2 * pad.1),
        (p.out_h(), p.out_w()),
    );
    depthwise_planes(p, &s, (x, p.h, p.w), pad, w, y, relu, None);
}

/// Depthwise input gradient: the same kernel on `dy` padded by `d * (k - 1) - p` with the
/// flipped weights, masked by `x > 0` when `mask` gives `x`. Requires `d * (k - 1) >= p` in
/// both directions.
fn depthwise_backward_input_s1(
    p: &Conv2dParams,
    w: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    mask: Option<&[f32]>,
) {
    let (oh, ow) = (p.out_h(), p.out_w());
    let q = (
        p.dilation.0 * (p.kh - 1) - p.padding.0,
        p.dilation.1 * (p.kw - 1) - p.padding.1,
    );
    let kk = p.kh * p.kw;
    let wf: Vec<f32> = (0..p.c_in * kk)
        .map(|i| w[(i / kk) * kk + kk - 1 - i % kk])
        .collect();
    let s = depthwise_geometry(p, (oh + 2 * q.0, ow + 2 * q.1), (p.h, p.w));
    depthwise_planes(p, &s, (dy, oh, ow), q, &wf, dx, false, mask);
}

/// Depthwise weight gradient (input `x`, or `relu(x)`): images (in memory order) are spread
/// over threads, each adding into its own partial gradient; the partials are summed at the end.
fn depthwise_backward_weight_s1(
    p: &Conv2dParams,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    relu: bool,
) {
    let (oh, ow) = (p.out_h(), p.out_w());
    let (ph, pw) = p.padding;
    let (hp, wp) = (p.h + 2 * ph, p.w + 2 * pw);
    let (hw, ohw, kk) = (p.h * p.w, oh * ow, p.kh * p.kw);
    let s = depthwise_geometry(p, (hp, wp), (oh, ow));
    partial_weight_grads(p, dw, &|part, images| {
        with_scratch(hp * wp + SLACK, |xpad| {
            zero_padded(xpad);
            for b in images {
                for c in 0..p.c_in {
                    let i = b * p.c_in + c;
                    pad_plane_interior(&x[i * hw..(i + 1) * hw], p.h, p.w, ph, pw, xpad, relu);
                    let dwc = &mut part[c * kk..(c + 1) * kk];
                    // SAFETY: AVX-512F checked by `available`.
                    unsafe { dw_plane_grad(&s, xpad.as_ptr(), dy.as_ptr().add(i * ohw), dwc) };
                }
            }
        });
    });
}

// ------------------------------------------------------------------- depthwise, stride 1 or 2

/// Depthwise forward (`groups == c_in == c_out`, stride 1 or 2) of `x`, or of `relu(x)`
/// (applied while the input is staged).
pub(super) fn depthwise_forward(p: &Conv2dParams, x: &[f32], w: &[f32], y: &mut [f32], relu: bool) {
    if p.stride == (2, 2) {
        s2::forward(p, x, w, y, relu)
    } else {
        depthwise_forward_s1(p, x, w, y, relu)
    }
}

/// Depthwise input gradient (stride 1 with `d * (k - 1) >= p`, or stride 2), zeroed where
/// `mask` (the input of a ReLU in front of the convolution) is not positive, when given.
pub(super) fn depthwise_backward_input(
    p: &Conv2dParams,
    w: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    mask: Option<&[f32]>,
) {
    if p.stride == (2, 2) {
        s2::backward_input(p, w, dy, dx, mask)
    } else {
        depthwise_backward_input_s1(p, w, dy, dx, mask)
    }
}

/// ReLU's backward in place: `d = 0` where `x <= 0` (or NaN).
fn relu_mask(d: &mut [f32], x: &[f32]) {
    assert!(x.len() >= d.len());
    // SAFETY: AVX-512F is available wherever this module's kernels run; lengths checked.
    unsafe { relu_mask_avx512(d, x) }
}

/// # Safety
/// AVX-512F; `x` at least as long as `d`.
#[target_feature(enable = "avx512f")]
unsafe fn relu_mask_avx512(d: &mut [f32], x: &[f32]) {
    let (n, zero) = (d.len(), _mm512_setzero_ps());
    let (dp, xp) = (d.as_mut_ptr(), x.as_ptr());
    let mut i = 0;
    while i < n {
        let m = first_lanes(n - i);
        // SAFETY: AVX-512F (the caller's contract); loads and stores are masked to the `n - i`
        // floats left, and `x` is at least as long as `d`.
        unsafe {
            let xv = _mm512_maskz_loadu_ps(m, xp.add(i));
            let dv = _mm512_maskz_loadu_ps(m, dp.add(i));
            let pos = _mm512_mask_cmp_ps_mask::<_CMP_GT_OQ>(m, xv, zero);
            _mm512_mask_storeu_ps(dp.add(i), m, _mm512_maskz_mov_ps(pos, dv));
        }
        i += 16;
    }
}

/// Depthwise weight gradient (stride 1 or 2) for the input `x`, or `relu(x)`.
pub(super) fn depthwise_backward_weight(
    p: &Conv2dParams,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    relu: bool,
) {
    if p.stride == (2, 2) {
        s2::backward_weight(p, x, dy, dw, relu)
    } else {
        depthwise_backward_weight_s1(p, x, dy, dw, relu)
    }
}

/// Stride-2 depthwise kernels (the reduction cells' separable and dilated convolutions).
///
/// Each padded plane is stored "phase split": every padded row as its even columns followed by
/// its odd columns. Input column `2 ox + d kx` is then column `ox + d kx / 2` of phase
/// `d kx % 2`, so a tap reads 16 consecutive outputs' inputs with one vector load, as in the
/// stride-1 kernels.
mod s2 {
    use std::arch::x86_64::*;

    use super::super::Conv2dParams;
    use super::super::shared::{par_chunks_mut, partial_weight_grads};
    use crate::simd::first_lanes;
    use crate::workspace::with_scratch;

    /// Geometry of one phase-split plane.
    #[derive(Clone, Copy)]
    struct G {
        h: usize,
        w: usize,
        ph: usize,
        pw: usize,
        hp: usize,
        /// Floats per phase of one row.
        half: usize,
        oh: usize,
        ow: usize,
        kh: usize,
        kw: usize,
        dh: usize,
        dw: usize,
    }

    impl G {
        fn new(p: &Conv2dParams) -> G {
            let (hp, wp) = (p.h + 2 * p.padding.0, p.w + 2 * p.padding.1);
            G {
                h: p.h,
                w: p.w,
                ph: p.padding.0,
                pw: p.padding.1,
                hp,
                half: wp.div_ceil(2),
                oh: p.out_h(),
                ow: p.out_w(),
                kh: p.kh,
                kw: p.kw,
                dh: p.dilation.0,
                dw: p.dilation.1,
            }
        }
        /// Floats of one split plane.
        fn len(&self) -> usize {
            self.hp * 2 * self.half
        }
        /// Offset of tap `(ky, kx)` for output `(oy, 0)` in a split plane.
        #[inline(always)]
        fn tap(&self, oy: usize, ky: usize, kx: usize) -> usize {
            let (r, c) = (2 * oy + ky * self.dh, kx * self.dw);
            (r * 2 + c % 2) * self.half + c / 2
        }
    }

    /// Longest padded row [`split_avx512`] handles (rows are staged on the stack).
    const SPLIT_MAX: usize = 128;

    /// Writes the zero-padded, phase-split form of the `h x w` plane `x` (or of `relu(x)`)
    /// into `sp`.
    fn split(g: &G, x: &[f32], sp: &mut [f32], relu: bool) {
        if 2 * g.half <= SPLIT_MAX {
            assert!(x.len() >= g.h * g.w && sp.len() >= g.len());
            // SAFETY: AVX-512F is available wherever this module's kernels run; sizes checked.
            return unsafe { split_avx512(g, x, sp, relu) };
        }
        sp.fill(0.0);
        for iy in 0..g.h {
            let r = iy + g.ph;
            for ix in 0..g.w {
                let c = ix + g.pw;
                let v = x[iy * g.w + ix];
                sp[(r * 2 + c % 2) * g.half + c / 2] = if relu { v.max(0.0) } else { v };
            }
        }
    }

    /// [`split`] with AVX-512: each row is staged zero-padded on the stack, then its even and
    /// odd columns are separated 32 at a time with two permutes.
    ///
    /// # Safety
    /// AVX-512F; `x` holds `h * w` floats, `sp` `g.len()`, `2 * half <= SPLIT_MAX`.
    #[target_feature(enable = "avx512f")]
    unsafe fn split_avx512(g: &G, x: &[f32], sp: &mut [f32], relu: bool) {
        // the data rows below are written whole (their padding columns are the staged row's
        // zeros); only the padding rows need zeroing
        let row_len = 2 * g.half;
        sp[..g.ph * row_len].fill(0.0);
        sp[(g.ph + g.h) * row_len..g.len()].fill(0.0);
        // the padded row, rounded up to whole pairs of vectors (zeros past the data stay zero)
        let mut row = [0.0f32; SPLIT_MAX + 32];
        let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
        for iy in 0..g.h {
            let src = &x[iy * g.w..(iy + 1) * g.w];
            let dst = &mut row[g.pw..g.pw + g.w];
            if relu {
                dst.iter_mut().zip(src).for_each(|(d, &v)| *d = v.max(0.0));
            } else {
                dst.copy_from_slice(src);
            }
            let r = iy + g.ph;
            let (e0, o0) = (r * 2 * g.half, (r * 2 + 1) * g.half);
            let mut c = 0;
            while c < g.half {
                let m = first_lanes(g.half - c);
                // SAFETY: `row` holds 2 * c + 32 <= SPLIT_MAX + 32 floats; the stores are
                // masked to the `half - c` columns left in each phase of row r.
                unsafe {
                    let a = _mm512_loadu_ps(row.as_ptr().add(2 * c));
                    let b = _mm512_loadu_ps(row.as_ptr().add(2 * c + 16));
                    let ev = _mm512_permutex2var_ps(a, even, b);
                    let od = _mm512_permutex2var_ps(a, odd, b);
                    _mm512_mask_storeu_ps(sp.as_mut_ptr().add(e0 + c), m, ev);
                    _mm512_mask_storeu_ps(sp.as_mut_ptr().add(o0 + c), m, od);
                }
                c += 16;
            }
        }
    }

    /// Reads the `h x w` plane back out of a phase-split padded plane into `x`, zeroed where
    /// `mask` (a plane of `h x w`) is not positive (ReLU's backward) when given.
    fn unsplit_masked(g: &G, sp: &[f32], x: &mut [f32], mask: Option<&[f32]>) {
        if 2 * g.half <= SPLIT_MAX {
            assert!(x.len() >= g.h * g.w && sp.len() >= g.len());
            assert!(mask.is_none_or(|m| m.len() >= g.h * g.w));
            // SAFETY: AVX-512F is available wherever this module's kernels run; sizes checked.
            return unsafe { unsplit_avx512(g, sp, x, mask) };
        }
        unsplit(g, sp, x);
        if let Some(m) = mask {
            super::relu_mask(&mut x[..g.h * g.w], m);
        }
    }

    /// [`unsplit_masked`] with AVX-512: the two phases of each row are interleaved 32 columns
    /// at a time with two permutes into a row staged on the stack (the inverse of
    /// [`split_avx512`]), whose `w` columns are then copied out.
    ///
    /// # Safety
    /// AVX-512F; `sp` holds `g.len()` floats, `x` (and `mask`) `h * w`, `2 * half <= SPLIT_MAX`.
    #[target_feature(enable = "avx512f")]
    unsafe fn unsplit_avx512(g: &G, sp: &[f32], x: &mut [f32], mask: Option<&[f32]>) {
        let mut row = [0.0f32; SPLIT_MAX + 32];
        let lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
        let hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
        let zero = _mm512_setzero_ps();
        for iy in 0..g.h {
            let r = iy + g.ph;
            let (e0, o0) = (r * 2 * g.half, (r * 2 + 1) * g.half);
            let mut c = 0;
            while c < g.half {
                let m = super::first_lanes(g.half - c);
                // SAFETY: loads masked to the `half - c` columns left in each phase of row r;
                // `row` holds 2 * c + 32 <= SPLIT_MAX + 32 floats.
                unsafe {
                    let ev = _mm512_maskz_loadu_ps(m, sp.as_ptr().add(e0 + c));
                    let od = _mm512_maskz_loadu_ps(m, sp.as_ptr().add(o0 + c));
                    _mm512_storeu_ps(
                        row.as_mut_ptr().add(2 * c),
                        _mm512_permutex2var_ps(ev, lo, od),
                    );
                    _mm512_storeu_ps(
                        row.as_mut_ptr().add(2 * c + 16),
                        _mm512_permutex2var_ps(ev, hi, od),
                    );
                }
                c += 16;
            }
            let mut ix = 0;
            while ix < g.w {
                let m = super::first_lanes(g.w - ix);
                let o = iy * g.w + ix;
                // SAFETY: masked to the `w - ix` columns left in row iy of x (and mask); the
                // staged row holds `pw + w <= 2 * half` columns.
                unsafe {
                    let mut v = _mm512_maskz_loadu_ps(m, row.as_ptr().add(g.pw + ix));
                    if let Some(mk) = mask {
                        let xv = _mm512_maskz_loadu_ps(m, mk.as_ptr().add(o));
                        let pos = _mm512_mask_cmp_ps_mask::<_CMP_GT_OQ>(m, xv, zero);
                        v = _mm512_maskz_mov_ps(pos, v);
                    }
                    _mm512_mask_storeu_ps(x.as_mut_ptr().add(o), m, v);
                }
                ix += 16;
            }
        }
    }

    /// Reads the `h x w` plane back out of a phase-split padded plane.
    fn unsplit(g: &G, sp: &[f32], x: &mut [f32]) {
        for iy in 0..g.h {
            let r = iy + g.ph;
            for ix in 0..g.w {
                let c = ix + g.pw;
                x[iy * g.w + ix] = sp[(r * 2 + c % 2) * g.half + c / 2];
            }
        }
    }

    /// Forward of one plane: four output rows at a time, 16 columns per vector.
    ///
    /// # Safety
    /// AVX-512F; `sp` a split plane of `g`, `w` `kh * kw`, `y` `oh * ow` floats.
    #[target_feature(enable = "avx512f")]
    unsafe fn plane_forward(g: &G, sp: &[f32], w: &[f32], y: &mut [f32]) {
        debug_assert!(sp.len() >= g.len() && y.len() >= g.oh * g.ow);
        let mut oy = 0;
        while oy < g.oh {
            let rows = (g.oh - oy).min(4);
            let mut ox = 0;
            while ox < g.ow {
                let m = first_lanes(g.ow - ox);
                let mut acc = [_mm512_setzero_ps(); 4];
                // SAFETY: masked lanes are the in-range outputs, whose taps lie inside the
                // split plane (`tap(oy, ky, kx) + ox + lane < len`).
                unsafe {
                    for ky in 0..g.kh {
                        for kx in 0..g.kw {
                            let wv = _mm512_set1_ps(w[ky * g.kw + kx]);
                            for (r, a) in acc.iter_mut().enumerate().take(rows) {
                                let src = sp.as_ptr().add(g.tap(oy + r, ky, kx) + ox);
                                *a = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, src), wv, *a);
                            }
                        }
                    }
                    for (r, a) in acc.iter().enumerate().take(rows) {
                        _mm512_mask_storeu_ps(y.as_mut_ptr().add((oy + r) * g.ow + ox), m, *a);
                    }
                }
                ox += 16;
            }
            oy += rows;
        }
    }

    /// Input gradient of one plane into the split plane `dsp`, gathered: element `(r, phase,
    /// C)` (padded row `r`, column `2 C + phase`) sums `w[ky, kx] * dy[oy, ox]` over the taps
    /// that reach it (`2 oy + ky dh = r`, `2 ox + kx dw = 2 C + phase`), each output vector
    /// written once. (Adding every tap's `w * dy` into the plane instead, as a
    /// read-modify-write per tap, measured 2-5x slower: overlapping unaligned stores and loads
    /// defeat store forwarding.) Both column phases of a row are summed side by side.
    ///
    /// `dyp` is `dy` with each row at offset `bmax = (kw - 1) dw / 2` of a row of `l` floats,
    /// zeros around it, so shifted loads need no masks.
    ///
    /// # Safety
    /// AVX-512F; `dsp` holds `g.len()` floats, `w` `kh * kw`, `dyp` `oh * l` with
    /// `l >= bmax + half` rounded up to 16.
    #[target_feature(enable = "avx512f")]
    unsafe fn plane_backward_input(
        g: &G,
        w: &[f32],
        (dyp, l, bmax): (&[f32], usize, usize),
        dsp: &mut [f32],
    ) {
        debug_assert!(dsp.len() >= g.len() && dyp.len() >= g.oh * l);
        debug_assert!(l >= bmax + g.half.next_multiple_of(16));
        for r in 0..g.hp {
            let (even, odd) = (r * 2 * g.half, (r * 2 + 1) * g.half);
            let mut c0 = 0;
            while c0 < g.half {
                let m = first_lanes(g.half - c0);
                let (mut a0, mut a1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
                for ky in 0..g.kh {
                    let ry = ky * g.dh;
                    if ry > r || !(r - ry).is_multiple_of(2) || (r - ry) / 2 >= g.oh {
                        continue;
                    }
                    // SAFETY: row (r - ry) / 2 < oh of dyp; the loads start at most `bmax`
                    // floats before column c0 + bmax and end inside the row (see above).
                    unsafe {
                        let drow = dyp.as_ptr().add((r - ry) / 2 * l + bmax + c0);
                        for kx in 0..g.kw {
                            let cx = kx * g.dw;
                            let v = _mm512_loadu_ps(drow.sub(cx / 2));
                            let wv = _mm512_set1_ps(w[ky * g.kw + kx]);
                            if cx.is_multiple_of(2) {
                                a0 = _mm512_fmadd_ps(v, wv, a0);
                            } else {
                                a1 = _mm512_fmadd_ps(v, wv, a1);
                            }
                        }
                    }
                }
                // SAFETY: masked to the `half - c0` columns left in each phase of row r.
                unsafe {
                    _mm512_mask_storeu_ps(dsp.as_mut_ptr().add(even + c0), m, a0);
                    _mm512_mask_storeu_ps(dsp.as_mut_ptr().add(odd + c0), m, a1);
                }
                c0 += 16;
            }
        }
    }

    /// Adds the weight gradient of one plane into `dwc` (`kh * kw`).
    ///
    /// # Safety
    /// As [`plane_forward`], with `sp` the split input plane and `dy` `oh * ow` floats.
    #[target_feature(enable = "avx512f")]
    unsafe fn plane_backward_weight(g: &G, sp: &[f32], dy: &[f32], dwc: &mut [f32]) {
        debug_assert!(sp.len() >= g.len() && dy.len() >= g.oh * g.ow);
        for ky in 0..g.kh {
            let mut kx0 = 0;
            while kx0 < g.kw {
                let nk = (g.kw - kx0).min(5);
                let mut acc = [_mm512_setzero_ps(); 5];
                for oy in 0..g.oh {
                    let mut ox = 0;
                    while ox < g.ow {
                        let m = first_lanes(g.ow - ox);
                        // SAFETY: as in `plane_forward`.
                        unsafe {
                            let gv = _mm512_maskz_loadu_ps(m, dy.as_ptr().add(oy * g.ow + ox));
                            for (j, a) in acc.iter_mut().enumerate().take(nk) {
                                let src = sp.as_ptr().add(g.tap(oy, ky, kx0 + j) + ox);
                                *a = _mm512_fmadd_ps(gv, _mm512_maskz_loadu_ps(m, src), *a);
                            }
                        }
                        ox += 16;
                    }
                }
                for (j, a) in acc.iter().enumerate().take(nk) {
                    dwc[ky * g.kw + kx0 + j] += _mm512_reduce_add_ps(*a);
                }
                kx0 += nk;
            }
        }
    }

    pub(in super::super) fn forward(
        p: &Conv2dParams,
        x: &[f32],
        w: &[f32],
        y: &mut [f32],
        relu: bool,
    ) {
        let g = G::new(p);
        let (hw, ohw, kk) = (p.h * p.w, g.oh * g.ow, p.kh * p.kw);
        par_chunks_mut(p, y, p.c_in * ohw, &|b, yb| {
            with_scratch(g.len(), |sp| {
                for c in 0..p.c_in {
                    let i = b * p.c_in + c;
                    split(&g, &x[i * hw..(i + 1) * hw], sp, relu);
                    let yi = &mut yb[c * ohw..(c + 1) * ohw];
                    // SAFETY: AVX-512F checked by `available`.
                    unsafe { plane_forward(&g, sp, &w[c * kk..(c + 1) * kk], yi) };
                }
            });
        });
    }

    pub(in super::super) fn backward_input(
        p: &Conv2dParams,
        w: &[f32],
        dy: &[f32],
        dx: &mut [f32],
        mask: Option<&[f32]>,
    ) {
        let g = G::new(p);
        let (hw, ohw, kk) = (p.h * p.w, g.oh * g.ow, p.kh * p.kw);
        // dy rows staged at offset bmax of rows of l floats (see `plane_backward_input`)
        let bmax = (g.kw - 1) * g.dw / 2;
        let l = bmax + g.half.next_multiple_of(16);
        par_chunks_mut(p, dx, p.c_in * hw, &|b, dxb| {
            with_scratch(g.len() + g.oh * l, |buf| {
                let (dsp, dyp) = buf.split_at_mut(g.len());
                // the margins are zeroed once; each plane overwrites only its own columns
                dyp.fill(0.0);
                for c in 0..p.c_in {
                    let i = b * p.c_in + c;
                    let dyi = &dy[i * ohw..][..ohw];
                    for oy in 0..g.oh {
                        dyp[oy * l + bmax..][..g.ow].copy_from_slice(&dyi[oy * g.ow..][..g.ow]);
                    }
                    // SAFETY: AVX-512F checked by `available`.
                    unsafe {
                        plane_backward_input(&g, &w[c * kk..(c + 1) * kk], (dyp, l, bmax), dsp)
                    };
                    let dxi = &mut dxb[c * hw..(c + 1) * hw];
                    unsplit_masked(&g, dsp, dxi, mask.map(|m| &m[i * hw..(i + 1) * hw]));
                }
            });
        });
    }

    pub(in super::super) fn backward_weight(
        p: &Conv2dParams,
        x: &[f32],
        dy: &[f32],
        dw: &mut [f32],
        relu: bool,
    ) {
        let g = G::new(p);
        let (hw, ohw, kk) = (p.h * p.w, g.oh * g.ow, p.kh * p.kw);
        partial_weight_grads(p, dw, &|part, images| {
            with_scratch(g.len(), |sp| {
                for b in images {
                    for c in 0..p.c_in {
                        let i = b * p.c_in + c;
                        split(&g, &x[i * hw..(i + 1) * hw], sp, relu);
                        let dwc = &mut part[c * kk..(c + 1) * kk];
                        // SAFETY: AVX-512F checked by `available`.
                        unsafe { plane_backward_weight(&g, sp, &dy[i * ohw..][..ohw], dwc) };
                    }
                }
            });
        });
    }
}
