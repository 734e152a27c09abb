//! The CPU backend: kernels read and write slices, buffers are the pooled [`Buf`] (freed
//! buffers return to a per-thread pool: the CPU's memory policy); kernels are the
//! `cpu_kernel` modules of each op.

use crate::backend::*;
use crate::buf::Buf;
use crate::checked::Checked;
use crate::device::Device;
use crate::error::{KernelError, Result, check_len};
use crate::ops::{batch_norm, conv2d, copy, elementwise, optim, pool2d, random, recurrent, reduce};

/// The CPU backend. Kernels use [`crate::gemm::sgemm`] and spread large problems over threads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cpu;

fn oom(floats: usize) -> KernelError {
    KernelError::OutOfMemory {
        floats,
        bytes: floats.saturating_mul(std::mem::size_of::<f32>()),
    }
}

impl Backend for Cpu {
    type Buffer = [f32];
    type Owned = Buf;

    fn device(&self) -> Device {
        Device::Cpu
    }
    fn zeros(&self, len: usize) -> Result<Buf> {
        Buf::try_zeros(len).ok_or_else(|| oom(len))
    }
    fn alloc(&self, len: usize) -> Result<Buf> {
        Buf::try_for_overwrite(len).ok_or_else(|| oom(len))
    }
    fn from_slice(&self, data: &[f32]) -> Result<Buf> {
        let mut b = self.alloc(data.len())?;
        b.copy_from_slice(data);
        Ok(b)
    }
    fn from_vec(&self, data: Vec<f32>) -> Result<Buf> {
        Ok(Buf::from_vec(data))
    }
    fn to_vec(&self, buf: &[f32]) -> Result<Vec<f32>> {
        Ok(buf.to_vec())
    }
    fn len(&self, buf: &[f32]) -> usize {
        buf.len()
    }
    fn copy(&self, src: &[f32], dst: &mut [f32]) -> Result<()> {
        check_len("copy", "dst", dst.len(), src.len())?;
        dst.copy_from_slice(src);
        Ok(())
    }
    fn fill(&self, value: f32, dst: &mut [f32]) -> Result<()> {
        dst.fill(value);
        Ok(())
    }
    unsafe fn copy_strided_unchecked(
        &self,
        p: &StridedCopy,
        src: &[f32],
        dst: &mut [f32],
    ) -> Result<()> {
        copy::cpu_copy(p, src, dst);
        Ok(())
    }

    unsafe fn unary_unchecked(&self, op: UnaryOp, x: &[f32], y: &mut [f32]) -> Result<()> {
        elementwise::cpu_kernel::unary(op, x, y);
        Ok(())
    }
    unsafe fn unary_backward_unchecked(
        &self,
        op: UnaryOp,
        x: &[f32],
        y: &[f32],
        dy: &[f32],
        dx: &mut [f32],
    ) -> Result<()> {
        elementwise::cpu_kernel::unary_backward(op, x, y, dy, dx);
        Ok(())
    }
    unsafe fn binary_unchecked(
        &self,
        op: BinaryOp,
        a: &[f32],
        a_shape: &[usize],
        b: &[f32],
        b_shape: &[usize],
        out: &mut [f32],
    ) -> Result<()> {
        let os = broadcast_shape(a_shape, b_shape).expect("checked by Backend::binary");
        elementwise::cpu_kernel::binary(op, a, a_shape, b, b_shape, out, &os);
        Ok(())
    }
    unsafe fn sum_to_shape_unchecked(
        &self,
        x: &[f32],
        x_shape: &[usize],
        out_shape: &[usize],
        out: &mut [f32],
    ) -> Result<()> {
        elementwise::cpu_kernel::sum_to_shape(x, x_shape, out, out_shape);
        Ok(())
    }
    unsafe fn broadcast_to_unchecked(
        &self,
        x: &[f32],
        x_shape: &[usize],
        out_shape: &[usize],
        out: &mut [f32],
    ) -> Result<()> {
        elementwise::cpu_kernel::broadcast_to(x, x_shape, out, out_shape);
        Ok(())
    }
    unsafe fn axpy_unchecked(&self, alpha: f32, x: &[f32], y: &mut [f32]) -> Result<()> {
        elementwise::cpu_kernel::axpy(alpha, x, y);
        Ok(())
    }
    unsafe fn weighted_sum_unchecked(
        &self,
        weights: &[f32],
        xs: &[&[f32]],
        out: &mut [f32],
    ) -> Result<()> {
        elementwise::cpu_kernel::weighted_sum(weights, xs, out);
        Ok(())
    }
    unsafe fn weighted_sum_backward_unchecked(
        &self,
        weights: &[f32],
        xs: &[&[f32]],
        dy: &[f32],
        dxs: &mut [&mut [f32]],
        dweights: &mut [f32],
    ) -> Result<()> {
        elementwise::cpu_kernel::weighted_sum_backward(weights, xs, dy, dxs, dweights);
        Ok(())
    }
    unsafe fn concat_channels_unchecked(
        &self,
        xs: &[&[f32]],
        channels: &[usize],
        n: usize,
        hw: usize,
        out: &mut [f32],
    ) -> Result<()> {
        elementwise::cpu_kernel::concat_channels(xs, channels, n, hw, out);
        Ok(())
    }
    unsafe fn split_channels_unchecked(
        &self,
        x: &[f32],
        channels: &[usize],
        n: usize,
        hw: usize,
        outs: &mut [&mut [f32]],
    ) -> Result<()> {
        elementwise::cpu_kernel::split_channels(x, channels, n, hw, outs);
        Ok(())
    }

    unsafe fn reduce_unchecked(
        &self,
        op: ReduceOp,
        x: &[f32],
        shape: &[usize],
        axis: Option<usize>,
        out: &mut [f32],
    ) -> Result<()> {
        let (outer, len, inner) = reduce::dims(x.len(), shape, axis);
        reduce::cpu_kernel::reduce(op, x, outer, len, inner, out);
        Ok(())
    }
    unsafe fn reduce_backward_unchecked(
        &self,
        op: ReduceOp,
        x: &[f32],
        y: &[f32],
        shape: &[usize],
        axis: Option<usize>,
        dy: &[f32],
        dx: &mut [f32],
    ) -> Result<()> {
        let (outer, len, inner) = reduce::dims(x.len(), shape, axis);
        reduce::cpu_kernel::reduce_backward(op, x, y, outer, len, inner, dy, dx);
        Ok(())
    }
    unsafe fn softmax_unchecked(
        &self,
        op: SoftmaxOp,
        x: &[f32],
        rows: usize,
        cols: usize,
        y: &mut [f32],
    ) -> Result<()> {
        debug_assert_eq!(x.len(), rows * cols);
        reduce::cpu_kernel::softmax(op, x, cols, y);
        Ok(())
    }
    unsafe fn softmax_backward_unchecked(
        &self,
        op: SoftmaxOp,
        y: &[f32],
        dy: &[f32],
        rows: usize,
        cols: usize,
        dx: &mut [f32],
    ) -> Result<()> {
        debug_assert_eq!(y.len(), rows * cols);
        reduce::cpu_kernel::softmax_backward(op, y, dy, cols, dx);
        Ok(())
    }
    unsafe fn cross_entropy_unchecked(
        &self,
        logits: &[f32],
        labels: &[usize],
        rows: usize,
        cols: usize,
        loss: &mut [f32],
    ) -> Result<()> {
        debug_assert_eq!(labels.len(), rows);
        loss[0] = reduce::cpu_kernel::cross_entropy(logits, labels, cols);
        Ok(())
    }
    unsafe fn cross_entropy_backward_unchecked(
        &self,
        logits: &[f32],
        labels: &[usize],
        rows: usize,
        cols: usize,
        dloss: &[f32],
        dlogits: &mut [f32],
    ) -> Result<()> {
        debug_assert_eq!(labels.len(), rows);
        reduce::cpu_kernel::cross_entropy_backward(logits, labels, cols, dloss[0], dlogits);
        Ok(())
    }

    unsafe fn matmul_unchecked(
        &self,
        p: &Matmul,
        a: &[f32],
        b: &[f32],
        c: &mut [f32],
    ) -> Result<()> {
        let (m, n, k) = (p.m, p.n, p.k);
        let lda = if p.trans_a { m } else { k };
        let ldb = if p.trans_b { k } else { n };
        for i in 0..p.batch {
            let bo = if p.b_shared { 0 } else { i * k * n };
            crate::gemm::sgemm(
                p.trans_a,
                p.trans_b,
                m,
                n,
                k,
                p.alpha,
                &a[i * m * k..(i + 1) * m * k],
                lda.max(1),
                &b[bo..bo + k * n],
                ldb.max(1),
                p.beta,
                &mut c[i * m * n..(i + 1) * m * n],
                n.max(1),
            );
        }
        Ok(())
    }
    unsafe fn conv2d_unchecked(
        &self,
        p: &Checked<Conv2dParams>,
        x: &[f32],
        w: &[f32],
        bias: Option<&[f32]>,
        y: &mut [f32],
    ) -> Result<()> {
        conv2d::cpu_kernel::forward(p, x, w, bias, y);
        Ok(())
    }
    unsafe fn conv2d_backward_input_unchecked(
        &self,
        p: &Checked<Conv2dParams>,
        w: &[f32],
        dy: &[f32],
        dx: &mut [f32],
    ) -> Result<()> {
        conv2d::cpu_kernel::backward_input(p, w, dy, dx);
        Ok(())
    }
    unsafe fn conv2d_backward_weight_unchecked(
        &self,
        p: &Checked<Conv2dParams>,
        x: &[f32],
        dy: &[f32],
        dw: &mut [f32],
        dbias: Option<&mut [f32]>,
    ) -> Result<()> {
        conv2d::cpu_kernel::backward_weight(p, x, dy, dw, dbias);
        Ok(())
    }
    unsafe fn conv2d_relu_input_unchecked(
        &self,
        p: &Checked<Conv2dParams>,
        x: &[f32],
        w: &[f32],
        y: &mut [f32],
    ) -> Result<()> {
        conv2d::cpu_kernel::forward_relu_input(p, x, w, y);
        Ok(())
    }
    unsafe fn conv2d_backward_input_relu_mask_unchecked(
        &self,
        p: &Checked<Conv2dParams>,
        w: &[f32],
        dy: &[f32],
        x: &[f32],
        dx: &mut [f32],
    ) -> Result<()> {
        conv2d::cpu_kernel::backward_input_relu_mask(p, w, dy, x, dx);
        Ok(())
    }
    unsafe fn conv2d_backward_weight_relu_input_unchecked(
        &self,
        p: &Checked<Conv2dParams>,
        x: &[f32],
        dy: &[f32],
        dw: &mut [f32],
    ) -> Result<()> {
        conv2d::cpu_kernel::backward_weight_relu_input(p, x, dy, dw);
        Ok(())
    }

    unsafe fn pool2d_unchecked(
        &self,
        p: &Checked<Pool2dParams>,
        x: &[f32],
        y: &mut [f32],
    ) -> Result<()> {
        pool2d::cpu_kernel::forward(p, x, y);
        Ok(())
    }
    unsafe fn pool2d_backward_unchecked(
        &self,
        p: &Checked<Pool2dParams>,
        x: &[f32],
        y: Option<&[f32]>,
        dy: &[f32],
        dx: &mut [f32],
    ) -> Result<()> {
        debug_assert!(y.is_none_or(|y| y.len() == p.y_len()));
        pool2d::cpu_kernel::backward(p, x, dy, dx);
        Ok(())
    }
    unsafe fn global_avg_pool_unchecked(
        &self,
        n: usize,
        c: usize,
        hw: usize,
        x: &[f32],
        y: &mut [f32],
    ) -> Result<()> {
        debug_assert_eq!(x.len(), n * c * hw);
        pool2d::cpu_kernel::global_avg(hw, x, y);
        Ok(())
    }
    unsafe fn global_avg_pool_backward_unchecked(
        &self,
        n: usize,
        c: usize,
        hw: usize,
        dy: &[f32],
        dx: &mut [f32],
    ) -> Result<()> {
        debug_assert_eq!(dx.len(), n * c * hw);
        pool2d::cpu_kernel::global_avg_backward(hw, dy, dx);
        Ok(())
    }
    unsafe fn batch_norm_unchecked(
        &self,
        p: &Checked<BatchNormParams>,
        x: &[f32],
        gamma: Option<&[f32]>,
        beta: Option<&[f32]>,
        running_mean: Option<&mut [f32]>,
        running_var: Option<&mut [f32]>,
        y: &mut [f32],
        save_mean: &mut [f32],
        save_invstd: &mut [f32],
    ) -> Result<()> {
        batch_norm::cpu_kernel::forward(
            p,
            x,
            gamma,
            beta,
            running_mean,
            running_var,
            y,
            save_mean,
            save_invstd,
        );
        Ok(())
    }
    unsafe fn batch_norm_backward_unchecked(
        &self,
        p: &Checked<BatchNormParams>,
        x: &[f32],
        gamma: Option<&[f32]>,
        save_mean: &[f32],
        save_invstd: &[f32],
        dy: &[f32],
        dx: &mut [f32],
        dgamma: Option<&mut [f32]>,
        dbeta: Option<&mut [f32]>,
    ) -> Result<()> {
        batch_norm::cpu_kernel::backward(
            p,
            x,
            gamma,
            save_mean,
            save_invstd,
            dy,
            dx,
            dgamma,
            dbeta,
        );
        Ok(())
    }

    unsafe fn select_backward_unchecked(
        &self,
        a: &[f32],
        y: &[f32],
        dy: &[f32],
        da: &mut [f32],
        db: &mut [f32],
    ) -> Result<()> {
        for i in 0..y.len() {
            let a_wins = a[i] == y[i];
            da[i] = if a_wins { dy[i] } else { 0.0 };
            db[i] = if a_wins { 0.0 } else { dy[i] };
        }
        Ok(())
    }
    unsafe fn argmax_rows_unchecked(
        &self,
        x: &[f32],
        rows: usize,
        cols: usize,
        out: &mut [f32],
    ) -> Result<()> {
        debug_assert_eq!(out.len(), rows);
        for (r, o) in out.iter_mut().enumerate() {
            let row = &x[r * cols..(r + 1) * cols];
            let mut best = 0;
            for (j, &v) in row.iter().enumerate() {
                if v > row[best] {
                    best = j;
                }
            }
            *o = best as f32;
        }
        Ok(())
    }
    unsafe fn gather_rows_unchecked(
        &self,
        p: &Rows,
        table: &[f32],
        indices: &[usize],
        out: &mut [f32],
    ) -> Result<()> {
        recurrent::cpu_kernel::gather_rows(p, table, indices, out);
        Ok(())
    }
    unsafe fn scatter_add_rows_unchecked(
        &self,
        p: &Rows,
        src: &[f32],
        indices: &[usize],
        table: &mut [f32],
    ) -> Result<()> {
        recurrent::cpu_kernel::scatter_add_rows(p, src, indices, table);
        Ok(())
    }
    unsafe fn lstm_cell_unchecked(
        &self,
        p: &LstmCell,
        gates: &[f32],
        c_prev: &[f32],
        act: &mut [f32],
        hc: &mut [f32],
    ) -> Result<()> {
        recurrent::cpu_kernel::cell_forward(p, gates, c_prev, act, hc);
        Ok(())
    }
    unsafe fn lstm_cell_backward_unchecked(
        &self,
        p: &LstmCell,
        act: &[f32],
        c_prev: &[f32],
        hc: &[f32],
        dhc: &[f32],
        dgates: &mut [f32],
        dc_prev: &mut [f32],
    ) -> Result<()> {
        recurrent::cpu_kernel::cell_backward(p, act, c_prev, hc, dhc, dgates, dc_prev);
        Ok(())
    }
    unsafe fn lstm_sequence_unchecked(
        &self,
        p: &Lstm,
        xg: &[f32],
        w_hh: &[f32],
        h0: &[f32],
        c0: &[f32],
        act: &mut [f32],
        hs: &mut [f32],
        cs: &mut [f32],
    ) -> Result<()> {
        recurrent::cpu_kernel::sequence_forward(p, xg, w_hh, h0, c0, act, hs, cs);
        Ok(())
    }
    unsafe fn lstm_sequence_backward_unchecked(
        &self,
        p: &Lstm,
        w_hh: &[f32],
        c0: &[f32],
        act: &[f32],
        cs: &[f32],
        dhs: &[f32],
        dxg: &mut [f32],
        dh0: &mut [f32],
        dc0: &mut [f32],
    ) -> Result<()> {
        recurrent::cpu_kernel::sequence_backward(p, w_hh, c0, act, cs, dhs, dxg, dh0, dc0);
        Ok(())
    }

    unsafe fn sgd_step_unchecked(
        &self,
        p: &SgdStep,
        w: &mut [f32],
        g: &[f32],
        momentum: Option<&mut [f32]>,
    ) -> Result<()> {
        optim::sgd(p, w, g, momentum);
        Ok(())
    }
    unsafe fn adam_step_unchecked(
        &self,
        p: &AdamStep,
        w: &mut [f32],
        g: &[f32],
        m: &mut [f32],
        v: &mut [f32],
    ) -> Result<()> {
        optim::adam(p, w, g, m, v);
        Ok(())
    }
    unsafe fn clip_grad_norm_unchecked(
        &self,
        grads: &mut [&mut [f32]],
        max_norm: f32,
        total_out: &mut [f32],
    ) -> Result<()> {
        total_out[0] = optim::clip(grads, max_norm);
        Ok(())
    }

    unsafe fn fill_random_unchecked(
        &self,
        dist: RandomDist,
        seed: u64,
        out: &mut [f32],
    ) -> Result<()> {
        random::fill(dist, seed, out);
        Ok(())
    }
    unsafe fn dropout_mask_unchecked(&self, p: f32, seed: u64, out: &mut [f32]) -> Result<()> {
        random::dropout_mask(p, seed, out);
        Ok(())
    }
}
