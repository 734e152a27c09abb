//! The chain (macro) spaces, CNN and MLP presets: their network and Graphviz drawing.

use std::fmt::Write as _;

use nas_space::SearchSpace;
use nas_space::chain::{ChainArch, ChainSpace};

use super::{NetShape, Purpose, SpaceDef};
use crate::nets::NetworkFamily;
use crate::nets::chain::ChainFamily;

/// Chains of the CNN preset ([`ChainSpace::cnn`]).
pub struct Chain;

/// Chains of the MLP preset ([`ChainSpace::mlp`]).
pub struct ChainMlp;

/// A chain as a DOT digraph, one box per layer.
fn chain_dot(space: &ChainSpace, arch: &ChainArch) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "// {}", space.to_text(arch));
    s.push_str("digraph chain {\n  rankdir=LR;\n  node [shape=box];\n  input [label=\"input\"];\n");
    for (i, layer) in arch.layers.iter().enumerate() {
        let _ = writeln!(s, "  l{i} [label=\"{}\"];", layer);
    }
    s.push_str("  output [label=\"output\"];\n");
    let mut prev = "input".to_string();
    for i in 0..arch.layers.len() {
        let _ = writeln!(s, "  {prev} -> l{i};");
        prev = format!("l{i}");
    }
    let _ = writeln!(s, "  {prev} -> output;");
    s.push_str("}\n");
    s
}

/// The chain network has no size settings: its layers carry their widths.
fn shape(_purpose: Purpose) -> Option<NetShape> {
    Some(NetShape {
        channels: 0,
        cells: 0,
    })
}

/// The [`SpaceDef`] of a chain preset.
macro_rules! chain_preset {
    ($def:ty, $name:literal, $preset:ident, $plural:literal, $about:literal) => {
        impl SpaceDef for $def {
            type Space = ChainSpace;
            const NAME: &'static str = $name;
            const ABOUT: &'static str = $about;
            const LABEL: &'static str = "chain of layers";
            const PLURAL: &'static str = $plural;

            fn space(&self) -> ChainSpace {
                ChainSpace::$preset()
            }
            fn dot(&self, arch: &ChainArch) -> String {
                chain_dot(&self.space(), arch)
            }
            fn shape(&self, purpose: Purpose) -> Option<NetShape> {
                shape(purpose).filter(|_| purpose != Purpose::Supernet)
            }
            fn network(&self, _shape: NetShape) -> Option<Box<dyn NetworkFamily<ChainArch>>> {
                Some(Box::new(ChainFamily))
            }
        }
    };
}

chain_preset!(
    Chain,
    "chain",
    cnn,
    "conv chains",
    "chain (macro) space, CNN preset: 1..=6 layers of conv3x3/conv5x5/sep_conv_3x3/sep_conv_5x5, widths 16/32/64 (--channels and --cells unused)"
);
chain_preset!(
    ChainMlp,
    "chain-mlp",
    mlp,
    "dense chains",
    "chain (macro) space, MLP preset: 1..=4 dense layers of width 16..256"
);
