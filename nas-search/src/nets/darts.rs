//! The DARTS evaluation network (Liu et al., ICLR 2019; `NetworkCIFAR` of the original code)
//! built from a genotype.
//!
//! * stem: 3x3 conv `in -> 3C` (no bias), BN;
//! * `layers` cells; the cells at depth `layers / 3` and `2 * layers / 3` are reduction cells
//!   (channels doubled, the ops on the two cell inputs get stride 2);
//! * each cell preprocesses its inputs `s0` (two cells back) and `s1` (previous cell) to `C`
//!   channels with ReLU-conv1x1-BN, or with a [`FactorizedReduce`] for `s0` when the previous
//!   cell was a reduction; node `k` sums its two ops; the output concatenates nodes 2..=5
//!   (`4C` channels);
//! * drop-path (per-example, on every op but the identity) in training mode with probability
//!   [`DartsNetwork::set_drop_path_prob`];
//! * an optional auxiliary head after the second reduction cell (ReLU, 5x5 average pool stride
//!   3, conv1x1 to 128, BN, ReLU, conv2x2 to 768, BN, ReLU, linear), which needs 8x8 feature maps
//!   there (32x32 inputs), as in the original;
//! * global average pooling, linear classifier.
//!
//! [`darts_cost`] gives parameters (without the auxiliary head, as DARTS reports them) and
//! FLOPs without building the network.

use std::sync::Mutex;

use nas_space::darts::{DartsCell, DartsGenotype, DartsOp};
use nas_tensor::nn::{AvgPool2d, BatchNorm2d, Conv2d, Linear, Mode, Module, ReLU, Sequential};
use nas_tensor::{ConvOptions, Result, Tensor, TensorError};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::NetworkCost;
use super::NetworkFamily;
use super::flops::{CountedConv2d, CountedLinear};
use super::ops::{FactorizedReduce, ReLUConvBN, darts_op, op_flops, op_params};

/// Shape of a DARTS evaluation network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DartsConfig {
    /// Initial channels `C` (36 in the paper's CIFAR-10 network).
    pub channels: usize,
    /// Number of cells (20 in the paper).
    pub layers: usize,
    /// Input image channels.
    pub in_channels: usize,
    /// Output classes.
    pub classes: usize,
    /// Build the auxiliary head.
    pub auxiliary: bool,
}

impl Default for DartsConfig {
    /// The paper's CIFAR-10 network: C = 36, 20 cells, auxiliary head.
    fn default() -> Self {
        DartsConfig {
            channels: 36,
            layers: 20,
            in_channels: 3,
            classes: 10,
            auxiliary: true,
        }
    }
}

const STEM_MULTIPLIER: usize = 3;

impl DartsConfig {
    fn validate(&self) -> Result<()> {
        if self.channels == 0 || self.layers < 3 || self.in_channels == 0 || self.classes == 0 {
            return Err(TensorError::InvalidArgument {
                op: "DartsNetwork",
                detail: format!(
                    "need positive channels/in_channels/classes and at least 3 layers, got {self:?}"
                ),
            });
        }
        Ok(())
    }

    /// Is cell `i` a reduction cell?
    pub fn is_reduction(&self, i: usize) -> bool {
        i == self.layers / 3 || i == 2 * self.layers / 3
    }
}

struct Edge {
    op: Box<dyn Module>,
    input: usize,
    identity: bool,
}

/// One cell of the evaluation network.
pub struct DartsCellModule {
    /// Whether this is a reduction cell.
    pub reduction: bool,
    /// Preprocessing of `s0`: ReLUConvBN 1x1, or FactorizedReduce after a reduction cell.
    pub preprocess0: Box<dyn Module>,
    /// Preprocessing of `s1`: ReLUConvBN 1x1.
    pub preprocess1: ReLUConvBN,
    edges: Vec<Edge>,
    training: Mode,
}

impl DartsCellModule {
    /// A cell with `c` channels per node from inputs of `c_pp` and `c_p` channels.
    pub fn new(
        cell: &DartsCell,
        c_pp: usize,
        c_p: usize,
        c: usize,
        reduction: bool,
        reduction_prev: bool,
        rng: &mut ChaCha8Rng,
    ) -> Result<Self> {
        let (preprocess0, preprocess1) = darts_preprocess(c_pp, c_p, c, reduction_prev, true, rng)?;
        let mut edges = Vec::with_capacity(8);
        for node in &cell.nodes {
            for &(op, input) in node {
                let stride = darts_edge_stride(reduction, input);
                edges.push(Edge {
                    op: darts_op(Some(op), c, stride, true, rng)?,
                    input,
                    identity: op == DartsOp::SkipConnect && stride == 1,
                });
            }
        }
        Ok(DartsCellModule {
            reduction,
            preprocess0,
            preprocess1,
            edges,
            training: Mode::default(),
        })
    }

    fn forward2(
        &self,
        s0: &Tensor,
        s1: &Tensor,
        drop_prob: f32,
        rng: &Mutex<ChaCha8Rng>,
    ) -> Result<Tensor> {
        let pre: [&dyn Module; 2] = [&self.preprocess0, &self.preprocess1];
        darts_cell_forward(pre, s0, s1, self.edges.len() / 2, |k, states| {
            let mut sum: Option<Tensor> = None;
            for e in &self.edges[2 * k..2 * k + 2] {
                let mut h = e.op.forward(&states[e.input])?;
                if self.training.get() && drop_prob > 0.0 && !e.identity {
                    h = drop_path(&h, drop_prob, rng)?;
                }
                sum = Some(match sum {
                    None => h,
                    Some(a) => a.add(&h)?,
                });
            }
            Ok(sum.expect("two edges per node"))
        })
    }
}

/// The preprocessing of a DARTS cell's two inputs to `c` channels (the evaluation network and
/// the supernet alike): `s0` (`c_pp` channels) by a factorized reduction when the previous
/// cell was a reduction cell, else by a 1x1 ReLU-conv-BN; `s1` (`c_p` channels) by a 1x1
/// ReLU-conv-BN. Batch norms are affine in the evaluation network, not in the supernet.
pub fn darts_preprocess(
    c_pp: usize,
    c_p: usize,
    c: usize,
    reduction_prev: bool,
    affine: bool,
    rng: &mut ChaCha8Rng,
) -> Result<(Box<dyn Module>, ReLUConvBN)> {
    let pre0: Box<dyn Module> = if reduction_prev {
        Box::new(FactorizedReduce::new(c_pp, c, 2, affine, rng)?)
    } else {
        Box::new(ReLUConvBN::new(c_pp, c, 1, 1, 0, 1, affine, rng)?)
    };
    Ok((pre0, ReLUConvBN::new(c_p, c, 1, 1, 0, 1, affine, rng)?))
}

/// The stride of a DARTS edge out of state `input` (0 and 1 are the cell's inputs): 2 in a
/// reduction cell, from its inputs; 1 otherwise.
pub fn darts_edge_stride(reduction: bool, input: usize) -> usize {
    if reduction && input < 2 { 2 } else { 1 }
}

/// The forward skeleton of a DARTS cell (the evaluation network and the supernet alike): the
/// two inputs preprocessed by `pre`, then `nodes` intermediate nodes, node `k` computed by
/// `node(k, states)` from the states before it; the output is the intermediate nodes
/// concatenated along the channels.
pub fn darts_cell_forward<E: From<TensorError>>(
    pre: [&dyn Module; 2],
    s0: &Tensor,
    s1: &Tensor,
    nodes: usize,
    mut node: impl FnMut(usize, &[Tensor]) -> std::result::Result<Tensor, E>,
) -> std::result::Result<Tensor, E> {
    let mut states = vec![pre[0].forward(s0)?, pre[1].forward(s1)?];
    for k in 0..nodes {
        let h = node(k, &states)?;
        states.push(h);
    }
    Ok(Tensor::concat(&states[2..], 1)?)
}

/// Drop-path: zeroes whole examples with probability `p`, scales the rest by `1 / (1 - p)`.
pub fn drop_path(x: &Tensor, p: f32, rng: &Mutex<ChaCha8Rng>) -> Result<Tensor> {
    let n = x.shape()[0];
    let keep = 1.0 - p;
    let mut rng = rng.lock().unwrap_or_else(|e| e.into_inner());
    let mask: Vec<f32> = (0..n)
        .map(|_| {
            if rng.random::<f32>() < keep {
                1.0 / keep
            } else {
                0.0
            }
        })
        .collect();
    let mut shape = vec![n];
    shape.extend(std::iter::repeat_n(1, x.ndim() - 1));
    x.mul(&Tensor::from_vec(mask, &shape)?.to_device(x.device())?)
}

impl Module for DartsCellModule {
    /// A cell alone maps `s1` with `s0 = s1` (used for parameter visits and tests).
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let rng = Mutex::new(ChaCha8Rng::seed_from_u64(0));
        self.forward2(x, x, 0.0, &rng)
    }
    fn children(&self, f: &mut dyn FnMut(&str, &dyn Module)) {
        f("preprocess0", &self.preprocess0);
        f("preprocess1", &self.preprocess1);
        for (i, e) in self.edges.iter().enumerate() {
            f(&format!("_ops.{i}"), &e.op);
        }
    }
    fn own_mode(&self) -> Option<&Mode> {
        Some(&self.training)
    }
}

/// The DARTS evaluation network of a genotype.
pub struct DartsNetwork {
    /// Its shape.
    pub config: DartsConfig,
    /// The genotype.
    pub genotype: DartsGenotype,
    /// `Sequential(conv 3x3, BN)`.
    pub stem: Sequential,
    /// The cells.
    pub cells: Vec<DartsCellModule>,
    /// The auxiliary head: `(features, classifier)`.
    pub auxiliary_head: Option<(Sequential, CountedLinear)>,
    /// The linear classifier.
    pub classifier: CountedLinear,
    drop_path_prob: f32,
    rng: Mutex<ChaCha8Rng>,
    training: Mode,
}

impl DartsNetwork {
    /// Builds the network; weights and drop-path masks come from generators seeded by `seed`.
    pub fn new(genotype: &DartsGenotype, config: DartsConfig, seed: u64) -> Result<Self> {
        config.validate()?;
        genotype
            .validate()
            .map_err(|e| TensorError::InvalidArgument {
                op: "DartsNetwork",
                detail: e.to_string(),
            })?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let c = config.channels;
        let c_stem = STEM_MULTIPLIER * c;
        let stem = Sequential::new()
            .push(CountedConv2d(Conv2d::new(
                config.in_channels,
                c_stem,
                3,
                ConvOptions::default().padding(1),
                false,
                &mut rng,
            )?))
            .push(BatchNorm2d::new(c_stem, true));
        let (mut c_pp, mut c_p, mut c_curr) = (c_stem, c_stem, c);
        let mut reduction_prev = false;
        let mut cells = Vec::with_capacity(config.layers);
        let mut c_aux = 0;
        for i in 0..config.layers {
            let reduction = config.is_reduction(i);
            if reduction {
                c_curr *= 2;
            }
            let cell = if reduction {
                &genotype.reduce
            } else {
                &genotype.normal
            };
            cells.push(DartsCellModule::new(
                cell,
                c_pp,
                c_p,
                c_curr,
                reduction,
                reduction_prev,
                &mut rng,
            )?);
            reduction_prev = reduction;
            (c_pp, c_p) = (c_p, 4 * c_curr);
            if i == 2 * config.layers / 3 {
                c_aux = c_p;
            }
        }
        let auxiliary_head = if config.auxiliary {
            let o = ConvOptions::default();
            let features = Sequential::new()
                .push(ReLU::new())
                .push(AvgPool2d::new(5, 3, 0))
                .push(CountedConv2d(Conv2d::new(
                    c_aux, 128, 1, o, false, &mut rng,
                )?))
                .push(BatchNorm2d::new(128, true))
                .push(ReLU::new())
                .push(CountedConv2d(Conv2d::new(128, 768, 2, o, false, &mut rng)?))
                .push(BatchNorm2d::new(768, true))
                .push(ReLU::new());
            let cls = CountedLinear(Linear::new(768, config.classes, true, &mut rng)?);
            Some((features, cls))
        } else {
            None
        };
        let classifier = CountedLinear(Linear::new(c_p, config.classes, true, &mut rng)?);
        Ok(DartsNetwork {
            config,
            genotype: *genotype,
            stem,
            cells,
            auxiliary_head,
            classifier,
            drop_path_prob: 0.0,
            rng: Mutex::new(ChaCha8Rng::seed_from_u64(seed ^ 0xD809_A7B5)),
            training: Mode::default(),
        })
    }

    /// Sets the drop-path probability (DARTS raises it linearly to 0.2 over training).
    pub fn set_drop_path_prob(&mut self, p: f32) -> Result<()> {
        if !(0.0..1.0).contains(&p) {
            return Err(TensorError::InvalidArgument {
                op: "DartsNetwork",
                detail: format!("drop-path probability must be in [0, 1), got {p}"),
            });
        }
        self.drop_path_prob = p;
        Ok(())
    }

    /// Logits and, in training mode with an auxiliary head, the auxiliary logits.
    pub fn forward_with_aux(&self, x: &Tensor) -> Result<(Tensor, Option<Tensor>)> {
        match x.shape() {
            [_, c, _, _] if *c == self.config.in_channels => {}
            s => {
                return Err(TensorError::Shape {
                    op: "DartsNetwork",
                    detail: format!(
                        "need input [n, {}, h, w], got {s:?}",
                        self.config.in_channels
                    ),
                });
            }
        }
        let s = self.stem.forward(x)?;
        let (mut s0, mut s1) = (s.clone(), s);
        let mut aux = None;
        for (i, cell) in self.cells.iter().enumerate() {
            let out = cell.forward2(&s0, &s1, self.drop_path_prob, &self.rng)?;
            (s0, s1) = (s1, out);
            if i == 2 * self.config.layers / 3
                && self.training.get()
                && let Some((features, cls)) = &self.auxiliary_head
            {
                let side = s1.shape()[2].min(s1.shape()[3]);
                if side < 8 {
                    return Err(TensorError::Shape {
                        op: "DartsNetwork auxiliary head",
                        detail: format!(
                            "needs at least 8x8 feature maps after the second reduction \
                             (32x32 inputs), got {:?}; build without the auxiliary head",
                            s1.shape()
                        ),
                    });
                }
                aux = Some(cls.forward(&features.forward(&s1)?.flatten(1)?)?);
            }
        }
        let logits = self.classifier.forward(&s1.global_avg_pool()?)?;
        Ok((logits, aux))
    }
}

impl Module for DartsNetwork {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.forward_with_aux(x)?.0)
    }
    fn children(&self, f: &mut dyn FnMut(&str, &dyn Module)) {
        f("stem", &self.stem);
        for (i, c) in self.cells.iter().enumerate() {
            f(&format!("cells.{i}"), c);
        }
        if let Some((features, cls)) = &self.auxiliary_head {
            f("auxiliary_head.features", features);
            f("auxiliary_head.classifier", cls);
        }
        f("classifier", &self.classifier);
    }
    fn own_mode(&self) -> Option<&Mode> {
        Some(&self.training)
    }
}

/// Parameters (without the auxiliary head) and FLOPs (NAS-Bench-201 convention: convolutions
/// and the classifier) of [`DartsNetwork::new`]`(genotype, config, _)` on `h x w` inputs.
pub fn darts_cost(
    genotype: &DartsGenotype,
    config: &DartsConfig,
    h: usize,
    w: usize,
) -> NetworkCost {
    let mut t = NetworkCost {
        params: 0,
        flops: 0,
    };
    let c = config.channels;
    let c_stem = STEM_MULTIPLIER * c;
    t.params += (9 * config.in_channels * c_stem + 2 * c_stem) as u64;
    t.flops += (9 * config.in_channels * c_stem * h * w) as u64;
    // (channels, side) of s0 and s1.
    let (mut s0, mut s1) = ((c_stem, h, w), (c_stem, h, w));
    let mut c_curr = c;
    let mut reduction_prev = false;
    for i in 0..config.layers {
        let reduction = config.is_reduction(i);
        if reduction {
            c_curr *= 2;
        }
        let pre0 = if reduction_prev {
            "skip_connect"
        } else {
            "nor_conv_1x1"
        };
        let stride0 = if reduction_prev { 2 } else { 1 };
        t.params += op_params(pre0, s0.0, c_curr, stride0, true).unwrap_or(0);
        t.flops += op_flops(pre0, s0.0, c_curr, stride0, s0.1, s0.2).unwrap_or(0);
        t.params += op_params("nor_conv_1x1", s1.0, c_curr, 1, true).unwrap_or(0);
        t.flops += op_flops("nor_conv_1x1", s1.0, c_curr, 1, s1.1, s1.2).unwrap_or(0);
        let cell = if reduction {
            &genotype.reduce
        } else {
            &genotype.normal
        };
        for node in &cell.nodes {
            for &(op, input) in node {
                let stride = if reduction && input < 2 { 2 } else { 1 };
                // Node inputs are at s1's side; intermediate nodes at the output side.
                let (hh, ww) = if input < 2 || !reduction {
                    (s1.1, s1.2)
                } else {
                    (s1.1.div_ceil(2), s1.2.div_ceil(2))
                };
                t.params += op_params(op.as_str(), c_curr, c_curr, stride, true).unwrap_or(0);
                t.flops += op_flops(op.as_str(), c_curr, c_curr, stride, hh, ww).unwrap_or(0);
            }
        }
        let side = if reduction {
            (s1.1.div_ceil(2), s1.2.div_ceil(2))
        } else {
            (s1.1, s1.2)
        };
        reduction_prev = reduction;
        (s0, s1) = (s1, (4 * c_curr, side.0, side.1));
    }
    let classes = config.classes as u64;
    t.params += s1.0 as u64 * classes + classes;
    t.flops += s1.0 as u64 * classes + classes;
    t
}

/// DARTS evaluation networks with `channels` (C) and `layers` cells, without auxiliary head
/// (the generic training loop trains on the main logits only) and without drop-path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DartsFamily {
    /// C (36 in the paper).
    pub channels: usize,
    /// Number of cells (20 in the paper).
    pub layers: usize,
}

impl DartsFamily {
    fn config(&self, input: (usize, usize, usize), classes: usize) -> DartsConfig {
        DartsConfig {
            channels: self.channels,
            layers: self.layers,
            in_channels: input.0,
            classes,
            auxiliary: false,
        }
    }
}

impl NetworkFamily<DartsGenotype> for DartsFamily {
    fn name(&self) -> String {
        format!("darts(C={},L={})", self.channels, self.layers)
    }
    fn build(
        &self,
        arch: &DartsGenotype,
        input: (usize, usize, usize),
        classes: usize,
        seed: u64,
    ) -> Result<Box<dyn Module>> {
        Ok(Box::new(DartsNetwork::new(
            arch,
            self.config(input, classes),
            seed,
        )?))
    }
    fn cost(
        &self,
        arch: &DartsGenotype,
        input: (usize, usize, usize),
        classes: usize,
    ) -> NetworkCost {
        darts_cost(arch, &self.config(input, classes), input.1, input.2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nets::flops::count_forward_flops;
    use nas_space::darts::{DARTS_V1, DARTS_V2};

    #[test]
    fn built_network_matches_closed_form_params_and_flops() {
        for g in [DARTS_V1, DARTS_V2] {
            for config in [
                DartsConfig {
                    channels: 8,
                    layers: 5,
                    in_channels: 3,
                    classes: 10,
                    auxiliary: true,
                },
                DartsConfig {
                    channels: 6,
                    layers: 3,
                    in_channels: 1,
                    classes: 4,
                    auxiliary: false,
                },
            ] {
                let mut net = DartsNetwork::new(&g, config, 1).unwrap();
                let side = if config.in_channels == 1 { 28 } else { 32 };
                let cost = darts_cost(&g, &config, side, side);
                let main: usize = net
                    .named_parameters()
                    .iter()
                    .filter(|(n, _)| !n.starts_with("auxiliary"))
                    .map(|(_, t)| t.numel())
                    .sum();
                assert_eq!(main as u64, cost.params, "{config:?}");
                // Evaluation mode: the auxiliary head does not run, so FLOPs are the main net's.
                let counted =
                    count_forward_flops(&mut net, config.in_channels, side, side).unwrap();
                assert_eq!(counted, cost.flops, "{config:?}");
            }
        }
    }

    #[test]
    fn paper_network_has_the_published_size() {
        // DARTS (second order) on CIFAR-10, C = 36, 20 cells: the original training script logs
        // "param size = 3.349342MB" (auxiliary head excluded), the paper rounds to 3.3M.
        let cost = darts_cost(&DARTS_V2, &DartsConfig::default(), 32, 32);
        assert_eq!(cost.params, 3_349_342);
    }

    #[test]
    fn forward_with_aux_and_drop_path() {
        let config = DartsConfig {
            channels: 4,
            layers: 3,
            in_channels: 3,
            classes: 5,
            auxiliary: true,
        };
        let mut net = DartsNetwork::new(&DARTS_V2, config, 2).unwrap();
        net.set_drop_path_prob(0.3).unwrap();
        assert!(net.set_drop_path_prob(1.0).is_err());
        let x = Tensor::randn(&[4, 3, 32, 32], 3);
        let (logits, aux) = net.forward_with_aux(&x).unwrap();
        assert_eq!(logits.shape(), &[4, 5]);
        assert_eq!(aux.unwrap().shape(), &[4, 5]);
        net.set_training(false);
        let (a, aux) = net.forward_with_aux(&x).unwrap();
        assert!(aux.is_none());
        let (b, _) = net.forward_with_aux(&x).unwrap();
        assert_eq!(
            a.to_vec().unwrap(),
            b.to_vec().unwrap(),
            "evaluation has no drop-path randomness"
        );
        // Too small for the auxiliary head: a clear error in training mode.
        net.set_training(true);
        let err = net.forward(&Tensor::randn(&[2, 3, 16, 16], 1)).unwrap_err();
        assert!(err.to_string().contains("auxiliary"), "{err}");
    }

    #[test]
    fn drop_path_zeroes_whole_examples_and_keeps_the_mean() {
        let rng = Mutex::new(ChaCha8Rng::seed_from_u64(1));
        let x = Tensor::ones(&[2000, 1, 2, 2]);
        let y = drop_path(&x, 0.25, &rng).unwrap().to_vec().unwrap();
        let mut kept = 0;
        for ex in y.chunks(4) {
            assert!(ex.iter().all(|v| *v == ex[0]));
            assert!(ex[0] == 0.0 || (ex[0] - 1.0 / 0.75).abs() < 1e-6);
            kept += (ex[0] != 0.0) as usize;
        }
        assert!((1400..1600).contains(&kept), "{kept}");
    }
}
