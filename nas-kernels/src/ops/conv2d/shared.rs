//! Helpers shared by the convolution algorithms: how many threads a convolution uses, the
//! per-image task loop, the in-bounds output range of a kernel tap, per-thread weight-gradient
//! partials, and the ReLU helpers of the fused entry points.

use super::Conv2dParams;
use std::ops::Range;

use crate::threads::{num_threads, parallel_chunks_mut, parallel_split_mut, split_range};
use crate::workspace::with_scratch;

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

/// Runs `f(i, data[i * chunk..][..chunk])` for every `chunk`-sized piece of `data` (one task
/// per image when `chunk` is an image's worth of the output): over threads with
/// [`parallel_chunks_mut`], or on the calling thread when the convolution is small (spawning
/// workers would cost more than it saves).
pub(crate) fn par_chunks_mut(
    p: &Conv2dParams,
    data: &mut [f32],
    chunk: usize,
    f: &(dyn Fn(usize, &mut [f32]) + Sync),
) {
    if threads_for(p) <= 1 {
        data.chunks_mut(chunk)
            .enumerate()
            .for_each(|(i, c)| f(i, c));
    } else {
        parallel_chunks_mut(data, chunk, f);
    }
}

/// Runs `f(t, units, piece)` over `parts` nearly equal runs of the `unit`-sized units of
/// `data`: task `t` gets the units `units = split_range(data.len() / unit, parts, t)` and their
/// elements; over threads with [`parallel_split_mut`], serially when the convolution is small.
pub(crate) fn par_split_mut(
    p: &Conv2dParams,
    data: &mut [f32],
    unit: usize,
    parts: usize,
    f: impl Fn(usize, Range<usize>, &mut [f32]) + Sync,
) {
    if threads_for(p) <= 1 {
        let units = data.len() / unit;
        for t in 0..parts {
            let r = split_range(units, parts, t);
            f(t, r.clone(), &mut data[r.start * unit..r.end * unit]);
        }
    } else {
        parallel_split_mut(data, unit, parts, f);
    }
}

/// ReLU's backward in place: `d = 0` where `x <= 0` (or NaN); a select, not a branch (the sign
/// pattern is random).
pub(super) fn relu_mask(dx: &mut [f32], x: &[f32]) {
    for (d, &v) in dx.iter_mut().zip(x) {
        *d = if v > 0.0 { *d } else { 0.0 };
    }
}

/// Runs `f` on `relu(x)`, written into a pooled scratch buffer (the paths that cannot apply the
/// ReLU while staging their input; no allocation per call once the pool holds a buffer).
pub(super) fn with_relu<R>(x: &[f32], f: impl FnOnce(&[f32]) -> R) -> R {
    with_scratch(x.len(), |r| {
        r.iter_mut().zip(x).for_each(|(r, &v)| *r = v.max(0.0));
        f(r)
    })
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
        par_chunks_mut(p, partials, wl, &|t, part| {
            part.fill(0.0);
            f(part, split_range(p.n, parts, t));
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
