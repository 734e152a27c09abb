//! The chain (macro) space: a plain sequence of layers, as searched by Zoph & Le (ICLR 2017)
//! and AutoKeras (Jin et al., KDD 2019).
//!
//! An architecture is a sequence of `1..=max_layers` layers, each an op kind ([`ChainOp`]) and
//! a width (units or channels) from the space's lists. [`ChainSpace`] is configurable (ops,
//! widths, maximum depth); [`ChainSpace::cnn`] (the default) and [`ChainSpace::mlp`] are
//! presets.
//!
//! Conventions:
//! - **moves**: add a layer (any op and width, at any of `len + 1` positions, while
//!   `len < max_layers`), remove a layer (while `len > 1`), change one layer's op *or* its
//!   width. [`SearchSpace::neighbours`] lists the *distinct* results, whose number has the
//!   closed form `[len < L] * ((len + 1) K - len) + [len > 1] * runs + len * (|ops| - 1 +
//!   |widths| - 1)`, with `K = |ops| * |widths|` and `runs` the number of maximal blocks of
//!   equal consecutive layers (inserting a layer next to an equal one, or removing either of
//!   two equal neighbours, gives the same chain);
//! - **mutation**: a move type chosen uniformly among those allowed, then a move of it
//!   uniformly;
//! - **distance**: edit distance with insertion and deletion costing 1 and substitution
//!   costing the number of differing fields (op, width): exactly the minimum number of moves;
//! - **decisions**: the depth (`max_layers` choices, depth `1 + choice`), then op and width
//!   of each of the `max_layers` slots (slots past the depth are ignored and encoded as 0);
//!   [`SearchSpace::sample`] draws the depth uniformly, then each layer uniformly;
//! - **crossover**: the depth from either parent, each field of each layer from either
//!   parent that has that layer;
//! - **canonical**: the text form (no two different chains are equivalent);
//! - **size**: `sum_{l=1..L} K^l` (`None` on overflow of `u128`).
//!
//! Text form: `conv3x3(32) -> sep_conv_5x5(64) -> dense(128)`.
//!
//! ```
//! use nas_space::SearchSpace;
//! use nas_space::chain::{ChainArch, ChainOp, ChainSpace};
//!
//! let space = ChainSpace::cnn();
//! let a = space.parse("conv3x3(32) -> conv3x3(32) -> sep_conv_5x5(64)").unwrap();
//! assert_eq!(a.layers[2].op, ChainOp::SepConv5x5);
//! assert_eq!(space.to_text(&a), "conv3x3(32) -> conv3x3(32) -> sep_conv_5x5(64)");
//! let b = space.parse("conv3x3(32) -> sep_conv_5x5(64)").unwrap();
//! assert_eq!(space.distance(&a, &b), 1);
//! assert!(space.neighbours(&a).contains(&b));
//! ```

use crate::text::Cursor;
use crate::{SearchSpace, SpaceError};
use rand::{Rng, RngCore};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The op kind of a chain layer; every kind has a width (output units or channels).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ChainOp {
    /// `dense`: fully connected layer, then ReLU.
    Dense,
    /// `conv1x1`: 1x1 convolution, batch norm, ReLU.
    Conv1x1,
    /// `conv3x3`: 3x3 convolution, batch norm, ReLU.
    Conv3x3,
    /// `conv5x5`: 5x5 convolution, batch norm, ReLU.
    Conv5x5,
    /// `sep_conv_3x3`: depthwise 3x3 then pointwise convolution, batch norm, ReLU.
    SepConv3x3,
    /// `sep_conv_5x5`: depthwise 5x5 then pointwise convolution, batch norm, ReLU.
    SepConv5x5,
}

impl ChainOp {
    /// Every op kind.
    pub const ALL: [ChainOp; 6] = [
        ChainOp::Dense,
        ChainOp::Conv1x1,
        ChainOp::Conv3x3,
        ChainOp::Conv5x5,
        ChainOp::SepConv3x3,
        ChainOp::SepConv5x5,
    ];

    /// The text name of the op.
    pub fn as_str(self) -> &'static str {
        match self {
            ChainOp::Dense => "dense",
            ChainOp::Conv1x1 => "conv1x1",
            ChainOp::Conv3x3 => "conv3x3",
            ChainOp::Conv5x5 => "conv5x5",
            ChainOp::SepConv3x3 => "sep_conv_3x3",
            ChainOp::SepConv5x5 => "sep_conv_5x5",
        }
    }

    /// Whether the op is a convolution (acts on images) rather than a dense layer.
    pub fn is_conv(self) -> bool {
        self != ChainOp::Dense
    }
}

crate::text::op_text!(ChainOp, "chain op");

/// One layer of a chain.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ChainLayer {
    /// The op kind.
    pub op: ChainOp,
    /// The output units (dense) or channels (convolutions).
    pub width: usize,
}

impl fmt::Display for ChainLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({})", self.op, self.width)
    }
}

/// A chain architecture: its layers, input side first.
#[derive(Clone, PartialEq, Eq, Hash, Debug, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ChainArch {
    /// The layers in order.
    pub layers: Vec<ChainLayer>,
}

impl ChainArch {
    /// Parses `op(width) -> op(width) -> ...` (at least one layer, widths positive); whether
    /// the chain belongs to a given space is checked by [`SearchSpace::parse`].
    pub fn parse(text: &str) -> Result<ChainArch, SpaceError> {
        let mut c = Cursor::new(text);
        let mut layers = Vec::new();
        loop {
            c.skip_ws();
            let name_pos = c.pos();
            let name = c.take_while(|b| b.is_ascii_alphanumeric() || b == b'_');
            if name.is_empty() {
                return Err(c.error(format!("expected a layer op name, found {}", c.found())));
            }
            let op = ChainOp::from_str(name).map_err(|e| match e {
                SpaceError::Parse { message, .. } => c.error_at(name_pos, message),
                other => other,
            })?;
            c.skip_ws();
            c.expect("(")?;
            c.skip_ws();
            let width_pos = c.pos();
            let width = c.number()?;
            if width == 0 {
                return Err(c.error_at(width_pos, "a layer width must be positive"));
            }
            c.skip_ws();
            c.expect(")")?;
            layers.push(ChainLayer { op, width });
            c.skip_ws();
            if c.at_end() {
                break;
            }
            c.expect("->")?;
        }
        Ok(ChainArch { layers })
    }

    /// The number of layers.
    pub fn len(&self) -> usize {
        self.layers.len()
    }

    /// Whether the chain has no layers (never true for an architecture of a space).
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }
}

impl fmt::Display for ChainArch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, l) in self.layers.iter().enumerate() {
            if i > 0 {
                f.write_str(" -> ")?;
            }
            write!(f, "{l}")?;
        }
        Ok(())
    }
}

impl FromStr for ChainArch {
    type Err = SpaceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ChainArch::parse(s)
    }
}

/// The serialised form of a [`ChainSpace`], checked on deserialisation.
#[derive(Clone, Serialize, Deserialize)]
struct RawChainSpace {
    max_layers: usize,
    ops: Vec<ChainOp>,
    widths: Vec<usize>,
}

/// A chain space: allowed ops, allowed widths and the maximum depth (see the
/// [module docs](self) for conventions).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawChainSpace", into = "RawChainSpace")]
pub struct ChainSpace {
    max_layers: usize,
    ops: Vec<ChainOp>,
    widths: Vec<usize>,
}

impl TryFrom<RawChainSpace> for ChainSpace {
    type Error = SpaceError;

    fn try_from(r: RawChainSpace) -> Result<Self, SpaceError> {
        ChainSpace::new(r.max_layers, r.ops, r.widths)
    }
}

impl From<ChainSpace> for RawChainSpace {
    fn from(s: ChainSpace) -> Self {
        RawChainSpace {
            max_layers: s.max_layers,
            ops: s.ops,
            widths: s.widths,
        }
    }
}

impl Default for ChainSpace {
    fn default() -> Self {
        ChainSpace::cnn()
    }
}

impl ChainSpace {
    /// A space of chains of `1..=max_layers` layers over `ops` and `widths`; an error when a
    /// list is empty or repeats an entry, a width is 0, or `max_layers` is 0.
    pub fn new(
        max_layers: usize,
        ops: Vec<ChainOp>,
        widths: Vec<usize>,
    ) -> Result<ChainSpace, SpaceError> {
        if max_layers == 0 {
            return Err(SpaceError::Invalid(
                "a chain space needs max_layers >= 1".into(),
            ));
        }
        if ops.is_empty() || widths.is_empty() {
            return Err(SpaceError::Invalid(
                "a chain space needs at least one op and one width".into(),
            ));
        }
        if widths.contains(&0) {
            return Err(SpaceError::Invalid("chain widths must be positive".into()));
        }
        for (i, op) in ops.iter().enumerate() {
            if ops[..i].contains(op) {
                return Err(SpaceError::Invalid(format!("op {op} is listed twice")));
            }
        }
        for (i, w) in widths.iter().enumerate() {
            if widths[..i].contains(w) {
                return Err(SpaceError::Invalid(format!("width {w} is listed twice")));
            }
        }
        Ok(ChainSpace {
            max_layers,
            ops,
            widths,
        })
    }

    /// Convolutional chains: up to 6 layers of `conv3x3, conv5x5, sep_conv_3x3,
    /// sep_conv_5x5`, widths 16, 32, 64 (the default space).
    pub fn cnn() -> ChainSpace {
        ChainSpace::new(
            6,
            vec![
                ChainOp::Conv3x3,
                ChainOp::Conv5x5,
                ChainOp::SepConv3x3,
                ChainOp::SepConv5x5,
            ],
            vec![16, 32, 64],
        )
        .expect("valid preset")
    }

    /// Multi-layer perceptrons: up to 4 dense layers of width 16, 32, 64, 128 or 256.
    pub fn mlp() -> ChainSpace {
        ChainSpace::new(4, vec![ChainOp::Dense], vec![16, 32, 64, 128, 256]).expect("valid preset")
    }

    /// The maximum number of layers.
    pub fn max_layers(&self) -> usize {
        self.max_layers
    }

    /// The allowed op kinds, in decision order.
    pub fn ops(&self) -> &[ChainOp] {
        &self.ops
    }

    /// The allowed widths, in decision order.
    pub fn widths(&self) -> &[usize] {
        &self.widths
    }

    fn op_index(&self, op: ChainOp) -> Option<usize> {
        self.ops.iter().position(|&o| o == op)
    }

    fn width_index(&self, w: usize) -> Option<usize> {
        self.widths.iter().position(|&x| x == w)
    }

    fn random_layer(&self, rng: &mut dyn RngCore) -> ChainLayer {
        ChainLayer {
            op: self.ops[rng.random_range(0..self.ops.len())],
            width: self.widths[rng.random_range(0..self.widths.len())],
        }
    }

    /// Every layer of the space, ops outer, widths inner.
    fn all_layers(&self) -> impl Iterator<Item = ChainLayer> + '_ {
        self.ops.iter().flat_map(move |&op| {
            self.widths
                .iter()
                .map(move |&width| ChainLayer { op, width })
        })
    }

    /// The number of distinct neighbours of a valid `arch` (the closed form of the module
    /// docs).
    pub fn neighbour_count(&self, arch: &ChainArch) -> usize {
        let len = arch.len();
        let k = self.ops.len() * self.widths.len();
        let runs = arch
            .layers
            .iter()
            .enumerate()
            .filter(|&(i, l)| i == 0 || arch.layers[i - 1] != *l)
            .count();
        let add = if len < self.max_layers {
            (len + 1) * k - len
        } else {
            0
        };
        let remove = if len > 1 { runs } else { 0 };
        add + remove + len * (self.ops.len() - 1 + self.widths.len() - 1)
    }
}

impl SearchSpace for ChainSpace {
    type Arch = ChainArch;

    fn name(&self) -> &'static str {
        "chain"
    }

    fn sample(&self, rng: &mut dyn RngCore) -> ChainArch {
        let len = rng.random_range(1..=self.max_layers);
        ChainArch {
            layers: (0..len).map(|_| self.random_layer(rng)).collect(),
        }
    }

    fn mutate(&self, arch: &ChainArch, rng: &mut dyn RngCore) -> ChainArch {
        let len = arch.len();
        let mut kinds = Vec::with_capacity(3);
        if len < self.max_layers {
            kinds.push(0);
        }
        if len > 1 {
            kinds.push(1);
        }
        let can_change = len > 0 && (self.ops.len() > 1 || self.widths.len() > 1);
        if can_change {
            kinds.push(2);
        }
        if kinds.is_empty() {
            return arch.clone();
        }
        let mut out = arch.clone();
        match kinds[rng.random_range(0..kinds.len())] {
            0 => {
                let pos = rng.random_range(0..=len);
                out.layers.insert(pos, self.random_layer(rng));
            }
            1 => {
                out.layers.remove(rng.random_range(0..len));
            }
            _ => {
                let i = rng.random_range(0..len);
                let (no, nw) = (self.ops.len() - 1, self.widths.len() - 1);
                let m = rng.random_range(0..no + nw);
                let layer = &mut out.layers[i];
                if m < no {
                    let others: Vec<ChainOp> = self
                        .ops
                        .iter()
                        .copied()
                        .filter(|&o| o != layer.op)
                        .collect();
                    // A layer of an invalid input may use an op outside the space.
                    layer.op = others[m.min(others.len() - 1)];
                } else {
                    let others: Vec<usize> = self
                        .widths
                        .iter()
                        .copied()
                        .filter(|&w| w != layer.width)
                        .collect();
                    layer.width = others[(m - no).min(others.len() - 1)];
                }
            }
        }
        out
    }

    fn crossover(&self, a: &ChainArch, b: &ChainArch, rng: &mut dyn RngCore) -> ChainArch {
        let len = if rng.random_bool(0.5) {
            b.len()
        } else {
            a.len()
        };
        let pick = |i: usize, rng: &mut dyn RngCore| -> ChainLayer {
            match (a.layers.get(i), b.layers.get(i)) {
                (Some(x), Some(y)) => ChainLayer {
                    op: if rng.random_bool(0.5) { y.op } else { x.op },
                    width: if rng.random_bool(0.5) {
                        y.width
                    } else {
                        x.width
                    },
                },
                (Some(x), None) => *x,
                (None, Some(y)) => *y,
                (None, None) => unreachable!("i < len of a parent"),
            }
        };
        ChainArch {
            layers: (0..len).map(|i| pick(i, rng)).collect(),
        }
    }

    fn neighbours(&self, arch: &ChainArch) -> Vec<ChainArch> {
        let len = arch.len();
        let mut out: Vec<ChainArch> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut push = |c: ChainArch, out: &mut Vec<ChainArch>| {
            if seen.insert(c.clone()) {
                out.push(c);
            }
        };
        if len < self.max_layers {
            for pos in 0..=len {
                for layer in self.all_layers() {
                    let mut c = arch.clone();
                    c.layers.insert(pos, layer);
                    push(c, &mut out);
                }
            }
        }
        if len > 1 {
            for pos in 0..len {
                let mut c = arch.clone();
                c.layers.remove(pos);
                push(c, &mut out);
            }
        }
        for i in 0..len {
            for &op in &self.ops {
                if op != arch.layers[i].op {
                    let mut c = arch.clone();
                    c.layers[i].op = op;
                    push(c, &mut out);
                }
            }
            for &w in &self.widths {
                if w != arch.layers[i].width {
                    let mut c = arch.clone();
                    c.layers[i].width = w;
                    push(c, &mut out);
                }
            }
        }
        out
    }

    fn validate(&self, arch: &ChainArch) -> Result<(), SpaceError> {
        let len = arch.len();
        if len == 0 || len > self.max_layers {
            return Err(SpaceError::Invalid(format!(
                "{len} layers; this chain space allows 1..={}",
                self.max_layers
            )));
        }
        for (i, l) in arch.layers.iter().enumerate() {
            if self.op_index(l.op).is_none() {
                return Err(SpaceError::Invalid(format!(
                    "layer {i}: op {} is not one of this space's ops {:?}",
                    l.op,
                    self.ops.iter().map(|o| o.as_str()).collect::<Vec<_>>()
                )));
            }
            if self.width_index(l.width).is_none() {
                return Err(SpaceError::Invalid(format!(
                    "layer {i}: width {} is not one of this space's widths {:?}",
                    l.width, self.widths
                )));
            }
        }
        Ok(())
    }

    fn canonical(&self, arch: &ChainArch) -> String {
        arch.to_string()
    }

    fn size(&self) -> Option<u128> {
        let k = (self.ops.len() as u128).checked_mul(self.widths.len() as u128)?;
        let mut total: u128 = 0;
        let mut power: u128 = 1;
        for _ in 0..self.max_layers {
            power = power.checked_mul(k)?;
            total = total.checked_add(power)?;
        }
        Some(total)
    }

    fn decisions(&self) -> Vec<usize> {
        let mut d = Vec::with_capacity(1 + 2 * self.max_layers);
        d.push(self.max_layers);
        for _ in 0..self.max_layers {
            d.push(self.ops.len());
            d.push(self.widths.len());
        }
        d
    }

    fn encode_decisions(&self, arch: &ChainArch) -> Vec<usize> {
        let mut d = vec![0; 1 + 2 * self.max_layers];
        d[0] = arch.len().clamp(1, self.max_layers) - 1;
        for (i, l) in arch.layers.iter().take(self.max_layers).enumerate() {
            d[1 + 2 * i] = self.op_index(l.op).unwrap_or(0);
            d[2 + 2 * i] = self.width_index(l.width).unwrap_or(0);
        }
        d
    }

    fn decode_decisions(&self, choices: &[usize]) -> Result<ChainArch, SpaceError> {
        let sizes = self.decisions();
        if choices.len() != sizes.len() {
            return Err(SpaceError::Encoding(format!(
                "this chain space needs {} choices (depth, then op and width per slot), got {}",
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
        let len = choices[0] + 1;
        Ok(ChainArch {
            layers: (0..len)
                .map(|i| ChainLayer {
                    op: self.ops[choices[1 + 2 * i]],
                    width: self.widths[choices[2 + 2 * i]],
                })
                .collect(),
        })
    }

    fn distance(&self, a: &ChainArch, b: &ChainArch) -> usize {
        let (x, y) = (&a.layers, &b.layers);
        let mut prev: Vec<usize> = (0..=y.len()).collect();
        for i in 1..=x.len() {
            let mut cur = vec![i; y.len() + 1];
            for j in 1..=y.len() {
                let sub = usize::from(x[i - 1].op != y[j - 1].op)
                    + usize::from(x[i - 1].width != y[j - 1].width);
                cur[j] = (prev[j - 1] + sub).min(prev[j] + 1).min(cur[j - 1] + 1);
            }
            prev = cur;
        }
        prev[y.len()]
    }

    fn to_text(&self, arch: &ChainArch) -> String {
        arch.to_string()
    }

    fn parse(&self, text: &str) -> Result<ChainArch, SpaceError> {
        let arch = ChainArch::parse(text)?;
        self.validate(&arch).map_err(|e| {
            crate::text::parse_error(text, 0, format!("not a chain of this space: {e}"))
        })?;
        Ok(arch)
    }
}
