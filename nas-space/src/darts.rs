//! The DARTS cell space (Liu, Simonyan & Yang, ICLR 2019).
//!
//! A genotype is a pair of cells, `normal` and `reduce`. Each cell has two inputs, numbered 0
//! (`c_{k-2}`) and 1 (`c_{k-1}`), and 4 intermediate nodes numbered 2..=5; node `2 + k` takes
//! exactly two *distinct* earlier inputs (indices `0..=k+1`), each through one of the 7
//! non-`none` ops of [`DartsOp`]; the cell's output concatenates nodes 2, 3, 4 and 5.
//!
//! Text form: the original code's Python form, e.g. [`DARTS_V2`] prints as
//! `Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ...], normal_concat=[2, 3, 4, 5],
//! reduce=[...], reduce_concat=[2, 3, 4, 5])`. The parser keeps the given order of each node's
//! two edges, accepts single or double quotes, any whitespace, the keyword arguments in any
//! order, a trailing comma, and `range(2, 6)` for a concat; the only concat of this space is
//! nodes 2..=5.
//!
//! Conventions of [`DartsSpace`]:
//! - **size**: the two edges of a node form an *unordered* pair, so node `2 + k` has
//!   `C(k+2, 2) * 7^2` choices, a cell `1 * 3 * 6 * 10 * 49^4 = 1,037,664,180`, a genotype the
//!   square of that, **1,076,746,950,455,072,400** (about 1.08e18);
//! - **canonical**: each node's two edges sorted by (input, op), printed in the Python form;
//!   [`DartsCell::relabel_key`] additionally identifies cells that differ by a renumbering of
//!   intermediate nodes;
//! - **decisions**: per cell (normal, then reduce), per node: the unordered input pair
//!   (`C(k+2, 2)` choices, pairs in lexicographic order), the op of the smaller input, the op
//!   of the larger input: 24 decisions whose product is the size, so every choice vector is a
//!   valid genotype;
//! - **mutation**: one edge of one node changes either its op (6 choices) or its input (`k`
//!   choices that keep the two inputs distinct); a genotype has `2 * sum_k 2 * (6 + k) = 120`
//!   neighbours;
//! - **crossover**: uniform per decision;
//! - **distance**: per node, the cheaper of the two ways of matching the edges, counting one
//!   per differing op and one per differing input (the minimum number of mutations).
//!
//! ```
//! use nas_space::SearchSpace;
//! use nas_space::darts::{DARTS_V2, DartsGenotype, DartsSpace};
//!
//! let text = DARTS_V2.to_string();
//! assert!(text.starts_with("Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), "));
//! assert_eq!(DartsGenotype::parse(&text).unwrap(), DARTS_V2);
//! assert_eq!(DartsSpace.neighbours(&DARTS_V2).len(), 120);
//! assert_eq!(DartsSpace.size(), Some(1_076_746_950_455_072_400));
//! ```

use crate::text::Cursor;
use crate::{SearchSpace, SpaceError};
use rand::{Rng, RngCore};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The 8 primitives of the DARTS supernet, in the original order, `none` first.
pub const DARTS_PRIMITIVES: [&str; 8] = [
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
];

/// One of the 7 ops a discrete DARTS cell may use (the supernet primitives without `none`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord, Serialize, Deserialize)]
pub enum DartsOp {
    /// `max_pool_3x3`.
    MaxPool3x3,
    /// `avg_pool_3x3`.
    AvgPool3x3,
    /// `skip_connect` (identity; a factorised reduction when the stride is 2).
    SkipConnect,
    /// `sep_conv_3x3`: two stacked depthwise-separable 3x3 convolutions.
    SepConv3x3,
    /// `sep_conv_5x5`: two stacked depthwise-separable 5x5 convolutions.
    SepConv5x5,
    /// `dil_conv_3x3`: dilated (rate 2) depthwise-separable 3x3 convolution.
    DilConv3x3,
    /// `dil_conv_5x5`: dilated (rate 2) depthwise-separable 5x5 convolution.
    DilConv5x5,
}

impl DartsOp {
    /// The 7 ops in the order of [`DARTS_PRIMITIVES`] (after `none`).
    pub const ALL: [DartsOp; 7] = [
        DartsOp::MaxPool3x3,
        DartsOp::AvgPool3x3,
        DartsOp::SkipConnect,
        DartsOp::SepConv3x3,
        DartsOp::SepConv5x5,
        DartsOp::DilConv3x3,
        DartsOp::DilConv5x5,
    ];

    /// The original code's name of the op.
    pub fn as_str(self) -> &'static str {
        DARTS_PRIMITIVES[self.primitive_index()]
    }

    /// The position of the op in [`DartsOp::ALL`] (0..7).
    pub fn index(self) -> usize {
        self as usize
    }

    /// The position of the op in [`DARTS_PRIMITIVES`] (1..8; 0 is `none`).
    pub fn primitive_index(self) -> usize {
        self as usize + 1
    }

    /// The op at position `i` of [`DartsOp::ALL`].
    pub fn from_index(i: usize) -> Option<DartsOp> {
        DartsOp::ALL.get(i).copied()
    }

    /// The op at position `i` of [`DARTS_PRIMITIVES`]; `None` for `none` (0) or `i >= 8`.
    pub fn from_primitive_index(i: usize) -> Option<DartsOp> {
        i.checked_sub(1).and_then(DartsOp::from_index)
    }
}

crate::text::op_text!(DartsOp, "DARTS op");

/// The number of intermediate nodes of a cell.
pub const NUM_NODES: usize = 4;

/// One DARTS cell: for each intermediate node `2 + k` (`k = 0..4`), its two `(op, input)`
/// edges, `input` in `0..=k+1`, in the given order.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DartsCell {
    /// `nodes[k]` holds the two `(op, input index)` edges of node `2 + k`.
    pub nodes: [[(DartsOp, usize); 2]; NUM_NODES],
}

/// The number of unordered input pairs of node `2 + k`: `C(k+2, 2)`.
fn num_pairs(k: usize) -> usize {
    (k + 2) * (k + 1) / 2
}

/// The index of the unordered pair `a < b` among pairs of `0..k+2` in lexicographic order.
fn pair_index(a: usize, b: usize) -> usize {
    // Pairs (0,1), (0,2), (1,2), (0,3), (1,3), (2,3), ...: grouped by the larger element.
    b * (b - 1) / 2 + a
}

/// The unordered pair at `index` (inverse of [`pair_index`]).
fn pair_at(index: usize) -> (usize, usize) {
    let mut b = 1;
    while (b + 1) * b / 2 <= index {
        b += 1;
    }
    (index - b * (b - 1) / 2, b)
}

impl DartsCell {
    /// A cell from its nodes' `(op, input)` edge pairs, checked by [`DartsCell::validate`].
    pub fn new(nodes: [[(DartsOp, usize); 2]; NUM_NODES]) -> Result<DartsCell, SpaceError> {
        let cell = DartsCell { nodes };
        cell.validate()?;
        Ok(cell)
    }

    /// `Ok(())` when every node has two distinct inputs in range.
    pub fn validate(&self) -> Result<(), SpaceError> {
        for (k, node) in self.nodes.iter().enumerate() {
            for &(_, input) in node {
                if input > k + 1 {
                    return Err(SpaceError::Invalid(format!(
                        "node {} takes input {input}, but only 0..={} exist before it",
                        k + 2,
                        k + 1
                    )));
                }
            }
            if node[0].1 == node[1].1 {
                return Err(SpaceError::Invalid(format!(
                    "node {} takes input {} twice; its two inputs must differ",
                    k + 2,
                    node[0].1
                )));
            }
        }
        Ok(())
    }

    /// The same cell with each node's two edges sorted by (input, op).
    pub fn sorted(&self) -> DartsCell {
        let mut out = *self;
        for node in out.nodes.iter_mut() {
            if (node[1].1, node[1].0) < (node[0].1, node[0].0) {
                node.swap(0, 1);
            }
        }
        out
    }

    /// A key equal for cells that differ only by the order of a node's edges or by a
    /// renumbering of the intermediate nodes that keeps every input earlier than its node
    /// (all such cells compute the same function, as the output concatenates all 4 nodes,
    /// up to the order of the concatenated channels). The smallest relabelled sorted cell.
    pub fn relabel_key(&self) -> DartsCell {
        let mut best = self.sorted();
        for perm in permutations4() {
            // perm[k] = new position of node k.
            let mut out = *self;
            let mut ok = true;
            for k in 0..NUM_NODES {
                let mut node = self.nodes[k];
                for edge in node.iter_mut() {
                    if edge.1 >= 2 {
                        edge.1 = perm[edge.1 - 2] + 2;
                    }
                    if edge.1 > perm[k] + 1 {
                        ok = false;
                    }
                }
                out.nodes[perm[k]] = node;
            }
            if ok {
                let s = out.sorted();
                if s < best {
                    best = s;
                }
            }
        }
        best
    }

    fn fmt_edges(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, (op, input)) in self.nodes.iter().flatten().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "('{}', {input})", op.as_str())?;
        }
        f.write_str("]")
    }
}

/// All 24 permutations of `0..4`.
fn permutations4() -> Vec<[usize; 4]> {
    let mut out = Vec::with_capacity(24);
    for a in 0..4 {
        for b in 0..4 {
            for c in 0..4 {
                for d in 0..4 {
                    let p = [a, b, c, d];
                    if (0..4).all(|x| p.contains(&x)) {
                        out.push(p);
                    }
                }
            }
        }
    }
    out
}

/// A DARTS genotype: a normal cell and a reduction cell (concat always nodes 2..=5).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DartsGenotype {
    /// The normal cell (stride 1).
    pub normal: DartsCell,
    /// The reduction cell (stride 2 on edges from the cell inputs).
    pub reduce: DartsCell,
}

use DartsOp::{AvgPool3x3, DilConv3x3, MaxPool3x3, SepConv3x3, SkipConnect};

/// DARTS (first order), the cell published as `DARTS_V1` in the original code.
pub const DARTS_V1: DartsGenotype = DartsGenotype {
    normal: DartsCell {
        nodes: [
            [(SepConv3x3, 1), (SepConv3x3, 0)],
            [(SkipConnect, 0), (SepConv3x3, 1)],
            [(SkipConnect, 0), (SepConv3x3, 1)],
            [(SepConv3x3, 0), (SkipConnect, 2)],
        ],
    },
    reduce: DartsCell {
        nodes: [
            [(MaxPool3x3, 0), (MaxPool3x3, 1)],
            [(SkipConnect, 2), (MaxPool3x3, 0)],
            [(MaxPool3x3, 0), (SkipConnect, 2)],
            [(SkipConnect, 2), (AvgPool3x3, 0)],
        ],
    },
};

/// DARTS (second order), the cell published as `DARTS_V2` in the original code (its `DARTS`).
pub const DARTS_V2: DartsGenotype = DartsGenotype {
    normal: DartsCell {
        nodes: [
            [(SepConv3x3, 0), (SepConv3x3, 1)],
            [(SepConv3x3, 0), (SepConv3x3, 1)],
            [(SepConv3x3, 1), (SkipConnect, 0)],
            [(SkipConnect, 0), (DilConv3x3, 2)],
        ],
    },
    reduce: DartsCell {
        nodes: [
            [(MaxPool3x3, 0), (MaxPool3x3, 1)],
            [(SkipConnect, 2), (MaxPool3x3, 1)],
            [(MaxPool3x3, 0), (SkipConnect, 2)],
            [(SkipConnect, 2), (MaxPool3x3, 1)],
        ],
    },
};

impl DartsGenotype {
    /// The two cells, normal first.
    pub fn cells(&self) -> [&DartsCell; 2] {
        [&self.normal, &self.reduce]
    }

    /// `Ok(())` when both cells are valid.
    pub fn validate(&self) -> Result<(), SpaceError> {
        self.normal
            .validate()
            .map_err(|e| SpaceError::Invalid(format!("normal cell: {e}")))?;
        self.reduce
            .validate()
            .map_err(|e| SpaceError::Invalid(format!("reduce cell: {e}")))
    }

    /// Both cells with each node's edges sorted (the canonical order).
    pub fn sorted(&self) -> DartsGenotype {
        DartsGenotype {
            normal: self.normal.sorted(),
            reduce: self.reduce.sorted(),
        }
    }

    /// Parses the Python form (see the [module docs](self)); the result is validated.
    pub fn parse(text: &str) -> Result<DartsGenotype, SpaceError> {
        let mut c = Cursor::new(text);
        c.skip_ws();
        c.expect("Genotype")?;
        c.skip_ws();
        c.expect("(")?;
        let mut normal = None;
        let mut reduce = None;
        let mut normal_concat = false;
        let mut reduce_concat = false;
        loop {
            c.skip_ws();
            if c.eat(")") {
                break;
            }
            let key_pos = c.pos();
            let key = c.take_while(|b| b.is_ascii_alphanumeric() || b == b'_');
            let seen = match key {
                "normal" => normal.is_some(),
                "reduce" => reduce.is_some(),
                "normal_concat" => normal_concat,
                "reduce_concat" => reduce_concat,
                "" => {
                    return Err(c.error(format!(
                        "expected a keyword argument (normal, normal_concat, reduce, \
                         reduce_concat) or \")\", found {}",
                        c.found()
                    )));
                }
                other => {
                    return Err(c.error_at(
                        key_pos,
                        format!(
                            "unknown field {other:?} (expected normal, normal_concat, reduce, \
                             reduce_concat)"
                        ),
                    ));
                }
            };
            if seen {
                return Err(c.error_at(key_pos, format!("field {key:?} given twice")));
            }
            c.skip_ws();
            c.expect("=")?;
            c.skip_ws();
            match key {
                "normal" => normal = Some(parse_cell(&mut c, "normal")?),
                "reduce" => reduce = Some(parse_cell(&mut c, "reduce")?),
                "normal_concat" => {
                    parse_concat(&mut c)?;
                    normal_concat = true;
                }
                _ => {
                    parse_concat(&mut c)?;
                    reduce_concat = true;
                }
            }
            c.skip_ws();
            if c.eat(",") {
                continue;
            }
            c.skip_ws();
            if c.eat(")") {
                break;
            }
            return Err(c.error(format!("expected \",\" or \")\", found {}", c.found())));
        }
        c.skip_ws();
        if !c.at_end() {
            return Err(c.error(format!(
                "expected end of input after the genotype, found {}",
                c.found()
            )));
        }
        let missing = [
            ("normal", normal.is_some()),
            ("normal_concat", normal_concat),
            ("reduce", reduce.is_some()),
            ("reduce_concat", reduce_concat),
        ];
        if let Some((name, _)) = missing.iter().find(|(_, present)| !present) {
            return Err(c.error(format!("the genotype lacks the field {name:?}")));
        }
        Ok(DartsGenotype {
            normal: normal.expect("checked"),
            reduce: reduce.expect("checked"),
        })
    }
}

/// Parses `[('op', i), ...]` with exactly 8 edges forming a valid cell.
fn parse_cell(c: &mut Cursor<'_>, which: &str) -> Result<DartsCell, SpaceError> {
    let list_pos = c.pos();
    c.expect("[")?;
    let mut edges: Vec<((DartsOp, usize), usize)> = Vec::with_capacity(8);
    loop {
        c.skip_ws();
        if c.eat("]") {
            break;
        }
        let edge_pos = c.pos();
        c.expect("(")?;
        c.skip_ws();
        let quote = match c.peek() {
            Some(b'\'') => "'",
            Some(b'"') => "\"",
            _ => {
                return Err(c.error(format!("expected a quoted op name, found {}", c.found())));
            }
        };
        c.expect(quote)?;
        let name_pos = c.pos();
        let name = c.take_while(|b| b.is_ascii_alphanumeric() || b == b'_');
        let op = DartsOp::from_str(name).map_err(|_| {
            c.error_at(
                name_pos,
                format!(
                    "unknown DARTS op {name:?} (expected one of {:?})",
                    &DARTS_PRIMITIVES[1..]
                ),
            )
        })?;
        c.expect(quote)?;
        c.skip_ws();
        c.expect(",")?;
        c.skip_ws();
        let input = c.number()?;
        c.skip_ws();
        c.expect(")")?;
        if edges.len() == 8 {
            return Err(c.error_at(
                edge_pos,
                format!("the {which} cell has more than 8 edges (4 nodes x 2)"),
            ));
        }
        edges.push(((op, input), edge_pos));
        c.skip_ws();
        if c.eat(",") {
            continue;
        }
        c.skip_ws();
        c.expect("]")?;
        break;
    }
    if edges.len() != 8 {
        return Err(c.error_at(
            list_pos,
            format!(
                "the {which} cell has {} edges; it needs 8 (4 nodes x 2)",
                edges.len()
            ),
        ));
    }
    let mut cell = DartsCell {
        nodes: [[(DartsOp::SkipConnect, 0); 2]; NUM_NODES],
    };
    for k in 0..NUM_NODES {
        for j in 0..2 {
            let ((op, input), pos) = edges[2 * k + j];
            if input > k + 1 {
                return Err(c.error_at(
                    pos,
                    format!(
                        "{which} node {} takes input {input}, but only 0..={} exist before it",
                        k + 2,
                        k + 1
                    ),
                ));
            }
            cell.nodes[k][j] = (op, input);
        }
        if cell.nodes[k][0].1 == cell.nodes[k][1].1 {
            return Err(c.error_at(
                edges[2 * k + 1].1,
                format!(
                    "{which} node {} takes input {} twice; its two inputs must differ",
                    k + 2,
                    cell.nodes[k][0].1
                ),
            ));
        }
    }
    Ok(cell)
}

/// Parses `[2, 3, 4, 5]` or `range(2, 6)`; any other concat is an error.
fn parse_concat(c: &mut Cursor<'_>) -> Result<(), SpaceError> {
    let start = c.pos();
    let mut values = Vec::new();
    if c.eat("range") {
        c.skip_ws();
        c.expect("(")?;
        c.skip_ws();
        let lo = c.number()?;
        c.skip_ws();
        c.expect(",")?;
        c.skip_ws();
        let hi = c.number()?;
        c.skip_ws();
        c.expect(")")?;
        if lo == 2 && hi == 6 {
            return Ok(());
        }
        return Err(c.error_at(
            start,
            format!("concat range({lo}, {hi}) is not nodes 2..=5, the only concat of this space"),
        ));
    }
    c.expect("[")?;
    loop {
        c.skip_ws();
        if c.eat("]") {
            break;
        }
        values.push(c.number()?);
        c.skip_ws();
        if c.eat(",") {
            continue;
        }
        c.skip_ws();
        c.expect("]")?;
        break;
    }
    if values != [2, 3, 4, 5] {
        return Err(c.error_at(
            start,
            format!("concat {values:?} is not [2, 3, 4, 5], the only concat of this space"),
        ));
    }
    Ok(())
}

impl fmt::Display for DartsGenotype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Genotype(normal=")?;
        self.normal.fmt_edges(f)?;
        f.write_str(", normal_concat=[2, 3, 4, 5], reduce=")?;
        self.reduce.fmt_edges(f)?;
        f.write_str(", reduce_concat=[2, 3, 4, 5])")
    }
}

impl FromStr for DartsGenotype {
    type Err = SpaceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DartsGenotype::parse(s)
    }
}

/// The DARTS space of genotypes (a unit struct; see the [module docs](self) for conventions).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DartsSpace;

impl DartsSpace {
    /// The number of cells (one of normal or reduce) under the unordered-pair convention.
    pub const CELL_SIZE: u128 = 1_037_664_180;

    fn cell_decisions(cell: &DartsCell, out: &mut Vec<usize>) {
        let s = cell.sorted();
        for node in s.nodes {
            out.push(pair_index(node[0].1, node[1].1));
            out.push(node[0].0.index());
            out.push(node[1].0.index());
        }
    }

    fn decode_cell(choices: &[usize], which: &str) -> Result<DartsCell, SpaceError> {
        let mut cell = DartsCell {
            nodes: [[(DartsOp::SkipConnect, 0); 2]; NUM_NODES],
        };
        for k in 0..NUM_NODES {
            let (p, o1, o2) = (choices[3 * k], choices[3 * k + 1], choices[3 * k + 2]);
            if p >= num_pairs(k) {
                return Err(SpaceError::Encoding(format!(
                    "{which} node {}: input-pair choice {p} is out of range 0..{}",
                    k + 2,
                    num_pairs(k)
                )));
            }
            let (a, b) = pair_at(p);
            let op = |o: usize| {
                DartsOp::from_index(o).ok_or_else(|| {
                    SpaceError::Encoding(format!(
                        "{which} node {}: op choice {o} is out of range 0..7",
                        k + 2
                    ))
                })
            };
            cell.nodes[k] = [(op(o1)?, a), (op(o2)?, b)];
        }
        Ok(cell)
    }

    fn mutate_cell(cell: &mut DartsCell, rng: &mut dyn RngCore) {
        let k = rng.random_range(0..NUM_NODES);
        let j = rng.random_range(0..2);
        // Moves: 6 op changes, then k input changes.
        let m = rng.random_range(0..6 + k);
        apply_move(cell, k, j, m);
    }

    fn cell_neighbours(cell: &DartsCell) -> Vec<DartsCell> {
        let mut out = Vec::with_capacity(60);
        for k in 0..NUM_NODES {
            for j in 0..2 {
                for m in 0..6 + k {
                    let mut n = *cell;
                    apply_move(&mut n, k, j, m);
                    out.push(n);
                }
            }
        }
        out
    }

    fn cell_distance(a: &DartsCell, b: &DartsCell) -> usize {
        let cost = |x: (DartsOp, usize), y: (DartsOp, usize)| {
            usize::from(x.0 != y.0) + usize::from(x.1 != y.1)
        };
        a.nodes
            .iter()
            .zip(&b.nodes)
            .map(|(p, q)| {
                let straight = cost(p[0], q[0]) + cost(p[1], q[1]);
                let crossed = cost(p[0], q[1]) + cost(p[1], q[0]);
                straight.min(crossed)
            })
            .sum()
    }
}

/// Move `m` on edge `j` of node `k`: `m < 6` changes the op to the `m`-th other op; otherwise
/// the input changes to the `(m - 6)`-th input of `0..=k+1` not used by either edge.
fn apply_move(cell: &mut DartsCell, k: usize, j: usize, m: usize) {
    let (op, input) = cell.nodes[k][j];
    if m < 6 {
        let mut o = m;
        if o >= op.index() {
            o += 1;
        }
        cell.nodes[k][j].0 = DartsOp::ALL[o];
    } else {
        let other = cell.nodes[k][1 - j].1;
        let new_input = (0..k + 2)
            .filter(|&i| i != input && i != other)
            .nth(m - 6)
            .expect("move index within the k free inputs");
        cell.nodes[k][j].1 = new_input;
    }
}

impl SearchSpace for DartsSpace {
    type Arch = DartsGenotype;

    fn name(&self) -> &'static str {
        "darts"
    }

    fn sample(&self, rng: &mut dyn RngCore) -> DartsGenotype {
        let choices: Vec<usize> = self
            .decisions()
            .iter()
            .map(|&n| rng.random_range(0..n))
            .collect();
        self.decode_decisions(&choices)
            .expect("choices drawn within range")
    }

    fn mutate(&self, arch: &DartsGenotype, rng: &mut dyn RngCore) -> DartsGenotype {
        let mut out = *arch;
        if rng.random_bool(0.5) {
            DartsSpace::mutate_cell(&mut out.normal, rng);
        } else {
            DartsSpace::mutate_cell(&mut out.reduce, rng);
        }
        out
    }

    fn crossover(
        &self,
        a: &DartsGenotype,
        b: &DartsGenotype,
        rng: &mut dyn RngCore,
    ) -> DartsGenotype {
        let ca = self.encode_decisions(a);
        let cb = self.encode_decisions(b);
        let child: Vec<usize> = ca
            .iter()
            .zip(&cb)
            .map(|(&x, &y)| if rng.random_bool(0.5) { y } else { x })
            .collect();
        self.decode_decisions(&child)
            .expect("decisions of valid parents are in range")
    }

    fn neighbours(&self, arch: &DartsGenotype) -> Vec<DartsGenotype> {
        let mut out = Vec::with_capacity(120);
        for n in DartsSpace::cell_neighbours(&arch.normal) {
            out.push(DartsGenotype {
                normal: n,
                reduce: arch.reduce,
            });
        }
        for r in DartsSpace::cell_neighbours(&arch.reduce) {
            out.push(DartsGenotype {
                normal: arch.normal,
                reduce: r,
            });
        }
        out
    }

    fn validate(&self, arch: &DartsGenotype) -> Result<(), SpaceError> {
        arch.validate()
    }

    fn canonical(&self, arch: &DartsGenotype) -> String {
        arch.sorted().to_string()
    }

    fn size(&self) -> Option<u128> {
        Some(DartsSpace::CELL_SIZE * DartsSpace::CELL_SIZE)
    }

    fn decisions(&self) -> Vec<usize> {
        let mut d = Vec::with_capacity(24);
        for _cell in 0..2 {
            for k in 0..NUM_NODES {
                d.extend([num_pairs(k), 7, 7]);
            }
        }
        d
    }

    fn encode_decisions(&self, arch: &DartsGenotype) -> Vec<usize> {
        let mut out = Vec::with_capacity(24);
        DartsSpace::cell_decisions(&arch.normal, &mut out);
        DartsSpace::cell_decisions(&arch.reduce, &mut out);
        out
    }

    fn decode_decisions(&self, choices: &[usize]) -> Result<DartsGenotype, SpaceError> {
        if choices.len() != 24 {
            return Err(SpaceError::Encoding(format!(
                "a DARTS genotype needs 24 choices (2 cells x 4 nodes x 3), got {}",
                choices.len()
            )));
        }
        Ok(DartsGenotype {
            normal: DartsSpace::decode_cell(&choices[..12], "normal")?,
            reduce: DartsSpace::decode_cell(&choices[12..], "reduce")?,
        })
    }

    fn distance(&self, a: &DartsGenotype, b: &DartsGenotype) -> usize {
        DartsSpace::cell_distance(&a.normal, &b.normal)
            + DartsSpace::cell_distance(&a.reduce, &b.reduce)
    }

    fn to_text(&self, arch: &DartsGenotype) -> String {
        arch.to_string()
    }

    fn parse(&self, text: &str) -> Result<DartsGenotype, SpaceError> {
        DartsGenotype::parse(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pair_index_is_a_bijection_per_node() {
        for k in 0..NUM_NODES {
            let mut seen = vec![false; num_pairs(k)];
            for b in 1..k + 2 {
                for a in 0..b {
                    let i = pair_index(a, b);
                    assert!(i < num_pairs(k));
                    assert!(!seen[i]);
                    seen[i] = true;
                    assert_eq!(pair_at(i), (a, b));
                }
            }
            assert!(seen.iter().all(|&s| s));
        }
    }

    #[test]
    fn cell_size_is_the_product_of_decisions() {
        let per_cell: u128 = (0..NUM_NODES)
            .map(|k| (num_pairs(k) * 49) as u128)
            .product();
        assert_eq!(per_cell, DartsSpace::CELL_SIZE);
        let all: u128 = DartsSpace.decisions().iter().map(|&n| n as u128).product();
        assert_eq!(Some(all), DartsSpace.size());
        assert_eq!(DartsSpace.size(), Some(1_076_746_950_455_072_400));
    }

    #[test]
    fn permutations4_lists_24_distinct() {
        let p = permutations4();
        assert_eq!(p.len(), 24);
        let set: std::collections::HashSet<_> = p.iter().collect();
        assert_eq!(set.len(), 24);
    }
}
