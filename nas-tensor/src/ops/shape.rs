//! Shape ops: reshape/flatten, narrow (slice along a dim), concat and split, plus the DARTS
//! weighted sum and dropout.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::buf::Buf;
use crate::error::{Result, arg_err, shape_err};
use crate::ops::reduce::split_at_dim;
use crate::tensor::{Tensor, check_same_device, numel};

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
            if known == 0 || self.numel() % known != 0 {
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
        let data = Buf::copy_from(&self.read());
        Ok(Tensor::from_op(
            "reshape",
            shape,
            self.device(),
            data,
            &[self],
            |g, _| Ok(vec![Some(Buf::copy_from(g))]),
        ))
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
        let mut out = Buf::zeros(outer * len * inner);
        {
            let x = self.read();
            for o in 0..outer {
                out[o * len * inner..(o + 1) * len * inner]
                    .copy_from_slice(&x[(o * d + start) * inner..(o * d + start + len) * inner]);
            }
        }
        let mut shape = self.shape().to_vec();
        shape[dim] = len;
        Ok(Tensor::from_op(
            "narrow",
            shape,
            self.device(),
            out,
            &[self],
            move |g, _| {
                let mut gx = Buf::zeros(outer * d * inner);
                for o in 0..outer {
                    gx[(o * d + start) * inner..(o * d + start + len) * inner]
                        .copy_from_slice(&g[o * len * inner..(o + 1) * len * inner]);
                }
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
        let mut out = Buf::zeros(outer * total * inner);
        let mut off = 0;
        for (t, &sz) in tensors.iter().zip(&sizes) {
            let x = t.read();
            for o in 0..outer {
                out[(o * total + off) * inner..(o * total + off + sz) * inner]
                    .copy_from_slice(&x[o * sz * inner..(o + 1) * sz * inner]);
            }
            off += sz;
        }
        let mut shape = base.to_vec();
        shape[dim] = total;
        let refs: Vec<&Tensor> = tensors.iter().collect();
        Ok(Tensor::from_op(
            "concat",
            shape,
            first.device(),
            out,
            &refs,
            move |g, needs| {
                let mut grads = Vec::with_capacity(sizes.len());
                let mut off = 0;
                for (&sz, &need) in sizes.iter().zip(needs) {
                    if need {
                        let mut gx = Buf::zeros(outer * sz * inner);
                        for o in 0..outer {
                            gx[o * sz * inner..(o + 1) * sz * inner].copy_from_slice(
                                &g[(o * total + off) * inner..(o * total + off + sz) * inner],
                            );
                        }
                        grads.push(Some(gx));
                    } else {
                        grads.push(None);
                    }
                    off += sz;
                }
                Ok(grads)
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
        let w = weights.to_vec();
        let mut out = Buf::zeros(first.numel());
        for (x, &wk) in xs.iter().zip(&w) {
            let xd = x.read();
            out.iter_mut()
                .zip(xd.iter())
                .for_each(|(o, &v)| *o += wk * v);
        }
        let mut refs: Vec<&Tensor> = xs.iter().collect();
        refs.push(weights);
        let xs_c: Vec<Tensor> = xs.to_vec();
        Ok(Tensor::from_op(
            "weighted_sum",
            first.shape().to_vec(),
            first.device(),
            out,
            &refs,
            move |g, needs| {
                let k = xs_c.len();
                let mut grads = Vec::with_capacity(k + 1);
                for (i, &wk) in w.iter().enumerate() {
                    grads.push(needs[i].then(|| {
                        let mut gx = Buf::zeros(g.len());
                        gx.iter_mut().zip(g).for_each(|(a, &b)| *a = wk * b);
                        gx
                    }));
                }
                grads.push(needs[k].then(|| {
                    let mut gw = Buf::zeros(k);
                    for (i, x) in xs_c.iter().enumerate() {
                        let xd = x.read();
                        gw[i] = xd
                            .iter()
                            .zip(g)
                            .map(|(&a, &b)| (a as f64) * (b as f64))
                            .sum::<f64>() as f32;
                    }
                    gw
                }));
                Ok(grads)
            },
        ))
    }

    /// Inverted dropout: in training zeroes each element with probability `p` and scales the
    /// rest by `1/(1-p)`; the identity when `training` is false or `p == 0`.
    pub fn dropout(&self, p: f32, training: bool, rng: &mut ChaCha8Rng) -> Result<Tensor> {
        if !(0.0..1.0).contains(&p) {
            return arg_err("dropout", format!("probability must be in [0, 1), got {p}"));
        }
        if !training || p == 0.0 {
            return Ok(self.clone());
        }
        let keep = 1.0 / (1.0 - p);
        let mut mask = Buf::zeros(self.numel());
        for m in mask.iter_mut() {
            *m = if rng.random::<f32>() < p { 0.0 } else { keep };
        }
        let mut out = Buf::zeros(self.numel());
        {
            let x = self.read();
            for ((o, &v), &m) in out.iter_mut().zip(x.iter()).zip(mask.iter()) {
                *o = v * m;
            }
        }
        Ok(Tensor::from_op(
            "dropout",
            self.shape().to_vec(),
            self.device(),
            out,
            &[self],
            move |g, _| {
                let mut gx = Buf::zeros(g.len());
                for ((a, &b), &m) in gx.iter_mut().zip(g).zip(mask.iter()) {
                    *a = b * m;
                }
                Ok(vec![Some(gx)])
            },
        ))
    }
}
