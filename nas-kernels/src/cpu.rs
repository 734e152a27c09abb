//! The CPU backend: kernels read and write slices, buffers are the pooled [`Buf`] (freed
//! buffers return to a per-thread pool: the CPU's memory policy); kernels are the
//! `cpu_kernel` modules of each op.

use crate::backend::*;
use crate::buf::Buf;
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

fn prod(shape: &[usize]) -> usize {
    shape.iter().product()
}

fn opt_len(op: &'static str, what: &'static str, b: Option<&[f32]>, len: usize) -> Result<()> {
    match b {
        Some(b) => check_len(op, what, b.len(), len),
        None => Ok(()),
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
    fn copy_strided(&self, p: &StridedCopy, src: &[f32], dst: &mut [f32]) -> Result<()> {
        p.validate(src.len(), dst.len())?;
        copy::cpu_copy(p, src, dst);
        Ok(())
    }

    fn unary(&self, op: UnaryOp, x: &[f32], y: &mut [f32]) -> Result<()> {
        check_len("unary", "y", y.len(), x.len())?;
        elementwise::cpu_kernel::unary(op, x, y);
        Ok(())
    }
    fn unary_backward(
        &self,
        op: UnaryOp,
        x: &[f32],
        y: &[f32],
        dy: &[f32],
        dx: &mut [f32],
    ) -> Result<()> {
        let n = x.len();
        check_len("unary_backward", "y", y.len(), n)?;
        check_len("unary_backward", "dy", dy.len(), n)?;
        check_len("unary_backward", "dx", dx.len(), n)?;
        elementwise::cpu_kernel::unary_backward(op, x, y, dy, dx);
        Ok(())
    }
    fn binary(
        &self,
        op: BinaryOp,
        a: &[f32],
        a_shape: &[usize],
        b: &[f32],
        b_shape: &[usize],
        out: &mut [f32],
    ) -> Result<()> {
        const OP: &str = "binary";
        check_len(OP, "a", a.len(), prod(a_shape))?;
        check_len(OP, "b", b.len(), prod(b_shape))?;
        let os = broadcast_shape(a_shape, b_shape).ok_or_else(|| KernelError::Broadcast {
            op: OP,
            a: a_shape.to_vec(),
            b: b_shape.to_vec(),
        })?;
        check_len(OP, "out", out.len(), prod(&os))?;
        elementwise::cpu_kernel::binary(op, a, a_shape, b, b_shape, out, &os);
        Ok(())
    }
    fn sum_to_shape(
        &self,
        x: &[f32],
        x_shape: &[usize],
        out_shape: &[usize],
        out: &mut [f32],
    ) -> Result<()> {
        const OP: &str = "sum_to_shape";
        check_len(OP, "x", x.len(), prod(x_shape))?;
        check_len(OP, "out", out.len(), prod(out_shape))?;
        if out_shape.len() > x_shape.len()
            || broadcast_shape(x_shape, out_shape).as_deref() != Some(x_shape)
        {
            return Err(KernelError::Broadcast {
                op: OP,
                a: x_shape.to_vec(),
                b: out_shape.to_vec(),
            });
        }
        elementwise::cpu_kernel::sum_to_shape(x, x_shape, out, out_shape);
        Ok(())
    }
    fn broadcast_to(
        &self,
        x: &[f32],
        x_shape: &[usize],
        out_shape: &[usize],
        out: &mut [f32],
    ) -> Result<()> {
        const OP: &str = "broadcast_to";
        check_len(OP, "x", x.len(), prod(x_shape))?;
        check_len(OP, "out", out.len(), prod(out_shape))?;
        if x_shape.len() > out_shape.len()
            || broadcast_shape(x_shape, out_shape).as_deref() != Some(out_shape)
        {
            return Err(KernelError::Broadcast {
                op: OP,
                a: x_shape.to_vec(),
                b: out_shape.to_vec(),
            });
        }
        elementwise::cpu_kernel::broadcast_to(x, x_shape, out, out_shape);
        Ok(())
    }
    fn axpy(&self, alpha: f32, x: &[f32], y: &mut [f32]) -> Result<()> {
        check_len("axpy", "y", y.len(), x.len())?;
        elementwise::cpu_kernel::axpy(alpha, x, y);
        Ok(())
    }
    fn weighted_sum(&self, weights: &[f32], xs: &[&[f32]], out: &mut [f32]) -> Result<()> {
        const OP: &str = "weighted_sum";
        check_len(OP, "weights", weights.len(), xs.len())?;
        for x in xs {
            check_len(OP, "xs[k]", x.len(), out.len())?;
        }
        elementwise::cpu_kernel::weighted_sum(weights, xs, out);
        Ok(())
    }
    fn weighted_sum_backward(
        &self,
        weights: &[f32],
        xs: &[&[f32]],
        dy: &[f32],
        dxs: &mut [&mut [f32]],
        dweights: &mut [f32],
    ) -> Result<()> {
        const OP: &str = "weighted_sum_backward";
        check_len(OP, "weights", weights.len(), xs.len())?;
        check_len(OP, "dweights", dweights.len(), xs.len())?;
        check_len(OP, "dxs (count)", dxs.len(), xs.len())?;
        for x in xs {
            check_len(OP, "xs[k]", x.len(), dy.len())?;
        }
        for d in dxs.iter() {
            check_len(OP, "dxs[k]", d.len(), dy.len())?;
        }
        elementwise::cpu_kernel::weighted_sum_backward(weights, xs, dy, dxs, dweights);
        Ok(())
    }
    fn concat_channels(
        &self,
        xs: &[&[f32]],
        channels: &[usize],
        n: usize,
        hw: usize,
        out: &mut [f32],
    ) -> Result<()> {
        const OP: &str = "concat_channels";
        check_len(OP, "channels (count)", channels.len(), xs.len())?;
        for (x, &c) in xs.iter().zip(channels) {
            check_len(OP, "xs[i]", x.len(), n * c * hw)?;
        }
        check_len(
            OP,
            "out",
            out.len(),
            n * channels.iter().sum::<usize>() * hw,
        )?;
        elementwise::cpu_kernel::concat_channels(xs, channels, n, hw, out);
        Ok(())
    }
    fn split_channels(
        &self,
        x: &[f32],
        channels: &[usize],
        n: usize,
        hw: usize,
        outs: &mut [&mut [f32]],
    ) -> Result<()> {
        const OP: &str = "split_channels";
        check_len(OP, "channels (count)", channels.len(), outs.len())?;
        for (o, &c) in outs.iter().zip(channels) {
            check_len(OP, "outs[i]", o.len(), n * c * hw)?;
        }
        check_len(OP, "x", x.len(), n * channels.iter().sum::<usize>() * hw)?;
        elementwise::cpu_kernel::split_channels(x, channels, n, hw, outs);
        Ok(())
    }

    fn reduce(
        &self,
        op: ReduceOp,
        x: &[f32],
        shape: &[usize],
        axis: Option<usize>,
        out: &mut [f32],
    ) -> Result<()> {
        let (outer, len, inner) = reduce_dims("reduce", x.len(), shape, axis)?;
        check_len("reduce", "out", out.len(), outer * inner)?;
        if len == 0 && op == ReduceOp::Max {
            return Err(KernelError::param("reduce", "max over an empty axis"));
        }
        reduce::cpu_kernel::reduce(op, x, outer, len, inner, out);
        Ok(())
    }
    fn reduce_backward(
        &self,
        op: ReduceOp,
        x: &[f32],
        y: &[f32],
        shape: &[usize],
        axis: Option<usize>,
        dy: &[f32],
        dx: &mut [f32],
    ) -> Result<()> {
        const OP: &str = "reduce_backward";
        let (outer, len, inner) = reduce_dims(OP, x.len(), shape, axis)?;
        check_len(OP, "y", y.len(), outer * inner)?;
        check_len(OP, "dy", dy.len(), outer * inner)?;
        check_len(OP, "dx", dx.len(), x.len())?;
        reduce::cpu_kernel::reduce_backward(op, x, y, outer, len, inner, dy, dx);
        Ok(())
    }
    fn softmax(
        &self,
        op: SoftmaxOp,
        x: &[f32],
        rows: usize,
        cols: usize,
        y: &mut [f32],
    ) -> Result<()> {
        check_len("softmax", "x", x.len(), rows * cols)?;
        check_len("softmax", "y", y.len(), rows * cols)?;
        reduce::cpu_kernel::softmax(op, x, cols, y);
        Ok(())
    }
    fn softmax_backward(
        &self,
        op: SoftmaxOp,
        y: &[f32],
        dy: &[f32],
        rows: usize,
        cols: usize,
        dx: &mut [f32],
    ) -> Result<()> {
        for (what, l) in [("y", y.len()), ("dy", dy.len()), ("dx", dx.len())] {
            check_len("softmax_backward", what, l, rows * cols)?;
        }
        reduce::cpu_kernel::softmax_backward(op, y, dy, cols, dx);
        Ok(())
    }
    fn cross_entropy(
        &self,
        logits: &[f32],
        labels: &[usize],
        rows: usize,
        cols: usize,
        loss: &mut [f32],
    ) -> Result<()> {
        check_ce("cross_entropy", logits.len(), labels, rows, cols)?;
        check_len("cross_entropy", "loss", loss.len(), 1)?;
        loss[0] = reduce::cpu_kernel::cross_entropy(logits, labels, cols);
        Ok(())
    }
    fn cross_entropy_backward(
        &self,
        logits: &[f32],
        labels: &[usize],
        rows: usize,
        cols: usize,
        dloss: &[f32],
        dlogits: &mut [f32],
    ) -> Result<()> {
        const OP: &str = "cross_entropy_backward";
        check_ce(OP, logits.len(), labels, rows, cols)?;
        check_len(OP, "dloss", dloss.len(), 1)?;
        check_len(OP, "dlogits", dlogits.len(), rows * cols)?;
        reduce::cpu_kernel::cross_entropy_backward(logits, labels, cols, dloss[0], dlogits);
        Ok(())
    }

    fn matmul(&self, p: &Matmul, a: &[f32], b: &[f32], c: &mut [f32]) -> Result<()> {
        check_len("matmul", "a", a.len(), p.a_len())?;
        check_len("matmul", "b", b.len(), p.b_len())?;
        check_len("matmul", "c", c.len(), p.c_len())?;
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
    fn conv2d(
        &self,
        p: &Conv2dParams,
        x: &[f32],
        w: &[f32],
        bias: Option<&[f32]>,
        y: &mut [f32],
    ) -> Result<()> {
        const OP: &str = "conv2d";
        p.validate()?;
        check_len(OP, "x", x.len(), p.x_len())?;
        check_len(OP, "weight", w.len(), p.w_len())?;
        opt_len(OP, "bias", bias, p.c_out)?;
        check_len(OP, "y", y.len(), p.y_len())?;
        conv2d::cpu_kernel::forward(p, x, w, bias, y);
        Ok(())
    }
    fn conv2d_backward_input(
        &self,
        p: &Conv2dParams,
        w: &[f32],
        dy: &[f32],
        dx: &mut [f32],
    ) -> Result<()> {
        const OP: &str = "conv2d_backward_input";
        p.validate()?;
        check_len(OP, "weight", w.len(), p.w_len())?;
        check_len(OP, "dy", dy.len(), p.y_len())?;
        check_len(OP, "dx", dx.len(), p.x_len())?;
        conv2d::cpu_kernel::backward_input(p, w, dy, dx);
        Ok(())
    }
    fn conv2d_backward_weight(
        &self,
        p: &Conv2dParams,
        x: &[f32],
        dy: &[f32],
        dw: &mut [f32],
        dbias: Option<&mut [f32]>,
    ) -> Result<()> {
        const OP: &str = "conv2d_backward_weight";
        p.validate()?;
        check_len(OP, "x", x.len(), p.x_len())?;
        check_len(OP, "dy", dy.len(), p.y_len())?;
        check_len(OP, "dweight", dw.len(), p.w_len())?;
        opt_len(OP, "dbias", dbias.as_deref(), p.c_out)?;
        conv2d::cpu_kernel::backward_weight(p, x, dy, dw, dbias);
        Ok(())
    }
    fn conv2d_relu_input(
        &self,
        p: &Conv2dParams,
        x: &[f32],
        w: &[f32],
        y: &mut [f32],
    ) -> Result<()> {
        const OP: &str = "conv2d_relu_input";
        p.validate()?;
        check_len(OP, "x", x.len(), p.x_len())?;
        check_len(OP, "weight", w.len(), p.w_len())?;
        check_len(OP, "y", y.len(), p.y_len())?;
        conv2d::cpu_kernel::forward_relu_input(p, x, w, y);
        Ok(())
    }
    fn conv2d_backward_input_relu_mask(
        &self,
        p: &Conv2dParams,
        w: &[f32],
        dy: &[f32],
        x: &[f32],
        dx: &mut [f32],
    ) -> Result<()> {
        const OP: &str = "conv2d_backward_input_relu_mask";
        p.validate()?;
        check_len(OP, "weight", w.len(), p.w_len())?;
        check_len(OP, "dy", dy.len(), p.y_len())?;
        check_len(OP, "x", x.len(), p.x_len())?;
        check_len(OP, "dx", dx.len(), p.x_len())?;
        conv2d::cpu_kernel::backward_input_relu_mask(p, w, dy, x, dx);
        Ok(())
    }
    fn conv2d_backward_weight_relu_input(
        &self,
        p: &Conv2dParams,
        x: &[f32],
        dy: &[f32],
        dw: &mut [f32],
    ) -> Result<()> {
        const OP: &str = "conv2d_backward_weight_relu_input";
        p.validate()?;
        check_len(OP, "x", x.len(), p.x_len())?;
        check_len(OP, "dy", dy.len(), p.y_len())?;
        check_len(OP, "dweight", dw.len(), p.w_len())?;
        conv2d::cpu_kernel::backward_weight_relu_input(p, x, dy, dw);
        Ok(())
    }

    fn pool2d(&self, p: &Pool2dParams, x: &[f32], y: &mut [f32]) -> Result<()> {
        p.validate()?;
        check_len("pool2d", "x", x.len(), p.x_len())?;
        check_len("pool2d", "y", y.len(), p.y_len())?;
        pool2d::cpu_kernel::forward(p, x, y);
        Ok(())
    }
    fn pool2d_backward(
        &self,
        p: &Pool2dParams,
        x: &[f32],
        y: Option<&[f32]>,
        dy: &[f32],
        dx: &mut [f32],
    ) -> Result<()> {
        const OP: &str = "pool2d_backward";
        p.validate()?;
        if !(matches!(p.kind, PoolKind::Avg { .. }) && x.is_empty()) {
            check_len(OP, "x", x.len(), p.x_len())?;
        }
        if let Some(y) = y {
            check_len(OP, "y", y.len(), p.y_len())?;
        }
        check_len(OP, "dy", dy.len(), p.y_len())?;
        check_len(OP, "dx", dx.len(), p.x_len())?;
        pool2d::cpu_kernel::backward(p, x, dy, dx);
        Ok(())
    }
    fn global_avg_pool(
        &self,
        n: usize,
        c: usize,
        hw: usize,
        x: &[f32],
        y: &mut [f32],
    ) -> Result<()> {
        if hw == 0 {
            return Err(KernelError::param("global_avg_pool", "hw must be positive"));
        }
        check_len("global_avg_pool", "x", x.len(), n * c * hw)?;
        check_len("global_avg_pool", "y", y.len(), n * c)?;
        pool2d::cpu_kernel::global_avg(hw, x, y);
        Ok(())
    }
    fn global_avg_pool_backward(
        &self,
        n: usize,
        c: usize,
        hw: usize,
        dy: &[f32],
        dx: &mut [f32],
    ) -> Result<()> {
        if hw == 0 {
            return Err(KernelError::param(
                "global_avg_pool_backward",
                "hw must be positive",
            ));
        }
        check_len("global_avg_pool_backward", "dy", dy.len(), n * c)?;
        check_len("global_avg_pool_backward", "dx", dx.len(), n * c * hw)?;
        pool2d::cpu_kernel::global_avg_backward(hw, dy, dx);
        Ok(())
    }
    fn batch_norm(
        &self,
        p: &BatchNormParams,
        x: &[f32],
        gamma: Option<&[f32]>,
        beta: Option<&[f32]>,
        running_mean: Option<&mut [f32]>,
        running_var: Option<&mut [f32]>,
        y: &mut [f32],
        save_mean: &mut [f32],
        save_invstd: &mut [f32],
    ) -> Result<()> {
        const OP: &str = "batch_norm";
        p.validate()?;
        check_len(OP, "x", x.len(), p.x_len())?;
        check_len(OP, "y", y.len(), p.x_len())?;
        opt_len(OP, "gamma", gamma, p.c)?;
        opt_len(OP, "beta", beta, p.c)?;
        opt_len(OP, "running_mean", running_mean.as_deref(), p.c)?;
        opt_len(OP, "running_var", running_var.as_deref(), p.c)?;
        check_len(OP, "save_mean", save_mean.len(), p.c)?;
        check_len(OP, "save_invstd", save_invstd.len(), p.c)?;
        if !p.training && (running_mean.is_none() || running_var.is_none()) {
            return Err(KernelError::param(
                OP,
                "evaluation mode needs running_mean and running_var",
            ));
        }
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
    fn batch_norm_backward(
        &self,
        p: &BatchNormParams,
        x: &[f32],
        gamma: Option<&[f32]>,
        save_mean: &[f32],
        save_invstd: &[f32],
        dy: &[f32],
        dx: &mut [f32],
        dgamma: Option<&mut [f32]>,
        dbeta: Option<&mut [f32]>,
    ) -> Result<()> {
        const OP: &str = "batch_norm_backward";
        p.validate()?;
        check_len(OP, "x", x.len(), p.x_len())?;
        check_len(OP, "dy", dy.len(), p.x_len())?;
        check_len(OP, "dx", dx.len(), p.x_len())?;
        opt_len(OP, "gamma", gamma, p.c)?;
        check_len(OP, "save_mean", save_mean.len(), p.c)?;
        check_len(OP, "save_invstd", save_invstd.len(), p.c)?;
        opt_len(OP, "dgamma", dgamma.as_deref(), p.c)?;
        opt_len(OP, "dbeta", dbeta.as_deref(), p.c)?;
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

    fn select_backward(
        &self,
        a: &[f32],
        y: &[f32],
        dy: &[f32],
        da: &mut [f32],
        db: &mut [f32],
    ) -> Result<()> {
        const OP: &str = "select_backward";
        for (what, l) in [
            ("a", a.len()),
            ("dy", dy.len()),
            ("da", da.len()),
            ("db", db.len()),
        ] {
            check_len(OP, what, l, y.len())?;
        }
        for i in 0..y.len() {
            let a_wins = a[i] == y[i];
            da[i] = if a_wins { dy[i] } else { 0.0 };
            db[i] = if a_wins { 0.0 } else { dy[i] };
        }
        Ok(())
    }
    fn argmax_rows(&self, x: &[f32], rows: usize, cols: usize, out: &mut [f32]) -> Result<()> {
        check_len("argmax_rows", "x", x.len(), rows * cols)?;
        check_len("argmax_rows", "out", out.len(), rows)?;
        if cols == 0 && rows > 0 {
            return Err(KernelError::param("argmax_rows", "rows have no columns"));
        }
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
    fn gather_rows(
        &self,
        p: &Rows,
        table: &[f32],
        indices: &[usize],
        out: &mut [f32],
    ) -> Result<()> {
        p.check("gather_rows", indices, table.len(), out.len())?;
        recurrent::cpu_kernel::gather_rows(p, table, indices, out);
        Ok(())
    }
    fn scatter_add_rows(
        &self,
        p: &Rows,
        src: &[f32],
        indices: &[usize],
        table: &mut [f32],
    ) -> Result<()> {
        p.check("scatter_add_rows", indices, table.len(), src.len())?;
        recurrent::cpu_kernel::scatter_add_rows(p, src, indices, table);
        Ok(())
    }
    fn lstm_cell(
        &self,
        p: &LstmCell,
        gates: &[f32],
        c_prev: &[f32],
        act: &mut [f32],
        hc: &mut [f32],
    ) -> Result<()> {
        p.check_forward(gates.len(), c_prev.len(), act.len(), hc.len())?;
        recurrent::cpu_kernel::cell_forward(p, gates, c_prev, act, hc);
        Ok(())
    }
    fn lstm_cell_backward(
        &self,
        p: &LstmCell,
        act: &[f32],
        c_prev: &[f32],
        hc: &[f32],
        dhc: &[f32],
        dgates: &mut [f32],
        dc_prev: &mut [f32],
    ) -> Result<()> {
        p.check_backward(
            act.len(),
            c_prev.len(),
            hc.len(),
            dhc.len(),
            dgates.len(),
            dc_prev.len(),
        )?;
        recurrent::cpu_kernel::cell_backward(p, act, c_prev, hc, dhc, dgates, dc_prev);
        Ok(())
    }
    fn lstm_sequence(
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
        p.check_forward(
            xg.len(),
            w_hh.len(),
            h0.len(),
            c0.len(),
            act.len(),
            hs.len(),
            cs.len(),
        )?;
        recurrent::cpu_kernel::sequence_forward(p, xg, w_hh, h0, c0, act, hs, cs);
        Ok(())
    }
    fn lstm_sequence_backward(
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
        p.check_backward(
            w_hh.len(),
            c0.len(),
            act.len(),
            cs.len(),
            dhs.len(),
            dxg.len(),
            dh0.len(),
            dc0.len(),
        )?;
        recurrent::cpu_kernel::sequence_backward(p, w_hh, c0, act, cs, dhs, dxg, dh0, dc0);
        Ok(())
    }

    fn sgd_step(
        &self,
        p: &SgdStep,
        w: &mut [f32],
        g: &[f32],
        momentum: Option<&mut [f32]>,
    ) -> Result<()> {
        check_len("sgd_step", "g", g.len(), w.len())?;
        if let Some(b) = momentum.as_deref() {
            check_len("sgd_step", "momentum", b.len(), w.len())?;
        } else if p.momentum != 0.0 {
            return Err(KernelError::param("sgd_step", "momentum needs a buffer"));
        }
        optim::sgd(p, w, g, momentum);
        Ok(())
    }
    fn adam_step(
        &self,
        p: &AdamStep,
        w: &mut [f32],
        g: &[f32],
        m: &mut [f32],
        v: &mut [f32],
    ) -> Result<()> {
        for (what, l) in [("g", g.len()), ("m", m.len()), ("v", v.len())] {
            check_len("adam_step", what, l, w.len())?;
        }
        optim::adam(p, w, g, m, v);
        Ok(())
    }
    fn clip_grad_norm(
        &self,
        grads: &mut [&mut [f32]],
        max_norm: f32,
        total_out: &mut [f32],
    ) -> Result<()> {
        check_len("clip_grad_norm", "total_out", total_out.len(), 1)?;
        total_out[0] = optim::clip(grads, max_norm);
        Ok(())
    }

    fn fill_random(&self, dist: RandomDist, seed: u64, out: &mut [f32]) -> Result<()> {
        dist.validate()?;
        random::fill(dist, seed, out);
        Ok(())
    }
    fn dropout_mask(&self, p: f32, seed: u64, out: &mut [f32]) -> Result<()> {
        random::validate_dropout(p)?;
        random::dropout_mask(p, seed, out);
        Ok(())
    }
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
        Some(a) if a < shape.len() => Ok(reduce::axis_split(shape, a)),
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
