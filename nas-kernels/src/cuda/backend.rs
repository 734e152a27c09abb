//! [`Backend`] for [`Cuda`]: each method computes from its parameter structs (shapes are
//! checked above the backends; lengths are debug-asserted here) and queues the kernels of
//! `ops/<op>/cuda_kernel.rs` on the device's stream.

use rand_chacha::ChaCha8Rng;

use super::{Cuda, CudaBuf};
use crate::backend::*;
use crate::device::Device;
use crate::error::{KernelError, Result};
use crate::ops::{
    batch_norm::cuda_kernel as bn, conv2d::cuda_kernel as conv, copy::cuda_kernel as cp,
    elementwise::cuda_kernel as ew, matmul::cuda_kernel as mm, optim::cuda_kernel as opt,
    pool2d::cuda_kernel as pool, reduce::cuda_kernel as red,
};

fn refs<'a>(xs: &'a [&'a mut CudaBuf]) -> Vec<&'a CudaBuf> {
    xs.iter().map(|x| &**x).collect()
}

fn reduce_dims(shape: &[usize], axis: Option<usize>, len: usize) -> (usize, usize, usize) {
    match axis {
        None => (1, len, 1),
        Some(a) => crate::ops::reduce::axis_split(shape, a),
    }
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
    fn copy_strided(&self, p: &StridedCopy, src: &CudaBuf, dst: &mut CudaBuf) -> Result<()> {
        // the description addresses device memory: checked here, cheaply, as on the CPU
        p.validate(src.len(), dst.len())?;
        cp::copy_strided(self, p, src, dst)
    }

    fn unary(&self, op: UnaryOp, x: &CudaBuf, y: &mut CudaBuf) -> Result<()> {
        ew::unary(self, op, x, y)
    }
    fn unary_backward(
        &self,
        op: UnaryOp,
        x: &CudaBuf,
        y: &CudaBuf,
        dy: &CudaBuf,
        dx: &mut CudaBuf,
    ) -> Result<()> {
        ew::unary_backward(self, op, x, y, dy, dx)
    }
    fn binary(
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
    fn sum_to_shape(
        &self,
        x: &CudaBuf,
        x_shape: &[usize],
        out_shape: &[usize],
        out: &mut CudaBuf,
    ) -> Result<()> {
        debug_assert_eq!(x.len(), x_shape.iter().product::<usize>());
        ew::sum_to_shape(self, x, x_shape, out, out_shape)
    }
    fn broadcast_to(
        &self,
        x: &CudaBuf,
        x_shape: &[usize],
        out_shape: &[usize],
        out: &mut CudaBuf,
    ) -> Result<()> {
        debug_assert_eq!(out.len(), out_shape.iter().product::<usize>());
        ew::broadcast_to(self, x, x_shape, out, out_shape)
    }
    fn axpy(&self, alpha: f32, x: &CudaBuf, y: &mut CudaBuf) -> Result<()> {
        ew::axpy(self, alpha, x, y)
    }
    fn weighted_sum(&self, weights: &CudaBuf, xs: &[&CudaBuf], out: &mut CudaBuf) -> Result<()> {
        ew::weighted_sum(self, weights, xs, out)
    }
    fn weighted_sum_backward(
        &self,
        weights: &CudaBuf,
        xs: &[&CudaBuf],
        dy: &CudaBuf,
        dxs: &mut [&mut CudaBuf],
        dweights: &mut CudaBuf,
    ) -> Result<()> {
        ew::weighted_sum_backward(self, weights, xs, dy, &refs(dxs), dweights)
    }
    fn concat_channels(
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
    fn split_channels(
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

    fn reduce(
        &self,
        op: ReduceOp,
        x: &CudaBuf,
        shape: &[usize],
        axis: Option<usize>,
        out: &mut CudaBuf,
    ) -> Result<()> {
        let dims = reduce_dims(shape, axis, x.len());
        if dims.1 == 0 && op == ReduceOp::Max {
            return Err(KernelError::param("reduce", "max over an empty axis"));
        }
        red::reduce(self, op, x, dims, out)
    }
    fn reduce_backward(
        &self,
        op: ReduceOp,
        x: &CudaBuf,
        y: &CudaBuf,
        shape: &[usize],
        axis: Option<usize>,
        dy: &CudaBuf,
        dx: &mut CudaBuf,
    ) -> Result<()> {
        red::reduce_backward(self, op, x, y, reduce_dims(shape, axis, x.len()), dy, dx)
    }
    fn softmax(
        &self,
        op: SoftmaxOp,
        x: &CudaBuf,
        rows: usize,
        cols: usize,
        y: &mut CudaBuf,
    ) -> Result<()> {
        red::softmax(self, op, x, rows, cols, y)
    }
    fn softmax_backward(
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
    fn cross_entropy(
        &self,
        logits: &CudaBuf,
        labels: &[usize],
        rows: usize,
        cols: usize,
        loss: &mut CudaBuf,
    ) -> Result<()> {
        red::cross_entropy(self, logits, labels, rows, cols, loss)
    }
    fn cross_entropy_backward(
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

    fn matmul(&self, p: &Matmul, a: &CudaBuf, b: &CudaBuf, c: &mut CudaBuf) -> Result<()> {
        debug_assert!(a.len() == p.a_len() && b.len() == p.b_len() && c.len() == p.c_len());
        mm::matmul(self, p, a, b, c)
    }
    fn conv2d(
        &self,
        p: &Conv2dParams,
        x: &CudaBuf,
        w: &CudaBuf,
        bias: Option<&CudaBuf>,
        y: &mut CudaBuf,
    ) -> Result<()> {
        debug_assert!(x.len() == p.x_len() && w.len() == p.w_len() && y.len() == p.y_len());
        conv::forward(self, p, x, w, bias, y, false)
    }
    fn conv2d_backward_input(
        &self,
        p: &Conv2dParams,
        w: &CudaBuf,
        dy: &CudaBuf,
        dx: &mut CudaBuf,
    ) -> Result<()> {
        conv::backward_input(self, p, w, dy, None, dx)
    }
    fn conv2d_backward_weight(
        &self,
        p: &Conv2dParams,
        x: &CudaBuf,
        dy: &CudaBuf,
        dw: &mut CudaBuf,
        dbias: Option<&mut CudaBuf>,
    ) -> Result<()> {
        conv::backward_weight(self, p, x, dy, dw, dbias.map(|b| &*b), false)
    }
    fn conv2d_relu_input(
        &self,
        p: &Conv2dParams,
        x: &CudaBuf,
        w: &CudaBuf,
        y: &mut CudaBuf,
    ) -> Result<()> {
        conv::forward(self, p, x, w, None, y, true)
    }
    fn conv2d_backward_input_relu_mask(
        &self,
        p: &Conv2dParams,
        w: &CudaBuf,
        dy: &CudaBuf,
        x: &CudaBuf,
        dx: &mut CudaBuf,
    ) -> Result<()> {
        conv::backward_input(self, p, w, dy, Some(x), dx)
    }
    fn conv2d_backward_weight_relu_input(
        &self,
        p: &Conv2dParams,
        x: &CudaBuf,
        dy: &CudaBuf,
        dw: &mut CudaBuf,
    ) -> Result<()> {
        conv::backward_weight(self, p, x, dy, dw, None, true)
    }

    fn pool2d(&self, p: &Pool2dParams, x: &CudaBuf, y: &mut CudaBuf) -> Result<()> {
        pool::forward(self, p, x, y)
    }
    fn pool2d_backward(
        &self,
        p: &Pool2dParams,
        x: &CudaBuf,
        _y: Option<&CudaBuf>,
        dy: &CudaBuf,
        dx: &mut CudaBuf,
    ) -> Result<()> {
        pool::backward(self, p, x, dy, dx)
    }
    fn global_avg_pool(
        &self,
        n: usize,
        c: usize,
        hw: usize,
        x: &CudaBuf,
        y: &mut CudaBuf,
    ) -> Result<()> {
        pool::global_avg(self, n * c, hw, x, y)
    }
    fn global_avg_pool_backward(
        &self,
        _n: usize,
        _c: usize,
        hw: usize,
        dy: &CudaBuf,
        dx: &mut CudaBuf,
    ) -> Result<()> {
        pool::global_avg_backward(self, hw, dy, dx)
    }
    fn batch_norm(
        &self,
        p: &BatchNormParams,
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
    fn batch_norm_backward(
        &self,
        p: &BatchNormParams,
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

    fn select_backward(
        &self,
        a: &CudaBuf,
        y: &CudaBuf,
        dy: &CudaBuf,
        da: &mut CudaBuf,
        db: &mut CudaBuf,
    ) -> Result<()> {
        ew::select_backward(self, a, y, dy, da, db)
    }
    fn argmax_rows(&self, x: &CudaBuf, rows: usize, cols: usize, out: &mut CudaBuf) -> Result<()> {
        if cols == 0 && rows > 0 {
            return Err(KernelError::param("argmax_rows", "rows have no columns"));
        }
        red::argmax_rows(self, x, rows, cols, out)
    }

    fn sgd_step(
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
    fn adam_step(
        &self,
        p: &AdamStep,
        w: &mut CudaBuf,
        g: &CudaBuf,
        m: &mut CudaBuf,
        v: &mut CudaBuf,
    ) -> Result<()> {
        opt::adam(self, p, w, g, m, v)
    }
    fn clip_grad_norm(
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
    fn fill_random(&self, dist: RandomDist, rng: &mut ChaCha8Rng, out: &mut CudaBuf) -> Result<()> {
        let mut host = vec![0.0f32; out.len()];
        crate::Cpu.fill_random(dist, rng, &mut host)?;
        *out = self.upload(&host)?;
        Ok(())
    }
    fn dropout_mask(&self, p: f32, rng: &mut ChaCha8Rng, out: &mut CudaBuf) -> Result<()> {
        let mut host = vec![0.0f32; out.len()];
        crate::Cpu.dropout_mask(p, rng, &mut host)?;
        *out = self.upload(&host)?;
        Ok(())
    }
}
