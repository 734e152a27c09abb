//! CPU convolution kernels. Shapes are validated by [`crate::Cpu`].
//!
//! Paths ([`Path`]), chosen by [`choose`] and all tested against [`super::reference`]:
//! - [`Path::Depthwise`]: direct loops per channel plane (forward, input and weight gradient);
//!   stride-1 rows are contiguous AXPYs/dots that the compiler vectorises.
//! - [`Path::OneByOne`]: 1x1, stride 1, no padding: the image *is* the GEMM operand.
//! - [`Path::Direct`] (x86-64 with AVX-512, stride 1): a register-blocked direct convolution
//!   on a zero-padded copy of the image (no im2col); the input gradient is the same kernel on
//!   the padded output gradient with flipped, transposed weights; the weight gradient a
//!   register-blocked correlation of input and output gradient.
//! - [`Path::Im2col`]: everything else: im2col into a pooled workspace, then
//!   [`sgemm`](crate::gemm::sgemm) per group.
//!
//! Images are spread over threads with [`parallel_for`]; weight gradients accumulate per-thread
//! partial sums that are added at the end.

use super::Conv2dParams;
use crate::gemm::sgemm;
use crate::threads::{num_threads, parallel_for};

/// Below this many multiply-adds (x2) a convolution runs on the calling thread: spawning
/// workers would cost more than it saves.
const PARALLEL_FLOPS: usize = 1 << 22;

fn flops(p: &Conv2dParams) -> usize {
    2 * p.n * p.c_out * p.out_h() * p.out_w() * (p.c_in / p.groups) * p.kh * p.kw
}

/// Threads a convolution may use: 1 when it is small.
pub(crate) fn threads_for(p: &Conv2dParams) -> usize {
    if flops(p) < PARALLEL_FLOPS {
        1
    } else {
        num_threads()
    }
}

/// `parallel_for` for a convolution's tasks, serial when the convolution is small.
pub(crate) fn par(p: &Conv2dParams, n_tasks: usize, f: &(dyn Fn(usize) + Sync)) {
    if threads_for(p) <= 1 {
        (0..n_tasks).for_each(f);
    } else {
        parallel_for(n_tasks, f);
    }
}
use crate::workspace::{SyncPtr, with_scratch};

/// An implementation strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Path {
    /// im2col + GEMM (any configuration).
    Im2col,
    /// 1x1, stride 1, no padding: GEMM on the image directly.
    OneByOne,
    /// Direct per-plane loops for `groups == c_in == c_out`.
    Depthwise,
    /// Register-blocked AVX-512 direct convolution, stride 1.
    Direct,
    /// Register-blocked AVX-512 depthwise kernels, stride 1.
    DepthwiseDirect,
}

fn is_1x1(p: &Conv2dParams) -> bool {
    p.kh == 1 && p.kw == 1 && p.stride == (1, 1) && p.padding == (0, 0)
}

/// Whether `path` can compute `p` on this machine.
pub(crate) fn applicable(path: Path, p: &Conv2dParams) -> bool {
    match path {
        Path::Im2col => true,
        Path::OneByOne => is_1x1(p),
        Path::Depthwise => p.is_depthwise(),
        Path::Direct => direct::available() && p.stride == (1, 1),
        Path::DepthwiseDirect => {
            p.is_depthwise() && direct::available() && matches!(p.stride, (1, 1) | (2, 2))
        }
    }
}

/// The path used by default.
pub(crate) fn choose(p: &Conv2dParams) -> Path {
    if p.is_depthwise() && p.c_in > 1 {
        if applicable(Path::DepthwiseDirect, p) {
            Path::DepthwiseDirect
        } else {
            Path::Depthwise
        }
    } else if is_1x1(p) {
        Path::OneByOne
    } else if applicable(Path::Direct, p) {
        Path::Direct
    } else {
        Path::Im2col
    }
}

/// Forward convolution.
pub(crate) fn forward(p: &Conv2dParams, x: &[f32], w: &[f32], bias: Option<&[f32]>, y: &mut [f32]) {
    forward_with(choose(p), p, x, w, bias, y)
}

/// Gradient with respect to the input.
pub(crate) fn backward_input(p: &Conv2dParams, w: &[f32], dy: &[f32], dx: &mut [f32]) {
    backward_input_with(choose(p), p, w, dy, dx)
}

/// Gradient with respect to weight and bias.
pub(crate) fn backward_weight(
    p: &Conv2dParams,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    dbias: Option<&mut [f32]>,
) {
    // For 1x1 convolutions the AVX-512 direct kernel beats GEMM here (the GEMM's depth is the
    // image size and its output tiny), so it is chosen when available.
    let path = match choose(p) {
        Path::OneByOne if applicable(Path::Direct, p) => Path::Direct,
        other => other,
    };
    backward_weight_with(path, p, x, dy, dw, dbias)
}

/// Forward convolution (no bias) of `relu(x)`. The AVX-512 depthwise kernels apply the ReLU
/// while staging each input plane; other paths convolve a ReLU'd copy.
pub(crate) fn forward_relu_input(p: &Conv2dParams, x: &[f32], w: &[f32], y: &mut [f32]) {
    if choose(p) == Path::DepthwiseDirect {
        direct::depthwise_forward(p, x, w, y, true)
    } else {
        with_relu(x, |r| forward(p, r, w, None, y))
    }
}

/// Weight gradient (no bias) of a convolution whose input was `relu(x)` (see
/// [`forward_relu_input`]).
pub(crate) fn backward_weight_relu_input(p: &Conv2dParams, x: &[f32], dy: &[f32], dw: &mut [f32]) {
    if choose(p) == Path::DepthwiseDirect {
        direct::depthwise_backward_weight(p, x, dy, dw, true)
    } else {
        with_relu(x, |r| backward_weight(p, r, dy, dw, None))
    }
}

/// Input gradient of a convolution whose input was `relu(x)`, through the ReLU:
/// `dx = conv_backward_input(dy) * (x > 0)`. The AVX-512 depthwise kernels mask each plane as
/// they finish it; other paths mask afterwards.
pub(crate) fn backward_input_relu_mask(
    p: &Conv2dParams,
    w: &[f32],
    dy: &[f32],
    x: &[f32],
    dx: &mut [f32],
) {
    if choose(p) == Path::DepthwiseDirect && (flip_ok(p) || p.stride == (2, 2)) {
        direct::depthwise_backward_input(p, w, dy, dx, Some(x))
    } else {
        backward_input(p, w, dy, dx);
        relu_mask(dx, x);
    }
}

/// ReLU's backward in place: `d = 0` where `x <= 0` (or NaN); a select, not a branch (the sign
/// pattern is random).
fn relu_mask(dx: &mut [f32], x: &[f32]) {
    for (d, &v) in dx.iter_mut().zip(x) {
        *d = if v > 0.0 { *d } else { 0.0 };
    }
}

/// Runs `f` on `relu(x)`, written into a pooled scratch buffer (the paths that cannot apply the
/// ReLU while staging their input; no allocation per call once the pool holds a buffer).
fn with_relu<R>(x: &[f32], f: impl FnOnce(&[f32]) -> R) -> R {
    with_scratch(x.len(), |r| {
        r.iter_mut().zip(x).for_each(|(r, &v)| *r = v.max(0.0));
        f(r)
    })
}

/// Forward along a given (applicable) path.
pub(crate) fn forward_with(
    path: Path,
    p: &Conv2dParams,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
) {
    debug_assert!(applicable(path, p));
    match path {
        Path::Im2col => im2col_forward(p, x, w, y),
        Path::OneByOne => gemm1x1_forward(p, x, w, y),
        Path::Depthwise => depthwise::forward(p, x, w, y),
        Path::Direct => direct::forward(p, x, w, y),
        Path::DepthwiseDirect => direct::depthwise_forward(p, x, w, y, false),
    }
    if let Some(b) = bias {
        let ohw = p.out_h() * p.out_w();
        for (i, plane) in y.chunks_exact_mut(ohw).enumerate() {
            let bv = b[i % p.c_out];
            for v in plane {
                *v += bv;
            }
        }
    }
}

/// Input gradient along a given (applicable) path.
pub(crate) fn backward_input_with(
    path: Path,
    p: &Conv2dParams,
    w: &[f32],
    dy: &[f32],
    dx: &mut [f32],
) {
    match path {
        Path::Im2col => im2col_backward_input(p, w, dy, dx),
        Path::OneByOne => gemm1x1_backward_input(p, w, dy, dx),
        Path::Depthwise => depthwise::backward_input(p, w, dy, dx),
        Path::Direct => {
            if flip_ok(p) {
                direct::backward_input(p, w, dy, dx)
            } else {
                im2col_backward_input(p, w, dy, dx)
            }
        }
        Path::DepthwiseDirect => {
            if flip_ok(p) || p.stride == (2, 2) {
                direct::depthwise_backward_input(p, w, dy, dx, None)
            } else {
                depthwise::backward_input(p, w, dy, dx)
            }
        }
    }
}

/// Whether the input gradient can be computed as a stride-1 convolution of the padded output
/// gradient (padding `d * (k - 1) - p` must not be negative).
fn flip_ok(p: &Conv2dParams) -> bool {
    p.dilation.0 * (p.kh - 1) >= p.padding.0 && p.dilation.1 * (p.kw - 1) >= p.padding.1
}

/// Weight (and bias) gradient along a given (applicable) path.
pub(crate) fn backward_weight_with(
    path: Path,
    p: &Conv2dParams,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    dbias: Option<&mut [f32]>,
) {
    match path {
        Path::Im2col => im2col_backward_weight(p, x, dy, dw),
        Path::OneByOne => gemm1x1_backward_weight(p, x, dy, dw),
        Path::Depthwise => depthwise::backward_weight(p, x, dy, dw),
        Path::Direct => direct::backward_weight(p, x, dy, dw),
        Path::DepthwiseDirect => direct::depthwise_backward_weight(p, x, dy, dw, false),
    }
    if let Some(db) = dbias {
        let ohw = p.out_h() * p.out_w();
        db.fill(0.0);
        for (i, plane) in dy.chunks_exact(ohw).enumerate() {
            db[i % p.c_out] += plane.iter().sum::<f32>();
        }
    }
}

/// `[lo, hi)`: the output positions whose tap at offset `k_off` (= kernel index * dilation)
/// lands inside `[0, size)` for the given padding and stride.
#[inline]
pub(crate) fn out_range(
    k_off: usize,
    pad: usize,
    stride: usize,
    size: usize,
    out: usize,
) -> (usize, usize) {
    let lo = if pad > k_off {
        (pad - k_off).div_ceil(stride)
    } else {
        0
    };
    let hi = if size + pad > k_off {
        ((size - 1 + pad - k_off) / stride + 1).min(out)
    } else {
        0
    };
    (lo.min(hi), hi)
}

/// Splits `0..n` into `parts` nearly equal contiguous ranges; returns range `i`.
fn chunk(n: usize, parts: usize, i: usize) -> std::ops::Range<usize> {
    let base = n / parts;
    let extra = n % parts;
    let start = i * base + i.min(extra);
    start..start + base + usize::from(i < extra)
}

/// A weight gradient summed over the batch: the images are split into contiguous ranges, one
/// per thread (one for a small convolution); `f(part, images)` adds the gradient of its images
/// into `part`, a zeroed partial of `dw.len()` floats; the partials are then added up in
/// order, so the result does not depend on scheduling.
pub(crate) fn partial_weight_grads(
    p: &Conv2dParams,
    dw: &mut [f32],
    f: &(dyn Fn(&mut [f32], std::ops::Range<usize>) + Sync),
) {
    let wl = dw.len();
    let parts = threads_for(p).min(p.n).max(1);
    with_scratch(parts * wl, |partials| {
        let pp = SyncPtr(partials.as_mut_ptr());
        par(p, parts, &|t| {
            // SAFETY: each task writes only its own partial.
            let part = unsafe { pp.slice(t * wl, wl) };
            part.fill(0.0);
            f(part, chunk(p.n, parts, t));
        });
        sum_partials(partials, parts, dw);
    });
}

/// Sums `parts` consecutive partial weight gradients of length `len` from `partials` into `dw`.
fn sum_partials(partials: &[f32], parts: usize, dw: &mut [f32]) {
    let len = dw.len();
    dw.copy_from_slice(&partials[..len]);
    for t in 1..parts {
        for (d, &v) in dw.iter_mut().zip(&partials[t * len..(t + 1) * len]) {
            *d += v;
        }
    }
}

// ------------------------------------------------------------------------------- im2col

/// Columns of group `g` of one image: `col[(icg * kh + ky) * kw + kx][oy * ow + ox]`.
fn im2col(p: &Conv2dParams, xb: &[f32], g: usize, col: &mut [f32]) {
    let (oh, ow) = (p.out_h(), p.out_w());
    let ohw = oh * ow;
    let cig = p.c_in / p.groups;
    let (sh, sw) = p.stride;
    let (ph, pw) = p.padding;
    let (dh, dw) = p.dilation;
    for icg in 0..cig {
        let plane = &xb[(g * cig + icg) * p.h * p.w..(g * cig + icg + 1) * p.h * p.w];
        for ky in 0..p.kh {
            let (ylo, yhi) = out_range(ky * dh, ph, sh, p.h, oh);
            for kx in 0..p.kw {
                let row = (icg * p.kh + ky) * p.kw + kx;
                let dst = &mut col[row * ohw..(row + 1) * ohw];
                let (xlo, xhi) = out_range(kx * dw, pw, sw, p.w, ow);
                dst[..ylo * ow].fill(0.0);
                dst[yhi * ow..].fill(0.0);
                for oy in ylo..yhi {
                    let iy = oy * sh + ky * dh - ph;
                    let d = &mut dst[oy * ow..(oy + 1) * ow];
                    d[..xlo].fill(0.0);
                    d[xhi..].fill(0.0);
                    if xlo < xhi {
                        let start = iy * p.w + xlo * sw + kx * dw - pw;
                        if sw == 1 {
                            d[xlo..xhi].copy_from_slice(&plane[start..start + xhi - xlo]);
                        } else {
                            for (j, v) in d[xlo..xhi].iter_mut().enumerate() {
                                *v = plane[start + j * sw];
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Adds columns back into image gradient `dxb` (the adjoint of [`im2col`]).
fn col2im(p: &Conv2dParams, col: &[f32], g: usize, dxb: &mut [f32]) {
    let (oh, ow) = (p.out_h(), p.out_w());
    let ohw = oh * ow;
    let cig = p.c_in / p.groups;
    let (sh, sw) = p.stride;
    let (ph, pw) = p.padding;
    let (dh, dw) = p.dilation;
    for icg in 0..cig {
        let plane = &mut dxb[(g * cig + icg) * p.h * p.w..(g * cig + icg + 1) * p.h * p.w];
        for ky in 0..p.kh {
            let (ylo, yhi) = out_range(ky * dh, ph, sh, p.h, oh);
            for kx in 0..p.kw {
                let row = (icg * p.kh + ky) * p.kw + kx;
                let src = &col[row * ohw..(row + 1) * ohw];
                let (xlo, xhi) = out_range(kx * dw, pw, sw, p.w, ow);
                if xlo >= xhi {
                    continue;
                }
                for oy in ylo..yhi {
                    let iy = oy * sh + ky * dh - ph;
                    let s = &src[oy * ow + xlo..oy * ow + xhi];
                    let start = iy * p.w + xlo * sw + kx * dw - pw;
                    if sw == 1 {
                        for (d, &v) in plane[start..start + s.len()].iter_mut().zip(s) {
                            *d += v;
                        }
                    } else {
                        for (j, &v) in s.iter().enumerate() {
                            plane[start + j * sw] += v;
                        }
                    }
                }
            }
        }
    }
}

fn im2col_forward(p: &Conv2dParams, x: &[f32], w: &[f32], y: &mut [f32]) {
    let ohw = p.out_h() * p.out_w();
    let (cig, cog) = (p.c_in / p.groups, p.c_out / p.groups);
    let k = cig * p.kh * p.kw;
    let (xl, yl) = (p.c_in * p.h * p.w, p.c_out * ohw);
    let yp = SyncPtr(y.as_mut_ptr());
    par(p, p.n, &|b| {
        // SAFETY: each task writes only image b of y.
        let yb = unsafe { yp.slice(b * yl, yl) };
        let xb = &x[b * xl..(b + 1) * xl];
        with_scratch(k * ohw, |col| {
            for g in 0..p.groups {
                im2col(p, xb, g, col);
                sgemm(
                    false,
                    false,
                    cog,
                    ohw,
                    k,
                    1.0,
                    &w[g * cog * k..],
                    k,
                    col,
                    ohw,
                    0.0,
                    &mut yb[g * cog * ohw..],
                    ohw,
                );
            }
        });
    });
}

fn im2col_backward_input(p: &Conv2dParams, w: &[f32], dy: &[f32], dx: &mut [f32]) {
    let ohw = p.out_h() * p.out_w();
    let (cig, cog) = (p.c_in / p.groups, p.c_out / p.groups);
    let k = cig * p.kh * p.kw;
    let (xl, yl) = (p.c_in * p.h * p.w, p.c_out * ohw);
    let dxp = SyncPtr(dx.as_mut_ptr());
    par(p, p.n, &|b| {
        // SAFETY: each task writes only image b of dx.
        let dxb = unsafe { dxp.slice(b * xl, xl) };
        dxb.fill(0.0);
        let dyb = &dy[b * yl..(b + 1) * yl];
        with_scratch(k * ohw, |col| {
            for g in 0..p.groups {
                sgemm(
                    true,
                    false,
                    k,
                    ohw,
                    cog,
                    1.0,
                    &w[g * cog * k..],
                    k,
                    &dyb[g * cog * ohw..],
                    ohw,
                    0.0,
                    col,
                    ohw,
                );
                col2im(p, col, g, dxb);
            }
        });
    });
}

fn im2col_backward_weight(p: &Conv2dParams, x: &[f32], dy: &[f32], dw: &mut [f32]) {
    let ohw = p.out_h() * p.out_w();
    let (cig, cog) = (p.c_in / p.groups, p.c_out / p.groups);
    let k = cig * p.kh * p.kw;
    let (xl, yl) = (p.c_in * p.h * p.w, p.c_out * ohw);
    partial_weight_grads(p, dw, &|part, images| {
        with_scratch(k * ohw, |col| {
            for b in images {
                let xb = &x[b * xl..(b + 1) * xl];
                let dyb = &dy[b * yl..(b + 1) * yl];
                for g in 0..p.groups {
                    im2col(p, xb, g, col);
                    sgemm(
                        false,
                        true,
                        cog,
                        k,
                        ohw,
                        1.0,
                        &dyb[g * cog * ohw..],
                        ohw,
                        col,
                        ohw,
                        1.0,
                        &mut part[g * cog * k..],
                        k,
                    );
                }
            }
        });
    });
}

// ------------------------------------------------------------------------------- 1x1

fn gemm1x1_forward(p: &Conv2dParams, x: &[f32], w: &[f32], y: &mut [f32]) {
    let hw = p.h * p.w;
    let (cig, cog) = (p.c_in / p.groups, p.c_out / p.groups);
    let yp = SyncPtr(y.as_mut_ptr());
    par(p, p.n, &|b| {
        // SAFETY: each task writes only image b of y.
        let yb = unsafe { yp.slice(b * p.c_out * hw, p.c_out * hw) };
        for g in 0..p.groups {
            let xg = &x[(b * p.c_in + g * cig) * hw..];
            sgemm(
                false,
                false,
                cog,
                hw,
                cig,
                1.0,
                &w[g * cog * cig..],
                cig,
                xg,
                hw,
                0.0,
                &mut yb[g * cog * hw..],
                hw,
            );
        }
    });
}

fn gemm1x1_backward_input(p: &Conv2dParams, w: &[f32], dy: &[f32], dx: &mut [f32]) {
    let hw = p.h * p.w;
    let (cig, cog) = (p.c_in / p.groups, p.c_out / p.groups);
    let dxp = SyncPtr(dx.as_mut_ptr());
    par(p, p.n, &|b| {
        // SAFETY: each task writes only image b of dx.
        let dxb = unsafe { dxp.slice(b * p.c_in * hw, p.c_in * hw) };
        for g in 0..p.groups {
            let dyg = &dy[(b * p.c_out + g * cog) * hw..];
            sgemm(
                true,
                false,
                cig,
                hw,
                cog,
                1.0,
                &w[g * cog * cig..],
                cig,
                dyg,
                hw,
                0.0,
                &mut dxb[g * cig * hw..],
                hw,
            );
        }
    });
}

fn gemm1x1_backward_weight(p: &Conv2dParams, x: &[f32], dy: &[f32], dw: &mut [f32]) {
    let hw = p.h * p.w;
    let (cig, cog) = (p.c_in / p.groups, p.c_out / p.groups);
    partial_weight_grads(p, dw, &|part, images| {
        for b in images {
            for g in 0..p.groups {
                let dyg = &dy[(b * p.c_out + g * cog) * hw..];
                let xg = &x[(b * p.c_in + g * cig) * hw..];
                sgemm(
                    false,
                    true,
                    cog,
                    cig,
                    hw,
                    1.0,
                    dyg,
                    hw,
                    xg,
                    hw,
                    1.0,
                    &mut part[g * cog * cig..],
                    cig,
                );
            }
        }
    });
}

// ------------------------------------------------------------------------------- depthwise

mod depthwise {
    use super::{Conv2dParams, SyncPtr, chunk, out_range, par, threads_for};

    #[inline(always)]
    fn dot(a: &[f32], b: &[f32]) -> f32 {
        let mut acc = [0.0f32; 8];
        let mut ia = a.chunks_exact(8);
        let mut ib = b.chunks_exact(8);
        for (x, y) in (&mut ia).zip(&mut ib) {
            for j in 0..8 {
                acc[j] += x[j] * y[j];
            }
        }
        let mut s = 0.0;
        for (x, y) in ia.remainder().iter().zip(ib.remainder()) {
            s += x * y;
        }
        s + acc.iter().sum::<f32>()
    }

    /// One channel plane: `y = conv(x, w)`.
    fn plane_forward(p: &Conv2dParams, x: &[f32], w: &[f32], y: &mut [f32]) {
        let (oh, ow) = (p.out_h(), p.out_w());
        let (sh, sw) = p.stride;
        let (ph, pw) = p.padding;
        let (dh, dw) = p.dilation;
        y.fill(0.0);
        for oy in 0..oh {
            let yr = &mut y[oy * ow..(oy + 1) * ow];
            for ky in 0..p.kh {
                let iy = (oy * sh + ky * dh) as isize - ph as isize;
                if iy < 0 || iy >= p.h as isize {
                    continue;
                }
                let xr = &x[iy as usize * p.w..(iy as usize + 1) * p.w];
                for kx in 0..p.kw {
                    let wv = w[ky * p.kw + kx];
                    let (lo, hi) = out_range(kx * dw, pw, sw, p.w, ow);
                    if lo >= hi {
                        continue;
                    }
                    let start = lo * sw + kx * dw - pw;
                    if sw == 1 {
                        for (o, &v) in yr[lo..hi].iter_mut().zip(&xr[start..start + hi - lo]) {
                            *o += wv * v;
                        }
                    } else {
                        for (j, o) in yr[lo..hi].iter_mut().enumerate() {
                            *o += wv * xr[start + j * sw];
                        }
                    }
                }
            }
        }
    }

    /// One channel plane: `dx = conv^T(dy, w)`.
    fn plane_backward_input(p: &Conv2dParams, w: &[f32], dy: &[f32], dx: &mut [f32]) {
        let (oh, ow) = (p.out_h(), p.out_w());
        let (sh, sw) = p.stride;
        let (ph, pw) = p.padding;
        let (dh, dw) = p.dilation;
        dx.fill(0.0);
        for oy in 0..oh {
            let gr = &dy[oy * ow..(oy + 1) * ow];
            for ky in 0..p.kh {
                let iy = (oy * sh + ky * dh) as isize - ph as isize;
                if iy < 0 || iy >= p.h as isize {
                    continue;
                }
                let dr = &mut dx[iy as usize * p.w..(iy as usize + 1) * p.w];
                for kx in 0..p.kw {
                    let wv = w[ky * p.kw + kx];
                    let (lo, hi) = out_range(kx * dw, pw, sw, p.w, ow);
                    if lo >= hi {
                        continue;
                    }
                    let start = lo * sw + kx * dw - pw;
                    if sw == 1 {
                        for (d, &g) in dr[start..start + hi - lo].iter_mut().zip(&gr[lo..hi]) {
                            *d += wv * g;
                        }
                    } else {
                        for (j, &g) in gr[lo..hi].iter().enumerate() {
                            dr[start + j * sw] += wv * g;
                        }
                    }
                }
            }
        }
    }

    /// One channel plane: `dw += corr(x, dy)`.
    fn plane_backward_weight(p: &Conv2dParams, x: &[f32], dy: &[f32], dw_out: &mut [f32]) {
        let (oh, ow) = (p.out_h(), p.out_w());
        let (sh, sw) = p.stride;
        let (ph, pw) = p.padding;
        let (dh, dw) = p.dilation;
        for ky in 0..p.kh {
            let (ylo, yhi) = out_range(ky * dh, ph, sh, p.h, oh);
            for kx in 0..p.kw {
                let (lo, hi) = out_range(kx * dw, pw, sw, p.w, ow);
                if lo >= hi {
                    continue;
                }
                let mut s = 0.0f32;
                for oy in ylo..yhi {
                    let iy = oy * sh + ky * dh - ph;
                    let start = iy * p.w + lo * sw + kx * dw - pw;
                    let gr = &dy[oy * ow + lo..oy * ow + hi];
                    if sw == 1 {
                        s += dot(gr, &x[start..start + hi - lo]);
                    } else {
                        for (j, &g) in gr.iter().enumerate() {
                            s += g * x[start + j * sw];
                        }
                    }
                }
                dw_out[ky * p.kw + kx] += s;
            }
        }
    }

    pub(super) fn forward(p: &Conv2dParams, x: &[f32], w: &[f32], y: &mut [f32]) {
        let (hw, ohw, kk) = (p.h * p.w, p.out_h() * p.out_w(), p.kh * p.kw);
        let yp = SyncPtr(y.as_mut_ptr());
        par(p, p.n, &|b| {
            for c in 0..p.c_in {
                let i = b * p.c_in + c;
                // SAFETY: each task writes only the planes of image b.
                let yplane = unsafe { yp.slice(i * ohw, ohw) };
                plane_forward(
                    p,
                    &x[i * hw..(i + 1) * hw],
                    &w[c * kk..(c + 1) * kk],
                    yplane,
                );
            }
        });
    }

    pub(super) fn backward_input(p: &Conv2dParams, w: &[f32], dy: &[f32], dx: &mut [f32]) {
        let (hw, ohw, kk) = (p.h * p.w, p.out_h() * p.out_w(), p.kh * p.kw);
        let dxp = SyncPtr(dx.as_mut_ptr());
        par(p, p.n, &|b| {
            for c in 0..p.c_in {
                let i = b * p.c_in + c;
                // SAFETY: each task writes only the planes of image b.
                let dplane = unsafe { dxp.slice(i * hw, hw) };
                plane_backward_input(
                    p,
                    &w[c * kk..(c + 1) * kk],
                    &dy[i * ohw..(i + 1) * ohw],
                    dplane,
                );
            }
        });
    }

    pub(super) fn backward_weight(p: &Conv2dParams, x: &[f32], dy: &[f32], dw: &mut [f32]) {
        let (hw, ohw, kk) = (p.h * p.w, p.out_h() * p.out_w(), p.kh * p.kw);
        dw.fill(0.0);
        let parts = threads_for(p).min(p.c_in).max(1);
        let dwp = SyncPtr(dw.as_mut_ptr());
        par(p, parts, &|t| {
            for c in chunk(p.c_in, parts, t) {
                // SAFETY: each task owns the weights of its channels.
                let dwc = unsafe { dwp.slice(c * kk, kk) };
                for b in 0..p.n {
                    let i = b * p.c_in + c;
                    plane_backward_weight(
                        p,
                        &x[i * hw..(i + 1) * hw],
                        &dy[i * ohw..(i + 1) * ohw],
                        dwc,
                    );
                }
            }
        });
    }
}

// ------------------------------------------------------------------------------- direct

#[cfg(not(target_arch = "x86_64"))]
mod direct {
    use super::Conv2dParams;
    pub(super) fn available() -> bool {
        false
    }
    pub(super) fn forward(p: &Conv2dParams, x: &[f32], w: &[f32], y: &mut [f32]) {
        super::im2col_forward(p, x, w, y)
    }
    pub(super) fn backward_input(p: &Conv2dParams, w: &[f32], dy: &[f32], dx: &mut [f32]) {
        super::im2col_backward_input(p, w, dy, dx)
    }
    pub(super) fn backward_weight(p: &Conv2dParams, x: &[f32], dy: &[f32], dw: &mut [f32]) {
        super::im2col_backward_weight(p, x, dy, dw)
    }
    pub(super) fn depthwise_forward(
        p: &Conv2dParams,
        x: &[f32],
        w: &[f32],
        y: &mut [f32],
        relu: bool,
    ) {
        if relu {
            super::with_relu(x, |r| super::depthwise::forward(p, r, w, y))
        } else {
            super::depthwise::forward(p, x, w, y)
        }
    }
    pub(super) fn depthwise_backward_input(
        p: &Conv2dParams,
        w: &[f32],
        dy: &[f32],
        dx: &mut [f32],
        mask: Option<&[f32]>,
    ) {
        super::depthwise::backward_input(p, w, dy, dx);
        if let Some(x) = mask {
            super::relu_mask(dx, x);
        }
    }
    pub(super) fn depthwise_backward_weight(
        p: &Conv2dParams,
        x: &[f32],
        dy: &[f32],
        dw: &mut [f32],
        relu: bool,
    ) {
        if relu {
            super::with_relu(x, |r| super::depthwise::backward_weight(p, r, dy, dw))
        } else {
            super::depthwise::backward_weight(p, x, dy, dw)
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[path = "direct_avx512.rs"]
mod direct;
