//! The registry of search spaces: one module per space says everything the rest of the
//! workspace needs, and [`Registry`] looks spaces (and evaluators) up by name.
//!
//! A space module implements [`SpaceDef`] for one unit struct: its `nas-space` type, its
//! name and labels, its Graphviz rendering, the network its architectures are trained in
//! (with the default size for a search and for training one architecture, its closed-form
//! cost and memory estimate), its supernet where it has one (the derivation rule goes with the
//! supernet kind, see [`crate::oneshot::derive`]) and its default training recipe. Everything
//! else — the builder ([`crate::builder::Search`]), the evaluators, `nas search`, `nas train`,
//! `nas space`, `nas export` — goes through the type-erased [`Space`] that every `SpaceDef` is,
//! so no other file lists the spaces.
//!
//! # Adding a space
//!
//! 1. The space itself in `nas-space` (or anywhere): a type implementing
//!    [`nas_space::SearchSpace`] whose `Arch` implements `Display`.
//! 2. A module here with a unit struct implementing [`SpaceDef`]; [`SpaceDef::network`] returns
//!    the [`NetworkFamily`] its architectures train in (or `None` when it has none: the train
//!    evaluator then refuses it, and a space with its own data and evaluator — a recurrent
//!    space on a text corpus, say — registers that evaluator with
//!    [`Registry::with_evaluator`]: nothing here assumes images).
//! 3. One line in [`Registry::builtin`].
//!
//! A test can do the same at run time without touching this crate:
//!
//! ```
//! use nas_search::spaces::{Registry, SpaceDef};
//! use nas_search::synthetic::ToySpace;
//! struct Toy;
//! impl SpaceDef for Toy {
//!     type Space = ToySpace;
//!     const NAME: &'static str = "toy";
//!     const ABOUT: &'static str = "three choices of four options";
//!     fn space(&self) -> ToySpace { ToySpace { dims: 3, choices: 4 } }
//!     fn dot(&self, arch: &nas_search::synthetic::ToyArch) -> String { format!("digraph {{ \"{arch}\" }}") }
//! }
//! let registry = Registry::builtin().with_space(Toy);
//! assert!(registry.names().contains(&"toy"));
//! assert_eq!(registry.space("toy").unwrap().size(), Some(64));
//! ```

pub mod chain;
pub mod darts;
pub mod nb101;
pub mod nb201;
pub mod rnn;

use std::any::{Any, TypeId};
use std::fmt::Display;
use std::path::Path;
use std::sync::Arc;

use nas_space::SearchSpace;
use rand::{RngCore, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::builder::{SearchReport, TrialRecord, run_recorded};
use crate::data::{DataKind, LoadedData};
use crate::error::{Result, SearchError, quote};
use crate::evaluator::{EvalSetup, EvaluatorDef, TrainDef};
use crate::executor::TrialOutcome;
use crate::memory::NetSize;
use crate::nets::rnn::CellKind;
use crate::nets::{NetworkCost, NetworkFamily};
use crate::oneshot::SpaceKind;
use crate::prefilter::{PrefilterSpec, Proxy, rank};
use crate::rnn::{TextEvaluator, bpc_to_percent, text_recipe, train_lm_observed};
use crate::search::{SearchConfig, evaluate_trial};
use crate::strategy::StrategyKind;
use crate::tabular::TableDef;
use crate::train::{
    EpochStats, TrainEvaluator, TrainRecipe, TrainedArchitecture, train_architecture_observed,
};

/// What a network is built for: the default sizes differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Purpose {
    /// Candidates of a multi-trial search (small and quick).
    Search,
    /// One architecture trained on its own (`nas train`).
    Train,
    /// A one-shot supernet.
    Supernet,
}

/// The size of a network: channels (C, or stem channels) and cells (per stage, in all, or
/// per stack, as the space defines them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetShape {
    /// Channels.
    pub channels: usize,
    /// Cells.
    pub cells: usize,
}

/// Sizes a user set; the others come from the space's defaults ([`SpaceDef::shape`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetSettings {
    /// Channels, if set.
    pub channels: Option<usize>,
    /// Cells, if set.
    pub cells: Option<usize>,
}

impl NetSettings {
    /// These settings over `default`.
    pub fn over(self, default: NetShape) -> NetShape {
        NetShape {
            channels: self.channels.unwrap_or(default.channels),
            cells: self.cells.unwrap_or(default.cells),
        }
    }
}

/// Everything a space module says about its space (see the [module docs](self)).
pub trait SpaceDef: Send + Sync + 'static {
    /// The `nas-space` type.
    type Space: SearchSpace<Arch: Display> + 'static;
    /// The name `--space` takes.
    const NAME: &'static str;
    /// One line for `nas space --list` and `--help`.
    const ABOUT: &'static str;
    /// One architecture, for people (`"NAS-Bench-201 cell"`).
    const LABEL: &'static str = "architecture";
    /// Several, for progress lines (`"NAS-Bench-201 cells"`).
    const PLURAL: &'static str = "architectures";
    /// The `nas export --format` that is this space's own text form, if any.
    const NATIVE_FORMAT: Option<&'static str> = None;
    /// What its architectures train on: images, in [`SpaceDef::network`], or text, as the core
    /// of a language model ([`SpaceDef::lm_core`]).
    const DATA: DataKind = DataKind::Images;

    /// The space.
    fn space(&self) -> Self::Space;
    /// One architecture as a Graphviz DOT digraph.
    fn dot(&self, arch: &<Self::Space as SearchSpace>::Arch) -> String;
    /// The default network size for `purpose`; `None` when the space has no such network.
    fn shape(&self, purpose: Purpose) -> Option<NetShape> {
        let _ = purpose;
        None
    }
    /// The network family of that size (how a genotype becomes a network, and its closed-form
    /// cost); `None` when the space has no network (the train evaluator refuses it).
    fn network(
        &self,
        shape: NetShape,
    ) -> Option<Box<dyn NetworkFamily<<Self::Space as SearchSpace>::Arch>>> {
        let _ = shape;
        None
    }
    /// What the memory estimate of [`crate::memory`] knows of that network (`None`: not
    /// estimated).
    fn memory(&self, shape: NetShape) -> Option<NetSize> {
        let _ = shape;
        None
    }
    /// The supernet one-shot strategies search this space with, if any.
    fn supernet(&self) -> Option<SpaceKind> {
        None
    }
    /// The default training recipe (for a text space: its learning rate, batch sizes and clip
    /// make the [`crate::rnn::text_recipe`]).
    fn recipe(&self) -> TrainRecipe {
        TrainRecipe::default()
    }
    /// For a space trained on text ([`SpaceDef::DATA`]): the recurrent core of the character
    /// language model an architecture is trained as (`shape.channels` hidden units); `None` for
    /// the others.
    fn lm_core(arch: &<Self::Space as SearchSpace>::Arch) -> Option<CellKind>
    where
        Self: Sized,
    {
        let _ = arch;
        None
    }
    /// A zero-cost proxy's score of `arch` for `--prefilter` (larger ranks first). Here:
    /// `params` and `flops` of the search network ([`Purpose::Search`] size) on a 3x32x32
    /// input with 10 classes, in closed form; a space that implements `synflow` overrides
    /// this (NAS-Bench-201 does).
    fn proxy(&self, proxy: Proxy, arch: &<Self::Space as SearchSpace>::Arch) -> Result<f64> {
        default_proxy(self, proxy, arch)
    }
}

/// [`SpaceDef::proxy`]'s default (for overrides that add proxies to it).
pub fn default_proxy<D: SpaceDef + ?Sized>(
    def: &D,
    proxy: Proxy,
    arch: &<D::Space as SearchSpace>::Arch,
) -> Result<f64> {
    let family = def.shape(Purpose::Search).and_then(|s| def.network(s));
    match (proxy, family) {
        (Proxy::Params | Proxy::Flops, Some(f)) => {
            let c = f.cost(arch, (3, 32, 32), 10);
            Ok(if proxy == Proxy::Params {
                c.params
            } else {
                c.flops
            } as f64)
        }
        _ => Err(SearchError::Setting(format!(
            "--prefilter: the {} space has no {} proxy{}",
            D::NAME,
            proxy.name(),
            if proxy == Proxy::Synflow {
                " (synflow is implemented for nb201; params and flops need a network)"
            } else {
                " (it has no network)"
            }
        ))),
    }
}

/// An architecture of some registered space (made by [`Space::parse`], [`Space::sample`] ...).
pub struct AnyArch {
    space: &'static str,
    arch: Box<dyn Any + Send + Sync>,
}

impl AnyArch {
    /// Wraps an architecture of the space named `space`.
    pub fn new<A: Any + Send + Sync>(space: &'static str, arch: A) -> AnyArch {
        AnyArch {
            space,
            arch: Box::new(arch),
        }
    }
    /// The architecture, if it is an `A`.
    pub fn get<A: Any>(&self) -> Option<&A> {
        self.arch.downcast_ref()
    }
    /// The name of its space.
    pub fn space(&self) -> &'static str {
        self.space
    }
}

/// An evaluator for the architectures of one space, made by an [`EvaluatorDef`].
pub struct AnyEvaluator {
    inner: Box<dyn Any + Send + Sync>,
}

impl AnyEvaluator {
    /// Wraps an evaluator of `A`s.
    pub fn new<A: 'static>(evaluator: Arc<dyn crate::Evaluator<A>>) -> AnyEvaluator {
        AnyEvaluator {
            inner: Box::new(evaluator),
        }
    }
    /// The evaluator, if it evaluates `A`s.
    pub fn get<A: 'static>(self) -> Option<Arc<dyn crate::Evaluator<A>>> {
        self.inner.downcast().ok().map(|b| *b)
    }
}

/// A multi-trial search handed to [`Space::search`] by the builder.
pub struct SearchRun<'a> {
    /// The strategy (fidelity already set).
    pub strategy: &'a StrategyKind,
    /// The evaluator ([`EvaluatorDef::build`] for this space).
    pub evaluator: AnyEvaluator,
    /// Seed, workers, budget, checkpoint.
    pub config: &'a SearchConfig,
    /// The output directory, if any.
    pub dir: Option<&'a Path>,
    /// Fields added to the `start` event.
    pub extra: serde_json::Value,
    /// Score this many random architectures with a proxy and propose the best first.
    pub prefilter: Option<PrefilterSpec>,
    /// Objectives of the reported front and hard cost limits.
    pub moo: crate::pareto::MooSettings,
    /// Called once the checks pass, with the trials a checkpoint already holds.
    pub on_start: &'a mut dyn FnMut(u64),
    /// Called after every finished trial.
    pub on_trial: &'a mut dyn FnMut(&TrialRecord),
    /// With `--hp`: the evaluation settings (whose [`EvalSetup::hp`] is set) each candidate's
    /// training is made from; the search is then over [`crate::hp::HpSpace`] and `evaluator`
    /// is not used.
    pub hp: Option<&'a EvalSetup>,
}

/// A registered space, type-erased: what the builder, the evaluators and the CLI use. Every
/// [`SpaceDef`] is one.
pub trait Space: Send + Sync {
    /// [`SpaceDef::NAME`].
    fn name(&self) -> &'static str;
    /// [`SpaceDef::ABOUT`].
    fn about(&self) -> &'static str;
    /// [`SpaceDef::LABEL`].
    fn label(&self) -> &'static str;
    /// [`SpaceDef::PLURAL`].
    fn plural(&self) -> &'static str;
    /// [`SpaceDef::NATIVE_FORMAT`].
    fn native_format(&self) -> Option<&'static str>;
    /// The type of its architectures (evaluators specific to one type check it).
    fn arch_type(&self) -> TypeId;
    /// [`SpaceDef::DATA`].
    fn data_kind(&self) -> DataKind;
    /// [`SpaceDef::shape`].
    fn shape(&self, purpose: Purpose) -> Option<NetShape>;
    /// [`SpaceDef::memory`].
    fn memory(&self, shape: NetShape) -> Option<NetSize>;
    /// [`SpaceDef::supernet`].
    fn supernet(&self) -> Option<SpaceKind>;
    /// [`SpaceDef::recipe`].
    fn recipe(&self) -> TrainRecipe;
    /// The name of the network family of that size, if the space has one.
    fn network_name(&self, shape: NetShape) -> Option<String>;
    /// The number of architectures, where known.
    fn size(&self) -> Option<u128>;
    /// The categorical decisions (options per decision).
    fn decisions(&self) -> Vec<usize>;

    /// Parses an architecture from its text form or JSON and validates it; the error quotes
    /// the input and says what is wrong.
    fn parse(&self, text: &str) -> Result<AnyArch>;
    /// A uniform sample.
    fn sample(&self, rng: &mut dyn RngCore) -> AnyArch;
    /// The text form.
    fn to_text(&self, arch: &AnyArch) -> Result<String>;
    /// The JSON form.
    fn to_json(&self, arch: &AnyArch) -> Result<serde_json::Value>;
    /// Graphviz DOT.
    fn dot(&self, arch: &AnyArch) -> Result<String>;
    /// `{"text": ..., "arch": ...}`: both forms as JSON.
    fn both(&self, arch: &AnyArch) -> Result<serde_json::Value> {
        Ok(serde_json::json!({"text": self.to_text(arch)?, "arch": self.to_json(arch)?}))
    }
    /// The size as JSON: a number where it fits in u64, else a decimal string; null if
    /// unknown.
    fn size_json(&self) -> serde_json::Value {
        self.size()
            .map_or(serde_json::Value::Null, |n| match u64::try_from(n) {
                Ok(v) => serde_json::json!(v),
                Err(_) => serde_json::json!(n.to_string()),
            })
    }
    /// One random mutation.
    fn mutate(&self, arch: &AnyArch, rng: &mut dyn RngCore) -> Result<AnyArch>;
    /// Every architecture one step away.
    fn neighbours(&self, arch: &AnyArch) -> Result<Vec<AnyArch>>;
    /// The canonical form.
    fn canonical(&self, arch: &AnyArch) -> Result<String>;
    /// Single-step moves between two architectures.
    fn distance(&self, a: &AnyArch, b: &AnyArch) -> Result<usize>;
    /// One choice index per decision.
    fn encode(&self, arch: &AnyArch) -> Result<Vec<usize>>;
    /// The architecture of one choice index per decision.
    fn decode(&self, choices: &[usize]) -> Result<AnyArch>;

    /// The train-from-scratch evaluator over this space's network of `shape` (for a text space,
    /// its language model of `shape.channels` units) on `data`.
    fn train_evaluator(
        &self,
        shape: NetShape,
        data: &LoadedData,
        recipe: TrainRecipe,
        on_epoch: Option<crate::train::EpochHook>,
    ) -> Result<AnyEvaluator>;
    /// Runs a multi-trial search (see [`run_recorded`]).
    fn search(&self, run: SearchRun<'_>) -> Result<SearchReport>;
    /// One trial of a search with `--hp` from its spec ([`crate::hp::eval_trial`]).
    fn eval_hp_trial(
        &self,
        setup: &EvalSetup,
        spec: &crate::executor::TrialSpec,
    ) -> Result<TrialOutcome>;
    /// Evaluates one trial of a search the way its loop does ([`crate::executor::run_trial`]),
    /// after checking that `evaluator` is the one named `evaluator_id`.
    fn eval_trial(
        &self,
        evaluator: AnyEvaluator,
        evaluator_id: &str,
        arch: &AnyArch,
        fidelity: u32,
        trial: u64,
        seed: u64,
    ) -> Result<TrialOutcome>;
    /// Trains one architecture in the network of `shape` on `data`. For a text space the
    /// accuracies are `100 * 2^-bpc` ([`bpc_to_percent`]) and the losses bits per character.
    #[allow(clippy::too_many_arguments)]
    fn train(
        &self,
        arch: &AnyArch,
        shape: NetShape,
        data: &LoadedData,
        recipe: &TrainRecipe,
        epochs: usize,
        seed: u64,
        on_epoch: &mut dyn FnMut(&EpochStats),
    ) -> Result<TrainedArchitecture>;
}

fn typed<D: SpaceDef>(arch: &AnyArch) -> Result<&<D::Space as SearchSpace>::Arch> {
    arch.get().ok_or_else(|| {
        SearchError::Config(format!(
            "an architecture of space {} given to space {}",
            arch.space,
            D::NAME
        ))
    })
}

/// The error for an input of space `D` that is not one of its architectures.
fn bad_arch<D: SpaceDef>(json: &'static str, input: &str, problem: String) -> SearchError {
    SearchError::Arch {
        space: D::NAME.to_string(),
        json,
        input: quote(input),
        problem,
    }
}

/// The error for data of the wrong kind for space `D`.
fn wrong_data<D: SpaceDef>(data: &LoadedData) -> SearchError {
    SearchError::Setting(format!(
        "the {} space trains on {}, not {}",
        D::NAME,
        D::DATA.as_str(),
        data.kind().as_str()
    ))
}

fn no_network<D: SpaceDef>() -> SearchError {
    SearchError::Setting(format!(
        "the {} space has no network to train its architectures in",
        D::NAME
    ))
}

impl<D: SpaceDef> Space for D {
    fn name(&self) -> &'static str {
        D::NAME
    }
    fn about(&self) -> &'static str {
        D::ABOUT
    }
    fn label(&self) -> &'static str {
        D::LABEL
    }
    fn plural(&self) -> &'static str {
        D::PLURAL
    }
    fn native_format(&self) -> Option<&'static str> {
        D::NATIVE_FORMAT
    }
    fn arch_type(&self) -> TypeId {
        TypeId::of::<<D::Space as SearchSpace>::Arch>()
    }
    fn data_kind(&self) -> DataKind {
        D::DATA
    }
    fn shape(&self, purpose: Purpose) -> Option<NetShape> {
        SpaceDef::shape(self, purpose)
    }
    fn memory(&self, shape: NetShape) -> Option<NetSize> {
        SpaceDef::memory(self, shape)
    }
    fn supernet(&self) -> Option<SpaceKind> {
        SpaceDef::supernet(self)
    }
    fn recipe(&self) -> TrainRecipe {
        SpaceDef::recipe(self)
    }
    fn network_name(&self, shape: NetShape) -> Option<String> {
        self.network(shape).map(|n| n.name())
    }
    fn size(&self) -> Option<u128> {
        self.space().size()
    }
    fn decisions(&self) -> Vec<usize> {
        self.space().decisions()
    }

    fn parse(&self, text: &str) -> Result<AnyArch> {
        let space = self.space();
        let bad = |json, problem| bad_arch::<D>(json, text, problem);
        let arch = if looks_like_json(text) {
            serde_json::from_str(text).map_err(|e| bad(" JSON", e.to_string()))?
        } else {
            space.parse(text).map_err(|e| bad("", e.to_string()))?
        };
        space.validate(&arch).map_err(|e| bad("", e.to_string()))?;
        Ok(AnyArch::new(D::NAME, arch))
    }
    fn sample(&self, rng: &mut dyn RngCore) -> AnyArch {
        AnyArch::new(D::NAME, self.space().sample(rng))
    }
    fn to_text(&self, arch: &AnyArch) -> Result<String> {
        Ok(self.space().to_text(typed::<D>(arch)?))
    }
    fn to_json(&self, arch: &AnyArch) -> Result<serde_json::Value> {
        serde_json::to_value(typed::<D>(arch)?).map_err(|e| SearchError::Serde(e.to_string()))
    }
    fn dot(&self, arch: &AnyArch) -> Result<String> {
        Ok(SpaceDef::dot(self, typed::<D>(arch)?))
    }
    fn mutate(&self, arch: &AnyArch, rng: &mut dyn RngCore) -> Result<AnyArch> {
        let a = self.space().mutate(typed::<D>(arch)?, rng);
        Ok(AnyArch::new(D::NAME, a))
    }
    fn neighbours(&self, arch: &AnyArch) -> Result<Vec<AnyArch>> {
        let ns = self.space().neighbours(typed::<D>(arch)?);
        Ok(ns.into_iter().map(|a| AnyArch::new(D::NAME, a)).collect())
    }
    fn canonical(&self, arch: &AnyArch) -> Result<String> {
        Ok(self.space().canonical(typed::<D>(arch)?))
    }
    fn distance(&self, a: &AnyArch, b: &AnyArch) -> Result<usize> {
        Ok(self.space().distance(typed::<D>(a)?, typed::<D>(b)?))
    }
    fn encode(&self, arch: &AnyArch) -> Result<Vec<usize>> {
        Ok(self.space().encode_decisions(typed::<D>(arch)?))
    }
    fn decode(&self, choices: &[usize]) -> Result<AnyArch> {
        let a = self.space().decode_decisions(choices).map_err(|e| {
            let text: Vec<String> = choices.iter().map(|c| c.to_string()).collect();
            bad_arch::<D>("", &text.join(","), e.to_string())
        })?;
        Ok(AnyArch::new(D::NAME, a))
    }

    fn train_evaluator(
        &self,
        shape: NetShape,
        data: &LoadedData,
        recipe: TrainRecipe,
        on_epoch: Option<crate::train::EpochHook>,
    ) -> Result<AnyEvaluator> {
        let splits = match (data, D::DATA) {
            (LoadedData::Images(s), DataKind::Images) => s.clone(),
            (LoadedData::Text(corpus), DataKind::Text) => {
                let ev = TextEvaluator::<<D::Space as SearchSpace>::Arch> {
                    corpus: corpus.clone(),
                    recipe: text_recipe(shape.channels, &recipe, 1),
                    core: D::lm_core,
                    on_epoch,
                };
                return Ok(AnyEvaluator::new::<<D::Space as SearchSpace>::Arch>(
                    Arc::new(ev),
                ));
            }
            _ => return Err(wrong_data::<D>(data)),
        };
        let family = self.network(shape).ok_or_else(no_network::<D>)?;
        let ev = TrainEvaluator::new(family, splits, recipe)
            .map_err(|e| SearchError::Config(e.to_string()))?
            .observed(on_epoch);
        Ok(AnyEvaluator::new::<<D::Space as SearchSpace>::Arch>(
            Arc::new(ev),
        ))
    }
    fn search(&self, run: SearchRun<'_>) -> Result<SearchReport> {
        if let Some(setup) = run.hp {
            return crate::hp::search(self, run, setup);
        }
        let evaluator = run
            .evaluator
            .get::<<D::Space as SearchSpace>::Arch>()
            .ok_or_else(|| {
                SearchError::Setting(format!(
                    "the evaluator does not evaluate {} architectures",
                    D::NAME
                ))
            })?;
        let space = self.space();
        let warm = match &run.prefilter {
            Some(spec) => rank(&space, spec, run.config.seed, &mut |a| {
                self.proxy(spec.proxy, a)
            })?,
            None => Vec::new(),
        };
        let probe = space.sample(&mut rand_chacha::ChaCha8Rng::seed_from_u64(0));
        let mut moo = crate::pareto::MooRun::for_evaluator(run.moo, evaluator.clone(), &probe)?;
        let evaluator = match crate::latency::for_search(
            &run.moo,
            crate::latency::LatencySettings::default(),
            &evaluator,
            &probe,
            run.dir,
            run.config.executor.is_some(),
        )? {
            Some(model) => {
                let (ev, m) = (evaluator.clone(), model.clone());
                moo.latency = Some(Arc::new(move |a: &<D::Space as SearchSpace>::Arch| {
                    crate::latency::latency_of(&*ev, &m, a)
                }));
                Arc::new(crate::latency::WithLatency::new(evaluator, model))
                    as Arc<dyn crate::Evaluator<<D::Space as SearchSpace>::Arch>>
            }
            None => evaluator,
        };
        run_recorded(
            &space,
            run.strategy,
            &warm,
            &moo,
            &*evaluator,
            run.config,
            run.dir,
            run.extra,
            run.on_start,
            run.on_trial,
        )
    }
    fn eval_hp_trial(
        &self,
        setup: &EvalSetup,
        spec: &crate::executor::TrialSpec,
    ) -> Result<TrialOutcome> {
        crate::hp::eval_trial(self, setup, spec)
    }
    fn eval_trial(
        &self,
        evaluator: AnyEvaluator,
        evaluator_id: &str,
        arch: &AnyArch,
        fidelity: u32,
        trial: u64,
        seed: u64,
    ) -> Result<TrialOutcome> {
        let evaluator = evaluator
            .get::<<D::Space as SearchSpace>::Arch>()
            .ok_or_else(|| {
                SearchError::Setting(format!(
                    "the evaluator does not evaluate {} architectures",
                    D::NAME
                ))
            })?;
        if evaluator.name() != evaluator_id {
            return Err(SearchError::Setting(format!(
                "the trial spec was written for evaluator {evaluator_id:?}; its settings build \
                 {:?} here (another version of nas, or data that differs)",
                evaluator.name()
            )));
        }
        Ok(evaluate_trial(
            &*evaluator,
            typed::<D>(arch)?,
            fidelity,
            trial,
            seed,
        ))
    }
    fn train(
        &self,
        arch: &AnyArch,
        shape: NetShape,
        data: &LoadedData,
        recipe: &TrainRecipe,
        epochs: usize,
        seed: u64,
        on_epoch: &mut dyn FnMut(&EpochStats),
    ) -> Result<TrainedArchitecture> {
        let arch = typed::<D>(arch)?;
        let splits = match (data, D::DATA) {
            (LoadedData::Images(s), DataKind::Images) => s,
            (LoadedData::Text(corpus), DataKind::Text) => {
                let core = D::lm_core(arch).ok_or_else(no_network::<D>)?;
                let epochs = u32::try_from(epochs)
                    .map_err(|_| SearchError::Setting(format!("--epochs {epochs} is too many")))?;
                let text = text_recipe(shape.channels, recipe, epochs);
                let start = std::time::Instant::now();
                let mut stats = Vec::new();
                let mut hook = |s: &EpochStats| {
                    stats.push(*s);
                    on_epoch(s);
                };
                let (r, model) = train_lm_observed(&core, corpus, &text, seed, None, &mut hook)?;
                return Ok(TrainedArchitecture {
                    module: Box::new(model),
                    epochs: stats,
                    valid_accuracy: Some(bpc_to_percent(r.valid_bpc)),
                    valid_loss: Some(r.valid_bpc),
                    test_accuracy: bpc_to_percent(r.test_bpc),
                    test_loss: r.test_bpc,
                    cost: NetworkCost {
                        params: r.params as u64,
                        flops: 0,
                    },
                    wall_time_s: start.elapsed().as_secs_f64(),
                });
            }
            _ => return Err(wrong_data::<D>(data)),
        };
        let family = self.network(shape).ok_or_else(no_network::<D>)?;
        Ok(train_architecture_observed(
            &*family, arch, splits, recipe, epochs, seed, on_epoch,
        )?)
    }
}

/// Largest architecture input read from a file or stdin by [`read_arch`].
pub const MAX_ARCH_BYTES: u64 = 16 << 20;

/// The text of an architecture argument: `@FILE` reads the file, `-` reads stdin, anything
/// else is the architecture itself. Returns the text, trimmed. Files and stdin are read up to
/// [`MAX_ARCH_BYTES`]; more, or text that is not UTF-8, is an error naming the input.
pub fn read_arch(arg: &str) -> Result<String> {
    use std::io::Read as _;
    let read = |name: &str, r: &mut dyn std::io::Read| -> Result<String> {
        let input = |problem| SearchError::Input {
            path: name.into(),
            problem,
        };
        let mut bytes = Vec::new();
        r.take(MAX_ARCH_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| SearchError::io(Path::new(name), e))?;
        if bytes.len() as u64 > MAX_ARCH_BYTES {
            return Err(input(format!(
                "more than {} MiB: not an architecture (the input is read up to that size)",
                MAX_ARCH_BYTES >> 20
            )));
        }
        String::from_utf8(bytes).map_err(|e| {
            let at = e.utf8_error().valid_up_to();
            input(format!("not UTF-8 text (invalid byte at offset {at})"))
        })
    };
    let text = if let Some(path) = arg.strip_prefix('@') {
        let mut f = std::fs::File::open(path).map_err(|e| SearchError::io(Path::new(path), e))?;
        read(path, &mut f)?
    } else if arg == "-" {
        read("<stdin>", &mut std::io::stdin().lock())?
    } else {
        arg.to_string()
    };
    Ok(text.trim().to_string())
}

/// True when `text` looks like JSON (an object, array or string) rather than a text form.
pub fn looks_like_json(text: &str) -> bool {
    matches!(text.trim_start().chars().next(), Some('{' | '[' | '"'))
}

/// The spaces and evaluators the builder and the CLI know, by name.
#[derive(Clone)]
pub struct Registry {
    spaces: Vec<Arc<dyn Space>>,
    evaluators: Vec<Arc<dyn EvaluatorDef>>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry::builtin()
    }
}

impl Registry {
    /// The built-in spaces and evaluators: the one list of them.
    pub fn builtin() -> Registry {
        Registry {
            spaces: Vec::new(),
            evaluators: Vec::new(),
        }
        .with_space(nb201::Nb201)
        .with_space(darts::Darts)
        .with_space(nb101::Nb101)
        .with_space(chain::Chain)
        .with_space(chain::ChainMlp)
        .with_space(rnn::Rnn)
        .with_evaluator(TrainDef)
        .with_evaluator(TableDef)
    }

    /// Adds (or, under the same name, replaces) a space.
    pub fn with_space(mut self, def: impl SpaceDef) -> Registry {
        let name = <dyn Space>::name(&def);
        self.spaces.retain(|s| s.name() != name);
        self.spaces.push(Arc::new(def));
        self
    }

    /// Adds (or, under the same name, replaces) an evaluator.
    pub fn with_evaluator(mut self, def: impl EvaluatorDef + 'static) -> Registry {
        let name = def.name();
        self.evaluators.retain(|e| e.name() != name);
        self.evaluators.push(Arc::new(def));
        self
    }

    /// The spaces, in registration order.
    pub fn spaces(&self) -> impl Iterator<Item = &dyn Space> {
        self.spaces.iter().map(|s| &**s)
    }

    /// The space names, in registration order.
    pub fn names(&self) -> Vec<&'static str> {
        self.spaces.iter().map(|s| s.name()).collect()
    }

    /// The evaluators, in registration order.
    pub fn evaluators(&self) -> impl Iterator<Item = &dyn EvaluatorDef> {
        self.evaluators.iter().map(|e| &**e)
    }

    /// The space named `name`; an error listing the known ones otherwise.
    pub fn space(&self, name: &str) -> Result<&dyn Space> {
        self.spaces()
            .find(|s| s.name() == name)
            .ok_or_else(|| unknown("space", name, self.names()))
    }

    /// The evaluator named `name`; an error listing the known ones otherwise.
    pub fn evaluator(&self, name: &str) -> Result<&dyn EvaluatorDef> {
        self.evaluators().find(|e| e.name() == name).ok_or_else(|| {
            unknown(
                "evaluator",
                name,
                self.evaluators().map(|e| e.name()).collect(),
            )
        })
    }

    /// The architecture `text` in the space named `given`, or, without one, in the first space
    /// (in registration order) that parses it; an error listing every space's complaint if
    /// none does.
    pub fn resolve(&self, given: Option<&str>, text: &str) -> Result<(&dyn Space, AnyArch)> {
        if let Some(name) = given {
            let space = self.space(name)?;
            return Ok((space, space.parse(text)?));
        }
        let mut complaints = Vec::new();
        for space in self.spaces() {
            match space.parse(text) {
                Ok(a) => return Ok((space, a)),
                Err(e) => complaints.push(format!("  {}: {e}", space.name())),
            }
        }
        Err(SearchError::Config(format!(
            "{} is not an architecture of any known space (pass --space to choose one):\n{}",
            quote(text),
            complaints.join("\n")
        )))
    }

    /// One line per space: name and description (what `nas space --list` prints).
    pub fn describe_spaces(&self) -> String {
        self.spaces()
            .map(|s| format!("{:<10} {}\n", s.name(), s.about()))
            .collect()
    }

    /// The evaluators with what they do, for `--help`.
    pub fn describe_evaluators(&self) -> String {
        let list: Vec<String> = self
            .evaluators()
            .map(|e| format!("{} ({})", e.name(), e.about()))
            .collect();
        list.join("; ")
    }

    /// The default network sizes of every space for `purpose`, for `--help`
    /// (`"nb201 C=8 cells=1, darts C=8 cells=3, ..."`).
    pub fn describe_shapes(&self, purpose: Purpose) -> String {
        self.spaces()
            .filter_map(|s| {
                s.shape(purpose)
                    .filter(|p| p.channels > 0)
                    .map(|p| format!("{} {}/{}", s.name(), p.channels, p.cells))
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn unknown(what: &str, name: &str, known: Vec<&'static str>) -> SearchError {
    SearchError::Setting(format!(
        "unknown {what} {name:?} (known: {})",
        known.join(", ")
    ))
}
