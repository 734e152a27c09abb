//! The DARTS genotype space: its evaluation network, supernet and Graphviz drawing.

use std::fmt::Write as _;

use nas_space::SearchSpace;
use nas_space::darts::{DartsCell, DartsGenotype, DartsSpace};

use super::{NetShape, Purpose, SpaceDef};
use crate::memory::NetSize;
use crate::nets::NetworkFamily;
use crate::nets::darts::DartsFamily;
use crate::oneshot::SpaceKind;

/// DARTS genotypes: a normal and a reduction cell of 4 nodes, 2 inputs each, 7 ops.
pub struct Darts;

impl SpaceDef for Darts {
    type Space = DartsSpace;
    const NAME: &'static str = "darts";
    const ABOUT: &'static str = "DARTS genotype: a normal and a reduction cell of 4 nodes, 2 inputs each, 7 ops; trained in the DARTS evaluation network (C, cells in all)";
    const LABEL: &'static str = "DARTS genotype";
    const PLURAL: &'static str = "DARTS genotypes";
    const NATIVE_FORMAT: Option<&'static str> = Some("darts");

    fn space(&self) -> DartsSpace {
        DartsSpace
    }

    fn dot(&self, arch: &DartsGenotype) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "// {}", DartsSpace.to_text(arch));
        s.push_str("digraph darts_genotype {\n  rankdir=LR;\n  node [shape=circle];\n");
        cell_dot(&mut s, "normal", &arch.normal);
        cell_dot(&mut s, "reduce", &arch.reduce);
        s.push_str("}\n");
        s
    }

    fn shape(&self, purpose: Purpose) -> Option<NetShape> {
        let (channels, cells) = match purpose {
            Purpose::Search => (8, 3),
            Purpose::Supernet => (8, 5),
            Purpose::Train => (16, 8),
        };
        Some(NetShape { channels, cells })
    }

    fn network(&self, shape: NetShape) -> Option<Box<dyn NetworkFamily<DartsGenotype>>> {
        Some(Box::new(DartsFamily {
            channels: shape.channels,
            layers: shape.cells,
        }))
    }

    fn memory(&self, shape: NetShape) -> Option<NetSize> {
        Some(NetSize::Darts {
            channels: shape.channels,
            cells: shape.cells,
        })
    }

    fn supernet(&self) -> Option<SpaceKind> {
        Some(SpaceKind::Darts)
    }
}

/// One DARTS cell as a DOT cluster: inputs `c_{k-2}`, `c_{k-1}`, intermediate nodes 0..3 (the
/// original code's numbering), and the output `c_{k}` that concatenates them.
fn cell_dot(s: &mut String, name: &str, cell: &DartsCell) {
    let _ = writeln!(
        s,
        "  subgraph cluster_{name} {{\n    label=\"{name} cell\";"
    );
    let _ = writeln!(s, "    {name}_in0 [label=\"c_{{k-2}}\", shape=box];");
    let _ = writeln!(s, "    {name}_in1 [label=\"c_{{k-1}}\", shape=box];");
    for k in 0..cell.nodes.len() {
        let _ = writeln!(s, "    {name}_n{k} [label=\"{k}\"];");
    }
    let _ = writeln!(s, "    {name}_out [label=\"c_{{k}}\", shape=box];");
    let node = |i: usize| match i {
        0 => format!("{name}_in0"),
        1 => format!("{name}_in1"),
        i => format!("{name}_n{}", i - 2),
    };
    for (k, edges) in cell.nodes.iter().enumerate() {
        for &(op, input) in edges {
            let _ = writeln!(
                s,
                "    {} -> {name}_n{k} [label=\"{}\"];",
                node(input),
                op.as_str()
            );
        }
    }
    for k in 0..cell.nodes.len() {
        let _ = writeln!(s, "    {name}_n{k} -> {name}_out;");
    }
    s.push_str("  }\n");
}
