//! The [`Evaluator`] trait: an architecture at a fidelity in, a measured result out.
//!
//! The same trait serves the tabular NAS-Bench-201 look-up ([`crate::tabular::Nb201Evaluator`]),
//! synthetic objectives ([`crate::synthetic`]) and, later, training from scratch: an evaluator
//! that trains a network for `fidelity` epochs with the trial's `seed`, reports
//! [`EvalError::Failed`] when the loss becomes NaN (the search records a failed trial and goes
//! on), and otherwise returns validation/test accuracy, loss, parameters and FLOPs. Wall time is
//! measured by the search loop around the call, so evaluators need not time themselves.
//! Evaluators are `Send + Sync`: the search calls them from several worker threads at once.
//!
//! The evaluators a search can name (`train`, `nb201-table`) are registered in
//! [`crate::spaces::Registry`] as [`EvaluatorDef`]s: each says how to build itself for a space
//! from one [`EvalSetup`], at which fidelity it evaluates, and how a search with it is
//! described. [`TrainDef`] trains in the space's network (or, for a space trained on text, the
//! character language model its cell is the core of); the table's is
//! [`crate::tabular::TableDef`].

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::data::{DataKind, DataSpec, LoadedData};
use crate::error::{Result, SearchError};
use crate::spaces::{AnyEvaluator, NetSettings, NetShape, Purpose, Space};
use crate::strategy::StrategyKind;
use crate::train::{EpochHook, TrainRecipe};

/// What to evaluate: one architecture at one fidelity.
#[derive(Debug, Clone, Copy)]
pub struct EvalRequest<'a, A> {
    /// The architecture.
    pub arch: &'a A,
    /// The fidelity: training epochs (for the NAS-Bench-201 table 12 or 200).
    pub fidelity: u32,
    /// The trial's id in the search history (0, 1, 2, ...).
    pub trial_id: u64,
    /// A seed derived from the search seed and the trial id only (never from the worker or the
    /// timing): an evaluator that trains must draw all its randomness from it, so that a resumed
    /// or parallel search repeats the same results.
    pub seed: u64,
    /// When the search's wall-time budget runs out (`None`: no limit). An evaluator that can
    /// stop part-way (training) checks it and returns [`EvalError::Cut`] once it has passed:
    /// the trial is then not recorded as finished, and a resumed search runs it again.
    pub deadline: Option<std::time::Instant>,
}

/// The measurements of one successful evaluation. Accuracies are in percent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// The accuracy the search sees and optimises (validation accuracy at the requested
    /// fidelity).
    pub valid_accuracy: f64,
    /// The accuracy reported for the architecture (for the NAS-Bench-201 table: the 200-epoch
    /// test accuracy, whatever the fidelity searched at). Never shown to strategies.
    pub test_accuracy: Option<f64>,
    /// Final training or validation loss, where the evaluator has one.
    pub loss: Option<f64>,
    /// Number of parameters of the network.
    pub params: Option<u64>,
    /// Multiply-accumulates of one forward pass of one image (see [`crate::nb201_cost`]).
    pub flops: Option<u64>,
    /// Measured CPU inference latency of the network in milliseconds (the summed latency
    /// table of [`crate::latency`]), added by the search when latency is an objective or a
    /// limit; evaluators leave it `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
    /// Cost of the evaluation in the evaluator's simulated unit (the table: training epochs).
    /// Budgets by cost count this, not wall time.
    pub cost: f64,
}

/// Why an evaluation produced no metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum EvalError {
    /// The trial failed (NaN loss, diverged, out of memory for this architecture...): it is
    /// recorded as failed with the reason and the search goes on. `cost` is what was spent.
    Failed {
        /// Why it failed.
        reason: String,
        /// Simulated cost spent before failing.
        cost: f64,
    },
    /// An error that makes further evaluations pointless (missing data, broken device): the
    /// search stops, keeping its checkpoint, and returns the error.
    Fatal(String),
    /// The evaluation was stopped part-way because [`EvalRequest::deadline`] passed: no result
    /// (never a partial score); the search stops with [`crate::StopReason::WallTime`] and keeps
    /// the trial pending in its checkpoint.
    Cut {
        /// Where it was cut.
        reason: String,
    },
}

/// Architecture + fidelity -> result. Implementations must be deterministic given
/// [`EvalRequest::seed`] for searches to be reproducible and resumable.
pub trait Evaluator<A>: Send + Sync {
    /// A stable name including what it evaluates on (`"nb201-table/cifar10"`), stored in and
    /// checked against checkpoints.
    fn name(&self) -> String;

    /// Evaluates one architecture at one fidelity.
    fn evaluate(&self, request: &EvalRequest<'_, A>) -> Result<Metrics, EvalError>;

    /// The parameters and FLOPs [`Evaluator::evaluate`] would report for `arch`, in closed
    /// form and without evaluating (`None`: this evaluator cannot tell). Hard cost limits
    /// (`--max-params`, [`crate::pareto::Constrained`]) check candidates with it.
    fn network_cost(&self, arch: &A) -> Option<crate::nets::NetworkCost> {
        let _ = arch;
        None
    }

    /// Test accuracies (%) of `arch` on the data sets the user asked to have reported
    /// (`--report`), by data-set name. Called once, for the final choice, after the search has
    /// ended: never shown to a strategy. Default: none (only [`Metrics::test_accuracy`]).
    fn reported_tests(&self, arch: &A) -> Vec<(String, f64)> {
        let _ = arch;
        Vec::new()
    }

    /// The ops (with shapes) of the network [`Evaluator::evaluate`] would run for `arch`,
    /// for its measured latency ([`crate::latency`]; `--objectives acc,latency`,
    /// `--max-latency-ms`). `None`: this evaluator cannot tell.
    fn network_ops(&self, arch: &A) -> Option<Vec<crate::latency::LatOp>> {
        let _ = arch;
        None
    }
}

impl<A, E: Evaluator<A> + ?Sized> Evaluator<A> for &E {
    fn name(&self) -> String {
        (**self).name()
    }
    fn evaluate(&self, request: &EvalRequest<'_, A>) -> Result<Metrics, EvalError> {
        (**self).evaluate(request)
    }
    fn network_cost(&self, arch: &A) -> Option<crate::nets::NetworkCost> {
        (**self).network_cost(arch)
    }
    fn reported_tests(&self, arch: &A) -> Vec<(String, f64)> {
        (**self).reported_tests(arch)
    }
    fn network_ops(&self, arch: &A) -> Option<Vec<crate::latency::LatOp>> {
        (**self).network_ops(arch)
    }
}

/// Derives the per-trial seed from the search seed and the trial id (SplitMix64 finaliser).
pub fn trial_seed(search_seed: u64, trial_id: u64) -> u64 {
    let mut z = search_seed ^ trial_id.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Everything an evaluator may be built from: the settings of a search that concern
/// evaluation (the builder fills it; defaults in [`crate::builder`]).
#[derive(Clone)]
pub struct EvalSetup {
    /// The data set to train on (`None`: the default of the space's kind,
    /// [`DataKind::default_spec`]).
    pub data: Option<DataSpec>,
    /// Fraction of the training set held out for validation.
    pub valid_fraction: f64,
    /// The search seed (splits).
    pub seed: u64,
    /// Training epochs per candidate.
    pub epochs: u32,
    /// The training recipe; `None`: the space's ([`crate::spaces::SpaceDef::recipe`]).
    pub recipe: Option<TrainRecipe>,
    /// Learning rate over the recipe's, if set.
    pub lr: Option<f32>,
    /// Batch size over the recipe's, if set.
    pub batch_size: Option<usize>,
    /// Train on at most this many training examples (`None`: all).
    pub train_examples: Option<usize>,
    /// Where to train.
    pub device: nas_tensor::Device,
    /// Network sizes set by the user (the others: the space's defaults for a search).
    pub net: NetSettings,
    /// The NAS-Bench-201 table's data set name.
    pub table_dataset: String,
    /// The NAS-Bench-201 table's fidelity (12 or 200).
    pub table_epochs: u32,
    /// The NAS-Bench-201 data sets whose 200-epoch test accuracy of the final choice is
    /// reported (`--report`: a data set name, a comma-separated list, or `all`); `None`: only
    /// the searched one, as [`Metrics::test_accuracy`].
    pub table_report: Option<String>,
    /// The loaded data (the builder loads it for an evaluator that trains).
    pub loaded: Option<LoadedData>,
    /// Called after every training epoch.
    pub on_epoch: Option<EpochHook>,
    /// Hyperparameters searched with the architecture (`--hp`; [`crate::hp`]).
    pub hp: Option<crate::hp::HpSpec>,
}

impl EvalSetup {
    /// The recipe for `space`: its own (or [`EvalSetup::recipe`]) with the settings given here.
    pub fn recipe_for(&self, space: &dyn Space) -> TrainRecipe {
        let base = self.recipe.unwrap_or_else(|| space.recipe());
        TrainRecipe {
            lr: self.lr.unwrap_or(base.lr),
            batch_size: self.batch_size.unwrap_or(base.batch_size),
            train_examples: self.train_examples.or(base.train_examples),
            device: self.device,
            ..base
        }
    }

    /// The data set for `space`: the one set, or the default of its kind; an error naming
    /// `--data` when the set is of the other kind (text for an image space, images for a
    /// space of recurrent cells).
    pub fn data_for(&self, space: &dyn Space) -> Result<DataSpec> {
        data_for(self.data.as_ref(), space)
    }

    /// Loads the data for `space` ([`EvalSetup::data_for`]): images split by
    /// [`EvalSetup::valid_fraction`], or a text corpus whose parts each hold at least one
    /// window of [`crate::rnn::TEXT_BPTT`] characters.
    pub fn load(&self, space: &dyn Space) -> Result<LoadedData> {
        load_data(&self.data_for(space)?, self.valid_fraction, self.seed)
    }

    /// The network size for a search in `space` (`None`: the space has no network).
    pub fn shape_for(&self, space: &dyn Space, purpose: Purpose) -> Option<NetShape> {
        space.shape(purpose).map(|d| self.net.over(d))
    }

    /// Refuses values no run can use, naming the setting as `nas` spells it.
    pub fn check(&self) -> Result<()> {
        if let Some(lr) = self.lr
            && !(lr.is_finite() && lr > 0.0)
        {
            return Err(SearchError::Setting(format!(
                "--lr must be a positive number, got {lr}"
            )));
        }
        for (name, v) in [
            ("--batch-size", self.batch_size),
            ("--channels", self.net.channels),
            ("--cells", self.net.cells),
            ("--limit-train", self.train_examples),
        ] {
            if v == Some(0) {
                return Err(SearchError::Setting(format!("{name} must be at least 1")));
            }
        }
        Ok(())
    }
}

/// `given` (or the default of the space's kind) when it is of the kind `space` trains on; an
/// error naming `--data` otherwise.
pub fn data_for(given: Option<&DataSpec>, space: &dyn Space) -> Result<DataSpec> {
    let want = space.data_kind();
    let Some(data) = given else {
        return Ok(want.default_spec());
    };
    if data.kind() == want {
        return Ok(data.clone());
    }
    Err(crate::data::DataError::Spec {
        spec: data.to_string(),
        message: format!(
            "--data is {}, but the {} space trains on {}; give one of: {}",
            data.kind().as_str(),
            space.name(),
            want.as_str(),
            want.help()
        ),
    }
    .into())
}

/// Loads `data`: images split with `valid_fraction` of the training part held out (seeded),
/// or a text corpus (each part at least [`crate::rnn::TEXT_BPTT`] + 1 characters).
pub fn load_data(data: &DataSpec, valid_fraction: f64, seed: u64) -> Result<LoadedData> {
    Ok(match data {
        DataSpec::Text(t) => LoadedData::Text(Arc::new(t.load(crate::rnn::TEXT_BPTT)?)),
        images => LoadedData::Images(Arc::new(images.load()?.prepare(valid_fraction, seed)?)),
    })
}

/// A registered evaluator (see the [module docs](self)).
pub trait EvaluatorDef: Send + Sync {
    /// The name `--evaluator` takes.
    fn name(&self) -> &'static str;
    /// One line for `--help`.
    fn about(&self) -> &'static str;
    /// Whether it trains networks: the builder then loads the data, checks the memory
    /// estimate and reports epochs, and strategies may use any fidelity (epochs).
    fn trains(&self) -> bool;
    /// The fidelity candidates are evaluated at; an error for settings it cannot use.
    fn fidelity(&self, setup: &EvalSetup) -> Result<u32>;
    /// The evaluator for `space`; an error when it cannot evaluate that space.
    fn build(&self, space: &dyn Space, setup: &EvalSetup) -> Result<AnyEvaluator>;
    /// What a search of `evaluations` candidates with it does, for the progress header.
    fn describe(
        &self,
        space: &dyn Space,
        setup: &EvalSetup,
        strategy: &StrategyKind,
        evaluations: u64,
    ) -> String;
}

/// `train`: trains every candidate from scratch in its space's network
/// ([`crate::train::TrainEvaluator`]) for `epochs` epochs.
pub struct TrainDef;

impl EvaluatorDef for TrainDef {
    fn name(&self) -> &'static str {
        "train"
    }
    fn about(&self) -> &'static str {
        "train each candidate from scratch on --data"
    }
    fn trains(&self) -> bool {
        true
    }
    fn fidelity(&self, setup: &EvalSetup) -> Result<u32> {
        if setup.epochs == 0 {
            return Err(SearchError::Setting("--epochs must be at least 1".into()));
        }
        if !(setup.valid_fraction > 0.0 && setup.valid_fraction < 1.0) {
            return Err(SearchError::Setting(format!(
                "--valid-fraction must be in (0, 1), got {}",
                setup.valid_fraction
            )));
        }
        Ok(setup.epochs)
    }
    fn build(&self, space: &dyn Space, setup: &EvalSetup) -> Result<AnyEvaluator> {
        let shape = setup.shape_for(space, Purpose::Search).ok_or_else(|| {
            SearchError::Setting(format!(
                "--evaluator train: the {} space has no network to train",
                space.name()
            ))
        })?;
        let data = match &setup.loaded {
            Some(d) => d.clone(),
            None => setup.load(space)?,
        };
        space.train_evaluator(
            shape,
            &data,
            setup.recipe_for(space),
            setup.on_epoch.clone(),
        )
    }
    fn describe(
        &self,
        space: &dyn Space,
        setup: &EvalSetup,
        strategy: &StrategyKind,
        evaluations: u64,
    ) -> String {
        let limit = setup.recipe_for(space).train_examples;
        let (n_train, unit) = match &setup.loaded {
            Some(LoadedData::Images(s)) => {
                let all = s.train.len();
                (limit.map_or(all, |n| n.min(all)), "images".to_string())
            }
            Some(LoadedData::Text(c)) => {
                let all = c.train.len() / crate::rnn::TEXT_BPTT;
                let n = limit.map_or(all, |n| n.min(all));
                (
                    n,
                    format!("sequences of {} characters", crate::rnn::TEXT_BPTT),
                )
            }
            None => (0, "examples".to_string()),
        };
        let ladder = strategy.fidelities(setup.epochs);
        // A ladder (Hyperband) trains its candidates for its rungs' epochs, not all for --epochs.
        let per_trial = if ladder.len() > 1 {
            let rungs: Vec<String> = ladder.iter().map(u32::to_string).collect();
            let name = strategy.name();
            // an acronym is written in capitals (BOHB), a name capitalised (Hyperband)
            let capital = match name {
                "bohb" => name.to_uppercase(),
                _ => name[..1].to_uppercase() + &name[1..],
            };
            format!("trained {} epoch(s) by {capital}'s rungs", rungs.join("/"))
        } else {
            format!("each trained {} epoch(s)", setup.epochs)
        };
        let channels = setup
            .shape_for(space, Purpose::Search)
            .map_or(0, |s| s.channels);
        let size = match space.data_kind() {
            DataKind::Images => format!("C={channels}"),
            DataKind::Text => format!("{channels} hidden units"),
        };
        let data = setup
            .data_for(space)
            .map_or_else(|e| e.to_string(), |d| d.to_string());
        format!(
            "searching {} with {}: {evaluations} candidates, {per_trial} on {n_train} {unit} of {data} ({size})",
            space.plural(),
            strategy.name(),
        )
    }
}
