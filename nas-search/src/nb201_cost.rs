//! Parameters and FLOPs of NAS-Bench-201 networks, computed from the cell.
//!
//! The macro network (Dong & Yang, ICLR 2020), `C = 16`, `N = 5`:
//!
//! * stem: 3x3 convolution 3 -> C (no bias) + batch norm;
//! * three stages of N cells at C, 2C and 4C channels, joined by two ResNet basic blocks with
//!   stride 2: ReLU-conv3x3(stride 2)-BN, ReLU-conv3x3-BN, shortcut avg-pool 2x2 + conv1x1
//!   (no bias, no BN);
//! * cell edges: `nor_conv_kxk` = ReLU, k x k convolution C -> C (no bias), batch norm (affine);
//!   `avg_pool_3x3`, `skip_connect` and `none` have no parameters;
//! * last: batch norm + ReLU, global average pooling, linear 4C -> classes (with bias);
//! * input 32x32 (CIFAR-10/100, 10/100 classes) or 16x16 (ImageNet16-120, 120 classes).
//!
//! **Parameters** count every learnable weight: convolution kernels, batch-norm scale and shift
//! (2 per channel; running statistics are buffers, not parameters), linear weight and bias.
//!
//! **FLOPs convention** (the one NAS-Bench-201 reports, in MFLOPs = FLOPs / 1e6): multiply-adds
//! of one forward pass of one image through the convolutions and the linear layer only —
//! a convolution costs `k*k*C_in*C_out*H_out*W_out`, the linear layer `in*out + out` (its bias
//! adds are counted); batch norm, ReLU, pooling and additions count 0. Every edge of the cell
//! counts, including convolutions whose input is unreachable. The network builder of this
//! project must report the same numbers for the same cell. Checked values (CIFAR-10): the cell
//! of six 3x3 convolutions has 1,531,546 parameters and 220,119,690 FLOPs (NAS-Bench-201:
//! 1.5315 MB, 220.12 MFLOPs); the empty cell 73,306 and 7,783,050.

use crate::nb201::Dataset;
use nas_space::nb201::{Nb201Cell, Nb201Op};

/// Channels of the first stage in NAS-Bench-201.
pub const CHANNELS: u64 = 16;
/// Cells per stage in NAS-Bench-201.
pub const CELLS_PER_STAGE: u64 = 5;

/// Parameters and FLOPs of one network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetworkCost {
    /// Learnable parameters.
    pub params: u64,
    /// Multiply-adds of one forward pass of one image (see the module docs).
    pub flops: u64,
}

impl NetworkCost {
    /// Parameters in millions (NAS-Bench-201's "MB").
    pub fn params_m(&self) -> f64 {
        self.params as f64 / 1e6
    }
    /// FLOPs in millions (NAS-Bench-201's "MFLOPs").
    pub fn mflops(&self) -> f64 {
        self.flops as f64 / 1e6
    }
}

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

/// Parameters and FLOPs of the NAS-Bench-201 network (C = 16, N = 5) of `cell` on `dataset`.
pub fn network_cost(cell: &Nb201Cell, dataset: Dataset) -> NetworkCost {
    network_cost_with(
        cell,
        CHANNELS,
        CELLS_PER_STAGE,
        dataset.input_size(),
        dataset.classes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(s: &str) -> Nb201Cell {
        Nb201Cell::parse(s).unwrap()
    }

    #[test]
    fn extreme_cells_match_nas_bench_201() {
        let all3 = cell(
            "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|",
        );
        let c10 = network_cost(&all3, Dataset::Cifar10);
        assert_eq!(
            c10,
            NetworkCost {
                params: 1_531_546,
                flops: 220_119_690
            }
        );
        let empty = cell("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|");
        assert_eq!(
            network_cost(&empty, Dataset::Cifar10),
            NetworkCost {
                params: 73_306,
                flops: 7_783_050
            }
        );
        // CIFAR-100 differs only in the classifier: 90 more classes x (64 weights + 1 bias).
        let c100 = network_cost(&all3, Dataset::Cifar100);
        assert_eq!(c100.params - c10.params, 90 * 65);
        assert_eq!(c100.flops - c10.flops, 90 * 65);
        // ImageNet16-120: a quarter of the pixels, 120 classes.
        let im = network_cost(&all3, Dataset::ImageNet16_120);
        assert_eq!(im.params, 1_531_546 - 650 + 120 * 65);
        assert_eq!(im.flops, (220_119_690 - 650) / 4 + 120 * 65);
    }

    #[test]
    fn ops_contribute_their_convolutions_only() {
        let base = cell("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|");
        let b = network_cost(&base, Dataset::Cifar10);
        for (op, params, flops) in [
            (Nb201Op::SkipConnect, 0, 0),
            (Nb201Op::AvgPool3x3, 0, 0),
            // 5 cells at 16, 32, 64 channels on 32^2, 16^2, 8^2 pixels.
            (
                Nb201Op::NorConv1x1,
                5 * (16 * 18 + 32 * 34 + 64 * 66),
                5 * 3 * 256 * 1024,
            ),
            (
                Nb201Op::NorConv3x3,
                5 * (16 * 146 + 32 * 290 + 64 * 578),
                5 * 3 * 9 * 256 * 1024,
            ),
        ] {
            for e in 0..6 {
                let mut c = base;
                c.ops[e] = op;
                let n = network_cost(&c, Dataset::Cifar10);
                assert_eq!(n.params - b.params, params, "{op} on edge {e}");
                assert_eq!(n.flops - b.flops, flops, "{op} on edge {e}");
            }
        }
    }
}
