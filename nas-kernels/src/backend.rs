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
//! - Every method checks each buffer's length against the shape it was given and returns
//!   [`KernelError`](crate::KernelError) on a mismatch or a bad parameter; nothing is written
//!   then.
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

use crate::device::Device;
use crate::error::Result;
pub use crate::ops::batch_norm::BatchNormParams;
pub use crate::ops::conv2d::Conv2dParams;
pub use crate::ops::copy::StridedCopy;
pub use crate::ops::elementwise::{BinaryOp, UnaryOp, broadcast_shape};
pub use crate::ops::matmul::Matmul;
pub use crate::ops::optim::{AdamStep, SgdStep};
pub use crate::ops::pool2d::{Pool2dParams, PoolKind};
pub use crate::ops::random::RandomDist;
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
    ) -> Result<()>;

    // ---------------------------------------------------------------- elementwise

    /// `y = op(x)` elementwise (equal lengths).
    fn unary(&self, op: UnaryOp, x: &Self::Buffer, y: &mut Self::Buffer) -> Result<()>;
    /// `dx = dy * op'(x)`, given the forward input `x` and output `y` (all equal lengths).
    fn unary_backward(
        &self,
        op: UnaryOp,
        x: &Self::Buffer,
        y: &Self::Buffer,
        dy: &Self::Buffer,
        dx: &mut Self::Buffer,
    ) -> Result<()>;
    /// `out = a op b` with numpy broadcasting; `out` has [`broadcast_shape`]`(a_shape, b_shape)`.
    fn binary(
        &self,
        op: BinaryOp,
        a: &Self::Buffer,
        a_shape: &[usize],
        b: &Self::Buffer,
        b_shape: &[usize],
        out: &mut Self::Buffer,
    ) -> Result<()>;
    /// Sums `x` (shape `x_shape`) down to `out_shape`, which must broadcast to `x_shape`: the
    /// backward of broadcasting (e.g. a bias gradient from `[n, c, h, w]` to `[1, c, 1, 1]`).
    fn sum_to_shape(
        &self,
        x: &Self::Buffer,
        x_shape: &[usize],
        out_shape: &[usize],
        out: &mut Self::Buffer,
    ) -> Result<()>;
    /// Broadcasts `x` (shape `x_shape`) to `out_shape`.
    fn broadcast_to(
        &self,
        x: &Self::Buffer,
        x_shape: &[usize],
        out_shape: &[usize],
        out: &mut Self::Buffer,
    ) -> Result<()>;
    /// `y += alpha * x` (accumulates into `y`).
    fn axpy(&self, alpha: f32, x: &Self::Buffer, y: &mut Self::Buffer) -> Result<()>;
    /// DARTS' mixed op: `out = sum_k weights[k] * xs[k]` (`weights` has `xs.len()` elements).
    fn weighted_sum(
        &self,
        weights: &Self::Buffer,
        xs: &[&Self::Buffer],
        out: &mut Self::Buffer,
    ) -> Result<()>;
    /// Backward of [`Backend::weighted_sum`]: `dxs[k] = weights[k] * dy` and
    /// `dweights[k] = sum(dy * xs[k])`.
    fn weighted_sum_backward(
        &self,
        weights: &Self::Buffer,
        xs: &[&Self::Buffer],
        dy: &Self::Buffer,
        dxs: &mut [&mut Self::Buffer],
        dweights: &mut Self::Buffer,
    ) -> Result<()>;
    /// Concatenates NCHW tensors `xs[i]: [n, channels[i], hw]` along channels into
    /// `out: [n, sum(channels), hw]`.
    fn concat_channels(
        &self,
        xs: &[&Self::Buffer],
        channels: &[usize],
        n: usize,
        hw: usize,
        out: &mut Self::Buffer,
    ) -> Result<()>;
    /// Splits `x: [n, sum(channels), hw]` along channels into `outs[i]: [n, channels[i], hw]`
    /// (also the backward of [`Backend::concat_channels`], and vice versa).
    fn split_channels(
        &self,
        x: &Self::Buffer,
        channels: &[usize],
        n: usize,
        hw: usize,
        outs: &mut [&mut Self::Buffer],
    ) -> Result<()>;

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
    ) -> Result<()>;
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
    ) -> Result<()>;
    /// Softmax or log-softmax over the last axis of a `rows x cols` matrix.
    fn softmax(
        &self,
        op: SoftmaxOp,
        x: &Self::Buffer,
        rows: usize,
        cols: usize,
        y: &mut Self::Buffer,
    ) -> Result<()>;
    /// Backward of [`Backend::softmax`] from its output `y`.
    fn softmax_backward(
        &self,
        op: SoftmaxOp,
        y: &Self::Buffer,
        dy: &Self::Buffer,
        rows: usize,
        cols: usize,
        dx: &mut Self::Buffer,
    ) -> Result<()>;
    /// Cross-entropy of `logits: [rows, cols]` with integer `labels` (`rows` of them, each
    /// `< cols`), averaged over rows, written to `loss` (1 element).
    fn cross_entropy(
        &self,
        logits: &Self::Buffer,
        labels: &[usize],
        rows: usize,
        cols: usize,
        loss: &mut Self::Buffer,
    ) -> Result<()>;
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
    ) -> Result<()>;

    // ---------------------------------------------------------------- linear algebra, conv

    /// Batched GEMM, see [`Matmul`]. Reads `c` only when `beta != 0`.
    fn matmul(
        &self,
        p: &Matmul,
        a: &Self::Buffer,
        b: &Self::Buffer,
        c: &mut Self::Buffer,
    ) -> Result<()>;
    /// 2-D convolution `y = conv(x, w) + bias`, see [`Conv2dParams`] for shapes.
    fn conv2d(
        &self,
        p: &Conv2dParams,
        x: &Self::Buffer,
        w: &Self::Buffer,
        bias: Option<&Self::Buffer>,
        y: &mut Self::Buffer,
    ) -> Result<()>;
    /// Gradient of a convolution with respect to its input.
    fn conv2d_backward_input(
        &self,
        p: &Conv2dParams,
        w: &Self::Buffer,
        dy: &Self::Buffer,
        dx: &mut Self::Buffer,
    ) -> Result<()>;
    /// Gradient of a convolution with respect to its weight (and bias, when `dbias` is given).
    fn conv2d_backward_weight(
        &self,
        p: &Conv2dParams,
        x: &Self::Buffer,
        dy: &Self::Buffer,
        dw: &mut Self::Buffer,
        dbias: Option<&mut Self::Buffer>,
    ) -> Result<()>;
    /// [`Backend::conv2d`] (no bias) of `relu(x)`: the ReLU is applied as the input is read, so
    /// no ReLU tensor is written (the front of DARTS' separable and dilated convolutions).
    fn conv2d_relu_input(
        &self,
        p: &Conv2dParams,
        x: &Self::Buffer,
        w: &Self::Buffer,
        y: &mut Self::Buffer,
    ) -> Result<()>;
    /// [`Backend::conv2d_backward_input`] of a convolution whose input was `relu(x)`, carried
    /// through the ReLU: `dx = conv2d_backward_input(dy) * (x > 0)`.
    fn conv2d_backward_input_relu_mask(
        &self,
        p: &Conv2dParams,
        w: &Self::Buffer,
        dy: &Self::Buffer,
        x: &Self::Buffer,
        dx: &mut Self::Buffer,
    ) -> Result<()>;
    /// [`Backend::conv2d_backward_weight`] (no bias) of a convolution whose input was `relu(x)`.
    fn conv2d_backward_weight_relu_input(
        &self,
        p: &Conv2dParams,
        x: &Self::Buffer,
        dy: &Self::Buffer,
        dw: &mut Self::Buffer,
    ) -> Result<()>;

    // ---------------------------------------------------------------- pooling, norm

    /// Max or average pooling, see [`Pool2dParams`].
    fn pool2d(&self, p: &Pool2dParams, x: &Self::Buffer, y: &mut Self::Buffer) -> Result<()>;
    /// Backward of [`Backend::pool2d`] given its input `x` and, if the caller kept it, its
    /// output `y` (a backend may use it to locate max pooling's arg-max; the CPU backend
    /// recomputes the arg-max from `x`, so callers of it need not keep the output). Average
    /// pooling's backward reads no values: `x` may then be empty (callers need not keep it).
    fn pool2d_backward(
        &self,
        p: &Pool2dParams,
        x: &Self::Buffer,
        y: Option<&Self::Buffer>,
        dy: &Self::Buffer,
        dx: &mut Self::Buffer,
    ) -> Result<()>;
    /// Global average pooling `[n, c, hw] -> [n, c]`.
    fn global_avg_pool(
        &self,
        n: usize,
        c: usize,
        hw: usize,
        x: &Self::Buffer,
        y: &mut Self::Buffer,
    ) -> Result<()>;
    /// Backward of [`Backend::global_avg_pool`].
    fn global_avg_pool_backward(
        &self,
        n: usize,
        c: usize,
        hw: usize,
        dy: &Self::Buffer,
        dx: &mut Self::Buffer,
    ) -> Result<()>;
    /// Batch norm, see [`BatchNormParams`]. `gamma`/`beta` (`c` each) are the optional affine
    /// parameters. Training uses batch statistics and updates the running statistics that are
    /// given; evaluation requires both running statistics. `save_mean` and `save_invstd`
    /// (`c` each) receive the mean and `1 / sqrt(var + eps)` actually used, for the backward.
    fn batch_norm(
        &self,
        p: &BatchNormParams,
        x: &Self::Buffer,
        gamma: Option<&Self::Buffer>,
        beta: Option<&Self::Buffer>,
        running_mean: Option<&mut Self::Buffer>,
        running_var: Option<&mut Self::Buffer>,
        y: &mut Self::Buffer,
        save_mean: &mut Self::Buffer,
        save_invstd: &mut Self::Buffer,
    ) -> Result<()>;
    /// Backward of [`Backend::batch_norm`] (same `p`, same `gamma`, the saved statistics):
    /// writes `dx`, and `dgamma`/`dbeta` when given.
    fn batch_norm_backward(
        &self,
        p: &BatchNormParams,
        x: &Self::Buffer,
        gamma: Option<&Self::Buffer>,
        save_mean: &Self::Buffer,
        save_invstd: &Self::Buffer,
        dy: &Self::Buffer,
        dx: &mut Self::Buffer,
        dgamma: Option<&mut Self::Buffer>,
        dbeta: Option<&mut Self::Buffer>,
    ) -> Result<()>;

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
    ) -> Result<()>;
    /// The index of the largest value of each row of `x: [rows, cols]` (the first on ties),
    /// written as an `f32` into `out` (`rows` elements).
    fn argmax_rows(
        &self,
        x: &Self::Buffer,
        rows: usize,
        cols: usize,
        out: &mut Self::Buffer,
    ) -> Result<()>;

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
    ) -> Result<()>;
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
    ) -> Result<()>;
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
    ) -> Result<()>;
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
    ) -> Result<()>;
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
    ) -> Result<()>;
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
    ) -> Result<()>;

    // ---------------------------------------------------------------- optimizers

    /// One SGD update of the weights `w` from their gradient `g`, see [`SgdStep`]
    /// (`momentum` is the momentum buffer, required when `p.momentum != 0`).
    fn sgd_step(
        &self,
        p: &SgdStep,
        w: &mut Self::Buffer,
        g: &Self::Buffer,
        momentum: Option<&mut Self::Buffer>,
    ) -> Result<()>;
    /// One Adam update of `w` from its gradient `g` and moments `m`, `v`, see [`AdamStep`].
    fn adam_step(
        &self,
        p: &AdamStep,
        w: &mut Self::Buffer,
        g: &Self::Buffer,
        m: &mut Self::Buffer,
        v: &mut Self::Buffer,
    ) -> Result<()>;
    /// Clips gradients by their global L2 norm (PyTorch's `clip_grad_norm_`): with
    /// `total = sqrt(sum of squares of every element of every buffer)` (accumulated in
    /// `f64`), multiplies every element by `max_norm / (total + 1e-6)` when that is below 1.
    /// Writes `total` to `total_out` (1 element).
    fn clip_grad_norm(
        &self,
        grads: &mut [&mut Self::Buffer],
        max_norm: f32,
        total_out: &mut Self::Buffer,
    ) -> Result<()>;

    // ---------------------------------------------------------------- randomness

    /// Fills `out` with samples of `dist` for `seed`, counter-based: element `i` is a pure
    /// function of `(seed, i)` as [`crate::ops::random`] defines it, so every backend produces
    /// the same values.
    fn fill_random(&self, dist: RandomDist, seed: u64, out: &mut Self::Buffer) -> Result<()>;
    /// Inverted-dropout mask for `seed`: element `i` is `1 / (1 - p)` where its uniform
    /// ([`crate::ops::random`]) is below `1 - p`, else 0 (`p` in `[0, 1]`); multiply
    /// activations by it (and gradients by the same mask).
    fn dropout_mask(&self, p: f32, seed: u64, out: &mut Self::Buffer) -> Result<()>;
}
