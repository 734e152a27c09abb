//! The NAS-Bench-101 graph space: its network and Graphviz drawing.

use std::fmt::Write as _;

use nas_space::SearchSpace;
use nas_space::nb101::{Nb101Arch, Nb101Space};

use super::{NetShape, Purpose, SpaceDef};
use crate::memory::NetSize;
use crate::nets::NetworkFamily;
use crate::nets::nb101::Nb101Family;

/// NAS-Bench-101 style DAGs: up to 7 vertices, 9 edges, 3 ops (423,624 graphs).
pub struct Nb101;

impl SpaceDef for Nb101 {
    type Space = Nb101Space;
    const NAME: &'static str = "nb101";
    const ABOUT: &'static str = "NAS-Bench-101 style DAG: up to 7 vertices, 9 edges, 3 ops (423,624 graphs); trained in the NAS-Bench-101 network (C stem channels, 3 stacks of N cells)";
    const LABEL: &'static str = "NAS-Bench-101 graph";
    const PLURAL: &'static str = "NAS-Bench-101 graphs";

    fn space(&self) -> Nb101Space {
        Nb101Space
    }

    fn dot(&self, arch: &Nb101Arch) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "// {}", Nb101Space.to_text(arch));
        s.push_str("digraph nb101_cell {\n  rankdir=LR;\n  node [shape=box];\n");
        let n = arch.matrix.len();
        for v in 0..n {
            let label = if v == 0 {
                "input"
            } else if v + 1 == n {
                "output"
            } else {
                arch.ops.get(v - 1).map_or("?", |op| op.as_str())
            };
            let _ = writeln!(s, "  v{v} [label=\"{label}\"];");
        }
        for (i, row) in arch.matrix.iter().enumerate() {
            for (j, &edge) in row.iter().enumerate() {
                if edge {
                    let _ = writeln!(s, "  v{i} -> v{j};");
                }
            }
        }
        s.push_str("}\n");
        s
    }

    fn shape(&self, purpose: Purpose) -> Option<NetShape> {
        match purpose {
            Purpose::Search => Some(NetShape {
                channels: 8,
                cells: 1,
            }),
            Purpose::Train => Some(NetShape {
                channels: 16,
                cells: 3,
            }),
            Purpose::Supernet => None,
        }
    }

    fn network(&self, shape: NetShape) -> Option<Box<dyn NetworkFamily<Nb101Arch>>> {
        Some(Box::new(Nb101Family {
            stem_channels: shape.channels,
            stacks: 3,
            cells_per_stack: shape.cells,
        }))
    }

    fn memory(&self, shape: NetShape) -> Option<NetSize> {
        Some(NetSize::Nb101 {
            channels: shape.channels,
            cells: shape.cells,
        })
    }
}
