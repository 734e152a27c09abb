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
//! [`crate::nb201_cost::network_cost_general`], the one closed form).

use nas_space::nb201::{EDGES, Nb201Cell, Nb201Op};
use nas_tensor::nn::{
    BatchNorm2d, Conv2d, Linear, Module, ReLU, Sequential, TensorKind, join_name,
};
use nas_tensor::{ConvOptions, Result, Tensor, TensorError};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::flops::{CountedConv2d, CountedLinear};
use super::ops::{ResNetBasicBlock, nb201_op};
use crate::nb201_cost::NetworkCost;

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
    training: bool,
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
            training: true,
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
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor, TensorKind)) {
        for (e, l) in self.layers.iter().enumerate() {
            l.visit(&join_name(prefix, &format!("layers.{e}")), f);
        }
    }
    fn set_training(&mut self, training: bool) {
        self.training = training;
        for l in &mut self.layers {
            l.set_training(training);
        }
    }
    fn is_training(&self) -> bool {
        self.training
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
    training: bool,
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
            training: true,
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
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor, TensorKind)) {
        self.stem.visit(&join_name(prefix, "stem"), f);
        for (i, c) in self.cells.iter().enumerate() {
            c.visit(&join_name(prefix, &format!("cells.{i}")), f);
        }
        self.lastact.visit(&join_name(prefix, "lastact"), f);
        self.classifier.visit(&join_name(prefix, "classifier"), f);
    }
    fn set_training(&mut self, training: bool) {
        self.training = training;
        self.stem.set_training(training);
        for c in &mut self.cells {
            c.set_training(training);
        }
        self.lastact.set_training(training);
        self.classifier.set_training(training);
    }
    fn is_training(&self) -> bool {
        self.training
    }
}

/// Parameters and FLOPs (NAS-Bench-201's convention, see [`crate::nb201_cost`]) of
/// [`Nb201Network::new`]`(cell, config, _)` on `h x w` inputs, without building it.
pub fn nb201_cost(cell: &Nb201Cell, config: &Nb201Config, h: usize, w: usize) -> NetworkCost {
    crate::nb201_cost::network_cost_general(
        cell,
        config.in_channels as u64,
        config.channels as u64,
        config.cells_per_stage as u64,
        h as u64,
        w as u64,
        config.classes as u64,
    )
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
                    let table = crate::nb201_cost::network_cost_with(
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
