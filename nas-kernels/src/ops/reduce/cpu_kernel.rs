//! CPU kernels for reductions, softmax and cross-entropy. Lengths validated by [`crate::Cpu`].

use super::{ReduceOp, SoftmaxOp};

/// Reduces `x`, seen as `outer x len x inner`, over the middle axis into `out` (`outer x inner`).
pub(crate) fn reduce(
    op: ReduceOp,
    x: &[f32],
    outer: usize,
    len: usize,
    inner: usize,
    out: &mut [f32],
) {
    match op {
        ReduceOp::Sum | ReduceOp::Mean => {
            let scale = if op == ReduceOp::Mean {
                1.0 / len as f64
            } else {
                1.0
            };
            let mut acc = vec![0.0f64; inner];
            for o in 0..outer {
                acc.fill(0.0);
                for l in 0..len {
                    let row = &x[(o * len + l) * inner..(o * len + l + 1) * inner];
                    for (a, &v) in acc.iter_mut().zip(row) {
                        *a += v as f64;
                    }
                }
                for (y, a) in out[o * inner..(o + 1) * inner].iter_mut().zip(&acc) {
                    *y = (a * scale) as f32;
                }
            }
        }
        ReduceOp::Max => {
            for o in 0..outer {
                let y = &mut out[o * inner..(o + 1) * inner];
                y.fill(f32::NEG_INFINITY);
                for l in 0..len {
                    let row = &x[(o * len + l) * inner..(o * len + l + 1) * inner];
                    for (a, &v) in y.iter_mut().zip(row) {
                        if v > *a {
                            *a = v;
                        }
                    }
                }
            }
        }
    }
}

/// Backward of [`reduce`]: `dx` gets `dy` spread over the reduced axis.
pub(crate) fn reduce_backward(
    op: ReduceOp,
    x: &[f32],
    y: &[f32],
    outer: usize,
    len: usize,
    inner: usize,
    dy: &[f32],
    dx: &mut [f32],
) {
    match op {
        ReduceOp::Sum | ReduceOp::Mean => {
            let scale = if op == ReduceOp::Mean {
                1.0 / len as f32
            } else {
                1.0
            };
            for o in 0..outer {
                let g = &dy[o * inner..(o + 1) * inner];
                for l in 0..len {
                    let d = &mut dx[(o * len + l) * inner..(o * len + l + 1) * inner];
                    for (d, &g) in d.iter_mut().zip(g) {
                        *d = g * scale;
                    }
                }
            }
        }
        ReduceOp::Max => {
            dx.fill(0.0);
            for o in 0..outer {
                for i in 0..inner {
                    let m = y[o * inner + i];
                    for l in 0..len {
                        let j = (o * len + l) * inner + i;
                        if x[j] == m {
                            dx[j] = dy[o * inner + i];
                            break;
                        }
                    }
                }
            }
        }
    }
}

/// Row-wise softmax or log-softmax.
pub(crate) fn softmax(op: SoftmaxOp, x: &[f32], cols: usize, y: &mut [f32]) {
    if cols == 0 {
        return;
    }
    for (xr, yr) in x.chunks_exact(cols).zip(y.chunks_exact_mut(cols)) {
        let m = xr.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let mut s = 0.0f64;
        for (y, &v) in yr.iter_mut().zip(xr) {
            let e = (v - m).exp();
            *y = e;
            s += e as f64;
        }
        match op {
            SoftmaxOp::Softmax => {
                let inv = (1.0 / s) as f32;
                for y in yr.iter_mut() {
                    *y *= inv;
                }
            }
            SoftmaxOp::LogSoftmax => {
                let lse = m + s.ln() as f32;
                for (y, &v) in yr.iter_mut().zip(xr) {
                    *y = v - lse;
                }
            }
        }
    }
}

/// Backward of [`softmax`] from its output `y`.
pub(crate) fn softmax_backward(op: SoftmaxOp, y: &[f32], dy: &[f32], cols: usize, dx: &mut [f32]) {
    if cols == 0 {
        return;
    }
    for ((yr, gr), dr) in y
        .chunks_exact(cols)
        .zip(dy.chunks_exact(cols))
        .zip(dx.chunks_exact_mut(cols))
    {
        match op {
            SoftmaxOp::Softmax => {
                let s: f64 = yr.iter().zip(gr).map(|(&a, &b)| a as f64 * b as f64).sum();
                let s = s as f32;
                for ((d, &y), &g) in dr.iter_mut().zip(yr).zip(gr) {
                    *d = y * (g - s);
                }
            }
            SoftmaxOp::LogSoftmax => {
                let s: f64 = gr.iter().map(|&g| g as f64).sum();
                let s = s as f32;
                for ((d, &y), &g) in dr.iter_mut().zip(yr).zip(gr) {
                    *d = g - y.exp() * s;
                }
            }
        }
    }
}

/// Mean over rows of `logsumexp(row) - row[label]`.
pub(crate) fn cross_entropy(x: &[f32], labels: &[usize], cols: usize) -> f32 {
    let rows = labels.len();
    let mut total = 0.0f64;
    for (r, &lab) in labels.iter().enumerate() {
        let xr = &x[r * cols..(r + 1) * cols];
        let m = xr.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let s: f64 = xr.iter().map(|&v| ((v - m) as f64).exp()).sum();
        total += m as f64 + s.ln() - xr[lab] as f64;
    }
    (total / rows as f64) as f32
}

/// `dx = dloss / rows * (softmax(x) - onehot(label))`.
pub(crate) fn cross_entropy_backward(
    x: &[f32],
    labels: &[usize],
    cols: usize,
    dloss: f32,
    dx: &mut [f32],
) {
    let rows = labels.len();
    let scale = dloss / rows as f32;
    for (r, &lab) in labels.iter().enumerate() {
        let xr = &x[r * cols..(r + 1) * cols];
        let dr = &mut dx[r * cols..(r + 1) * cols];
        softmax(SoftmaxOp::Softmax, xr, cols, dr);
        dr[lab] -= 1.0;
        for d in dr.iter_mut() {
            *d *= scale;
        }
    }
}
