//! A test-only backend: values live in opaque [`TestBuf`]s that hand out no host slices, the
//! compute is the CPU backend's, and every host transfer ([`Backend::from_slice`],
//! [`Backend::from_vec`], [`Backend::to_vec`]) is counted per thread.
//!
//! Running a whole training step on [`Device::Test`] and asserting the
//! counts proves that the tensor crate reaches values only through the [`Backend`]: a code
//! path that read or wrote a host slice would not compile against `TestBuf`, and a path that
//! copied values out and back would show in the counts. It also checks that the tensor crate
//! never mixes buffers of two backends.

use std::cell::Cell;

use crate::backend::*;
use crate::buf::Buf;
use crate::checked::Checked;
use crate::cpu::Cpu;
use crate::device::Device;
use crate::error::Result;

thread_local! {
    static TO_DEVICE: Cell<u64> = const { Cell::new(0) };
    static TO_HOST: Cell<u64> = const { Cell::new(0) };
}

/// Host transfers made through [`TestBackend`] on this thread so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Transfers {
    /// Buffers uploaded (`from_slice`, `from_vec`).
    pub to_device: u64,
    /// Buffers downloaded (`to_vec`).
    pub to_host: u64,
}

impl std::ops::Sub for Transfers {
    type Output = Transfers;
    fn sub(self, o: Transfers) -> Transfers {
        Transfers {
            to_device: self.to_device - o.to_device,
            to_host: self.to_host - o.to_host,
        }
    }
}

/// The counts of host transfers on this thread (monotone; subtract two readings).
pub fn transfers() -> Transfers {
    Transfers {
        to_device: TO_DEVICE.with(Cell::get),
        to_host: TO_HOST.with(Cell::get),
    }
}

fn count(c: &'static std::thread::LocalKey<Cell<u64>>) {
    c.with(|c| c.set(c.get() + 1));
}

/// A buffer of the test backend: opaque (no `Deref` to a slice).
#[derive(Debug)]
pub struct TestBuf(Buf);

/// The test-only backend, see the [module docs](self).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TestBackend;

fn bufs<'a>(xs: &[&'a TestBuf]) -> Vec<&'a [f32]> {
    xs.iter().map(|x| &x.0[..]).collect()
}

fn bufs_mut<'a>(xs: &'a mut [&mut TestBuf]) -> Vec<&'a mut [f32]> {
    xs.iter_mut().map(|x| &mut x.0[..]).collect()
}

impl Backend for TestBackend {
    type Buffer = TestBuf;
    type Owned = TestBuf;

    fn device(&self) -> Device {
        Device::Test
    }
    fn zeros(&self, len: usize) -> Result<TestBuf> {
        Ok(TestBuf(Cpu.zeros(len)?))
    }
    fn alloc(&self, len: usize) -> Result<TestBuf> {
        Ok(TestBuf(Cpu.alloc(len)?))
    }
    fn from_slice(&self, data: &[f32]) -> Result<TestBuf> {
        count(&TO_DEVICE);
        Ok(TestBuf(Cpu.from_slice(data)?))
    }
    fn from_vec(&self, data: Vec<f32>) -> Result<TestBuf> {
        count(&TO_DEVICE);
        Ok(TestBuf(Cpu.from_vec(data)?))
    }
    fn to_vec(&self, buf: &TestBuf) -> Result<Vec<f32>> {
        count(&TO_HOST);
        Cpu.to_vec(&buf.0)
    }
    fn len(&self, buf: &TestBuf) -> usize {
        buf.0.len()
    }
    fn copy(&self, src: &TestBuf, dst: &mut TestBuf) -> Result<()> {
        Cpu.copy(&src.0, &mut dst.0)
    }
    fn fill(&self, value: f32, dst: &mut TestBuf) -> Result<()> {
        Cpu.fill(value, &mut dst.0)
    }
    unsafe fn copy_strided_unchecked(
        &self,
        p: &StridedCopy,
        src: &TestBuf,
        dst: &mut TestBuf,
    ) -> Result<()> {
        Cpu.copy_strided(p, &src.0, &mut dst.0)
    }
    unsafe fn unary_unchecked(&self, op: UnaryOp, x: &TestBuf, y: &mut TestBuf) -> Result<()> {
        Cpu.unary(op, &x.0, &mut y.0)
    }
    unsafe fn unary_backward_unchecked(
        &self,
        op: UnaryOp,
        x: &TestBuf,
        y: &TestBuf,
        dy: &TestBuf,
        dx: &mut TestBuf,
    ) -> Result<()> {
        Cpu.unary_backward(op, &x.0, &y.0, &dy.0, &mut dx.0)
    }
    unsafe fn binary_unchecked(
        &self,
        op: BinaryOp,
        a: &TestBuf,
        a_shape: &[usize],
        b: &TestBuf,
        b_shape: &[usize],
        out: &mut TestBuf,
    ) -> Result<()> {
        Cpu.binary(op, &a.0, a_shape, &b.0, b_shape, &mut out.0)
    }
    unsafe fn sum_to_shape_unchecked(
        &self,
        x: &TestBuf,
        x_shape: &[usize],
        out_shape: &[usize],
        out: &mut TestBuf,
    ) -> Result<()> {
        Cpu.sum_to_shape(&x.0, x_shape, out_shape, &mut out.0)
    }
    unsafe fn broadcast_to_unchecked(
        &self,
        x: &TestBuf,
        x_shape: &[usize],
        out_shape: &[usize],
        out: &mut TestBuf,
    ) -> Result<()> {
        Cpu.broadcast_to(&x.0, x_shape, out_shape, &mut out.0)
    }
    unsafe fn axpy_unchecked(&self, alpha: f32, x: &TestBuf, y: &mut TestBuf) -> Result<()> {
        Cpu.axpy(alpha, &x.0, &mut y.0)
    }
    unsafe fn weighted_sum_unchecked(
        &self,
        weights: &TestBuf,
        xs: &[&TestBuf],
        out: &mut TestBuf,
    ) -> Result<()> {
        Cpu.weighted_sum(&weights.0, &bufs(xs), &mut out.0)
    }
    unsafe fn weighted_sum_backward_unchecked(
        &self,
        weights: &TestBuf,
        xs: &[&TestBuf],
        dy: &TestBuf,
        dxs: &mut [&mut TestBuf],
        dweights: &mut TestBuf,
    ) -> Result<()> {
        Cpu.weighted_sum_backward(
            &weights.0,
            &bufs(xs),
            &dy.0,
            &mut bufs_mut(dxs),
            &mut dweights.0,
        )
    }
    unsafe fn concat_channels_unchecked(
        &self,
        xs: &[&TestBuf],
        channels: &[usize],
        n: usize,
        hw: usize,
        out: &mut TestBuf,
    ) -> Result<()> {
        Cpu.concat_channels(&bufs(xs), channels, n, hw, &mut out.0)
    }
    unsafe fn split_channels_unchecked(
        &self,
        x: &TestBuf,
        channels: &[usize],
        n: usize,
        hw: usize,
        outs: &mut [&mut TestBuf],
    ) -> Result<()> {
        Cpu.split_channels(&x.0, channels, n, hw, &mut bufs_mut(outs))
    }
    unsafe fn reduce_unchecked(
        &self,
        op: ReduceOp,
        x: &TestBuf,
        shape: &[usize],
        axis: Option<usize>,
        out: &mut TestBuf,
    ) -> Result<()> {
        Cpu.reduce(op, &x.0, shape, axis, &mut out.0)
    }
    unsafe fn reduce_backward_unchecked(
        &self,
        op: ReduceOp,
        x: &TestBuf,
        y: &TestBuf,
        shape: &[usize],
        axis: Option<usize>,
        dy: &TestBuf,
        dx: &mut TestBuf,
    ) -> Result<()> {
        Cpu.reduce_backward(op, &x.0, &y.0, shape, axis, &dy.0, &mut dx.0)
    }
    unsafe fn softmax_unchecked(
        &self,
        op: SoftmaxOp,
        x: &TestBuf,
        rows: usize,
        cols: usize,
        y: &mut TestBuf,
    ) -> Result<()> {
        Cpu.softmax(op, &x.0, rows, cols, &mut y.0)
    }
    unsafe fn softmax_backward_unchecked(
        &self,
        op: SoftmaxOp,
        y: &TestBuf,
        dy: &TestBuf,
        rows: usize,
        cols: usize,
        dx: &mut TestBuf,
    ) -> Result<()> {
        Cpu.softmax_backward(op, &y.0, &dy.0, rows, cols, &mut dx.0)
    }
    unsafe fn cross_entropy_unchecked(
        &self,
        logits: &TestBuf,
        labels: &[usize],
        rows: usize,
        cols: usize,
        loss: &mut TestBuf,
    ) -> Result<()> {
        Cpu.cross_entropy(&logits.0, labels, rows, cols, &mut loss.0)
    }
    unsafe fn cross_entropy_backward_unchecked(
        &self,
        logits: &TestBuf,
        labels: &[usize],
        rows: usize,
        cols: usize,
        dloss: &TestBuf,
        dlogits: &mut TestBuf,
    ) -> Result<()> {
        Cpu.cross_entropy_backward(&logits.0, labels, rows, cols, &dloss.0, &mut dlogits.0)
    }
    unsafe fn matmul_unchecked(
        &self,
        p: &Matmul,
        a: &TestBuf,
        b: &TestBuf,
        c: &mut TestBuf,
    ) -> Result<()> {
        Cpu.matmul(p, &a.0, &b.0, &mut c.0)
    }
    unsafe fn conv2d_unchecked(
        &self,
        p: &Checked<Conv2dParams>,
        x: &TestBuf,
        w: &TestBuf,
        bias: Option<&TestBuf>,
        y: &mut TestBuf,
    ) -> Result<()> {
        Cpu.conv2d(p, &x.0, &w.0, bias.map(|b| &b.0[..]), &mut y.0)
    }
    unsafe fn conv2d_backward_input_unchecked(
        &self,
        p: &Checked<Conv2dParams>,
        w: &TestBuf,
        dy: &TestBuf,
        dx: &mut TestBuf,
    ) -> Result<()> {
        Cpu.conv2d_backward_input(p, &w.0, &dy.0, &mut dx.0)
    }
    unsafe fn conv2d_backward_weight_unchecked(
        &self,
        p: &Checked<Conv2dParams>,
        x: &TestBuf,
        dy: &TestBuf,
        dw: &mut TestBuf,
        dbias: Option<&mut TestBuf>,
    ) -> Result<()> {
        Cpu.conv2d_backward_weight(p, &x.0, &dy.0, &mut dw.0, dbias.map(|b| &mut b.0[..]))
    }
    unsafe fn conv2d_relu_input_unchecked(
        &self,
        p: &Checked<Conv2dParams>,
        x: &TestBuf,
        w: &TestBuf,
        y: &mut TestBuf,
    ) -> Result<()> {
        Cpu.conv2d_relu_input(p, &x.0, &w.0, &mut y.0)
    }
    unsafe fn conv2d_backward_input_relu_mask_unchecked(
        &self,
        p: &Checked<Conv2dParams>,
        w: &TestBuf,
        dy: &TestBuf,
        x: &TestBuf,
        dx: &mut TestBuf,
    ) -> Result<()> {
        Cpu.conv2d_backward_input_relu_mask(p, &w.0, &dy.0, &x.0, &mut dx.0)
    }
    unsafe fn conv2d_backward_weight_relu_input_unchecked(
        &self,
        p: &Checked<Conv2dParams>,
        x: &TestBuf,
        dy: &TestBuf,
        dw: &mut TestBuf,
    ) -> Result<()> {
        Cpu.conv2d_backward_weight_relu_input(p, &x.0, &dy.0, &mut dw.0)
    }
    unsafe fn pool2d_unchecked(
        &self,
        p: &Checked<Pool2dParams>,
        x: &TestBuf,
        y: &mut TestBuf,
    ) -> Result<()> {
        Cpu.pool2d(p, &x.0, &mut y.0)
    }
    unsafe fn pool2d_backward_unchecked(
        &self,
        p: &Checked<Pool2dParams>,
        x: &TestBuf,
        y: Option<&TestBuf>,
        dy: &TestBuf,
        dx: &mut TestBuf,
    ) -> Result<()> {
        Cpu.pool2d_backward(p, &x.0, y.map(|y| &y.0[..]), &dy.0, &mut dx.0)
    }
    unsafe fn global_avg_pool_unchecked(
        &self,
        n: usize,
        c: usize,
        hw: usize,
        x: &TestBuf,
        y: &mut TestBuf,
    ) -> Result<()> {
        Cpu.global_avg_pool(n, c, hw, &x.0, &mut y.0)
    }
    unsafe fn global_avg_pool_backward_unchecked(
        &self,
        n: usize,
        c: usize,
        hw: usize,
        dy: &TestBuf,
        dx: &mut TestBuf,
    ) -> Result<()> {
        Cpu.global_avg_pool_backward(n, c, hw, &dy.0, &mut dx.0)
    }
    unsafe fn batch_norm_unchecked(
        &self,
        p: &Checked<BatchNormParams>,
        x: &TestBuf,
        gamma: Option<&TestBuf>,
        beta: Option<&TestBuf>,
        running_mean: Option<&mut TestBuf>,
        running_var: Option<&mut TestBuf>,
        y: &mut TestBuf,
        save_mean: &mut TestBuf,
        save_invstd: &mut TestBuf,
    ) -> Result<()> {
        Cpu.batch_norm(
            p,
            &x.0,
            gamma.map(|b| &b.0[..]),
            beta.map(|b| &b.0[..]),
            running_mean.map(|b| &mut b.0[..]),
            running_var.map(|b| &mut b.0[..]),
            &mut y.0,
            &mut save_mean.0,
            &mut save_invstd.0,
        )
    }
    unsafe fn batch_norm_backward_unchecked(
        &self,
        p: &Checked<BatchNormParams>,
        x: &TestBuf,
        gamma: Option<&TestBuf>,
        save_mean: &TestBuf,
        save_invstd: &TestBuf,
        dy: &TestBuf,
        dx: &mut TestBuf,
        dgamma: Option<&mut TestBuf>,
        dbeta: Option<&mut TestBuf>,
    ) -> Result<()> {
        Cpu.batch_norm_backward(
            p,
            &x.0,
            gamma.map(|b| &b.0[..]),
            &save_mean.0,
            &save_invstd.0,
            &dy.0,
            &mut dx.0,
            dgamma.map(|b| &mut b.0[..]),
            dbeta.map(|b| &mut b.0[..]),
        )
    }
    unsafe fn select_backward_unchecked(
        &self,
        a: &TestBuf,
        y: &TestBuf,
        dy: &TestBuf,
        da: &mut TestBuf,
        db: &mut TestBuf,
    ) -> Result<()> {
        Cpu.select_backward(&a.0, &y.0, &dy.0, &mut da.0, &mut db.0)
    }
    unsafe fn argmax_rows_unchecked(
        &self,
        x: &TestBuf,
        rows: usize,
        cols: usize,
        out: &mut TestBuf,
    ) -> Result<()> {
        Cpu.argmax_rows(&x.0, rows, cols, &mut out.0)
    }
    unsafe fn gather_rows_unchecked(
        &self,
        p: &Rows,
        table: &TestBuf,
        indices: &[usize],
        out: &mut TestBuf,
    ) -> Result<()> {
        Cpu.gather_rows(p, &table.0, indices, &mut out.0)
    }
    unsafe fn scatter_add_rows_unchecked(
        &self,
        p: &Rows,
        src: &TestBuf,
        indices: &[usize],
        table: &mut TestBuf,
    ) -> Result<()> {
        Cpu.scatter_add_rows(p, &src.0, indices, &mut table.0)
    }
    unsafe fn lstm_cell_unchecked(
        &self,
        p: &LstmCell,
        gates: &TestBuf,
        c_prev: &TestBuf,
        act: &mut TestBuf,
        hc: &mut TestBuf,
    ) -> Result<()> {
        Cpu.lstm_cell(p, &gates.0, &c_prev.0, &mut act.0, &mut hc.0)
    }
    unsafe fn lstm_cell_backward_unchecked(
        &self,
        p: &LstmCell,
        act: &TestBuf,
        c_prev: &TestBuf,
        hc: &TestBuf,
        dhc: &TestBuf,
        dgates: &mut TestBuf,
        dc_prev: &mut TestBuf,
    ) -> Result<()> {
        Cpu.lstm_cell_backward(
            p,
            &act.0,
            &c_prev.0,
            &hc.0,
            &dhc.0,
            &mut dgates.0,
            &mut dc_prev.0,
        )
    }
    unsafe fn lstm_sequence_unchecked(
        &self,
        p: &Lstm,
        xg: &TestBuf,
        w_hh: &TestBuf,
        h0: &TestBuf,
        c0: &TestBuf,
        act: &mut TestBuf,
        hs: &mut TestBuf,
        cs: &mut TestBuf,
    ) -> Result<()> {
        Cpu.lstm_sequence(
            p, &xg.0, &w_hh.0, &h0.0, &c0.0, &mut act.0, &mut hs.0, &mut cs.0,
        )
    }
    unsafe fn lstm_sequence_backward_unchecked(
        &self,
        p: &Lstm,
        w_hh: &TestBuf,
        c0: &TestBuf,
        act: &TestBuf,
        cs: &TestBuf,
        dhs: &TestBuf,
        dxg: &mut TestBuf,
        dh0: &mut TestBuf,
        dc0: &mut TestBuf,
    ) -> Result<()> {
        Cpu.lstm_sequence_backward(
            p, &w_hh.0, &c0.0, &act.0, &cs.0, &dhs.0, &mut dxg.0, &mut dh0.0, &mut dc0.0,
        )
    }
    unsafe fn sgd_step_unchecked(
        &self,
        p: &SgdStep,
        w: &mut TestBuf,
        g: &TestBuf,
        momentum: Option<&mut TestBuf>,
    ) -> Result<()> {
        Cpu.sgd_step(p, &mut w.0, &g.0, momentum.map(|b| &mut b.0[..]))
    }
    unsafe fn adam_step_unchecked(
        &self,
        p: &AdamStep,
        w: &mut TestBuf,
        g: &TestBuf,
        m: &mut TestBuf,
        v: &mut TestBuf,
    ) -> Result<()> {
        Cpu.adam_step(p, &mut w.0, &g.0, &mut m.0, &mut v.0)
    }
    unsafe fn clip_grad_norm_unchecked(
        &self,
        grads: &mut [&mut TestBuf],
        max_norm: f32,
        total_out: &mut TestBuf,
    ) -> Result<()> {
        Cpu.clip_grad_norm(&mut bufs_mut(grads), max_norm, &mut total_out.0)
    }
    unsafe fn fill_random_unchecked(
        &self,
        dist: RandomDist,
        seed: u64,
        out: &mut TestBuf,
    ) -> Result<()> {
        Cpu.fill_random(dist, seed, &mut out.0)
    }
    unsafe fn dropout_mask_unchecked(&self, p: f32, seed: u64, out: &mut TestBuf) -> Result<()> {
        Cpu.dropout_mask(p, seed, &mut out.0)
    }
}
