//! The NAS-Bench-101 style DAG space (Ying et al., ICML 2019).
//!
//! An architecture is a DAG on `n <= 7` vertices given by a strictly upper-triangular
//! adjacency matrix: vertex 0 is the input, vertex `n - 1` the output, and each interior vertex
//! carries one of 3 ops ([`Nb101Op`]). It is *valid* when the input reaches the output and the
//! graph, once pruned of vertices on no input-to-output path ([`Nb101Arch::prune`]), has at
//! most 9 edges.
//!
//! Conventions of [`Nb101Space`]:
//! - moves act on the **7-vertex form** ([`Nb101Arch::to_full`]; a smaller graph gets
//!   unconnected extra vertices): a move flips one of the 21 possible edges or changes one of
//!   the 5 interior ops; [`SearchSpace::neighbours`] lists those of the 31 moves that give a
//!   valid graph, and [`SearchSpace::mutate`] picks one of them uniformly;
//! - **decisions**: the 21 edge bits (row-major upper triangle) then the 5 interior ops; a
//!   choice vector that is not a valid graph decodes to an error; [`SearchSpace::sample`]
//!   draws uniform choice vectors until one is valid (rejection sampling, as the benchmark's
//!   own sampler does), and crossover mixes the decisions of two parents uniformly, retrying
//!   up to 100 times and otherwise returning a copy of the first parent;
//! - **distance**: the Hamming distance of the 7-vertex forms' decisions (a lower bound of the
//!   number of valid moves between them);
//! - **canonical**: [`Nb101Arch::iso_hash`] in hexadecimal. The hash is the canonical code of
//!   the pruned graph: a 62-bit packing of the vertex count, the ops and the adjacency under
//!   the smallest relabelling of the interior vertices, so it is *injective* on isomorphism
//!   classes (no collisions at all, not merely none observed);
//! - **size**: 423,624 isomorphism classes of valid graphs, the published figure, which our
//!   enumeration reproduces (`examples/nb101_enumerate.rs`).
//!
//! Text form: the benchmark's `ModelSpec` arguments, e.g.
//! `ModelSpec(matrix=[[0, 1, 1], [0, 0, 1], [0, 0, 0]], ops=['input', 'maxpool3x3', 'output'])`.
//!
//! ```
//! use nas_space::SearchSpace;
//! use nas_space::nb101::{Nb101Arch, Nb101Op, Nb101Space};
//!
//! let text = "ModelSpec(matrix=[[0, 1, 1, 0], [0, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 0]], \
//!             ops=['input', 'conv3x3-bn-relu', 'maxpool3x3', 'output'])";
//! let a = Nb101Arch::parse(text).unwrap();
//! assert_eq!(a.to_string(), text);
//! // The same graph with the two interior vertices swapped hashes equal.
//! let b = Nb101Arch::parse(
//!     "ModelSpec(matrix=[[0, 1, 1, 0], [0, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 0]], \
//!      ops=['input', 'maxpool3x3', 'conv3x3-bn-relu', 'output'])",
//! )
//! .unwrap();
//! assert_ne!(a, b);
//! assert_eq!(a.iso_hash(), b.iso_hash());
//! assert!(Nb101Space.neighbours(&a).iter().all(|n| Nb101Space.validate(n).is_ok()));
//! ```

use crate::text::Cursor;
use crate::{SearchSpace, SpaceError};
use rand::{Rng, RngCore};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The most vertices a graph may have (input and output included).
pub const MAX_VERTICES: usize = 7;
/// The most edges a (pruned) graph may have.
pub const MAX_EDGES: usize = 9;
/// The number of possible edges of a 7-vertex graph.
const FULL_EDGES: usize = MAX_VERTICES * (MAX_VERTICES - 1) / 2;

/// An op of an interior vertex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Nb101Op {
    /// `conv3x3-bn-relu`.
    Conv3x3BnRelu,
    /// `conv1x1-bn-relu`.
    Conv1x1BnRelu,
    /// `maxpool3x3`.
    MaxPool3x3,
}

impl Nb101Op {
    /// The three ops in the benchmark's order.
    pub const ALL: [Nb101Op; 3] = [
        Nb101Op::Conv3x3BnRelu,
        Nb101Op::Conv1x1BnRelu,
        Nb101Op::MaxPool3x3,
    ];

    /// The benchmark's name of the op.
    pub fn as_str(self) -> &'static str {
        match self {
            Nb101Op::Conv3x3BnRelu => "conv3x3-bn-relu",
            Nb101Op::Conv1x1BnRelu => "conv1x1-bn-relu",
            Nb101Op::MaxPool3x3 => "maxpool3x3",
        }
    }

    /// The position of the op in [`Nb101Op::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The op at position `i` of [`Nb101Op::ALL`].
    pub fn from_index(i: usize) -> Option<Nb101Op> {
        Nb101Op::ALL.get(i).copied()
    }
}

crate::text::op_text!(Nb101Op, "NAS-Bench-101 op");

/// A NAS-Bench-101 style graph: adjacency matrix and interior ops.
#[derive(Clone, PartialEq, Eq, Hash, Debug, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Nb101Arch {
    /// `matrix[i][j]` is true when there is an edge `i -> j`; `n x n`, strictly upper
    /// triangular, vertex 0 the input and vertex `n - 1` the output.
    pub matrix: Vec<Vec<bool>>,
    /// The ops of the interior vertices `1..n-1` (length `n - 2`).
    pub ops: Vec<Nb101Op>,
}

/// A compact copy of a graph: `adj[i]` has bit `j` set for an edge `i -> j`; `ops[v]` is the
/// op index of interior vertex `v` (3 for the input, 4 for the output).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Graph {
    n: usize,
    adj: [u8; MAX_VERTICES],
    ops: [u8; MAX_VERTICES],
}

impl Graph {
    fn num_edges(&self) -> usize {
        self.adj[..self.n]
            .iter()
            .map(|r| r.count_ones() as usize)
            .sum()
    }

    /// Vertices reachable from the input (bit mask).
    fn forward(&self) -> u8 {
        let mut seen = 1u8;
        for i in 0..self.n {
            if seen & (1 << i) != 0 {
                seen |= self.adj[i];
            }
        }
        seen
    }

    /// Vertices that reach the output (bit mask); assumes edges go from lower to higher.
    fn backward(&self) -> u8 {
        let mut seen = 1u8 << (self.n - 1);
        for i in (0..self.n).rev() {
            if self.adj[i] & seen != 0 {
                seen |= 1 << i;
            }
        }
        seen
    }

    /// Removes vertices on no input-to-output path; `None` when the output is unreachable.
    fn pruned(&self) -> Option<Graph> {
        let keep = self.forward() & self.backward();
        if keep & (1 << (self.n - 1)) == 0 || keep & 1 == 0 {
            return None;
        }
        let mut map = [usize::MAX; MAX_VERTICES];
        let mut m = 0;
        for v in 0..self.n {
            if keep & (1 << v) != 0 {
                map[v] = m;
                m += 1;
            }
        }
        let mut g = Graph {
            n: m,
            adj: [0; MAX_VERTICES],
            ops: [0; MAX_VERTICES],
        };
        for v in 0..self.n {
            if map[v] == usize::MAX {
                continue;
            }
            g.ops[map[v]] = self.ops[v];
            for w in 0..self.n {
                if self.adj[v] & (1 << w) != 0 && map[w] != usize::MAX {
                    g.adj[map[v]] |= 1 << map[w];
                }
            }
        }
        Some(g)
    }

    /// The canonical code of this graph (assumed pruned; any DAG with input 0 and output
    /// `n - 1` works): the smallest packing over relabellings of the interior vertices that
    /// respect the colour-refinement order. Bits: `n` (3) << 59 | ops (2 each) << 49 | matrix
    /// (bit `7 i + j`).
    fn canonical_code(&self) -> u64 {
        let n = self.n;
        let colours = self.refined_colours();
        // Interior vertices sorted by colour; orderings permute within equal colours.
        let mut interior: Vec<usize> = (1..n.saturating_sub(1)).collect();
        interior.sort_by_key(|&v| colours[v]);
        let slot_colours: Vec<u8> = interior.iter().map(|&v| colours[v]).collect();
        let mut order = [0usize; MAX_VERTICES];
        order[n - 1] = n - 1;
        let mut used = 0u8;
        let mut best = u64::MAX;
        self.search(&slot_colours, &colours, 1, &mut order, &mut used, &mut best);
        best
    }

    fn search(
        &self,
        slot_colours: &[u8],
        colours: &[u8; MAX_VERTICES],
        pos: usize,
        order: &mut [usize; MAX_VERTICES],
        used: &mut u8,
        best: &mut u64,
    ) {
        if pos + 1 >= self.n {
            let code = self.code_for(order);
            if code < *best {
                *best = code;
            }
            return;
        }
        let want = slot_colours[pos - 1];
        for v in 1..self.n - 1 {
            if *used & (1 << v) == 0 && colours[v] == want {
                *used |= 1 << v;
                order[pos] = v;
                self.search(slot_colours, colours, pos + 1, order, used, best);
                *used &= !(1 << v);
            }
        }
    }

    /// The packed code when new vertex `k` is old vertex `order[k]`.
    fn code_for(&self, order: &[usize; MAX_VERTICES]) -> u64 {
        let n = self.n;
        let mut inv = [0usize; MAX_VERTICES];
        for k in 0..n {
            inv[order[k]] = k;
        }
        let mut matrix = 0u64;
        for i in 0..n {
            let mut row = self.adj[i];
            while row != 0 {
                let j = row.trailing_zeros() as usize;
                row &= row - 1;
                matrix |= 1 << (inv[i] * MAX_VERTICES + inv[j]);
            }
        }
        let mut ops = 0u64;
        for k in 1..n.saturating_sub(1) {
            ops |= (self.ops[order[k]] as u64) << (2 * (k - 1));
        }
        ((n as u64) << 59) | (ops << 49) | matrix
    }

    /// Colour refinement (1-dimensional Weisfeiler-Lehman) from the ops, with in- and
    /// out-neighbour colour multisets; colours are ranks of sorted signatures, hence invariant
    /// under relabelling.
    fn refined_colours(&self) -> [u8; MAX_VERTICES] {
        let n = self.n;
        let mut colours = [0u8; MAX_VERTICES];
        let mut sig = [0u64; MAX_VERTICES];
        for v in 0..n {
            sig[v] = self.ops[v] as u64;
        }
        let mut distinct = rank(&sig[..n], &mut colours);
        loop {
            for v in 0..n {
                let mut outs = [0u8; MAX_VERTICES];
                let mut ins = [0u8; MAX_VERTICES];
                let (mut no, mut ni) = (0, 0);
                for w in 0..n {
                    if self.adj[v] & (1 << w) != 0 {
                        outs[no] = colours[w] + 1;
                        no += 1;
                    }
                    if self.adj[w] & (1 << v) != 0 {
                        ins[ni] = colours[w] + 1;
                        ni += 1;
                    }
                }
                outs[..no].sort_unstable();
                ins[..ni].sort_unstable();
                let pack = |xs: &[u8]| xs.iter().fold(0u64, |acc, &c| (acc << 3) | c as u64);
                sig[v] = ((colours[v] as u64) << 42) | (pack(&outs[..no]) << 21) | pack(&ins[..ni]);
            }
            let d = rank(&sig[..n], &mut colours);
            if d == distinct {
                return colours;
            }
            distinct = d;
        }
    }
}

/// Replaces each signature by its rank among the distinct values; returns how many there are.
fn rank(sig: &[u64], out: &mut [u8; MAX_VERTICES]) -> usize {
    let mut sorted: Vec<u64> = sig.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    for (v, s) in sig.iter().enumerate() {
        out[v] = sorted.binary_search(s).expect("present") as u8;
    }
    sorted.len()
}

impl Nb101Arch {
    /// A graph from its matrix and interior ops; checked for shape only (see
    /// [`Nb101Arch::validate`] for validity).
    pub fn new(matrix: Vec<Vec<bool>>, ops: Vec<Nb101Op>) -> Result<Nb101Arch, SpaceError> {
        let a = Nb101Arch { matrix, ops };
        a.check_shape()?;
        Ok(a)
    }

    /// The number of vertices, input and output included.
    pub fn num_vertices(&self) -> usize {
        self.matrix.len()
    }

    /// The number of edges.
    pub fn num_edges(&self) -> usize {
        self.matrix.iter().flatten().filter(|&&b| b).count()
    }

    fn check_shape(&self) -> Result<(), SpaceError> {
        let n = self.matrix.len();
        if !(2..=MAX_VERTICES).contains(&n) {
            return Err(SpaceError::Invalid(format!(
                "{n} vertices; a graph has 2..={MAX_VERTICES}"
            )));
        }
        for (i, row) in self.matrix.iter().enumerate() {
            if row.len() != n {
                return Err(SpaceError::Invalid(format!(
                    "row {i} of the matrix has {} entries; the matrix must be {n}x{n}",
                    row.len()
                )));
            }
            if let Some(j) = (0..=i).find(|&j| row[j]) {
                return Err(SpaceError::Invalid(format!(
                    "edge {i}->{j} is not strictly upper triangular (edges go from lower to \
                     higher vertices)"
                )));
            }
        }
        if self.ops.len() != n - 2 {
            return Err(SpaceError::Invalid(format!(
                "{} interior ops for {n} vertices; need {}",
                self.ops.len(),
                n - 2
            )));
        }
        Ok(())
    }

    fn graph(&self) -> Graph {
        let n = self.matrix.len();
        let mut g = Graph {
            n,
            adj: [0; MAX_VERTICES],
            ops: [0; MAX_VERTICES],
        };
        for i in 0..n {
            for j in 0..n {
                if self.matrix[i][j] {
                    g.adj[i] |= 1 << j;
                }
            }
        }
        g.ops[0] = 3;
        g.ops[n - 1] = 4;
        for (k, op) in self.ops.iter().enumerate() {
            g.ops[k + 1] = op.index() as u8;
        }
        g
    }

    fn from_graph(g: &Graph) -> Nb101Arch {
        let n = g.n;
        Nb101Arch {
            matrix: (0..n)
                .map(|i| (0..n).map(|j| g.adj[i] & (1 << j) != 0).collect())
                .collect(),
            ops: (1..n - 1)
                .map(|v| Nb101Op::ALL[g.ops[v] as usize])
                .collect(),
        }
    }

    /// `Ok(())` when the shape is right, the input reaches the output and the pruned graph has
    /// at most 9 edges.
    pub fn validate(&self) -> Result<(), SpaceError> {
        self.check_shape()?;
        let p = self.graph().pruned().ok_or_else(|| {
            SpaceError::Invalid("no path from the input to the output".to_string())
        })?;
        if p.num_edges() > MAX_EDGES {
            return Err(SpaceError::Invalid(format!(
                "{} edges after pruning; at most {MAX_EDGES} are allowed",
                p.num_edges()
            )));
        }
        Ok(())
    }

    /// Whether [`Nb101Arch::validate`] succeeds.
    pub fn is_valid(&self) -> bool {
        self.validate().is_ok()
    }

    /// The graph without the vertices that lie on no input-to-output path (their edges go
    /// too); an error when the shape is wrong or the output is unreachable.
    pub fn prune(&self) -> Result<Nb101Arch, SpaceError> {
        self.check_shape()?;
        let p = self.graph().pruned().ok_or_else(|| {
            SpaceError::Invalid("no path from the input to the output".to_string())
        })?;
        Ok(Nb101Arch::from_graph(&p))
    }

    /// The isomorphism-invariant hash: the canonical code of the pruned graph (see the
    /// [module docs](self)). Equal exactly when the pruned graphs are isomorphic by a
    /// relabelling of interior vertices with the same ops. A graph whose output is
    /// unreachable (or of the wrong shape) hashes its raw form with bit 63 set.
    pub fn iso_hash(&self) -> u64 {
        if self.check_shape().is_err() {
            // Not a graph at all: a stable hash of the value, kept apart by bit 63.
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            self.hash(&mut h);
            return h.finish() | (1 << 63);
        }
        let g = self.graph();
        match g.pruned() {
            Some(p) => p.canonical_code(),
            None => g.canonical_code() | (1 << 63),
        }
    }

    /// The same graph on 7 vertices: interior vertices keep their numbers, the output becomes
    /// vertex 6 and the new vertices `n-1..=5` are unconnected `conv3x3-bn-relu`. Pruning it
    /// gives the pruned original back.
    pub fn to_full(&self) -> Nb101Arch {
        let n = self.matrix.len();
        if n == MAX_VERTICES {
            return self.clone();
        }
        let map = |v: usize| if v == n - 1 { MAX_VERTICES - 1 } else { v };
        let mut matrix = vec![vec![false; MAX_VERTICES]; MAX_VERTICES];
        for i in 0..n {
            for j in 0..n {
                if self.matrix[i][j] {
                    matrix[map(i)][map(j)] = true;
                }
            }
        }
        let mut ops = self.ops.clone();
        ops.resize(MAX_VERTICES - 2, Nb101Op::Conv3x3BnRelu);
        Nb101Arch { matrix, ops }
    }

    /// Every input-to-output path as its sequence of interior ops.
    pub fn paths(&self) -> Vec<Vec<Nb101Op>> {
        let n = self.matrix.len();
        let mut out = Vec::new();
        let mut stack = vec![(0usize, Vec::new())];
        while let Some((v, ops)) = stack.pop() {
            for w in (v + 1..n).rev() {
                if self.matrix[v][w] {
                    if w == n - 1 {
                        out.push(ops.clone());
                    } else {
                        let mut next: Vec<Nb101Op> = ops.clone();
                        next.push(self.ops[w - 1]);
                        stack.push((w, next));
                    }
                }
            }
        }
        out
    }

    /// Path encoding of BANANAS (White et al., AAAI 2021): one indicator per sequence of
    /// 0..=5 interior ops (`1 + 3 + 9 + 27 + 81 + 243 = 364` features), set when some
    /// input-to-output path carries exactly that op sequence. Index: sequences grouped by
    /// length, each read as base-3 digits (first op most significant).
    pub fn path_encoding(&self) -> Vec<f32> {
        let mut v = vec![0.0; 364];
        for path in self.paths() {
            let offset: usize = (0..path.len()).map(|l| 3usize.pow(l as u32)).sum();
            let idx = path.iter().fold(0, |acc, op| acc * 3 + op.index());
            v[offset + idx] = 1.0;
        }
        v
    }

    /// Adjacency encoding of the 7-vertex form: the 21 upper-triangular matrix entries
    /// (row-major) then the 5 interior ops one-hot (36 features).
    pub fn adjacency_encoding(&self) -> Vec<f32> {
        let full = self.to_full();
        let mut v = Vec::with_capacity(36);
        for i in 0..MAX_VERTICES {
            for j in i + 1..MAX_VERTICES {
                v.push(if full.matrix[i][j] { 1.0 } else { 0.0 });
            }
        }
        for op in &full.ops {
            for k in 0..3 {
                v.push(if op.index() == k { 1.0 } else { 0.0 });
            }
        }
        v
    }

    /// Parses `ModelSpec(matrix=[[0, 1], [0, 0]], ops=['input', 'output'])` (the
    /// `ModelSpec(...)` wrapper is optional, quotes may be single or double); the graph must
    /// be valid.
    pub fn parse(text: &str) -> Result<Nb101Arch, SpaceError> {
        let mut c = Cursor::new(text);
        c.skip_ws();
        let wrapped = c.eat("ModelSpec");
        if wrapped {
            c.skip_ws();
            c.expect("(")?;
            c.skip_ws();
        }
        c.expect("matrix")?;
        c.skip_ws();
        c.expect("=")?;
        c.skip_ws();
        let matrix_pos = c.pos();
        let rows = parse_matrix(&mut c)?;
        c.skip_ws();
        c.expect(",")?;
        c.skip_ws();
        c.expect("ops")?;
        c.skip_ws();
        c.expect("=")?;
        c.skip_ws();
        let ops_pos = c.pos();
        let names = parse_names(&mut c)?;
        c.skip_ws();
        if wrapped {
            c.eat(",");
            c.skip_ws();
            c.expect(")")?;
            c.skip_ws();
        }
        if !c.at_end() {
            return Err(c.error(format!("expected end of input, found {}", c.found())));
        }
        let n = rows.len();
        if names.len() != n {
            return Err(c.error_at(
                ops_pos,
                format!("{} op names for a {n}-vertex matrix", names.len()),
            ));
        }
        let (first, first_pos) = &names[0];
        if first != "input" {
            return Err(c.error_at(
                *first_pos,
                format!("the first op must be 'input', found {first:?}"),
            ));
        }
        let (last, last_pos) = &names[n - 1];
        if n < 2 || last != "output" {
            return Err(c.error_at(
                *last_pos,
                format!("the last op must be 'output', found {last:?}"),
            ));
        }
        let mut ops = Vec::with_capacity(n - 2);
        for (name, pos) in &names[1..n - 1] {
            ops.push(Nb101Op::from_str(name).map_err(|_| {
                c.error_at(
                    *pos,
                    format!(
                        "unknown NAS-Bench-101 op {name:?} (expected conv3x3-bn-relu, \
                         conv1x1-bn-relu or maxpool3x3)"
                    ),
                )
            })?);
        }
        let arch = Nb101Arch { matrix: rows, ops };
        arch.validate()
            .map_err(|e| c.error_at(matrix_pos, format!("not a graph of the space: {e}")))?;
        Ok(arch)
    }
}

/// Parses a square 0/1 matrix `[[0, 1], [0, 0]]` of 2..=7 rows.
fn parse_matrix(c: &mut Cursor<'_>) -> Result<Vec<Vec<bool>>, SpaceError> {
    let start = c.pos();
    c.expect("[")?;
    let mut rows: Vec<Vec<bool>> = Vec::new();
    loop {
        c.skip_ws();
        if c.eat("]") {
            break;
        }
        let row_pos = c.pos();
        c.expect("[")?;
        let mut row = Vec::new();
        loop {
            c.skip_ws();
            if c.eat("]") {
                break;
            }
            let p = c.pos();
            let v = c.number()?;
            if v > 1 {
                return Err(c.error_at(p, format!("matrix entry {v} is not 0 or 1")));
            }
            if row.len() == MAX_VERTICES {
                return Err(c.error_at(p, format!("a row has more than {MAX_VERTICES} entries")));
            }
            row.push(v == 1);
            c.skip_ws();
            if c.eat(",") {
                continue;
            }
            c.skip_ws();
            c.expect("]")?;
            break;
        }
        if rows.len() == MAX_VERTICES {
            return Err(c.error_at(
                row_pos,
                format!("the matrix has more than {MAX_VERTICES} rows"),
            ));
        }
        if let Some(first) = rows.first()
            && first.len() != row.len()
        {
            return Err(c.error_at(
                row_pos,
                format!(
                    "row {} has {} entries, row 0 has {}",
                    rows.len(),
                    row.len(),
                    first.len()
                ),
            ));
        }
        rows.push(row);
        c.skip_ws();
        if c.eat(",") {
            continue;
        }
        c.skip_ws();
        c.expect("]")?;
        break;
    }
    let n = rows.len();
    if n < 2 {
        return Err(c.error_at(
            start,
            format!("{n} rows; a graph has 2..={MAX_VERTICES} vertices"),
        ));
    }
    if rows[0].len() != n {
        return Err(c.error_at(
            start,
            format!("the matrix is {n}x{}, not square", rows[0].len()),
        ));
    }
    Ok(rows)
}

/// Parses a list of quoted names `['input', "output"]` with their byte positions.
fn parse_names(c: &mut Cursor<'_>) -> Result<Vec<(String, usize)>, SpaceError> {
    c.expect("[")?;
    let mut names = Vec::new();
    loop {
        c.skip_ws();
        if c.eat("]") {
            break;
        }
        let quote = match c.peek() {
            Some(b'\'') => "'",
            Some(b'"') => "\"",
            _ => return Err(c.error(format!("expected a quoted op name, found {}", c.found()))),
        };
        c.expect(quote)?;
        let pos = c.pos();
        let name = c.take_while(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        c.expect(quote)?;
        if names.len() == MAX_VERTICES {
            return Err(c.error_at(pos, format!("more than {MAX_VERTICES} op names")));
        }
        names.push((name.to_string(), pos));
        c.skip_ws();
        if c.eat(",") {
            continue;
        }
        c.skip_ws();
        c.expect("]")?;
        break;
    }
    if names.is_empty() {
        return Err(c.error("the op list is empty"));
    }
    Ok(names)
}

impl fmt::Display for Nb101Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ModelSpec(matrix=[")?;
        for (i, row) in self.matrix.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str("[")?;
            for (j, &b) in row.iter().enumerate() {
                if j > 0 {
                    f.write_str(", ")?;
                }
                f.write_str(if b { "1" } else { "0" })?;
            }
            f.write_str("]")?;
        }
        f.write_str("], ops=['input'")?;
        for op in &self.ops {
            write!(f, ", '{}'", op.as_str())?;
        }
        if !self.matrix.is_empty() {
            f.write_str(", 'output'")?;
        }
        f.write_str("])")
    }
}

impl FromStr for Nb101Arch {
    type Err = SpaceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Nb101Arch::parse(s)
    }
}

/// The upper-triangular positions `(i, j)` of a 7-vertex matrix in decision order.
fn full_edges() -> impl Iterator<Item = (usize, usize)> {
    (0..MAX_VERTICES).flat_map(|i| (i + 1..MAX_VERTICES).map(move |j| (i, j)))
}

/// The NAS-Bench-101 style space (a unit struct; see the [module docs](self) for conventions).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nb101Space;

impl Nb101Space {
    /// The number of isomorphism classes of valid graphs (Ying et al. 2019; reproduced by
    /// `examples/nb101_enumerate.rs`).
    pub const UNIQUE_GRAPHS: u128 = 423_624;

    /// Every valid graph with at most `max_vertices` vertices in pruned form (each vertex on
    /// an input-to-output path), one call of `f` per labelled graph (not up to isomorphism).
    pub fn for_each_pruned_graph(max_vertices: usize, mut f: impl FnMut(&Nb101Arch)) {
        for n in 2..=max_vertices.min(MAX_VERTICES) {
            let pairs: Vec<(usize, usize)> = (0..n)
                .flat_map(|i| (i + 1..n).map(move |j| (i, j)))
                .collect();
            for bits in 0u32..(1 << pairs.len()) {
                if bits.count_ones() as usize > MAX_EDGES {
                    continue;
                }
                let mut g = Graph {
                    n,
                    adj: [0; MAX_VERTICES],
                    ops: [0; MAX_VERTICES],
                };
                for (b, &(i, j)) in pairs.iter().enumerate() {
                    if bits & (1 << b) != 0 {
                        g.adj[i] |= 1 << j;
                    }
                }
                let all = ((1u16 << n) - 1) as u8;
                if g.forward() & g.backward() != all {
                    continue;
                }
                g.ops[0] = 3;
                g.ops[n - 1] = 4;
                let interior = n - 2;
                for labels in 0..3usize.pow(interior as u32) {
                    let mut l = labels;
                    for v in 1..n - 1 {
                        g.ops[v] = (l % 3) as u8;
                        l /= 3;
                    }
                    f(&Nb101Arch::from_graph(&g));
                }
            }
        }
    }

    /// The number of isomorphism classes of valid graphs with at most `max_vertices` vertices,
    /// by enumeration ([`Nb101Space::for_each_pruned_graph`] and [`Nb101Arch::iso_hash`]).
    /// With 7 it gives [`Nb101Space::UNIQUE_GRAPHS`], hashing 1,293,208 labelled graphs (a few
    /// seconds in release; see `examples/nb101_enumerate.rs`).
    pub fn count_unique_graphs(max_vertices: usize) -> usize {
        let mut seen = std::collections::HashSet::new();
        Nb101Space::for_each_pruned_graph(max_vertices, |a| {
            seen.insert(a.iso_hash());
        });
        seen.len()
    }

    fn full_from_choices(choices: &[usize]) -> Nb101Arch {
        let mut matrix = vec![vec![false; MAX_VERTICES]; MAX_VERTICES];
        for ((i, j), &c) in full_edges().zip(choices) {
            matrix[i][j] = c == 1;
        }
        let ops = choices[FULL_EDGES..]
            .iter()
            .map(|&c| Nb101Op::ALL[c])
            .collect();
        Nb101Arch { matrix, ops }
    }
}

impl SearchSpace for Nb101Space {
    type Arch = Nb101Arch;

    fn name(&self) -> &'static str {
        "nb101"
    }

    fn features(&self, arch: &Nb101Arch) -> Vec<f32> {
        arch.path_encoding()
    }

    fn sample(&self, rng: &mut dyn RngCore) -> Nb101Arch {
        let sizes = self.decisions();
        loop {
            let choices: Vec<usize> = sizes.iter().map(|&n| rng.random_range(0..n)).collect();
            let a = Nb101Space::full_from_choices(&choices);
            if a.is_valid() {
                return a;
            }
        }
    }

    fn mutate(&self, arch: &Nb101Arch, rng: &mut dyn RngCore) -> Nb101Arch {
        let ns = self.neighbours(arch);
        if ns.is_empty() {
            // Only a malformed input has no valid neighbour (a 7-vertex form always has 10 op
            // changes); return it unchanged rather than panic.
            return arch.clone();
        }
        ns[rng.random_range(0..ns.len())].clone()
    }

    fn crossover(&self, a: &Nb101Arch, b: &Nb101Arch, rng: &mut dyn RngCore) -> Nb101Arch {
        let ca = self.encode_decisions(a);
        let cb = self.encode_decisions(b);
        for _ in 0..100 {
            let child: Vec<usize> = ca
                .iter()
                .zip(&cb)
                .map(|(&x, &y)| if rng.random_bool(0.5) { y } else { x })
                .collect();
            let c = Nb101Space::full_from_choices(&child);
            if c.is_valid() {
                return c;
            }
        }
        a.to_full()
    }

    fn neighbours(&self, arch: &Nb101Arch) -> Vec<Nb101Arch> {
        if arch.check_shape().is_err() {
            return Vec::new();
        }
        let full = arch.to_full();
        let mut out = Vec::with_capacity(31);
        for (i, j) in full_edges() {
            let mut n = full.clone();
            n.matrix[i][j] = !n.matrix[i][j];
            if n.is_valid() {
                out.push(n);
            }
        }
        for v in 0..MAX_VERTICES - 2 {
            for op in Nb101Op::ALL {
                if op != full.ops[v] {
                    let mut n = full.clone();
                    n.ops[v] = op;
                    if n.is_valid() {
                        out.push(n);
                    }
                }
            }
        }
        out
    }

    fn validate(&self, arch: &Nb101Arch) -> Result<(), SpaceError> {
        arch.validate()
    }

    fn canonical(&self, arch: &Nb101Arch) -> String {
        format!("{:016x}", arch.iso_hash())
    }

    fn size(&self) -> Option<u128> {
        Some(Nb101Space::UNIQUE_GRAPHS)
    }

    fn decisions(&self) -> Vec<usize> {
        let mut d = vec![2; FULL_EDGES];
        d.extend([3; MAX_VERTICES - 2]);
        d
    }

    fn encode_decisions(&self, arch: &Nb101Arch) -> Vec<usize> {
        if arch.check_shape().is_err() {
            return vec![0; FULL_EDGES + MAX_VERTICES - 2];
        }
        let full = arch.to_full();
        let mut out: Vec<usize> = full_edges()
            .map(|(i, j)| usize::from(full.matrix[i][j]))
            .collect();
        out.extend(full.ops.iter().map(|op| op.index()));
        out
    }

    fn decode_decisions(&self, choices: &[usize]) -> Result<Nb101Arch, SpaceError> {
        let sizes = self.decisions();
        if choices.len() != sizes.len() {
            return Err(SpaceError::Encoding(format!(
                "a NAS-Bench-101 graph needs {} choices (21 edges, 5 ops), got {}",
                sizes.len(),
                choices.len()
            )));
        }
        for (i, (&c, &n)) in choices.iter().zip(&sizes).enumerate() {
            if c >= n {
                return Err(SpaceError::Encoding(format!(
                    "choice {c} of decision {i} is out of range 0..{n}"
                )));
            }
        }
        let a = Nb101Space::full_from_choices(choices);
        a.validate()?;
        Ok(a)
    }

    fn distance(&self, a: &Nb101Arch, b: &Nb101Arch) -> usize {
        self.encode_decisions(a)
            .iter()
            .zip(self.encode_decisions(b))
            .filter(|(x, y)| **x != *y)
            .count()
    }

    fn to_text(&self, arch: &Nb101Arch) -> String {
        arch.to_string()
    }

    fn parse(&self, text: &str) -> Result<Nb101Arch, SpaceError> {
        Nb101Arch::parse(text)
    }
}
