//! The DARTS recurrent-cell space (Liu, Simonyan & Yang, ICLR 2019, section 3 and the
//! original code's `rnn/`).
//!
//! The cell reads the input `x_t` and the previous state `h_{t-1}`; a highway layer turns
//! them into node 0. Each of the 8 nodes `1..=8` reads **one** earlier node `j < i` through a
//! highway step with one activation among `tanh`, `relu`, `sigmoid`, `identity` (the search's
//! mixed op adds `none`, which a derived cell never keeps); the new state `h_t` is the mean of
//! nodes 1..=8. The graph is therefore a tree rooted at node 0 with an activation on every
//! edge.
//!
//! Text form: the original code's Python form, e.g. [`DARTS_V2_RNN`] is
//! `Genotype(recurrent=[('sigmoid', 0), ('relu', 1), ('relu', 1), ('identity', 1),
//! ('tanh', 2), ('sigmoid', 5), ('tanh', 3), ('relu', 5)], concat=range(1, 9))`: entry `k`
//! is node `k + 1`'s `(activation, input)`. The parser accepts single or double quotes, any
//! whitespace, the keyword arguments in any order, a trailing comma, and `concat` as
//! `range(1, 9)` or `[1, 2, ..., 8]` (the only concat of this space).
//!
//! Conventions of [`RnnSpace`]:
//! - **size**: node `i` has `i` inputs and 4 activations: `prod_i 4 i = 4^8 * 8! =`
//!   **2,642,411,520**;
//! - **decisions**: per node `1..=8`, its input (`i` choices) then its activation (4): 16
//!   decisions whose product is the size, so every choice vector is a valid cell;
//! - **mutation**: one node changes its activation (3 choices) or its input (`i - 1`
//!   choices): `24 + 28 =` **52** neighbours;
//! - **distance**: the number of differing decisions (the minimum number of mutations);
//! - **canonical**: the cell renumbered so that equal trees print equally (nodes in the
//!   depth-first preorder of the tree whose children are sorted by their canonical subtree):
//!   cells that differ only by a renumbering of nodes that keeps every input earlier than its
//!   node compute the same function up to a permutation of their weights, since the output
//!   averages all nodes.
//!
//! ```
//! use nas_space::SearchSpace;
//! use nas_space::rnn::{DARTS_V2_RNN, RnnGenotype, RnnSpace};
//!
//! let text = DARTS_V2_RNN.to_string();
//! assert!(text.starts_with("Genotype(recurrent=[('sigmoid', 0), ('relu', 1), "));
//! assert_eq!(RnnGenotype::parse(&text).unwrap(), DARTS_V2_RNN);
//! assert_eq!(RnnSpace.neighbours(&DARTS_V2_RNN).len(), 52);
//! assert_eq!(RnnSpace.size(), Some(2_642_411_520));
//! ```

use crate::text::Cursor;
use crate::{SearchSpace, SpaceError};
use rand::{Rng, RngCore};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The primitives of the DARTS recurrent supernet, in the original order, `none` first.
pub const RNN_PRIMITIVES: [&str; 5] = ["none", "tanh", "relu", "sigmoid", "identity"];

/// The number of nodes after node 0.
pub const NUM_NODES: usize = 8;

/// One of the 4 activations a discrete recurrent cell may use.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord, Serialize, Deserialize)]
pub enum RnnActivation {
    /// `tanh`.
    Tanh,
    /// `relu`.
    Relu,
    /// `sigmoid`.
    Sigmoid,
    /// `identity`.
    Identity,
}

impl RnnActivation {
    /// The 4 activations in the order of [`RNN_PRIMITIVES`] (after `none`).
    pub const ALL: [RnnActivation; 4] = [
        RnnActivation::Tanh,
        RnnActivation::Relu,
        RnnActivation::Sigmoid,
        RnnActivation::Identity,
    ];

    /// The original code's name.
    pub fn as_str(self) -> &'static str {
        RNN_PRIMITIVES[self.index() + 1]
    }

    /// The position in [`RnnActivation::ALL`] (0..4).
    pub fn index(self) -> usize {
        self as usize
    }

    /// The activation at position `i` of [`RnnActivation::ALL`].
    pub fn from_index(i: usize) -> Option<RnnActivation> {
        RnnActivation::ALL.get(i).copied()
    }

    /// The activation named `name` (not `none`).
    pub fn from_name(name: &str) -> Option<RnnActivation> {
        RnnActivation::ALL.into_iter().find(|a| a.as_str() == name)
    }
}

impl fmt::Display for RnnActivation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A recurrent cell: `nodes[k]` is node `k + 1`'s `(activation, input)`, `input` in `0..=k`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RnnGenotype {
    /// Node `k + 1`'s activation and the node it reads.
    pub nodes: [(RnnActivation, usize); NUM_NODES],
}

use RnnActivation::{Identity, Relu, Sigmoid, Tanh};

/// DARTS (first order), published as `DARTS_V1` in the original code's `rnn/genotypes.py`.
pub const DARTS_V1_RNN: RnnGenotype = RnnGenotype {
    nodes: [
        (Relu, 0),
        (Relu, 1),
        (Tanh, 2),
        (Relu, 3),
        (Relu, 4),
        (Identity, 1),
        (Relu, 5),
        (Relu, 1),
    ],
};

/// DARTS (second order), published as `DARTS_V2` (the code's `DARTS`): the cell of the
/// paper's Penn Treebank result.
pub const DARTS_V2_RNN: RnnGenotype = RnnGenotype {
    nodes: [
        (Sigmoid, 0),
        (Relu, 1),
        (Relu, 1),
        (Identity, 1),
        (Tanh, 2),
        (Sigmoid, 5),
        (Tanh, 3),
        (Relu, 5),
    ],
};

impl RnnGenotype {
    /// A cell from its nodes, checked by [`RnnGenotype::validate`].
    pub fn new(nodes: [(RnnActivation, usize); NUM_NODES]) -> Result<RnnGenotype, SpaceError> {
        let g = RnnGenotype { nodes };
        g.validate()?;
        Ok(g)
    }

    /// `Ok(())` when every node reads an existing, earlier node. Otherwise the error says
    /// which node reads what: a node outside `0..=8`, a cycle (listed), or a later node.
    pub fn validate(&self) -> Result<(), SpaceError> {
        let inputs: Vec<usize> = self.nodes.iter().map(|&(_, j)| j).collect();
        check_inputs(&inputs).map_err(SpaceError::Invalid)
    }

    /// The input of node `i` (`1..=8`).
    pub fn input(&self, i: usize) -> usize {
        self.nodes[i - 1].1
    }

    /// The activation of node `i` (`1..=8`).
    pub fn activation(&self, i: usize) -> RnnActivation {
        self.nodes[i - 1].0
    }

    /// The canonical renumbering (see the [module docs](self)): equal for cells that differ
    /// only by an order-keeping renumbering of their nodes.
    pub fn canonical(&self) -> RnnGenotype {
        let mut children: Vec<Vec<usize>> = vec![Vec::new(); NUM_NODES + 1];
        for i in 1..=NUM_NODES {
            children[self.input(i)].push(i);
        }
        // Canonical strings of the subtrees, leaves first (children have larger numbers).
        let mut key: Vec<String> = vec![String::new(); NUM_NODES + 1];
        for v in (0..=NUM_NODES).rev() {
            let mut parts: Vec<&String> = children[v].iter().map(|&c| &key[c]).collect();
            parts.sort();
            let label = if v == 0 {
                "x"
            } else {
                self.activation(v).as_str()
            };
            let inner: Vec<&str> = parts.iter().map(|s| s.as_str()).collect();
            key[v] = format!("{label}({})", inner.join(","));
        }
        for list in children.iter_mut() {
            list.sort_by(|&a, &b| key[a].cmp(&key[b]));
        }
        // Preorder numbering from node 0.
        let mut number = [0usize; NUM_NODES + 1];
        let mut order = Vec::with_capacity(NUM_NODES + 1);
        let mut stack = vec![0usize];
        while let Some(v) = stack.pop() {
            number[v] = order.len();
            order.push(v);
            for &c in children[v].iter().rev() {
                stack.push(c);
            }
        }
        let mut nodes = self.nodes;
        for (new, &old) in order.iter().enumerate().skip(1) {
            nodes[new - 1] = (self.activation(old), number[self.input(old)]);
        }
        RnnGenotype { nodes }
    }

    /// Parses the Python form (see the [module docs](self)); the result is validated.
    pub fn parse(text: &str) -> Result<RnnGenotype, SpaceError> {
        let mut c = Cursor::new(text);
        c.skip_ws();
        c.expect("Genotype")?;
        c.skip_ws();
        c.expect("(")?;
        let mut recurrent = None;
        let mut concat = false;
        loop {
            c.skip_ws();
            if c.eat(")") {
                break;
            }
            let key_pos = c.pos();
            let key = c.take_while(|b| b.is_ascii_alphanumeric() || b == b'_');
            let seen = match key {
                "recurrent" => recurrent.is_some(),
                "concat" => concat,
                "" => {
                    return Err(c.error(format!(
                        "expected a keyword argument (recurrent, concat) or \")\", found {}",
                        c.found()
                    )));
                }
                other => {
                    return Err(c.error_at(
                        key_pos,
                        format!("unknown field {other:?} (expected recurrent, concat)"),
                    ));
                }
            };
            if seen {
                return Err(c.error_at(key_pos, format!("field {key:?} given twice")));
            }
            c.skip_ws();
            c.expect("=")?;
            c.skip_ws();
            if key == "recurrent" {
                recurrent = Some(parse_nodes(&mut c)?);
            } else {
                parse_concat(&mut c)?;
                concat = true;
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
        if !concat {
            return Err(c.error("the genotype lacks the field \"concat\""));
        }
        recurrent.ok_or_else(|| c.error("the genotype lacks the field \"recurrent\""))
    }
}

/// Checks node inputs (`inputs[k]` is node `k + 1`'s): in range, acyclic, earlier.
fn check_inputs(inputs: &[usize]) -> Result<(), String> {
    for (k, &j) in inputs.iter().enumerate() {
        if j > NUM_NODES {
            return Err(format!(
                "node {} reads node {j}, which does not exist (the cell has nodes 0..={NUM_NODES})",
                k + 1
            ));
        }
    }
    // Each node reads one node: follow the inputs from every node to find a cycle.
    for start in 1..=inputs.len() {
        let mut path = vec![start];
        let mut v = start;
        while v != 0 {
            v = inputs[v - 1];
            if let Some(at) = path.iter().position(|&p| p == v) {
                let mut cycle: Vec<String> = path[at..].iter().map(|p| p.to_string()).collect();
                cycle.push(v.to_string());
                return Err(format!(
                    "nodes {} form a cycle (each node must read an earlier node)",
                    cycle.join(" -> ")
                ));
            }
            path.push(v);
        }
    }
    for (k, &j) in inputs.iter().enumerate() {
        if j > k {
            return Err(format!(
                "node {} reads node {j}, which comes after it (node {} may read nodes 0..={k})",
                k + 1,
                k + 1
            ));
        }
    }
    Ok(())
}

/// Parses `[('act', i), ...]` with exactly 8 entries forming a valid cell.
fn parse_nodes(c: &mut Cursor<'_>) -> Result<RnnGenotype, SpaceError> {
    let list_pos = c.pos();
    c.expect("[")?;
    let mut nodes: Vec<(RnnActivation, usize)> = Vec::with_capacity(NUM_NODES);
    let mut positions = Vec::with_capacity(NUM_NODES);
    loop {
        c.skip_ws();
        if c.eat("]") {
            break;
        }
        let entry_pos = c.pos();
        c.expect("(")?;
        c.skip_ws();
        let quote = match c.peek() {
            Some(b'\'') => "'",
            Some(b'"') => "\"",
            _ => {
                return Err(c.error(format!(
                    "expected a quoted activation name, found {}",
                    c.found()
                )));
            }
        };
        c.expect(quote)?;
        let name_pos = c.pos();
        let name = c.take_while(|b| b.is_ascii_alphanumeric() || b == b'_');
        let act = RnnActivation::from_name(name).ok_or_else(|| {
            let why = if name == "none" {
                " (`none` is a supernet choice; a derived cell has none)"
            } else {
                ""
            };
            c.error_at(
                name_pos,
                format!(
                    "unknown activation {name:?}{why} (expected one of {:?})",
                    &RNN_PRIMITIVES[1..]
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
        if nodes.len() == NUM_NODES {
            return Err(c.error_at(
                entry_pos,
                format!("the cell has more than {NUM_NODES} nodes"),
            ));
        }
        nodes.push((act, input));
        positions.push(entry_pos);
        c.skip_ws();
        if c.eat(",") {
            continue;
        }
        c.skip_ws();
        c.expect("]")?;
        break;
    }
    if nodes.len() != NUM_NODES {
        return Err(c.error_at(
            list_pos,
            format!("the cell has {} nodes; it needs {NUM_NODES}", nodes.len()),
        ));
    }
    let inputs: Vec<usize> = nodes.iter().map(|&(_, j)| j).collect();
    if let Err(message) = check_inputs(&inputs) {
        // Point at the first offending entry: out of range or later than its node.
        let at = inputs
            .iter()
            .enumerate()
            .find(|&(k, &j)| j > k)
            .map_or(list_pos, |(k, _)| positions[k]);
        return Err(c.error_at(at, message));
    }
    let mut g = RnnGenotype {
        nodes: [(Tanh, 0); NUM_NODES],
    };
    g.nodes.copy_from_slice(&nodes);
    Ok(g)
}

/// Parses `range(1, 9)` or `[1, 2, ..., 8]`; any other concat is an error.
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
        values.extend(lo..hi.max(lo));
    } else {
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
    }
    if values != (1..=NUM_NODES).collect::<Vec<_>>() {
        return Err(c.error_at(
            start,
            format!("concat must be range(1, 9) (the mean of nodes 1..=8), got {values:?}"),
        ));
    }
    Ok(())
}

impl fmt::Display for RnnGenotype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Genotype(recurrent=[")?;
        for (k, (act, input)) in self.nodes.iter().enumerate() {
            if k > 0 {
                f.write_str(", ")?;
            }
            write!(f, "('{}', {input})", act.as_str())?;
        }
        write!(f, "], concat=range(1, {}))", NUM_NODES + 1)
    }
}

/// The DARTS recurrent-cell space, see the [module docs](self).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RnnSpace;

impl RnnSpace {
    /// Applies move `m` to node `i` (`1..=8`): `m < 3` changes the activation to the `m`-th
    /// other one; `m >= 3` changes the input to the `(m - 3)`-th other earlier node.
    fn apply_move(g: &mut RnnGenotype, i: usize, m: usize) {
        let (act, input) = g.nodes[i - 1];
        if m < 3 {
            let others: Vec<RnnActivation> = RnnActivation::ALL
                .into_iter()
                .filter(|&a| a != act)
                .collect();
            g.nodes[i - 1].0 = others[m];
        } else {
            let others: Vec<usize> = (0..i).filter(|&j| j != input).collect();
            g.nodes[i - 1].1 = others[m - 3];
        }
    }

    /// Moves of node `i`: 3 activation changes and `i - 1` input changes.
    fn moves(i: usize) -> usize {
        3 + (i - 1)
    }
}

impl SearchSpace for RnnSpace {
    type Arch = RnnGenotype;

    fn name(&self) -> &'static str {
        "rnn"
    }

    fn sample(&self, rng: &mut dyn RngCore) -> RnnGenotype {
        let choices: Vec<usize> = self
            .decisions()
            .iter()
            .map(|&n| rng.random_range(0..n))
            .collect();
        self.decode_decisions(&choices)
            .expect("choices drawn within range")
    }

    fn mutate(&self, arch: &RnnGenotype, rng: &mut dyn RngCore) -> RnnGenotype {
        let total: usize = (1..=NUM_NODES).map(RnnSpace::moves).sum();
        let mut m = rng.random_range(0..total);
        let mut out = *arch;
        for i in 1..=NUM_NODES {
            if m < RnnSpace::moves(i) {
                RnnSpace::apply_move(&mut out, i, m);
                break;
            }
            m -= RnnSpace::moves(i);
        }
        out
    }

    fn crossover(&self, a: &RnnGenotype, b: &RnnGenotype, rng: &mut dyn RngCore) -> RnnGenotype {
        let (ca, cb) = (self.encode_decisions(a), self.encode_decisions(b));
        let child: Vec<usize> = ca
            .iter()
            .zip(&cb)
            .map(|(&x, &y)| if rng.random_bool(0.5) { y } else { x })
            .collect();
        self.decode_decisions(&child)
            .expect("a per-decision mix of valid choices is valid")
    }

    fn neighbours(&self, arch: &RnnGenotype) -> Vec<RnnGenotype> {
        let mut out = Vec::with_capacity(52);
        for i in 1..=NUM_NODES {
            for m in 0..RnnSpace::moves(i) {
                let mut n = *arch;
                RnnSpace::apply_move(&mut n, i, m);
                out.push(n);
            }
        }
        out
    }

    fn validate(&self, arch: &RnnGenotype) -> Result<(), SpaceError> {
        arch.validate()
    }

    fn canonical(&self, arch: &RnnGenotype) -> String {
        arch.canonical().to_string()
    }

    fn size(&self) -> Option<u128> {
        Some((1..=NUM_NODES as u128).map(|i| 4 * i).product())
    }

    fn decisions(&self) -> Vec<usize> {
        (1..=NUM_NODES).flat_map(|i| [i, 4]).collect()
    }

    fn encode_decisions(&self, arch: &RnnGenotype) -> Vec<usize> {
        arch.nodes
            .iter()
            .flat_map(|&(act, input)| [input, act.index()])
            .collect()
    }

    fn decode_decisions(&self, choices: &[usize]) -> Result<RnnGenotype, SpaceError> {
        if choices.len() != 2 * NUM_NODES {
            return Err(SpaceError::Encoding(format!(
                "{} choices; the recurrent space has {} decisions",
                choices.len(),
                2 * NUM_NODES
            )));
        }
        let mut g = RnnGenotype {
            nodes: [(Tanh, 0); NUM_NODES],
        };
        for k in 0..NUM_NODES {
            let (input, act) = (choices[2 * k], choices[2 * k + 1]);
            if input > k {
                return Err(SpaceError::Encoding(format!(
                    "node {} input choice {input} is out of range (0..{})",
                    k + 1,
                    k + 1
                )));
            }
            let act = RnnActivation::from_index(act).ok_or_else(|| {
                SpaceError::Encoding(format!(
                    "node {} activation choice {act} is out of range (0..4)",
                    k + 1
                ))
            })?;
            g.nodes[k] = (act, input);
        }
        Ok(g)
    }

    fn distance(&self, a: &RnnGenotype, b: &RnnGenotype) -> usize {
        self.encode_decisions(a)
            .iter()
            .zip(self.encode_decisions(b))
            .filter(|&(x, y)| *x != y)
            .count()
    }

    fn to_text(&self, arch: &RnnGenotype) -> String {
        arch.to_string()
    }

    fn parse(&self, text: &str) -> Result<RnnGenotype, SpaceError> {
        RnnGenotype::parse(text)
    }
}
