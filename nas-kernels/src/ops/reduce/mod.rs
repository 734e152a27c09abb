//! Reductions (sum, mean, max; over everything or along one axis), softmax and log-softmax
//! along the last axis, and cross-entropy with integer labels.

pub(crate) mod cpu_kernel;
#[cfg(feature = "cuda")]
pub(crate) mod cuda_kernel;

/// A reduction along one axis or over the whole tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReduceOp {
    /// Sum (accumulated in f64).
    Sum,
    /// Arithmetic mean (accumulated in f64).
    Mean,
    /// Maximum; its gradient goes to the first position holding the maximum.
    Max,
}

/// Softmax or log-softmax over the last axis of a `rows x cols` matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SoftmaxOp {
    /// `y_j = exp(x_j - max) / sum_k exp(x_k - max)`.
    Softmax,
    /// `y_j = x_j - max - log(sum_k exp(x_k - max))`.
    LogSoftmax,
}

/// Splits `shape` around `axis` into `(outer, len, inner)`.
pub fn axis_split(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    let outer = shape[..axis].iter().product();
    let inner = shape[axis + 1..].iter().product();
    (outer, shape[axis], inner)
}

/// `(outer, len, inner)` of a reduction of `len` values of `shape` along `axis` (everything
/// when `None`); `axis` is in range (checked by [`Backend::reduce`](crate::Backend::reduce)).
pub(crate) fn dims(len: usize, shape: &[usize], axis: Option<usize>) -> (usize, usize, usize) {
    match axis {
        None => (1, len, 1),
        Some(a) => axis_split(shape, a),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Backend, Cpu, KernelError};
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]
        #[test]
        fn reduce_matches_naive(shape in prop::collection::vec(1usize..6, 1..4), ax in 0usize..4, seed in 0u32..100) {
            let n: usize = shape.iter().product();
            let x: Vec<f32> = (0..n).map(|i| (((i as u32 * 2654435761u32) ^ seed) % 1000) as f32 / 100.0 - 5.0).collect();
            let axis = ax % shape.len();
            let (outer, len, inner) = axis_split(&shape, axis);
            for op in [ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max] {
                let mut y = vec![0.0; outer * inner];
                Cpu.reduce(op, &x, &shape, Some(axis), &mut y).unwrap();
                for o in 0..outer {
                    for i in 0..inner {
                        let vals: Vec<f64> = (0..len).map(|l| x[(o * len + l) * inner + i] as f64).collect();
                        let want = match op {
                            ReduceOp::Sum => vals.iter().sum::<f64>(),
                            ReduceOp::Mean => vals.iter().sum::<f64>() / len as f64,
                            ReduceOp::Max => vals.iter().cloned().fold(f64::MIN, f64::max),
                        };
                        prop_assert!((y[o * inner + i] as f64 - want).abs() < 1e-4);
                    }
                }
                // backward vs finite differences of the forward, probed with dy
                let dy: Vec<f32> = (0..outer * inner).map(|i| 0.5 + i as f32 * 0.25).collect();
                let mut dx = vec![0.0; n];
                Cpu.reduce_backward(op, &x, &y, &shape, Some(axis), &dy, &mut dx).unwrap();
                let loss = |x: &Vec<f32>| -> f64 {
                    let mut y = vec![0.0; outer * inner];
                    Cpu.reduce(op, x, &shape, Some(axis), &mut y).unwrap();
                    y.iter().zip(&dy).map(|(a, b)| *a as f64 * *b as f64).sum()
                };
                for j in 0..n {
                    // values are on a 0.01 grid, distinct maxima are >= 0.01 apart: h = 1e-3 is safe
                    // unless there is a tie, which FD cannot resolve; skip ties for Max.
                    let h = 1e-3f32;
                    let mut xp = x.clone(); xp[j] += h;
                    let mut xm = x.clone(); xm[j] -= h;
                    let fd = (loss(&xp) - loss(&xm)) / (2.0 * h as f64);
                    if op == ReduceOp::Max && (fd - dx[j] as f64).abs() > 1e-2 {
                        // only acceptable when x[j] ties the max of its slice
                        let o = j / (len * inner);
                        let i = j % inner;
                        let m = (0..len).map(|l| x[(o * len + l) * inner + i]).fold(f32::MIN, f32::max);
                        let ties = (0..len).filter(|&l| x[(o * len + l) * inner + i] == m).count();
                        prop_assert!(ties > 1 && x[j] == m);
                    } else {
                        prop_assert!((fd - dx[j] as f64).abs() < 1e-2 * (1.0 + fd.abs()), "{:?} j={} fd={} dx={}", op, j, fd, dx[j]);
                    }
                }
            }
            let mut all = vec![0.0; 1];
            Cpu.reduce(ReduceOp::Sum, &x, &shape, None, &mut all).unwrap();
            let want: f64 = x.iter().map(|&v| v as f64).sum();
            prop_assert!((all[0] as f64 - want).abs() < 1e-3);
        }
    }

    #[test]
    fn reduce_errors() {
        let x = vec![0.0; 6];
        let mut y = vec![0.0; 2];
        assert!(matches!(
            Cpu.reduce(ReduceOp::Sum, &x, &[2, 3], Some(2), &mut y),
            Err(KernelError::InvalidParam { .. })
        ));
        assert!(matches!(
            Cpu.reduce(ReduceOp::Sum, &x, &[2, 3], Some(0), &mut y),
            Err(KernelError::LengthMismatch { what: "out", .. })
        ));
        assert!(
            Cpu.reduce(ReduceOp::Sum, &x, &[2, 3], None, &mut y)
                .is_err()
        );
    }

    fn fd_check_rows(
        rows: usize,
        cols: usize,
        f: impl Fn(&Vec<f32>) -> f64,
        x: &[f32],
        grad: &[f32],
    ) {
        for j in 0..rows * cols {
            let h = 1e-2f32;
            let mut xp = x.to_vec();
            xp[j] += h;
            let mut xm = x.to_vec();
            xm[j] -= h;
            let fd = (f(&xp) - f(&xm)) / (2.0 * h as f64);
            assert!(
                (fd - grad[j] as f64).abs() < 2e-3 * (1.0 + fd.abs()),
                "j={j} fd={fd} got={}",
                grad[j]
            );
        }
    }

    #[test]
    fn softmax_forward_backward() {
        for (rows, cols) in [(1usize, 1usize), (3, 7), (2, 17), (4, 1)] {
            let x: Vec<f32> = (0..rows * cols)
                .map(|i| ((i * 37) % 23) as f32 * 0.3 - 3.0)
                .collect();
            let dy: Vec<f32> = (0..rows * cols)
                .map(|i| ((i * 11) % 7) as f32 * 0.2 - 0.5)
                .collect();
            for op in [SoftmaxOp::Softmax, SoftmaxOp::LogSoftmax] {
                let mut y = vec![0.0; rows * cols];
                Cpu.softmax(op, &x, rows, cols, &mut y).unwrap();
                for r in 0..rows {
                    let row = &x[r * cols..(r + 1) * cols];
                    let lse = row.iter().map(|&v| (v as f64).exp()).sum::<f64>().ln();
                    for c in 0..cols {
                        let want = match op {
                            SoftmaxOp::Softmax => (row[c] as f64 - lse).exp(),
                            SoftmaxOp::LogSoftmax => row[c] as f64 - lse,
                        };
                        assert!((y[r * cols + c] as f64 - want).abs() < 1e-5);
                    }
                }
                let mut dx = vec![0.0; rows * cols];
                Cpu.softmax_backward(op, &y, &dy, rows, cols, &mut dx)
                    .unwrap();
                let loss = |x: &Vec<f32>| {
                    let mut y = vec![0.0; rows * cols];
                    Cpu.softmax(op, x, rows, cols, &mut y).unwrap();
                    y.iter()
                        .zip(&dy)
                        .map(|(a, b)| *a as f64 * *b as f64)
                        .sum::<f64>()
                };
                fd_check_rows(rows, cols, loss, &x, &dx);
            }
        }
        // big logits stay finite
        let mut y = vec![0.0; 2];
        Cpu.softmax(SoftmaxOp::Softmax, &[1000.0, 999.0], 1, 2, &mut y)
            .unwrap();
        assert!((y[0] - 0.7310586).abs() < 1e-6);
    }

    #[test]
    fn cross_entropy_forward_backward() {
        let (rows, cols) = (5usize, 7usize);
        let x: Vec<f32> = (0..rows * cols)
            .map(|i| ((i * 29) % 19) as f32 * 0.25 - 2.0)
            .collect();
        let labels = vec![0usize, 6, 3, 3, 1];
        let mut loss = vec![0.0];
        Cpu.cross_entropy(&x, &labels, rows, cols, &mut loss)
            .unwrap();
        let mut want = 0.0f64;
        for r in 0..rows {
            let row = &x[r * cols..(r + 1) * cols];
            let lse = row.iter().map(|&v| (v as f64).exp()).sum::<f64>().ln();
            want += lse - row[labels[r]] as f64;
        }
        want /= rows as f64;
        assert!((loss[0] as f64 - want).abs() < 1e-5);
        let mut dx = vec![0.0; rows * cols];
        Cpu.cross_entropy_backward(&x, &labels, rows, cols, &[1.5], &mut dx)
            .unwrap();
        let f = |x: &Vec<f32>| {
            let mut l = vec![0.0];
            Cpu.cross_entropy(x, &labels, rows, cols, &mut l).unwrap();
            1.5 * l[0] as f64
        };
        fd_check_rows(rows, cols, f, &x, &dx);
        assert!(matches!(
            Cpu.cross_entropy(&x, &[0, 7, 0, 0, 0], rows, cols, &mut loss),
            Err(KernelError::InvalidParam { .. })
        ));
        assert!(
            Cpu.cross_entropy(&x, &[0, 1], rows, cols, &mut loss)
                .is_err()
        );
    }
}
