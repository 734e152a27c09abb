//! The network of a chain architecture ([`nas_space::chain::ChainArch`]), with this project's
//! conventions (the chain space fixes only the layer sequence):
//!
//! * `convKxK(c)`: K x K convolution (padding K/2, stride 1, no bias), BN, ReLU;
//! * `sep_conv_KxK(c)`: depthwise K x K convolution, pointwise 1x1 convolution to `c` (both
//!   without bias), BN, ReLU;
//! * after every second convolution layer, a 2x2 max pool with stride 2 while both sides are
//!   at least 2;
//! * `dense(u)`: linear layer (with bias) to `u` units, ReLU. On an image it first takes the
//!   global average (after convolutions) or flattens the raw input (a chain starting with a
//!   dense layer is a multi-layer perceptron on pixels); a convolution after a dense layer sees
//!   its output as a 1x1 image;
//! * finally global average pooling if the features are still an image, and a linear
//!   classifier.

use nas_space::chain::{ChainArch, ChainOp};
use nas_tensor::nn::{BatchNorm2d, Conv2d, Linear, MaxPool2d, Module, ReLU, Sequential};
use nas_tensor::{ConvOptions, Result, Tensor, TensorError};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::NetworkCost;
use super::NetworkFamily;
use super::flops::{CountedConv2d, CountedLinear};
use serde::{Deserialize, Serialize};

enum Layer {
    /// A conv block, followed by a max pool when `pool`.
    Conv { block: Sequential, pool: bool },
    /// A dense block; `from_image`: how to turn an image into a vector first.
    Dense { block: Sequential, from_image: Flat },
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Flat {
    /// The input is already a vector.
    None,
    /// Global average pooling.
    Gap,
    /// Flatten (raw pixels).
    Flatten,
}

/// The network of one chain.
pub struct ChainNetwork {
    /// The chain.
    pub arch: ChainArch,
    layers: Vec<Layer>,
    final_gap: bool,
    /// The classifier.
    pub classifier: CountedLinear,
    pool: MaxPool2d,
}

fn kernel(op: ChainOp) -> usize {
    match op {
        ChainOp::Dense | ChainOp::Conv1x1 => 1,
        ChainOp::Conv3x3 | ChainOp::SepConv3x3 => 3,
        ChainOp::Conv5x5 | ChainOp::SepConv5x5 => 5,
    }
}

/// Walks the chain's shapes: calls `layer(i, op, c_in, c_out, h, w, flat, pool)` for each
/// layer with its input shape (`h = w = 0` for a vector), and returns the features at the end
/// (channels, h, w).
#[allow(clippy::type_complexity)]
fn walk(
    arch: &ChainArch,
    input: (usize, usize, usize),
    layer: &mut dyn FnMut(usize, ChainOp, usize, usize, usize, usize, Flat, bool),
) -> (usize, usize, usize) {
    let (mut c, mut h, mut w) = input;
    let mut convs = 0;
    let mut seen_conv = false;
    for (i, l) in arch.layers.iter().enumerate() {
        if l.op.is_conv() {
            if h == 0 {
                (h, w) = (1, 1);
            }
            convs += 1;
            seen_conv = true;
            let pool = convs % 2 == 0 && h >= 2 && w >= 2;
            layer(i, l.op, c, l.width, h, w, Flat::None, pool);
            c = l.width;
            if pool {
                (h, w) = (h / 2, w / 2);
            }
        } else {
            let flat = if h == 0 {
                Flat::None
            } else if seen_conv {
                Flat::Gap
            } else {
                Flat::Flatten
            };
            let fan_in = if flat == Flat::Flatten { c * h * w } else { c };
            layer(i, l.op, fan_in, l.width, h, w, flat, false);
            (c, h, w) = (l.width, 0, 0);
        }
    }
    (c, h, w)
}

impl ChainNetwork {
    /// Builds the network of `arch` for `[c, h, w]` inputs and `classes` outputs, weights
    /// from `seed`.
    pub fn new(
        arch: &ChainArch,
        input: (usize, usize, usize),
        classes: usize,
        seed: u64,
    ) -> Result<Self> {
        if arch.is_empty() || classes == 0 || input.0 * input.1 * input.2 == 0 {
            return Err(TensorError::InvalidArgument {
                op: "ChainNetwork",
                detail: format!(
                    "need at least one layer, classes and a non-empty input, got {} layers, {classes} classes, input {input:?}",
                    arch.len()
                ),
            });
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut layers = Vec::new();
        let mut err = None;
        let end = walk(arch, input, &mut |_, op, ci, co, _, _, flat, pool| {
            let built = (|| -> Result<Layer> {
                let k = kernel(op);
                let o = ConvOptions::default().padding(k / 2);
                Ok(match op {
                    ChainOp::Dense => Layer::Dense {
                        block: Sequential::new()
                            .push(CountedLinear(Linear::new(ci, co, true, &mut rng)?))
                            .push(ReLU::new()),
                        from_image: flat,
                    },
                    ChainOp::Conv1x1 | ChainOp::Conv3x3 | ChainOp::Conv5x5 => Layer::Conv {
                        block: Sequential::new()
                            .push(CountedConv2d(Conv2d::new(ci, co, k, o, false, &mut rng)?))
                            .push(BatchNorm2d::new(co, true))
                            .push(ReLU::new()),
                        pool,
                    },
                    ChainOp::SepConv3x3 | ChainOp::SepConv5x5 => Layer::Conv {
                        block: Sequential::new()
                            .push(CountedConv2d(Conv2d::new(
                                ci,
                                ci,
                                k,
                                o.groups(ci),
                                false,
                                &mut rng,
                            )?))
                            .push(CountedConv2d(Conv2d::new(
                                ci,
                                co,
                                1,
                                ConvOptions::default(),
                                false,
                                &mut rng,
                            )?))
                            .push(BatchNorm2d::new(co, true))
                            .push(ReLU::new()),
                        pool,
                    },
                })
            })();
            match built {
                Ok(l) => layers.push(l),
                Err(e) => {
                    err.get_or_insert(e);
                }
            }
        });
        if let Some(e) = err {
            return Err(e);
        }
        let classifier = CountedLinear(Linear::new(end.0, classes, true, &mut rng)?);
        Ok(ChainNetwork {
            arch: arch.clone(),
            layers,
            final_gap: end.1 > 0,
            classifier,
            pool: MaxPool2d::new(2, 2, 0),
        })
    }
}

impl Module for ChainNetwork {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = x.clone();
        for l in &self.layers {
            match l {
                Layer::Conv { block, pool } => {
                    if h.ndim() == 2 {
                        let (n, d) = (h.shape()[0], h.shape()[1]);
                        h = h.reshape(&[n, d, 1, 1])?;
                    }
                    h = block.forward(&h)?;
                    if *pool {
                        h = self.pool.forward(&h)?;
                    }
                }
                Layer::Dense { block, from_image } => {
                    h = match from_image {
                        Flat::None => h,
                        Flat::Gap => h.global_avg_pool()?,
                        Flat::Flatten => h.flatten(1)?,
                    };
                    h = block.forward(&h)?;
                }
            }
        }
        if self.final_gap {
            h = h.global_avg_pool()?;
        }
        self.classifier.forward(&h)
    }
    fn children(&self, f: &mut dyn FnMut(&str, &dyn Module)) {
        for (i, l) in self.layers.iter().enumerate() {
            let block = match l {
                Layer::Conv { block, .. } | Layer::Dense { block, .. } => block,
            };
            f(&format!("layers.{i}"), block);
        }
        f("classifier", &self.classifier);
    }
}

/// Parameters and FLOPs of [`ChainNetwork::new`]`(arch, input, classes, _)`.
pub fn chain_cost(arch: &ChainArch, input: (usize, usize, usize), classes: usize) -> NetworkCost {
    let mut t = NetworkCost {
        params: 0,
        flops: 0,
    };
    let end = walk(arch, input, &mut |_, op, ci, co, h, w, _, _| {
        let (ci, co, k) = (ci as u64, co as u64, kernel(op) as u64);
        let px = (h.max(1) * w.max(1)) as u64;
        let (p, f) = match op {
            ChainOp::Dense => (ci * co + co, ci * co + co),
            ChainOp::Conv1x1 | ChainOp::Conv3x3 | ChainOp::Conv5x5 => {
                (k * k * ci * co + 2 * co, k * k * ci * co * px)
            }
            ChainOp::SepConv3x3 | ChainOp::SepConv5x5 => {
                (k * k * ci + ci * co + 2 * co, (k * k * ci + ci * co) * px)
            }
        };
        t.params += p;
        t.flops += f;
    });
    let (c, k) = (end.0 as u64, classes as u64);
    t.params += c * k + k;
    t.flops += c * k + k;
    t
}

/// Chain networks ([`crate::nets::chain`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ChainFamily;

impl NetworkFamily<ChainArch> for ChainFamily {
    fn name(&self) -> String {
        "chain".into()
    }
    fn build(
        &self,
        arch: &ChainArch,
        input: (usize, usize, usize),
        classes: usize,
        seed: u64,
    ) -> Result<Box<dyn Module>> {
        Ok(Box::new(ChainNetwork::new(arch, input, classes, seed)?))
    }
    fn cost(&self, arch: &ChainArch, input: (usize, usize, usize), classes: usize) -> NetworkCost {
        chain_cost(arch, input, classes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nets::flops::count_forward_flops;

    #[test]
    fn built_chain_networks_match_closed_form() {
        for text in [
            "conv3x3(8) -> sep_conv_5x5(16) -> conv1x1(16) -> conv5x5(4)",
            "dense(32) -> dense(16)",
            "conv3x3(8) -> dense(16) -> conv3x3(4)",
            "sep_conv_3x3(6)",
        ] {
            let arch = ChainArch::parse(text).unwrap();
            for input in [(1usize, 28usize, 28usize), (3, 8, 8)] {
                let mut net = ChainNetwork::new(&arch, input, 10, 0).unwrap();
                let cost = chain_cost(&arch, input, 10);
                assert_eq!(net.num_parameters() as u64, cost.params, "{text} {input:?}");
                let counted = count_forward_flops(&mut net, input.0, input.1, input.2).unwrap();
                assert_eq!(counted, cost.flops, "{text} {input:?}");
                let y = net
                    .forward(&Tensor::randn(&[3, input.0, input.1, input.2], 1))
                    .unwrap();
                assert_eq!(y.shape(), &[3, 10]);
            }
        }
        // The MLP on 28x28 pixels: 784*32+32 + 32*16+16 + 16*10+10.
        let mlp = ChainArch::parse("dense(32) -> dense(16)").unwrap();
        assert_eq!(
            chain_cost(&mlp, (1, 28, 28), 10).params,
            784 * 32 + 32 + 32 * 16 + 16 + 170
        );
        assert!(ChainNetwork::new(&mlp, (1, 28, 28), 0, 0).is_err());
    }
}
