//! Trial executors: where the evaluations of a multi-trial search run.
//!
//! The search loop ([`crate::search`]) asks its strategy for candidates and tells it results;
//! between the two, a trial is evaluated. By default (`local`) that happens in the search's own
//! process, inline or on `--workers` threads, exactly as before executors existed. A *remote*
//! executor ([`RemoteExecutor`]) instead receives each trial as a [`RemoteJob`] (the
//! architecture as JSON, its fidelity, its seed), turns it into a self-contained
//! [`TrialSpec`] file (space, evaluator, data, recipe, network sizes, seed: everything
//! [`run_trial`] needs to rebuild the evaluator) and has `nas eval --spec FILE --out DIR` run it
//! somewhere else (a Slurm job array: [`slurm`]; a Ray job per trial: [`ray`]; both are
//! [`remote::Tracker`]s over a [`remote::Scheduler`], which share how results are read and lost
//! trials retried). The result comes back as a [`TrialResult`]
//! file, holding the same [`Finished`] record the loop builds for a local evaluation, so the
//! history, the events log and the checkpoint are the same whichever executor ran the trials:
//! the trial seed travels in the spec, and the evaluator is rebuilt from the same settings
//! (its [`crate::Evaluator::name`] is checked against the search's).
//!
//! A remote executor may give a trial a *ticket* (a Slurm array task id, a Ray submission id); the loop saves it in
//! the checkpoint with the pending trial, so a search resumed after a kill hands the ticket
//! back and the executor watches the running job instead of submitting it again.
//!
//! Executors are chosen by name ([`ExecutorSettings::kind`], `nas search --executor`): the
//! list is [`EXECUTORS`].

pub mod http;
pub mod ray;
pub mod remote;
pub mod slurm;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::checkpoint;
use crate::data::DataSpec;
use crate::error::{Result, SearchError, quote};
use crate::evaluator::EvalSetup;
use crate::search::Finished;
use crate::spaces::{NetSettings, Registry};
use crate::train::TrainRecipe;

/// The executors `--executor` takes: `local` (in this process; the default), `slurm` and `ray`.
pub const EXECUTORS: [&str; 3] = ["local", "slurm", "ray"];

/// The first field of every trial spec (what [`read_spec`] checks).
pub const SPEC_FORMAT: &str = "nas-rs trial spec v1";
/// Name of the result file `nas eval` writes into its `--out` directory.
pub const RESULT_FILE: &str = "result.json";
/// Name of the spec file of a trial in an executor's shared directory.
pub const SPEC_FILE: &str = "spec.json";
/// Largest spec file read (a spec is a few kilobytes; more is not a spec).
pub const MAX_SPEC_BYTES: u64 = 16 << 20;

/// The evaluation settings of a search as they travel in a spec (the serialisable part of
/// [`EvalSetup`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SetupSpec {
    /// The data set ([`DataSpec`]'s text form; paths must be valid where the trial runs);
    /// absent: the space's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// [`EvalSetup::valid_fraction`].
    pub valid_fraction: f64,
    /// The search seed (the split).
    pub seed: u64,
    /// [`EvalSetup::epochs`].
    pub epochs: u32,
    /// [`EvalSetup::recipe`].
    pub recipe: Option<TrainRecipe>,
    /// [`EvalSetup::lr`].
    pub lr: Option<f32>,
    /// [`EvalSetup::batch_size`].
    pub batch_size: Option<usize>,
    /// [`EvalSetup::train_examples`].
    pub train_examples: Option<usize>,
    /// The device's text form (`cpu`, `cuda:0`).
    pub device: String,
    /// [`EvalSetup::net`].
    pub net: NetSettings,
    /// [`EvalSetup::table_dataset`].
    pub table_dataset: String,
    /// [`EvalSetup::table_epochs`].
    pub table_epochs: u32,
    /// [`EvalSetup::hp`], as its text (absent: no hyperparameters searched).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hp: Option<String>,
}

impl SetupSpec {
    /// The spec form of `setup`.
    pub fn of(setup: &EvalSetup) -> SetupSpec {
        SetupSpec {
            data: setup.data.as_ref().map(ToString::to_string),
            valid_fraction: setup.valid_fraction,
            seed: setup.seed,
            epochs: setup.epochs,
            recipe: setup.recipe,
            lr: setup.lr,
            batch_size: setup.batch_size,
            train_examples: setup.train_examples,
            device: setup.device.to_string(),
            net: setup.net,
            table_dataset: setup.table_dataset.clone(),
            table_epochs: setup.table_epochs,
            hp: setup.hp.as_ref().map(crate::hp::HpSpec::text),
        }
    }

    /// The setup again (no splits loaded, no epoch hook).
    pub fn to_setup(&self) -> Result<EvalSetup> {
        let bad = |what: &str, e: String| SearchError::Setting(format!("trial spec {what}: {e}"));
        let data: Option<DataSpec> = match &self.data {
            Some(d) => Some(d.parse().map_err(|e| bad("data", format!("{e}")))?),
            None => None,
        };
        let device = self
            .device
            .parse()
            .map_err(|e| bad("device", format!("{e}")))?;
        Ok(EvalSetup {
            data,
            valid_fraction: self.valid_fraction,
            seed: self.seed,
            epochs: self.epochs,
            recipe: self.recipe,
            lr: self.lr,
            batch_size: self.batch_size,
            train_examples: self.train_examples,
            device,
            net: self.net,
            table_dataset: self.table_dataset.clone(),
            table_epochs: self.table_epochs,
            // reported once for the final choice by the search itself, never by a trial
            table_report: None,
            loaded: None,
            on_epoch: None,
            hp: self
                .hp
                .as_deref()
                .map(crate::hp::HpSpec::parse)
                .transpose()?,
        })
    }
}

/// What every trial of one search shares: the space, the evaluator and its settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpecTemplate {
    /// The space's registry name.
    pub space: String,
    /// The evaluator's registry name (`train`, `nb201-table`).
    pub evaluator: String,
    /// Its settings.
    pub setup: SetupSpec,
}

/// One trial, self-contained: what `nas eval --spec` runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrialSpec {
    /// [`SPEC_FORMAT`].
    pub format: String,
    /// The space, evaluator and settings.
    #[serde(flatten)]
    pub template: SpecTemplate,
    /// The full name of the evaluator the search uses ([`crate::Evaluator::name`]): the one
    /// rebuilt from the spec must have the same, or the trial is refused.
    pub evaluator_id: String,
    /// The trial id.
    pub trial: u64,
    /// The architecture (the space's JSON form).
    pub arch: serde_json::Value,
    /// The fidelity (epochs).
    pub fidelity: u32,
    /// The trial seed ([`crate::evaluator::trial_seed`] of the search seed and the id).
    pub seed: u64,
}

/// What `nas eval` writes: the outcome of one spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrialResult {
    /// The trial id (from the spec).
    pub trial: u64,
    /// FNV-1a of the spec file's bytes: a result is only taken for the spec it answers.
    pub spec_fnv: u64,
    /// The outcome.
    pub outcome: TrialOutcome,
}

impl TrialResult {
    /// One line for people: the trial and its outcome.
    pub fn line(&self) -> String {
        match &self.outcome {
            TrialOutcome::Finished(f) => match &f.outcome {
                crate::Outcome::Ok(m) => format!(
                    "trial {}: validation accuracy {:.2}%, test accuracy {}, {:.2} s",
                    self.trial,
                    m.valid_accuracy,
                    m.test_accuracy.map_or("n/a".into(), |t| format!("{t:.2}%")),
                    f.wall_time_s
                ),
                crate::Outcome::Failed { reason } => {
                    format!("trial {}: FAILED ({reason})", self.trial)
                }
            },
            TrialOutcome::Fatal(r) => format!("trial {}: fatal evaluator error: {r}", self.trial),
        }
    }
}

/// A trial's outcome: the record the search loop builds for a local evaluation, or a fatal
/// evaluator error (which stops the search, as it does locally).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TrialOutcome {
    /// Evaluated (successfully or as a failed trial).
    Finished(Finished),
    /// The evaluator failed fatally (missing data, broken device).
    Fatal(String),
}

/// Reads and checks a trial spec file: its size, its JSON, its format line. Returns the spec
/// and the FNV-1a hash of its bytes.
pub fn read_spec(path: &Path) -> Result<(TrialSpec, u64)> {
    use std::io::Read as _;
    let bad = |problem: String| SearchError::Input {
        path: path.to_path_buf(),
        problem,
    };
    let f = std::fs::File::open(path).map_err(|e| SearchError::io(path, e))?;
    let mut bytes = Vec::new();
    f.take(MAX_SPEC_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| SearchError::io(path, e))?;
    if bytes.len() as u64 > MAX_SPEC_BYTES {
        return Err(bad(format!(
            "more than {} MiB: not a trial spec",
            MAX_SPEC_BYTES >> 20
        )));
    }
    let v: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| bad(format!("not a trial spec (not JSON: {e})")))?;
    if v["format"] != SPEC_FORMAT {
        return Err(bad(format!(
            "not a trial spec (format {}, expected {SPEC_FORMAT:?})",
            quote(&v["format"].to_string())
        )));
    }
    let spec: TrialSpec =
        serde_json::from_value(v).map_err(|e| bad(format!("not a valid trial spec: {e}")))?;
    Ok((spec, checkpoint::fnv1a64(&bytes)))
}

/// Runs one trial spec in this process: rebuilds the evaluator from the spec's settings
/// (loading the data), checks that it is the search's ([`TrialSpec::evaluator_id`]), parses and
/// validates the architecture, and evaluates it with the trial's seed, exactly as the search
/// loop evaluates a trial locally.
pub fn run_trial(registry: &Registry, spec: &TrialSpec) -> Result<TrialOutcome> {
    let space = registry.space(&spec.template.space)?;
    let def = registry.evaluator(&spec.template.evaluator)?;
    let setup = spec.template.setup.to_setup()?;
    setup.check()?;
    def.fidelity(&setup)?;
    if setup.hp.is_some() {
        if def.name() != "train" {
            return Err(SearchError::Setting(format!(
                "the trial spec searches hyperparameters (hp), which the {} evaluator has not",
                def.name()
            )));
        }
        return space.eval_hp_trial(&setup, spec);
    }
    let arch = space.parse(&spec.arch.to_string())?;
    let evaluator = def.build(space, &setup)?;
    space.eval_trial(
        evaluator,
        &spec.evaluator_id,
        &arch,
        spec.fidelity,
        spec.trial,
        spec.seed,
    )
}

/// `nas eval --spec SPEC --out DIR`: reads the spec, runs the trial ([`run_trial`]) and writes
/// `DIR/result.json` atomically (a checksummed file, see [`crate::checkpoint`]; `DIR` is
/// created if needed). A spec that cannot be run here (its data missing on this machine, an
/// evaluator that differs) or a fatal evaluator error is written as a [`TrialOutcome::Fatal`]
/// (the search then stops with it, as a local search would, instead of retrying) and returned
/// as an error. A file that is not a spec is an error naming it; nothing is written.
pub fn eval_spec_file(registry: &Registry, spec_path: &Path, out: &Path) -> Result<TrialResult> {
    let (spec, spec_fnv) = read_spec(spec_path)?;
    let outcome = run_trial(registry, &spec).unwrap_or_else(|e| {
        TrialOutcome::Fatal(format!("{} cannot be run: {e}", spec_path.display()))
    });
    let result = TrialResult {
        trial: spec.trial,
        spec_fnv,
        outcome,
    };
    std::fs::create_dir_all(out).map_err(|e| SearchError::io(out, e))?;
    let json = serde_json::to_vec(&result).map_err(|e| SearchError::Serde(e.to_string()))?;
    checkpoint::write_atomic(&out.join(RESULT_FILE), &json)?;
    if let TrialOutcome::Fatal(reason) = &result.outcome {
        return Err(SearchError::EvaluatorFatal {
            trial: spec.trial,
            reason: reason.clone(),
        });
    }
    Ok(result)
}

/// Reads the result file `path` for the spec whose hash is `spec_fnv`: `Ok(None)` when there
/// is none yet, an error (naming the file) when it is corrupt, truncated, or answers another
/// spec.
pub fn read_result(path: &Path, spec_fnv: u64, trial: u64) -> Result<Option<TrialOutcome>> {
    if !path.exists() {
        return Ok(None);
    }
    let payload = checkpoint::read_verified(path).map_err(|e| SearchError::Input {
        path: path.to_path_buf(),
        problem: format!("not a whole trial result: {e}"),
    })?;
    let r: TrialResult = serde_json::from_slice(&payload).map_err(|e| SearchError::Input {
        path: path.to_path_buf(),
        problem: format!("not a trial result: {e}"),
    })?;
    if r.trial != trial || r.spec_fnv != spec_fnv {
        return Err(SearchError::Input {
            path: path.to_path_buf(),
            problem: format!(
                "answers trial {} (spec {:016x}), not trial {trial} (spec {spec_fnv:016x})",
                r.trial, r.spec_fnv
            ),
        });
    }
    Ok(Some(r.outcome))
}

/// One trial handed to a remote executor.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteJob {
    /// The trial id.
    pub id: u64,
    /// The architecture as JSON.
    pub arch: serde_json::Value,
    /// The fidelity.
    pub fidelity: u32,
    /// The trial seed.
    pub seed: u64,
    /// The search's evaluator name ([`TrialSpec::evaluator_id`]).
    pub evaluator_id: String,
    /// The ticket an earlier session recorded for this trial (resume), if any.
    pub ticket: Option<String>,
}

/// What a remote executor reports.
#[derive(Debug, Clone, PartialEq)]
pub enum RemoteEvent {
    /// The trial was submitted under `ticket` (saved in the checkpoint).
    Submitted {
        /// Trial id.
        id: u64,
        /// The ticket (a Slurm array task id, a Ray submission id).
        ticket: String,
    },
    /// The trial finished (successfully or as a failed trial).
    Done {
        /// Trial id.
        id: u64,
        /// Its record.
        finished: Finished,
    },
    /// The evaluator failed fatally on the trial: the search stops.
    Fatal {
        /// Trial id.
        id: u64,
        /// Why.
        reason: String,
    },
}

/// An executor that runs trials outside the search's process (see the [module docs](self)).
pub trait RemoteExecutor: Send {
    /// Takes a trial to run (it may be submitted later, batched with others, before the next
    /// event is returned).
    fn submit(&mut self, job: RemoteJob) -> Result<()>;
    /// Blocks until the next event of a trial submitted earlier. An error ends the search
    /// (its state is kept): the executor cannot go on.
    fn next_event(&mut self) -> Result<RemoteEvent>;
}

/// A remote executor shared with the search loop ([`crate::SearchConfig::executor`]).
#[derive(Clone)]
pub struct RemoteHandle(pub Arc<Mutex<dyn RemoteExecutor>>);

impl std::fmt::Debug for RemoteHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RemoteHandle")
    }
}

impl PartialEq for RemoteHandle {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// How trials are executed (`nas search --executor ...`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExecutorSettings {
    /// One of [`EXECUTORS`]; empty is `local`.
    pub kind: String,
    /// The program run as `PROGRAM eval --spec ... --out ...` (`None`: this process's own
    /// executable, which is `nas` for the command-line tool).
    pub program: Option<PathBuf>,
    /// The Slurm executor's settings.
    pub slurm: slurm::SlurmSettings,
    /// The Ray executor's settings.
    pub ray: ray::RaySettings,
}

impl ExecutorSettings {
    /// Whether trials run in this process.
    pub fn is_local(&self) -> bool {
        self.kind.is_empty() || self.kind == "local"
    }

    /// Checks the settings and the machine (commands on PATH, the program, a Ray head that
    /// answers) without writing anything.
    pub fn check(&self) -> Result<()> {
        match self.kind.as_str() {
            "" | "local" => Ok(()),
            "slurm" => {
                self.program()?;
                self.slurm.check()
            }
            "ray" => {
                self.program()?;
                self.ray.check().map(drop)
            }
            other => Err(SearchError::Setting(format!(
                "unknown executor {other:?} (known: {})",
                EXECUTORS.join(", ")
            ))),
        }
    }

    fn program(&self) -> Result<PathBuf> {
        let p = match &self.program {
            Some(p) => p.clone(),
            None => std::env::current_exe().map_err(|e| {
                SearchError::Executor(format!(
                    "--executor {}: cannot find this program's path ({e})",
                    self.kind
                ))
            })?,
        };
        if !p.is_file() {
            return Err(SearchError::Executor(format!(
                "--executor {}: the program that runs trials, {}, is not a file",
                self.kind,
                p.display()
            )));
        }
        Ok(p)
    }

    /// The executor for a search writing into `dir` (`None` for `local`). Call after
    /// [`ExecutorSettings::check`].
    pub fn build(
        &self,
        template: SpecTemplate,
        dir: Option<&Path>,
    ) -> Result<Option<RemoteHandle>> {
        if self.is_local() {
            return Ok(None);
        }
        self.check()?;
        let dir = dir.ok_or_else(|| {
            SearchError::Setting(format!(
                "--executor {} needs an output directory on a file system the trials can reach",
                self.kind
            ))
        })?;
        let program = self.program()?;
        let exec: Arc<Mutex<dyn RemoteExecutor>> = if self.kind == "ray" {
            let e = ray::RayExecutor::new(self.ray.clone(), program, template, dir)?;
            Arc::new(Mutex::new(e))
        } else {
            let e = slurm::SlurmExecutor::new(self.slurm.clone(), program, template, dir)?;
            Arc::new(Mutex::new(e))
        };
        Ok(Some(RemoteHandle(exec)))
    }
}
