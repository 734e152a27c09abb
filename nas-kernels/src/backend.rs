//! The [`Backend`] trait: the one interface between the tensor crate and the compute.
//!
//! A backend owns a buffer type (host `Vec<f32>` for [`Cpu`](crate::Cpu), a device allocation
//! for CUDA) and implements a small, fixed set of methods. Ops that belong together are one
//! method taking an op enum ([`UnaryOp`], [`BinaryOp`], [`ReduceOp`], [`SoftmaxOp`],
//! [`PoolKind`], [`RandomDist`]) or a parameter struct ([`Matmul`], [`Conv2dParams`], [`Pool2dParams`],
//! [`BatchNormParams`], [`Rows`], [`LstmCell`], [`Lstm`]); adding an op means one enum variant, one CPU function, one CUDA kernel and
//! one gradient rule in the tensor crate.
//!
//! # Conventions (all methods)
//! - Everything is `f32`, contiguous, row-major; images are NCHW.
//! - Outputs are caller-provided buffers that are **overwritten** (never accumulated into,
//!   except where a method says so, e.g. [`Backend::axpy`] and `beta` of [`Backend::matmul`]),
//!   so a training step can reuse its buffers. Inputs and outputs must be distinct buffers.
//! - Checks happen once, in one place. The parameter structs of convolution, pooling and
//!   batch norm are validated into a [`Checked`] description by their `check()` (the tensor
//!   crate does this when it builds them from tensor shapes). Each compute method a caller
//!   uses (`conv2d`, `binary`, ...) is a provided method of this trait: it checks every
//!   buffer's length (and the remaining shape arguments) against that description, returns
//!   [`KernelError`] on a mismatch with nothing written, and then calls the
//!   backend's `unsafe fn *_unchecked` kernel. A backend implements only the buffer methods
//!   and the `*_unchecked` kernels, which may rely on the checked arguments (debug assertions
//!   only): a new backend (CUDA) copies no checks.
//! - Backward methods take the upstream gradient `dy` of the op's output and write the
//!   gradient of `sum(y * dy)` with respect to the named input.
//! - Shapes are host-side; small host-side arrays (labels, channel lists) are passed as
//!   slices and uploaded by device backends as needed.
//! - Host transfers are only [`Backend::from_slice`], [`Backend::from_vec`] and
//!   [`Backend::to_vec`]: every other method reads and writes device memory only, so a
//!   training step on a device backend moves nothing to or from the host except the batch
//!   and the values the caller reads.
//!
//! # Buffers
//! [`Backend::Buffer`] is what kernels read and write (a slice `[f32]` on the CPU, so plain
//! vectors can be passed in tests and benchmarks); [`Backend::Owned`] is what the backend
//! allocates and owns (the CPU's pooled [`Buf`](crate::buf::Buf): freed buffers return to a
//! per-thread pool, the CPU backend's memory policy).

use std::borrow::BorrowMut;

use crate::checked::Checked;
use crate::device::Device;
use crate::error::{KernelError, Result, check_len};
pub use crate::ops::batch_norm::BatchNormParams;
pub use crate::ops::conv2d::Conv2dParams;
pub use crate::ops::copy::StridedCopy;
pub use crate::ops::elementwise::{BinaryOp, UnaryOp, broadcast_shape};
pub use crate::ops::matmul::Matmul;
pub use crate::ops::optim::{AdamStep, SgdStep};
pub use crate::ops::pool2d::{Pool2dParams, PoolKind};
pub use crate::ops::random::RandomDist;
use crate::ops::random::validate_dropout;
pub use crate::ops::recurrent::{Lstm, LstmCell, Rows};
pub use crate::ops::reduce::{ReduceOp, SoftmaxOp};

/// A compute backend: a buffer type plus kernels over it. See the [module docs](self) for the
/// conventions every method follows.
pub trait Backend: std::fmt::Debug + Send + Sync {
    /// The `f32` values kernels read and write (`[f32]` on the CPU).
    type Buffer: ?Sized + std::fmt::Debug + Send + Sync;
    /// A buffer owned by this backend (the pooled [`Buf`](crate::buf::Buf) on the CPU).
    type Owned: std::fmt::Debug + Send + Sync + BorrowMut<Self::Buffer>;

    // ---------------------------------------------------------------- buffers

    /// The device this backend computes on.
    fn device(&self) -> Device;
    /// A buffer of `len` zeros.
    fn zeros(&self, len: usize) -> Result<Self::Owned>;
    /// A buffer of `len` values for a caller that overwrites every one of them (an op's
    /// output): its values are unspecified (but initialised).
    fn alloc(&self, len: usize) -> Result<Self::Owned>;
    /// A buffer holding a copy of `data` (a host-to-device transfer).
    #[allow(clippy::wrong_self_convention)]
    fn from_slice(&self, data: &[f32]) -> Result<Self::Owned>;
    /// A buffer holding `data` (a host-to-device transfer; the CPU keeps the vector).
    #[allow(clippy::wrong_self_convention)]
    fn from_vec(&self, data: Vec<f32>) -> Result<Self::Owned>;
    /// The buffer's contents, copied to the host (a device-to-host transfer).
    fn to_vec(&self, buf: &Self::Buffer) -> Result<Vec<f32>>;
    /// Number of elements of a buffer.
    fn len(&self, buf: &Self::Buffer) -> usize;
    /// `dst = src` (equal lengths).
    fn copy(&self, src: &Self::Buffer, dst: &mut Self::Buffer) -> Result<()>;
    /// Sets every element of `dst` to `value`.
    fn fill(&self, value: f32, dst: &mut Self::Buffer) -> Result<()>;
    /// Copies the elements [`StridedCopy`] addresses from `src` to `dst` (permutes, slices,
    /// and the scatter of a slice's gradient); elements of `dst` it does not address are
    /// left as they are.
    fn copy_strided(
        &self,
        p: &StridedCopy,
        src: &Self::Buffer,
        dst: &mut Self::Buffer,
    ) -> Result<()> {
        p.validate(self.len(src), self.len(dst))?;
        // SAFETY: every length and parameter `copy_strided_unchecked` relies on was checked above.
        unsafe { self.copy_strided_unchecked(p, src, dst) }
    }

    // ---------------------------------------------------------------- elementwise

    /// `y = op(x)` elementwise (equal lengths).
    fn unary(&self, op: UnaryOp, x: &Self::Buffer, y: &mut Self::Buffer) -> Result<()> {
        check_len("unary", "y", self.len(y), self.len(x))?;
        // SAFETY: every length and parameter `unary_unchecked` relies on was checked above.
        unsafe { self.unary_unchecked(op, x, y) }
    }
    /// `dx = dy * op'(x)`, given the forward input `x` and output `y` (all equal lengths).
    fn unary_backward(
        &self,
        op: UnaryOp,
        x: &Self::Buffer,
        y: &Self::Buffer,
        dy: &Self::Buffer,
        dx: &mut Self::Buffer,
    ) -> Result<()> {
        let n = self.len(x);
        for (what, b) in [("y", y), ("dy", dy)] {
            check_len("unary_backward", what, self.len(b), n)?;
        }
        check_len("unary_backward", "dx", self.len(dx), n)?;
        // SAFETY: every length and parameter `unary_backward_unchecked` relies on was checked above.
        unsafe { self.unary_backward_unchecked(op, x, y, dy, dx) }
    }
    /// `out = a op b` with numpy broadcasting; `out` has [`broadcast_shape`]`(a_shape, b_shape)`.
    fn binary(
        &self,
        op: BinaryOp,
        a: &Self::Buffer,
        a_shape: &[usize],
        b: &Self::Buffer,
        b_shape: &[usize],
        out: &mut Self::Buffer,
    ) -> Result<()> {
        const OP: &str = "binary";
        check_len(OP, "a", self.len(a), prod(a_shape))?;
        check_len(OP, "b", self.len(b), prod(b_shape))?;
        let os = broadcast_shape(a_shape, b_shape).ok_or_else(|| KernelError::Broadcast {
            op: OP,
            a: a_shape.to_vec(),
            b: b_shape.to_vec(),
        })?;
        check_len(OP, "out", self.len(out), prod(&os))?;
        // SAFETY: every length and parameter `binary_unchecked` relies on was checked above.
        unsafe { self.binary_unchecked(op, a, a_shape, b, b_shape, out) }
    }
    /// Sums `x` (shape `x_shape`) down to `out_shape`, which must broadcast to `x_shape`: the
    /// backward of broadcasting (e.g. a bias gradient from `[n, c, h, w]` to `[1, c, 1, 1]`).
    fn sum_to_shape(
        &self,
        x: &Self::Buffer,
        x_shape: &[usize],
        out_shape: &[usize],
        out: &mut Self::Buffer,
    ) -> Result<()> {
        const OP: &str = "sum_to_shape";
        check_len(OP, "x", self.len(x), prod(x_shape))?;
        check_len(OP, "out", self.len(out), prod(out_shape))?;
        if out_shape.len() > x_shape.len()
            || broadcast_shape(x_shape, out_shape).as_deref() != Some(x_shape)
        {
            return Err(KernelError::Broadcast {
                op: OP,
                a: x_shape.to_vec(),
                b: out_shape.to_vec(),
            });
        }
        // SAFETY: every length and parameter `sum_to_shape_unchecked` relies on was checked above.
        unsafe { self.sum_to_shape_unchecked(x, x_shape, out_shape, out) }
    }
    /// Broadcasts `x` (shape `x_shape`) to `out_shape`.
    fn broadcast_to(
        &self,
        x: &Self::Buffer,
        x_shape: &[usize],
        out_shape: &[usize],
        out: &mut Self::Buffer,
    ) -> Result<()> {
        const OP: &str = "broadcast_to";
        check_len(OP, "x", self.len(x), prod(x_shape))?;
        check_len(OP, "out", self.len(out), prod(out_shape))?;
        if x_shape.len() > out_shape.len()
            || broadcast_shape(x_shape, out_shape).as_deref() != Some(out_shape)
        {
            return Err(KernelError::Broadcast {
                op: OP,
                a: x_shape.to_vec(),
                b: out_shape.to_vec(),
            });
        }
        // SAFETY: every length and parameter `broadcast_to_unchecked` relies on was checked above.
        unsafe { self.broadcast_to_unchecked(x, x_shape, out_shape, out) }
    }
    /// `y += alpha * x` (accumulates into `y`).
    fn axpy(&self, alpha: f32, x: &Self::Buffer, y: &mut Self::Buffer) -> Result<()> {
        check_len("axpy", "y", self.len(y), self.len(x))?;
        // SAFETY: every length and parameter `axpy_unchecked` relies on was checked above.
        unsafe { self.axpy_unchecked(alpha, x, y) }
    }
    /// DARTS' mixed op: `out = sum_k weights[k] * xs[k]` (`weights` has `xs.len()` elements).
    fn weighted_sum(
        &self,
        weights: &Self::Buffer,
        xs: &[&Self::Buffer],
        out: &mut Self::Buffer,
    ) -> Result<()> {
        const OP: &str = "weighted_sum";
        check_len(OP, "weights", self.len(weights), xs.len())?;
        for x in xs {
            check_len(OP, "xs[k]", self.len(x), self.len(out))?;
        }
        // SAFETY: every length and parameter `weighted_sum_unchecked` relies on was checked above.
        unsafe { self.weighted_sum_unchecked(weights, xs, out) }
    }
    /// Backward of [`Backend::weighted_sum`]: `dxs[k] = weights[k] * dy` and
    /// `dweights[k] = sum(dy * xs[k])`.
    fn weighted_sum_backward(
        &self,
        weights: &Self::Buffer,
        xs: &[&Self::Buffer],
        dy: &Self::Buffer,
        dxs: &mut [&mut Self::Buffer],
        dweights: &mut Self::Buffer,
    ) -> Result<()> {
        const OP: &str = "weighted_sum_backward";
        check_len(OP, "weights", self.len(weights), xs.len())?;
        check_len(OP, "dweights", self.len(dweights), xs.len())?;
        check_len(OP, "dxs (count)", dxs.len(), xs.len())?;
        for x in xs {
            check_len(OP, "xs[k]", self.len(x), self.len(dy))?;
        }
        for d in dxs.iter() {
            check_len(OP, "dxs[k]", self.len(d), self.len(dy))?;
        }
        // SAFETY: every length and parameter `weighted_sum_backward_unchecked` relies on was checked above.
        unsafe { self.weighted_sum_backward_unchecked(weights, xs, dy, dxs, dweights) }
    }
    /// Concatenates NCHW tensors `xs[i]: [n, channels[i], hw]` along channels into
    /// `out: [n, sum(channels), hw]`.
    fn concat_channels(
        &self,
        xs: &[&Self::Buffer],
        channels: &[usize],
        n: usize,
        hw: usize,
        out: &mut Self::Buffer,
    ) -> Result<()> {
        const OP: &str = "concat_channels";
        check_len(OP, "channels (count)", channels.len(), xs.len())?;
        for (x, &c) in xs.iter().zip(channels) {
            check_len(OP, "xs[i]", self.len(x), n * c * hw)?;
        }
        check_len(
            OP,
            "out",
            self.len(out),
            n * channels.iter().sum::<usize>() * hw,
        )?;
        // SAFETY: every length and parameter `concat_channels_unchecked` relies on was checked above.
        unsafe { self.concat_channels_unchecked(xs, channels, n, hw, out) }
    }
    /// Splits `x: [n, sum(channels), hw]` along channels into `outs[i]: [n, channels[i], hw]`
    /// (also the backward of [`Backend::concat_channels`], and vice versa).
    fn split_channels(
        &self,
        x: &Self::Buffer,
        channels: &[usize],
        n: usize,
        hw: usize,
        outs: &mut [&mut Self::Buffer],
    ) -> Result<()> {
        const OP: &str = "split_channels";
        check_len(OP, "channels (count)", channels.len(), outs.len())?;
        for (o, &c) in outs.iter().zip(channels) {
            check_len(OP, "outs[i]", self.len(o), n * c * hw)?;
        }
        check_len(
            OP,
            "x",
            self.len(x),
            n * channels.iter().sum::<usize>() * hw,
        )?;
        // SAFETY: every length and parameter `split_channels_unchecked` relies on was checked above.
        unsafe { self.split_channels_unchecked(x, channels, n, hw, outs) }
    }

    // ---------------------------------------------------------------- reductions

    /// Reduces `x` (shape `shape`) along `axis` (output: `shape` without that axis, i.e.
    /// `prod(shape) / shape[axis]` elements), or over everything when `axis` is `None`
    /// (output: 1 element).
    fn reduce(
        &self,
        op: ReduceOp,
        x: &Self::Buffer,
        shape: &[usize],
        axis: Option<usize>,
        out: &mut Self::Buffer,
    ) -> Result<()> {
        let (outer, len, _inner) = reduce_dims("reduce", self.len(x), shape, axis)?;
        check_len("reduce", "out", self.len(out), outer * _inner)?;
        if len == 0 && op == ReduceOp::Max {
            return Err(KernelError::param("reduce", "max over an empty axis"));
        }
        // SAFETY: every length and parameter `reduce_unchecked` relies on was checked above.
        unsafe { self.reduce_unchecked(op, x, shape, axis, out) }
    }
    /// Backward of [`Backend::reduce`] given its input `x` and output `y`.
    fn reduce_backward(
        &self,
        op: ReduceOp,
        x: &Self::Buffer,
        y: &Self::Buffer,
        shape: &[usize],
        axis: Option<usize>,
        dy: &Self::Buffer,
        dx: &mut Self::Buffer,
    ) -> Result<()> {
        const OP: &str = "reduce_backward";
        let (outer, _, inner) = reduce_dims(OP, self.len(x), shape, axis)?;
        check_len(OP, "y", self.len(y), outer * inner)?;
        check_len(OP, "dy", self.len(dy), outer * inner)?;
        check_len(OP, "dx", self.len(dx), self.len(x))?;
        // SAFETY: every length and parameter `reduce_backward_unchecked` relies on was checked above.
        unsafe { self.reduce_backward_unchecked(op, x, y, shape, axis, dy, dx) }
    }
    /// Softmax or log-softmax over the last axis of a `rows x cols` matrix.
    fn softmax(
        &self,
        op: SoftmaxOp,
        x: &Self::Buffer,
        rows: usize,
        cols: usize,
        y: &mut Self::Buffer,
    ) -> Result<()> {
        check_len("softmax", "x", self.len(x), rows * cols)?;
        check_len("softmax", "y", self.len(y), rows * cols)?;
        // SAFETY: every length and parameter `softmax_unchecked` relies on was checked above.
        unsafe { self.softmax_unchecked(op, x, rows, cols, y) }
    }
    /// Backward of [`Backend::softmax`] from its output `y`.
    fn softmax_backward(
        &self,
        op: SoftmaxOp,
        y: &Self::Buffer,
        dy: &Self::Buffer,
        rows: usize,
        cols: usize,
        dx: &mut Self::Buffer,
    ) -> Result<()> {
        for (what, l) in [
            ("y", self.len(y)),
            ("dy", self.len(dy)),
            ("dx", self.len(dx)),
        ] {
            check_len("softmax_backward", what, l, rows * cols)?;
        }
        // SAFETY: every length and parameter `softmax_backward_unchecked` relies on was checked above.
        unsafe { self.softmax_backward_unchecked(op, y, dy, rows, cols, dx) }
    }
    /// Cross-entropy of `logits: [rows, cols]` with integer `labels` (`rows` of them, each
    /// `< cols`), averaged over rows, written to `loss` (1 element).
    fn cross_entropy(
        &self,
        logits: &Self::Buffer,
        labels: &[usize],
        rows: usize,
        cols: usize,
        loss: &mut Self::Buffer,
    ) -> Result<()> {
        check_ce("cross_entropy", self.len(logits), labels, rows, cols)?;
        check_len("cross_entropy", "loss", self.len(loss), 1)?;
        // SAFETY: every length and parameter `cross_entropy_unchecked` relies on was checked above.
        unsafe { self.cross_entropy_unchecked(logits, labels, rows, cols, loss) }
    }
    /// Backward of [`Backend::cross_entropy`]: `dlogits = dloss / rows * (softmax - onehot)`,
    /// `dloss` being the 1-element upstream gradient.
    fn cross_entropy_backward(
        &self,
        logits: &Self::Buffer,
        labels: &[usize],
        rows: usize,
        cols: usize,
        dloss: &Self::Buffer,
        dlogits: &mut Self::Buffer,
    ) -> Result<()> {
        const OP: &str = "cross_entropy_backward";
        check_ce(OP, self.len(logits), labels, rows, cols)?;
        check_len(OP, "dloss", self.len(dloss), 1)?;
        check_len(OP, "dlogits", self.len(dlogits), rows * cols)?;
        // SAFETY: every length and parameter `cross_entropy_backward_unchecked` relies on was checked above.
        unsafe { self.cross_entropy_backward_unchecked(logits, labels, rows, cols, dloss, dlogits) }
    }

    // ---------------------------------------------------------------- linear algebra, conv

    /// Batched GEMM, see [`Matmul`]. Reads `c` only when `beta != 0`.
    fn matmul(
        &self,
        p: &Matmul,
        a: &Self::Buffer,
        b: &Self::Buffer,
        c: &mut Self::Buffer,
    ) -> Result<()> {
        check_len("matmul", "a", self.len(a), p.a_len())?;
        check_len("matmul", "b", self.len(b), p.b_len())?;
        check_len("matmul", "c", self.len(c), p.c_len())?;
        // SAFETY: every length and parameter `matmul_unchecked` relies on was checked above.
        unsafe { self.matmul_unchecked(p, a, b, c) }
    }
    /// 2-D convolution `y = conv(x, w) + bias`, see [`Conv2dParams`] for shapes.
    fn conv2d(
        &self,
        p: &Checked<Conv2dParams>,
        x: &Self::Buffer,
        w: &Self::Buffer,
        bias: Option<&Self::Buffer>,
        y: &mut Self::Buffer,
    ) -> Result<()> {
        const OP: &str = "conv2d";
        check_len(OP, "x", self.len(x), p.x_len())?;
        check_len(OP, "weight", self.len(w), p.w_len())?;
        if let Some(b) = bias {
            check_len(OP, "bias", self.len(b), p.c_out)?;
        }
        check_len(OP, "y", self.len(y), p.y_len())?;
        // SAFETY: every length and parameter `conv2d_unchecked` relies on was checked above.
        unsafe { self.conv2d_unchecked(p, x, w, bias, y) }
    }
    /// Gradient of a convolution with respect to its input.
    fn conv2d_backward_input(
        &self,
        p: &Checked<Conv2dParams>,
        w: &Self::Buffer,
        dy: &Self::Buffer,
        dx: &mut Self::Buffer,
    ) -> Result<()> {
        const OP: &str = "conv2d_backward_input";
        check_len(OP, "weight", self.len(w), p.w_len())?;
        check_len(OP, "dy", self.len(dy), p.y_len())?;
        check_len(OP, "dx", self.len(dx), p.x_len())?;
        // SAFETY: every length and parameter `conv2d_backward_input_unchecked` relies on was checked above.
        unsafe { self.conv2d_backward_input_unchecked(p, w, dy, dx) }
    }
    /// Gradient of a convolution with respect to its weight (and bias, when `dbias` is given).
    fn conv2d_backward_weight(
        &self,
        p: &Checked<Conv2dParams>,
        x: &Self::Buffer,
        dy: &Self::Buffer,
        dw: &mut Self::Buffer,
        dbias: Option<&mut Self::Buffer>,
    ) -> Result<()> {
        const OP: &str = "conv2d_backward_weight";
        check_len(OP, "x", self.len(x), p.x_len())?;
        check_len(OP, "dy", self.len(dy), p.y_len())?;
        check_len(OP, "dweight", self.len(dw), p.w_len())?;
        if let Some(b) = dbias.as_deref() {
            check_len(OP, "dbias", self.len(b), p.c_out)?;
        }
        // SAFETY: every length and parameter `conv2d_backward_weight_unchecked` relies on was checked above.
        unsafe { self.conv2d_backward_weight_unchecked(p, x, dy, dw, dbias) }
    }
    /// [`Backend::conv2d`] (no bias) of `relu(x)`: the ReLU is applied as the input is read, so
    /// no ReLU tensor is written (the front of DARTS' separable and dilated convolutions).
    fn conv2d_relu_input(
        &self,
        p: &Checked<Conv2dParams>,
        x: &Self::Buffer,
        w: &Self::Buffer,
        y: &mut Self::Buffer,
    ) -> Result<()> {
        const OP: &str = "conv2d_relu_input";
        check_len(OP, "x", self.len(x), p.x_len())?;
        check_len(OP, "weight", self.len(w), p.w_len())?;
        check_len(OP, "y", self.len(y), p.y_len())?;
        // SAFETY: every length and parameter `conv2d_relu_input_unchecked` relies on was checked above.
        unsafe { self.conv2d_relu_input_unchecked(p, x, w, y) }
    }
    /// [`Backend::conv2d_backward_input`] of a convolution whose input was `relu(x)`, carried
    /// through the ReLU: `dx = conv2d_backward_input(dy) * (x > 0)`.
    fn conv2d_backward_input_relu_mask(
        &self,
        p: &Checked<Conv2dParams>,
        w: &Self::Buffer,
        dy: &Self::Buffer,
        x: &Self::Buffer,
        dx: &mut Self::Buffer,
    ) -> Result<()> {
        const OP: &str = "conv2d_backward_input_relu_mask";
        check_len(OP, "weight", self.len(w), p.w_len())?;
        check_len(OP, "dy", self.len(dy), p.y_len())?;
        check_len(OP, "x", self.len(x), p.x_len())?;
        check_len(OP, "dx", self.len(dx), p.x_len())?;
        // SAFETY: every length and parameter `conv2d_backward_input_relu_mask_unchecked` relies on was checked above.
        unsafe { self.conv2d_backward_input_relu_mask_unchecked(p, w, dy, x, dx) }
    }
    /// [`Backend::conv2d_backward_weight`] (no bias) of a convolution whose input was `relu(x)`.
    fn conv2d_backward_weight_relu_input(
        &self,
        p: &Checked<Conv2dParams>,
        x: &Self::Buffer,
        dy: &Self::Buffer,
        dw: &mut Self::Buffer,
    ) -> Result<()> {
        const OP: &str = "conv2d_backward_weight_relu_input";
        check_len(OP, "x", self.len(x), p.x_len())?;
        check_len(OP, "dy", self.len(dy), p.y_len())?;
        check_len(OP, "dweight", self.len(dw), p.w_len())?;
        // SAFETY: every length and parameter `conv2d_backward_weight_relu_input_unchecked` relies on was checked above.
        unsafe { self.conv2d_backward_weight_relu_input_unchecked(p, x, dy, dw) }
    }

    // ---------------------------------------------------------------- pooling, norm

    /// Max or average pooling, see [`Pool2dParams`].
    fn pool2d(
        &self,
        p: &Checked<Pool2dParams>,
        x: &Self::Buffer,
        y: &mut Self::Buffer,
    ) -> Result<()> {
        check_len("pool2d", "x", self.len(x), p.x_len())?;
        check_len("pool2d", "y", self.len(y), p.y_len())?;
        // SAFETY: every length and parameter `pool2d_unchecked` relies on was checked above.
        unsafe { self.pool2d_unchecked(p, x, y) }
    }
    /// Backward of [`Backend::pool2d`] given its input `x` and, if the caller kept it, its
    /// output `y` (a backend may use it to locate max pooling's arg-max; the CPU backend
    /// recomputes the arg-max from `x`, so callers of it need not keep the output). Average
    /// pooling's backward reads no values: `x` may then be empty (callers need not keep it).
    fn pool2d_backward(
        &self,
        p: &Checked<Pool2dParams>,
        x: &Self::Buffer,
        y: Option<&Self::Buffer>,
        dy: &Self::Buffer,
        dx: &mut Self::Buffer,
    ) -> Result<()> {
        const OP: &str = "pool2d_backward";
        if !(matches!(p.kind, PoolKind::Avg { .. }) && self.len(x) == 0) {
            check_len(OP, "x", self.len(x), p.x_len())?;
        }
        if let Some(y) = y {
            check_len(OP, "y", self.len(y), p.y_len())?;
        }
        check_len(OP, "dy", self.len(dy), p.y_len())?;
        check_len(OP, "dx", self.len(dx), p.x_len())?;
        // SAFETY: every length and parameter `pool2d_backward_unchecked` relies on was checked above.
        unsafe { self.pool2d_backward_unchecked(p, x, y, dy, dx) }
    }
    /// Global average pooling `[n, c, hw] -> [n, c]`.
    fn global_avg_pool(
        &self,
        n: usize,
        c: usize,
        hw: usize,
        x: &Self::Buffer,
        y: &mut Self::Buffer,
    ) -> Result<()> {
        if hw == 0 {
            return Err(KernelError::param("global_avg_pool", "hw must be positive"));
        }
        check_len("global_avg_pool", "x", self.len(x), n * c * hw)?;
        check_len("global_avg_pool", "y", self.len(y), n * c)?;
        // SAFETY: every length and parameter `global_avg_pool_unchecked` relies on was checked above.
        unsafe { self.global_avg_pool_unchecked(n, c, hw, x, y) }
    }
    /// Backward of [`Backend::global_avg_pool`].
    fn global_avg_pool_backward(
        &self,
        n: usize,
        c: usize,
        hw: usize,
        dy: &Self::Buffer,
        dx: &mut Self::Buffer,
    ) -> Result<()> {
        const OP: &str = "global_avg_pool_backward";
        if hw == 0 {
            return Err(KernelError::param(OP, "hw must be positive"));
        }
        check_len(OP, "dy", self.len(dy), n * c)?;
        check_len(OP, "dx", self.len(dx), n * c * hw)?;
        // SAFETY: every length and parameter `global_avg_pool_backward_unchecked` relies on was checked above.
        unsafe { self.global_avg_pool_backward_unchecked(n, c, hw, dy, dx) }
    }
    /// Batch norm, see [`BatchNormParams`]. `gamma`/`beta` (`c` each) are the optional affine
    /// parameters. Training uses batch statistics and updates the running statistics that are
    /// given; evaluation requires both running statistics. `save_mean` and `save_invstd`
    /// (`c` each) receive the mean and `1 / sqrt(var + eps)` actually used, for the backward.
    fn batch_norm(
        &self,
        p: &Checked<BatchNormParams>,
        x: &Self::Buffer,
        gamma: Option<&Self::Buffer>,
        beta: Option<&Self::Buffer>,
        running_mean: Option<&mut Self::Buffer>,
        running_var: Option<&mut Self::Buffer>,
        y: &mut Self::Buffer,
        save_mean: &mut Self::Buffer,
        save_invstd: &mut Self::Buffer,
    ) -> Result<()> {
        const OP: &str = "batch_norm";
        check_len(OP, "x", self.len(x), p.x_len())?;
        check_len(OP, "y", self.len(y), p.x_len())?;
        for (what, b) in [("gamma", gamma), ("beta", beta)] {
            if let Some(b) = b {
                check_len(OP, what, self.len(b), p.c)?;
            }
        }
        for (what, b) in [
            ("running_mean", running_mean.as_deref()),
            ("running_var", running_var.as_deref()),
        ] {
            if let Some(b) = b {
                check_len(OP, what, self.len(b), p.c)?;
            }
        }
        check_len(OP, "save_mean", self.len(save_mean), p.c)?;
        check_len(OP, "save_invstd", self.len(save_invstd), p.c)?;
        if !p.training && (running_mean.is_none() || running_var.is_none()) {
            return Err(KernelError::param(
                OP,
                "evaluation mode needs running_mean and running_var",
            ));
        }
        // SAFETY: every length and parameter `batch_norm_unchecked` relies on was checked above.
        unsafe {
            self.batch_norm_unchecked(
                p,
                x,
                gamma,
                beta,
                running_mean,
                running_var,
                y,
                save_mean,
                save_invstd,
            )
        }
    }
    /// Backward of [`Backend::batch_norm`] (same `p`, same `gamma`, the saved statistics):
    /// writes `dx`, and `dgamma`/`dbeta` when given.
    fn batch_norm_backward(
        &self,
        p: &Checked<BatchNormParams>,
        x: &Self::Buffer,
        gamma: Option<&Self::Buffer>,
        save_mean: &Self::Buffer,
        save_invstd: &Self::Buffer,
        dy: &Self::Buffer,
        dx: &mut Self::Buffer,
        dgamma: Option<&mut Self::Buffer>,
        dbeta: Option<&mut Self::Buffer>,
    ) -> Result<()> {
        const OP: &str = "batch_norm_backward";
        for (what, b) in [("x", x), ("dy", dy)] {
            check_len(OP, what, self.len(b), p.x_len())?;
        }
        check_len(OP, "dx", self.len(dx), p.x_len())?;
        if let Some(g) = gamma {
            check_len(OP, "gamma", self.len(g), p.c)?;
        }
        check_len(OP, "save_mean", self.len(save_mean), p.c)?;
        check_len(OP, "save_invstd", self.len(save_invstd), p.c)?;
        for (what, b) in [("dgamma", dgamma.as_deref()), ("dbeta", dbeta.as_deref())] {
            if let Some(b) = b {
                check_len(OP, what, self.len(b), p.c)?;
            }
        }
        // SAFETY: every length and parameter `batch_norm_backward_unchecked` relies on was checked above.
        unsafe {
            self.batch_norm_backward_unchecked(
                p,
                x,
                gamma,
                save_mean,
                save_invstd,
                dy,
                dx,
                dgamma,
                dbeta,
            )
        }
    }

    // ---------------------------------------------------------------- selections

    /// Backward of an elementwise maximum or minimum `y = op(a, b)` (all four buffers of
    /// `y`'s length, `a` broadcast to it): the gradient goes to `a` where `a == y` (ties
    /// included), else to `b`: `da = dy * (a == y)`, `db = dy * (a != y)`.
    fn select_backward(
        &self,
        a: &Self::Buffer,
        y: &Self::Buffer,
        dy: &Self::Buffer,
        da: &mut Self::Buffer,
        db: &mut Self::Buffer,
    ) -> Result<()> {
        const OP: &str = "select_backward";
        let n = self.len(y);
        for (what, l) in [
            ("a", self.len(a)),
            ("dy", self.len(dy)),
            ("da", self.len(da)),
            ("db", self.len(db)),
        ] {
            check_len(OP, what, l, n)?;
        }
        // SAFETY: every length and parameter `select_backward_unchecked` relies on was checked above.
        unsafe { self.select_backward_unchecked(a, y, dy, da, db) }
    }
    /// The index of the largest value of each row of `x: [rows, cols]` (the first on ties),
    /// written as an `f32` into `out` (`rows` elements).
    fn argmax_rows(
        &self,
        x: &Self::Buffer,
        rows: usize,
        cols: usize,
        out: &mut Self::Buffer,
    ) -> Result<()> {
        check_len("argmax_rows", "x", self.len(x), rows * cols)?;
        check_len("argmax_rows", "out", self.len(out), rows)?;
        if cols == 0 && rows > 0 {
            return Err(KernelError::param("argmax_rows", "rows have no columns"));
        }
        // SAFETY: every length and parameter `argmax_rows_unchecked` relies on was checked above.
        unsafe { self.argmax_rows_unchecked(x, rows, cols, out) }
    }

    // ---------------------------------------------------------------- recurrent models

    /// Embedding lookup: `out[i, :] = table[indices[i], :]` for every `i`, with `table`
    /// `[p.table_rows, p.cols]` and `out` `[indices.len(), p.cols]`. `indices` is a host
    /// slice (token ids, like the labels of [`Backend::cross_entropy`]; a device backend
    /// uploads it); every index must be `< p.table_rows`
    /// ([`Rows::check`] rejects the call otherwise and nothing is written).
    fn gather_rows(
        &self,
        p: &Rows,
        table: &Self::Buffer,
        indices: &[usize],
        out: &mut Self::Buffer,
    ) -> Result<()> {
        p.check("gather_rows", indices, self.len(table), self.len(out))?;
        // SAFETY: every length and index `gather_rows_unchecked` relies on was checked above.
        unsafe { self.gather_rows_unchecked(p, table, indices, out) }
    }
    /// Backward of [`Backend::gather_rows`]: `table[indices[i], :] += src[i, :]` for every `i`
    /// (**accumulates** into `table`, which the caller zeroes for a plain gradient; repeated
    /// indices add up, in an unspecified order, so backends may differ in the last bits).
    /// Shapes and indices as in [`Backend::gather_rows`], `src` in the place of `out`.
    fn scatter_add_rows(
        &self,
        p: &Rows,
        src: &Self::Buffer,
        indices: &[usize],
        table: &mut Self::Buffer,
    ) -> Result<()> {
        p.check("scatter_add_rows", indices, self.len(table), self.len(src))?;
        // SAFETY: every length and index `scatter_add_rows_unchecked` relies on was checked above.
        unsafe { self.scatter_add_rows_unchecked(p, src, indices, table) }
    }
    /// The pointwise part of one LSTM step (equations in [`crate::ops::recurrent`]): from the
    /// gate pre-activations `gates: [batch, 4 * hidden]` (per row four blocks `i, f, g, o`;
    /// `x W_ih^T + h_prev W_hh^T + b`, computed by the caller) and the previous cell
    /// `c_prev: [batch, hidden]`, writes the activated gates to `act: [batch, 4 * hidden]`
    /// (same layout; the backward reads them) and the new state to `hc: [2, batch, hidden]`:
    /// the output `h` first, then the cell `c`.
    fn lstm_cell(
        &self,
        p: &LstmCell,
        gates: &Self::Buffer,
        c_prev: &Self::Buffer,
        act: &mut Self::Buffer,
        hc: &mut Self::Buffer,
    ) -> Result<()> {
        p.check_forward(
            self.len(gates),
            self.len(c_prev),
            self.len(act),
            self.len(hc),
        )?;
        // SAFETY: every length and index `lstm_cell_unchecked` relies on was checked above.
        unsafe { self.lstm_cell_unchecked(p, gates, c_prev, act, hc) }
    }
    /// Backward of [`Backend::lstm_cell`] from its saved `act`, its `c_prev` and its output
    /// `hc`, given the upstream gradient `dhc: [2, batch, hidden]` (of `h`, then of `c`):
    /// writes the gradient of the gate pre-activations to `dgates: [batch, 4 * hidden]` and
    /// of the previous cell to `dc_prev: [batch, hidden]`.
    #[allow(clippy::too_many_arguments)]
    fn lstm_cell_backward(
        &self,
        p: &LstmCell,
        act: &Self::Buffer,
        c_prev: &Self::Buffer,
        hc: &Self::Buffer,
        dhc: &Self::Buffer,
        dgates: &mut Self::Buffer,
        dc_prev: &mut Self::Buffer,
    ) -> Result<()> {
        p.check_backward(
            self.len(act),
            self.len(c_prev),
            self.len(hc),
            self.len(dhc),
            self.len(dgates),
            self.len(dc_prev),
        )?;
        // SAFETY: every length and index `lstm_cell_backward_unchecked` relies on was checked above.
        unsafe { self.lstm_cell_backward_unchecked(p, act, c_prev, hc, dhc, dgates, dc_prev) }
    }
    /// A whole LSTM recurrence over `T = p.steps` steps of `n = p.batch` sequences of
    /// `h = p.hidden` units. `xg: [T, n, 4h]` holds each step's input contribution to the
    /// gate pre-activations (`x_t W_ih^T + b`, one GEMM over all steps done by the caller),
    /// `w_hh: [4h, h]` the recurrent weight (PyTorch's `weight_hh_l0`), `h0`, `c0: [n, h]`
    /// the initial state. For `t = 0..T`, in order: `a_t = xg[t] + h_{t-1} w_hh^T` (one GEMM
    /// for the four gates), then [`Backend::lstm_cell`]'s pointwise step on `a_t` and
    /// `c_{t-1}`. Writes the activated gates of every step to `act: [T, n, 4h]`, the outputs
    /// `h_t` to `hs: [T, n, h]` and the cells `c_t` to `cs: [T, n, h]`.
    #[allow(clippy::too_many_arguments)]
    fn lstm_sequence(
        &self,
        p: &Lstm,
        xg: &Self::Buffer,
        w_hh: &Self::Buffer,
        h0: &Self::Buffer,
        c0: &Self::Buffer,
        act: &mut Self::Buffer,
        hs: &mut Self::Buffer,
        cs: &mut Self::Buffer,
    ) -> Result<()> {
        p.check_forward(
            self.len(xg),
            self.len(w_hh),
            self.len(h0),
            self.len(c0),
            self.len(act),
            self.len(hs),
            self.len(cs),
        )?;
        // SAFETY: every length and index `lstm_sequence_unchecked` relies on was checked above.
        unsafe { self.lstm_sequence_unchecked(p, xg, w_hh, h0, c0, act, hs, cs) }
    }
    /// Backward of [`Backend::lstm_sequence`] (backpropagation through its `T` steps) given
    /// its `w_hh`, `c0`, saved `act` and `cs`, and the upstream gradient `dhs: [T, n, h]` of
    /// the outputs; the final cell `c_{T-1}` is taken to have no upstream gradient. Writes
    /// the gradient of `xg` to `dxg: [T, n, 4h]` (which is also the gradient of each step's
    /// gate pre-activations, so the caller gets `W_ih`, `b`, `x` and `w_hh`'s gradients from
    /// it with GEMMs and a row sum) and of the initial state to `dh0`, `dc0: [n, h]`.
    #[allow(clippy::too_many_arguments)]
    fn lstm_sequence_backward(
        &self,
        p: &Lstm,
        w_hh: &Self::Buffer,
        c0: &Self::Buffer,
        act: &Self::Buffer,
        cs: &Self::Buffer,
        dhs: &Self::Buffer,
        dxg: &mut Self::Buffer,
        dh0: &mut Self::Buffer,
        dc0: &mut Self::Buffer,
    ) -> Result<()> {
        p.check_backward(
            self.len(w_hh),
            self.len(c0),
            self.len(act),
            self.len(cs),
            self.len(dhs),
            self.len(dxg),
            self.len(dh0),
            self.len(dc0),
        )?;
        // SAFETY: every length and index `lstm_sequence_backward_unchecked` relies on was checked above.
        unsafe { self.lstm_sequence_backward_unchecked(p, w_hh, c0, act, cs, dhs, dxg, dh0, dc0) }
    }

    // ---------------------------------------------------------------- optimizers

    /// One SGD update of the weights `w` from their gradient `g`, see [`SgdStep`]
    /// (`momentum` is the momentum buffer, required when `p.momentum != 0`).
    fn sgd_step(
        &self,
        p: &SgdStep,
        w: &mut Self::Buffer,
        g: &Self::Buffer,
        momentum: Option<&mut Self::Buffer>,
    ) -> Result<()> {
        check_len("sgd_step", "g", self.len(g), self.len(w))?;
        if let Some(b) = momentum.as_deref() {
            check_len("sgd_step", "momentum", self.len(b), self.len(w))?;
        } else if p.momentum != 0.0 {
            return Err(KernelError::param("sgd_step", "momentum needs a buffer"));
        }
        // SAFETY: every length and parameter `sgd_step_unchecked` relies on was checked above.
        unsafe { self.sgd_step_unchecked(p, w, g, momentum) }
    }
    /// One Adam update of `w` from its gradient `g` and moments `m`, `v`, see [`AdamStep`].
    fn adam_step(
        &self,
        p: &AdamStep,
        w: &mut Self::Buffer,
        g: &Self::Buffer,
        m: &mut Self::Buffer,
        v: &mut Self::Buffer,
    ) -> Result<()> {
        let n = self.len(w);
        for (what, l) in [("g", self.len(g)), ("m", self.len(m)), ("v", self.len(v))] {
            check_len("adam_step", what, l, n)?;
        }
        // SAFETY: every length and parameter `adam_step_unchecked` relies on was checked above.
        unsafe { self.adam_step_unchecked(p, w, g, m, v) }
    }
    /// Clips gradients by their global L2 norm (PyTorch's `clip_grad_norm_`): with
    /// `total = sqrt(sum of squares of every element of every buffer)` (accumulated in
    /// `f64`), multiplies every element by `max_norm / (total + 1e-6)` when that is below 1.
    /// Writes `total` to `total_out` (1 element).
    fn clip_grad_norm(
        &self,
        grads: &mut [&mut Self::Buffer],
        max_norm: f32,
        total_out: &mut Self::Buffer,
    ) -> Result<()> {
        check_len("clip_grad_norm", "total_out", self.len(total_out), 1)?;
        // SAFETY: every length and parameter `clip_grad_norm_unchecked` relies on was checked above.
        unsafe { self.clip_grad_norm_unchecked(grads, max_norm, total_out) }
    }

    // ---------------------------------------------------------------- randomness

    /// Fills `out` with samples of `dist` for `seed`, counter-based: element `i` is a pure
    /// function of `(seed, i)` as [`crate::ops::random`] defines it, so every backend produces
    /// the same values.
    fn fill_random(&self, dist: RandomDist, seed: u64, out: &mut Self::Buffer) -> Result<()> {
        dist.validate()?;
        // SAFETY: every length and parameter `fill_random_unchecked` relies on was checked above.
        unsafe { self.fill_random_unchecked(dist, seed, out) }
    }
    /// Inverted-dropout mask for `seed`: element `i` is `1 / (1 - p)` where its uniform
    /// ([`crate::ops::random`]) is below `1 - p`, else 0 (`p` in `[0, 1]`); multiply
    /// activations by it (and gradients by the same mask).
    fn dropout_mask(&self, p: f32, seed: u64, out: &mut Self::Buffer) -> Result<()> {
        validate_dropout(p)?;
        // SAFETY: every length and parameter `dropout_mask_unchecked` relies on was checked above.
        unsafe { self.dropout_mask_unchecked(p, seed, out) }
    }

    // ---------------------------------------------------------------- kernels (implementors)

    /// The kernel behind [`Backend::copy_strided`], which checks its arguments and calls it.
    ///
    /// # Safety
    /// The caller guarantees what [`Backend::copy_strided`] checks (buffer lengths and
    /// parameters); an implementation may rely on it without checking again (debug
    /// assertions only).
    unsafe fn copy_strided_unchecked(
        &self,
        p: &StridedCopy,
        src: &Self::Buffer,
        dst: &mut Self::Buffer,
    ) -> Result<()>;
    /// The kernel behind [`Backend::unary`], which checks its arguments and calls it.
    ///
    /// # Safety
    /// The caller guarantees what [`Backend::unary`] checks (buffer lengths and
    /// parameters); an implementation may rely on it without checking again (debug
    /// assertions only).
    unsafe fn unary_unchecked(
        &self,
        op: UnaryOp,
        x: &Self::Buffer,
        y: &mut Self::Buffer,
    ) -> Result<()>;
    /// The kernel behind [`Backend::unary_backward`], which checks its arguments and calls it.
    ///
    /// # Safety
    /// The caller guarantees what [`Backend::unary_backward`] checks (buffer lengths and
    /// parameters); an implementation may rely on it without checking again (debug
    /// assertions only).
    unsafe fn unary_backward_unchecked(
        &self,
        op: UnaryOp,
        x: &Self::Buffer,
        y: &Self::Buffer,
        dy: &Self::Buffer,
        dx: &mut Self::Buffer,
    ) -> Result<()>;
    /// The kernel behind [`Backend::binary`], which checks its arguments and calls it.
    ///
    /// # Safety
    /// The caller guarantees what [`Backend::binary`] checks (buffer lengths and
    /// parameters); an implementation may rely on it without checking again (debug
    /// assertions only).
    unsafe fn binary_unchecked(
        &self,
        op: BinaryOp,
        a: &Self::Buffer,
        a_shape: &[usize],
        b: &Self::Buffer,
        b_shape: &[usize],
        out: &mut Self::Buffer,
    ) -> Result<()>;
    /// The kernel behind [`Backend::sum_to_shape`], which checks its arguments and calls it.
    ///
    /// # Safety
    /// The caller guarantees what [`Backend::sum_to_shape`] checks (buffer lengths and
    /// parameters); an implementation may rely on it without checking again (debug
    /// assertions only).
    unsafe fn sum_to_shape_unchecked(
        &self,
        x: &Self::Buffer,
        x_shape: &[usize],
        out_shape: &[usize],
        out: &mut Self::Buffer,
    ) -> Result<()>;
    /// The kernel behind [`Backend::broadcast_to`], which checks its arguments and calls it.
    ///
    /// # Safety
    /// The caller guarantees what [`Backend::broadcast_to`] checks (buffer lengths and
    /// parameters); an implementation may rely on it without checking again (debug
    /// assertions only).
    unsafe fn broadcast_to_unchecked(
        &self,
        x: &Self::Buffer,
        x_shape: &[usize],
        out_shape: &[usize],
        out: &mut Self::Buffer,
    ) -> Result<()>;
    /// The kernel behind [`Backend::axpy`], which checks its arguments and calls it.
    ///
    /// # Safety
    /// The caller guarantees what [`Backend::axpy`] checks (buffer lengths and
    /// parameters); an implementation may rely on it without checking again (debug
    /// assertions only).
    unsafe fn axpy_unchecked(
        &self,
        alpha: f32,
        x: &Self::Buffer,
        y: &mut Self::Buffer,
    ) -> Result<()>;
    /// The kernel behind [`Backend::weighted_sum`], which checks its arguments and calls it.
    ///
    /// # Safety
    /// The caller guarantees what [`Backend::weighted_sum`] checks (buffer lengths and
    /// parameters); an implementation may rely on it without checking again (debug
    /// assertions only).
    unsafe fn weighted_sum_unchecked(
        &self,
        weights: &Self::Buffer,
        xs: &[&Self::Buffer],
        out: &mut Self::Buffer,
    ) -> Result<()>;
    /// The kernel behind [`Backend::weighted_sum_backward`], which checks its arguments and calls it.
    ///
    /// # Safety
    /// The caller guarantees what [`Backend::weighted_sum_backward`] checks (buffer lengths and
    /// parameters); an implementation may rely on it without checking again (debug
    /// assertions only).
    unsafe fn weighted_sum_backward_unchecked(
        &self,
        weights: &Self::Buffer,
        xs: &[&Self::Buffer],
        dy: &Self::Buffer,
        dxs: &mut [&mut Self::Buffer],
        dweights: &mut Self::Buffer,
    ) -> Result<()>;
    /// The kernel behind [`Backend::concat_channels`], which checks its arguments and calls it.
    ///
    /// # Safety
    /// The caller guarantees what [`Backend::concat_channels`] checks (buffer lengths and
    /// parameters); an implementation may rely on it without checking again (debug
    /// assertions only).
    unsafe fn concat_channels_unchecked(
        &self,
        xs: &[&Self::Buffer],
        channels: &[usize],
        n: usize,
        hw: usize,
        out: &mut Self::Buffer,
    ) -> Result<()>;
    /// The kernel behind [`Backend::split_channels`], which checks its arguments and calls it.
    ///
    /// # Safety
    /// The caller guarantees what [`Backend::split_channels`] checks (buffer lengths and
    /// parameters); an implementation may rely on it without checking again (debug
    /// assertions only).
    unsafe fn split_channels_unchecked(
        &self,
        x: &Self::Buffer,
        channels: &[usize],
        n: usize,
        hw: usize,
        outs: &mut [&mut Self::Buffer],
    ) -> Result<()>;
    /// The kernel behind [`Backend::reduce`], which checks its arguments and calls it.
    ///
    /// # Safety
    /// The caller guarantees what [`Backend::reduce`] checks (buffer lengths and
    /// parameters); an implementation may rely on it without checking again (debug
    /// assertions only).
    unsafe fn reduce_unchecked(
        &self,
        op: ReduceOp,
        x: &Self::Buffer,
        shape: &[usize],
        axis: Option<usize>,
        out: &mut Self::Buffer,
    ) -> Result<()>;
    /// The kernel behind [`Backend::reduce_backward`], which checks its arguments and calls it.
    ///
    /// # Safety
    /// The caller guarantees what [`Backend::reduce_backward`] checks (buffer lengths and
    /// parameters); an implementation may rely on it without checking again (debug
    /// assertions only).
    unsafe fn reduce_backward_unchecked(
        &self,
        op: ReduceOp,
        x: &Self::Buffer,
        y: &Self::Buffer,
        shape: &[usize],
        axis: Option<usize>,
        dy: &Self::Buffer,
        dx: &mut Self::Buffer,
    ) -> Result<()>;
    /// The kernel behind [`Backend::softmax`], which checks its arguments and calls it.
    ///
    /// # Safety
    /// The caller guarantees what [`Backend::softmax`] checks (buffer lengths and
    /// parameters); an implementation may rely on it without checking again (debug
    /// assertions only).
    unsafe fn softmax_unchecked(
        &self,
        op: SoftmaxOp,
        x: &Self::Buffer,
        rows: usize,
        cols: usize,
        y: &mut Self::Buffer,
    ) -> Result<()>;
    /// The kernel behind [`Backend::softmax_backward`], which checks its arguments and calls it.
    ///
    /// # Safety
    /// The caller guarantees what [`Backend::softmax_backward`] checks (buffer lengths and
    /// parameters); an implementation may rely on it without checking again (debug
    /// assertions only).
    unsafe fn softmax_backward_unchecked(
        &self,
        op: SoftmaxOp,
        y: &Self::Buffer,
        dy: &Self::Buffer,
        rows: usize,
        cols: usize,
        dx: &mut Self::Buffer,
    ) -> Result<()>;
    /// The kernel behind [`Backend::cross_entropy`], which checks its arguments and calls it.
    ///
    /// # Safety
    /// The caller guarantees what [`Backend::cross_entropy`] checks (buffer lengths and
    /// parameters); an implementation may rely on it without checking again (debug
    /// assertions only).
    unsafe fn cross_entropy_unchecked(
        &self,
        logits: &Self::Buffer,
        labels: &[usize],
        rows: usize,
        cols: usize,
        loss: &mut Self::Buffer,
    ) -> Result<()>;
    /// The kernel behind [`Backend::cross_entropy_backward`], which checks its arguments and calls it.
    ///
    /// # Safety
    /// The caller guarantees what [`Backend::cross_entropy_backward`] checks (buffer lengths and
    /// parameters); an implementation may rely on it without checking again (debug
    /// assertions only).
    unsafe fn cross_entropy_backward_unchecked(
        &self,
        logits: &Self::Buffer,
        labels: &[usize],
        rows: usize,
        cols: usize,
        dloss: &Self::Buffer,
        dlogits: &mut Self::Buffer,
    ) -> Result<()>;
    /// The kernel behind [`Backend::matmul`], which checks its arguments and calls it.
    ///
    /// # Safety
    /// The caller guarantees what [`Backend::matmul`] checks (buffer lengths and
    /// parameters); an implementation may rely on it without checking again (debug
    /// assertions only).
    unsafe fn matmul_unchecked(
        &self,
        p: &Matmul,
        a: &Self::Buffer,
        b: &Self::Buffer,
        c: &mut Self::Buffer,
    ) -> Result<()>;
    /// The kernel behind [`Backend::conv2d`], which checks its arguments and calls it.
    ///
    /// # Safety
    /// The caller guarantees what [`Backend::conv2d`] checks (buffer lengths and
    /// parameters); an implementation may rely on it without checking again (debug
    /// assertions only).
    unsafe fn conv2d_unchecked(
        &self,
        p: &Checked<Conv2dParams>,
        x: &Self::Buffer,
        w: &Self::Buffer,
        bias: Option<&Self::Buffer>,
        y: &mut Self::Buffer,
    ) -> Result<()>;
    /// The kernel behind [`Backend::conv2d_backward_input`], which checks its arguments and calls it.
    ///
    /// # Safety
    /// The caller guarantees what [`Backend::conv2d_backward_input`] checks (buffer lengths and
    /// parameters); an implementation may rely on it without checking again (debug
    /// assertions only).
    unsafe fn conv2d_backward_input_unchecked(
        &self,
        p: &Checked<Conv2dParams>,
        w: &Self::Buffer,
        dy: &Self::Buffer,
        dx: &mut Self::Buffer,
    ) -> Result<()>;
    /// The kernel behind [`Backend::conv2d_backward_weight`], which checks its arguments and calls it.
    ///
    /// # Safety
    /// The caller guarantees what [`Backend::conv2d_backward_weight`] checks (buffer lengths and
    /// parameters); an implementation may rely on it without checking again (debug
    /// assertions only).
    unsafe fn conv2d_backward_weight_unchecked(
        &self,
        p: &Checked<Conv2dParams>,
        x: &Self::Buffer,
        dy: &Self::Buffer,
        dw: &mut Self::Buffer,
        dbias: Option<&mut Self::Buffer>,
    ) -> Result<()>;
    /// The kernel behind [`Backend::conv2d_relu_input`], which checks its arguments and calls it.
    ///
    /// # Safety
    /// The caller guarantees what [`Backend::conv2d_relu_input`] checks (buffer lengths and
    /// parameters); an implementation may rely on it without checking again (debug
    /// assertions only).
    unsafe fn conv2d_relu_input_unchecked(
        &self,
        p: &Checked<Conv2dParams>,
        x: &Self::Buffer,
        w: &Self::Buffer,
        y: &mut Self::Buffer,
    ) -> Result<()>;
    /// The kernel behind [`Backend::conv2d_backward_input_relu_mask`], which checks its arguments and calls it.
    ///
    /// # Safety
    /// The caller guarantees what [`Backend::conv2d_backward_input_relu_mask`] checks (buffer lengths and
    /// parameters); an implementation may rely on it without checking again (debug
    /// assertions only).
    unsafe fn conv2d_backward_input_relu_mask_unchecked(
        &self,
        p: &Checked<Conv2dParams>,
        w: &Self::Buffer,
        dy: &Self::Buffer,
        x: &Self::Buffer,
        dx: &mut Self::Buffer,
    ) -> Result<()>;
    /// The kernel behind [`Backend::conv2d_backward_weight_relu_input`], which checks its arguments and calls it.
    ///
    /// # Safety
    /// The caller guarantees what [`Backend::conv2d_backward_weight_relu_input`] checks (buffer lengths and
    /// parameters); an implementation may rely on it without checking again (debug
    /// assertions only).
    unsafe fn conv2d_backward_weight_relu_input_unchecked(
        &self,
        p: &Checked<Conv2dParams>,
        x: &Self::Buffer,
        dy: &Self::Buffer,
        dw: &mut Self::Buffer,
    ) -> Result<()>;
    /// The kernel behind [`Backend::pool2d`], which checks its arguments and calls it.
    ///
    /// # Safety
    /// The caller guarantees what [`Backend::pool2d`] checks (buffer lengths and
    /// parameters); an implementation may rely on it without checking again (debug
    /// assertions only).
    unsafe fn pool2d_unchecked(
        &self,
        p: &Checked<Pool2dParams>,
        x: &Self::Buffer,
        y: &mut Self::Buffer,
    ) -> Result<()>;
    /// The kernel behind [`Backend::pool2d_backward`], which checks its arguments and calls it.
    ///
    /// # Safety
    /// The caller guarantees what [`Backend::pool2d_backward`] checks (buffer lengths and
    /// parameters); an implementation may rely on it without checking again (debug
    /// assertions only).
    unsafe fn pool2d_backward_unchecked(
        &self,
        p: &Checked<Pool2dParams>,
        x: &Self::Buffer,
        y: Option<&Self::Buffer>,
        dy: &Self::Buffer,
        dx: &mut Self::Buffer,
    ) -> Result<()>;
    /// The kernel behind [`Backend::global_avg_pool`], which checks its arguments and calls it.
    ///
    /// # Safety
    /// The caller guarantees what [`Backend::global_avg_pool`] checks (buffer lengths and
    /// parameters); an implementation may rely on it without checking again (debug
    /// assertions only).
    unsafe fn global_avg_pool_unchecked(
        &self,
        n: usize,
        c: usize,
        hw: usize,
        x: &Self::Buffer,
        y: &mut Self::Buffer,
    ) -> Result<()>;
    /// The kernel behind [`Backend::global_avg_pool_backward`], which checks its arguments and calls it.
    ///
    /// # Safety
    /// The caller guarantees what [`Backend::global_avg_pool_backward`] checks (buffer lengths and
    /// parameters); an implementation may rely on it without checking again (debug
    /// assertions only).
    unsafe fn global_avg_pool_backward_unchecked(
        &self,
        n: usize,
        c: usize,
        hw: usize,
        dy: &Self::Buffer,
        dx: &mut Self::Buffer,
    ) -> Result<()>;
    /// The kernel behind [`Backend::batch_norm`], which checks its arguments and calls it.
    ///
    /// # Safety
    /// The caller guarantees what [`Backend::batch_norm`] checks (buffer lengths and
    /// parameters); an implementation may rely on it without checking again (debug
    /// assertions only).
    unsafe fn batch_norm_unchecked(
        &self,
        p: &Checked<BatchNormParams>,
        x: &Self::Buffer,
        gamma: Option<&Self::Buffer>,
        beta: Option<&Self::Buffer>,
        running_mean: Option<&mut Self::Buffer>,
        running_var: Option<&mut Self::Buffer>,
        y: &mut Self::Buffer,
        save_mean: &mut Self::Buffer,
        save_invstd: &mut Self::Buffer,
    ) -> Result<()>;
    /// The kernel behind [`Backend::batch_norm_backward`], which checks its arguments and calls it.
    ///
    /// # Safety
    /// The caller guarantees what [`Backend::batch_norm_backward`] checks (buffer lengths and
    /// parameters); an implementation may rely on it without checking again (debug
    /// assertions only).
    unsafe fn batch_norm_backward_unchecked(
        &self,
        p: &Checked<BatchNormParams>,
        x: &Self::Buffer,
        gamma: Option<&Self::Buffer>,
        save_mean: &Self::Buffer,
        save_invstd: &Self::Buffer,
        dy: &Self::Buffer,
        dx: &mut Self::Buffer,
        dgamma: Option<&mut Self::Buffer>,
        dbeta: Option<&mut Self::Buffer>,
    ) -> Result<()>;
    /// The kernel behind [`Backend::select_backward`], which checks its arguments and calls it.
    ///
    /// # Safety
    /// The caller guarantees what [`Backend::select_backward`] checks (buffer lengths and
    /// parameters); an implementation may rely on it without checking again (debug
    /// assertions only).
    unsafe fn select_backward_unchecked(
        &self,
        a: &Self::Buffer,
        y: &Self::Buffer,
        dy: &Self::Buffer,
        da: &mut Self::Buffer,
        db: &mut Self::Buffer,
    ) -> Result<()>;
    /// The kernel behind [`Backend::argmax_rows`], which checks its arguments and calls it.
    ///
    /// # Safety
    /// The caller guarantees what [`Backend::argmax_rows`] checks (buffer lengths and
    /// parameters); an implementation may rely on it without checking again (debug
    /// assertions only).
    unsafe fn argmax_rows_unchecked(
        &self,
        x: &Self::Buffer,
        rows: usize,
        cols: usize,
        out: &mut Self::Buffer,
    ) -> Result<()>;
    /// The kernel behind [`Backend::sgd_step`], which checks its arguments and calls it.
    ///
    /// # Safety
    /// The caller guarantees what [`Backend::sgd_step`] checks (buffer lengths and
    /// parameters); an implementation may rely on it without checking again (debug
    /// assertions only).
    unsafe fn sgd_step_unchecked(
        &self,
        p: &SgdStep,
        w: &mut Self::Buffer,
        g: &Self::Buffer,
        momentum: Option<&mut Self::Buffer>,
    ) -> Result<()>;
    /// The kernel behind [`Backend::adam_step`], which checks its arguments and calls it.
    ///
    /// # Safety
    /// The caller guarantees what [`Backend::adam_step`] checks (buffer lengths and
    /// parameters); an implementation may rely on it without checking again (debug
    /// assertions only).
    unsafe fn adam_step_unchecked(
        &self,
        p: &AdamStep,
        w: &mut Self::Buffer,
        g: &Self::Buffer,
        m: &mut Self::Buffer,
        v: &mut Self::Buffer,
    ) -> Result<()>;
    /// The kernel behind [`Backend::clip_grad_norm`], which checks its arguments and calls it.
    ///
    /// # Safety
    /// The caller guarantees what [`Backend::clip_grad_norm`] checks (buffer lengths and
    /// parameters); an implementation may rely on it without checking again (debug
    /// assertions only).
    unsafe fn clip_grad_norm_unchecked(
        &self,
        grads: &mut [&mut Self::Buffer],
        max_norm: f32,
        total_out: &mut Self::Buffer,
    ) -> Result<()>;
    /// The kernel behind [`Backend::fill_random`], which checks its arguments and calls it.
    ///
    /// # Safety
    /// The caller guarantees what [`Backend::fill_random`] checks (buffer lengths and
    /// parameters); an implementation may rely on it without checking again (debug
    /// assertions only).
    unsafe fn fill_random_unchecked(
        &self,
        dist: RandomDist,
        seed: u64,
        out: &mut Self::Buffer,
    ) -> Result<()>;
    /// The kernel behind [`Backend::dropout_mask`], which checks its arguments and calls it.
    ///
    /// # Safety
    /// The caller guarantees what [`Backend::dropout_mask`] checks (buffer lengths and
    /// parameters); an implementation may rely on it without checking again (debug
    /// assertions only).
    unsafe fn dropout_mask_unchecked(
        &self,
        p: f32,
        seed: u64,
        out: &mut Self::Buffer,
    ) -> Result<()>;
    /// The kernel behind [`Backend::gather_rows`], which checks its arguments and calls it.
    ///
    /// # Safety
    /// The caller guarantees what [`Backend::gather_rows`] checks (buffer lengths, indices and
    /// parameters); an implementation may rely on it without checking again (debug
    /// assertions only).
    unsafe fn gather_rows_unchecked(
        &self,
        p: &Rows,
        table: &Self::Buffer,
        indices: &[usize],
        out: &mut Self::Buffer,
    ) -> Result<()>;
    /// The kernel behind [`Backend::scatter_add_rows`], which checks its arguments and calls it.
    ///
    /// # Safety
    /// The caller guarantees what [`Backend::scatter_add_rows`] checks (buffer lengths, indices and
    /// parameters); an implementation may rely on it without checking again (debug
    /// assertions only).
    unsafe fn scatter_add_rows_unchecked(
        &self,
        p: &Rows,
        src: &Self::Buffer,
        indices: &[usize],
        table: &mut Self::Buffer,
    ) -> Result<()>;
    /// The kernel behind [`Backend::lstm_cell`], which checks its arguments and calls it.
    ///
    /// # Safety
    /// The caller guarantees what [`Backend::lstm_cell`] checks (buffer lengths, indices and
    /// parameters); an implementation may rely on it without checking again (debug
    /// assertions only).
    unsafe fn lstm_cell_unchecked(
        &self,
        p: &LstmCell,
        gates: &Self::Buffer,
        c_prev: &Self::Buffer,
        act: &mut Self::Buffer,
        hc: &mut Self::Buffer,
    ) -> Result<()>;
    /// The kernel behind [`Backend::lstm_cell_backward`], which checks its arguments and calls it.
    ///
    /// # Safety
    /// The caller guarantees what [`Backend::lstm_cell_backward`] checks (buffer lengths, indices and
    /// parameters); an implementation may rely on it without checking again (debug
    /// assertions only).
    #[allow(clippy::too_many_arguments)]
    unsafe fn lstm_cell_backward_unchecked(
        &self,
        p: &LstmCell,
        act: &Self::Buffer,
        c_prev: &Self::Buffer,
        hc: &Self::Buffer,
        dhc: &Self::Buffer,
        dgates: &mut Self::Buffer,
        dc_prev: &mut Self::Buffer,
    ) -> Result<()>;
    /// The kernel behind [`Backend::lstm_sequence`], which checks its arguments and calls it.
    ///
    /// # Safety
    /// The caller guarantees what [`Backend::lstm_sequence`] checks (buffer lengths, indices and
    /// parameters); an implementation may rely on it without checking again (debug
    /// assertions only).
    #[allow(clippy::too_many_arguments)]
    unsafe fn lstm_sequence_unchecked(
        &self,
        p: &Lstm,
        xg: &Self::Buffer,
        w_hh: &Self::Buffer,
        h0: &Self::Buffer,
        c0: &Self::Buffer,
        act: &mut Self::Buffer,
        hs: &mut Self::Buffer,
        cs: &mut Self::Buffer,
    ) -> Result<()>;
    /// The kernel behind [`Backend::lstm_sequence_backward`], which checks its arguments and calls it.
    ///
    /// # Safety
    /// The caller guarantees what [`Backend::lstm_sequence_backward`] checks (buffer lengths, indices and
    /// parameters); an implementation may rely on it without checking again (debug
    /// assertions only).
    #[allow(clippy::too_many_arguments)]
    unsafe fn lstm_sequence_backward_unchecked(
        &self,
        p: &Lstm,
        w_hh: &Self::Buffer,
        c0: &Self::Buffer,
        act: &Self::Buffer,
        cs: &Self::Buffer,
        dhs: &Self::Buffer,
        dxg: &mut Self::Buffer,
        dh0: &mut Self::Buffer,
        dc0: &mut Self::Buffer,
    ) -> Result<()>;
}

fn prod(shape: &[usize]) -> usize {
    shape.iter().product()
}

fn reduce_dims(
    op: &'static str,
    len: usize,
    shape: &[usize],
    axis: Option<usize>,
) -> Result<(usize, usize, usize)> {
    check_len(op, "x", len, prod(shape))?;
    match axis {
        None => Ok((1, len, 1)),
        Some(a) if a < shape.len() => Ok(crate::ops::reduce::axis_split(shape, a)),
        Some(a) => Err(KernelError::param(
            op,
            format!("axis {a} out of range for a shape of rank {}", shape.len()),
        )),
    }
}

fn check_ce(
    op: &'static str,
    len: usize,
    labels: &[usize],
    rows: usize,
    cols: usize,
) -> Result<()> {
    check_len(op, "logits", len, rows * cols)?;
    check_len(op, "labels", labels.len(), rows)?;
    if rows == 0 {
        return Err(KernelError::param(op, "needs at least one row"));
    }
    if let Some((i, &l)) = labels.iter().enumerate().find(|(_, l)| **l >= cols) {
        return Err(KernelError::param(
            op,
            format!("label {l} at row {i} is out of range for {cols} classes"),
        ));
    }
    Ok(())
}
