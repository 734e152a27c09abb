//! Genotype derivation from (softmaxed) architecture weights.
//!
//! * [`derive_darts_cell`]: the DARTS rule (Liu et al. 2019). For intermediate node `2 + k`
//!   (incoming edges from nodes `0..k+2`), every incoming edge is scored by its largest weight
//!   over the ops other than `none`; the two best-scored edges are kept, strongest first, each with
//!   its strongest non-`none` op.
//! * [`derive_nb201_cell`]: the NAS-Bench-201 rule: per edge, the op with the largest weight,
//!   `none` included.
//! * [`derive_rnn_cell`]: the DARTS recurrent rule (the original code's `rnn/model_search.py`
//!   `_parse`): node `i` keeps the predecessor whose best non-`none` weight is largest, with
//!   that activation.
//!
//! Tie-breaking (deterministic, and the same as the original Python code, which uses a stable
//! sort and a strict `>` when scanning ops):
//! * among edges with equal scores, the one from the lower-numbered input node ranks first;
//! * among ops with equal weights, the one listed first in the primitive order wins
//!   ([`nas_space::darts::DARTS_PRIMITIVES`], [`nas_space::nb201::Nb201Op::ALL`] or
//!   [`nas_space::rnn::RNN_PRIMITIVES`]).
//!
//! NaN weights are rejected with an error instead of producing an arbitrary genotype.

use nas_space::darts::{DARTS_PRIMITIVES, DartsCell, DartsGenotype, DartsOp, NUM_NODES};
use nas_space::nb201::{Nb201Cell, Nb201Op};
use nas_space::rnn::{NUM_NODES as RNN_NODES, RNN_PRIMITIVES, RnnActivation, RnnGenotype};

use super::error::{OneShotError, Result};

/// Number of mixed edges of a DARTS cell with 4 intermediate nodes (2 + 3 + 4 + 5).
pub const DARTS_EDGES: usize = 14;

/// The `(input node, intermediate node index k)` of every DARTS edge, in weight-row order:
/// node `2 + k` takes edges from nodes `0..k+2`, rows grouped by node.
pub fn darts_edge_list() -> Vec<(usize, usize)> {
    let mut v = Vec::with_capacity(DARTS_EDGES);
    for k in 0..NUM_NODES {
        for j in 0..k + 2 {
            v.push((j, k));
        }
    }
    v
}

fn check_matrix(what: &str, w: &[Vec<f32>], rows: usize, cols: usize) -> Result<()> {
    if w.len() != rows {
        return Err(OneShotError::Config(format!(
            "{what}: need {rows} edge rows of weights, got {}",
            w.len()
        )));
    }
    for (e, r) in w.iter().enumerate() {
        if r.len() != cols {
            return Err(OneShotError::Config(format!(
                "{what}: edge {e} has {} op weights, need {cols}",
                r.len()
            )));
        }
        if let Some(i) = r.iter().position(|x| x.is_nan()) {
            return Err(OneShotError::Config(format!(
                "{what}: weight of op {i} on edge {e} is NaN"
            )));
        }
    }
    Ok(())
}

/// Index of the largest value among `row[from..]` (first one on ties), as an index into `row`.
fn argmax_from(row: &[f32], from: usize) -> usize {
    let mut best = from;
    for k in from + 1..row.len() {
        if row[k] > row[best] {
            best = k;
        }
    }
    best
}

/// The DARTS rule on one cell's `14 x 8` weights (rows in [`darts_edge_list`] order, columns in
/// [`DARTS_PRIMITIVES`] order, `none` first). See the module docs for tie-breaking.
pub fn derive_darts_cell(weights: &[Vec<f32>]) -> Result<DartsCell> {
    check_matrix(
        "DARTS derivation",
        weights,
        DARTS_EDGES,
        DARTS_PRIMITIVES.len(),
    )?;
    let mut nodes = [[(DartsOp::SkipConnect, 0usize); 2]; NUM_NODES];
    let mut start = 0;
    for (k, node) in nodes.iter_mut().enumerate() {
        let n_in = k + 2;
        let rows = &weights[start..start + n_in];
        // Score of an edge: its best non-`none` weight (none is column 0).
        let score = |j: usize| rows[j][argmax_from(&rows[j], 1)];
        let mut order: Vec<usize> = (0..n_in).collect();
        // Stable sort: ties keep the lower input first.
        order.sort_by(|&a, &b| score(b).total_cmp(&score(a)));
        for (slot, &j) in node.iter_mut().zip(order.iter().take(2)) {
            let op = DartsOp::from_primitive_index(argmax_from(&rows[j], 1))
                .expect("index 1..8 is a DARTS op");
            *slot = (op, j);
        }
        start += n_in;
    }
    Ok(DartsCell::new(nodes)?)
}

/// The DARTS rule on both cells.
pub fn derive_darts_genotype(normal: &[Vec<f32>], reduce: &[Vec<f32>]) -> Result<DartsGenotype> {
    Ok(DartsGenotype {
        normal: derive_darts_cell(normal)?,
        reduce: derive_darts_cell(reduce)?,
    })
}

/// The NAS-Bench-201 rule on `6 x 5` weights (rows in [`nas_space::nb201::EDGES`] order, columns
/// in [`Nb201Op::ALL`] order): per edge the largest weight, `none` included, first op on ties.
pub fn derive_nb201_cell(weights: &[Vec<f32>]) -> Result<Nb201Cell> {
    check_matrix("NAS-Bench-201 derivation", weights, 6, Nb201Op::ALL.len())?;
    let mut ops = [Nb201Op::None; 6];
    for (e, op) in ops.iter_mut().enumerate() {
        *op = Nb201Op::from_index(argmax_from(&weights[e], 0)).expect("index below 5");
    }
    Ok(Nb201Cell::new(ops))
}

/// The DARTS recurrent rule on `36 x 5` weights (rows: node `i = 1..=8`, then predecessor
/// `j < i`, as [`crate::nets::rnn::rnn_edge_offset`]; columns in
/// [`nas_space::rnn::RNN_PRIMITIVES`] order, `none` first): per node, the predecessor whose
/// strongest non-`none` weight is largest (the lower-numbered one on ties) with that
/// activation (the first listed on ties).
pub fn derive_rnn_cell(weights: &[Vec<f32>]) -> Result<RnnGenotype> {
    use crate::nets::rnn::{RNN_EDGES, rnn_edge_offset};
    check_matrix(
        "recurrent-cell derivation",
        weights,
        RNN_EDGES,
        RNN_PRIMITIVES.len(),
    )?;
    let mut nodes = [(RnnActivation::Tanh, 0usize); RNN_NODES];
    for (k, node) in nodes.iter_mut().enumerate() {
        let i = k + 1;
        let rows = &weights[rnn_edge_offset(i)..rnn_edge_offset(i) + i];
        let score = |j: usize| rows[j][argmax_from(&rows[j], 1)];
        let mut best = 0;
        for j in 1..i {
            if score(j) > score(best) {
                best = j;
            }
        }
        let a = RnnActivation::from_index(argmax_from(&rows[best], 1) - 1)
            .expect("columns 1..5 are the activations");
        *node = (a, best);
    }
    Ok(RnnGenotype::new(nodes)?)
}
