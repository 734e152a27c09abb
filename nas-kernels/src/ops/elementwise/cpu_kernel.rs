//! CPU kernels for the elementwise ops. Lengths are validated by the caller ([`crate::Cpu`]).

use super::{BinaryOp, UnaryOp};
use crate::simd::{avx512_dispatch, lane_sum};
use crate::threads::{num_threads, parallel_chunks_mut};

/// `y[i] = f(x[i])`.
#[inline(always)]
fn map1(x: &[f32], y: &mut [f32], f: impl Fn(f32) -> f32) {
    let h = head(y);
    let (y0, y1) = y.split_at_mut(h);
    for part in [(x, y0), (&x[h..], y1)] {
        for (y, &x) in part.1.iter_mut().zip(part.0) {
            *y = f(x);
        }
    }
}

/// Elements of `out` before its first 64-byte boundary: the loops start their vectors there,
/// so that AVX-512 stores (and loads of equally offset inputs) do not straddle cache lines
/// (without this, streaming ops are ~10% slower with AVX-512 than with SSE on Zen 4).
#[inline(always)]
fn head(out: &[f32]) -> usize {
    out.as_ptr().align_offset(64).min(out.len())
}

/// Elements per task when an elementwise op is spread over threads (at most; see
/// [`task_len`]), and the length up to which it stays on the calling thread.
const CHUNK: usize = 1 << 16;

/// Elements per task for an `n`-element elementwise op on `threads` threads: at most about
/// [`CHUNK`], in a number of nearly equal tasks that is a multiple of `threads` (so no thread
/// waits for a last, lone task: 401,408 elements on 2 threads are 8 tasks of 50,176, not 6 of
/// 65,536 and one of 8,192), each a whole number of 64-byte lines. `n` when the op stays on
/// the calling thread (`n <= CHUNK` or one thread).
fn task_len(n: usize, threads: usize) -> usize {
    if n <= CHUNK || threads <= 1 {
        return n.max(1);
    }
    let tasks = n.div_ceil(CHUNK).next_multiple_of(threads);
    n.div_ceil(tasks).next_multiple_of(16)
}

/// Runs `f(x_chunk, y_chunk)` over matching chunks of `x` and `y`, on threads when large.
fn chunked(x: &[f32], y: &mut [f32], f: &(dyn Fn(&[f32], &mut [f32]) + Sync)) {
    let n = y.len();
    let len = task_len(n, num_threads());
    if n <= len {
        f(x, y);
        return;
    }
    parallel_chunks_mut(y, len, |t, y| {
        let lo = t * len;
        f(&x[lo..lo + y.len()], y);
    });
}

/// `y = op(x)`, chunked over threads when large.
pub(crate) fn unary(op: UnaryOp, x: &[f32], y: &mut [f32]) {
    chunked(x, y, &|x, y| unary_serial(op, x, y));
}

avx512_dispatch! {
    /// `y = op(x)` (AVX-512 when the CPU has it).
    fn unary_serial(op: UnaryOp, x: &[f32], y: &mut [f32]) = unary_body;
}

/// `y = op(x)`; dispatches once so every loop body is a constant op.
#[inline(always)]
fn unary_body(op: UnaryOp, x: &[f32], y: &mut [f32]) {
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
    let len = task_len(n, num_threads());
    if n <= len {
        unary_backward_serial(op, x, y, dy, dx);
        return;
    }
    parallel_chunks_mut(dx, len, |t, d| {
        let lo = t * len;
        let hi = lo + d.len();
        unary_backward_serial(op, &x[lo..hi], &y[lo..hi], &dy[lo..hi], d);
    });
}

/// `dx = dy * op'(x)`. ReLU's select stays on the baseline build: it is memory-bound and
/// measured ~5% slower with AVX-512 on Zen 4 (even with aligned stores or intrinsics).
fn unary_backward_serial(op: UnaryOp, x: &[f32], y: &[f32], dy: &[f32], dx: &mut [f32]) {
    match op {
        UnaryOp::Relu => unary_backward_body(op, x, y, dy, dx),
        _ => unary_backward_dispatch(op, x, y, dy, dx),
    }
}

avx512_dispatch! {
    /// `dx = dy * op'(x)` (AVX-512 when the CPU has it).
    fn unary_backward_dispatch(op: UnaryOp, x: &[f32], y: &[f32], dy: &[f32], dx: &mut [f32])
        = unary_backward_body;
}

/// `dx[i] = f(x[i], y[i], dy[i])` (an input `f` ignores is not read).
#[inline(always)]
fn map3(x: &[f32], y: &[f32], dy: &[f32], dx: &mut [f32], f: impl Fn(f32, f32, f32) -> f32) {
    let (n, h) = (dx.len(), head(dx));
    let (d0, d1) = dx.split_at_mut(h);
    for (lo, hi, d) in [(0, h, d0), (h, n, d1)] {
        let (x, y, dy) = (&x[lo..hi], &y[lo..hi], &dy[lo..hi]);
        for i in 0..hi - lo {
            d[i] = f(x[i], y[i], dy[i]);
        }
    }
}

/// `dx = dy * op'(x)`; dispatches once so every loop body is a constant op (inputs a gradient
/// does not use are not read).
#[inline(always)]
fn unary_backward_body(op: UnaryOp, x: &[f32], y: &[f32], dy: &[f32], dx: &mut [f32]) {
    macro_rules! grad {
        ($op:expr) => {
            map3(x, y, dy, dx, |x, y, g| $op.grad(x, y, g))
        };
    }
    match op {
        UnaryOp::Relu => map3(x, y, dy, dx, |x, _, g| if x > 0.0 { g } else { 0.0 }),
        UnaryOp::Scale(a) => map1(dy, dx, |g| g * a),
        UnaryOp::AddScalar(_) => dx.copy_from_slice(&dy[..dx.len()]),
        UnaryOp::Neg => map1(dy, dx, |g| -g),
        UnaryOp::Exp => grad!(UnaryOp::Exp),
        UnaryOp::Log => grad!(UnaryOp::Log),
        UnaryOp::Sqrt => grad!(UnaryOp::Sqrt),
        UnaryOp::Square => grad!(UnaryOp::Square),
        UnaryOp::Abs => grad!(UnaryOp::Abs),
        UnaryOp::Tanh => grad!(UnaryOp::Tanh),
        UnaryOp::Sigmoid => grad!(UnaryOp::Sigmoid),
        UnaryOp::Recip => grad!(UnaryOp::Recip),
    }
}

#[inline(always)]
fn zip2(a: &[f32], b: &[f32], out: &mut [f32], f: impl Fn(f32, f32) -> f32) {
    let h = head(out);
    let (o0, o1) = out.split_at_mut(h);
    for (a, b, out) in [(a, b, o0), (&a[h..], &b[h..], o1)] {
        for ((o, &a), &b) in out.iter_mut().zip(a).zip(b) {
            *o = f(a, b);
        }
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
            binary_same(op, &a[lo..lo + out.len()], &b[lo..lo + out.len()], out)
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

avx512_dispatch! {
    /// `out = a op b` for equal shapes (AVX-512 when the CPU has it).
    fn binary_same(op: BinaryOp, a: &[f32], b: &[f32], out: &mut [f32]) = binary_same_body;
}

/// `out = a op b` for equal shapes; dispatches once so every loop body is a constant op.
#[inline(always)]
fn binary_same_body(op: BinaryOp, a: &[f32], b: &[f32], out: &mut [f32]) {
    match op {
        BinaryOp::Add => zip2(a, b, out, |x, y| x + y),
        BinaryOp::Sub => zip2(a, b, out, |x, y| x - y),
        BinaryOp::Mul => zip2(a, b, out, |x, y| x * y),
        BinaryOp::Div => zip2(a, b, out, |x, y| x / y),
        BinaryOp::Maximum => zip2(a, b, out, |x, y| x.max(y)),
        BinaryOp::Minimum => zip2(a, b, out, |x, y| x.min(y)),
    }
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
        axpy_serial(alpha, &x[lo..lo + y.len()], y)
    });
}

avx512_dispatch! {
    /// `y += alpha * x` (AVX-512 when the CPU has it).
    fn axpy_serial(alpha: f32, x: &[f32], y: &mut [f32]) = axpy_body;
}

#[inline(always)]
fn axpy_body(alpha: f32, x: &[f32], y: &mut [f32]) {
    let h = head(y);
    let (y0, y1) = y.split_at_mut(h);
    for (x, y) in [(x, y0), (&x[h..], y1)] {
        for (y, &x) in y.iter_mut().zip(x) {
            *y += alpha * x;
        }
    }
}

/// Runs `f(offset, out_chunk)` over chunks of `out` ([`task_len`]), on threads when large.
fn chunked_out(n: usize, out: &mut [f32], f: &(dyn Fn(usize, &mut [f32]) + Sync)) {
    let len = task_len(n, num_threads());
    if n <= len {
        f(0, out);
        return;
    }
    parallel_chunks_mut(out, len, |t, out| f(t * len, out));
}

/// `out = sum_k w[k] * xs[k]`, chunk by chunk (the chunk stays in cache while the K inputs
/// are added).
pub(crate) fn weighted_sum(w: &[f32], xs: &[&[f32]], out: &mut [f32]) {
    chunked_out(out.len(), out, &|lo, out| {
        weighted_sum_chunk(w, xs, lo, out)
    });
}

avx512_dispatch! {
    /// `out = sum_k w[k] * xs[k][lo..]` (AVX-512 when the CPU has it).
    fn weighted_sum_chunk(w: &[f32], xs: &[&[f32]], lo: usize, out: &mut [f32])
        = weighted_sum_body;
}

/// `out = sum_k w[k] * xs[k][lo..]`, the terms added in input order, up to four inputs per
/// pass over `out`.
#[inline(always)]
fn weighted_sum_body(w: &[f32], xs: &[&[f32]], lo: usize, out: &mut [f32]) {
    let n = out.len();
    let Some(x0) = xs.first() else {
        out.fill(0.0);
        return;
    };
    map1(&x0[lo..lo + n], out, |v| w[0] * v);
    let x = |k: usize| &xs[k][lo..lo + n];
    let mut k = 1;
    while k < xs.len() {
        let m = (xs.len() - k).min(4);
        match m {
            1 => add_terms(out, [w[k]], [x(k)]),
            2 => add_terms(out, [w[k], w[k + 1]], [x(k), x(k + 1)]),
            3 => add_terms(out, [w[k], w[k + 1], w[k + 2]], [x(k), x(k + 1), x(k + 2)]),
            _ => add_terms(
                out,
                [w[k], w[k + 1], w[k + 2], w[k + 3]],
                [x(k), x(k + 1), x(k + 2), x(k + 3)],
            ),
        }
        k += m;
    }
}

/// `out[i] = (..(out[i] + w[0] * x[0][i]) + ..) + w[M-1] * x[M-1][i]` in one pass.
#[inline(always)]
fn add_terms<const M: usize>(out: &mut [f32], w: [f32; M], x: [&[f32]; M]) {
    let (n, h) = (out.len(), head(out));
    let (o0, o1) = out.split_at_mut(h);
    for (lo, hi, out) in [(0, h, o0), (h, n, o1)] {
        let x = x.map(|x| &x[lo..hi]);
        for i in 0..hi - lo {
            let mut o = out[i];
            for m in 0..M {
                o += w[m] * x[m][i];
            }
            out[i] = o;
        }
    }
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
    if k == 0 {
        return;
    }
    let chunks = n.div_ceil(CHUNK).max(1);
    // slot `t * k + j`: chunk t of dxs[j] (empty when n is 0) and its dot product
    let mut slots: Vec<(&mut [f32], f64)> = Vec::with_capacity(chunks * k);
    let mut pieces: Vec<_> = dxs.iter_mut().map(|d| d[..n].chunks_mut(CHUNK)).collect();
    for _ in 0..chunks {
        for p in &mut pieces {
            slots.push((p.next().unwrap_or_default(), 0.0));
        }
    }
    let task = |t: usize, row: &mut [(&mut [f32], f64)]| {
        let lo = t * CHUNK;
        let hi = (lo + CHUNK).min(n);
        for (j, (d, dot)) in row.iter_mut().enumerate() {
            *dot = scale_dot(w[j], &dy[lo..hi], &xs[j][lo..hi], d);
        }
    };
    if chunks == 1 {
        task(0, &mut slots);
    } else {
        parallel_chunks_mut(&mut slots, k, task);
    }
    for j in 0..k {
        dw[j] = (0..chunks).map(|t| slots[t * k + j].1).sum::<f64>() as f32;
    }
}

avx512_dispatch! {
    /// `d = w * g` and `<g, x>` in one pass (AVX-512 when the CPU has it).
    fn scale_dot(w: f32, g: &[f32], x: &[f32], d: &mut [f32]) -> f64
        = scale_dot_body::<16>, scale_dot_body::<64>;
}

/// `d = w * g` and `<g, x>`: `L` f32 partial sums per block of `64 * L` elements, the blocks
/// and the tail added up in f64.
#[inline(always)]
fn scale_dot_body<const L: usize>(w: f32, g: &[f32], x: &[f32], d: &mut [f32]) -> f64 {
    let block = 64 * L;
    let mut total = 0.0f64;
    for ((gb, xb), db) in g
        .chunks(block)
        .zip(x.chunks(block))
        .zip(d.chunks_mut(block))
    {
        let mut acc = [0.0f32; L];
        let (gc, gt) = gb.as_chunks::<L>();
        let (xc, xt) = xb.as_chunks::<L>();
        let (dc, dt) = db.as_chunks_mut::<L>();
        for ((g, x), d) in gc.iter().zip(xc).zip(dc) {
            for j in 0..L {
                d[j] = w * g[j];
                acc[j] += g[j] * x[j];
            }
        }
        let mut s = lane_sum(&acc);
        for ((&g, &x), d) in gt.iter().zip(xt).zip(dt) {
            *d = w * g;
            s += g as f64 * x as f64;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (((i * 37 + seed * 11) % 101) as f32 - 50.0) * 0.031)
            .collect()
    }

    fn same(a: &[f32], b: &[f32]) -> bool {
        a.iter()
            .zip(b)
            .all(|(x, y)| x == y || (x.is_nan() && y.is_nan()))
    }

    /// Threaded elementwise ops split into a multiple of the thread count of nearly equal
    /// tasks, each whole 64-byte lines and at most about `CHUNK`, covering the op.
    #[test]
    fn tasks_are_balanced_over_threads() {
        assert_eq!(task_len(CHUNK, 2), CHUNK);
        assert_eq!(task_len(CHUNK + 1, 1), CHUNK + 1);
        assert_eq!(task_len(401_408, 2), 50_176);
        for threads in [2usize, 3, 4, 16] {
            for n in [CHUNK + 1, 100_352, 200_704, 401_408, 1_000_003, 3 * CHUNK] {
                let len = task_len(n, threads);
                let tasks = n.div_ceil(len);
                assert!(len.is_multiple_of(16), "n {n} threads {threads}: {len}");
                assert!(len <= CHUNK + 15, "n {n} threads {threads}: {len}");
                assert!(
                    tasks.is_multiple_of(threads),
                    "n {n} threads {threads}: {tasks}"
                );
                // the last task is within one line per task of the others
                let last = n - (tasks - 1) * len;
                assert!(
                    last + 16 * tasks >= len,
                    "n {n} threads {threads}: {last} {len}"
                );
            }
        }
    }

    /// The portable bodies (what CPUs without AVX-512 run) against the dispatched kernels (the
    /// AVX-512 build of the same loops where the CPU has it), on lengths around the vector
    /// widths.
    #[test]
    fn portable_bodies_match_dispatched_kernels() {
        let unary_ops = super::super::tests::UNARY;
        let binary_ops = [
            BinaryOp::Add,
            BinaryOp::Sub,
            BinaryOp::Mul,
            BinaryOp::Div,
            BinaryOp::Maximum,
            BinaryOp::Minimum,
        ];
        for n in [0usize, 1, 15, 16, 17, 63, 65, 1000, 5003] {
            let (a, b, c) = (data(n, 1), data(n, 2), data(n, 3));
            let (mut p, mut d) = (vec![0.0; n], vec![0.0; n]);
            for op in unary_ops {
                unary_body(op, &a, &mut p);
                unary_serial(op, &a, &mut d);
                assert!(same(&p, &d), "{op:?} n={n}");
                unary_backward_body(op, &a, &b, &c, &mut p);
                unary_backward_dispatch(op, &a, &b, &c, &mut d);
                assert!(same(&p, &d), "{op:?} backward n={n}");
            }
            for op in binary_ops {
                binary_same_body(op, &a, &b, &mut p);
                binary_same(op, &a, &b, &mut d);
                assert!(same(&p, &d), "{op:?} n={n}");
            }
            p.copy_from_slice(&c);
            d.copy_from_slice(&c);
            axpy_body(0.75, &a, &mut p);
            axpy_serial(0.75, &a, &mut d);
            assert!(same(&p, &d), "axpy n={n}");
            let xs: Vec<Vec<f32>> = (0..7).map(|k| data(n + 3, k + 4)).collect();
            let xr: Vec<&[f32]> = xs.iter().map(|x| x.as_slice()).collect();
            let w: Vec<f32> = (0..7).map(|k| 0.3 * k as f32 - 0.7).collect();
            for k in 0..=7 {
                weighted_sum_body(&w, &xr[..k], 3, &mut p);
                weighted_sum_chunk(&w, &xr[..k], 3, &mut d);
                assert!(same(&p, &d), "weighted_sum k={k} n={n}");
                for i in 0..n {
                    let want = (1..k)
                        .fold(if k == 0 { 0.0 } else { w[0] * xs[0][i + 3] }, |o, j| {
                            o + w[j] * xs[j][i + 3]
                        });
                    assert_eq!(p[i], want, "weighted_sum order k={k} n={n}");
                }
            }
            let sp = scale_dot_body::<16>(-0.5, &a, &b, &mut p);
            let sd = scale_dot(-0.5, &a, &b, &mut d);
            assert!(same(&p, &d), "scale_dot n={n}");
            let want: f64 = a.iter().zip(&b).map(|(&x, &y)| x as f64 * y as f64).sum();
            for s in [sp, sd] {
                assert!(
                    (s - want).abs() <= 1e-6 * (1.0 + want.abs()),
                    "{s} {want} n={n}"
                );
            }
        }
    }
}
