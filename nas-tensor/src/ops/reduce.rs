//! Reductions (sum, mean, sum over one dim), softmax, log-softmax and cross-entropy.

use nas_kernels::{Backend, ReduceOp, SoftmaxOp};

use crate::buf::Buf;
use crate::error::{Result, TensorError, arg_err, shape_err};
use crate::ops::cpu;
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

fn reduce(
    t: &Tensor,
    op: ReduceOp,
    name: &'static str,
    axis: Option<usize>,
    out_shape: Vec<usize>,
) -> Result<Tensor> {
    if t.numel() == 0 {
        return arg_err(
            name,
            format!("reduction of an empty tensor of shape {:?}", t.shape()),
        );
    }
    let out_len = out_shape.iter().product();
    let mut y = Buf::zeros(out_len);
    cpu().reduce(op, t.read().as_vec(), t.shape(), axis, y.as_vec_mut())?;
    let xc = t.clone();
    let yc = if op == ReduceOp::Max && Tensor::will_record(&[t]) {
        Some(y.clone())
    } else {
        None
    };
    Ok(Tensor::from_op(
        name,
        out_shape,
        t.device(),
        y,
        &[t],
        move |g, _| {
            let x = xc.read();
            let y = yc.unwrap_or_else(|| Buf::zeros(out_len));
            let mut dx = Buf::zeros(x.len());
            cpu().reduce_backward(
                op,
                x.as_vec(),
                y.as_vec(),
                xc.shape(),
                axis,
                g.as_vec(),
                dx.as_vec_mut(),
            )?;
            Ok(vec![Some(dx)])
        },
    ))
}

impl Tensor {
    /// Sum of all elements (a scalar of shape `[]`; 0 for an empty tensor).
    pub fn sum(&self) -> Tensor {
        if self.numel() == 0 {
            return Tensor::scalar(0.0);
        }
        reduce(self, ReduceOp::Sum, "sum", None, vec![]).expect("sum of a non-empty tensor")
    }

    /// Mean of all elements (a scalar of shape `[]`).
    pub fn mean(&self) -> Result<Tensor> {
        reduce(self, ReduceOp::Mean, "mean", None, vec![])
    }

    fn reduce_dim(
        &self,
        op: ReduceOp,
        name: &'static str,
        dim: usize,
        keepdim: bool,
    ) -> Result<Tensor> {
        split_at_dim(name, self.shape(), dim)?;
        let mut shape = self.shape().to_vec();
        if keepdim {
            shape[dim] = 1;
        } else {
            shape.remove(dim);
        }
        reduce(self, op, name, Some(dim), shape)
    }

    /// Sum over dimension `dim` (removed from the shape, or kept as size 1 with `keepdim`).
    pub fn sum_dim(&self, dim: usize, keepdim: bool) -> Result<Tensor> {
        self.reduce_dim(ReduceOp::Sum, "sum_dim", dim, keepdim)
    }

    /// Mean over dimension `dim`.
    pub fn mean_dim(&self, dim: usize, keepdim: bool) -> Result<Tensor> {
        self.reduce_dim(ReduceOp::Mean, "mean_dim", dim, keepdim)
    }

    /// Maximum over dimension `dim` (the gradient goes to the first maximum).
    pub fn max_dim(&self, dim: usize, keepdim: bool) -> Result<Tensor> {
        self.reduce_dim(ReduceOp::Max, "max_dim", dim, keepdim)
    }

    fn softmax_impl(&self, op: SoftmaxOp, name: &'static str, dim: usize) -> Result<Tensor> {
        let (outer, d, inner) = split_at_dim(name, self.shape(), dim)?;
        if inner != 1 {
            // Not the last axis (after squeezing trailing ones): move `dim` last, apply, move
            // it back. Both moves are differentiable permutations.
            let moved = self.move_dim_last(dim)?;
            let y = moved.softmax_impl(op, name, moved.ndim() - 1)?;
            return y.move_last_dim_to(dim);
        }
        let mut y = Buf::zeros(self.numel());
        cpu().softmax(op, self.read().as_vec(), outer, d, y.as_vec_mut())?;
        let yc = if Tensor::will_record(&[self]) {
            y.clone()
        } else {
            Buf::zeros(0)
        };
        Ok(Tensor::from_op(
            name,
            self.shape().to_vec(),
            self.device(),
            y,
            &[self],
            move |g, _| {
                let mut dx = Buf::zeros(yc.len());
                cpu().softmax_backward(op, yc.as_vec(), g.as_vec(), outer, d, dx.as_vec_mut())?;
                Ok(vec![Some(dx)])
            },
        ))
    }

    /// Softmax along `dim`.
    pub fn softmax(&self, dim: usize) -> Result<Tensor> {
        self.softmax_impl(SoftmaxOp::Softmax, "softmax", dim)
    }

    /// Log-softmax along `dim` (computed stably).
    pub fn log_softmax(&self, dim: usize) -> Result<Tensor> {
        self.softmax_impl(SoftmaxOp::LogSoftmax, "log_softmax", dim)
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
        let mut loss = Buf::zeros(1);
        cpu().cross_entropy(self.read().as_vec(), labels, n, c, loss.as_vec_mut())?;
        let labels = labels.to_vec();
        let xc = self.clone();
        Ok(Tensor::from_op(
            "cross_entropy",
            vec![],
            self.device(),
            loss,
            &[self],
            move |g, _| {
                let mut dx = Buf::zeros(n * c);
                cpu().cross_entropy_backward(
                    xc.read().as_vec(),
                    &labels,
                    n,
                    c,
                    g.as_vec(),
                    dx.as_vec_mut(),
                )?;
                Ok(vec![Some(dx)])
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
