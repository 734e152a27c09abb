//! Recurrent-model ops: embedding lookup, the LSTM cell, the fused multi-step LSTM layer, and
//! the dropout variants recurrent models use (a mask shared along some dimensions: embedding
//! dropout, variational dropout).
//!
//! The LSTM's gate layout and equations are those of `nas_kernels::ops::recurrent` (PyTorch's:
//! four blocks `i, f, g, o` of `hidden` values per row, `W_ih: [4h, in]`, `W_hh: [4h, h]`).

use rand::RngCore;
use rand_chacha::ChaCha8Rng;

use nas_kernels::{BinaryOp, Lstm, LstmCell, Matmul, Rows, StridedCopy};

use crate::error::{Result, arg_err, shape_err};
use crate::ops::elementwise::{bin, broadcast_shape};
use crate::storage::{self, Storage};
use crate::tensor::{Tensor, check_same_device, new_data, numel};

/// What [`Tensor::lstm`] returns.
#[derive(Debug, Clone)]
pub struct LstmOutput {
    /// The outputs `h_t` of every step, `[T, n, h]`.
    pub output: Tensor,
    /// The last output `h_{T-1}`, `[n, h]` (a slice of `output`, so gradients flow through it).
    pub h: Tensor,
    /// The last cell `c_{T-1}`, `[n, h]`, **without** a gradient path: a loss may depend on
    /// the outputs only (what language models and truncated BPTT need).
    pub c: Tensor,
}

/// A contiguous copy of `len` elements from `src[src_offset..]` to `dst[dst_offset..]`.
fn copy_range(
    src: &Storage,
    src_offset: usize,
    dst: &mut Storage,
    dst_offset: usize,
    len: usize,
) -> Result<()> {
    let p = StridedCopy {
        dims: vec![len],
        src_offset,
        src_strides: vec![1],
        dst_offset,
        dst_strides: vec![1],
    };
    storage::copy_strided(&p, src, dst)
}

fn expect_shape(op: &'static str, what: &str, t: &Tensor, want: &[usize]) -> Result<()> {
    if t.shape() != want {
        return shape_err(op, format!("{what} must be {want:?}, got {:?}", t.shape()));
    }
    Ok(())
}

impl Tensor {
    /// Embedding lookup: row `indices[i]` of this `[rows, cols]` table for every `i`, as an
    /// `[indices.len(), cols]` tensor. The gradient scatters back into the table (rows picked
    /// twice add up). Every index must be `< rows`.
    pub fn embedding(&self, indices: &[usize]) -> Result<Tensor> {
        if self.ndim() != 2 {
            return shape_err(
                "embedding",
                format!("the table must be [rows, cols], got {:?}", self.shape()),
            );
        }
        let p = Rows::new(self.shape()[0], self.shape()[1]);
        if let Some(&bad) = indices.iter().find(|&&i| i >= p.table_rows) {
            return arg_err(
                "embedding",
                format!(
                    "index {bad} is out of range for a table of {} rows",
                    p.table_rows
                ),
            );
        }
        let mut out = Storage::alloc(self.device(), indices.len() * p.cols)?;
        storage::gather_rows(&p, &self.read(), indices, &mut out)?;
        let idx = indices.to_vec();
        Ok(Tensor::from_op(
            "embedding",
            vec![indices.len(), p.cols],
            out,
            &[self],
            move |g, _| {
                let mut d = Storage::zeros(g.device(), p.table_rows * p.cols)?;
                storage::scatter_add_rows(&p, g, &idx, &mut d)?;
                Ok(vec![Some(d)])
            },
        ))
    }

    /// The pointwise part of an LSTM step as one op: from gate pre-activations
    /// `gates: [n, 4h]` and the previous cell `c: [n, h]`, the new state `[2, n, h]` (`h`
    /// then `c`).
    fn lstm_gates(gates: &Tensor, c: &Tensor) -> Result<Tensor> {
        check_same_device("lstm_cell", gates, c)?;
        let (n, h) = (c.shape()[0], c.shape()[1]);
        let p = LstmCell::new(n, h);
        let dev = gates.device();
        let mut act = Storage::alloc(dev, p.gates_len())?;
        let hc = {
            let mut hc = Storage::alloc(dev, 2 * p.state_len())?;
            storage::lstm_cell(&p, &gates.read(), &c.read(), &mut act, &mut hc)?;
            new_data(hc)
        };
        let (hc_saved, c_saved) = (hc.clone(), c.clone());
        Ok(Tensor::from_op_data(
            "lstm_cell",
            vec![2, n, h],
            hc,
            &[gates, c],
            move |g, needs| {
                let dev = g.device();
                let mut dgates = Storage::alloc(dev, p.gates_len())?;
                let mut dc = Storage::alloc(dev, p.state_len())?;
                let hc = hc_saved.read().unwrap_or_else(|e| e.into_inner());
                storage::lstm_cell_backward(
                    &p,
                    &act,
                    &c_saved.read(),
                    &hc,
                    g,
                    &mut dgates,
                    &mut dc,
                )?;
                Ok(vec![needs[0].then_some(dgates), needs[1].then_some(dc)])
            },
        ))
    }

    /// One LSTM step (PyTorch's `LSTMCell`): input `x: [n, in]`, state `h, c: [n, h]`,
    /// weights `w_ih: [4h, in]`, `w_hh: [4h, h]`, optional bias `b: [4h]`; returns the new
    /// `(h, c)`, both differentiable. Each weight's four gates are one GEMM; the pointwise
    /// part is one backend call.
    pub fn lstm_cell(
        x: &Tensor,
        h: &Tensor,
        c: &Tensor,
        w_ih: &Tensor,
        w_hh: &Tensor,
        b: Option<&Tensor>,
    ) -> Result<(Tensor, Tensor)> {
        const OP: &str = "lstm_cell";
        if x.ndim() != 2 || h.ndim() != 2 {
            return shape_err(
                OP,
                format!(
                    "x must be [n, in] and h [n, h], got {:?} and {:?}",
                    x.shape(),
                    h.shape()
                ),
            );
        }
        let (n, fin, hid) = (x.shape()[0], x.shape()[1], h.shape()[1]);
        expect_shape(OP, "h", h, &[n, hid])?;
        expect_shape(OP, "c", c, &[n, hid])?;
        expect_shape(OP, "w_ih", w_ih, &[4 * hid, fin])?;
        expect_shape(OP, "w_hh", w_hh, &[4 * hid, hid])?;
        let gates = x.linear(w_ih, b)?.add(&h.linear(w_hh, None)?)?;
        let hc = Tensor::lstm_gates(&gates, c)?;
        let h_new = hc.narrow(0, 0, 1)?.reshape(&[n, hid])?;
        let c_new = hc.narrow(0, 1, 1)?.reshape(&[n, hid])?;
        Ok((h_new, c_new))
    }

    /// A whole LSTM layer over a sequence (PyTorch's one-layer `nn.LSTM` with one bias):
    /// input `x: [T, n, in]`, initial state `h0, c0: [n, h]`, weights `w_ih: [4h, in]`,
    /// `w_hh: [4h, h]`, bias `b: [4h]`. The input projection of all `T` steps is one GEMM;
    /// the recurrence (one GEMM for the four gates per step, then the pointwise step) is one
    /// backend call, and so is its backward through time. Gradients flow to `x`, the
    /// weights, the bias, `h0` and `c0` from the outputs (see [`LstmOutput::c`]).
    pub fn lstm(
        x: &Tensor,
        h0: &Tensor,
        c0: &Tensor,
        w_ih: &Tensor,
        w_hh: &Tensor,
        b: &Tensor,
    ) -> Result<LstmOutput> {
        const OP: &str = "lstm";
        if x.ndim() != 3 || h0.ndim() != 2 {
            return shape_err(
                OP,
                format!(
                    "x must be [T, n, in] and h0 [n, h], got {:?} and {:?}",
                    x.shape(),
                    h0.shape()
                ),
            );
        }
        let (t, n, fin) = (x.shape()[0], x.shape()[1], x.shape()[2]);
        let hid = h0.shape()[1];
        if t == 0 {
            return arg_err(OP, "the sequence is empty (T = 0)");
        }
        expect_shape(OP, "h0", h0, &[n, hid])?;
        expect_shape(OP, "c0", c0, &[n, hid])?;
        expect_shape(OP, "w_ih", w_ih, &[4 * hid, fin])?;
        expect_shape(OP, "w_hh", w_hh, &[4 * hid, hid])?;
        expect_shape(OP, "b", b, &[4 * hid])?;
        for other in [h0, c0, w_hh] {
            check_same_device(OP, x, other)?;
        }
        // The input projection of every step: one GEMM (a recorded op with its own rule).
        let xg = x.reshape(&[t * n, fin])?.linear(w_ih, Some(b))?;
        let p = Lstm::new(t, n, hid);
        let dev = x.device();
        let mut act = Storage::alloc(dev, p.gates_len())?;
        let mut cs = Storage::alloc(dev, p.states_len())?;
        let hs = {
            let mut hs = Storage::alloc(dev, p.states_len())?;
            storage::lstm_sequence(
                &p,
                &xg.read(),
                &w_hh.read(),
                &h0.read(),
                &c0.read(),
                &mut act,
                &mut hs,
                &mut cs,
            )?;
            new_data(hs)
        };
        let sl = n * hid;
        let mut c_last = Storage::alloc(dev, sl)?;
        copy_range(&cs, (t - 1) * sl, &mut c_last, 0, sl)?;
        let (hs_saved, w_saved, h0_saved, c0_saved) =
            (hs.clone(), w_hh.clone(), h0.clone(), c0.clone());
        let output = Tensor::from_op_data(
            "lstm",
            vec![t, n, hid],
            hs,
            &[&xg, w_hh, h0, c0],
            move |g, needs| {
                let dev = g.device();
                let mut dxg = Storage::alloc(dev, p.gates_len())?;
                let mut dh0 = Storage::alloc(dev, sl)?;
                let mut dc0 = Storage::alloc(dev, sl)?;
                let w = w_saved.read();
                storage::lstm_sequence_backward(
                    &p,
                    &w,
                    &c0_saved.read(),
                    &act,
                    &cs,
                    g,
                    &mut dxg,
                    &mut dh0,
                    &mut dc0,
                )?;
                let dw = if needs[1] {
                    // dW_hh = sum_t dgates_t^T h_{t-1}: one GEMM over all steps, with the
                    // previous outputs [h0, h_0 .. h_{T-2}] laid out as [T n, h].
                    let hs = hs_saved.read().unwrap_or_else(|e| e.into_inner());
                    let mut prev = Storage::alloc(dev, t * sl)?;
                    copy_range(&h0_saved.read(), 0, &mut prev, 0, sl)?;
                    if t > 1 {
                        copy_range(&hs, 0, &mut prev, sl, (t - 1) * sl)?;
                    }
                    let mut dw = Storage::alloc(dev, p.w_hh_len())?;
                    storage::matmul(
                        &Matmul::new(4 * hid, hid, t * n).transpose(true, false),
                        &dxg,
                        &prev,
                        &mut dw,
                    )?;
                    Some(dw)
                } else {
                    None
                };
                Ok(vec![
                    needs[0].then_some(dxg),
                    dw,
                    needs[2].then_some(dh0),
                    needs[3].then_some(dc0),
                ])
            },
        );
        let h = output.narrow(0, t - 1, 1)?.reshape(&[n, hid])?;
        let c = Tensor::constant(vec![n, hid], c_last);
        Ok(LstmOutput { output, h, c })
    }

    /// An inverted-dropout mask of `shape` on `device` (no gradient): each element is 0 with
    /// probability `p`, else `1 / (1 - p)`. Sampled once and multiplied into several tensors
    /// (with broadcasting), it is the variational dropout of recurrent models: one mask per
    /// sequence, the same at every time step.
    pub fn dropout_mask(
        shape: &[usize],
        p: f32,
        rng: &mut ChaCha8Rng,
        device: crate::Device,
    ) -> Result<Tensor> {
        if !(0.0..1.0).contains(&p) {
            return arg_err(
                "dropout_mask",
                format!("probability must be in [0, 1), got {p}"),
            );
        }
        let mut mask = Storage::alloc(device, numel(shape))?;
        storage::dropout_mask(p, rng.next_u64(), &mut mask)?;
        Ok(Tensor::constant(shape.to_vec(), mask))
    }

    /// Dropout with one mask of `mask_shape` broadcast over this tensor (identity when not
    /// `training` or `p == 0`). `mask_shape` must broadcast to this tensor's shape:
    /// - variational (locked) dropout of a sequence `[T, n, h]`: `mask_shape = [1, n, h]`,
    ///   the same units dropped at every step;
    /// - embedding dropout of a table `[V, E]`: `mask_shape = [V, 1]`, whole rows (words)
    ///   dropped, then look up in the masked table.
    pub fn dropout_shared(
        &self,
        p: f32,
        training: bool,
        mask_shape: &[usize],
        rng: &mut ChaCha8Rng,
    ) -> Result<Tensor> {
        if !(0.0..1.0).contains(&p) {
            return arg_err(
                "dropout_shared",
                format!("probability must be in [0, 1), got {p}"),
            );
        }
        if broadcast_shape("dropout_shared", self.shape(), mask_shape)? != self.shape() {
            return shape_err(
                "dropout_shared",
                format!(
                    "mask shape {mask_shape:?} does not broadcast to {:?}",
                    self.shape()
                ),
            );
        }
        if !training || p == 0.0 {
            return Ok(self.clone());
        }
        let mask = Tensor::dropout_mask(mask_shape, p, rng, self.device())?;
        let shape = self.shape().to_vec();
        let ms = mask_shape.to_vec();
        let out = bin(
            BinaryOp::Mul,
            &self.read(),
            &shape,
            &mask.read(),
            &ms,
            &shape,
        )?;
        Ok(Tensor::from_op(
            "dropout_shared",
            shape.clone(),
            out,
            &[self],
            move |g, _| {
                Ok(vec![Some(bin(
                    BinaryOp::Mul,
                    g,
                    &shape,
                    &mask.read(),
                    &ms,
                    &shape,
                )?)])
            },
        ))
    }
}
