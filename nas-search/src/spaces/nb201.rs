//! The NAS-Bench-201 cell space: its network (the NAS-Bench-201 macro network), supernet and
//! Graphviz drawing.

use std::fmt::Write as _;

use nas_space::SearchSpace;
use nas_space::nb201::{EDGES, Nb201Cell, Nb201Op, Nb201Space};

use super::{NetShape, Purpose, SpaceDef};
use crate::memory::NetSize;
use crate::nets::NetworkFamily;
use crate::nets::nb201::{Nb201Config, Nb201Family};
use crate::oneshot::SpaceKind;
use crate::prefilter::Proxy;

/// NAS-Bench-201 cells: 6 edges, 5 ops each (15,625 cells).
pub struct Nb201;

impl SpaceDef for Nb201 {
    type Space = Nb201Space;
    const NAME: &'static str = "nb201";
    const ABOUT: &'static str = "NAS-Bench-201 cell: 6 edges, 5 ops each (15,625 cells); trained in the NAS-Bench-201 macro network (C, N cells per stage), or looked up in the table";
    const LABEL: &'static str = "NAS-Bench-201 cell";
    const PLURAL: &'static str = "NAS-Bench-201 cells";
    const NATIVE_FORMAT: Option<&'static str> = Some("nb201");

    fn space(&self) -> Nb201Space {
        Nb201Space
    }

    fn dot(&self, arch: &Nb201Cell) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "// {}", Nb201Space.to_text(arch));
        s.push_str("digraph nb201_cell {\n  rankdir=LR;\n  node [shape=circle];\n");
        s.push_str("  n0 [label=\"in\"];\n  n1 [label=\"1\"];\n  n2 [label=\"2\"];\n  n3 [label=\"out\"];\n");
        for (e, &(from, to)) in EDGES.iter().enumerate() {
            let op = arch.ops[e];
            if op == Nb201Op::None {
                // The zero op: no edge.
                continue;
            }
            let _ = writeln!(s, "  n{from} -> n{to} [label=\"{}\"];", op.as_str());
        }
        s.push_str("}\n");
        s
    }

    fn shape(&self, purpose: Purpose) -> Option<NetShape> {
        let (channels, cells) = match purpose {
            Purpose::Search | Purpose::Supernet => (8, 1),
            Purpose::Train => (16, 5),
        };
        Some(NetShape { channels, cells })
    }

    fn network(&self, shape: NetShape) -> Option<Box<dyn NetworkFamily<Nb201Cell>>> {
        Some(Box::new(Nb201Family {
            channels: shape.channels,
            cells_per_stage: shape.cells,
        }))
    }

    fn memory(&self, shape: NetShape) -> Option<NetSize> {
        Some(NetSize::Nb201 {
            channels: shape.channels,
            cells: shape.cells,
        })
    }

    fn supernet(&self) -> Option<SpaceKind> {
        Some(SpaceKind::Nb201)
    }

    /// synflow of the benchmark's CIFAR-10 network (C = 16, N = 5, 3x32x32 input, 10 classes,
    /// weights from seed 0), as in `docs/RESULTS.md`; params and flops as every space.
    fn proxy(&self, proxy: Proxy, arch: &Nb201Cell) -> crate::Result<f64> {
        match proxy {
            Proxy::Synflow => crate::proxies::synflow(arch, Nb201Config::default(), 0, (32, 32))
                .map_err(|e| crate::SearchError::Setting(format!("--prefilter synflow: {e}"))),
            _ => super::default_proxy(self, proxy, arch),
        }
    }
}
