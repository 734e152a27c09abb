//! The NAS-Bench-201 cell space (Dong & Yang, ICLR 2020).
//!
//! A cell is a DAG on 4 nodes (node 0 is the cell input, node 3 its output) with an operation on
//! each of the 6 edges `j -> i` (`j < i`), chosen from 5 ops: `5^6 = 15,625` cells. The edges are
//! numbered in the benchmark's own order (see [`EDGES`]): `(1<-0), (2<-0), (2<-1), (3<-0),
//! (3<-1), (3<-2)`.
//!
//! Text form: the benchmark's string, e.g.
//! `|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|`.
//!
//! Two canonical forms:
//! - [`Nb201Cell::isomorph_class`]: the benchmark's own string, reproduced exactly for every
//!   row of the published table (6,466 distinct strings over the 15,625 cells);
//! - [`Nb201Cell::normal_form`]: our algebraic normal form (zero, identity, flattened ordered
//!   sums), which merges the cells into **4,930** classes (asserted against the table in the
//!   tests); every benchmark class lies inside exactly one of ours.
//!
//! Space conventions ([`Nb201Space`]): every cell is valid (the benchmark includes cells whose
//! output is disconnected); a mutation changes the op of one edge to a different op; there are
//! `6 * 4 = 24` neighbours; crossover picks each edge's op from either parent with probability
//! 1/2; the distance is the Hamming distance on the 6 ops; the canonical key is the normal form.
//!
//! ```
//! use nas_space::SearchSpace;
//! use nas_space::nb201::{Nb201Cell, Nb201Op, Nb201Space};
//!
//! let text = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|";
//! let cell = Nb201Cell::parse(text).unwrap();
//! assert_eq!(cell.ops[2], Nb201Op::AvgPool3x3);
//! assert_eq!(cell.to_string(), text);
//! assert_eq!(
//!     cell.isomorph_class(),
//!     "((0)@nor_conv_3x3)@avg_pool_3x3+(0)@nor_conv_3x3+((0)@nor_conv_3x3)@nor_conv_3x3+0"
//! );
//! assert_eq!(Nb201Space.neighbours(&cell).len(), 24);
//! assert_eq!(Nb201Space.size(), Some(15_625));
//! ```

use crate::text::Cursor;
use crate::{SearchSpace, SpaceError};
use rand::{Rng, RngCore};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// One operation on an NB201 edge.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
pub enum Nb201Op {
    /// `none`: the zero operation (the edge is absent).
    #[default]
    None,
    /// `skip_connect`: the identity.
    SkipConnect,
    /// `nor_conv_1x1`: ReLU, 1x1 convolution, batch norm.
    NorConv1x1,
    /// `nor_conv_3x3`: ReLU, 3x3 convolution, batch norm.
    NorConv3x3,
    /// `avg_pool_3x3`: 3x3 average pooling.
    AvgPool3x3,
}

impl Nb201Op {
    /// The five ops in the benchmark's order (the choice index of an op is its position here).
    pub const ALL: [Nb201Op; 5] = [
        Nb201Op::None,
        Nb201Op::SkipConnect,
        Nb201Op::NorConv1x1,
        Nb201Op::NorConv3x3,
        Nb201Op::AvgPool3x3,
    ];

    /// The benchmark's name of the op (`"nor_conv_3x3"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Nb201Op::None => "none",
            Nb201Op::SkipConnect => "skip_connect",
            Nb201Op::NorConv1x1 => "nor_conv_1x1",
            Nb201Op::NorConv3x3 => "nor_conv_3x3",
            Nb201Op::AvgPool3x3 => "avg_pool_3x3",
        }
    }

    /// The position of the op in [`Nb201Op::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The op at position `i` of [`Nb201Op::ALL`], if `i < 5`.
    pub fn from_index(i: usize) -> Option<Nb201Op> {
        Nb201Op::ALL.get(i).copied()
    }
}

crate::text::op_text!(Nb201Op, "NAS-Bench-201 op");

/// The 6 edges as `(source, target)` node pairs, in the benchmark's order.
pub const EDGES: [(usize, usize); 6] = [(0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3)];

/// The number of edges of a cell.
pub const NUM_EDGES: usize = 6;

/// The number of nodes of a cell (input, two intermediate nodes, output).
pub const NUM_NODES: usize = 4;

/// A NAS-Bench-201 cell: one op per edge, in the order of [`EDGES`].
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
pub struct Nb201Cell {
    /// The op of each edge, in the order `(1<-0), (2<-0), (2<-1), (3<-0), (3<-1), (3<-2)`.
    pub ops: [Nb201Op; 6],
}

impl Nb201Cell {
    /// A cell from its 6 edge ops.
    pub fn new(ops: [Nb201Op; 6]) -> Self {
        Nb201Cell { ops }
    }

    /// The `(source, target)` nodes of edge `e` (`e < 6`; panics otherwise, like indexing).
    pub fn edge_source_target(e: usize) -> (usize, usize) {
        EDGES[e]
    }

    /// The edge index of `source -> target`, if such an edge exists.
    pub fn edge_index(source: usize, target: usize) -> Option<usize> {
        EDGES.iter().position(|&st| st == (source, target))
    }

    /// Parses the benchmark's string form `|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`.
    ///
    /// Node `i`'s group lists its `i` incoming edges in source order `0..i`; anything else is an
    /// error naming the byte offset and what was expected.
    pub fn parse(text: &str) -> Result<Nb201Cell, SpaceError> {
        let mut c = Cursor::new(text);
        let mut ops = [Nb201Op::None; 6];
        let mut e = 0;
        for node in 1..NUM_NODES {
            if node > 1 {
                c.expect("+")?;
            }
            c.expect("|")?;
            for src in 0..node {
                let start = c.pos();
                let name = c.take_while(|b| b.is_ascii_alphanumeric() || b == b'_');
                if name.is_empty() {
                    return Err(c.error(format!(
                        "expected an op name for edge {src}->{node}, found {}",
                        c.found()
                    )));
                }
                ops[e] = Nb201Op::from_str(name)
                    .map_err(|_| c.error_at(start, format!("unknown NAS-Bench-201 op {name:?}")))?;
                c.expect("~")?;
                let num_pos = c.pos();
                let j = c.number()?;
                if j != src {
                    return Err(c.error_at(
                        num_pos,
                        format!("node {node} edge {src} must come from node {src}, found ~{j}"),
                    ));
                }
                c.expect("|")?;
                e += 1;
            }
        }
        if !c.at_end() {
            return Err(c.error(format!(
                "expected end of input after node 3, found {}",
                c.found()
            )));
        }
        Ok(Nb201Cell { ops })
    }

    /// Every one of the 15,625 cells, in the order of [`Nb201Cell::index`] (0..15,625).
    pub fn all() -> impl Iterator<Item = Nb201Cell> + Clone {
        (0..15_625usize).map(|i| Nb201Cell::from_index(i).expect("index in range"))
    }

    /// The cell's position in [`Nb201Cell::all`]: the ops' indices as base-5 digits, edge 0
    /// most significant. (This is not the benchmark's row index.)
    pub fn index(&self) -> usize {
        self.ops.iter().fold(0, |acc, op| acc * 5 + op.index())
    }

    /// The cell at position `i` of [`Nb201Cell::all`]; `None` when `i >= 15,625`.
    pub fn from_index(mut i: usize) -> Option<Nb201Cell> {
        if i >= 15_625 {
            return None;
        }
        let mut ops = [Nb201Op::None; 6];
        for e in (0..6).rev() {
            ops[e] = Nb201Op::ALL[i % 5];
            i /= 5;
        }
        Some(Nb201Cell { ops })
    }

    /// The op on edge `source -> target`, if that edge exists.
    pub fn op(&self, source: usize, target: usize) -> Option<Nb201Op> {
        Nb201Cell::edge_index(source, target).map(|e| self.ops[e])
    }

    /// The benchmark's own isomorphism-class string (the `isomorph_class` column).
    ///
    /// Node 0 is `0`; each later node's string is the sorted (byte order) list of one string per
    /// incoming edge, joined by `+`, where an edge gives `#` if its op is `none` or its source's
    /// string is exactly `#`, the source's string if its op is `skip_connect`, and
    /// `(source)@op` otherwise. The cell's string is node 3's. Note that a node whose inputs
    /// are all `#` gives e.g. `#+#`, not `#`, exactly as the table does.
    pub fn isomorph_class(&self) -> String {
        let mut node: Vec<String> = vec!["0".to_string()];
        for target in 1..NUM_NODES {
            let mut parts: Vec<String> = (0..target)
                .map(|source| {
                    let op = self.op(source, target).expect("edge exists");
                    let src = &node[source];
                    match op {
                        _ if op == Nb201Op::None || src == "#" => "#".to_string(),
                        Nb201Op::SkipConnect => src.clone(),
                        _ => format!("({src})@{}", op.as_str()),
                    }
                })
                .collect();
            parts.sort();
            node.push(parts.join("+"));
        }
        node.pop().expect("four nodes")
    }

    /// The node values of the algebraic normal form: each node's sorted list of atoms.
    fn normal_atoms(&self) -> Vec<Vec<String>> {
        let mut node: Vec<Vec<String>> = vec![vec!["x".to_string()]];
        for target in 1..NUM_NODES {
            let mut atoms = Vec::new();
            for source in 0..target {
                let op = self.op(source, target).expect("edge exists");
                let src = &node[source];
                match op {
                    Nb201Op::None => {}
                    Nb201Op::SkipConnect => atoms.extend(src.iter().cloned()),
                    _ if src.is_empty() => {}
                    _ => atoms.push(format!("{}({})", op.as_str(), src.join("+"))),
                }
            }
            atoms.sort();
            node.push(atoms);
        }
        node
    }

    /// Our algebraic normal form of the cell's output, a string such as
    /// `avg_pool_3x3(nor_conv_3x3(x))+nor_conv_3x3(x)+x`.
    ///
    /// Rules: the input is `x`; `none` is zero; an op applied to zero is zero; `skip_connect` is
    /// the identity; a node is the multiset sum of the terms on its incoming edges, with nested
    /// sums flattened and terms sorted (byte order), joined by `+`; an op applied to a non-zero
    /// sum is written `op(sum)`. The zero cell prints as `0`. Cells with equal normal forms
    /// are the same computation up to reordering and regrouping sums and dropping zero terms
    /// (each distinct term computed once, as the benchmark's own classes also assume); the
    /// 15,625 cells fall into 4,930 classes.
    pub fn normal_form(&self) -> String {
        let atoms = self.normal_atoms().pop().expect("four nodes");
        if atoms.is_empty() {
            "0".to_string()
        } else {
            atoms.join("+")
        }
    }

    /// Whether the output is the constant zero (no input-to-output path of non-`none` edges).
    pub fn is_zero(&self) -> bool {
        self.normal_atoms()[3].is_empty()
    }

    /// The number of edges whose op is not `none`.
    pub fn num_edges(&self) -> usize {
        self.ops.iter().filter(|&&op| op != Nb201Op::None).count()
    }

    /// The input-to-output paths as sequences of edge indices: `[3]`, `[0, 4]`, `[1, 5]`,
    /// `[0, 2, 5]` (all paths of the complete 4-node DAG, whatever the ops).
    pub const PATHS: [&'static [usize]; 4] = [&[3], &[0, 4], &[1, 5], &[0, 2, 5]];

    /// Path encoding in the style of BANANAS (White et al., AAAI 2021): one indicator per
    /// sequence of 1..=3 non-`none` ops (4 + 16 + 64 = 84 features), set when some
    /// input-to-output path carries exactly that op sequence. Paths through a `none` edge do
    /// not exist. Feature index: sequences grouped by length, each read as base-4 digits of
    /// `op.index() - 1` (first op most significant).
    pub fn path_encoding(&self) -> Vec<f32> {
        let mut v = vec![0.0; 84];
        for path in Nb201Cell::PATHS {
            let ops: Vec<Nb201Op> = path.iter().map(|&e| self.ops[e]).collect();
            if ops.contains(&Nb201Op::None) {
                continue;
            }
            let offset = match ops.len() {
                1 => 0,
                2 => 4,
                _ => 20,
            };
            let idx = ops.iter().fold(0, |acc, op| acc * 4 + (op.index() - 1));
            v[offset + idx] = 1.0;
        }
        v
    }

    /// Adjacency encoding of the equivalent node-labelled DAG (ops on vertices, as in
    /// NAS-Bench-101): 8 vertices (input, one per edge in [`EDGES`] order, output). Edge
    /// vertex `s->t` is fed by the input (if `s == 0`) or by every edge vertex into `s`, and
    /// feeds the output (if `t == 3`) or every edge vertex out of `t`; a `none` edge vertex has
    /// no connections. Returns the 28 strictly-upper-triangular entries of the 8x8 adjacency
    /// (row-major) followed by the 6x5 one-hot ops: 58 features.
    pub fn adjacency_encoding(&self) -> Vec<f32> {
        let adj = self.vertex_adjacency();
        let mut v = Vec::with_capacity(58);
        for i in 0..8 {
            for j in i + 1..8 {
                v.push(if adj[i][j] { 1.0 } else { 0.0 });
            }
        }
        for op in self.ops {
            for k in 0..5 {
                v.push(if op.index() == k { 1.0 } else { 0.0 });
            }
        }
        v
    }

    /// The 8x8 adjacency of the node-labelled DAG described in
    /// [`Nb201Cell::adjacency_encoding`] (vertex 0 input, `1 + e` edge `e`, 7 output).
    pub fn vertex_adjacency(&self) -> [[bool; 8]; 8] {
        let mut adj = [[false; 8]; 8];
        for (e, &(s, t)) in EDGES.iter().enumerate() {
            if self.ops[e] == Nb201Op::None {
                continue;
            }
            if s == 0 {
                adj[0][1 + e] = true;
            }
            if t == 3 {
                adj[1 + e][7] = true;
            }
            for (f, &(s2, _)) in EDGES.iter().enumerate() {
                if s2 == t && self.ops[f] != Nb201Op::None {
                    adj[1 + e][1 + f] = true;
                }
            }
        }
        adj
    }
}

impl fmt::Display for Nb201Cell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut e = 0;
        for node in 1..NUM_NODES {
            if node > 1 {
                f.write_str("+")?;
            }
            f.write_str("|")?;
            for src in 0..node {
                write!(f, "{}~{}|", self.ops[e].as_str(), src)?;
                e += 1;
            }
        }
        Ok(())
    }
}

impl FromStr for Nb201Cell {
    type Err = SpaceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Nb201Cell::parse(s)
    }
}

/// The NAS-Bench-201 cell space (a unit struct; see the [module docs](self) for conventions).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nb201Space;

impl SearchSpace for Nb201Space {
    type Arch = Nb201Cell;

    fn name(&self) -> &'static str {
        "nb201"
    }

    fn features(&self, arch: &Nb201Cell) -> Vec<f32> {
        arch.path_encoding()
    }

    fn sample(&self, rng: &mut dyn RngCore) -> Nb201Cell {
        let mut ops = [Nb201Op::None; 6];
        for op in ops.iter_mut() {
            *op = Nb201Op::ALL[rng.random_range(0..5)];
        }
        Nb201Cell { ops }
    }

    fn mutate(&self, arch: &Nb201Cell, rng: &mut dyn RngCore) -> Nb201Cell {
        let e = rng.random_range(0..NUM_EDGES);
        let mut k = rng.random_range(0..4);
        if k >= arch.ops[e].index() {
            k += 1;
        }
        let mut out = *arch;
        out.ops[e] = Nb201Op::ALL[k];
        out
    }

    fn crossover(&self, a: &Nb201Cell, b: &Nb201Cell, rng: &mut dyn RngCore) -> Nb201Cell {
        let mut out = *a;
        for e in 0..NUM_EDGES {
            if rng.random_bool(0.5) {
                out.ops[e] = b.ops[e];
            }
        }
        out
    }

    fn neighbours(&self, arch: &Nb201Cell) -> Vec<Nb201Cell> {
        let mut out = Vec::with_capacity(24);
        for e in 0..NUM_EDGES {
            for op in Nb201Op::ALL {
                if op != arch.ops[e] {
                    let mut n = *arch;
                    n.ops[e] = op;
                    out.push(n);
                }
            }
        }
        out
    }

    fn validate(&self, _arch: &Nb201Cell) -> Result<(), SpaceError> {
        // Every combination of ops is a cell of the benchmark (disconnected ones included).
        Ok(())
    }

    fn canonical(&self, arch: &Nb201Cell) -> String {
        arch.normal_form()
    }

    fn size(&self) -> Option<u128> {
        Some(15_625)
    }

    fn decisions(&self) -> Vec<usize> {
        vec![5; NUM_EDGES]
    }

    fn encode_decisions(&self, arch: &Nb201Cell) -> Vec<usize> {
        arch.ops.iter().map(|op| op.index()).collect()
    }

    fn decode_decisions(&self, choices: &[usize]) -> Result<Nb201Cell, SpaceError> {
        if choices.len() != NUM_EDGES {
            return Err(SpaceError::Encoding(format!(
                "NAS-Bench-201 needs 6 choices, got {}",
                choices.len()
            )));
        }
        let mut ops = [Nb201Op::None; 6];
        for (e, &c) in choices.iter().enumerate() {
            ops[e] = Nb201Op::from_index(c).ok_or_else(|| {
                SpaceError::Encoding(format!("choice {c} for edge {e} is out of range 0..5"))
            })?;
        }
        Ok(Nb201Cell { ops })
    }

    fn distance(&self, a: &Nb201Cell, b: &Nb201Cell) -> usize {
        a.ops.iter().zip(&b.ops).filter(|(x, y)| x != y).count()
    }

    fn to_text(&self, arch: &Nb201Cell) -> String {
        arch.to_string()
    }

    fn parse(&self, text: &str) -> Result<Nb201Cell, SpaceError> {
        Nb201Cell::parse(text)
    }
}
