//! Hyperparameters searched jointly with the architecture (`nas search --hp`), as AutoKeras
//! does: learning rate, batch size, width (`C`, `--channels`) and depth (cells, `--cells`) of
//! the train evaluator.
//!
//! # Design: a product space on a grid
//!
//! A candidate is an [`HpArch`]: an architecture of the searched space and its [`HpValues`].
//! [`HpSpace`] is the product of the space and the hyperparameter domains of an [`HpSpec`], and
//! implements [`SearchSpace`] itself, so every multi-trial strategy (random, evolution,
//! REINFORCE, local search, Hyperband, BOHB, TPE, the LSTM controller, BANANAS, NSGA-II, Pareto
//! evolution) searches it with its own sampling, mutation, neighbours and encodings unchanged:
//! no strategy knows hyperparameters exist.
//!
//! Every domain is a finite, ordered grid of values, fixed when the spec is parsed:
//! `a|b|c` is its values; `log:A..B` is [`GRID`] log-spaced values from A to B (both included,
//! rounded to 4 significant digits); `A..B` is [`GRID`] evenly spaced values (an integer range
//! with at most [`GRID`] integers: all of them). So a `log:` learning rate is log-uniform over
//! 8 points, not over the continuum. The grid makes each hyperparameter one categorical
//! decision appended to the space's ([`SearchSpace::decisions`]), which is what TPE (Parzen
//! estimators over categories), REINFORCE and the LSTM controller (one softmax per decision)
//! and BANANAS (one-hot features) need; sampling, mutation (one decision: an architecture move or
//! one hyperparameter set to another of its values), crossover, neighbours and the Hamming part
//! of the distance then treat hyperparameters exactly as architecture decisions. A continuous
//! domain for only the strategies that could use one (random, evolution) would have made the
//! same `--hp` mean different searches under different strategies; the grid keeps them
//! comparable, and 8 values of a learning rate over a 20x range are 1.5x apart, finer than a
//! 1-epoch training run can tell apart.
//!
//! The evaluator, [`HpTrainEvaluator`], trains each candidate with its own values: the recipe's
//! learning rate and batch size replaced, the network built at its width and depth (one
//! [`NetworkFamily`] per width x depth of the grid, made once), and otherwise exactly as the
//! train evaluator ([`TrainEvaluator`], which it calls). Records show the values next to the
//! architecture (`|...| [lr=0.05,batch=64]`; the JSON form `{"arch": ..., "hp": {...}}` is what
//! checkpoints and remote trial specs carry); `best.txt` stays the architecture alone, and the
//! report's [`crate::builder::SearchReport::train_flags`] are the `nas train` flags of the best
//! values. The evaluator's name includes the spec, so `--resume` with another `--hp` is refused.

use std::collections::HashSet;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use nas_space::{SearchSpace, SpaceError};
use rand::{Rng, RngCore, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::builder::{SearchReport, run_recorded, write_file_atomic};
use crate::data::{DataKind, LoadedData, Splits};
use crate::error::{Result, SearchError};
use crate::evaluator::{EvalError, EvalRequest, EvalSetup, Evaluator, Metrics};
use crate::executor::{TrialOutcome, TrialSpec};
use crate::nets::{NetworkCost, NetworkFamily};
use crate::search::evaluate_trial;
use crate::spaces::{NetShape, Purpose, SearchRun, SpaceDef};
use crate::train::{EpochHook, TrainEvaluator, TrainRecipe};

/// Points of the grid a range (`log:A..B`, `A..B`) is discretised into.
pub const GRID: usize = 8;

/// A searchable hyperparameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HpName {
    /// Initial learning rate (`lr`).
    Lr,
    /// Training mini-batch size (`batch`).
    Batch,
    /// Channels `C` of the network (`width`, as `--channels`).
    Width,
    /// Cells of the network (`depth`, as `--cells`).
    Depth,
}

impl HpName {
    /// Every one, in the order specs and records list them.
    pub const ALL: [HpName; 4] = [HpName::Lr, HpName::Batch, HpName::Width, HpName::Depth];

    /// The name `--hp` takes.
    pub fn as_str(self) -> &'static str {
        match self {
            HpName::Lr => "lr",
            HpName::Batch => "batch",
            HpName::Width => "width",
            HpName::Depth => "depth",
        }
    }

    /// The flag of `nas search` and `nas train` that sets the same value.
    pub fn flag(self) -> &'static str {
        match self {
            HpName::Lr => "--lr",
            HpName::Batch => "--batch-size",
            HpName::Width => "--channels",
            HpName::Depth => "--cells",
        }
    }

    fn parse(name: &str) -> Option<HpName> {
        HpName::ALL.into_iter().find(|n| n.as_str() == name)
    }

    fn is_integer(self) -> bool {
        self != HpName::Lr
    }
}

/// One searched hyperparameter: its domain as given and its grid.
#[derive(Debug, Clone, PartialEq)]
pub struct HpDim {
    /// Which.
    pub name: HpName,
    /// The domain as written after `name=`.
    pub domain: String,
    /// Its values, ascending for ranges, in the order given for choices.
    pub grid: Vec<f64>,
}

impl HpDim {
    /// The index of `value` in the grid (equal up to rounding), if it is there.
    pub fn index(&self, value: f64) -> Option<usize> {
        self.grid
            .iter()
            .position(|&g| (g - value).abs() <= 1e-9 * g.abs().max(1.0))
    }
}

/// What `--hp` sets: the searched hyperparameters, each with its grid (see the
/// [module docs](self)).
#[derive(Debug, Clone, PartialEq)]
pub struct HpSpec {
    dims: Vec<HpDim>,
}

fn bad(part: &str, problem: impl fmt::Display) -> SearchError {
    SearchError::Setting(format!("--hp: {part:?}: {problem}"))
}

/// `x` rounded to 4 significant digits (the nearest double to that decimal).
fn round_sig(x: f64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let e = 3 - x.abs().log10().floor() as i32;
    if e >= 0 {
        let p = 10f64.powi(e);
        (x * p).round() / p
    } else {
        let p = 10f64.powi(-e);
        (x / p).round() * p
    }
}

impl HpSpec {
    /// Parses `name=domain,name=domain,...` (see the [module docs](self)); an error naming
    /// `--hp` and the offending part otherwise.
    pub fn parse(text: &str) -> Result<HpSpec> {
        if text.trim().is_empty() {
            return Err(SearchError::Setting(
                "--hp: empty; give NAME=DOMAIN,... with names lr, batch, width, depth (e.g. \
                 lr=log:0.01..0.2,batch=32|64|128)"
                    .into(),
            ));
        }
        let mut dims: Vec<HpDim> = Vec::new();
        for part in text.split(',') {
            let part = part.trim();
            let Some((name, domain)) = part.split_once('=') else {
                return Err(bad(part, "not NAME=DOMAIN"));
            };
            let (name, domain) = (name.trim(), domain.trim());
            let Some(hp) = HpName::parse(name) else {
                let more = if name == "epochs" {
                    " (epochs is the fidelity, set by --epochs, not searched)"
                } else {
                    ""
                };
                return Err(bad(
                    part,
                    format!(
                        "unknown hyperparameter {name:?}: known are lr, batch, width, depth{more}"
                    ),
                ));
            };
            if dims.iter().any(|d| d.name == hp) {
                return Err(bad(part, format!("{name} is given twice")));
            }
            let grid = parse_domain(hp, part, domain)?;
            dims.push(HpDim {
                name: hp,
                domain: domain.to_string(),
                grid,
            });
        }
        dims.sort_by_key(|d| d.name);
        Ok(HpSpec { dims })
    }

    /// The searched dimensions, in the order lr, batch, width, depth.
    pub fn dims(&self) -> &[HpDim] {
        &self.dims
    }

    /// The dimension of `name`, if searched.
    pub fn dim(&self, name: HpName) -> Option<&HpDim> {
        self.dims.iter().find(|d| d.name == name)
    }

    /// Its canonical text (`lr=log:0.01..0.2,batch=32|64|128`): what `settings.json`, trial
    /// specs and the evaluator's name hold.
    pub fn text(&self) -> String {
        let parts: Vec<String> = self
            .dims
            .iter()
            .map(|d| format!("{}={}", d.name.as_str(), d.domain))
            .collect();
        parts.join(",")
    }

    /// The number of value combinations.
    pub fn combinations(&self) -> u128 {
        self.dims.iter().map(|d| d.grid.len() as u128).product()
    }

    /// The largest value of `name` on the grid, if searched.
    pub fn max(&self, name: HpName) -> Option<f64> {
        self.dim(name)
            .and_then(|d| d.grid.iter().copied().reduce(f64::max))
    }
}

fn parse_domain(hp: HpName, part: &str, domain: &str) -> Result<Vec<f64>> {
    let number = |s: &str| -> Result<f64> {
        let s = s.trim();
        if hp.is_integer() {
            match s.parse::<u64>() {
                Ok(v) if v > 0 => Ok(v as f64),
                _ => Err(bad(
                    part,
                    format!(
                        "{s:?} is not a positive integer ({} is a count)",
                        hp.as_str()
                    ),
                )),
            }
        } else {
            match s.parse::<f64>() {
                Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
                Ok(v) => Err(bad(
                    part,
                    format!("{v} is not a learning rate: it must be a positive number"),
                )),
                Err(_) => Err(bad(part, format!("{s:?} is not a number"))),
            }
        }
    };
    if domain.is_empty() {
        return Err(bad(
            part,
            "no domain: give log:A..B, A..B or a|b|c after the =",
        ));
    }
    let (log, range) = match domain.strip_prefix("log:") {
        Some(r) => (true, r),
        None => (false, domain),
    };
    if let Some((a, b)) = range.split_once("..") {
        let (a, b) = (number(a)?, number(b)?);
        if a >= b {
            return Err(bad(
                part,
                format!("the lower bound {a} is not below the upper bound {b}"),
            ));
        }
        let points: Vec<f64> = if hp.is_integer() && !log && b - a < GRID as f64 {
            (a as u64..=b as u64).map(|v| v as f64).collect()
        } else {
            (0..GRID)
                .map(|i| {
                    let t = i as f64 / (GRID - 1) as f64;
                    let v = if log {
                        a * (b / a).powf(t)
                    } else {
                        a + (b - a) * t
                    };
                    if hp.is_integer() {
                        v.round()
                    } else {
                        round_sig(v)
                    }
                })
                .collect()
        };
        let mut grid: Vec<f64> = Vec::new();
        for p in points {
            if grid.last() != Some(&p) {
                grid.push(p);
            }
        }
        return Ok(grid);
    }
    if log {
        return Err(bad(part, "log: needs a range, log:A..B"));
    }
    let mut grid = Vec::new();
    for v in domain.split('|') {
        let x = number(v)?;
        if grid.contains(&x) {
            return Err(bad(part, format!("the value {} is listed twice", v.trim())));
        }
        grid.push(x);
    }
    Ok(grid)
}

/// The hyperparameter values of one candidate (the searched ones set, the others `None`:
/// the recipe's and the network's defaults).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct HpValues {
    /// Learning rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr: Option<f64>,
    /// Batch size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<usize>,
    /// Channels C.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<usize>,
    /// Cells.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depth: Option<usize>,
}

// Values come from a grid of finite numbers: equality is total on them.
impl Eq for HpValues {}

impl Hash for HpValues {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.lr.map(f64::to_bits).hash(state);
        (self.batch, self.width, self.depth).hash(state);
    }
}

impl HpValues {
    /// The value of `name`, if set.
    pub fn get(&self, name: HpName) -> Option<f64> {
        match name {
            HpName::Lr => self.lr,
            HpName::Batch => self.batch.map(|v| v as f64),
            HpName::Width => self.width.map(|v| v as f64),
            HpName::Depth => self.depth.map(|v| v as f64),
        }
    }

    /// Sets `name` to `value` (rounded for the integer ones).
    pub fn set(&mut self, name: HpName, value: f64) {
        let n = value.round() as usize;
        match name {
            HpName::Lr => self.lr = Some(value),
            HpName::Batch => self.batch = Some(n),
            HpName::Width => self.width = Some(n),
            HpName::Depth => self.depth = Some(n),
        }
    }

    /// The set values as flags `nas train` (and `nas search`) take:
    /// `--lr 0.05 --batch-size 64 --channels 8 --cells 1`.
    pub fn train_flags(&self) -> String {
        let parts: Vec<String> = HpName::ALL
            .into_iter()
            .filter_map(|n| Some(format!("{} {}", n.flag(), self.get(n)?)))
            .collect();
        parts.join(" ")
    }

    /// Parses the text form (`lr=0.05,batch=64`; empty: nothing set).
    pub fn parse(text: &str) -> std::result::Result<HpValues, String> {
        let mut v = HpValues::default();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, value) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?} is not NAME=VALUE"))?;
            let name = HpName::parse(name.trim())
                .ok_or_else(|| format!("unknown hyperparameter {:?}", name.trim()))?;
            let x: f64 = value
                .trim()
                .parse()
                .map_err(|_| format!("{:?} is not a number", value.trim()))?;
            if v.get(name).is_some() {
                return Err(format!("{} is given twice", name.as_str()));
            }
            v.set(name, x);
        }
        Ok(v)
    }
}

impl fmt::Display for HpValues {
    /// `lr=0.05,batch=64` (set values only, in the order lr, batch, width, depth).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = HpName::ALL
            .into_iter()
            .filter_map(|n| Some(format!("{}={}", n.as_str(), self.get(n)?)))
            .collect();
        f.write_str(&parts.join(","))
    }
}

/// A candidate of a joint search: an architecture and its hyperparameters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HpArch<A> {
    /// The architecture.
    pub arch: A,
    /// Its hyperparameters.
    pub hp: HpValues,
}

impl<A: fmt::Display> fmt::Display for HpArch<A> {
    /// The architecture, a space and the values in brackets: `|...| [lr=0.05,batch=64]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} [{}]", self.arch, self.hp)
    }
}

/// Splits the text (or `Display`) form of an [`HpArch`] into the architecture's part and the
/// values; `None` when it has no `" [...]"` at its end.
pub fn split_text(text: &str) -> Option<(&str, std::result::Result<HpValues, String>)> {
    let (arch, rest) = text.trim_end().rsplit_once(" [")?;
    let values = rest.strip_suffix(']')?;
    Some((arch, HpValues::parse(values)))
}

/// The product of a space and the hyperparameter grid of a spec (see the [module docs](self)).
pub struct HpSpace<S> {
    /// The architecture space.
    pub inner: S,
    /// The hyperparameters.
    pub spec: HpSpec,
}

impl<S: SearchSpace> HpSpace<S> {
    fn index_of(&self, hp: &HpValues) -> Vec<usize> {
        self.spec
            .dims
            .iter()
            .map(|d| hp.get(d.name).and_then(|v| d.index(v)).unwrap_or(0))
            .collect()
    }

    fn values(&self, index: &[usize]) -> HpValues {
        let mut v = HpValues::default();
        for (d, &i) in self.spec.dims.iter().zip(index) {
            v.set(d.name, d.grid[i]);
        }
        v
    }

    fn sample_hp(&self, rng: &mut dyn RngCore) -> HpValues {
        let index: Vec<usize> = self
            .spec
            .dims
            .iter()
            .map(|d| rng.random_range(0..d.grid.len()))
            .collect();
        self.values(&index)
    }

    /// Hyperparameter dimensions with more than one value (those a move can change).
    fn movable(&self) -> Vec<usize> {
        (0..self.spec.dims.len())
            .filter(|&i| self.spec.dims[i].grid.len() > 1)
            .collect()
    }
}

impl<S: SearchSpace> SearchSpace for HpSpace<S> {
    type Arch = HpArch<S::Arch>;

    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn sample(&self, rng: &mut dyn RngCore) -> Self::Arch {
        HpArch {
            arch: self.inner.sample(rng),
            hp: self.sample_hp(rng),
        }
    }

    /// One decision changed: an architecture move, or one hyperparameter set to another of its
    /// values, chosen in proportion to the number of decisions of each kind.
    fn mutate(&self, a: &Self::Arch, rng: &mut dyn RngCore) -> Self::Arch {
        let movable = self.movable();
        let arch_decisions = self.inner.decisions().len().max(1);
        let pick = rng.random_range(0..arch_decisions + movable.len());
        if pick < arch_decisions {
            return HpArch {
                arch: self.inner.mutate(&a.arch, rng),
                hp: a.hp,
            };
        }
        let d = movable[pick - arch_decisions];
        let mut index = self.index_of(&a.hp);
        let n = self.spec.dims[d].grid.len();
        // another value, uniformly
        index[d] = (index[d] + rng.random_range(1..n)) % n;
        HpArch {
            arch: a.arch.clone(),
            hp: self.values(&index),
        }
    }

    fn crossover(&self, a: &Self::Arch, b: &Self::Arch, rng: &mut dyn RngCore) -> Self::Arch {
        let arch = self.inner.crossover(&a.arch, &b.arch, rng);
        let (ia, ib) = (self.index_of(&a.hp), self.index_of(&b.hp));
        let index: Vec<usize> = ia
            .iter()
            .zip(&ib)
            .map(|(&x, &y)| if rng.random_bool(0.5) { x } else { y })
            .collect();
        HpArch {
            arch,
            hp: self.values(&index),
        }
    }

    /// The space's neighbours (same values) and every single-value change of the
    /// hyperparameters, interleaved (one of each in turn, then the rest), so that a local
    /// search that stops early has tried both kinds of move.
    fn neighbours(&self, a: &Self::Arch) -> Vec<Self::Arch> {
        let arch: Vec<Self::Arch> = self
            .inner
            .neighbours(&a.arch)
            .into_iter()
            .map(|arch| HpArch { arch, hp: a.hp })
            .collect();
        let mut hp = Vec::new();
        let index = self.index_of(&a.hp);
        for (d, dim) in self.spec.dims.iter().enumerate() {
            for v in 0..dim.grid.len() {
                if v != index[d] {
                    let mut i = index.clone();
                    i[d] = v;
                    hp.push(HpArch {
                        arch: a.arch.clone(),
                        hp: self.values(&i),
                    });
                }
            }
        }
        let mut out = Vec::with_capacity(arch.len() + hp.len());
        let (mut x, mut y) = (arch.into_iter(), hp.into_iter());
        loop {
            match (x.next(), y.next()) {
                (None, None) => break,
                (p, q) => out.extend(p.into_iter().chain(q)),
            }
        }
        out
    }

    fn validate(&self, a: &Self::Arch) -> std::result::Result<(), SpaceError> {
        self.inner.validate(&a.arch)?;
        for name in HpName::ALL {
            let value = a.hp.get(name);
            match (self.spec.dim(name), value) {
                (None, None) => {}
                (None, Some(v)) => {
                    return Err(SpaceError::Invalid(format!(
                        "{}={v} is set, but --hp does not search {}",
                        name.as_str(),
                        name.as_str()
                    )));
                }
                (Some(_), None) => {
                    return Err(SpaceError::Invalid(format!(
                        "no value of {} (--hp searches it)",
                        name.as_str()
                    )));
                }
                (Some(d), Some(v)) => {
                    if d.index(v).is_none() {
                        return Err(SpaceError::Invalid(format!(
                            "{}={v} is not on the grid of {}={} ({:?})",
                            name.as_str(),
                            name.as_str(),
                            d.domain,
                            d.grid
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    fn canonical(&self, a: &Self::Arch) -> String {
        format!("{} [{}]", self.inner.canonical(&a.arch), a.hp)
    }

    fn size(&self) -> Option<u128> {
        self.inner.size()?.checked_mul(self.spec.combinations())
    }

    fn decisions(&self) -> Vec<usize> {
        let mut d = self.inner.decisions();
        d.extend(self.spec.dims.iter().map(|d| d.grid.len()));
        d
    }

    fn encode_decisions(&self, a: &Self::Arch) -> Vec<usize> {
        let mut c = self.inner.encode_decisions(&a.arch);
        c.extend(self.index_of(&a.hp));
        c
    }

    fn decode_decisions(&self, choices: &[usize]) -> std::result::Result<Self::Arch, SpaceError> {
        let n = self.spec.dims.len();
        if choices.len() < n {
            return Err(SpaceError::Encoding(format!(
                "{} choices, fewer than the {n} hyperparameters",
                choices.len()
            )));
        }
        let (arch, hp) = choices.split_at(choices.len() - n);
        for (d, &i) in self.spec.dims.iter().zip(hp) {
            if i >= d.grid.len() {
                return Err(SpaceError::Encoding(format!(
                    "choice {i} of {} is out of range ({} values)",
                    d.name.as_str(),
                    d.grid.len()
                )));
            }
        }
        Ok(HpArch {
            arch: self.inner.decode_decisions(arch)?,
            hp: self.values(hp),
        })
    }

    /// The space's features (BANANAS' path encoding where it has one) followed by a one-hot
    /// vector per hyperparameter.
    fn features(&self, a: &Self::Arch) -> Vec<f32> {
        let mut f = self.inner.features(&a.arch);
        for (dim, i) in self.spec.dims.iter().zip(self.index_of(&a.hp)) {
            let mut one = vec![0.0; dim.grid.len()];
            one[i] = 1.0;
            f.extend(one);
        }
        f
    }

    fn distance(&self, a: &Self::Arch, b: &Self::Arch) -> usize {
        let hp = self
            .index_of(&a.hp)
            .iter()
            .zip(self.index_of(&b.hp))
            .filter(|(x, y)| **x != *y)
            .count();
        self.inner.distance(&a.arch, &b.arch) + hp
    }

    /// The space's text form, a space and the values in brackets.
    fn to_text(&self, a: &Self::Arch) -> String {
        format!("{} [{}]", self.inner.to_text(&a.arch), a.hp)
    }

    fn parse(&self, text: &str) -> std::result::Result<Self::Arch, SpaceError> {
        let (arch, hp) = split_text(text).ok_or_else(|| SpaceError::Parse {
            position: text.len(),
            message: "expected the hyperparameters in brackets at the end: ARCH [lr=...]".into(),
            input: text.chars().take(200).collect(),
        })?;
        let hp = hp.map_err(|message| SpaceError::Parse {
            position: arch.len(),
            message,
            input: text.chars().take(200).collect(),
        })?;
        let a = HpArch {
            arch: self.inner.parse(arch)?,
            hp,
        };
        self.validate(&a)?;
        // snap to the grid's own values
        let index = self.index_of(&a.hp);
        Ok(HpArch {
            arch: a.arch,
            hp: self.values(&index),
        })
    }
}

/// A network family borrowed from the evaluator for one trial.
struct Borrowed<'a, A>(&'a dyn NetworkFamily<A>);

impl<A> NetworkFamily<A> for Borrowed<'_, A> {
    fn name(&self) -> String {
        self.0.name()
    }
    fn build(
        &self,
        arch: &A,
        input: (usize, usize, usize),
        classes: usize,
        seed: u64,
    ) -> std::result::Result<Box<dyn nas_tensor::nn::Module>, nas_tensor::TensorError> {
        self.0.build(arch, input, classes, seed)
    }
    fn cost(&self, arch: &A, input: (usize, usize, usize), classes: usize) -> NetworkCost {
        self.0.cost(arch, input, classes)
    }
}

/// The train evaluator of a joint search: each candidate trained with its own hyperparameters
/// (see the [module docs](self)).
pub struct HpTrainEvaluator<A> {
    families: Vec<(NetShape, Box<dyn NetworkFamily<A>>)>,
    splits: Arc<Splits>,
    recipe: TrainRecipe,
    shape: NetShape,
    on_epoch: Option<EpochHook>,
    name: String,
    spec: HpSpec,
}

impl<A> HpTrainEvaluator<A> {
    /// Trains in `network(shape)` for every width x depth of `spec` (the others from
    /// `shape`), with `recipe` under each candidate's learning rate and batch size, on `splits`
    /// (which must have a validation part). An error when the space has no network, or a
    /// recipe of the grid is one no training can use.
    pub fn new(
        network: &dyn Fn(NetShape) -> Option<Box<dyn NetworkFamily<A>>>,
        shape: NetShape,
        splits: Arc<Splits>,
        recipe: TrainRecipe,
        spec: &HpSpec,
        on_epoch: Option<EpochHook>,
    ) -> Result<Self> {
        let grid = |name, default: usize| -> Vec<usize> {
            spec.dim(name).map_or(vec![default], |d| {
                d.grid.iter().map(|&v| v.round() as usize).collect()
            })
        };
        let no_network = || SearchError::Setting("--hp: the space has no network to train".into());
        let mut families = Vec::new();
        for channels in grid(HpName::Width, shape.channels) {
            for cells in grid(HpName::Depth, shape.cells) {
                let s = NetShape { channels, cells };
                families.push((s, network(s).ok_or_else(no_network)?));
            }
        }
        let lrs: Vec<Option<f64>> = spec
            .dim(HpName::Lr)
            .map_or(vec![None], |d| d.grid.iter().map(|&v| Some(v)).collect());
        for lr in lrs {
            for batch in grid(HpName::Batch, recipe.batch_size) {
                let mut hp = HpValues {
                    batch: Some(batch),
                    ..HpValues::default()
                };
                hp.lr = lr;
                apply(&recipe, &hp)
                    .validate()
                    .map_err(|e| SearchError::Setting(format!("--hp {}: {e}", spec.text())))?;
            }
        }
        // The name of the train evaluator at the default values, and the spec.
        let base = TrainEvaluator::new(
            network(shape).ok_or_else(no_network)?,
            splits.clone(),
            recipe,
        )
        .map_err(|e| SearchError::Config(e.to_string()))?;
        let name = format!("{}/hp[{}]", Evaluator::<A>::name(&base), spec.text());
        Ok(HpTrainEvaluator {
            families,
            splits,
            recipe,
            shape,
            on_epoch,
            name,
            spec: spec.clone(),
        })
    }

    /// The hyperparameters it trains candidates with.
    pub fn spec(&self) -> &HpSpec {
        &self.spec
    }

    /// The network size a candidate with `hp` trains at.
    pub fn shape_of(&self, hp: &HpValues) -> NetShape {
        NetShape {
            channels: hp.width.unwrap_or(self.shape.channels),
            cells: hp.depth.unwrap_or(self.shape.cells),
        }
    }

    /// The recipe a candidate with `hp` trains with (the trainer's configuration).
    pub fn recipe_of(&self, hp: &HpValues) -> TrainRecipe {
        apply(&self.recipe, hp)
    }

    fn family(&self, hp: &HpValues) -> Option<&dyn NetworkFamily<A>> {
        let s = self.shape_of(hp);
        self.families
            .iter()
            .find(|(f, _)| *f == s)
            .map(|(_, f)| &**f)
    }

    /// The train evaluator that trains a candidate with `hp`.
    pub fn trainer(&self, hp: &HpValues) -> Option<TrainEvaluator<impl NetworkFamily<A> + '_>> {
        let family = Borrowed(self.family(hp)?);
        TrainEvaluator::new(family, self.splits.clone(), self.recipe_of(hp))
            .ok()
            .map(|t| t.observed(self.on_epoch.clone()))
    }
}

fn apply(recipe: &TrainRecipe, hp: &HpValues) -> TrainRecipe {
    TrainRecipe {
        lr: hp.lr.map_or(recipe.lr, |v| v as f32),
        batch_size: hp.batch.unwrap_or(recipe.batch_size),
        ..*recipe
    }
}

impl<A> Evaluator<HpArch<A>> for HpTrainEvaluator<A> {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn evaluate(&self, request: &EvalRequest<'_, HpArch<A>>) -> Result<Metrics, EvalError> {
        let hp = &request.arch.hp;
        let trainer = self.trainer(hp).ok_or_else(|| {
            EvalError::Fatal(format!(
                "hyperparameters [{hp}] are not on this evaluator's grid"
            ))
        })?;
        trainer.evaluate(&EvalRequest {
            arch: &request.arch.arch,
            fidelity: request.fidelity,
            trial_id: request.trial_id,
            seed: request.seed,
            deadline: request.deadline,
        })
    }

    fn network_cost(&self, arch: &HpArch<A>) -> Option<NetworkCost> {
        Some(self.family(&arch.hp)?.cost(
            &arch.arch,
            self.splits.train.shape(),
            self.splits.train.num_classes(),
        ))
    }
}

/// The evaluator of a joint search in the space `D` with `setup` (whose `hp` is set): its
/// data (loaded there, or loaded now), network sizes and recipe.
pub fn evaluator_for<D: SpaceDef>(
    def: &D,
    setup: &EvalSetup,
) -> Result<HpTrainEvaluator<<D::Space as SearchSpace>::Arch>> {
    let spec = setup
        .hp
        .as_ref()
        .ok_or_else(|| SearchError::Config("no --hp to search".into()))?;
    if D::DATA != DataKind::Images {
        return Err(SearchError::Setting(format!(
            "--hp: the {} space trains on {}; hyperparameters are searched for image networks \
             only",
            D::NAME,
            D::DATA.as_str()
        )));
    }
    let shape = setup.shape_for(def, Purpose::Search).ok_or_else(|| {
        SearchError::Setting(format!(
            "--hp: the {} space has no network to train",
            D::NAME
        ))
    })?;
    let data = match &setup.loaded {
        Some(d) => d.clone(),
        None => setup.load(def)?,
    };
    let LoadedData::Images(splits) = data else {
        return Err(SearchError::Setting(format!(
            "--hp: the {} space trains on images, not {}",
            D::NAME,
            data.kind().as_str()
        )));
    };
    HpTrainEvaluator::new(
        &|s| def.network(s),
        shape,
        splits,
        setup.recipe_for(def),
        spec,
        setup.on_epoch.clone(),
    )
}

/// A joint search of the space `D` and `setup.hp` ([`crate::spaces::Space::search`] with
/// `run.hp` set): [`run_recorded`] over [`HpSpace`] with [`HpTrainEvaluator`]; then `best.txt`
/// holds the architecture alone and the report the best values as `nas train` flags.
pub fn search<D: SpaceDef>(def: &D, run: SearchRun<'_>, setup: &EvalSetup) -> Result<SearchReport> {
    if run.prefilter.is_some() {
        return Err(SearchError::Setting(
            "--prefilter with --hp: the proxies score architectures at the default width and \
             recipe, not candidates with their own hyperparameters; use one or the other"
                .into(),
        ));
    }
    let spec = setup
        .hp
        .clone()
        .ok_or_else(|| SearchError::Config("a joint search without --hp".into()))?;
    let evaluator = Arc::new(evaluator_for(def, setup)?);
    let space = HpSpace {
        inner: def.space(),
        spec: spec.clone(),
    };
    let probe = space.sample(&mut rand_chacha::ChaCha8Rng::seed_from_u64(0));
    let moo = crate::pareto::MooRun::for_evaluator(run.moo, evaluator.clone(), &probe)?;
    let mut extra = run.extra;
    if let serde_json::Value::Object(m) = &mut extra {
        m.insert("hp".into(), serde_json::json!(spec.text()));
    }
    let mut report = run_recorded(
        &space,
        run.strategy,
        &[],
        &moo,
        &*evaluator,
        run.config,
        run.dir,
        extra,
        run.on_start,
        run.on_trial,
    )?;
    if let Some((arch, Ok(hp))) = split_text(&report.best.arch) {
        let arch = arch.to_string();
        report.train_flags = Some(hp.train_flags());
        if let Some(dir) = run.dir {
            // `nas train @DIR/best.txt` reads an architecture; the values go in flags.
            write_file_atomic(&dir.join("best.txt"), format!("{arch}\n").as_bytes())?;
            let text = serde_json::to_string_pretty(&report)
                .map_err(|e| SearchError::Serde(e.to_string()))?;
            write_file_atomic(&dir.join("summary.json"), (text + "\n").as_bytes())?;
        }
    }
    Ok(report)
}

/// One trial of a joint search from its spec (`nas eval --spec` for Slurm and Ray):
/// the architecture is the [`HpArch`] JSON, evaluated by the evaluator rebuilt from `setup`.
pub fn eval_trial<D: SpaceDef>(
    def: &D,
    setup: &EvalSetup,
    spec: &TrialSpec,
) -> Result<TrialOutcome> {
    let evaluator = evaluator_for(def, setup)?;
    let name = Evaluator::<HpArch<_>>::name(&evaluator);
    if name != spec.evaluator_id {
        return Err(SearchError::Setting(format!(
            "the trial spec was written for evaluator {:?}; its settings build {name:?} here \
             (another version of nas, or data that differs)",
            spec.evaluator_id
        )));
    }
    let space = HpSpace {
        inner: def.space(),
        spec: evaluator.spec.clone(),
    };
    let arch: HpArch<<D::Space as SearchSpace>::Arch> = serde_json::from_value(spec.arch.clone())
        .map_err(|e| {
        SearchError::Setting(format!(
            "the trial's architecture is not a {} architecture with hyperparameters: {e}",
            D::NAME
        ))
    })?;
    space
        .validate(&arch)
        .map_err(|e| SearchError::Setting(format!("the trial's architecture: {e}")))?;
    Ok(evaluate_trial(
        &evaluator,
        &arch,
        spec.fidelity,
        spec.trial,
        spec.seed,
    ))
}

/// Refuses a flag that fixes a value `spec` searches (`--lr` with `lr=...`), naming both.
pub fn conflicts(spec: &HpSpec, setup: &EvalSetup) -> Result<()> {
    let set = [
        (HpName::Lr, setup.lr.is_some()),
        (HpName::Batch, setup.batch_size.is_some()),
        (HpName::Width, setup.net.channels.is_some()),
        (HpName::Depth, setup.net.cells.is_some()),
    ];
    let both: HashSet<&str> = set
        .into_iter()
        .filter(|(n, on)| *on && spec.dim(*n).is_some())
        .map(|(n, _)| n.as_str())
        .collect();
    if let Some(n) = HpName::ALL.into_iter().find(|n| both.contains(n.as_str())) {
        return Err(SearchError::Setting(format!(
            "--hp searches {} and {} fixes it: give one or the other",
            n.as_str(),
            n.flag()
        )));
    }
    Ok(())
}

/// The largest network of the grid (for the memory check): `shape` with the largest width and
/// depth `spec` searches.
pub fn largest_shape(spec: Option<&HpSpec>, shape: NetShape) -> NetShape {
    let max = |n, d: usize| {
        spec.and_then(|s| s.max(n))
            .map_or(d, |v| v.round() as usize)
    };
    NetShape {
        channels: max(HpName::Width, shape.channels),
        cells: max(HpName::Depth, shape.cells),
    }
}

/// The largest batch of the grid, or `batch` when it is not searched (for the memory check).
pub fn largest_batch(spec: Option<&HpSpec>, batch: usize) -> usize {
    spec.and_then(|s| s.max(HpName::Batch))
        .map_or(batch, |v| v.round() as usize)
}
