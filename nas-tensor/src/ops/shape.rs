//! Shape ops: reshape/flatten, narrow (slice along a dim), concat and split, plus the DARTS
//! weighted sum and dropout.

use rand::RngCore;
use rand_chacha::ChaCha8Rng;

use nas_kernels::{BinaryOp, StridedCopy};

use crate::error::{Result, arg_err, shape_err};
use crate::ops::elementwise::bin;
use crate::ops::reduce::split_at_dim;
use crate::storage::{self, Storage};
use crate::tensor::{Saved, Tensor, check_same_device, numel};

impl Tensor {
    /// Same values, new shape (same number of elements). One dimension may be `usize::MAX`
    /// meaning "inferred".
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        let mut shape = shape.to_vec();
        let infer: Vec<usize> = (0..shape.len())
            .filter(|&i| shape[i] == usize::MAX)
            .collect();
        if infer.len() > 1 {
            return shape_err(
                "reshape",
                format!("at most one inferred dimension, got {shape:?}"),
            );
        }
        if let Some(&i) = infer.first() {
            let known: usize = shape
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != i)
                .map(|(_, &s)| s)
                .product();
            if known == 0 || !self.numel().is_multiple_of(known) {
                return shape_err(
                    "reshape",
                    format!(
                        "cannot infer a dimension of {:?} from {shape:?}",
                        self.shape()
                    ),
                );
            }
            shape[i] = self.numel() / known;
        }
        if numel(&shape) != self.numel() {
            return shape_err(
                "reshape",
                format!(
                    "{:?} ({} elements) to {shape:?}",
                    self.shape(),
                    self.numel()
                ),
            );
        }
        // A metadata change: the result shares this tensor's values.
        Ok(Tensor::from_op_data(
            "reshape",
            shape,
            self.data.clone(),
            &[self],
            |g, _| Ok(vec![Some(g.try_clone()?)]),
        ))
    }

    /// Reorders the dimensions: output dim `i` is input dim `perm[i]` (a copy).
    pub fn permute(&self, perm: &[usize]) -> Result<Tensor> {
        let nd = self.ndim();
        let mut seen = vec![false; nd];
        if perm.len() != nd
            || perm
                .iter()
                .any(|&p| p >= nd || std::mem::replace(&mut seen[p], true))
        {
            return arg_err(
                "permute",
                format!(
                    "{perm:?} is not a permutation of the {nd} dims of {:?}",
                    self.shape()
                ),
            );
        }
        let in_shape = self.shape().to_vec();
        let out_shape: Vec<usize> = perm.iter().map(|&p| in_shape[p]).collect();
        let out = permute_buf(&self.read(), &in_shape, perm)?;
        let mut inv = vec![0; nd];
        for (i, &p) in perm.iter().enumerate() {
            inv[p] = i;
        }
        let os = out_shape.clone();
        Ok(Tensor::from_op(
            "permute",
            out_shape,
            out,
            &[self],
            move |g, _| Ok(vec![Some(permute_buf(g, &os, &inv)?)]),
        ))
    }

    /// Moves dimension `dim` to the end.
    pub(crate) fn move_dim_last(&self, dim: usize) -> Result<Tensor> {
        let mut perm: Vec<usize> = (0..self.ndim()).filter(|&d| d != dim).collect();
        perm.push(dim);
        self.permute(&perm)
    }

    /// Moves the last dimension to position `dim` (inverse of [`Tensor::move_dim_last`]).
    pub(crate) fn move_last_dim_to(&self, dim: usize) -> Result<Tensor> {
        let last = self.ndim() - 1;
        let mut perm: Vec<usize> = (0..last).collect();
        perm.insert(dim, last);
        self.permute(&perm)
    }

    /// Flattens every dimension from `start` on into one (`[n, c, h, w]` -> `[n, c*h*w]` for 1).
    pub fn flatten(&self, start: usize) -> Result<Tensor> {
        if start >= self.ndim().max(1) {
            return arg_err(
                "flatten",
                format!(
                    "start dim {start} out of range for shape {:?}",
                    self.shape()
                ),
            );
        }
        let mut shape = self.shape()[..start].to_vec();
        shape.push(self.shape()[start..].iter().product());
        self.reshape(&shape)
    }

    /// The slice `start..start+len` along `dim` (e.g. a batch slice on dim 0, channels on dim 1).
    pub fn narrow(&self, dim: usize, start: usize, len: usize) -> Result<Tensor> {
        let (outer, d, inner) = split_at_dim("narrow", self.shape(), dim)?;
        if start + len > d {
            return arg_err(
                "narrow",
                format!(
                    "{start}..{} exceeds size {d} of dim {dim} in {:?}",
                    start + len,
                    self.shape()
                ),
            );
        }
        let full = self.shape().to_vec();
        let mut out = Storage::alloc(self.device(), outer * len * inner)?;
        storage::copy_strided(
            &StridedCopy::narrow(&full, dim, start, len),
            &self.read(),
            &mut out,
        )?;
        let mut shape = full.clone();
        shape[dim] = len;
        Ok(Tensor::from_op(
            "narrow",
            shape,
            out,
            &[self],
            move |g, _| {
                let mut gx = Storage::zeros(g.device(), outer * d * inner)?;
                let p = StridedCopy::unnarrow(&full, dim, start, len);
                storage::copy_strided(&p, g, &mut gx)?;
                Ok(vec![Some(gx)])
            },
        ))
    }

    /// Concatenates tensors along `dim` (all other dimensions equal).
    pub fn concat(tensors: &[Tensor], dim: usize) -> Result<Tensor> {
        let Some(first) = tensors.first() else {
            return arg_err("concat", "no tensors to concatenate");
        };
        let base = first.shape();
        let (outer, _, inner) = split_at_dim("concat", base, dim)?;
        let mut sizes = Vec::with_capacity(tensors.len());
        for t in tensors {
            check_same_device("concat", first, t)?;
            let s = t.shape();
            if s.len() != base.len()
                || s.iter()
                    .zip(base)
                    .enumerate()
                    .any(|(i, (a, b))| i != dim && a != b)
            {
                return shape_err(
                    "concat",
                    format!("shapes {base:?} and {s:?} differ outside dim {dim}"),
                );
            }
            sizes.push(s[dim]);
        }
        let total: usize = sizes.iter().sum();
        let mut out = Storage::alloc(first.device(), outer * total * inner)?;
        {
            let guards: Vec<_> = tensors.iter().map(|t| t.read()).collect();
            let xs: Vec<&Storage> = guards.iter().map(|g| &**g).collect();
            storage::concat_channels(&xs, &sizes, outer, inner, &mut out)?;
        }
        let mut shape = base.to_vec();
        shape[dim] = total;
        let refs: Vec<&Tensor> = tensors.iter().collect();
        Ok(Tensor::from_op(
            "concat",
            shape,
            out,
            &refs,
            move |g, needs| {
                let mut parts: Vec<Storage> = sizes
                    .iter()
                    .map(|&sz| Storage::alloc(g.device(), outer * sz * inner))
                    .collect::<Result<_>>()?;
                {
                    let mut outs: Vec<&mut Storage> = parts.iter_mut().collect();
                    storage::split_channels(g, &sizes, outer, inner, &mut outs)?;
                }
                Ok(parts
                    .into_iter()
                    .zip(needs)
                    .map(|(p, &need)| need.then_some(p))
                    .collect())
            },
        ))
    }

    /// Splits along `dim` into pieces of the given sizes (which must add up to the dim's size).
    pub fn split(&self, dim: usize, sizes: &[usize]) -> Result<Vec<Tensor>> {
        let (_, d, _) = split_at_dim("split", self.shape(), dim)?;
        if sizes.iter().sum::<usize>() != d {
            return shape_err(
                "split",
                format!(
                    "sizes {sizes:?} do not add up to {d} (dim {dim} of {:?})",
                    self.shape()
                ),
            );
        }
        let mut off = 0;
        let mut out = Vec::with_capacity(sizes.len());
        for &s in sizes {
            out.push(self.narrow(dim, off, s)?);
            off += s;
        }
        Ok(out)
    }

    /// `sum_k weights[k] * xs[k]` for K same-shape tensors and a `[K]` weight tensor; gradients
    /// flow to the inputs and to the weights (the DARTS mixed op).
    pub fn weighted_sum(xs: &[Tensor], weights: &Tensor) -> Result<Tensor> {
        let Some(first) = xs.first() else {
            return arg_err("weighted_sum", "no tensors to sum");
        };
        if weights.shape() != [xs.len()] {
            return shape_err(
                "weighted_sum",
                format!("weights must be [{}], got {:?}", xs.len(), weights.shape()),
            );
        }
        check_same_device("weighted_sum", first, weights)?;
        for x in xs {
            check_same_device("weighted_sum", first, x)?;
            if x.shape() != first.shape() {
                return shape_err(
                    "weighted_sum",
                    format!("inputs {:?} and {:?} differ", first.shape(), x.shape()),
                );
            }
        }
        let mut out = Storage::alloc(first.device(), first.numel())?;
        {
            let guards: Vec<_> = xs.iter().map(|t| t.read()).collect();
            let xv: Vec<&Storage> = guards.iter().map(|g| &**g).collect();
            storage::weighted_sum(&weights.read(), &xv, &mut out)?;
        }
        let mut refs: Vec<&Tensor> = xs.iter().collect();
        refs.push(weights);
        // The inputs' values are read only for the weights' gradient.
        // (An input whose op can recompute its values is kept as that recipe, not as values.)
        let xs_c: Option<Vec<Saved>> = weights
            .requires_grad()
            .then(|| xs.iter().map(Saved::of).collect());
        let k = xs.len();
        let wc = weights.clone();
        Ok(Tensor::from_op(
            "weighted_sum",
            first.shape().to_vec(),
            out,
            &refs,
            move |g, needs| {
                let Some(xs_c) = xs_c.filter(|_| needs[k]) else {
                    // no weight gradient: dx_j = w_j * g, without reading the inputs
                    // dx_j = w_j * g: a one-input weighted sum with w_j sliced out of the
                    // weights on the device
                    let w = wc.read();
                    let mut grads = Vec::with_capacity(k + 1);
                    for (j, &need) in needs[..k].iter().enumerate() {
                        grads.push(if need {
                            let mut wj = Storage::alloc(g.device(), 1)?;
                            storage::copy_strided(
                                &StridedCopy::narrow(&[k], 0, j, 1),
                                &w,
                                &mut wj,
                            )?;
                            let mut d = Storage::alloc(g.device(), g.len())?;
                            storage::weighted_sum(&wj, &[g], &mut d)?;
                            Some(d)
                        } else {
                            None
                        });
                    }
                    grads.push(None);
                    return Ok(grads);
                };
                let dev = g.device();
                let mut dxs: Vec<Storage> = (0..k)
                    .map(|_| Storage::alloc(dev, g.len()))
                    .collect::<Result<_>>()?;
                let mut dw = Storage::zeros(dev, k)?;
                {
                    let guards: Vec<_> = xs_c.iter().map(Saved::read).collect::<Result<_>>()?;
                    let xv: Vec<&Storage> = guards.iter().map(|g| &**g).collect();
                    let mut dv: Vec<&mut Storage> = dxs.iter_mut().collect();
                    storage::weighted_sum_backward(&wc.read(), &xv, g, &mut dv, &mut dw)?;
                }
                let mut grads: Vec<Option<Storage>> = dxs
                    .into_iter()
                    .zip(needs)
                    .map(|(d, &need)| need.then_some(d))
                    .collect();
                grads.push(needs[k].then_some(dw));
                Ok(grads)
            },
        ))
    }

    /// Inverted dropout: in training zeroes each element with probability `p` and scales the
    /// rest by `1/(1-p)`; the identity when `training` is false or `p == 0`. The mask is
    /// generated on the tensor's device from one `u64` seed drawn from `rng`.
    pub fn dropout(&self, p: f32, training: bool, rng: &mut ChaCha8Rng) -> Result<Tensor> {
        if !(0.0..1.0).contains(&p) {
            return arg_err("dropout", format!("probability must be in [0, 1), got {p}"));
        }
        if !training || p == 0.0 {
            return Ok(self.clone());
        }
        let mut mask = Storage::alloc(self.device(), self.numel())?;
        storage::dropout_mask(p, rng.next_u64(), &mut mask)?;
        let shape = self.shape().to_vec();
        let out = bin(BinaryOp::Mul, &self.read(), &shape, &mask, &shape, &shape)?;
        Ok(Tensor::from_op(
            "dropout",
            shape.clone(),
            out,
            &[self],
            move |g, _| {
                Ok(vec![Some(bin(
                    BinaryOp::Mul,
                    g,
                    &shape,
                    &mask,
                    &shape,
                    &shape,
                )?)])
            },
        ))
    }
}

/// Copies `x` (shape `shape`) into the layout of `shape` permuted by `perm`.
fn permute_buf(x: &Storage, shape: &[usize], perm: &[usize]) -> Result<Storage> {
    let mut out = Storage::alloc(x.device(), x.len())?;
    storage::copy_strided(&StridedCopy::permute(shape, perm), x, &mut out)?;
    Ok(out)
}
