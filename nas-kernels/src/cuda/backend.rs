//! [`Backend`] for [`Cuda`]: each method computes from its parameter structs (shapes are
//! checked above the backends; lengths are debug-asserted here) and queues the kernels of
//! `ops/<op>/cuda_kernel.rs` on the device's stream.

use super::{Cuda, CudaBuf};
use crate::backend::*;
use crate::checked::Checked;
use crate::device::Device;
use crate::error::{KernelError, Result};
use crate::ops::{
    batch_norm::cuda_kernel as bn, conv2d::cuda_kernel as conv, copy::cuda_kernel as cp,
    elementwise::cuda_kernel as ew, matmul::cuda_kernel as mm, optim::cuda_kernel as opt,
    pool2d::cuda_kernel as pool, random, random::cuda_kernel::Draw, recurrent::cuda_kernel as rc,
    reduce::cuda_kernel as red,
};

fn refs<'a>(xs: &'a [&'a mut CudaBuf]) -> Vec<&'a CudaBuf> {
    xs.iter().map(|x| &**x).collect()
}

impl Backend for Cuda {
    type Buffer = CudaBuf;
    type Owned = CudaBuf;

    fn device(&self) -> Device {
        self.ctx.device
    }
    fn zeros(&self, len: usize) -> Result<CudaBuf> {
        let b = self.buffer(len)?;
        ew::fill(self, 0.0, &b)?;
        Ok(b)
    }
    fn alloc(&self, len: usize) -> Result<CudaBuf> {
        let b = self.buffer(len)?;
        if self.poisons() {
            ew::fill(self, f32::NAN, &b)?;
        }
        Ok(b)
    }
    fn from_slice(&self, data: &[f32]) -> Result<CudaBuf> {
        self.upload(data)
    }
    fn from_vec(&self, data: Vec<f32>) -> Result<CudaBuf> {
        self.upload(&data)
    }
    fn to_vec(&self, buf: &CudaBuf) -> Result<Vec<f32>> {
        self.download(buf)
    }
    fn len(&self, buf: &CudaBuf) -> usize {
        buf.len()
    }
    fn copy(&self, src: &CudaBuf, dst: &mut CudaBuf) -> Result<()> {
        if src.len() != dst.len() {
            return Err(KernelError::LengthMismatch {
                op: "copy",
                what: "dst",
                expected: src.len(),
                got: dst.len(),
            });
        }
        ew::copy(self, src, dst)
    }
    fn fill(&self, value: f32, dst: &mut CudaBuf) -> Result<()> {
        ew::fill(self, value, dst)
    }
    unsafe fn copy_strided_unchecked(
        &self,
        p: &StridedCopy,
        src: &CudaBuf,
        dst: &mut CudaBuf,
    ) -> Result<()> {
        // the description addresses device memory: checked here, cheaply, as on the CPU
        p.validate(src.len(), dst.len())?;
        cp::copy_strided(self, p, src, dst)
    }

    unsafe fn unary_unchecked(&self, op: UnaryOp, x: &CudaBuf, y: &mut CudaBuf) -> Result<()> {
        ew::unary(self, op, x, y)
    }
    unsafe fn unary_backward_unchecked(
        &self,
        op: UnaryOp,
        x: &CudaBuf,
        y: &CudaBuf,
        dy: &CudaBuf,
        dx: &mut CudaBuf,
    ) -> Result<()> {
        ew::unary_backward(self, op, x, y, dy, dx)
    }
    unsafe fn binary_unchecked(
        &self,
        op: BinaryOp,
        a: &CudaBuf,
        a_shape: &[usize],
        b: &CudaBuf,
        b_shape: &[usize],
        out: &mut CudaBuf,
    ) -> Result<()> {
        let os = broadcast_shape(a_shape, b_shape).ok_or_else(|| KernelError::Broadcast {
            op: "binary",
            a: a_shape.to_vec(),
            b: b_shape.to_vec(),
        })?;
        debug_assert_eq!(out.len(), os.iter().product::<usize>());
        ew::binary(self, op, a, a_shape, b, b_shape, out, &os)
    }
    unsafe fn sum_to_shape_unchecked(
        &self,
        x: &CudaBuf,
        x_shape: &[usize],
        out_shape: &[usize],
        out: &mut CudaBuf,
    ) -> Result<()> {
        debug_assert_eq!(x.len(), x_shape.iter().product::<usize>());
        ew::sum_to_shape(self, x, x_shape, out, out_shape)
    }
    unsafe fn broadcast_to_unchecked(
        &self,
        x: &CudaBuf,
        x_shape: &[usize],
        out_shape: &[usize],
        out: &mut CudaBuf,
    ) -> Result<()> {
        debug_assert_eq!(out.len(), out_shape.iter().product::<usize>());
        ew::broadcast_to(self, x, x_shape, out, out_shape)
    }
    unsafe fn axpy_unchecked(&self, alpha: f32, x: &CudaBuf, y: &mut CudaBuf) -> Result<()> {
        ew::axpy(self, alpha, x, y)
    }
    unsafe fn weighted_sum_unchecked(
        &self,
        weights: &CudaBuf,
        xs: &[&CudaBuf],
        out: &mut CudaBuf,
    ) -> Result<()> {
        ew::weighted_sum(self, weights, xs, out)
    }
    unsafe fn weighted_sum_backward_unchecked(
        &self,
        weights: &CudaBuf,
        xs: &[&CudaBuf],
        dy: &CudaBuf,
        dxs: &mut [&mut CudaBuf],
        dweights: &mut CudaBuf,
    ) -> Result<()> {
        ew::weighted_sum_backward(self, weights, xs, dy, &refs(dxs), dweights)
    }
    unsafe fn concat_channels_unchecked(
        &self,
        xs: &[&CudaBuf],
        channels: &[usize],
        n: usize,
        hw: usize,
        out: &mut CudaBuf,
    ) -> Result<()> {
        let total: usize = channels.iter().sum();
        let mut at = 0;
        for (x, &c) in xs.iter().zip(channels) {
            ew::channel_copy(self, x, c, 0, out, total, at, n, c, hw)?;
            at += c;
        }
        Ok(())
    }
    unsafe fn split_channels_unchecked(
        &self,
        x: &CudaBuf,
        channels: &[usize],
        n: usize,
        hw: usize,
        outs: &mut [&mut CudaBuf],
    ) -> Result<()> {
        let total: usize = channels.iter().sum();
        let mut at = 0;
        for (o, &c) in outs.iter().zip(channels) {
            ew::channel_copy(self, x, total, at, o, c, 0, n, c, hw)?;
            at += c;
        }
        Ok(())
    }

    unsafe fn reduce_unchecked(
        &self,
        op: ReduceOp,
        x: &CudaBuf,
        shape: &[usize],
        axis: Option<usize>,
        out: &mut CudaBuf,
    ) -> Result<()> {
        let dims = crate::ops::reduce::dims(x.len(), shape, axis);
        if dims.1 == 0 && op == ReduceOp::Max {
            return Err(KernelError::param("reduce", "max over an empty axis"));
        }
        red::reduce(self, op, x, dims, out)
    }
    unsafe fn reduce_backward_unchecked(
        &self,
        op: ReduceOp,
        x: &CudaBuf,
        y: &CudaBuf,
        shape: &[usize],
        axis: Option<usize>,
        dy: &CudaBuf,
        dx: &mut CudaBuf,
    ) -> Result<()> {
        red::reduce_backward(
            self,
            op,
            x,
            y,
            crate::ops::reduce::dims(x.len(), shape, axis),
            dy,
            dx,
        )
    }
    unsafe fn softmax_unchecked(
        &self,
        op: SoftmaxOp,
        x: &CudaBuf,
        rows: usize,
        cols: usize,
        y: &mut CudaBuf,
    ) -> Result<()> {
        red::softmax(self, op, x, rows, cols, y)
    }
    unsafe fn softmax_backward_unchecked(
        &self,
        op: SoftmaxOp,
        y: &CudaBuf,
        dy: &CudaBuf,
        rows: usize,
        cols: usize,
        dx: &mut CudaBuf,
    ) -> Result<()> {
        red::softmax_backward(self, op, y, dy, rows, cols, dx)
    }
    unsafe fn cross_entropy_unchecked(
        &self,
        logits: &CudaBuf,
        labels: &[usize],
        rows: usize,
        cols: usize,
        loss: &mut CudaBuf,
    ) -> Result<()> {
        red::cross_entropy(self, logits, labels, rows, cols, loss)
    }
    unsafe fn cross_entropy_backward_unchecked(
        &self,
        logits: &CudaBuf,
        labels: &[usize],
        rows: usize,
        cols: usize,
        dloss: &CudaBuf,
        dlogits: &mut CudaBuf,
    ) -> Result<()> {
        red::cross_entropy_backward(self, logits, labels, rows, cols, dloss, dlogits)
    }

    unsafe fn matmul_unchecked(
        &self,
        p: &Matmul,
        a: &CudaBuf,
        b: &CudaBuf,
        c: &mut CudaBuf,
    ) -> Result<()> {
        debug_assert!(a.len() == p.a_len() && b.len() == p.b_len() && c.len() == p.c_len());
        mm::matmul(self, p, a, b, c)
    }
    unsafe fn conv2d_unchecked(
        &self,
        p: &Checked<Conv2dParams>,
        x: &CudaBuf,
        w: &CudaBuf,
        bias: Option<&CudaBuf>,
        y: &mut CudaBuf,
    ) -> Result<()> {
        debug_assert!(x.len() == p.x_len() && w.len() == p.w_len() && y.len() == p.y_len());
        conv::forward(self, p, x, w, bias, y, false)
    }
    unsafe fn conv2d_backward_input_unchecked(
        &self,
        p: &Checked<Conv2dParams>,
        w: &CudaBuf,
        dy: &CudaBuf,
        dx: &mut CudaBuf,
    ) -> Result<()> {
        conv::backward_input(self, p, w, dy, None, dx)
    }
    unsafe fn conv2d_backward_weight_unchecked(
        &self,
        p: &Checked<Conv2dParams>,
        x: &CudaBuf,
        dy: &CudaBuf,
        dw: &mut CudaBuf,
        dbias: Option<&mut CudaBuf>,
    ) -> Result<()> {
        conv::backward_weight(self, p, x, dy, dw, dbias.map(|b| &*b), false)
    }
    unsafe fn conv2d_relu_input_unchecked(
        &self,
        p: &Checked<Conv2dParams>,
        x: &CudaBuf,
        w: &CudaBuf,
        y: &mut CudaBuf,
    ) -> Result<()> {
        conv::forward(self, p, x, w, None, y, true)
    }
    unsafe fn conv2d_backward_input_relu_mask_unchecked(
        &self,
        p: &Checked<Conv2dParams>,
        w: &CudaBuf,
        dy: &CudaBuf,
        x: &CudaBuf,
        dx: &mut CudaBuf,
    ) -> Result<()> {
        conv::backward_input(self, p, w, dy, Some(x), dx)
    }
    unsafe fn conv2d_backward_weight_relu_input_unchecked(
        &self,
        p: &Checked<Conv2dParams>,
        x: &CudaBuf,
        dy: &CudaBuf,
        dw: &mut CudaBuf,
    ) -> Result<()> {
        conv::backward_weight(self, p, x, dy, dw, None, true)
    }

    unsafe fn pool2d_unchecked(
        &self,
        p: &Checked<Pool2dParams>,
        x: &CudaBuf,
        y: &mut CudaBuf,
    ) -> Result<()> {
        pool::forward(self, p, x, y)
    }
    unsafe fn pool2d_backward_unchecked(
        &self,
        p: &Checked<Pool2dParams>,
        x: &CudaBuf,
        _y: Option<&CudaBuf>,
        dy: &CudaBuf,
        dx: &mut CudaBuf,
    ) -> Result<()> {
        pool::backward(self, p, x, dy, dx)
    }
    unsafe fn global_avg_pool_unchecked(
        &self,
        n: usize,
        c: usize,
        hw: usize,
        x: &CudaBuf,
        y: &mut CudaBuf,
    ) -> Result<()> {
        pool::global_avg(self, n * c, hw, x, y)
    }
    unsafe fn global_avg_pool_backward_unchecked(
        &self,
        _n: usize,
        _c: usize,
        hw: usize,
        dy: &CudaBuf,
        dx: &mut CudaBuf,
    ) -> Result<()> {
        pool::global_avg_backward(self, hw, dy, dx)
    }
    unsafe fn batch_norm_unchecked(
        &self,
        p: &Checked<BatchNormParams>,
        x: &CudaBuf,
        gamma: Option<&CudaBuf>,
        beta: Option<&CudaBuf>,
        running_mean: Option<&mut CudaBuf>,
        running_var: Option<&mut CudaBuf>,
        y: &mut CudaBuf,
        save_mean: &mut CudaBuf,
        save_invstd: &mut CudaBuf,
    ) -> Result<()> {
        bn::forward(
            self,
            p,
            x,
            gamma,
            beta,
            running_mean.map(|b| &*b),
            running_var.map(|b| &*b),
            y,
            save_mean,
            save_invstd,
        )
    }
    unsafe fn batch_norm_backward_unchecked(
        &self,
        p: &Checked<BatchNormParams>,
        x: &CudaBuf,
        gamma: Option<&CudaBuf>,
        save_mean: &CudaBuf,
        save_invstd: &CudaBuf,
        dy: &CudaBuf,
        dx: &mut CudaBuf,
        dgamma: Option<&mut CudaBuf>,
        dbeta: Option<&mut CudaBuf>,
    ) -> Result<()> {
        bn::backward(
            self,
            p,
            x,
            gamma,
            save_mean,
            save_invstd,
            dy,
            dx,
            dgamma.map(|b| &*b),
            dbeta.map(|b| &*b),
        )
    }

    unsafe fn select_backward_unchecked(
        &self,
        a: &CudaBuf,
        y: &CudaBuf,
        dy: &CudaBuf,
        da: &mut CudaBuf,
        db: &mut CudaBuf,
    ) -> Result<()> {
        ew::select_backward(self, a, y, dy, da, db)
    }
    unsafe fn argmax_rows_unchecked(
        &self,
        x: &CudaBuf,
        rows: usize,
        cols: usize,
        out: &mut CudaBuf,
    ) -> Result<()> {
        if cols == 0 && rows > 0 {
            return Err(KernelError::param("argmax_rows", "rows have no columns"));
        }
        red::argmax_rows(self, x, rows, cols, out)
    }

    unsafe fn sgd_step_unchecked(
        &self,
        p: &SgdStep,
        w: &mut CudaBuf,
        g: &CudaBuf,
        momentum: Option<&mut CudaBuf>,
    ) -> Result<()> {
        if momentum.is_none() && p.momentum != 0.0 {
            return Err(KernelError::param("sgd_step", "momentum needs a buffer"));
        }
        opt::sgd(self, p, w, g, momentum.map(|b| &*b))
    }
    unsafe fn adam_step_unchecked(
        &self,
        p: &AdamStep,
        w: &mut CudaBuf,
        g: &CudaBuf,
        m: &mut CudaBuf,
        v: &mut CudaBuf,
    ) -> Result<()> {
        opt::adam(self, p, w, g, m, v)
    }
    unsafe fn clip_grad_norm_unchecked(
        &self,
        grads: &mut [&mut CudaBuf],
        max_norm: f32,
        total_out: &mut CudaBuf,
    ) -> Result<()> {
        opt::clip(self, &refs(grads), max_norm, total_out)
    }

    // Interim, until fills take a seed: the generator's stream is drawn on the host (the
    // same values as the CPU for the same generator state) and uploaded. The Philox kernel
    // that replaces this is `ops/random/kernel.cu` (tested in `cuda_kernel.rs`).
    unsafe fn fill_random_unchecked(
        &self,
        dist: RandomDist,
        seed: u64,
        out: &mut CudaBuf,
    ) -> Result<()> {
        let draw = match dist {
            RandomDist::Uniform { low, high } => Draw::Uniform(low, high),
            RandomDist::Normal { mean, std } => Draw::Normal(mean, std),
            RandomDist::Gumbel => Draw::Gumbel,
        };
        random::cuda_kernel::fill(self, draw, seed, out)
    }
    unsafe fn dropout_mask_unchecked(&self, p: f32, seed: u64, out: &mut CudaBuf) -> Result<()> {
        random::cuda_kernel::fill(self, Draw::Dropout(p), seed, out)
    }
    unsafe fn gather_rows_unchecked(
        &self,
        p: &Rows,
        table: &CudaBuf,
        indices: &[usize],
        out: &mut CudaBuf,
    ) -> Result<()> {
        rc::gather_rows(self, p, table, indices, out)
    }
    unsafe fn scatter_add_rows_unchecked(
        &self,
        p: &Rows,
        src: &CudaBuf,
        indices: &[usize],
        table: &mut CudaBuf,
    ) -> Result<()> {
        rc::scatter_add_rows(self, p, src, indices, table)
    }
    unsafe fn lstm_cell_unchecked(
        &self,
        p: &LstmCell,
        gates: &CudaBuf,
        c_prev: &CudaBuf,
        act: &mut CudaBuf,
        hc: &mut CudaBuf,
    ) -> Result<()> {
        rc::cell_forward(self, p, gates, c_prev, act, hc)
    }
    unsafe fn lstm_cell_backward_unchecked(
        &self,
        p: &LstmCell,
        act: &CudaBuf,
        c_prev: &CudaBuf,
        hc: &CudaBuf,
        dhc: &CudaBuf,
        dgates: &mut CudaBuf,
        dc_prev: &mut CudaBuf,
    ) -> Result<()> {
        rc::cell_backward(self, p, act, c_prev, hc, dhc, dgates, dc_prev)
    }
    unsafe fn lstm_sequence_unchecked(
        &self,
        p: &Lstm,
        xg: &CudaBuf,
        w_hh: &CudaBuf,
        h0: &CudaBuf,
        c0: &CudaBuf,
        act: &mut CudaBuf,
        hs: &mut CudaBuf,
        cs: &mut CudaBuf,
    ) -> Result<()> {
        rc::sequence_forward(self, p, xg, w_hh, h0, c0, act, hs, cs)
    }
    unsafe fn lstm_sequence_backward_unchecked(
        &self,
        p: &Lstm,
        w_hh: &CudaBuf,
        c0: &CudaBuf,
        act: &CudaBuf,
        cs: &CudaBuf,
        dhs: &CudaBuf,
        dxg: &mut CudaBuf,
        dh0: &mut CudaBuf,
        dc0: &mut CudaBuf,
    ) -> Result<()> {
        rc::sequence_backward(self, p, w_hh, c0, act, cs, dhs, dxg, dh0, dc0)
    }
}
