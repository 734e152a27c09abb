//! Reductions (sum, mean, sum over one dim), softmax, log-softmax and cross-entropy.

use crate::buf::Buf;
use crate::error::{Result, TensorError, arg_err, shape_err};
use crate::tensor::Tensor;

/// Splits `shape` around `dim` into (outer, size of dim, inner).
pub(crate) fn split_at_dim(
    op: &'static str,
    shape: &[usize],
    dim: usize,
) -> Result<(usize, usize, usize)> {
    if dim >= shape.len() {
        return Err(TensorError::InvalidArgument {
            op,
            detail: format!("dim {dim} out of range for shape {shape:?}"),
        });
    }
    let outer = shape[..dim].iter().product();
    let inner = shape[dim + 1..].iter().product();
    Ok((outer, shape[dim], inner))
}

impl Tensor {
    /// Sum of all elements (a scalar of shape `[]`).
    pub fn sum(&self) -> Tensor {
        let s: f64 = self.read().iter().map(|&x| x as f64).sum();
        let n = self.numel();
        Tensor::from_op(
            "sum",
            vec![],
            self.device(),
            Buf::from_vec(vec![s as f32]),
            &[self],
            move |g, _| Ok(vec![Some(Buf::full(n, g[0]))]),
        )
    }

    /// Mean of all elements (a scalar of shape `[]`).
    pub fn mean(&self) -> Result<Tensor> {
        let n = self.numel();
        if n == 0 {
            return arg_err("mean", "mean of an empty tensor");
        }
        let s: f64 = self.read().iter().map(|&x| x as f64).sum();
        Ok(Tensor::from_op(
            "mean",
            vec![],
            self.device(),
            Buf::from_vec(vec![(s / n as f64) as f32]),
            &[self],
            move |g, _| Ok(vec![Some(Buf::full(n, g[0] / n as f32))]),
        ))
    }

    /// Sum over dimension `dim` (removed from the shape, or kept as size 1 with `keepdim`).
    pub fn sum_dim(&self, dim: usize, keepdim: bool) -> Result<Tensor> {
        let (outer, d, inner) = split_at_dim("sum_dim", self.shape(), dim)?;
        let mut out = Buf::zeros(outer * inner);
        {
            let x = self.read();
            for o in 0..outer {
                for j in 0..d {
                    let src = &x[(o * d + j) * inner..(o * d + j + 1) * inner];
                    let dst = &mut out[o * inner..(o + 1) * inner];
                    dst.iter_mut().zip(src).for_each(|(a, b)| *a += b);
                }
            }
        }
        let mut shape = self.shape().to_vec();
        if keepdim {
            shape[dim] = 1;
        } else {
            shape.remove(dim);
        }
        Ok(Tensor::from_op(
            "sum_dim",
            shape,
            self.device(),
            out,
            &[self],
            move |g, _| {
                let mut gx = Buf::zeros(outer * d * inner);
                for o in 0..outer {
                    for j in 0..d {
                        gx[(o * d + j) * inner..(o * d + j + 1) * inner]
                            .copy_from_slice(&g[o * inner..(o + 1) * inner]);
                    }
                }
                Ok(vec![Some(gx)])
            },
        ))
    }

    /// Softmax along `dim`.
    pub fn softmax(&self, dim: usize) -> Result<Tensor> {
        let (outer, d, inner) = split_at_dim("softmax", self.shape(), dim)?;
        let y = softmax_fwd(&self.read(), outer, d, inner, false);
        let yc = Buf::copy_from(&y);
        Ok(Tensor::from_op(
            "softmax",
            self.shape().to_vec(),
            self.device(),
            y,
            &[self],
            move |g, _| {
                // dx = y * (g - sum_j g_j y_j)
                let mut gx = Buf::zeros(yc.len());
                for o in 0..outer {
                    for i in 0..inner {
                        let at = |j: usize| (o * d + j) * inner + i;
                        let dot: f32 = (0..d).map(|j| g[at(j)] * yc[at(j)]).sum();
                        for j in 0..d {
                            gx[at(j)] = yc[at(j)] * (g[at(j)] - dot);
                        }
                    }
                }
                Ok(vec![Some(gx)])
            },
        ))
    }

    /// Log-softmax along `dim` (computed stably).
    pub fn log_softmax(&self, dim: usize) -> Result<Tensor> {
        let (outer, d, inner) = split_at_dim("log_softmax", self.shape(), dim)?;
        let y = softmax_fwd(&self.read(), outer, d, inner, true);
        let yc = Buf::copy_from(&y);
        Ok(Tensor::from_op(
            "log_softmax",
            self.shape().to_vec(),
            self.device(),
            y,
            &[self],
            move |g, _| {
                // dx = g - softmax * sum_j g_j
                let mut gx = Buf::zeros(yc.len());
                for o in 0..outer {
                    for i in 0..inner {
                        let at = |j: usize| (o * d + j) * inner + i;
                        let s: f32 = (0..d).map(|j| g[at(j)]).sum();
                        for j in 0..d {
                            gx[at(j)] = g[at(j)] - yc[at(j)].exp() * s;
                        }
                    }
                }
                Ok(vec![Some(gx)])
            },
        ))
    }

    /// Mean cross-entropy of logits `[n, classes]` against integer class labels (PyTorch's
    /// `F.cross_entropy` with `reduction="mean"`).
    pub fn cross_entropy(&self, labels: &[usize]) -> Result<Tensor> {
        let s = self.shape();
        if s.len() != 2 || s[0] != labels.len() {
            return shape_err(
                "cross_entropy",
                format!(
                    "need logits [n, classes] with n = {} labels, got {s:?}",
                    labels.len()
                ),
            );
        }
        let (n, c) = (s[0], s[1]);
        if n == 0 {
            return arg_err("cross_entropy", "empty batch");
        }
        if let Some((i, &l)) = labels.iter().enumerate().find(|&(_, &l)| l >= c) {
            return arg_err(
                "cross_entropy",
                format!("label {l} at position {i} is not below {c} classes"),
            );
        }
        let logp = softmax_fwd(&self.read(), n, c, 1, true);
        let loss: f64 = labels
            .iter()
            .enumerate()
            .map(|(i, &l)| -(logp[i * c + l] as f64))
            .sum::<f64>()
            / n as f64;
        let labels = labels.to_vec();
        Ok(Tensor::from_op(
            "cross_entropy",
            vec![],
            self.device(),
            Buf::from_vec(vec![loss as f32]),
            &[self],
            move |g, _| {
                let scale = g[0] / n as f32;
                let mut gx = Buf::zeros(n * c);
                for i in 0..n {
                    for j in 0..c {
                        gx[i * c + j] = logp[i * c + j].exp() * scale;
                    }
                    gx[i * c + labels[i]] -= scale;
                }
                Ok(vec![Some(gx)])
            },
        ))
    }

    /// Indices of the largest value in each row of a `[n, classes]` tensor.
    pub fn argmax_rows(&self) -> Result<Vec<usize>> {
        let s = self.shape();
        if s.len() != 2 || s[1] == 0 {
            return shape_err("argmax_rows", format!("need [n, classes>0], got {s:?}"));
        }
        let c = s[1];
        Ok(self.with_data(|d| {
            d.chunks(c)
                .map(|row| {
                    let mut best = 0;
                    for j in 1..c {
                        if row[j] > row[best] {
                            best = j;
                        }
                    }
                    best
                })
                .collect()
        }))
    }
}

fn softmax_fwd(x: &[f32], outer: usize, d: usize, inner: usize, log: bool) -> Buf {
    let mut y = Buf::zeros(x.len());
    for o in 0..outer {
        for i in 0..inner {
            let at = |j: usize| (o * d + j) * inner + i;
            let m = (0..d).map(|j| x[at(j)]).fold(f32::NEG_INFINITY, f32::max);
            let s: f32 = (0..d).map(|j| (x[at(j)] - m).exp()).sum();
            let ls = s.ln();
            for j in 0..d {
                y[at(j)] = if log {
                    x[at(j)] - m - ls
                } else {
                    (x[at(j)] - m).exp() / s
                };
            }
        }
    }
    y
}
