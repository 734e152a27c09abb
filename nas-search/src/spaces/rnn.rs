//! The DARTS recurrent-cell space: its cells train as the core of a character language model
//! on a text corpus ([`crate::rnn`]), and are drawn as Graphviz digraphs.

use std::fmt::Write as _;

use nas_space::SearchSpace;
use nas_space::rnn::{NUM_NODES, RnnGenotype, RnnSpace};

use super::{NetShape, Purpose, SpaceDef};
use crate::data::DataKind;
use crate::nets::rnn::CellKind;
use crate::oneshot::SpaceKind;
use crate::train::TrainRecipe;

/// DARTS recurrent cells (Liu et al. 2019): 8 nodes after a highway layer, each reading one
/// earlier node through `tanh`, `relu`, `sigmoid` or `identity`.
pub struct Rnn;

impl SpaceDef for Rnn {
    type Space = RnnSpace;
    const NAME: &'static str = "rnn";
    const ABOUT: &'static str = "DARTS recurrent cell: 8 nodes, each one earlier node through tanh/relu/sigmoid/identity; trained as a character language model on text (--channels = hidden units, --limit-train = training sequences of 64 characters; --cells and --valid-fraction unused); one-shot: --strategy darts|darts2 on the recurrent supernet (64 hidden units)";
    const LABEL: &'static str = "recurrent cell";
    const PLURAL: &'static str = "recurrent cells";
    const NATIVE_FORMAT: Option<&'static str> = Some("darts");
    const DATA: DataKind = DataKind::Text;

    fn space(&self) -> RnnSpace {
        RnnSpace
    }

    fn dot(&self, arch: &RnnGenotype) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "// {}", RnnSpace.to_text(arch));
        s.push_str("digraph rnn_cell {\n  rankdir=LR;\n  node [shape=circle];\n");
        s.push_str("  x [label=\"x_t\", shape=box];\n  h [label=\"h_{t-1}\", shape=box];\n");
        s.push_str("  n0 [label=\"0\"];\n  x -> n0;\n  h -> n0 [label=\"highway\"];\n");
        for i in 1..=NUM_NODES {
            let _ = writeln!(s, "  n{i} [label=\"{i}\"];");
            let _ = writeln!(
                s,
                "  n{} -> n{i} [label=\"{}\"];",
                arch.input(i),
                arch.activation(i)
            );
        }
        s.push_str("  out [label=\"h_t (mean)\", shape=box];\n");
        for i in 1..=NUM_NODES {
            let _ = writeln!(s, "  n{i} -> out;");
        }
        s.push_str("}\n");
        s
    }

    fn shape(&self, purpose: Purpose) -> Option<NetShape> {
        let hidden = match purpose {
            Purpose::Search => 64,
            Purpose::Train => 128,
            Purpose::Supernet => 64,
        };
        Some(NetShape {
            channels: hidden,
            cells: 1,
        })
    }

    fn recipe(&self) -> TrainRecipe {
        TrainRecipe {
            lr: 3e-3,
            batch_size: 32,
            eval_batch_size: 16,
            grad_clip: Some(0.5),
            ..TrainRecipe::default()
        }
    }

    fn supernet(&self) -> Option<SpaceKind> {
        Some(SpaceKind::Rnn)
    }

    fn lm_core(arch: &RnnGenotype) -> Option<CellKind> {
        Some(CellKind::Darts(*arch))
    }
}
