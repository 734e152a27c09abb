//! CPU kernels for the elementwise ops. Lengths are validated by the caller ([`crate::Cpu`]).

use super::{BinaryOp, UnaryOp};
use crate::threads::parallel_for;
use crate::workspace::SyncPtr;

#[inline(always)]
fn map1(x: &[f32], y: &mut [f32], f: impl Fn(f32) -> f32) {
    for (y, &x) in y.iter_mut().zip(x) {
        *y = f(x);
    }
}

/// Elements per task when an elementwise op is spread over threads.
const CHUNK: usize = 1 << 16;

/// Runs `f(x_chunk, y_chunk)` over matching chunks of `x` and `y`, on threads when large.
fn chunked(x: &[f32], y: &mut [f32], f: &(dyn Fn(&[f32], &mut [f32]) + Sync)) {
    let n = y.len();
    if n <= CHUNK {
        f(x, y);
        return;
    }
    let yp = SyncPtr(y.as_mut_ptr());
    parallel_for(n.div_ceil(CHUNK), &|t| {
        let lo = t * CHUNK;
        let hi = (lo + CHUNK).min(n);
        // SAFETY: chunks are disjoint and inside y.
        f(&x[lo..hi], unsafe { yp.slice(lo, hi - lo) });
    });
}

/// `y = op(x)`, chunked over threads when large.
pub(crate) fn unary(op: UnaryOp, x: &[f32], y: &mut [f32]) {
    chunked(x, y, &|x, y| unary_serial(op, x, y));
}

/// `y = op(x)`; dispatches once so every loop body is a constant op.
fn unary_serial(op: UnaryOp, x: &[f32], y: &mut [f32]) {
    match op {
        UnaryOp::Relu => map1(x, y, |v| UnaryOp::Relu.apply(v)),
        UnaryOp::Neg => map1(x, y, |v| UnaryOp::Neg.apply(v)),
        UnaryOp::Exp => map1(x, y, |v| UnaryOp::Exp.apply(v)),
        UnaryOp::Log => map1(x, y, |v| UnaryOp::Log.apply(v)),
        UnaryOp::Sqrt => map1(x, y, |v| UnaryOp::Sqrt.apply(v)),
        UnaryOp::Square => map1(x, y, |v| UnaryOp::Square.apply(v)),
        UnaryOp::Abs => map1(x, y, |v| UnaryOp::Abs.apply(v)),
        UnaryOp::Tanh => map1(x, y, |v| UnaryOp::Tanh.apply(v)),
        UnaryOp::Sigmoid => map1(x, y, |v| UnaryOp::Sigmoid.apply(v)),
        UnaryOp::Recip => map1(x, y, |v| UnaryOp::Recip.apply(v)),
        UnaryOp::Scale(a) => map1(x, y, |v| a * v),
        UnaryOp::AddScalar(a) => map1(x, y, |v| v + a),
    }
}

/// `dx = dy * op'(x)`, chunked over threads when large.
pub(crate) fn unary_backward(op: UnaryOp, x: &[f32], y: &[f32], dy: &[f32], dx: &mut [f32]) {
    let n = dx.len();
    if n <= CHUNK {
        unary_backward_serial(op, x, y, dy, dx);
        return;
    }
    let dxp = SyncPtr(dx.as_mut_ptr());
    parallel_for(n.div_ceil(CHUNK), &|t| {
        let lo = t * CHUNK;
        let hi = (lo + CHUNK).min(n);
        // SAFETY: chunks are disjoint and inside dx.
        let d = unsafe { dxp.slice(lo, hi - lo) };
        unary_backward_serial(op, &x[lo..hi], &y[lo..hi], &dy[lo..hi], d);
    });
}

fn unary_backward_serial(op: UnaryOp, x: &[f32], y: &[f32], dy: &[f32], dx: &mut [f32]) {
    match op {
        UnaryOp::Relu => {
            for ((d, &x), &g) in dx.iter_mut().zip(x).zip(dy) {
                *d = if x > 0.0 { g } else { 0.0 };
            }
        }
        UnaryOp::Scale(a) => map1(dy, dx, |g| g * a),
        _ => {
            for i in 0..dx.len() {
                dx[i] = op.grad(x[i], y[i], dy[i]);
            }
        }
    }
}

#[inline(always)]
fn zip2(a: &[f32], b: &[f32], out: &mut [f32], f: impl Fn(f32, f32) -> f32) {
    for ((o, &a), &b) in out.iter_mut().zip(a).zip(b) {
        *o = f(a, b);
    }
}

/// Row-major strides of `shape` seen as a shape of rank `rank` (right-aligned), with stride 0 on
/// broadcast (size-1 or missing) dimensions whose target size is not 1.
fn bstrides(shape: &[usize], target: &[usize]) -> Vec<usize> {
    let r = target.len();
    let off = r - shape.len();
    let mut st = vec![0; r];
    let mut acc = 1;
    for d in (0..shape.len()).rev() {
        st[d + off] = if shape[d] == 1 && target[d + off] != 1 {
            0
        } else {
            acc
        };
        acc *= shape[d];
    }
    st
}

/// Calls `f(out_flat, a_off, b_off, inner_len, a_inner_stride, b_inner_stride)` for each
/// innermost row of the output shape.
fn for_rows(
    out_shape: &[usize],
    sa: &[usize],
    sb: &[usize],
    mut f: impl FnMut(usize, usize, usize, usize, usize, usize),
) {
    let r = out_shape.len();
    if r == 0 {
        f(0, 0, 0, 1, 0, 0);
        return;
    }
    let inner = out_shape[r - 1];
    let rows: usize = out_shape[..r - 1].iter().product();
    let mut idx = vec![0usize; r - 1];
    let (mut oa, mut ob) = (0usize, 0usize);
    for row in 0..rows {
        f(row * inner, oa, ob, inner, sa[r - 1], sb[r - 1]);
        // increment the multi-index over the outer dims
        let mut d = r - 1;
        while d > 0 {
            d -= 1;
            idx[d] += 1;
            oa += sa[d];
            ob += sb[d];
            if idx[d] < out_shape[d] {
                break;
            }
            oa -= sa[d] * out_shape[d];
            ob -= sb[d] * out_shape[d];
            idx[d] = 0;
        }
    }
}

/// `out = a op b` with broadcasting; `out_shape` is the broadcast shape.
pub(crate) fn binary(
    op: BinaryOp,
    a: &[f32],
    a_shape: &[usize],
    b: &[f32],
    b_shape: &[usize],
    out: &mut [f32],
    out_shape: &[usize],
) {
    if a_shape == b_shape {
        let n = out.len();
        let f = |lo: usize, out: &mut [f32]| {
            let (a, b) = (&a[lo..lo + out.len()], &b[lo..lo + out.len()]);
            match op {
                BinaryOp::Add => zip2(a, b, out, |x, y| x + y),
                BinaryOp::Sub => zip2(a, b, out, |x, y| x - y),
                BinaryOp::Mul => zip2(a, b, out, |x, y| x * y),
                BinaryOp::Div => zip2(a, b, out, |x, y| x / y),
                BinaryOp::Maximum => zip2(a, b, out, |x, y| x.max(y)),
                BinaryOp::Minimum => zip2(a, b, out, |x, y| x.min(y)),
            }
        };
        chunked_out(n, out, &f);
        return;
    }
    let sa = bstrides(a_shape, out_shape);
    let sb = bstrides(b_shape, out_shape);
    for_rows(out_shape, &sa, &sb, |o, pa, pb, len, ia, ib| {
        let out = &mut out[o..o + len];
        match (ia, ib) {
            (1, 1) => zip2(&a[pa..pa + len], &b[pb..pb + len], out, |x, y| {
                op.apply(x, y)
            }),
            (1, 0) => {
                let bv = b[pb];
                for (o, &x) in out.iter_mut().zip(&a[pa..pa + len]) {
                    *o = op.apply(x, bv);
                }
            }
            (0, 1) => {
                let av = a[pa];
                for (o, &y) in out.iter_mut().zip(&b[pb..pb + len]) {
                    *o = op.apply(av, y);
                }
            }
            _ => {
                for j in 0..len {
                    out[j] = op.apply(a[pa + j * ia], b[pb + j * ib]);
                }
            }
        }
    });
}

/// `out = sum of x over the dimensions where `out_shape` broadcasts to `x_shape``.
pub(crate) fn sum_to_shape(x: &[f32], x_shape: &[usize], out: &mut [f32], out_shape: &[usize]) {
    out.fill(0.0);
    if x_shape == out_shape {
        out.copy_from_slice(x);
        return;
    }
    let so = bstrides(out_shape, x_shape);
    let sx = bstrides(x_shape, x_shape);
    for_rows(x_shape, &sx, &so, |_, px, po, len, _ix, io| {
        let xs = &x[px..px + len];
        if io == 0 {
            out[po] += xs.iter().sum::<f32>();
        } else {
            for (o, &v) in out[po..po + len].iter_mut().zip(xs) {
                *o += v;
            }
        }
    });
}

/// `out = x` broadcast to `out_shape`.
pub(crate) fn broadcast_to(x: &[f32], x_shape: &[usize], out: &mut [f32], out_shape: &[usize]) {
    let sx = bstrides(x_shape, out_shape);
    let zeros = vec![0usize; out_shape.len()];
    for_rows(out_shape, &sx, &zeros, |o, px, _, len, ix, _| {
        if ix == 0 {
            out[o..o + len].fill(x[px]);
        } else {
            out[o..o + len].copy_from_slice(&x[px..px + len]);
        }
    });
}

/// `y += alpha * x`.
pub(crate) fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
    chunked_out(y.len(), y, &|lo, y| {
        let n = y.len();
        for (y, &x) in y.iter_mut().zip(&x[lo..lo + n]) {
            *y += alpha * x;
        }
    });
}

/// Runs `f(offset, out_chunk)` over `CHUNK`-sized chunks of `out`, on threads when large.
fn chunked_out(n: usize, out: &mut [f32], f: &(dyn Fn(usize, &mut [f32]) + Sync)) {
    if n <= CHUNK {
        f(0, out);
        return;
    }
    let op = SyncPtr(out.as_mut_ptr());
    parallel_for(n.div_ceil(CHUNK), &|t| {
        let lo = t * CHUNK;
        let hi = (lo + CHUNK).min(n);
        // SAFETY: chunks are disjoint and inside out.
        f(lo, unsafe { op.slice(lo, hi - lo) });
    });
}

/// `out = sum_k w[k] * xs[k]`, one pass over `out` per chunk (the chunk stays in cache while
/// the K inputs are added).
pub(crate) fn weighted_sum(w: &[f32], xs: &[&[f32]], out: &mut [f32]) {
    chunked_out(out.len(), out, &|lo, out| {
        let n = out.len();
        if xs.is_empty() {
            out.fill(0.0);
            return;
        }
        map1(&xs[0][lo..lo + n], out, |v| w[0] * v);
        for k in 1..xs.len() {
            for (o, &v) in out.iter_mut().zip(&xs[k][lo..lo + n]) {
                *o += w[k] * v;
            }
        }
    });
}

/// `dxs[k] = w[k] * dy`, `dw[k] = <dy, xs[k]>` (accumulated in f64), chunked over threads.
pub(crate) fn weighted_sum_backward(
    w: &[f32],
    xs: &[&[f32]],
    dy: &[f32],
    dxs: &mut [&mut [f32]],
    dw: &mut [f32],
) {
    let n = dy.len();
    let k = xs.len();
    let chunks = n.div_ceil(CHUNK).max(1);
    let ptrs: Vec<SyncPtr> = dxs.iter_mut().map(|d| SyncPtr(d.as_mut_ptr())).collect();
    let mut dots = vec![0.0f64; chunks * k];
    let dp = SyncPtr64(dots.as_mut_ptr());
    let task = |t: usize| {
        let lo = t * CHUNK;
        let hi = (lo + CHUNK).min(n);
        for j in 0..k {
            // SAFETY: chunk t of dxs[j] and slot (t, j) of dots belong to this task.
            unsafe {
                map1(&dy[lo..hi], ptrs[j].slice(lo, hi - lo), |g| w[j] * g);
                *dp.at(t * k + j) = dot(&dy[lo..hi], &xs[j][lo..hi]);
            }
        }
    };
    if chunks == 1 {
        task(0);
    } else {
        parallel_for(chunks, &task);
    }
    for j in 0..k {
        dw[j] = (0..chunks).map(|t| dots[t * k + j]).sum::<f64>() as f32;
    }
}

/// [`SyncPtr`] for f64 partial sums.
#[derive(Clone, Copy)]
struct SyncPtr64(*mut f64);
unsafe impl Send for SyncPtr64 {}
unsafe impl Sync for SyncPtr64 {}

impl SyncPtr64 {
    fn at(&self, i: usize) -> *mut f64 {
        // SAFETY of use: callers stay in bounds.
        self.0.wrapping_add(i)
    }
}

/// Dot product with eight f32 partial sums per block, added up in f64.
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f64 {
    let mut total = 0.0f64;
    for (ca, cb) in a.chunks(1024).zip(b.chunks(1024)) {
        let mut acc = [0.0f32; 8];
        let mut ia = ca.chunks_exact(8);
        let mut ib = cb.chunks_exact(8);
        for (x, y) in (&mut ia).zip(&mut ib) {
            for j in 0..8 {
                acc[j] += x[j] * y[j];
            }
        }
        let mut s: f64 = acc.iter().map(|&v| v as f64).sum();
        for (x, y) in ia.remainder().iter().zip(ib.remainder()) {
            s += (*x as f64) * (*y as f64);
        }
        total += s;
    }
    total
}

/// Concatenates NCHW tensors along channels.
pub(crate) fn concat_channels(
    xs: &[&[f32]],
    channels: &[usize],
    n: usize,
    hw: usize,
    out: &mut [f32],
) {
    let ct: usize = channels.iter().sum();
    for b in 0..n {
        let mut off = 0;
        for (x, &c) in xs.iter().zip(channels) {
            let src = &x[b * c * hw..(b + 1) * c * hw];
            let d0 = (b * ct + off) * hw;
            out[d0..d0 + c * hw].copy_from_slice(src);
            off += c;
        }
    }
}

/// Splits an NCHW tensor along channels.
pub(crate) fn split_channels(
    x: &[f32],
    channels: &[usize],
    n: usize,
    hw: usize,
    outs: &mut [&mut [f32]],
) {
    let ct: usize = channels.iter().sum();
    for b in 0..n {
        let mut off = 0;
        for (o, &c) in outs.iter_mut().zip(channels) {
            let s0 = (b * ct + off) * hw;
            o[b * c * hw..(b + 1) * c * hw].copy_from_slice(&x[s0..s0 + c * hw]);
            off += c;
        }
    }
}
