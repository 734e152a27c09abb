//! The recurrent-model ops: row gather and scatter-add (embeddings) and the LSTM (one cell's
//! gate pointwise step, and the whole multi-step recurrence).
//!
//! Each description ([`Rows`], [`LstmCell`], [`Lstm`]) checks every buffer length and index
//! against itself (`check_*` methods): that is the one place these shape checks live;
//! backends call it before computing.
//!
//! # The LSTM
//! Gate pre-activations are laid out per row as four blocks of `hidden` values, in PyTorch's
//! order `i, f, g, o` (so a `[4 * hidden, in]` weight is PyTorch's `weight_ih_l0`). With
//! `sigma` the logistic sigmoid:
//!
//! ```text
//! i = sigma(a_i)   f = sigma(a_f)   g = tanh(a_g)   o = sigma(a_o)
//! c = f * c_prev + i * g
//! h = o * tanh(c)
//! ```
//!
//! The *activated gates* `(i, f, g, o)` are saved by the forward, in the same layout, for the
//! backward. Given the upstream gradients `dh` and `dc` of `h` and `c` (all elementwise):
//!
//! ```text
//! dc_total = dc + dh * o * (1 - tanh(c)^2)
//! da_i = dc_total * g * i * (1 - i)       da_f = dc_total * c_prev * f * (1 - f)
//! da_g = dc_total * i * (1 - g^2)          da_o = dh * tanh(c) * o * (1 - o)
//! dc_prev = dc_total * f
//! ```
//!
//! [`lstm_cell_forward`] and [`lstm_cell_backward`] are these definitions for one element;
//! every backend must match them.

pub(crate) mod cpu_kernel;
#[cfg(feature = "cuda")]
pub(crate) mod cuda_kernel;

use crate::error::{KernelError, Result, check_len};

use crate::math::{sigmoid, tanh};

/// One element of the LSTM forward: from the four gate pre-activations `a = [a_i, a_f, a_g,
/// a_o]` and `c_prev`, returns the activated gates, the new cell `c` and the output `h`.
#[inline(always)]
pub fn lstm_cell_forward(a: [f32; 4], c_prev: f32) -> ([f32; 4], f32, f32) {
    let (i, f, g, o) = (sigmoid(a[0]), sigmoid(a[1]), tanh(a[2]), sigmoid(a[3]));
    let c = f * c_prev + i * g;
    let h = o * tanh(c);
    ([i, f, g, o], c, h)
}

/// One element of the LSTM backward: from the activated gates `act`, `c_prev`, the cell `c`
/// and the upstream gradients `dh`, `dc`, returns the gradients of the four pre-activations
/// and of `c_prev`.
#[inline(always)]
pub fn lstm_cell_backward(act: [f32; 4], c_prev: f32, c: f32, dh: f32, dc: f32) -> ([f32; 4], f32) {
    let [i, f, g, o] = act;
    let tc = tanh(c);
    let dct = dc + dh * o * (1.0 - tc * tc);
    let da = [
        dct * g * i * (1.0 - i),
        dct * c_prev * f * (1.0 - f),
        dct * i * (1.0 - g * g),
        dh * tc * o * (1.0 - o),
    ];
    (da, dct * f)
}

/// A table of `table_rows` rows of `cols` values, and picked rows (an embedding lookup):
/// [`Backend::gather_rows`](crate::Backend::gather_rows) and
/// [`Backend::scatter_add_rows`](crate::Backend::scatter_add_rows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rows {
    /// Rows of the table (the vocabulary size of an embedding).
    pub table_rows: usize,
    /// Values per row (the embedding width).
    pub cols: usize,
}

impl Rows {
    /// A `table_rows x cols` table.
    pub fn new(table_rows: usize, cols: usize) -> Rows {
        Rows { table_rows, cols }
    }

    /// Checks the table's length, the picked rows' length (`indices.len() * cols`) and every
    /// index (`< table_rows`).
    pub fn check(
        &self,
        op: &'static str,
        indices: &[usize],
        table_len: usize,
        picked_len: usize,
    ) -> Result<()> {
        check_len(op, "table", table_len, self.table_rows * self.cols)?;
        check_len(op, "picked rows", picked_len, indices.len() * self.cols)?;
        if let Some((at, &bad)) = indices
            .iter()
            .enumerate()
            .find(|&(_, &i)| i >= self.table_rows)
        {
            return Err(KernelError::param(
                op,
                format!(
                    "index {bad} at position {at} is out of range for a table of {} rows",
                    self.table_rows
                ),
            ));
        }
        Ok(())
    }
}

/// One LSTM step's pointwise part on `batch` rows of `hidden` units, see the
/// [module docs](self) for the equations: [`Backend::lstm_cell`](crate::Backend::lstm_cell)
/// and [`Backend::lstm_cell_backward`](crate::Backend::lstm_cell_backward).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LstmCell {
    /// Rows (sequences in the batch).
    pub batch: usize,
    /// Hidden units.
    pub hidden: usize,
}

impl LstmCell {
    /// `batch` rows of `hidden` units.
    pub fn new(batch: usize, hidden: usize) -> LstmCell {
        LstmCell { batch, hidden }
    }
    /// Elements of a gate buffer, `[batch, 4 * hidden]`.
    pub fn gates_len(&self) -> usize {
        self.batch * 4 * self.hidden
    }
    /// Elements of one state (`h` or `c`), `[batch, hidden]`.
    pub fn state_len(&self) -> usize {
        self.batch * self.hidden
    }

    /// Checks the buffers of the forward: `gates` and `act` are gate buffers, `c_prev` a
    /// state, `hc` two states.
    pub fn check_forward(&self, gates: usize, c_prev: usize, act: usize, hc: usize) -> Result<()> {
        const OP: &str = "lstm_cell";
        check_len(OP, "gates", gates, self.gates_len())?;
        check_len(OP, "c_prev", c_prev, self.state_len())?;
        check_len(OP, "act", act, self.gates_len())?;
        check_len(OP, "hc", hc, 2 * self.state_len())
    }

    /// Checks the buffers of the backward.
    pub fn check_backward(
        &self,
        act: usize,
        c_prev: usize,
        hc: usize,
        dhc: usize,
        dgates: usize,
        dc_prev: usize,
    ) -> Result<()> {
        const OP: &str = "lstm_cell_backward";
        check_len(OP, "act", act, self.gates_len())?;
        check_len(OP, "c_prev", c_prev, self.state_len())?;
        check_len(OP, "hc", hc, 2 * self.state_len())?;
        check_len(OP, "dhc", dhc, 2 * self.state_len())?;
        check_len(OP, "dgates", dgates, self.gates_len())?;
        check_len(OP, "dc_prev", dc_prev, self.state_len())
    }
}

/// A whole LSTM recurrence of `steps` time steps on `batch` sequences of `hidden` units (the
/// input projection is done before, as one GEMM over all steps): see
/// [`Backend::lstm_sequence`](crate::Backend::lstm_sequence) and
/// [`Backend::lstm_sequence_backward`](crate::Backend::lstm_sequence_backward).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lstm {
    /// Time steps `T`.
    pub steps: usize,
    /// Sequences `n`.
    pub batch: usize,
    /// Hidden units `h`.
    pub hidden: usize,
}

impl Lstm {
    /// `steps` steps of `batch` sequences of `hidden` units.
    pub fn new(steps: usize, batch: usize, hidden: usize) -> Lstm {
        Lstm {
            steps,
            batch,
            hidden,
        }
    }
    /// The one-step description of each step.
    pub fn cell(&self) -> LstmCell {
        LstmCell::new(self.batch, self.hidden)
    }
    /// Elements of a whole-sequence gate buffer, `[T, n, 4h]`.
    pub fn gates_len(&self) -> usize {
        self.steps * self.cell().gates_len()
    }
    /// Elements of a whole-sequence state buffer, `[T, n, h]`.
    pub fn states_len(&self) -> usize {
        self.steps * self.cell().state_len()
    }
    /// Elements of the recurrent weight, `[4h, h]`.
    pub fn w_hh_len(&self) -> usize {
        4 * self.hidden * self.hidden
    }

    /// Checks the buffers of the forward (`h0`, `c0`: one state each).
    #[allow(clippy::too_many_arguments)]
    pub fn check_forward(
        &self,
        xg: usize,
        w_hh: usize,
        h0: usize,
        c0: usize,
        act: usize,
        hs: usize,
        cs: usize,
    ) -> Result<()> {
        const OP: &str = "lstm_sequence";
        if self.steps == 0 {
            return Err(KernelError::param(OP, "an LSTM needs at least one step"));
        }
        let s = self.cell().state_len();
        check_len(OP, "xg", xg, self.gates_len())?;
        check_len(OP, "w_hh", w_hh, self.w_hh_len())?;
        check_len(OP, "h0", h0, s)?;
        check_len(OP, "c0", c0, s)?;
        check_len(OP, "act", act, self.gates_len())?;
        check_len(OP, "hs", hs, self.states_len())?;
        check_len(OP, "cs", cs, self.states_len())
    }

    /// Checks the buffers of the backward.
    #[allow(clippy::too_many_arguments)]
    pub fn check_backward(
        &self,
        w_hh: usize,
        c0: usize,
        act: usize,
        cs: usize,
        dhs: usize,
        dxg: usize,
        dh0: usize,
        dc0: usize,
    ) -> Result<()> {
        const OP: &str = "lstm_sequence_backward";
        if self.steps == 0 {
            return Err(KernelError::param(OP, "an LSTM needs at least one step"));
        }
        let s = self.cell().state_len();
        check_len(OP, "w_hh", w_hh, self.w_hh_len())?;
        check_len(OP, "c0", c0, s)?;
        check_len(OP, "act", act, self.gates_len())?;
        check_len(OP, "cs", cs, self.states_len())?;
        check_len(OP, "dhs", dhs, self.states_len())?;
        check_len(OP, "dxg", dxg, self.gates_len())?;
        check_len(OP, "dh0", dh0, s)?;
        check_len(OP, "dc0", dc0, s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Backend, Cpu};

    fn vals(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                (((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 16) % 200) as f32
                    / 100.0
                    - 1.0
            })
            .collect()
    }

    #[test]
    fn gather_and_scatter_add_rows() {
        let p = Rows::new(3, 2);
        let table = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let mut out = vec![0.0; 8];
        Cpu.gather_rows(&p, &table, &[2, 0, 2, 1], &mut out)
            .unwrap();
        assert_eq!(out, [5.0, 6.0, 1.0, 2.0, 5.0, 6.0, 3.0, 4.0]);
        // Scatter-add accumulates, duplicate indices included.
        let mut t = vec![1.0; 6];
        Cpu.scatter_add_rows(&p, &out, &[2, 0, 2, 1], &mut t)
            .unwrap();
        assert_eq!(t, [2.0, 3.0, 4.0, 5.0, 11.0, 13.0]);
        let e = Cpu
            .gather_rows(&p, &table, &[0, 3], &mut out[..4])
            .unwrap_err();
        assert!(e.to_string().contains("index 3 at position 1"), "{e}");
        assert!(Cpu.gather_rows(&p, &table, &[0], &mut out).is_err());
        assert!(Cpu.scatter_add_rows(&p, &out, &[0], &mut t).is_err());
    }

    #[test]
    fn cell_definitions_match_finite_differences() {
        let a = [0.3, -0.7, 0.4, 1.1];
        let c_prev = -0.6;
        let (dh, dc) = (0.8, -0.3);
        let loss = |a: [f32; 4], cp: f32| {
            let (_, c, h) = lstm_cell_forward(a, cp);
            dh as f64 * h as f64 + dc as f64 * c as f64
        };
        let (act, c, _) = lstm_cell_forward(a, c_prev);
        let (da, dcp) = lstm_cell_backward(act, c_prev, c, dh, dc);
        let eps = 1e-3;
        for k in 0..4 {
            let (mut ap, mut am) = (a, a);
            ap[k] += eps;
            am[k] -= eps;
            let fd = (loss(ap, c_prev) - loss(am, c_prev)) / (2.0 * eps as f64);
            assert!(
                (fd - da[k] as f64).abs() < 1e-3,
                "gate {k}: {fd} vs {}",
                da[k]
            );
        }
        let fd = (loss(a, c_prev + eps) - loss(a, c_prev - eps)) / (2.0 * eps as f64);
        assert!((fd - dcp as f64).abs() < 1e-3);
    }

    /// The sequence kernel equals stepping the cell kernel with explicit GEMMs.
    #[test]
    fn sequence_matches_stepped_cells() {
        let (t, n, h) = (3, 2, 5);
        let p = Lstm::new(t, n, h);
        let xg = vals(p.gates_len(), 1);
        let w = vals(p.w_hh_len(), 2);
        let (h0, c0) = (vals(n * h, 3), vals(n * h, 4));
        let (mut act, mut hs, mut cs) = (
            vec![0.0; p.gates_len()],
            vec![0.0; p.states_len()],
            vec![0.0; p.states_len()],
        );
        Cpu.lstm_sequence(&p, &xg, &w, &h0, &c0, &mut act, &mut hs, &mut cs)
            .unwrap();
        let cell = p.cell();
        let (mut hp, mut cp) = (h0.clone(), c0.clone());
        let g = 4 * h;
        for s in 0..t {
            // gates = xg[s] + h_prev W^T, naively
            let mut gates = xg[s * n * g..(s + 1) * n * g].to_vec();
            for r in 0..n {
                for j in 0..g {
                    gates[r * g + j] += (0..h).map(|q| hp[r * h + q] * w[j * h + q]).sum::<f32>();
                }
            }
            let (mut a1, mut hc) = (vec![0.0; g * n], vec![0.0; 2 * n * h]);
            Cpu.lstm_cell(&cell, &gates, &cp, &mut a1, &mut hc).unwrap();
            for (u, v) in hc[..n * h].iter().zip(&hs[s * n * h..(s + 1) * n * h]) {
                assert!((u - v).abs() < 1e-5);
            }
            for (u, v) in a1.iter().zip(&act[s * n * g..(s + 1) * n * g]) {
                assert!((u - v).abs() < 1e-5);
            }
            hp = hc[..n * h].to_vec();
            cp = hc[n * h..].to_vec();
            assert!(
                cp.iter()
                    .zip(&cs[s * n * h..])
                    .all(|(u, v)| (u - v).abs() < 1e-5)
            );
        }
        // Length checks name the argument.
        let e = Cpu
            .lstm_sequence(&p, &xg[1..], &w, &h0, &c0, &mut act, &mut hs, &mut cs)
            .unwrap_err();
        assert!(e.to_string().contains("`xg`"), "{e}");
    }
}
