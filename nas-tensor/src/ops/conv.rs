//! 2-D convolution, pooling and batch norm: shape checking and gradient rules here, compute in
//! the `nas_kernels` backend.

use std::sync::Arc;

use nas_kernels::Checked;

use crate::TensorError;
use nas_kernels::backend::{BatchNormParams, Conv2dParams, Pool2dParams, PoolKind};

use crate::error::{Result, arg_err, shape_err};
use crate::storage::{self, Storage};
use crate::tensor::{Recompute, Tensor, check_same_device, new_data};

/// Stride, padding, dilation and groups of a convolution (PyTorch's `Conv2d` arguments).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConvOptions {
    /// Stride in both directions.
    pub stride: usize,
    /// Zero padding on each side.
    pub padding: usize,
    /// Dilation.
    pub dilation: usize,
    /// Groups (`c_in` and `c_out` multiples of it).
    pub groups: usize,
}

impl Default for ConvOptions {
    fn default() -> Self {
        ConvOptions {
            stride: 1,
            padding: 0,
            dilation: 1,
            groups: 1,
        }
    }
}

impl ConvOptions {
    /// Sets the stride.
    pub fn stride(mut self, s: usize) -> Self {
        self.stride = s;
        self
    }
    /// Sets the padding.
    pub fn padding(mut self, p: usize) -> Self {
        self.padding = p;
        self
    }
    /// Sets the dilation.
    pub fn dilation(mut self, d: usize) -> Self {
        self.dilation = d;
        self
    }
    /// Sets the groups.
    pub fn groups(mut self, g: usize) -> Self {
        self.groups = g;
        self
    }
}

/// Checks the arguments of a batch norm of `x` (`[n, c, h, w]`; weight, bias and the running
/// statistics, where given, `[c]` on `x`'s device; weight and bias together) and returns
/// `x`'s dimensions. Shared by [`Tensor::batch_norm`] and the synchronised batch norm.
pub(crate) fn batch_norm_args(
    op: &'static str,
    x: &Tensor,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    running_mean: Option<&Tensor>,
    running_var: Option<&Tensor>,
) -> Result<(usize, usize, usize, usize)> {
    let (n, c, h, w) = nchw(op, x)?;
    for (name, t) in [
        ("weight", weight),
        ("bias", bias),
        ("running_mean", running_mean),
        ("running_var", running_var),
    ] {
        if let Some(t) = t {
            check_same_device(op, x, t)?;
            if t.shape() != [c] {
                return shape_err(
                    op,
                    format!(
                        "{name} must be [{c}] for input {:?}, got {:?}",
                        x.shape(),
                        t.shape()
                    ),
                );
            }
        }
    }
    if weight.is_some() != bias.is_some() {
        return arg_err(
            op,
            "weight and bias must be given together (affine) or not at all",
        );
    }
    Ok((n, c, h, w))
}

fn nchw(op: &'static str, t: &Tensor) -> Result<(usize, usize, usize, usize)> {
    match *t.shape() {
        [n, c, h, w] => Ok((n, c, h, w)),
        _ => shape_err(
            op,
            format!("need an NCHW input [n, c, h, w], got {:?}", t.shape()),
        ),
    }
}

/// Checks a convolution of an input of shape `x_shape` with `weight` (and `bias`) under `o`,
/// and returns the kernel parameters.
fn conv_params(
    op: &'static str,
    x_shape: &[usize],
    weight: &Tensor,
    bias: Option<&Tensor>,
    o: ConvOptions,
) -> Result<Checked<Conv2dParams>> {
    let &[n, c_in, h, w] = x_shape else {
        return shape_err(
            op,
            format!("need an NCHW input [n, c, h, w], got {x_shape:?}"),
        );
    };
    let &[c_out, cpg, kh, kw] = weight.shape() else {
        return shape_err(
            op,
            format!(
                "weight must be [c_out, c_in/groups, kh, kw], got {:?}",
                weight.shape()
            ),
        );
    };
    // Sizes, groups, stride, dilation and padding are the kernel description's to check
    // (once, here: the backend computes from the checked description).
    let p = Conv2dParams {
        n,
        c_in,
        h,
        w,
        c_out,
        kh,
        kw,
        stride: (o.stride, o.stride),
        padding: (o.padding, o.padding),
        dilation: (o.dilation, o.dilation),
        groups: o.groups,
    }
    .check()
    .map_err(|e| TensorError::Shape {
        op,
        detail: format!("input {x_shape:?}, weight {:?}, {o:?}: {e}", weight.shape()),
    })?;
    if cpg != c_in / o.groups {
        return shape_err(
            op,
            format!(
                "input {x_shape:?} and weight {:?} do not fit groups = {}",
                weight.shape(),
                o.groups
            ),
        );
    }
    if let Some(b) = bias
        && b.shape() != [c_out]
    {
        return shape_err(op, format!("bias must be [{c_out}], got {:?}", b.shape()));
    }
    Ok(p)
}

impl Tensor {
    /// 2-D convolution (cross-correlation, as PyTorch) of `self: [n, c_in, h, w]` with
    /// `weight: [c_out, c_in / groups, kh, kw]` and an optional `bias: [c_out]`.
    pub fn conv2d(&self, weight: &Tensor, bias: Option<&Tensor>, o: ConvOptions) -> Result<Tensor> {
        let op = "conv2d";
        check_same_device(op, self, weight)?;
        if let Some(b) = bias {
            check_same_device(op, self, b)?;
        }
        let p = conv_params(op, self.shape(), weight, bias, o)?;
        let (n, c_out) = (p.n, p.c_out);
        let (oh, ow) = (p.out_h(), p.out_w());
        let mut y = Storage::alloc(self.device(), p.y_len())?;
        {
            let bias_guard = bias.map(|b| b.read());
            storage::conv2d(
                &p,
                &self.read(),
                &weight.read(),
                bias_guard.as_deref(),
                &mut y,
            )?;
        }
        let (xc, wc) = (self.clone(), weight.clone());
        let mut parents = vec![self, weight];
        if let Some(b) = bias {
            parents.push(b);
        }
        let has_bias = bias.is_some();
        Ok(Tensor::from_op(
            op,
            vec![n, c_out, oh, ow],
            y,
            &parents,
            move |g, needs| {
                let dy = g;
                let dx = if needs[0] {
                    let mut dx = Storage::alloc(g.device(), p.x_len())?;
                    storage::conv2d_backward_input(&p, &wc.read(), dy, &mut dx)?;
                    Some(dx)
                } else {
                    None
                };
                let need_b = has_bias && needs[2];
                let (mut dw, mut db) = (None, None);
                if needs[1] || need_b {
                    let mut w_buf = Storage::alloc(g.device(), p.w_len())?;
                    let mut b_buf = Storage::zeros(g.device(), c_out)?;
                    storage::conv2d_backward_weight(
                        &p,
                        &xc.read(),
                        dy,
                        &mut w_buf,
                        need_b.then_some(&mut b_buf),
                    )?;
                    dw = needs[1].then_some(w_buf);
                    db = need_b.then_some(b_buf);
                }
                let mut grads = vec![dx, dw];
                if has_bias {
                    grads.push(db);
                }
                Ok(grads)
            },
        ))
    }

    /// `conv2d(relu(self), weight, o)` (no bias) as one recorded op that keeps only its input
    /// and the weight for backward: the ReLU is never written out. The backend applies it as
    /// the convolution stages its input
    /// ([`Backend::conv2d_relu_input`](nas_kernels::Backend::conv2d_relu_input)), masks the
    /// input gradient by `self > 0` and re-applies the ReLU for the weight gradient.
    ///
    /// This is the ReLU -> convolution of NAS-Bench-201's `nor_conv_kxk` and DARTS' cell
    /// preprocessing: one ReLU'd activation fewer per block, and no separate ReLU passes
    /// forward and backward. The values equal those of `relu` followed by `conv2d` exactly.
    pub fn relu_conv2d(&self, weight: &Tensor, o: ConvOptions) -> Result<Tensor> {
        let op = "relu_conv2d";
        check_same_device(op, self, weight)?;
        let p = conv_params(op, self.shape(), weight, None, o)?;
        let mut y = Storage::alloc(self.device(), p.y_len())?;
        storage::conv2d_relu_input(&p, &self.read(), &weight.read(), &mut y)?;
        let (xc, wc) = (self.data.clone(), weight.clone());
        Ok(Tensor::from_op(
            op,
            vec![p.n, p.c_out, p.out_h(), p.out_w()],
            y,
            &[self, weight],
            move |g, needs| {
                let x = xc.read().unwrap_or_else(|e| e.into_inner());
                let mut dx = None;
                if needs[0] {
                    let mut b = Storage::alloc(g.device(), p.x_len())?;
                    storage::conv2d_backward_input_relu_mask(&p, &wc.read(), g, &x, &mut b)?;
                    dx = Some(b);
                }
                let mut dw = None;
                if needs[1] {
                    let mut b = Storage::alloc(g.device(), p.w_len())?;
                    storage::conv2d_backward_weight_relu_input(&p, &x, g, &mut b)?;
                    dw = Some(b);
                }
                Ok(vec![dx, dw])
            },
        ))
    }

    /// `conv2d(conv2d(relu(self), w1, o1), w2, o2)` (no biases) as one recorded op that keeps
    /// only its input and the two weights for backward: the first convolution's output is
    /// recomputed there when the second weight's gradient needs it, and is not needed at all
    /// when only the input gradient is asked for (DARTS' architecture step). The ReLU is never
    /// written out: the backend applies it as the first convolution reads its input
    /// ([`Backend::conv2d_relu_input`](nas_kernels::Backend::conv2d_relu_input)).
    ///
    /// This is the ReLU -> depthwise -> pointwise block of DARTS' separable and dilated
    /// convolutions: in a supernet it holds one activation instead of three per block, for the
    /// price of one more ReLU and first convolution in the weight step's backward. The values
    /// equal those of the three separate ops exactly.
    pub fn relu_conv_conv(
        &self,
        w1: &Tensor,
        o1: ConvOptions,
        w2: &Tensor,
        o2: ConvOptions,
    ) -> Result<Tensor> {
        let op = "relu_conv_conv";
        check_same_device(op, self, w1)?;
        check_same_device(op, self, w2)?;
        let p1 = conv_params(op, self.shape(), w1, None, o1)?;
        let mid = [p1.n, p1.c_out, p1.out_h(), p1.out_w()];
        let p2 = conv_params(op, &mid, w2, None, o2)?;
        // the first convolution's output (the backend applies the ReLU as it reads x)
        let front = move |x: &Storage, w1: &Storage| -> Result<Storage> {
            let mut d = Storage::alloc(x.device(), p1.y_len())?;
            storage::conv2d_relu_input(&p1, x, w1, &mut d)?;
            Ok(d)
        };
        let mut y = Storage::alloc(self.device(), p2.y_len())?;
        {
            let d = front(&self.read(), &w1.read())?;
            storage::conv2d(&p2, &d, &w2.read(), None, &mut y)?;
        }
        let (xc, w1c, w2c) = (self.data.clone(), w1.clone(), w2.clone());
        Ok(Tensor::from_op(
            op,
            vec![p2.n, p2.c_out, p2.out_h(), p2.out_w()],
            y,
            &[self, w1, w2],
            move |g, needs| {
                let x = xc.read().unwrap_or_else(|e| e.into_inner());
                let (w1, w2) = (w1c.read(), w2c.read());
                let mut dw2 = None;
                if needs[2] {
                    // the recomputed first output, only for the second weight's gradient
                    let d = front(&x, &w1)?;
                    let mut b = Storage::alloc(g.device(), p2.w_len())?;
                    storage::conv2d_backward_weight(&p2, &d, g, &mut b, None)?;
                    dw2 = Some(b);
                }
                if !(needs[0] || needs[1]) {
                    return Ok(vec![None, None, dw2]);
                }
                let mut dd = Storage::alloc(g.device(), p2.x_len())?;
                storage::conv2d_backward_input(&p2, &w2, g, &mut dd)?;
                let mut dw1 = None;
                if needs[1] {
                    let mut b = Storage::alloc(g.device(), p1.w_len())?;
                    storage::conv2d_backward_weight_relu_input(&p1, &x, &dd, &mut b)?;
                    dw1 = Some(b);
                }
                let mut dx = None;
                if needs[0] {
                    // through the first convolution and ReLU's mask (x > 0) in one call
                    let mut b = Storage::alloc(g.device(), p1.x_len())?;
                    storage::conv2d_backward_input_relu_mask(&p1, &w1, &dd, &x, &mut b)?;
                    dx = Some(b);
                }
                Ok(vec![dx, dw1, dw2])
            },
        ))
    }

    /// The checked pooling of this `[n, c, h, w]` input (`window`: size, stride, padding); the
    /// error names `op`, the window and the input's shape.
    fn pool_params(
        &self,
        op: &'static str,
        kind: PoolKind,
        (n, c, h, w): (usize, usize, usize, usize),
        (k, stride, padding): (usize, usize, usize),
    ) -> Result<Checked<Pool2dParams>> {
        Pool2dParams::new(kind, n, c, h, w, k, stride, padding)
            .check()
            .map_err(|e| TensorError::InvalidArgument {
                op,
                detail: format!(
                    "window {k}, stride {stride}, padding {padding} on input {:?}: {e}",
                    self.shape()
                ),
            })
    }

    fn pool(
        &self,
        op: &'static str,
        kind: PoolKind,
        k: usize,
        stride: usize,
        padding: usize,
    ) -> Result<Tensor> {
        let (n, c, h, w) = nchw(op, self)?;
        let p = self.pool_params(op, kind, (n, c, h, w), (k, stride, padding))?;
        let mut y = Storage::alloc(self.device(), p.y_len())?;
        storage::pool2d(&p, &self.read(), &mut y)?;
        // The CPU backend finds max pooling's arg-max from the input, so the output is not kept;
        // average pooling's rule needs neither.
        let xc = match kind {
            PoolKind::Max => self.data.clone(),
            PoolKind::Avg { .. } => new_data(Storage::zeros(self.device(), 0)?),
        };
        Ok(Tensor::from_op(
            op,
            vec![n, c, p.out_h(), p.out_w()],
            y,
            &[self],
            move |g, _| {
                let dy = g;
                let mut dx = Storage::alloc(g.device(), p.x_len())?;
                storage::pool2d_backward(
                    &p,
                    &xc.read().unwrap_or_else(|e| e.into_inner()),
                    None,
                    dy,
                    &mut dx,
                )?;
                Ok(vec![Some(dx)])
            },
        ))
    }

    /// Max pooling with a `k x k` window (padding never wins).
    pub fn max_pool2d(&self, k: usize, stride: usize, padding: usize) -> Result<Tensor> {
        self.pool("max_pool2d", PoolKind::Max, k, stride, padding)
    }

    /// Average pooling with a `k x k` window; padded zeros do not count in the divisor
    /// (PyTorch's `count_include_pad=False`, as DARTS and NAS-Bench-201 use).
    pub fn avg_pool2d(&self, k: usize, stride: usize, padding: usize) -> Result<Tensor> {
        self.pool(
            "avg_pool2d",
            PoolKind::Avg {
                count_include_pad: false,
            },
            k,
            stride,
            padding,
        )
    }

    /// Global average pooling `[n, c, h, w] -> [n, c]`.
    pub fn global_avg_pool(&self) -> Result<Tensor> {
        let (n, c, h, w) = nchw("global_avg_pool", self)?;
        let hw = h * w;
        let mut y = Storage::zeros(self.device(), n * c)?;
        storage::global_avg_pool(n, c, hw, &self.read(), &mut y)?;
        Ok(Tensor::from_op(
            "global_avg_pool",
            vec![n, c],
            y,
            &[self],
            move |g, _| {
                let dy = g;
                let mut dx = Storage::zeros(g.device(), n * c * hw)?;
                storage::global_avg_pool_backward(n, c, hw, dy, &mut dx)?;
                Ok(vec![Some(dx)])
            },
        ))
    }

    /// A pool (`max`, or average with `count_include_pad = false`; window `k`) followed by a
    /// non-affine batch norm, as [`Tensor::max_pool2d`] / [`Tensor::avg_pool2d`] then
    /// [`Tensor::batch_norm`] with no weight and bias: the same values and running-statistics
    /// updates, bit for bit, and the same gradient. In training its output is not kept for
    /// backward: the rule keeps the input (which the ops that produced and read it usually keep
    /// anyway) and computes the pool and the normalisation again when backward reaches it, and a
    /// weighted sum that reads the output for its weights' gradient
    /// ([`Tensor::weighted_sum`]) gets it recomputed the same way (once per backward: the
    /// first reader computes it, this op's rule, the last, frees it). The DARTS supernet's
    /// pooling candidates: each output would otherwise be kept through the whole step.
    #[allow(clippy::too_many_arguments)]
    pub fn pool_batch_norm(
        &self,
        max: bool,
        k: usize,
        stride: usize,
        padding: usize,
        running_mean: Option<&Tensor>,
        running_var: Option<&Tensor>,
        training: bool,
        momentum: f32,
        eps: f32,
    ) -> Result<Tensor> {
        let op = "pool_batch_norm";
        let (n, c, h, w) = batch_norm_args(op, self, None, None, running_mean, running_var)?;
        let kind = if max {
            PoolKind::Max
        } else {
            PoolKind::Avg {
                count_include_pad: false,
            }
        };
        let pp = self.pool_params(op, kind, (n, c, h, w), (k, stride, padding))?;
        let bp = BatchNormParams {
            n,
            c,
            hw: pp.out_h() * pp.out_w(),
            eps,
            momentum,
            training,
        }
        .check()?;
        let dev = self.device();
        let mut y = Storage::alloc(dev, pp.y_len())?;
        let mut save_mean = Storage::zeros(dev, c)?;
        let mut save_invstd = Storage::zeros(dev, c)?;
        {
            let mut z = Storage::alloc(dev, pp.y_len())?;
            storage::pool2d(&pp, &self.read(), &mut z)?;
            let mut rm = running_mean.map(|t| t.write());
            let mut rv = running_var.map(|t| t.write());
            storage::batch_norm(
                &bp,
                &z,
                None,
                None,
                rm.as_deref_mut(),
                rv.as_deref_mut(),
                &mut y,
                &mut save_mean,
                &mut save_invstd,
            )?;
        }
        drop(save_mean);
        let y = new_data(y);
        let shape = vec![n, c, pp.out_h(), pp.out_w()];
        // In training the output is a function of the input alone (batch statistics): recompute
        // it. In evaluation it depends on the running statistics, which may change: keep it.
        let recompute = training.then(|| {
            let x = self.data.clone();
            Arc::new(Recompute::new(move || {
                let x = x.read().unwrap_or_else(|e| e.into_inner());
                let mut z = Storage::alloc(x.device(), pp.y_len())?;
                storage::pool2d(&pp, &x, &mut z)?;
                let mut y = Storage::alloc(x.device(), bp.x_len())?;
                let mut m = Storage::zeros(x.device(), bp.c)?;
                let mut s = Storage::zeros(x.device(), bp.c)?;
                storage::batch_norm(&bp, &z, None, None, None, None, &mut y, &mut m, &mut s)?;
                Ok(y)
            }))
        });
        let saved_y = match &recompute {
            Some(_) => None,
            None => Some(y.clone()),
        };
        let rc = recompute.clone();
        // max pooling's rule reads the input; the recomputation reads it in both kinds
        let xc = match (kind, &recompute) {
            (PoolKind::Max, _) | (_, Some(_)) => self.data.clone(),
            _ => new_data(Storage::zeros(dev, 0)?),
        };
        let mut out = Tensor::from_op_data(op, shape, y, &[self], move |g, _| {
            // the rule of a non-affine batch norm as `batch_norm` runs it (x-hat = y, "gamma" =
            // the inverse std), then the pool's
            let y = match (&rc, &saved_y) {
                (Some(r), _) => crate::tensor::SavedRead::Owned(r.take()?),
                (None, Some(y)) => {
                    crate::tensor::SavedRead::Guard(y.read().unwrap_or_else(|e| e.into_inner()))
                }
                (None, None) => unreachable!("kept or recomputed"),
            };
            let mut dz = Storage::alloc(g.device(), bp.x_len())?;
            storage::batch_norm_backward(
                &bp,
                &y,
                Some(&save_invstd),
                &Storage::zeros(g.device(), c)?,
                &Storage::full(g.device(), c, 1.0)?,
                g,
                &mut dz,
                None,
                None,
            )?;
            drop(y);
            let mut dx = Storage::alloc(g.device(), pp.x_len())?;
            storage::pool2d_backward(
                &pp,
                &xc.read().unwrap_or_else(|e| e.into_inner()),
                None,
                &dz,
                &mut dx,
            )?;
            Ok(vec![Some(dx)])
        });
        if let Some(r) = recompute
            && out.requires_grad()
            && let Some(inner) = Arc::get_mut(&mut out.inner)
        {
            inner.recompute = Some(r);
        }
        Ok(out)
    }

    /// Batch normalisation over the channels of `self: [n, c, h, w]` (PyTorch's `BatchNorm2d`).
    ///
    /// In training the batch mean and biased variance normalise, and the running statistics
    /// (when given) are updated in place with `momentum` (the variance with the unbiased
    /// estimate); in evaluation the running statistics normalise (both are required).
    /// `weight`/`bias` (`[c]` each) are the optional affine parameters.
    pub fn batch_norm(
        &self,
        weight: Option<&Tensor>,
        bias: Option<&Tensor>,
        running_mean: Option<&Tensor>,
        running_var: Option<&Tensor>,
        training: bool,
        momentum: f32,
        eps: f32,
    ) -> Result<Tensor> {
        let op = "batch_norm";
        let (n, c, h, w) = batch_norm_args(op, self, weight, bias, running_mean, running_var)?;
        let p = BatchNormParams {
            n,
            c,
            hw: h * w,
            eps,
            momentum,
            training,
        }
        .check()?;
        let mut y = Storage::alloc(self.device(), p.x_len())?;
        let mut save_mean = Storage::zeros(self.device(), c)?;
        let mut save_invstd = Storage::zeros(self.device(), c)?;
        {
            let x = self.read();
            let wg = weight.map(|t| t.read());
            let bg = bias.map(|t| t.read());
            let mut rm = running_mean.map(|t| t.write());
            let mut rv = running_var.map(|t| t.write());
            storage::batch_norm(
                &p,
                &x,
                wg.as_deref(),
                bg.as_deref(),
                rm.as_deref_mut(),
                rv.as_deref_mut(),
                &mut y,
                &mut save_mean,
                &mut save_invstd,
            )?;
        }
        let y = new_data(y);
        let wc = weight.cloned();
        // Non-affine batch norm's output is x-hat itself, so the gradient rule keeps the output
        // (which the next op usually keeps anyway) instead of the input: with mean 0, inverse
        // std 1 and "gamma" = the real inverse std, the kernel's rule is exactly
        // dx = invstd * (dy - mean(dy) - xhat * mean(dy * xhat)) (and invstd * dy in evaluation).
        let (saved, save_mean, save_invstd, gamma_as_invstd) = if weight.is_none() {
            (
                y.clone(),
                Storage::zeros(self.device(), c)?,
                Storage::full(self.device(), c, 1.0)?,
                Some(save_invstd),
            )
        } else {
            (self.data.clone(), save_mean, save_invstd, None)
        };
        let mut parents = vec![self];
        if let (Some(wt), Some(bt)) = (weight, bias) {
            parents.push(wt);
            parents.push(bt);
        }
        Ok(Tensor::from_op_data(
            op,
            self.shape().to_vec(),
            y,
            &parents,
            move |g, needs| {
                let dy = g;
                let mut dx = Storage::alloc(g.device(), p.x_len())?;
                let affine = wc.is_some();
                let mut dgamma = Storage::zeros(g.device(), c)?;
                let mut dbeta = Storage::zeros(g.device(), c)?;
                {
                    let wg = wc.as_ref().map(|t| t.read());
                    let gamma = match &gamma_as_invstd {
                        Some(inv) => Some(inv),
                        None => wg.as_deref(),
                    };
                    storage::batch_norm_backward(
                        &p,
                        &saved.read().unwrap_or_else(|e| e.into_inner()),
                        gamma,
                        &save_mean,
                        &save_invstd,
                        dy,
                        &mut dx,
                        affine.then_some(&mut dgamma),
                        affine.then_some(&mut dbeta),
                    )?;
                }
                let mut grads = vec![needs[0].then_some(dx)];
                if affine {
                    grads.push(Some(dgamma));
                    grads.push(Some(dbeta));
                }
                Ok(grads)
            },
        ))
    }
}
