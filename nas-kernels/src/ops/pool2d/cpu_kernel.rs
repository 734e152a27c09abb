//! CPU pooling kernels. Shapes validated by [`crate::Cpu`].
//!
//! The fast path ([`rows`]) copies each plane into a padded buffer once and then works a whole
//! output row at a time in loops that the compiler vectorises: the window is separable (a
//! vertical pass over `kh` rows, then a horizontal pass over `kw` columns), and max pooling's
//! arg-max is kept per lane with compares and blends. Strides above 1 compute the stride-1 row
//! and keep every `stride`-th value. The window-by-window loops ([`forward_planes`],
//! [`backward_planes`]) are the reference the tests hold the fast path to.

use super::{Pool2dParams, PoolKind};
use crate::threads::parallel_chunks_mut;
use crate::workspace::with_scratch;

/// Index range `[lo, hi)` of in-bounds window taps for output position `o`.
#[inline(always)]
fn taps(o: usize, stride: usize, pad: usize, k: usize, size: usize) -> (usize, usize) {
    let start = (o * stride) as isize - pad as isize;
    let lo = start.max(0) as usize;
    let hi = ((start + k as isize).min(size as isize)).max(0) as usize;
    (lo, hi)
}

/// Runs `f(b, image_b)` for every image `b` of `out` (images of `len` elements), over threads
/// when the input is large.
fn per_image(
    p: &Pool2dParams,
    out: &mut [f32],
    len: usize,
    f: &(dyn Fn(usize, &mut [f32]) + Sync),
) {
    if threaded(p) {
        parallel_chunks_mut(out, len, f);
    } else {
        out.chunks_mut(len).enumerate().for_each(|(b, o)| f(b, o));
    }
}

/// Whether a pooling runs on threads (one task per image) or on the calling thread (then all
/// planes in one call: one scratch buffer, its padding filled once).
fn threaded(p: &Pool2dParams) -> bool {
    p.x_len() >= 1 << 16
}

/// Forward pooling.
pub(crate) fn forward(p: &Pool2dParams, x: &[f32], y: &mut [f32]) {
    if !threaded(p) {
        return rows::forward_planes(p, p.n * p.c, x, y);
    }
    let yl = p.c * p.out_h() * p.out_w();
    let xl = p.c * p.h * p.w;
    per_image(p, y, yl, &|b, yb| {
        rows::forward_planes(p, p.c, &x[b * xl..(b + 1) * xl], yb)
    });
}

/// Backward pooling: `dx` (overwritten) from `dy`; max recomputes the arg-max from `x`.
pub(crate) fn backward(p: &Pool2dParams, x: &[f32], dy: &[f32], dx: &mut [f32]) {
    if !threaded(p) {
        return rows::backward_planes(p, p.n * p.c, x, dy, dx);
    }
    let yl = p.c * p.out_h() * p.out_w();
    let xl = p.c * p.h * p.w;
    per_image(p, dx, xl, &|b, dxb| {
        // Average pooling reads no input values (`x` may be empty then).
        let xb = if x.is_empty() {
            x
        } else {
            &x[b * xl..(b + 1) * xl]
        };
        let gb = &dy[b * yl..(b + 1) * yl];
        rows::backward_planes(p, p.c, xb, gb, dxb)
    });
}

/// Forward pooling of `planes` consecutive channel planes, window by window.
#[cfg(test)]
pub(crate) fn forward_planes(p: &Pool2dParams, planes: usize, x: &[f32], y: &mut [f32]) {
    let (oh, ow) = (p.out_h(), p.out_w());
    let (kh, kw) = p.kernel;
    for bc in 0..planes {
        let xp = &x[bc * p.h * p.w..(bc + 1) * p.h * p.w];
        let yp = &mut y[bc * oh * ow..(bc + 1) * oh * ow];
        for oy in 0..oh {
            let (y0, y1) = taps(oy, p.stride.0, p.padding.0, kh, p.h);
            for ox in 0..ow {
                let (x0, x1) = taps(ox, p.stride.1, p.padding.1, kw, p.w);
                yp[oy * ow + ox] = match p.kind {
                    PoolKind::Max => {
                        let mut m = f32::NEG_INFINITY;
                        for iy in y0..y1 {
                            for &v in &xp[iy * p.w + x0..iy * p.w + x1] {
                                m = m.max(v);
                            }
                        }
                        m
                    }
                    PoolKind::Avg { count_include_pad } => {
                        let mut s = 0.0f32;
                        for iy in y0..y1 {
                            for &v in &xp[iy * p.w + x0..iy * p.w + x1] {
                                s += v;
                            }
                        }
                        let cnt = if count_include_pad {
                            kh * kw
                        } else {
                            (y1 - y0) * (x1 - x0)
                        };
                        s / cnt as f32
                    }
                };
            }
        }
    }
}

/// Backward pooling of `planes` consecutive channel planes, window by window.
#[cfg(test)]
pub(crate) fn backward_planes(
    p: &Pool2dParams,
    planes: usize,
    x: &[f32],
    dy: &[f32],
    dx: &mut [f32],
) {
    let (oh, ow) = (p.out_h(), p.out_w());
    let (kh, kw) = p.kernel;
    dx.fill(0.0);
    for bc in 0..planes {
        let xp = &x[bc * p.h * p.w..(bc + 1) * p.h * p.w];
        let dxp = &mut dx[bc * p.h * p.w..(bc + 1) * p.h * p.w];
        let gp = &dy[bc * oh * ow..(bc + 1) * oh * ow];
        for oy in 0..oh {
            let (y0, y1) = taps(oy, p.stride.0, p.padding.0, kh, p.h);
            for ox in 0..ow {
                let (x0, x1) = taps(ox, p.stride.1, p.padding.1, kw, p.w);
                let g = gp[oy * ow + ox];
                match p.kind {
                    PoolKind::Max => {
                        let mut m = f32::NEG_INFINITY;
                        let mut at = y0 * p.w + x0;
                        for iy in y0..y1 {
                            for ix in x0..x1 {
                                let v = xp[iy * p.w + ix];
                                if v > m {
                                    m = v;
                                    at = iy * p.w + ix;
                                }
                            }
                        }
                        dxp[at] += g;
                    }
                    PoolKind::Avg { count_include_pad } => {
                        let cnt = if count_include_pad {
                            kh * kw
                        } else {
                            (y1 - y0) * (x1 - x0)
                        };
                        let g = g / cnt as f32;
                        for iy in y0..y1 {
                            for d in &mut dxp[iy * p.w + x0..iy * p.w + x1] {
                                *d += g;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Global average pooling: `y[b, c] = mean(x[b, c, :])`.
pub(crate) fn global_avg(hw: usize, x: &[f32], y: &mut [f32]) {
    for (i, v) in y.iter_mut().enumerate() {
        let s: f64 = x[i * hw..(i + 1) * hw].iter().map(|&v| v as f64).sum();
        *v = (s / hw as f64) as f32;
    }
}

/// Backward of global average pooling.
pub(crate) fn global_avg_backward(hw: usize, dy: &[f32], dx: &mut [f32]) {
    for (i, &g) in dy.iter().enumerate() {
        dx[i * hw..(i + 1) * hw].fill(g / hw as f32);
    }
}

/// Row-at-a-time pooling over a padded copy of each plane (see the module docs).
pub(crate) mod rows {
    use super::{Pool2dParams, PoolKind, with_scratch};
    use crate::simd::avx512_dispatch;

    /// Padded geometry: padded size, stride-1 output width.
    struct Geo {
        hp: usize,
        wp: usize,
        ow1: usize,
        kh: usize,
        kw: usize,
    }

    fn geo(p: &Pool2dParams) -> Geo {
        let (hp, wp) = (p.h + 2 * p.padding.0, p.w + 2 * p.padding.1);
        Geo {
            hp,
            wp,
            ow1: wp + 1 - p.kernel.1,
            kh: p.kernel.0,
            kw: p.kernel.1,
        }
    }

    /// Copies a plane into the middle of `xpad`, whose border already holds the fill value
    /// (`xpad.fill(fill)` once before the first plane: planes only overwrite the middle).
    fn pad(p: &Pool2dParams, g: &Geo, x: &[f32], xpad: &mut [f32]) {
        let (ph, pw) = p.padding;
        for iy in 0..p.h {
            copy_row(
                &mut xpad[(iy + ph) * g.wp + pw..][..p.w],
                &x[iy * p.w..(iy + 1) * p.w],
            );
        }
    }

    /// `dst.copy_from_slice(src)` for the short rows of these planes (8 to 34 floats) as
    /// inline vector moves: `copy_from_slice` calls `memcpy`, whose per-call cost dominated.
    #[inline(always)]
    fn copy_row(dst: &mut [f32], src: &[f32]) {
        assert_eq!(dst.len(), src.len());
        let (d16, dt) = dst.as_chunks_mut::<16>();
        let (s16, st) = src.as_chunks::<16>();
        for (d, s) in d16.iter_mut().zip(s16) {
            *d = *s;
        }
        let (d4, dt) = dt.as_chunks_mut::<4>();
        let (s4, st) = st.as_chunks::<4>();
        for (d, s) in d4.iter_mut().zip(s4) {
            *d = *s;
        }
        for (d, s) in dt.iter_mut().zip(st) {
            *d = *s;
        }
    }

    /// Average pooling's division of output row `oy` (values at `v[ox * step]`, `ox < ow`) by
    /// its window size: all cells, or (without the padded cells) the in-bounds rows times
    /// `cols[ox]`. Nothing for max pooling. The row form's forward and backward share it.
    fn average_row(p: &Pool2dParams, g: &Geo, oy: usize, cols: &[f32], v: &mut [f32], step: usize) {
        let PoolKind::Avg { count_include_pad } = p.kind else {
            return;
        };
        let ow = p.out_w();
        if count_include_pad {
            let inv = 1.0 / (g.kh * g.kw) as f32;
            (0..ow).for_each(|ox| v[ox * step] *= inv);
        } else {
            let ny = span(oy, p.stride.0, p.padding.0, g.kh, p.h) as f32;
            for (ox, &nx) in cols[..ow].iter().enumerate() {
                v[ox * step] /= ny * nx;
            }
        }
    }

    /// Copies the `h x w` interior of a padded plane out into `x` (the inverse of [`pad`]).
    fn unpad(p: &Pool2dParams, g: &Geo, xpad: &[f32], x: &mut [f32]) {
        let (ph, pw) = p.padding;
        for iy in 0..p.h {
            copy_row(
                &mut x[iy * p.w..(iy + 1) * p.w],
                &xpad[(iy + ph) * g.wp + pw..][..p.w],
            );
        }
    }

    /// Number of in-bounds taps along one axis for output `o`.
    #[inline]
    fn span(o: usize, stride: usize, pad: usize, k: usize, size: usize) -> usize {
        let (lo, hi) = super::taps(o, stride, pad, k, size);
        hi - lo
    }

    /// In-bounds column count per output column (average pooling without the padded cells
    /// divides by `rows * columns` in bounds).
    fn column_counts(p: &Pool2dParams, ow: usize, out: &mut [f32]) {
        for (ox, c) in out[..ow].iter_mut().enumerate() {
            *c = span(ox, p.stride.1, p.padding.1, p.kernel.1, p.w) as f32;
        }
    }

    /// Forward pooling of `planes` consecutive channel planes (the loops compiled for AVX-512
    /// when the CPU has it): stride 1 over the flat padded plane, other strides row by row.
    pub(crate) fn forward_planes(p: &Pool2dParams, planes: usize, x: &[f32], y: &mut [f32]) {
        if p.stride == (1, 1) {
            forward_flat_planes(p, planes, x, y)
        } else {
            forward_row_planes(p, planes, x, y)
        }
    }

    avx512_dispatch! {
        /// Stride-1 forward pooling over flat padded planes.
        fn forward_flat_planes(p: &Pool2dParams, planes: usize, x: &[f32], y: &mut [f32])
            = forward_flat;
    }

    avx512_dispatch! {
        /// Forward pooling row by row (any stride).
        fn forward_row_planes(p: &Pool2dParams, planes: usize, x: &[f32], y: &mut [f32])
            = forward_impl;
    }

    /// Average pooling's divisor per stride-1 output: the window size, or (without the padded
    /// cells) the in-bounds cells.
    fn stride1_counts(p: &Pool2dParams, g: &Geo, count_include_pad: bool, cnt: &mut [f32]) {
        let (oh, ow) = (p.out_h(), p.out_w());
        for oy in 0..oh {
            let ny = span(oy, 1, p.padding.0, g.kh, p.h);
            for ox in 0..ow {
                let nx = span(ox, 1, p.padding.1, g.kw, p.w);
                cnt[oy * ow + ox] = if count_include_pad {
                    (g.kh * g.kw) as f32
                } else {
                    (ny * nx) as f32
                };
            }
        }
    }

    /// Stride-1 average pooling's backward over flat padded planes, the transpose of
    /// [`forward_flat`]: the output gradient divided by the counts is laid out on the padded
    /// width (the `kw - 1` columns past each row are zero), scattered horizontally in one loop,
    /// then vertically in one loop per window row. The sums run in the order of the row form.
    #[inline(always)]
    fn backward_avg_flat(p: &Pool2dParams, planes: usize, dy: &[f32], dx: &mut [f32]) {
        let count_include_pad = matches!(
            p.kind,
            PoolKind::Avg {
                count_include_pad: true
            }
        );
        let g = geo(p);
        let (oh, ow) = (p.out_h(), p.out_w());
        let nv = oh * g.wp;
        let plane = g.hp * g.wp;
        with_scratch(plane + 2 * nv + oh * ow, |buf| {
            let (dxpad, rest) = buf.split_at_mut(plane);
            let (gf, rest) = rest.split_at_mut(nv);
            let (v, rest) = rest.split_at_mut(nv);
            let cnt = &mut rest[..oh * ow];
            stride1_counts(p, &g, count_include_pad, cnt);
            // the wrap-around columns stay zero
            gf.fill(0.0);
            for bc in 0..planes {
                let gp = &dy[bc * oh * ow..(bc + 1) * oh * ow];
                for oy in 0..oh {
                    let row = oy * ow..(oy + 1) * ow;
                    let gr = &mut gf[oy * g.wp..oy * g.wp + ow];
                    for ((d, &gv), &c) in gr.iter_mut().zip(&gp[row.clone()]).zip(&cnt[row]) {
                        *d = gv / c;
                    }
                }
                v.fill(0.0);
                for kx in 0..g.kw {
                    v[kx..]
                        .iter_mut()
                        .zip(gf.iter())
                        .for_each(|(a, &b)| *a += b);
                }
                dxpad.fill(0.0);
                for ky in (0..g.kh).rev() {
                    dxpad[ky * g.wp..ky * g.wp + nv]
                        .iter_mut()
                        .zip(v.iter())
                        .for_each(|(a, &b)| *a += b);
                }
                unpad(p, &g, dxpad, &mut dx[bc * p.h * p.w..(bc + 1) * p.h * p.w]);
            }
        });
    }

    /// Stride-1 forward over the flat padded plane: the vertical pass is one loop over `oh`
    /// padded rows at once and the horizontal pass one loop over the result, so the loops run
    /// over hundreds of floats instead of one short row each (the `wp - ow` columns that wrap
    /// around a row end are computed and dropped). Same sums in the same order as the row form.
    #[inline(always)]
    fn forward_flat(p: &Pool2dParams, planes: usize, x: &[f32], y: &mut [f32]) {
        let g = geo(p);
        let (oh, ow) = (p.out_h(), p.out_w());
        let max = matches!(p.kind, PoolKind::Max);
        let fill = if max { f32::NEG_INFINITY } else { 0.0 };
        let nv = oh * g.wp;
        let no = nv + 1 - g.kw;
        with_scratch(g.hp * g.wp + 2 * nv + oh * ow, |buf| {
            let (xpad, rest) = buf.split_at_mut(g.hp * g.wp);
            let (v, rest) = rest.split_at_mut(nv);
            let (o, rest) = rest.split_at_mut(nv);
            let cnt = &mut rest[..oh * ow];
            if let PoolKind::Avg { count_include_pad } = p.kind {
                stride1_counts(p, &g, count_include_pad, cnt);
            }
            xpad.fill(fill);
            for bc in 0..planes {
                pad(p, &g, &x[bc * p.h * p.w..(bc + 1) * p.h * p.w], xpad);
                v.copy_from_slice(&xpad[..nv]);
                for ky in 1..g.kh {
                    let rows = &xpad[ky * g.wp..ky * g.wp + nv];
                    if max {
                        v.iter_mut().zip(rows).for_each(|(a, &b)| *a = a.max(b));
                    } else {
                        v.iter_mut().zip(rows).for_each(|(a, &b)| *a += b);
                    }
                }
                let o = &mut o[..no];
                o.copy_from_slice(&v[..no]);
                for kx in 1..g.kw {
                    let col = &v[kx..kx + no];
                    if max {
                        o.iter_mut().zip(col).for_each(|(a, &b)| *a = a.max(b));
                    } else {
                        o.iter_mut().zip(col).for_each(|(a, &b)| *a += b);
                    }
                }
                let yp = &mut y[bc * oh * ow..(bc + 1) * oh * ow];
                for oy in 0..oh {
                    let (yr, or) = (&mut yp[oy * ow..(oy + 1) * ow], &o[oy * g.wp..][..ow]);
                    if max {
                        copy_row(yr, or);
                    } else {
                        let cr = &cnt[oy * ow..(oy + 1) * ow];
                        for ((yv, &ov), &c) in yr.iter_mut().zip(or).zip(cr) {
                            *yv = ov / c;
                        }
                    }
                }
            }
        });
    }

    #[inline(always)]
    fn forward_impl(p: &Pool2dParams, planes: usize, x: &[f32], y: &mut [f32]) {
        let g = geo(p);
        let (oh, ow) = (p.out_h(), p.out_w());
        let (sy, sx) = p.stride;
        let max = matches!(p.kind, PoolKind::Max);
        let fill = if max { f32::NEG_INFINITY } else { 0.0 };
        with_scratch(g.hp * g.wp + g.wp + g.ow1 + ow, |buf| {
            let (xpad, rest) = buf.split_at_mut(g.hp * g.wp);
            let (v, rest) = rest.split_at_mut(g.wp);
            let (out1, cols) = rest.split_at_mut(g.ow1);
            column_counts(p, ow, cols);
            xpad.fill(fill);
            for bc in 0..planes {
                pad(p, &g, &x[bc * p.h * p.w..(bc + 1) * p.h * p.w], xpad);
                let yp = &mut y[bc * oh * ow..(bc + 1) * oh * ow];
                for oy in 0..oh {
                    // vertical pass over the window's rows, then horizontal over its columns
                    let r = oy * sy;
                    copy_row(v, &xpad[r * g.wp..(r + 1) * g.wp]);
                    for ky in 1..g.kh {
                        let row = &xpad[(r + ky) * g.wp..(r + ky + 1) * g.wp];
                        if max {
                            v.iter_mut().zip(row).for_each(|(a, &b)| *a = a.max(b));
                        } else {
                            v.iter_mut().zip(row).for_each(|(a, &b)| *a += b);
                        }
                    }
                    copy_row(out1, &v[..g.ow1]);
                    for kx in 1..g.kw {
                        let col = &v[kx..kx + g.ow1];
                        if max {
                            out1.iter_mut().zip(col).for_each(|(a, &b)| *a = a.max(b));
                        } else {
                            out1.iter_mut().zip(col).for_each(|(a, &b)| *a += b);
                        }
                    }
                    let yr = &mut yp[oy * ow..(oy + 1) * ow];
                    if sx == 1 {
                        copy_row(yr, &out1[..ow]);
                    } else {
                        for (ox, o) in yr.iter_mut().enumerate() {
                            *o = out1[ox * sx];
                        }
                    }
                    average_row(p, &g, oy, cols, yr, 1);
                }
            }
        });
    }

    /// Backward pooling of `planes` consecutive channel planes (`dx` overwritten). Max
    /// pooling sends each output's gradient to the first largest input of its window in
    /// row-major order, as the window-by-window reference does.
    pub(crate) fn backward_planes(
        p: &Pool2dParams,
        planes: usize,
        x: &[f32],
        dy: &[f32],
        dx: &mut [f32],
    ) {
        match (p.stride, p.kind) {
            ((1, 1), PoolKind::Avg { .. }) => backward_avg_flat_planes(p, planes, dy, dx),
            #[cfg(target_arch = "x86_64")]
            ((1, 1), PoolKind::Max) if crate::simd::avx512() => {
                backward_max_flat(p, planes, x, dy, dx)
            }
            _ => backward_row_planes(p, planes, x, dy, dx),
        }
    }

    /// Stride-1 max pooling's backward over flat padded planes with AVX-512. First the
    /// arg-max tap of every window, for all `oh * wp` positions of the plane at once (each lane
    /// starts from its window's first in-bounds tap; the wrap-around positions get a zero
    /// gradient). Then every padded input cell gathers the gradients of the windows that
    /// picked it, in registers: one store per cell instead of a read-modify-write per tap
    /// (whose overlapping stores stall store forwarding). The additions run in the row form's
    /// order (window rows from the bottom, columns from the left).
    #[cfg(target_arch = "x86_64")]
    fn backward_max_flat(p: &Pool2dParams, planes: usize, x: &[f32], dy: &[f32], dx: &mut [f32]) {
        let g = geo(p);
        let (oh, ow) = (p.out_h(), p.out_w());
        let (ph, pw) = p.padding;
        let no = oh * g.wp + 1 - g.kw;
        // margin before and after the per-output arrays, so gathers need no bounds checks
        let margin = (g.kh - 1) * g.wp + g.kw - 1 + 16;
        let span = margin + no + margin;
        let plane = g.hp * g.wp;
        with_scratch(plane + 2 * plane + 3 * span, |buf| {
            let (xpad, rest) = buf.split_at_mut(plane);
            let (dxpad, rest) = rest.split_at_mut(2 * plane);
            let (first, rest) = rest.split_at_mut(span);
            let (at, rest) = rest.split_at_mut(span);
            let gf = &mut rest[..span];
            for (i, f) in first[margin..margin + no].iter_mut().enumerate() {
                let (oy, ox) = (i / g.wp, i % g.wp);
                *f = (ph.saturating_sub(oy) * g.kw + pw.saturating_sub(ox)) as f32;
            }
            // no tap index is -1: the margins never match
            at.fill(-1.0);
            gf.fill(0.0);
            xpad.fill(f32::NEG_INFINITY);
            for bc in 0..planes {
                let xp = &x[bc * p.h * p.w..(bc + 1) * p.h * p.w];
                pad(p, &g, xp, xpad);
                let gp = &dy[bc * oh * ow..(bc + 1) * oh * ow];
                for oy in 0..oh {
                    let o = margin + oy * g.wp;
                    copy_row(&mut gf[o..o + ow], &gp[oy * ow..(oy + 1) * ow]);
                }
                // SAFETY: AVX-512F was detected by the caller; the sizes are as documented.
                unsafe { max_flat_avx512(&g, (no, margin), (ph, p.h), first, xpad, gf, at, dxpad) };
                unpad(p, &g, dxpad, &mut dx[bc * p.h * p.w..(bc + 1) * p.h * p.w]);
            }
        });
    }

    /// # Safety
    /// AVX-512F; `first`, `gf` and `at` hold `margin + no + margin` floats with
    /// `margin >= (kh - 1) * wp + kw - 1 + 16`, `xpad` a padded plane of `g` and `dxpad` two,
    /// `no = oh * wp + 1 - kw`.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn max_flat_avx512(
        g: &Geo,
        (no, margin): (usize, usize),
        (ph, h): (usize, usize),
        first: &[f32],
        xpad: &[f32],
        gf: &[f32],
        at: &mut [f32],
        dxpad: &mut [f32],
    ) {
        use std::arch::x86_64::*;
        let span = margin + no + margin;
        debug_assert!(first.len() >= span && gf.len() >= span && at.len() >= span);
        debug_assert!(xpad.len() >= no + (g.kh - 1) * g.wp + g.kw - 1);
        debug_assert!(dxpad.len() >= (ph + h) * g.wp + 16);
        let mask = |n: usize| -> __mmask16 {
            if n >= 16 {
                0xffff
            } else {
                ((1u32 << n) - 1) as u16
            }
        };
        // arg-max per window
        let mut j = 0;
        while j < no {
            let mk = mask(no - j);
            // SAFETY: masked to the `no - j` positions left; taps stay inside the plane.
            unsafe {
                let mut a = _mm512_maskz_loadu_ps(mk, first.as_ptr().add(margin + j));
                let mut m = _mm512_set1_ps(f32::NEG_INFINITY);
                for ky in 0..g.kh {
                    for kx in 0..g.kw {
                        let xv = _mm512_maskz_loadu_ps(mk, xpad.as_ptr().add(ky * g.wp + kx + j));
                        let gt = _mm512_mask_cmp_ps_mask::<_CMP_GT_OQ>(mk, xv, m);
                        m = _mm512_mask_mov_ps(m, gt, xv);
                        a = _mm512_mask_mov_ps(a, gt, _mm512_set1_ps((ky * g.kw + kx) as f32));
                    }
                }
                _mm512_mask_storeu_ps(at.as_mut_ptr().add(margin + j), mk, a);
            }
            j += 16;
        }
        // every cell of the rows that hold the input gathers from the windows that picked it
        let (lo, hi) = (ph * g.wp, (ph + h) * g.wp);
        let mut c = lo;
        while c < hi {
            // SAFETY: window o = c - ky * wp - kx lies in [lo - margin + 16, hi), inside the
            // margins of `at` and `gf`; the store covers 16 cells below `hi + 16`.
            unsafe {
                let mut acc = _mm512_setzero_ps();
                for ky in (0..g.kh).rev() {
                    for kx in 0..g.kw {
                        let o = margin + c - ky * g.wp - kx;
                        let t = _mm512_set1_ps((ky * g.kw + kx) as f32);
                        let av = _mm512_loadu_ps(at.as_ptr().add(o));
                        let hit = _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(av, t);
                        let gv = _mm512_loadu_ps(gf.as_ptr().add(o));
                        acc = _mm512_mask_add_ps(acc, hit, acc, gv);
                    }
                }
                _mm512_storeu_ps(dxpad.as_mut_ptr().add(c), acc);
            }
            c += 16;
        }
    }

    avx512_dispatch! {
        /// Stride-1 average pooling's backward over flat padded planes.
        fn backward_avg_flat_planes(p: &Pool2dParams, planes: usize, dy: &[f32], dx: &mut [f32])
            = backward_avg_flat;
    }

    avx512_dispatch! {
        /// Backward pooling row by row (the arg-max of max pooling in registers with AVX-512).
        fn backward_row_planes(p: &Pool2dParams, planes: usize, x: &[f32], dy: &[f32], dx: &mut [f32])
            = backward_impl::<false>, backward_impl::<true>;
    }

    /// The portable (not AVX-512) loops, for the tests on machines that have AVX-512.
    #[cfg(test)]
    pub(crate) fn portable_planes(
        p: &Pool2dParams,
        planes: usize,
        x: &[f32],
        dy: &[f32],
        y: &mut [f32],
        dx: &mut [f32],
    ) {
        if p.stride == (1, 1) {
            forward_flat(p, planes, x, y);
        } else {
            forward_impl(p, planes, x, y);
        }
        match (p.stride, p.kind) {
            ((1, 1), PoolKind::Avg { .. }) => backward_avg_flat(p, planes, dy, dx),
            _ => backward_impl::<false>(p, planes, x, dy, dx),
        }
    }

    /// Max pooling's backward for one stride-1 row `r` with AVX-512: per 16 output columns the
    /// running maximum and its tap stay in registers, then the gradient is added at the winning
    /// tap with masked stores.
    ///
    /// # Safety
    /// AVX-512F; `xpad` and `dxpad` padded planes of `g`, `g1` `g.ow1` floats.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn max_row_avx512(
        g: &Geo,
        (ph, pw): (usize, usize),
        r: usize,
        xpad: &[f32],
        g1: &[f32],
        dxpad: &mut [f32],
    ) {
        use std::arch::x86_64::*;
        debug_assert!(xpad.len() >= (r + g.kh) * g.wp && dxpad.len() >= (r + g.kh) * g.wp);
        let ky0 = ph.saturating_sub(r);
        let mut j = 0;
        while j < g.ow1 {
            let n = (g.ow1 - j).min(16);
            let mk: __mmask16 = if n == 16 {
                0xffff
            } else {
                ((1u32 << n) - 1) as u16
            };
            let mut first = [0.0f32; 16];
            for (l, f) in first.iter_mut().enumerate() {
                *f = (ky0 * g.kw + pw.saturating_sub(j + l)) as f32;
            }
            // SAFETY: every load and store is masked to the `n` columns from `j`, which lie
            // inside rows `r..r + kh` of the padded planes (columns `kx + j + l < wp`).
            unsafe {
                let mut at = _mm512_loadu_ps(first.as_ptr());
                let mut m = _mm512_set1_ps(f32::NEG_INFINITY);
                for ky in 0..g.kh {
                    for kx in 0..g.kw {
                        let src = xpad.as_ptr().add((r + ky) * g.wp + kx + j);
                        let xv = _mm512_maskz_loadu_ps(mk, src);
                        let gt = _mm512_mask_cmp_ps_mask::<_CMP_GT_OQ>(mk, xv, m);
                        m = _mm512_mask_mov_ps(m, gt, xv);
                        at = _mm512_mask_mov_ps(at, gt, _mm512_set1_ps((ky * g.kw + kx) as f32));
                    }
                }
                let gv = _mm512_maskz_loadu_ps(mk, g1.as_ptr().add(j));
                for ky in 0..g.kh {
                    for kx in 0..g.kw {
                        let t = _mm512_set1_ps((ky * g.kw + kx) as f32);
                        let hit = _mm512_mask_cmp_ps_mask::<_CMP_EQ_OQ>(mk, at, t);
                        let dst = dxpad.as_mut_ptr().add((r + ky) * g.wp + kx + j);
                        let d = _mm512_maskz_loadu_ps(hit, dst);
                        _mm512_mask_storeu_ps(dst, hit, _mm512_add_ps(d, gv));
                    }
                }
            }
            j += 16;
        }
    }

    #[inline(always)]
    fn backward_impl<const AVX512: bool>(
        p: &Pool2dParams,
        planes: usize,
        x: &[f32],
        dy: &[f32],
        dx: &mut [f32],
    ) {
        let g = geo(p);
        let (oh, ow) = (p.out_h(), p.out_w());
        let (sy, sx) = p.stride;
        let (ph, pw) = p.padding;
        let max = matches!(p.kind, PoolKind::Max);
        let plane = g.hp * g.wp;
        with_scratch(2 * plane + g.wp + 3 * g.ow1 + ow, |buf| {
            let (xpad, rest) = buf.split_at_mut(plane);
            let (dxpad, rest) = rest.split_at_mut(plane);
            let (v, rest) = rest.split_at_mut(g.wp);
            let (g1, rest) = rest.split_at_mut(g.ow1);
            let (m, rest) = rest.split_at_mut(g.ow1);
            let (at, cols) = rest.split_at_mut(g.ow1);
            column_counts(p, ow, cols);
            if max {
                xpad.fill(f32::NEG_INFINITY);
            }
            for bc in 0..planes {
                if max {
                    pad(p, &g, &x[bc * p.h * p.w..(bc + 1) * p.h * p.w], xpad);
                }
                dxpad.fill(0.0);
                let gp = &dy[bc * oh * ow..(bc + 1) * oh * ow];
                for oy in 0..oh {
                    let r = oy * sy;
                    // the output gradient on the stride-1 grid (zeros between strided outputs)
                    let gr = &gp[oy * ow..(oy + 1) * ow];
                    if sx == 1 {
                        copy_row(&mut g1[..ow], gr);
                    } else {
                        g1.fill(0.0);
                        for (ox, &gv) in gr.iter().enumerate() {
                            g1[ox * sx] = gv;
                        }
                    }
                    average_row(p, &g, oy, cols, g1, sx);
                    #[cfg(target_arch = "x86_64")]
                    if max && AVX512 {
                        // SAFETY: only instantiated with AVX512 = true behind detection.
                        unsafe { max_row_avx512(&g, (ph, pw), r, xpad, g1, dxpad) };
                        continue;
                    }
                    if max {
                        // arg-max per lane: start at the first in-bounds tap, replace on a
                        // strictly larger value
                        let ky0 = ph.saturating_sub(r);
                        for (ox1, (mv, av)) in m.iter_mut().zip(at.iter_mut()).enumerate() {
                            *mv = f32::NEG_INFINITY;
                            *av = (ky0 * g.kw + pw.saturating_sub(ox1)) as f32;
                        }
                        for ky in 0..g.kh {
                            for kx in 0..g.kw {
                                let t = (ky * g.kw + kx) as f32;
                                let row = &xpad[(r + ky) * g.wp + kx..][..g.ow1];
                                for ((mv, av), &xv) in m.iter_mut().zip(at.iter_mut()).zip(row) {
                                    let gt = xv > *mv;
                                    *mv = if gt { xv } else { *mv };
                                    *av = if gt { t } else { *av };
                                }
                            }
                        }
                        for ky in 0..g.kh {
                            for kx in 0..g.kw {
                                let t = (ky * g.kw + kx) as f32;
                                let drow = &mut dxpad[(r + ky) * g.wp + kx..][..g.ow1];
                                for ((d, &av), &gv) in drow.iter_mut().zip(at.iter()).zip(g1.iter())
                                {
                                    *d += if av == t { gv } else { 0.0 };
                                }
                            }
                        }
                    } else {
                        // horizontal scatter into a padded row, then vertical into the window rows
                        v.fill(0.0);
                        for kx in 0..g.kw {
                            v[kx..kx + g.ow1]
                                .iter_mut()
                                .zip(g1.iter())
                                .for_each(|(a, &b)| *a += b);
                        }
                        for ky in 0..g.kh {
                            let drow = &mut dxpad[(r + ky) * g.wp..(r + ky + 1) * g.wp];
                            drow.iter_mut().zip(v.iter()).for_each(|(a, &b)| *a += b);
                        }
                    }
                }
                unpad(p, &g, dxpad, &mut dx[bc * p.h * p.w..(bc + 1) * p.h * p.w]);
            }
        });
    }
}
