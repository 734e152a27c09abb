//! Reductions (sum, mean, sum over one dim), softmax, log-softmax and cross-entropy.

use nas_kernels::{ReduceOp, SoftmaxOp};

use crate::error::{Result, TensorError, arg_err, shape_err};
use crate::storage::{self, Storage};
use crate::tensor::{Data, Tensor, new_data};

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
    let mut y = Storage::alloc(t.device(), out_len)?;
    storage::reduce(op, &t.read(), t.shape(), axis, &mut y)?;
    let xc = t.clone();
    let y = new_data(y);
    // Max's gradient reads its output (shared, not copied); sum and mean read nothing of it.
    let yc: Option<Data> = (op == ReduceOp::Max).then(|| y.clone());
    Ok(Tensor::from_op_data(
        name,
        out_shape,
        y,
        &[t],
        move |g, _| {
            let x = xc.read();
            // the shared output (max), or zeros that sum and mean never read
            let (kept, unused);
            let y: &Storage = match &yc {
                Some(y) => {
                    kept = y.read().unwrap_or_else(|e| e.into_inner());
                    &kept
                }
                None => {
                    unused = Storage::zeros(g.device(), out_len)?;
                    &unused
                }
            };
            let mut dx = Storage::zeros(g.device(), x.len())?;
            storage::reduce_backward(op, &x, y, xc.shape(), axis, g, &mut dx)?;
            Ok(vec![Some(dx)])
        },
    ))
}

impl Tensor {
    /// Sum of all elements (a scalar of shape `[]`; 0 for an empty tensor).
    pub fn sum(&self) -> Tensor {
        if self.numel() == 0 {
            return Tensor::full_on(&[], 0.0, self.device())
                .unwrap_or_else(|_| Tensor::scalar(0.0));
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
        let mut y = Storage::alloc(self.device(), self.numel())?;
        storage::softmax(op, &self.read(), outer, d, &mut y)?;
        // The gradient reads the output: shared with the result, not copied.
        let y = new_data(y);
        let yc = y.clone();
        Ok(Tensor::from_op_data(
            name,
            self.shape().to_vec(),
            y,
            &[self],
            move |g, _| {
                let yv = yc.read().unwrap_or_else(|e| e.into_inner());
                let mut dx = Storage::alloc(g.device(), yv.len())?;
                storage::softmax_backward(op, &yv, g, outer, d, &mut dx)?;
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
        let mut loss = Storage::alloc(self.device(), 1)?;
        storage::cross_entropy(&self.read(), labels, n, c, &mut loss)?;
        let labels = labels.to_vec();
        let xc = self.clone();
        Ok(Tensor::from_op(
            "cross_entropy",
            vec![],
            loss,
            &[self],
            move |g, _| {
                let mut dx = Storage::alloc(g.device(), n * c)?;
                storage::cross_entropy_backward(&xc.read(), &labels, n, c, g, &mut dx)?;
                Ok(vec![Some(dx)])
            },
        ))
    }

    /// Indices of the largest value in each row of a `[n, classes]` tensor (the first on
    /// ties), computed on the device and copied to the host (`n` values).
    pub fn argmax_rows(&self) -> Result<Vec<usize>> {
        let s = self.shape();
        if s.len() != 2 || s[1] == 0 {
            return shape_err("argmax_rows", format!("need [n, classes>0], got {s:?}"));
        }
        let mut out = Storage::alloc(self.device(), s[0])?;
        storage::argmax_rows(&self.read(), s[0], s[1], &mut out)?;
        Ok(out.to_vec()?.into_iter().map(|i| i as usize).collect())
    }
}
