//! The NAS-Bench-201 macro network (Dong & Yang, ICLR 2020) built from a cell.
//!
//! stem (3x3 conv `in -> C`, no bias, BN) → N cells at C → ResNet basic block (stride 2) →
//! N cells at 2C → basic block (stride 2) → N cells at 4C → BN, ReLU → global average pool →
//! linear classifier. Every cell has the same six edges (ops built by
//! [`super::ops::nb201_op`], affine BN). Names follow the benchmark's `TinyNetwork`:
//! `stem.0.weight`, `cells.3.layers.5.op.1.weight` (edge 5 of cell 3), `cells.5.conv_a...`
//! (a basic block), `lastact.0.weight`, `classifier.weight`.
//!
//! [`nb201_cost`] gives parameters and FLOPs without building the network (through
//! [`network_cost_general`], the one closed form).

use nas_space::nb201::{EDGES, Nb201Cell, Nb201Op};
use nas_tensor::nn::{BatchNorm2d, Conv2d, Linear, Module, ReLU, Sequential};
use nas_tensor::{ConvOptions, Result, Tensor, TensorError};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::NetworkCost;
use super::NetworkFamily;
use super::flops::{CountedConv2d, CountedLinear};
use super::ops::{ResNetBasicBlock, nb201_op};

/// Shape of a NAS-Bench-201 network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nb201Config {
    /// Channels of the first stage (`C`; 16 in the benchmark).
    pub channels: usize,
    /// Cells per stage (`N`; 5 in the benchmark).
    pub cells_per_stage: usize,
    /// Input image channels (3 for CIFAR, 1 for (Fashion-)MNIST).
    pub in_channels: usize,
    /// Output classes.
    pub classes: usize,
}

impl Default for Nb201Config {
    /// The benchmark's CIFAR-10 network: C = 16, N = 5, 3 input channels, 10 classes.
    fn default() -> Self {
        Nb201Config {
            channels: 16,
            cells_per_stage: 5,
            in_channels: 3,
            classes: 10,
        }
    }
}

impl Nb201Config {
    fn validate(&self) -> Result<()> {
        if self.channels == 0
            || self.cells_per_stage == 0
            || self.in_channels == 0
            || self.classes == 0
        {
            return Err(TensorError::InvalidArgument {
                op: "Nb201Network",
                detail: format!("every size must be positive, got {self:?}"),
            });
        }
        Ok(())
    }
}

/// One NAS-Bench-201 cell: node `j = sum over i < j of op(i -> j)(node i)`, output node 3.
/// Edges whose op is `none` are skipped in the sum (they add zeros); a node with no other
/// input is zero.
pub struct Nb201CellModule {
    /// The cell's ops, in the order of [`EDGES`].
    pub cell: Nb201Cell,
    /// The six edge modules (named `layers.<e>`).
    pub layers: Vec<Box<dyn Module>>,
}

impl Nb201CellModule {
    /// The cell at `c` channels.
    pub fn new(cell: &Nb201Cell, c: usize, rng: &mut ChaCha8Rng) -> Result<Self> {
        let layers = cell
            .ops
            .iter()
            .map(|&op| nb201_op(op, c, rng))
            .collect::<Result<Vec<_>>>()?;
        Ok(Nb201CellModule {
            cell: *cell,
            layers,
        })
    }
}

impl Module for Nb201CellModule {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut nodes: Vec<Option<Tensor>> = vec![Some(x.clone())];
        for target in 1..4 {
            let mut sum: Option<Tensor> = None;
            for (e, &(s, t)) in EDGES.iter().enumerate() {
                if t != target || self.cell.ops[e] == Nb201Op::None {
                    continue;
                }
                // A node whose inputs are all `none` is zero; its ops still run (on zeros), as
                // in the benchmark, since a BN shift makes e.g. conv(0) nonzero.
                let src = match &nodes[s] {
                    Some(t) => t.clone(),
                    None => Tensor::zeros_on(x.shape(), x.device())?,
                };
                let y = self.layers[e].forward(&src)?;
                sum = Some(match sum {
                    None => y,
                    Some(acc) => acc.add(&y)?,
                });
            }
            nodes.push(sum);
        }
        match nodes.pop().flatten() {
            Some(out) => Ok(out),
            None => Tensor::zeros_on(x.shape(), x.device()),
        }
    }
    fn children(&self, f: &mut dyn FnMut(&str, &dyn Module)) {
        for (e, l) in self.layers.iter().enumerate() {
            f(&format!("layers.{e}"), l);
        }
    }
}

/// The NAS-Bench-201 network of one cell.
pub struct Nb201Network {
    /// Its shape.
    pub config: Nb201Config,
    /// The cell.
    pub cell: Nb201Cell,
    /// `Sequential(conv 3x3, BN)`.
    pub stem: Sequential,
    /// Cells and the two reduction blocks, in order (`3N + 2` modules).
    pub cells: Vec<Box<dyn Module>>,
    /// `Sequential(BN, ReLU)` before pooling.
    pub lastact: Sequential,
    /// The linear classifier.
    pub classifier: CountedLinear,
}

impl Nb201Network {
    /// Builds the network of `cell` with weights drawn from a generator seeded by `seed`
    /// (PyTorch's default initialisations; BN scale 1, shift 0).
    pub fn new(cell: &Nb201Cell, config: Nb201Config, seed: u64) -> Result<Self> {
        config.validate()?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let c = config.channels;
        let stem = Sequential::new()
            .push(CountedConv2d(Conv2d::new(
                config.in_channels,
                c,
                3,
                ConvOptions::default().padding(1),
                false,
                &mut rng,
            )?))
            .push(BatchNorm2d::new(c, true));
        let mut cells: Vec<Box<dyn Module>> = Vec::new();
        let mut c_prev = c;
        for stage in 0..3 {
            let c_stage = c << stage;
            if stage > 0 {
                cells.push(Box::new(ResNetBasicBlock::new(
                    c_prev, c_stage, 2, &mut rng,
                )?));
            }
            for _ in 0..config.cells_per_stage {
                cells.push(Box::new(Nb201CellModule::new(cell, c_stage, &mut rng)?));
            }
            c_prev = c_stage;
        }
        let lastact = Sequential::new()
            .push(BatchNorm2d::new(c_prev, true))
            .push(ReLU::new());
        let classifier = CountedLinear(Linear::new(c_prev, config.classes, true, &mut rng)?);
        Ok(Nb201Network {
            config,
            cell: *cell,
            stem,
            cells,
            lastact,
            classifier,
        })
    }
}

impl Module for Nb201Network {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match x.shape() {
            [_, c, _, _] if *c == self.config.in_channels => {}
            s => {
                return Err(TensorError::Shape {
                    op: "Nb201Network",
                    detail: format!(
                        "need input [n, {}, h, w], got {s:?}",
                        self.config.in_channels
                    ),
                });
            }
        }
        let mut h = self.stem.forward(x)?;
        for cell in &self.cells {
            h = cell.forward(&h)?;
        }
        let h = self.lastact.forward(&h)?.global_avg_pool()?;
        self.classifier.forward(&h)
    }
    fn children(&self, f: &mut dyn FnMut(&str, &dyn Module)) {
        f("stem", &self.stem);
        for (i, c) in self.cells.iter().enumerate() {
            f(&format!("cells.{i}"), c);
        }
        f("lastact", &self.lastact);
        f("classifier", &self.classifier);
    }
}

/// Parameters and FLOPs (NAS-Bench-201's convention, see [`network_cost_general`]) of
/// [`Nb201Network::new`]`(cell, config, _)` on `h x w` inputs, without building it.
pub fn nb201_cost(cell: &Nb201Cell, config: &Nb201Config, h: usize, w: usize) -> NetworkCost {
    network_cost_general(
        cell,
        config.in_channels as u64,
        config.channels as u64,
        config.cells_per_stage as u64,
        h as u64,
        w as u64,
        config.classes as u64,
    )
}

// The closed-form cost of the macro network (parameters and FLOPs):
// Parameters and FLOPs of NAS-Bench-201 networks, computed from the cell.
//
// The macro network (Dong & Yang, ICLR 2020), `C = 16`, `N = 5`:
//
// * stem: 3x3 convolution 3 -> C (no bias) + batch norm;
// * three stages of N cells at C, 2C and 4C channels, joined by two ResNet basic blocks with
//   stride 2: ReLU-conv3x3(stride 2)-BN, ReLU-conv3x3-BN, shortcut avg-pool 2x2 + conv1x1
//   (no bias, no BN);
// * cell edges: `nor_conv_kxk` = ReLU, k x k convolution C -> C (no bias), batch norm (affine);
//   `avg_pool_3x3`, `skip_connect` and `none` have no parameters;
// * last: batch norm + ReLU, global average pooling, linear 4C -> classes (with bias);
// * input 32x32 (CIFAR-10/100, 10/100 classes) or 16x16 (ImageNet16-120, 120 classes).
//
// **Parameters** count every learnable weight: convolution kernels, batch-norm scale and shift
// (2 per channel; running statistics are buffers, not parameters), linear weight and bias.
//
// **FLOPs convention** (the one NAS-Bench-201 reports, in MFLOPs = FLOPs / 1e6): multiply-adds
// of one forward pass of one image through the convolutions and the linear layer only —
// a convolution costs `k*k*C_in*C_out*H_out*W_out`, the linear layer `in*out + out` (its bias
// adds are counted); batch norm, ReLU, pooling and additions count 0. Every edge of the cell
// counts, including convolutions whose input is unreachable. The network builder of this
// project must report the same numbers for the same cell. Checked values (CIFAR-10): the cell
// of six 3x3 convolutions has 1,531,546 parameters and 220,119,690 FLOPs (NAS-Bench-201:
// 1.5315 MB, 220.12 MFLOPs); the empty cell 73,306 and 7,783,050.

/// Cost of a k x k convolution `cin -> cout` producing `hw` output pixels, followed by BN
/// (`bn = true`) or not.
fn conv(k: u64, cin: u64, cout: u64, hw: u64, bn: bool) -> NetworkCost {
    NetworkCost {
        params: k * k * cin * cout + if bn { 2 * cout } else { 0 },
        flops: k * k * cin * cout * hw,
    }
}

fn add(a: &mut NetworkCost, b: NetworkCost) {
    a.params += b.params;
    a.flops += b.flops;
}

/// Parameters and FLOPs of the network built from `cell` with `channels` and
/// `cells_per_stage`, for a 3-channel input `hw x hw` and `classes` outputs.
pub fn network_cost_with(
    cell: &Nb201Cell,
    channels: u64,
    cells_per_stage: u64,
    hw: u64,
    classes: u64,
) -> NetworkCost {
    network_cost_general(cell, 3, channels, cells_per_stage, hw, hw, classes)
}

/// Parameters and FLOPs of the NAS-Bench-201 macro network of `cell` with `in_channels` input
/// channels, `channels` (C) and `cells_per_stage` (N), on `h x w` inputs with `classes`
/// outputs. The one closed form every NB201 cost in the workspace comes from
/// (`nets::nb201::nb201_cost` checks it against the built network).
pub fn network_cost_general(
    cell: &Nb201Cell,
    in_channels: u64,
    channels: u64,
    cells_per_stage: u64,
    h: u64,
    w: u64,
    classes: u64,
) -> NetworkCost {
    let mut total = conv(3, in_channels, channels, h * w, true);
    let (mut c, mut h, mut w) = (channels, h, w);
    for stage in 0..3 {
        if stage > 0 {
            let cout = 2 * c;
            let (ho, wo) = (h.div_ceil(2), w.div_ceil(2));
            let px = ho * wo;
            add(&mut total, conv(3, c, cout, px, true));
            add(&mut total, conv(3, cout, cout, px, true));
            add(&mut total, conv(1, c, cout, px, false));
            (c, h, w) = (cout, ho, wo);
        }
        let px = h * w;
        let mut one = NetworkCost {
            params: 0,
            flops: 0,
        };
        for op in cell.ops {
            match op {
                Nb201Op::NorConv1x1 => add(&mut one, conv(1, c, c, px, true)),
                Nb201Op::NorConv3x3 => add(&mut one, conv(3, c, c, px, true)),
                Nb201Op::None | Nb201Op::SkipConnect | Nb201Op::AvgPool3x3 => {}
            }
        }
        total.params += one.params * cells_per_stage;
        total.flops += one.flops * cells_per_stage;
    }
    // Last batch norm, then the classifier.
    total.params += 2 * c + c * classes + classes;
    total.flops += c * classes + classes;
    total
}

/// NAS-Bench-201 macro networks with `channels` (C) and `cells_per_stage` (N).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nb201Family {
    /// C (16 in the benchmark).
    pub channels: usize,
    /// N (5 in the benchmark).
    pub cells_per_stage: usize,
}

impl Nb201Family {
    fn config(&self, input: (usize, usize, usize), classes: usize) -> Nb201Config {
        Nb201Config {
            channels: self.channels,
            cells_per_stage: self.cells_per_stage,
            in_channels: input.0,
            classes,
        }
    }
}

impl NetworkFamily<Nb201Cell> for Nb201Family {
    fn name(&self) -> String {
        format!("nb201(C={},N={})", self.channels, self.cells_per_stage)
    }
    fn build(
        &self,
        arch: &Nb201Cell,
        input: (usize, usize, usize),
        classes: usize,
        seed: u64,
    ) -> Result<Box<dyn Module>> {
        Ok(Box::new(Nb201Network::new(
            arch,
            self.config(input, classes),
            seed,
        )?))
    }
    fn cost(&self, arch: &Nb201Cell, input: (usize, usize, usize), classes: usize) -> NetworkCost {
        nb201_cost(arch, &self.config(input, classes), input.1, input.2)
    }
    fn ops(
        &self,
        arch: &Nb201Cell,
        input: (usize, usize, usize),
        classes: usize,
    ) -> Option<Vec<crate::latency::LatOp>> {
        Some(crate::latency::nb201_ops(
            arch,
            &self.config(input, classes),
            input.1,
            input.2,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nets::flops::count_forward_flops;

    fn cells() -> Vec<Nb201Cell> {
        [
            "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|",
            "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|",
            "|nor_conv_1x1~0|+|skip_connect~0|avg_pool_3x3~1|+|none~0|nor_conv_3x3~1|skip_connect~2|",
            "|avg_pool_3x3~0|+|nor_conv_1x1~0|none~1|+|skip_connect~0|none~1|nor_conv_1x1~2|",
        ]
        .iter()
        .map(|s| Nb201Cell::parse(s).unwrap())
        .collect()
    }

    #[test]
    fn built_network_matches_the_analytic_and_benchmark_counts() {
        for cell in cells() {
            for config in [
                Nb201Config::default(),
                Nb201Config {
                    channels: 8,
                    cells_per_stage: 1,
                    in_channels: 1,
                    classes: 10,
                },
                Nb201Config {
                    channels: 4,
                    cells_per_stage: 2,
                    in_channels: 3,
                    classes: 100,
                },
            ] {
                let mut net = Nb201Network::new(&cell, config, 3).unwrap();
                assert_eq!(net.cells.len(), 3 * config.cells_per_stage + 2);
                let side = if config.in_channels == 1 { 28 } else { 32 };
                let cost = nb201_cost(&cell, &config, side, side);
                assert_eq!(
                    net.num_parameters() as u64,
                    cost.params,
                    "{cell} {config:?}"
                );
                let counted =
                    count_forward_flops(&mut net, config.in_channels, side, side).unwrap();
                assert_eq!(counted, cost.flops, "{cell} {config:?}");
                if config.in_channels == 3 {
                    let table = network_cost_with(
                        &cell,
                        config.channels as u64,
                        config.cells_per_stage as u64,
                        side as u64,
                        config.classes as u64,
                    );
                    assert_eq!(
                        net.num_parameters() as u64,
                        table.params,
                        "{cell} {config:?}"
                    );
                    assert_eq!(counted, table.flops, "{cell} {config:?}");
                }
            }
        }
    }

    #[test]
    fn forward_shapes_names_and_errors() {
        let cell = cells()[2];
        let config = Nb201Config {
            channels: 4,
            cells_per_stage: 1,
            in_channels: 1,
            classes: 7,
        };
        let net = Nb201Network::new(&cell, config, 0).unwrap();
        let y = net.forward(&Tensor::randn(&[3, 1, 28, 28], 1)).unwrap();
        assert_eq!(y.shape(), &[3, 7]);
        let names: Vec<String> = net.state_dict().into_iter().map(|(n, _)| n).collect();
        for n in [
            "stem.0.weight",
            "stem.1.running_mean",
            "cells.0.layers.0.op.1.weight",
            "cells.1.conv_a.op.1.weight",
            "cells.1.downsample.1.weight",
            "lastact.0.weight",
            "classifier.bias",
        ] {
            assert!(names.contains(&n.to_string()), "{n} missing from {names:?}");
        }
        assert!(net.forward(&Tensor::randn(&[3, 3, 28, 28], 1)).is_err());
        assert!(
            Nb201Network::new(
                &cell,
                Nb201Config {
                    channels: 0,
                    ..config
                },
                0
            )
            .is_err()
        );
        // Same seed, same weights; other seed, other weights.
        let a = Nb201Network::new(&cell, config, 5).unwrap().state_dict()[0]
            .1
            .to_vec()
            .unwrap();
        let b = Nb201Network::new(&cell, config, 5).unwrap().state_dict()[0]
            .1
            .to_vec()
            .unwrap();
        let c = Nb201Network::new(&cell, config, 6).unwrap().state_dict()[0]
            .1
            .to_vec()
            .unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn cell_sums_its_edges() {
        // Node 1 = skip(x); node 2 = skip(x) + skip(node1) = 2x; node 3 = skip(node 2) = 2x.
        let cell = Nb201Cell::parse(
            "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|none~0|none~1|skip_connect~2|",
        )
        .unwrap();
        let m = Nb201CellModule::new(&cell, 2, &mut ChaCha8Rng::seed_from_u64(0)).unwrap();
        let x = Tensor::randn(&[1, 2, 3, 3], 4);
        let y = m.forward(&x).unwrap();
        for (a, b) in y.to_vec().unwrap().iter().zip(x.to_vec().unwrap()) {
            assert!((a - 2.0 * b).abs() < 1e-6);
        }
        let empty = cells()[1];
        let m = Nb201CellModule::new(&empty, 2, &mut ChaCha8Rng::seed_from_u64(0)).unwrap();
        assert!(
            m.forward(&x)
                .unwrap()
                .to_vec()
                .unwrap()
                .iter()
                .all(|v| *v == 0.0)
        );
    }
}
