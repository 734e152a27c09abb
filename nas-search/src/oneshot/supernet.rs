//! The two supernets: the DARTS network of Liu et al. (2019) and the NAS-Bench-201 skeleton,
//! both with mixed edges driven by architecture weights.
//!
//! A [`Supernet`] is a [`Module`] over its *network weights* (parameters and BN buffers, named
//! like PyTorch's `model_search.py`), so [`Module::parameters`] is what the weight optimizer
//! updates. The architecture weights live in [`ArchParams`]; a forward pass takes a [`Mixing`]
//! built from them: softmaxed weights (DARTS) or a hard Gumbel sample (GDAS).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use nas_space::darts::DARTS_PRIMITIVES;
use nas_space::nb201::Nb201Op;
use nas_tensor::nn::{
    BatchNorm2d, Conv2d, Linear, Mode, Module, ReLU, Sequential, TensorKind, join_name,
};
use nas_tensor::{ConvOptions, Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::error::{OneShotError, Result};
use crate::nets::darts::{darts_cell_forward, darts_edge_stride, darts_preprocess};
use crate::nets::ops::{FactorizedReduce, ReLUConvBN, ResNetBasicBlock, build_op};

/// Which cell space the supernet searches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SpaceKind {
    /// The DARTS space: normal and reduction cells, 14 edges over 8 primitives each.
    Darts,
    /// The NAS-Bench-201 space: one cell type, 6 edges over 5 ops.
    Nb201,
    /// The DARTS recurrent-cell space: 36 mixed (node, predecessor) edges over 5 primitives
    /// (`none` and 4 activations), searched on text by [`crate::nets::rnn::RnnSupernet`].
    Rnn,
}

impl SpaceKind {
    /// Parses `darts` or `nb201`.
    pub fn parse(s: &str) -> Result<SpaceKind> {
        match s {
            "darts" => Ok(SpaceKind::Darts),
            "nb201" | "nas-bench-201" => Ok(SpaceKind::Nb201),
            "rnn" => Ok(SpaceKind::Rnn),
            _ => Err(OneShotError::Config(format!(
                "unknown one-shot space {s:?} (expected darts, nb201 or rnn)"
            ))),
        }
    }
    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            SpaceKind::Darts => "darts",
            SpaceKind::Nb201 => "nb201",
            SpaceKind::Rnn => "rnn",
        }
    }
    /// Number of mixed edges per cell.
    pub fn num_edges(self) -> usize {
        match self {
            SpaceKind::Darts => 14,
            SpaceKind::Nb201 => 6,
            SpaceKind::Rnn => crate::nets::rnn::RNN_EDGES,
        }
    }
    /// The candidate op names, in architecture-weight column order (`none` first).
    pub fn op_names(self) -> Vec<&'static str> {
        match self {
            SpaceKind::Darts => DARTS_PRIMITIVES.to_vec(),
            SpaceKind::Nb201 => Nb201Op::ALL.iter().map(|o| o.as_str()).collect(),
            SpaceKind::Rnn => nas_space::rnn::RNN_PRIMITIVES.to_vec(),
        }
    }
    /// Number of candidate ops per edge.
    pub fn num_ops(self) -> usize {
        self.op_names().len()
    }
    /// Does the space have a separate reduction cell (and so two weight matrices)?
    pub fn has_reduce(self) -> bool {
        matches!(self, SpaceKind::Darts)
    }
}

/// Size of a supernet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SupernetConfig {
    /// The space.
    pub space: SpaceKind,
    /// Initial channels `C` (DARTS: 16; NB201: 16).
    pub c: usize,
    /// DARTS: number of cells (8; reductions at `layers/3` and `2*layers/3`).
    /// NB201: cells per stage `N` (5; the network has `3N` search cells and 2 residual blocks).
    pub layers: usize,
    /// Input channels (3 for CIFAR, 1 for Fashion-MNIST).
    pub in_channels: usize,
    /// Number of classes.
    pub classes: usize,
}

impl SupernetConfig {
    fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(OneShotError::Config(m));
        if self.c < 2 || self.in_channels == 0 || self.classes < 2 {
            return bad(format!(
                "supernet needs C >= 2, input channels >= 1 and classes >= 2, got {self:?}"
            ));
        }
        if self.layers == 0 {
            return bad("supernet needs at least one layer".into());
        }
        if self.space == SpaceKind::Rnn {
            return bad("the recurrent space has its own supernet (RnnSupernet)".into());
        }
        if self.space == SpaceKind::Darts && self.layers < 3 {
            return bad(format!(
                "the DARTS supernet needs at least 3 cells (two of them reduction cells), got {}",
                self.layers
            ));
        }
        Ok(())
    }
}

/// How the mixed edges combine their ops in one forward pass.
pub enum Mixing {
    /// Every op, weighted by the rows of `[edges, ops]` matrices (DARTS: softmax of the
    /// architecture weights).
    Soft {
        /// Weights of the normal cells.
        normal: Tensor,
        /// Weights of the reduction cells (DARTS space only).
        reduce: Option<Tensor>,
    },
    /// One op per edge (GDAS): the output is `op_sel(x) * w[sel] + sum_{i != sel} w[i]`, where
    /// `w` is the straight-through hard weight row (value one-hot, gradient of the soft
    /// Gumbel-softmax), so only the sampled op runs while every logit gets a gradient.
    Hard {
        /// Normal cells.
        normal: HardWeights,
        /// Reduction cells (DARTS space only).
        reduce: Option<HardWeights>,
    },
    /// PC-DARTS: softmax op weights as in `Soft`, each edge on its partial channels (see
    /// [`Supernet::new_partial`]), and each node the sum of its edges weighted by `[edges]`
    /// edge weights (edge normalisation: a softmax over each node's incoming edges).
    Partial {
        /// Op weights of the normal cells.
        normal: Tensor,
        /// Op weights of the reduction cells (DARTS space only).
        reduce: Option<Tensor>,
        /// Edge weights of the normal cells, `[edges]`.
        normal_edges: Tensor,
        /// Edge weights of the reduction cells (DARTS space only).
        reduce_edges: Option<Tensor>,
    },
}

/// A hard (sampled) choice per edge with straight-through weights.
pub struct HardWeights {
    /// `[edges, ops]`: `one_hot - stop_grad(probs) + probs`.
    pub weights: Tensor,
    /// The sampled op per edge.
    pub index: Vec<usize>,
}

impl HardWeights {
    /// Constant one-hot weights (`[index.len(), ops]`, no gradient) selecting `index[e]` on
    /// edge `e`: one fixed path through the supernet (GDAS' evaluation network, a SPOS path).
    pub fn one_hot(index: Vec<usize>, ops: usize, device: nas_tensor::Device) -> Result<Self> {
        if let Some(&bad) = index.iter().find(|&&i| i >= ops) {
            return Err(OneShotError::Config(format!(
                "op index {bad} out of range: an edge has {ops} ops"
            )));
        }
        let mut w = vec![0.0f32; index.len() * ops];
        for (r, &best) in index.iter().enumerate() {
            w[r * ops + best] = 1.0;
        }
        Ok(HardWeights {
            weights: Tensor::from_vec_on(w, &[index.len(), ops], device)?,
            index,
        })
    }
}

/// One cell type's weights as seen by an edge.
#[derive(Clone, Copy)]
enum EdgeMix<'a> {
    Soft(&'a [Tensor]),
    Hard(&'a [Tensor], &'a [usize]),
    /// PC-DARTS: op weight rows and the `[edges]` normalised edge weights.
    Partial(&'a [Tensor], &'a Tensor),
}

/// Splits a `[E, K]` matrix into E row tensors of shape `[K]`.
fn rows(w: &Tensor) -> Result<Vec<Tensor>> {
    let (e, k) = match *w.shape() {
        [e, k] => (e, k),
        _ => {
            return Err(OneShotError::Config(format!(
                "edge weights must be [edges, ops], got {:?}",
                w.shape()
            )));
        }
    };
    (0..e)
        .map(|i| Ok(w.narrow(0, i, 1)?.reshape(&[k])?))
        .collect()
}

/// A mixed edge: every candidate op but `none` (which is column 0 and contributes zero).
///
/// NAS-Bench-201's convolutional candidates (`nor_conv_*`) both start with a ReLU of the edge
/// input; the edge computes that ReLU once and feeds it to them with their own leading ReLU
/// removed (same result, one activation tensor instead of two). DARTS' `sep_conv_*` and
/// `dil_conv_*` apply their ReLU inside a fused op that keeps no ReLU output at all (see
/// [`SepConv`](crate::nets::ops::SepConv)).
struct MixedEdge {
    ops: Vec<Box<dyn Module>>,
    /// Per op: can another edge on the same input share its output (see [`SharedOutputs`])?
    shareable: Vec<Shareable>,
    /// Does op `i` take the shared ReLU of the input (its own ReLU removed)?
    pre_relu: Vec<bool>,
    stride: usize,
    c: usize,
    /// PC-DARTS: `1/k` of the channels go through the ops (built at `c / k` channels), the
    /// rest bypass them (1: every channel, plain DARTS).
    k: usize,
}

/// Removes the leading ReLU of a `Sequential` built by `nets::ops`.
fn strip_relu(mut seq: Sequential) -> Sequential {
    seq.layers.remove(0);
    seq
}

impl MixedEdge {
    fn new(
        space: SpaceKind,
        c_full: usize,
        stride: usize,
        k: usize,
        rng: &mut ChaCha8Rng,
    ) -> Result<MixedEdge> {
        let c = c_full / k;
        let mut ops: Vec<Box<dyn Module>> = Vec::new();
        let mut pre_relu = Vec::new();
        let mut shareable = Vec::new();
        for name in space.op_names().into_iter().skip(1) {
            let shared: Option<Sequential> = match name {
                "nor_conv_1x1" => {
                    Some(ReLUConvBN::new(c, c, 1, stride, 0, 1, false, rng)?.into_sequential())
                }
                "nor_conv_3x3" => {
                    Some(ReLUConvBN::new(c, c, 3, stride, 1, 1, false, rng)?.into_sequential())
                }
                _ => None,
            };
            if let Some(seq) = shared {
                ops.push(Box::new(strip_relu(seq)));
                pre_relu.push(true);
                shareable.push(Shareable::No);
                continue;
            }
            pre_relu.push(false);
            if name == "skip_connect" && stride == 2 {
                // a factorized reduction (as `build_op` builds it), whose ReLU and shifted
                // input the edges out of the same state share
                let fr = Arc::new(FactorizedReduce::new(c, c, stride, false, rng)?);
                shareable.push(Shareable::ReductionInputs(Arc::clone(&fr)));
                ops.push(Box::new(SharedReduce(fr)));
                continue;
            }
            if space == SpaceKind::Darts && name.contains("pool") {
                // DARTS: pools are followed by a non-affine BN inside the supernet.
                let bn = BatchNorm2d::new(c, false);
                shareable.push(Shareable::WithStats([
                    bn.running_mean.clone(),
                    bn.running_var.clone(),
                ]));
                ops.push(Box::new(PoolBn {
                    max: name == "max_pool_3x3",
                    stride,
                    bn,
                }));
                continue;
            }
            let op = build_op(name, c, c, stride, false, rng)?;
            // a pool with `c_in == c_out` is the bare pool (no parameters, no state)
            shareable.push(if name.contains("pool") {
                Shareable::Stateless
            } else {
                Shareable::No
            });
            ops.push(op);
        }
        Ok(MixedEdge {
            ops,
            shareable,
            pre_relu,
            stride,
            c: c_full,
            k,
        })
    }

    /// PC-DARTS' edge (Xu et al. 2020): the first `c / k` channels of `x` through the ops
    /// mixed by `row`, the other channels bypassed (max-pooled on a reduction edge; with the
    /// 3x3, stride-2, padding-1 pool of the DARTS ops, so odd sizes match the ops' output,
    /// where the original's 2x2 pool assumes even sizes), then concatenated and shuffled in `k`
    /// groups. `k = 1` is the plain mixed edge.
    fn forward_partial(&self, x: &Tensor, row: &Tensor) -> Result<Tensor> {
        let p = self.c / self.k;
        let xa = if self.k == 1 {
            x.clone()
        } else {
            x.narrow(1, 0, p)?
        };
        let (mut outs, mut ws) = (Vec::new(), Vec::new());
        self.soft_terms(&xa, std::slice::from_ref(row), 0, None, &mut outs, &mut ws)?;
        let mixed = Tensor::weighted_sum(&outs, &ws[0])?;
        if self.k == 1 {
            return Ok(mixed);
        }
        let xb = x.narrow(1, p, self.c - p)?;
        let xb = if self.stride == 2 {
            xb.max_pool2d(3, 2, 1)?
        } else {
            xb
        };
        channel_shuffle(&Tensor::concat(&[mixed, xb], 1)?, self.k)
    }

    fn run_op(&self, i: usize, x: &Tensor, rx: &mut Option<Tensor>) -> Result<Tensor> {
        if self.pre_relu[i] {
            let r = rx.get_or_insert_with(|| x.relu());
            Ok(self.ops[i].forward(r)?)
        } else {
            Ok(self.ops[i].forward(x)?)
        }
    }

    /// Under softmax mixing, the edge's terms: every op's output (`none` left out: it adds
    /// nothing) and the matching weights of row `e`, pushed onto `outs` and `ws`. With
    /// `shared` (the cell's outputs so far and which of its states `x` is), the
    /// parameter-free ops reuse an output another edge computed on the same state.
    fn soft_terms(
        &self,
        x: &Tensor,
        rows: &[Tensor],
        e: usize,
        mut shared: Option<(&mut SharedOutputs, usize)>,
        outs: &mut Vec<Tensor>,
        ws: &mut Vec<Tensor>,
    ) -> Result<()> {
        ws.push(rows[e].narrow(0, 1, self.ops.len())?);
        let mut rx = None;
        for i in 0..self.ops.len() {
            let out = match (shared.as_mut(), &self.shareable[i]) {
                (None, _) | (_, Shareable::No) => self.run_op(i, x, &mut rx)?,
                (Some((cache, state)), Shareable::ReductionInputs(fr)) => {
                    let (rx, shifted) = cache.reduction_inputs(*state, fr, x)?;
                    fr.forward_inputs(&rx, shifted.as_ref())?
                }
                (Some((cache, state)), kind) => {
                    let key = (*state, i, self.stride);
                    cache.output(key, kind, || self.run_op(i, x, &mut rx))?
                }
            };
            outs.push(out);
        }
        Ok(())
    }

    /// Under hard (GDAS) mixing: the selected op's output times its weight, plus the sum of the
    /// other weights (value 0 in the forward pass, so every logit gets a gradient).
    fn forward_hard(
        &self,
        x: &Tensor,
        rows: &[Tensor],
        index: &[usize],
        e: usize,
    ) -> Result<Tensor> {
        let row = &rows[e];
        let sel = index[e];
        let k = row.shape()[0];
        // Sum of the non-selected weights (value 0, gradient of every other logit).
        let mut parts = Vec::with_capacity(2);
        if sel > 0 {
            parts.push(row.narrow(0, 0, sel)?.sum());
        }
        if sel + 1 < k {
            parts.push(row.narrow(0, sel + 1, k - sel - 1)?.sum());
        }
        let rest = match parts.len() {
            2 => parts[0].add(&parts[1])?,
            _ => parts.pop().expect("k >= 2"),
        };
        let rest = rest.reshape(&[1, 1, 1, 1])?;
        if sel == 0 {
            // `none`: zeros of the output shape.
            let s = x.shape();
            let z = Tensor::zeros_on(
                &[
                    s[0],
                    self.c,
                    s[2].div_ceil(self.stride),
                    s[3].div_ceil(self.stride),
                ],
                x.device(),
            )?;
            Ok(z.add(&rest)?)
        } else {
            let y = self.run_op(sel - 1, x, &mut None)?;
            let w = row.narrow(0, sel, 1)?;
            Ok(Tensor::weighted_sum(&[y], &w)?.add(&rest)?)
        }
    }

    fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor, TensorKind)) {
        // Named by primitive index, as `_ops.<i>` in the original (i = 0 is `none`).
        for (i, op) in self.ops.iter().enumerate() {
            op.visit(&join_name(prefix, &format!("_ops.{}", i + 1)), f);
        }
    }

    fn set_training(&self, training: bool) {
        for op in &self.ops {
            op.set_training(training);
        }
    }
}

/// Channel shuffle of `[n, c, h, w]` in `g` groups: channel `i * (c / g) + j` moves to
/// `j * g + i`.
fn channel_shuffle(x: &Tensor, g: usize) -> Result<Tensor> {
    let s = x.shape().to_vec();
    let (n, c, h, w) = (s[0], s[1], s[2], s[3]);
    Ok(x.reshape(&[n, g, c / g, h, w])?
        .permute(&[0, 2, 1, 3, 4])?
        .reshape(&[n, c, h, w])?)
}

/// Whether an op of a mixed edge computes the same output on the same input in every edge.
enum Shareable {
    /// It has parameters (or is the identity, which costs nothing).
    No,
    /// A bare pool: no parameters, no state.
    Stateless,
    /// A pool and a non-affine batch norm (the DARTS space): no parameters, but running
    /// statistics (these handles) that each edge updates; equal statistics give equal outputs
    /// and equal updates.
    WithStats([Tensor; 2]),
    /// A factorized reduction (stride-2 `skip_connect`): it has weights, but its ReLU and
    /// shifted input depend on the input alone.
    ReductionInputs(Arc<FactorizedReduce>),
}

/// A DARTS search edge's pooling candidate: a 3x3 pool (padding 1; average pooling without the
/// padded zeros) and a non-affine batch norm, as `Sequential[pool, bn]` (same tensor names:
/// the batch norm is child `1`), computed by [`Tensor::pool_batch_norm`], whose output is
/// recomputed in backward instead of kept (by the batch norm's rule and by the weighted sum's
/// architecture gradient). Under synchronised batch norm: the pool, then the module's batch
/// norm (which synchronises).
struct PoolBn {
    max: bool,
    stride: usize,
    bn: BatchNorm2d,
}

impl Module for PoolBn {
    fn forward(&self, x: &Tensor) -> nas_tensor::Result<Tensor> {
        let training = self.bn.is_training();
        if training && nas_tensor::sync_bn::current().is_some() {
            let pooled = if self.max {
                x.max_pool2d(3, self.stride, 1)?
            } else {
                x.avg_pool2d(3, self.stride, 1)?
            };
            return self.bn.forward(&pooled);
        }
        x.pool_batch_norm(
            self.max,
            3,
            self.stride,
            1,
            Some(&self.bn.running_mean),
            Some(&self.bn.running_var),
            training,
            self.bn.momentum,
            self.bn.eps,
        )
    }
    fn children(&self, f: &mut dyn FnMut(&str, &dyn Module)) {
        f("1", &self.bn);
    }
}

/// A factorized reduction held by its edge and by the edge's [`Shareable`] entry.
struct SharedReduce(Arc<FactorizedReduce>);

impl Module for SharedReduce {
    fn forward(&self, x: &Tensor) -> nas_tensor::Result<Tensor> {
        self.0.forward(x)
    }
    fn children(&self, f: &mut dyn FnMut(&str, &dyn Module)) {
        self.0.children(f)
    }
}

/// The outputs of parameter-free ops computed so far in one forward pass of a cell.
///
/// Every edge out of the same state computes the same pools of it: a DARTS cell has 14 edges
/// but 5 distinct inputs, so 28 pool outputs (each followed by a non-affine batch norm) are 10
/// distinct tensors. The first edge computes one; the others on the same state (and stride)
/// take it, so the graph keeps (and backward runs) 10 pool-and-BN ops per cell instead of 28.
/// The forward values are those of separate ops exactly: the batch norm of an edge that
/// takes another's output is skipped only when its running statistics equal (bit for bit)
/// those the computing edge had before its update, and they then receive that edge's
/// updated statistics (what running its own batch norm would have written). Likewise the
/// stride-2 `skip_connect` edges (factorized reductions, 4 per state in a reduction cell) share
/// the ReLU and the shifted copy of their input: one of each per state instead of four, each
/// input twice the size of the cell's activations. Gradients are
/// equal up to rounding (the edges' output gradients are summed before one backward
/// instead of after several). Only on the CPU (the check reads the statistics) and
/// without synchronised batch norm (every rank must run the same collectives).
struct SharedOutputs {
    enabled: bool,
    done: Vec<SharedOutput>,
    /// Per state: a factorized reduction's ReLU and shifted input.
    reduction_inputs: Vec<(usize, Tensor, Option<Tensor>)>,
}

struct SharedOutput {
    /// (state index in the cell, op index in the edge, stride).
    key: (usize, usize, usize),
    out: Tensor,
    /// The running statistics of the edge that computed `out`, before its update, and
    /// handles on them (updated).
    stats: Option<([Vec<f32>; 2], [Tensor; 2])>,
}

impl SharedOutputs {
    fn new(wanted: bool, x: &Tensor) -> SharedOutputs {
        SharedOutputs {
            enabled: wanted
                && x.device() == Device::Cpu
                && nas_tensor::sync_bn::current().is_none(),
            done: Vec::new(),
            reduction_inputs: Vec::new(),
        }
    }

    /// The ReLU and shifted input that `fr` reads, for state `state` (`x`).
    fn reduction_inputs(
        &mut self,
        state: usize,
        fr: &FactorizedReduce,
        x: &Tensor,
    ) -> Result<(Tensor, Option<Tensor>)> {
        if let Some((_, rx, sh)) = self.reduction_inputs.iter().find(|r| r.0 == state) {
            return Ok((rx.clone(), sh.clone()));
        }
        let (rx, sh) = fr.inputs(x)?;
        self.reduction_inputs.push((state, rx.clone(), sh.clone()));
        Ok((rx, sh))
    }

    /// The output of the op `key` for an edge whose op is `kind`: one computed earlier in this
    /// pass where that is exact, else `run()` (remembered for the next edges).
    fn output(
        &mut self,
        key: (usize, usize, usize),
        kind: &Shareable,
        run: impl FnOnce() -> Result<Tensor>,
    ) -> Result<Tensor> {
        let own = match kind {
            Shareable::WithStats(s) => Some(s),
            _ => None,
        };
        if let Some(hit) = self.done.iter().find(|d| d.key == key) {
            let reuse = match (own, &hit.stats) {
                (None, None) => true,
                (Some(own), Some((before, updated))) => {
                    let equal = same_bits(&own[0].to_vec()?, &before[0])
                        && same_bits(&own[1].to_vec()?, &before[1]);
                    if equal {
                        own[0].copy_from(&updated[0])?;
                        own[1].copy_from(&updated[1])?;
                    }
                    equal
                }
                _ => false,
            };
            // statistics that differ (or a different kind of op): computed separately
            return if reuse { Ok(hit.out.clone()) } else { run() };
        }
        let stats = match own {
            Some(s) => Some((
                [s[0].to_vec()?, s[1].to_vec()?],
                [s[0].clone(), s[1].clone()],
            )),
            None => None,
        };
        let out = run()?;
        self.done.push(SharedOutput {
            key,
            out: out.clone(),
            stats,
        });
        Ok(out)
    }
}

fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

/// A node of a search cell: the sum of the mixed edges `first..first + inputs.len()` applied
/// to `inputs`. Under softmax mixing it is one weighted sum over every op of every incoming
/// edge, so neither the per-edge sums nor the additions between them are materialised (or
/// kept for backward).
fn node_sum(
    edges: &[MixedEdge],
    first: usize,
    inputs: &[Tensor],
    mix: EdgeMix<'_>,
    shared: &mut SharedOutputs,
) -> Result<Tensor> {
    match mix {
        EdgeMix::Soft(rows) => {
            let (mut outs, mut ws) = (Vec::new(), Vec::new());
            for (j, x) in inputs.iter().enumerate() {
                let sh = shared.enabled.then_some((&mut *shared, j));
                edges[first + j].soft_terms(x, rows, first + j, sh, &mut outs, &mut ws)?;
            }
            let w = if ws.len() == 1 {
                ws.pop().expect("one row")
            } else {
                Tensor::concat(&ws, 0)?
            };
            Ok(Tensor::weighted_sum(&outs, &w)?)
        }
        EdgeMix::Partial(rows, edge_w) => {
            let n = inputs.len();
            let outs = inputs
                .iter()
                .enumerate()
                .map(|(j, x)| edges[first + j].forward_partial(x, &rows[first + j]))
                .collect::<Result<Vec<_>>>()?;
            Ok(Tensor::weighted_sum(&outs, &edge_w.narrow(0, first, n)?)?)
        }
        EdgeMix::Hard(rows, index) => {
            let mut acc: Option<Tensor> = None;
            for (j, x) in inputs.iter().enumerate() {
                let h = edges[first + j].forward_hard(x, rows, index, first + j)?;
                acc = Some(match acc {
                    None => h,
                    Some(a) => a.add(&h)?,
                });
            }
            Ok(acc.expect("every node has inputs"))
        }
    }
}

/// A DARTS search cell: two preprocessed inputs, 4 intermediate nodes, 14 mixed edges, output
/// the concatenation of the intermediate nodes.
struct DartsCellNet {
    reduction: bool,
    pre0: Box<dyn Module>,
    pre1: ReLUConvBN,
    edges: Vec<MixedEdge>,
}

impl DartsCellNet {
    fn new(
        c_pp: usize,
        c_p: usize,
        c: usize,
        reduction: bool,
        reduction_prev: bool,
        k: usize,
        rng: &mut ChaCha8Rng,
    ) -> Result<DartsCellNet> {
        let (pre0, pre1) = darts_preprocess(c_pp, c_p, c, reduction_prev, false, rng)?;
        let mut edges = Vec::with_capacity(14);
        for i in 0..4 {
            for j in 0..i + 2 {
                let stride = darts_edge_stride(reduction, j);
                edges.push(MixedEdge::new(SpaceKind::Darts, c, stride, k, rng)?);
            }
        }
        Ok(DartsCellNet {
            reduction,
            pre0,
            pre1,
            edges,
        })
    }

    /// The cell's output; `share`: may edges on the same state share their parameter-free
    /// ops' outputs ([`SharedOutputs`])?
    fn forward(&self, s0: &Tensor, s1: &Tensor, mix: EdgeMix<'_>, share: bool) -> Result<Tensor> {
        let mut offset = 0;
        let mut shared = SharedOutputs::new(share, s0);
        darts_cell_forward([&self.pre0, &self.pre1], s0, s1, 4, |_, states| {
            let node = node_sum(&self.edges, offset, states, mix, &mut shared)?;
            offset += states.len();
            Ok(node)
        })
    }

    /// The cell's parameters and buffers (what a checkpoint of it reads and updates).
    fn params_and_buffers(&self) -> (Vec<Tensor>, Vec<Tensor>) {
        let (mut params, mut buffers) = (Vec::new(), Vec::new());
        self.visit("", &mut |_, t, kind| match kind {
            TensorKind::Parameter => params.push(t.clone()),
            TensorKind::Buffer => buffers.push(t.clone()),
        });
        (params, buffers)
    }

    fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor, TensorKind)) {
        self.pre0.visit(&join_name(prefix, "preprocess0"), f);
        self.pre1.visit(&join_name(prefix, "preprocess1"), f);
        for (e, edge) in self.edges.iter().enumerate() {
            edge.visit(&join_name(prefix, &format!("_ops.{e}")), f);
        }
    }

    fn set_training(&self, training: bool) {
        self.pre0.set_training(training);
        self.pre1.set_training(training);
        for e in &self.edges {
            e.set_training(training);
        }
    }
}

/// A NAS-Bench-201 search cell: node 0 is the input, node `i` sums its edges from nodes `< i`,
/// node 3 is the output.
struct Nb201CellNet {
    edges: Vec<MixedEdge>,
}

impl Nb201CellNet {
    fn forward(&self, x: &Tensor, mix: EdgeMix<'_>, share: bool) -> Result<Tensor> {
        let mut nodes = vec![x.clone()];
        let mut e = 0;
        let mut shared = SharedOutputs::new(share, x);
        for i in 1..4 {
            let node = node_sum(&self.edges, e, &nodes[..i], mix, &mut shared)?;
            e += i;
            nodes.push(node);
        }
        Ok(nodes.pop().expect("four nodes"))
    }
}

enum Body {
    Darts {
        stem: Sequential,
        /// Shared with the gradient-checkpoint nodes that recompute a cell in backward
        /// ([`nas_tensor::checkpoint`] keeps its segment function until then); modes switch
        /// through `&self`, so no lock is needed.
        cells: Vec<Arc<DartsCellNet>>,
    },
    Nb201 {
        stem: Sequential,
        /// Search cells (`Left`) and residual blocks (`Right`) in order.
        layers: Vec<Nb201Layer>,
        lastact: Sequential,
    },
}

enum Nb201Layer {
    Cell(Nb201CellNet),
    /// Boxed: a block holds two ReLU-conv-BN layers inline, several times a cell's size.
    Block(Box<ResNetBasicBlock>),
}

/// A one-shot supernet over the network weights; see the module docs.
pub struct Supernet {
    config: SupernetConfig,
    /// PC-DARTS' channel fraction `1/k` through the mixed edges (1: every channel).
    partial: usize,
    body: Body,
    classifier: Linear,
    training: Mode,
    /// Do edges on the same state share their parameter-free ops' outputs ([`SharedOutputs`])?
    share_outputs: AtomicBool,
}

impl Supernet {
    /// Builds a supernet with weights drawn from a generator seeded by `seed`.
    pub fn new(config: SupernetConfig, seed: u64) -> Result<Supernet> {
        Supernet::new_partial(config, seed, 1)
    }

    /// [`Supernet::new`] for PC-DARTS: `1/k` of the channels of every mixed edge go through
    /// its ops, the rest bypass them ([`Mixing::Partial`] drives it; `k = 1` gives the same
    /// weights as [`Supernet::new`]). `C` must be a multiple of `k`.
    pub fn new_partial(config: SupernetConfig, seed: u64, k: usize) -> Result<Supernet> {
        config.validate()?;
        if k == 0 || !config.c.is_multiple_of(k) {
            return Err(OneShotError::Config(format!(
                "partial channels: C = {} must be a positive multiple of K = {k}",
                config.c
            )));
        }
        let rng = &mut ChaCha8Rng::seed_from_u64(seed);
        let c = config.c;
        let (body, c_last) = match config.space {
            SpaceKind::Rnn => {
                return Err(OneShotError::Config(
                    "the recurrent space has its own supernet (RnnSupernet)".into(),
                ));
            }
            SpaceKind::Darts => {
                let stem_multiplier = 3;
                let c_stem = stem_multiplier * c;
                let stem = Sequential::new()
                    .push(Conv2d::new(
                        config.in_channels,
                        c_stem,
                        3,
                        ConvOptions::default().padding(1),
                        false,
                        rng,
                    )?)
                    .push(BatchNorm2d::new(c_stem, true));
                let (mut c_pp, mut c_p, mut c_cur) = (c_stem, c_stem, c);
                let mut cells = Vec::with_capacity(config.layers);
                let mut reduction_prev = false;
                let l = config.layers;
                for i in 0..l {
                    let reduction = i == l / 3 || i == 2 * l / 3;
                    if reduction {
                        c_cur *= 2;
                    }
                    cells.push(Arc::new(DartsCellNet::new(
                        c_pp,
                        c_p,
                        c_cur,
                        reduction,
                        reduction_prev,
                        k,
                        rng,
                    )?));
                    reduction_prev = reduction;
                    c_pp = c_p;
                    c_p = 4 * c_cur;
                }
                (Body::Darts { stem, cells }, c_p)
            }
            SpaceKind::Nb201 => {
                let stem = Sequential::new()
                    .push(Conv2d::new(
                        config.in_channels,
                        c,
                        3,
                        ConvOptions::default().padding(1),
                        false,
                        rng,
                    )?)
                    .push(BatchNorm2d::new(c, true));
                let n = config.layers;
                let mut layers = Vec::new();
                let mut c_prev = c;
                for stage in 0..3 {
                    let c_stage = c << stage;
                    if stage > 0 {
                        layers.push(Nb201Layer::Block(Box::new(ResNetBasicBlock::new(
                            c_prev, c_stage, 2, rng,
                        )?)));
                    }
                    for _ in 0..n {
                        let edges = (0..6)
                            .map(|_| MixedEdge::new(SpaceKind::Nb201, c_stage, 1, k, rng))
                            .collect::<Result<Vec<_>>>()?;
                        layers.push(Nb201Layer::Cell(Nb201CellNet { edges }));
                    }
                    c_prev = c_stage;
                }
                let lastact = Sequential::new()
                    .push(BatchNorm2d::new(c_prev, true))
                    .push(ReLU::new());
                (
                    Body::Nb201 {
                        stem,
                        layers,
                        lastact,
                    },
                    c_prev,
                )
            }
        };
        let classifier = Linear::new(c_last, config.classes, true, rng)?;
        Ok(Supernet {
            config,
            partial: k,
            body,
            classifier,
            training: Mode::default(),
            share_outputs: AtomicBool::new(true),
        })
    }

    /// The configuration.
    pub fn config(&self) -> SupernetConfig {
        self.config
    }

    /// Turns off (or back on) the sharing of parameter-free ops' outputs between the edges of a
    /// cell that read the same state ([`SharedOutputs`]; on by default). Sharing changes no
    /// value of the forward pass: off, every edge computes its own pools, as before; for
    /// tests and measurements.
    pub fn set_share_outputs(&self, on: bool) {
        self.share_outputs.store(on, Ordering::Relaxed);
    }

    /// Logits `[n, classes]` of a batch `[n, in_channels, h, w]` under `mix`.
    pub fn forward_mix(&self, x: &Tensor, mix: &Mixing) -> Result<Tensor> {
        self.forward_mix_checkpointed(x, mix, 0)
    }

    /// [`Supernet::forward_mix`] with the first `cells` DARTS cells as gradient checkpoints
    /// ([`nas_tensor::checkpoint`]): the graph keeps each one's inputs and output, not its
    /// intermediates, and backward recomputes the cell. Only softmax mixing on the DARTS
    /// space is checkpointed; otherwise this is `forward_mix`.
    fn forward_mix_checkpointed(&self, x: &Tensor, mix: &Mixing, cells: usize) -> Result<Tensor> {
        self.check_input(x)?;
        let rm = self.prepare(mix)?;
        let (m_normal, m_reduce) = rm.views();
        let share = self.share_outputs.load(Ordering::Relaxed);
        let feat = match &self.body {
            Body::Darts { stem, cells: all } => {
                let s = stem.forward(x)?;
                let (mut s0, mut s1) = (s.clone(), s);
                for (i, cell) in all.iter().enumerate() {
                    let m = if cell.reduction { m_reduce } else { m_normal };
                    let out = match m {
                        EdgeMix::Soft(rows) if i < cells => {
                            let mut inputs = vec![&s0, &s1];
                            inputs.extend(rows);
                            let (params, buffers) = cell.params_and_buffers();
                            let seg = Arc::clone(cell);
                            nas_tensor::checkpoint(&inputs, &params, &buffers, move |ins| {
                                seg.forward(&ins[0], &ins[1], EdgeMix::Soft(&ins[2..]), share)
                                    .map_err(|e| match e {
                                        OneShotError::Tensor(t) => t,
                                        other => nas_tensor::TensorError::InvalidArgument {
                                            op: "supernet cell",
                                            detail: other.to_string(),
                                        },
                                    })
                            })?
                        }
                        _ => cell.forward(&s0, &s1, m, share)?,
                    };
                    s0 = std::mem::replace(&mut s1, out);
                }
                s1.global_avg_pool()?
            }
            Body::Nb201 {
                stem,
                layers,
                lastact,
            } => {
                let mut h = stem.forward(x)?;
                for layer in layers {
                    h = match layer {
                        Nb201Layer::Cell(c) => c.forward(&h, m_normal, share)?,
                        Nb201Layer::Block(b) => b.forward(&h)?,
                    };
                }
                lastact.forward(&h)?.global_avg_pool()?
            }
        };
        Ok(self.classifier.forward(&feat)?)
    }

    fn check_input(&self, x: &Tensor) -> Result<()> {
        if x.ndim() != 4 || x.shape()[1] != self.config.in_channels {
            return Err(OneShotError::Data(format!(
                "supernet input must be [n, {}, h, w], got {:?}",
                self.config.in_channels,
                x.shape()
            )));
        }
        Ok(())
    }

    /// Checks `mix` and splits it into per-edge row tensors.
    fn prepare(&self, mix: &Mixing) -> Result<RowMix> {
        let space = self.config.space;
        let edges = space.num_edges();
        let k = space.num_ops();
        let check = |w: &Tensor, what: &str| -> Result<()> {
            if w.shape() != [edges, k] {
                return Err(OneShotError::Config(format!(
                    "{what} weights must be [{edges}, {k}], got {:?}",
                    w.shape()
                )));
            }
            Ok(())
        };
        let need_reduce = |r: bool| -> Result<()> {
            if r != space.has_reduce() {
                return Err(OneShotError::Config(format!(
                    "the {} space {} reduction-cell weights",
                    space.name(),
                    if space.has_reduce() {
                        "needs"
                    } else {
                        "has no"
                    }
                )));
            }
            Ok(())
        };
        if self.partial > 1 && !matches!(mix, Mixing::Partial { .. }) {
            return Err(OneShotError::Config(format!(
                "this supernet passes 1/{} of the channels through its edges: it needs partial \
                 (PC-DARTS) mixing",
                self.partial
            )));
        }
        let mut edge_w = (None, None);
        if let Mixing::Partial {
            normal_edges,
            reduce_edges,
            ..
        } = mix
        {
            need_reduce(reduce_edges.is_some())?;
            for w in std::iter::once(normal_edges).chain(reduce_edges.as_ref()) {
                if w.shape() != [edges] {
                    return Err(OneShotError::Config(format!(
                        "edge weights must be [{edges}], got {:?}",
                        w.shape()
                    )));
                }
            }
            edge_w = (Some(normal_edges.clone()), reduce_edges.clone());
        }
        // Row tensors per cell type, shared by every cell of that type.
        let (n_rows, r_rows, n_idx, r_idx): (Vec<Tensor>, Vec<Tensor>, Vec<usize>, Vec<usize>) =
            match mix {
                Mixing::Soft { normal, reduce } | Mixing::Partial { normal, reduce, .. } => {
                    check(normal, "normal")?;
                    need_reduce(reduce.is_some())?;
                    let r = match reduce {
                        Some(r) => {
                            check(r, "reduce")?;
                            rows(r)?
                        }
                        None => Vec::new(),
                    };
                    (rows(normal)?, r, Vec::new(), Vec::new())
                }
                Mixing::Hard { normal, reduce } => {
                    check(&normal.weights, "normal")?;
                    need_reduce(reduce.is_some())?;
                    let check_idx = |h: &HardWeights| -> Result<()> {
                        if h.index.len() != edges || h.index.iter().any(|&i| i >= k) {
                            return Err(OneShotError::Config(format!(
                                "hard choice needs {edges} op indices below {k}, got {:?}",
                                h.index
                            )));
                        }
                        Ok(())
                    };
                    check_idx(normal)?;
                    let (r, ri) = match reduce {
                        Some(r) => {
                            check(&r.weights, "reduce")?;
                            check_idx(r)?;
                            (rows(&r.weights)?, r.index.clone())
                        }
                        None => (Vec::new(), Vec::new()),
                    };
                    (rows(&normal.weights)?, r, normal.index.clone(), ri)
                }
            };
        Ok(RowMix {
            hard: matches!(mix, Mixing::Hard { .. }),
            n_edges: edge_w.0,
            r_edges: edge_w.1,
            n_rows,
            r_rows,
            n_idx,
            r_idx,
        })
    }

    /// Cross-entropy loss of a batch under the mixing `make_mix()` builds, with gradients
    /// accumulated into the weights (and the architecture weights, if `make_mix` records them),
    /// with the first `cells` DARTS cells as gradient checkpoints ([`nas_tensor::checkpoint`]):
    /// the forward pass keeps only their inputs and outputs, and backward recomputes each of
    /// them, last first. Peak memory is the graph of the cells not checkpointed (plus one
    /// checkpointed cell's while it is recomputed) instead of the whole network's, for the
    /// checkpointed cells' forward pass once more. `cells >= layers` checkpoints every cell; 0
    /// is the plain pass. BN running statistics are updated once, as in a plain pass. Only
    /// the DARTS supernet under softmax mixing is checkpointed; otherwise (NB201, hard mixing)
    /// this is the plain path. With `only`, just the gradients of those leaves are computed
    /// (see [`Supernet::loss_backward_plain`]). Returns the loss and the predicted classes.
    pub fn loss_backward_recompute(
        &self,
        x: &Tensor,
        y: &[usize],
        make_mix: &dyn Fn() -> Result<Mixing>,
        cells: usize,
        only: Option<&[Tensor]>,
    ) -> Result<(f32, Vec<usize>)> {
        let logits = self.forward_mix_checkpointed(x, &make_mix()?, cells)?;
        Self::loss_backward(&logits, y, only)
    }

    /// The plain path of [`Supernet::loss_backward_recompute`]: one graph, one backward. With
    /// `only`, just the gradients of those leaves are computed ([`Tensor::backward_for`]): the
    /// first-order architecture step needs the architecture weights' gradient alone, which
    /// skips every weight gradient and the whole backward of the ops before the first mixed
    /// edge.
    pub fn loss_backward_plain(
        &self,
        x: &Tensor,
        y: &[usize],
        mix: &Mixing,
        only: Option<&[Tensor]>,
    ) -> Result<(f32, Vec<usize>)> {
        let logits = self.forward_mix(x, mix)?;
        Self::loss_backward(&logits, y, only)
    }

    /// Loss, predictions and backward (of `only`, or of every leaf) from `logits`.
    fn loss_backward(
        logits: &Tensor,
        y: &[usize],
        only: Option<&[Tensor]>,
    ) -> Result<(f32, Vec<usize>)> {
        let loss = logits.cross_entropy(y)?;
        let lv = loss.item()?;
        let pred = logits.argmax_rows()?;
        match only {
            Some(leaves) => loss.backward_for(leaves)?,
            None => loss.backward()?,
        }
        Ok((lv, pred))
    }
}

/// Checked per-edge rows of a [`Mixing`].
struct RowMix {
    hard: bool,
    /// PC-DARTS edge weights.
    n_edges: Option<Tensor>,
    r_edges: Option<Tensor>,
    n_rows: Vec<Tensor>,
    r_rows: Vec<Tensor>,
    n_idx: Vec<usize>,
    r_idx: Vec<usize>,
}

impl RowMix {
    fn views(&self) -> (EdgeMix<'_>, EdgeMix<'_>) {
        if let Some(ne) = &self.n_edges {
            let re = self.r_edges.as_ref().unwrap_or(ne);
            return (
                EdgeMix::Partial(&self.n_rows, ne),
                EdgeMix::Partial(&self.r_rows, re),
            );
        }
        if self.hard {
            (
                EdgeMix::Hard(&self.n_rows, &self.n_idx),
                EdgeMix::Hard(&self.r_rows, &self.r_idx),
            )
        } else {
            (EdgeMix::Soft(&self.n_rows), EdgeMix::Soft(&self.r_rows))
        }
    }
}

impl Module for Supernet {
    /// Uniform mixing (every op weight equal): a convenience for shape checks; searches call
    /// [`Supernet::forward_mix`].
    fn forward(&self, x: &Tensor) -> nas_tensor::Result<Tensor> {
        let s = self.config.space;
        let u = Tensor::full_on(
            &[s.num_edges(), s.num_ops()],
            1.0 / s.num_ops() as f32,
            x.device(),
        )?;
        let mix = Mixing::Soft {
            normal: u.clone(),
            reduce: s.has_reduce().then_some(u),
        };
        self.forward_mix(x, &mix)
            .map_err(|e| nas_tensor::TensorError::InvalidArgument {
                op: "Supernet",
                detail: e.to_string(),
            })
    }

    fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor, TensorKind)) {
        match &self.body {
            Body::Darts { stem, cells } => {
                stem.visit(&join_name(prefix, "stem"), f);
                for (i, c) in cells.iter().enumerate() {
                    c.visit(&join_name(prefix, &format!("cells.{i}")), f);
                }
            }
            Body::Nb201 {
                stem,
                layers,
                lastact,
            } => {
                stem.visit(&join_name(prefix, "stem"), f);
                for (i, l) in layers.iter().enumerate() {
                    let p = join_name(prefix, &format!("cells.{i}"));
                    match l {
                        Nb201Layer::Cell(c) => {
                            for (e, edge) in c.edges.iter().enumerate() {
                                edge.visit(&join_name(&p, &format!("edges.{e}")), f);
                            }
                        }
                        Nb201Layer::Block(b) => b.visit(&p, f),
                    }
                }
                lastact.visit(&join_name(prefix, "lastact"), f);
            }
        }
        self.classifier.visit(&join_name(prefix, "classifier"), f);
    }

    fn set_training(&self, training: bool) {
        self.training.set(training);
        match &self.body {
            Body::Darts { stem, cells } => {
                stem.set_training(training);
                for c in cells {
                    c.set_training(training);
                }
            }
            Body::Nb201 {
                stem,
                layers,
                lastact,
            } => {
                stem.set_training(training);
                for l in layers {
                    match l {
                        Nb201Layer::Cell(c) => {
                            for e in &c.edges {
                                e.set_training(training);
                            }
                        }
                        Nb201Layer::Block(b) => b.set_training(training),
                    }
                }
                lastact.set_training(training);
            }
        }
        self.classifier.set_training(training);
    }

    fn is_training(&self) -> bool {
        self.training.get()
    }
}
