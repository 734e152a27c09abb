//! The one-call library API: describe a search with [`Search`], call [`Search::run`], get the
//! best architecture, its scores and the history, with a run summary, an events log and plots
//! written to an output directory.
//!
//! ```no_run
//! use nas_search::builder::Search;
//! let report = Search::new()          // NB201 space, REA, training on embedded Fashion-MNIST
//!     .evaluations(12)
//!     .seed(1)
//!     .output_dir("runs/first")
//!     .run()?;
//! println!("best {} test accuracy {:.2}%", report.best.arch, report.best.test_accuracy.unwrap_or(f64::NAN));
//! # Ok::<(), nas_search::SearchError>(())
//! ```
//!
//! The defaults are those of `nas search` without arguments: the NAS-Bench-201 cell space,
//! regularized evolution (population 8, tournament 3), each candidate trained from scratch for
//! [`DEFAULT_EPOCHS`] epochs on the [`DEFAULT_TRAIN_EXAMPLES`] training images of the embedded Fashion-MNIST
//! subset (10% of its training part held out for validation, which the search optimises; the
//! 1,000 test images give the reported accuracy) in a small NAS-Bench-201 macro network
//! (C = 8, N = 1), [`DEFAULT_EVALUATIONS`] evaluations, seed 0, one worker.
//!
//! # Output directory
//!
//! * `summary.json`: the [`SearchReport`] (settings, best architecture and its scores, median
//!   test accuracy of the trials, stop reason, every trial);
//! * `best.txt`: the best architecture's text form (`nas train @DIR/best.txt`);
//! * `events.jsonl`: one JSON object per line: `start`, one `trial` per finished trial, `end`;
//!   a resumed search appends a `start`, its trials and a new `end` (the earlier `end` is
//!   removed, see [`reconcile_events`]);
//! * `progress.svg` (best-so-far validation and test accuracy vs evaluations),
//!   `progress_time.svg` (the same vs cumulative evaluation wall time),
//!   `params_accuracy.svg` (test accuracy vs parameters of every successful trial);
//! * `.nas.lock`: the lock that keeps a second search out while this one runs
//!   ([`crate::outdir::DirLock`]);
//! * `checkpoint.json` and `checkpoint.journal`: the search state after every trial (a
//!   snapshot plus a journal, see [`crate::search`]). Running the same search again
//!   with the same output directory resumes it (and a finished one returns at once); other
//!   settings are refused with an error naming the checkpoint.

use std::fmt::Display;
use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use nas_space::SearchSpace;
use nas_space::chain::ChainSpace;
use nas_space::darts::DartsSpace;
use nas_space::nb101::Nb101Space;
use nas_space::nb201::Nb201Space;
use nas_tensor::Device;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::data::DataSpec;
use crate::error::{Result, SearchError};
use crate::evaluator::Evaluator;
use crate::history::{Outcome, Trial};
use crate::nb201::{Dataset as TableDataset, Nb201Evaluator, Nb201Table};
use crate::outdir::DirLock;
use crate::outdir::persist_guard;
use crate::plot::{Plot, Style};
use crate::search::{
    Budget, SearchConfig, SearchOutcome, StopReason, check_config, load_checkpoint_for,
    run_search_observed, search_meta,
};
use crate::strategy::{ReaConfig, StrategyKind};
use crate::train::{
    ChainFamily, DartsFamily, Nb101Family, Nb201Family, TrainEvaluator, TrainRecipe,
};

/// Default number of evaluations.
pub const DEFAULT_EVALUATIONS: u64 = 16;
/// Default training epochs per candidate.
pub const DEFAULT_EPOCHS: u32 = 2;
/// Default number of training images per candidate.
pub const DEFAULT_TRAIN_EXAMPLES: usize = 3600;

/// Which search space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SpaceChoice {
    /// NAS-Bench-201 cells (trained in the NB201 macro network, or looked up in the table).
    Nb201,
    /// DARTS genotypes (trained in the DARTS evaluation network; `cells` = cells in all).
    Darts,
    /// NAS-Bench-101 graphs (trained in the NB101 network: `channels` = stem channels, 3
    /// stacks of `cells` cells).
    Nb101,
    /// Chains of the CNN preset [`nas_space::chain::ChainSpace::cnn`] (`channels`, `cells`
    /// unused).
    Chain,
}

/// How candidates are evaluated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum EvaluatorChoice {
    /// Train from scratch on [`Search::data`].
    Train {
        /// Training hyper-parameters.
        recipe: TrainRecipe,
        /// Epochs per candidate (the fidelity).
        epochs: u32,
        /// Channels C of the network.
        channels: usize,
        /// Cells per stage (NB201) or cells in all (DARTS).
        cells: usize,
    },
    /// Look up the embedded NAS-Bench-201 table on one of its data sets (`cifar10`,
    /// `cifar100`, `ImageNet16-120`), at `fidelity` 12 or 200 epochs.
    Table {
        /// The table's data set name.
        dataset: String,
        /// 12 or 200.
        fidelity: u32,
    },
}

impl Default for EvaluatorChoice {
    fn default() -> Self {
        EvaluatorChoice::Train {
            recipe: TrainRecipe {
                train_examples: Some(DEFAULT_TRAIN_EXAMPLES),
                ..TrainRecipe::default()
            },
            epochs: DEFAULT_EPOCHS,
            channels: 8,
            cells: 1,
        }
    }
}

/// A search described in one value; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct Search {
    space: SpaceChoice,
    strategy: StrategyKind,
    evaluator: EvaluatorChoice,
    data: DataSpec,
    valid_fraction: f64,
    budget: Budget,
    seed: u64,
    workers: usize,
    device: Device,
    output_dir: Option<PathBuf>,
    quiet: bool,
}

impl Default for Search {
    fn default() -> Self {
        Self::new()
    }
}

/// The chosen architecture and its scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BestArchitecture {
    /// The architecture in the space's text form.
    pub arch: String,
    /// Its trial id.
    pub trial: u64,
    /// Validation accuracy (%), what the search optimised.
    pub valid_accuracy: f64,
    /// Test accuracy (%).
    pub test_accuracy: Option<f64>,
    /// Parameters.
    pub params: Option<u64>,
    /// Multiply-accumulates of one forward pass of one image.
    pub flops: Option<u64>,
}

/// One trial in the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrialRecord {
    /// Trial id.
    pub id: u64,
    /// Architecture (text form).
    pub arch: String,
    /// Fidelity (epochs).
    pub fidelity: u32,
    /// Validation accuracy (%), `None` if failed.
    pub valid_accuracy: Option<f64>,
    /// Test accuracy (%).
    pub test_accuracy: Option<f64>,
    /// Validation loss.
    pub loss: Option<f64>,
    /// Parameters.
    pub params: Option<u64>,
    /// FLOPs.
    pub flops: Option<u64>,
    /// Why it failed, if it did.
    pub failure: Option<String>,
    /// Evaluation wall time (s).
    pub wall_time_s: f64,
}

/// What [`Search::run`] returns (and writes as `summary.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchReport {
    /// Space name.
    pub space: String,
    /// Strategy name and settings.
    pub strategy: serde_json::Value,
    /// Evaluator name.
    pub evaluator: String,
    /// Search seed.
    pub seed: u64,
    /// Worker threads.
    pub workers: usize,
    /// The best architecture.
    pub best: BestArchitecture,
    /// Median test accuracy of the successful trials.
    pub median_test_accuracy: Option<f64>,
    /// Evaluations run (trials reusing a result not counted).
    pub evaluations: u64,
    /// Failed trials.
    pub failed: usize,
    /// Why the search stopped.
    pub stop: StopReason,
    /// Whether it resumed from a checkpoint.
    pub resumed: bool,
    /// Wall time of this call (s).
    pub wall_time_s: f64,
    /// Every trial in order.
    pub trials: Vec<TrialRecord>,
    /// Trials cut part-way by the wall-time budget (not in `trials`; a resumed search runs
    /// them again).
    #[serde(default)]
    pub cut: Vec<u64>,
}

impl SearchReport {
    /// The report of a finished search: the best trial (by search-visible accuracy), the
    /// median test accuracy of the successful trials and every trial's record. An error when no
    /// trial succeeded, quoting the first failure.
    pub fn from_outcome<A: Display + PartialEq>(
        space: &str,
        strategy: serde_json::Value,
        evaluator: String,
        seed: u64,
        workers: usize,
        outcome: &SearchOutcome<A>,
        wall_time_s: f64,
    ) -> Result<SearchReport> {
        let trials: Vec<TrialRecord> = outcome.history.trials.iter().map(record).collect();
        let no_success = || {
            if trials.is_empty() && !outcome.cut.is_empty() {
                return SearchError::NoResult(
                    "the time limit ended the search before any trial finished (the trial in \
                     progress was cut, not recorded); resume with a larger time limit"
                        .into(),
                );
            }
            SearchError::Config(format!(
                "no trial succeeded ({} failed; first failure: {}); see the events log",
                trials.len(),
                trials
                    .iter()
                    .find_map(|t| t.failure.clone())
                    .unwrap_or_default()
            ))
        };
        let best = outcome.best().ok_or_else(no_success)?;
        let bm = best.metrics().ok_or_else(no_success)?;
        let tests: Vec<f64> = trials.iter().filter_map(|t| t.test_accuracy).collect();
        Ok(SearchReport {
            space: space.to_string(),
            strategy,
            evaluator,
            seed,
            workers,
            best: BestArchitecture {
                arch: best.arch.to_string(),
                trial: best.id,
                valid_accuracy: bm.valid_accuracy,
                test_accuracy: bm.test_accuracy,
                params: bm.params,
                flops: bm.flops,
            },
            median_test_accuracy: median(&tests),
            evaluations: outcome.spent.evaluations,
            failed: trials.iter().filter(|t| t.failure.is_some()).count(),
            stop: outcome.stop,
            resumed: outcome.resumed,
            wall_time_s,
            trials,
            cut: outcome.cut.iter().map(|(id, _)| *id).collect(),
        })
    }

    /// The `end` event of the events log.
    pub fn end_event(&self) -> serde_json::Value {
        json!({
            "event": "end",
            "best": self.best,
            "median_test_accuracy": self.median_test_accuracy,
            "evaluations": self.evaluations,
            "stop": self.stop,
            "wall_time_s": self.wall_time_s,
        })
    }
}

/// One trial as the events log and `summary.json` record it.
pub fn record<A: Display + PartialEq>(t: &Trial<A>) -> TrialRecord {
    let m = t.metrics();
    TrialRecord {
        id: t.id,
        arch: t.arch.to_string(),
        fidelity: t.fidelity,
        valid_accuracy: m.map(|m| m.valid_accuracy),
        test_accuracy: m.and_then(|m| m.test_accuracy),
        loss: m.and_then(|m| m.loss),
        params: m.and_then(|m| m.params),
        flops: m.and_then(|m| m.flops),
        failure: match &t.outcome {
            Outcome::Failed { reason } => Some(reason.clone()),
            Outcome::Ok(_) => None,
        },
        wall_time_s: t.wall_time_s,
    }
}

/// Median of the values (mean of the two middle ones for an even count).
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The `events.jsonl` log of a search (nothing is written without a directory). Each event is
/// one line written with a single `write` call, so a kill leaves at most a torn last line,
/// which [`reconcile_events`] cuts on resume.
struct Events {
    file: Option<(PathBuf, fs::File)>,
    last_sync: Instant,
}

impl Events {
    /// Opens `dir/events.jsonl` for appending (a resumed search continues the log).
    fn open(dir: Option<&Path>) -> Result<Events> {
        let last_sync = Instant::now();
        let Some(dir) = dir else {
            return Ok(Events {
                file: None,
                last_sync,
            });
        };
        let path = dir.join(EVENTS_FILE);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| SearchError::io(&path, e))?;
        Ok(Events {
            file: Some((path, file)),
            last_sync,
        })
    }
    fn write(&mut self, mut v: serde_json::Value) -> Result<()> {
        if let Some((path, f)) = &mut self.file {
            v["unix_ms"] = json!(unix_ms());
            let line = format!("{v}\n");
            f.write_all(line.as_bytes())
                .map_err(|e| SearchError::io(&*path, e))?;
            // A kill loses nothing written (the page cache survives the process); fsync at
            // most once a second bounds what a power cut can take.
            if self.last_sync.elapsed().as_secs_f64() >= 1.0 {
                let _ = f.sync_data();
                self.last_sync = Instant::now();
            }
        }
        Ok(())
    }
    fn sync(&mut self) {
        if let Some((_, f)) = &mut self.file {
            let _ = f.sync_data();
        }
    }
}

/// Name of the events log in a search's output directory.
pub const EVENTS_FILE: &str = "events.jsonl";

/// Trials logged in `dir/events.jsonl` by earlier sessions of a search (0 without a log).
pub fn trials_logged(dir: &Path) -> u64 {
    fs::read_to_string(dir.join(EVENTS_FILE))
        .map(|t| {
            t.lines()
                .filter(|l| l.contains("\"event\":\"trial\""))
                .count() as u64
        })
        .unwrap_or(0)
}

/// The trial event of `t` (its `unix_ms` is when it finished).
fn trial_event<A: Display + PartialEq>(t: &Trial<A>) -> serde_json::Value {
    let mut v = serde_json::to_value(record(t)).unwrap_or(json!({}));
    v["event"] = json!("trial");
    v
}

/// Makes `dir/events.jsonl` agree with the trials a checkpoint holds before a search continues
/// from it: cuts a torn or unparseable line (a kill in the middle of a write), drops `trial`
/// events the checkpoint does not hold (told after the last checkpoint write) and duplicates,
/// drops the `end` events of earlier sessions (the continued search logs its own, so the log
/// of a resumed search equals an uninterrupted one's apart from `start` events and timing
/// fields) and appends the events of held trials the log lacks. The log is replaced atomically, and
/// only when something changed. Returns whether it changed.
pub fn reconcile_events<A: Display + PartialEq>(dir: &Path, held: &[Trial<A>]) -> Result<bool> {
    let path = dir.join(EVENTS_FILE);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(SearchError::io(&path, e)),
    };
    let mut out = Vec::with_capacity(bytes.len());
    let mut seen = vec![false; held.len()];
    let mut changed = false;
    let mut rest = &bytes[..];
    while !rest.is_empty() {
        let (line, complete) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => {
                let l = &rest[..i];
                rest = &rest[i + 1..];
                (l, true)
            }
            None => {
                let l = rest;
                rest = &[];
                (l, false)
            }
        };
        let keep = complete
            && match serde_json::from_slice::<serde_json::Value>(line) {
                Ok(v) if v["event"] == "trial" => match v["id"].as_u64() {
                    Some(id) if (id as usize) < held.len() && !seen[id as usize] => {
                        seen[id as usize] = true;
                        true
                    }
                    _ => false,
                },
                // The end of an earlier session: the continued search will log its own.
                Ok(v) if v["event"] == "end" => false,
                Ok(v) => v.is_object(),
                Err(_) => false,
            };
        if keep {
            out.extend_from_slice(line);
            out.push(b'\n');
        } else {
            changed = true;
        }
    }
    for (t, _) in held.iter().zip(&seen).filter(|(_, s)| !**s) {
        let mut v = trial_event(t);
        v["unix_ms"] = json!(t.finished_unix_ms);
        out.extend_from_slice(format!("{v}\n").as_bytes());
        changed = true;
    }
    if changed {
        write_file_atomic(&path, &out)?;
    }
    Ok(changed)
}

/// Writes `bytes` to `path` through a temporary file, fsync and rename.
pub fn write_file_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name()
            .map_or("file".into(), |n| n.to_string_lossy()),
        std::process::id()
    ));
    let r = (|| -> std::io::Result<()> {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = r {
        let _ = fs::remove_file(&tmp);
        return Err(SearchError::io(path, e));
    }
    Ok(())
}

/// Runs a search and records it: the `start` event (with `extra` fields added), one `trial`
/// event per finished evaluation (each record also handed to `on_trial`, for progress output),
/// the `end` event and, with `dir`, `summary.json` and the plots. [`Search::run`] and
/// `nas search` both run their searches through it. `strategy` already carries the fidelity.
///
/// Check, then write: the settings and any checkpoint to resume are checked before anything is
/// written, so a refused search (other settings, corrupt checkpoint) leaves every file as it
/// was. Once they pass, the events log is reconciled with the checkpoint
/// ([`reconcile_events`]) and `on_start` is called with the number of trials the checkpoint
/// already holds (0 for a new search); then the search runs.
pub fn run_recorded<S, E>(
    space: &S,
    strategy: &StrategyKind,
    evaluator: &E,
    config: &SearchConfig,
    dir: Option<&Path>,
    extra: serde_json::Value,
    on_start: &mut dyn FnMut(u64),
    on_trial: &mut dyn FnMut(&TrialRecord),
) -> Result<SearchReport>
where
    S: SearchSpace,
    S::Arch: Display,
    E: Evaluator<S::Arch>,
{
    let start = Instant::now();
    let mut built = strategy.build(space)?;
    check_config(config)?;
    let held = match &config.checkpoint {
        Some(path) if path.exists() => {
            let meta = search_meta(space, built.as_ref(), evaluator, config);
            let st = load_checkpoint_for::<S::Arch>(path, &meta, config.more_workers_on_resume)?;
            strategy
                .build(space)?
                .load_state(st.strategy_state.clone())
                .map_err(|e| SearchError::Checkpoint {
                    path: path.clone(),
                    problem: format!("strategy state does not load: {e}"),
                })?;
            st.history.trials
        }
        _ => Vec::new(),
    };
    // Everything checked: from here on, writes.
    let guard = persist_guard();
    if let Some(dir) = dir {
        reconcile_events(dir, &held)?;
    }
    on_start(held.len() as u64);
    drop(held);
    let mut events = Events::open(dir)?;
    let mut first = json!({
        "event": "start",
        "space": space.name(),
        "strategy": strategy.name(),
        "strategy_config": built.config(),
        "evaluator": evaluator.name(),
        "seed": config.seed,
        "workers": config.workers,
        "budget": config.budget,
    });
    if let (Some(f), serde_json::Value::Object(more)) = (first.as_object_mut(), extra) {
        f.extend(more);
    }
    events.write(first)?;
    drop(guard);
    let mut write_error = None;
    let outcome = run_search_observed(space, built.as_mut(), evaluator, config, &mut |t| {
        on_trial(&record(t));
        if let Err(e) = events.write(trial_event(t)) {
            write_error.get_or_insert(e);
        }
    })?;
    if let Some(e) = write_error {
        return Err(e);
    }
    {
        let _guard = persist_guard();
        for (id, reason) in &outcome.cut {
            events.write(json!({ "event": "cut", "id": id, "reason": reason }))?;
        }
        events.sync();
    }
    let report = SearchReport::from_outcome(
        space.name(),
        json!({ "name": strategy.name(), "config": built.config() }),
        evaluator.name(),
        config.seed,
        config.workers,
        &outcome,
        start.elapsed().as_secs_f64(),
    )?;
    let _guard = persist_guard();
    events.write(report.end_event())?;
    events.sync();
    if let Some(dir) = dir {
        write_outputs(dir, &report)?;
    }
    Ok(report)
}

impl Search {
    /// The defaults of `nas search` (see the [module docs](self)).
    pub fn new() -> Self {
        Search {
            space: SpaceChoice::Nb201,
            strategy: StrategyKind::Rea(ReaConfig {
                population_size: 8,
                sample_size: 3,
                fidelity: DEFAULT_EPOCHS,
            }),
            evaluator: EvaluatorChoice::default(),
            data: DataSpec::FashionEmbedded,
            valid_fraction: 0.1,
            budget: Budget::evaluations(DEFAULT_EVALUATIONS),
            seed: 0,
            workers: 1,
            device: Device::Cpu,
            output_dir: None,
            quiet: true,
        }
    }

    /// The device candidates are trained on (`cpu` by default; the train evaluator's
    /// networks, batches and optimizer states live there).
    pub fn device(mut self, device: Device) -> Self {
        self.device = device;
        self
    }

    /// The search space.
    pub fn space(mut self, space: SpaceChoice) -> Self {
        self.space = space;
        self
    }
    /// The strategy (its fidelity is set to the evaluator's epochs or table fidelity).
    pub fn strategy(mut self, strategy: StrategyKind) -> Self {
        self.strategy = strategy;
        self
    }
    /// How candidates are evaluated.
    pub fn evaluator(mut self, evaluator: EvaluatorChoice) -> Self {
        self.evaluator = evaluator;
        self
    }
    /// Train candidates with `recipe` for `epochs` epochs in networks of `channels` and
    /// `cells` (see [`EvaluatorChoice::Train`]).
    pub fn train(
        mut self,
        recipe: TrainRecipe,
        epochs: u32,
        channels: usize,
        cells: usize,
    ) -> Self {
        self.evaluator = EvaluatorChoice::Train {
            recipe,
            epochs,
            channels,
            cells,
        };
        self
    }
    /// Look candidates up in the NAS-Bench-201 table (`cifar10`, `cifar100`,
    /// `ImageNet16-120`) at 12 or 200 epochs.
    pub fn table(mut self, dataset: &str, fidelity: u32) -> Self {
        self.evaluator = EvaluatorChoice::Table {
            dataset: dataset.to_string(),
            fidelity,
        };
        self
    }
    /// The data set to train on (ignored by the table).
    pub fn data(mut self, data: DataSpec) -> Self {
        self.data = data;
        self
    }
    /// Fraction of the training set held out for validation (default 0.1).
    pub fn valid_fraction(mut self, f: f64) -> Self {
        self.valid_fraction = f;
        self
    }
    /// The budget.
    pub fn budget(mut self, budget: Budget) -> Self {
        self.budget = budget;
        self
    }
    /// A budget of `n` evaluations.
    pub fn evaluations(mut self, n: u64) -> Self {
        self.budget = Budget::evaluations(n);
        self
    }
    /// The seed of the search (strategy, splits, every trial's training).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
    /// Evaluations run in parallel.
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = workers;
        self
    }
    /// Where to write the summary, events, plots and checkpoint (none by default).
    pub fn output_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.output_dir = Some(dir.into());
        self
    }
    /// Print one line per trial to standard error (off by default).
    pub fn verbose(mut self, on: bool) -> Self {
        self.quiet = !on;
        self
    }

    /// Runs the search; see the [module docs](self) for what is written.
    pub fn run(&self) -> Result<SearchReport> {
        // Held until the search returns: a second search on the directory is refused.
        let _lock = match &self.output_dir {
            Some(dir) => {
                fs::create_dir_all(dir).map_err(|e| SearchError::io(dir, e))?;
                Some(DirLock::acquire(dir)?)
            }
            None => None,
        };
        match (&self.evaluator, self.space) {
            (EvaluatorChoice::Table { dataset, fidelity }, SpaceChoice::Nb201) => {
                let ds = TableDataset::parse(dataset)?;
                let ev = Nb201Evaluator::new(Nb201Table::embedded()?, ds);
                self.run_with(&Nb201Space, &ev, *fidelity)
            }
            (EvaluatorChoice::Table { .. }, _) => Err(SearchError::Config(
                "the NAS-Bench-201 table evaluates only the nb201 space".into(),
            )),
            (
                EvaluatorChoice::Train {
                    recipe,
                    epochs,
                    channels,
                    cells,
                },
                space,
            ) => {
                let splits = self
                    .data
                    .load()
                    .and_then(|s| s.prepare(self.valid_fraction, self.seed))
                    .map_err(|e| SearchError::Config(format!("data {}: {e}", self.data)))?;
                let splits = Arc::new(splits);
                let recipe = &TrainRecipe {
                    device: self.device,
                    ..*recipe
                };
                let bad = |e: crate::train::TrainError| SearchError::Config(e.to_string());
                match space {
                    SpaceChoice::Nb201 => {
                        let family = Nb201Family {
                            channels: *channels,
                            cells_per_stage: *cells,
                        };
                        let ev = TrainEvaluator::new(family, splits, *recipe).map_err(bad)?;
                        self.run_with(&Nb201Space, &ev, *epochs)
                    }
                    SpaceChoice::Darts => {
                        let family = DartsFamily {
                            channels: *channels,
                            layers: *cells,
                        };
                        let ev = TrainEvaluator::new(family, splits, *recipe).map_err(bad)?;
                        self.run_with(&DartsSpace, &ev, *epochs)
                    }
                    SpaceChoice::Nb101 => {
                        let family = Nb101Family {
                            stem_channels: *channels,
                            stacks: 3,
                            cells_per_stack: *cells,
                        };
                        let ev = TrainEvaluator::new(family, splits, *recipe).map_err(bad)?;
                        self.run_with(&Nb101Space, &ev, *epochs)
                    }
                    SpaceChoice::Chain => {
                        let ev = TrainEvaluator::new(ChainFamily, splits, *recipe).map_err(bad)?;
                        self.run_with(&ChainSpace::cnn(), &ev, *epochs)
                    }
                }
            }
        }
    }

    fn run_with<S, E>(&self, space: &S, evaluator: &E, fidelity: u32) -> Result<SearchReport>
    where
        S: SearchSpace,
        S::Arch: Display,
        E: Evaluator<S::Arch>,
    {
        let strategy = self.strategy.clone().with_fidelity(fidelity);
        let config = SearchConfig {
            seed: self.seed,
            workers: self.workers,
            budget: self.budget.clone(),
            checkpoint: self
                .output_dir
                .as_deref()
                .map(|d| d.join("checkpoint.json")),
            skip_equivalent: false,
            more_workers_on_resume: false,
        };
        let quiet = self.quiet;
        run_recorded(
            space,
            &strategy,
            evaluator,
            &config,
            self.output_dir.as_deref(),
            json!({}),
            &mut |_| {},
            &mut |r| {
                if quiet {
                    return;
                }
                match &r.failure {
                    None => eprintln!(
                        "trial {:>3}  valid {:6.2}%  test {:6.2}%  {:>8} params  {:6.1}s  {}",
                        r.id,
                        r.valid_accuracy.unwrap_or(f64::NAN),
                        r.test_accuracy.unwrap_or(f64::NAN),
                        r.params.unwrap_or(0),
                        r.wall_time_s,
                        r.arch
                    ),
                    Some(f) => eprintln!("trial {:>3}  FAILED ({f})  {}", r.id, r.arch),
                }
            },
        )
    }
}

/// Writes `summary.json` and the three plots of `report` into `dir`.
pub fn write_outputs(dir: &Path, report: &SearchReport) -> Result<()> {
    let path = dir.join("summary.json");
    let text =
        serde_json::to_string_pretty(report).map_err(|e| SearchError::Serde(e.to_string()))?;
    write_file_atomic(&path, (text + "\n").as_bytes())?;
    // The best architecture alone, for `nas train @DIR/best.txt`.
    write_file_atomic(
        &dir.join("best.txt"),
        format!("{}\n", report.best.arch).as_bytes(),
    )?;

    // Best-so-far (by validation accuracy) curves.
    let (mut best_valid, mut best_test) = (Vec::new(), Vec::new());
    let (mut best_valid_t, mut best_test_t) = (Vec::new(), Vec::new());
    let mut inc: Option<(f64, Option<f64>)> = None;
    let mut clock = 0.0;
    for (i, t) in report.trials.iter().enumerate() {
        clock += t.wall_time_s;
        if let Some(v) = t.valid_accuracy
            && inc.is_none_or(|(b, _)| v > b)
        {
            inc = Some((v, t.test_accuracy));
        }
        if let Some((v, test)) = inc {
            let x = (i + 1) as f64;
            best_valid.push((x, v));
            best_valid_t.push((clock, v));
            if let Some(test) = test {
                best_test.push((x, test));
                best_test_t.push((clock, test));
            }
        }
    }
    let title = format!(
        "{} search, {}",
        report.space,
        report.strategy["name"].as_str().unwrap_or("?")
    );
    let mut p = Plot::new(&title, "evaluations", "best-so-far accuracy (%)");
    p.add("validation", best_valid, Style::Line);
    p.add("test (of the incumbent)", best_test, Style::Line);
    p.save(dir.join("progress.svg"))?;
    let mut p = Plot::new(
        &title,
        "evaluation wall time (s, cumulative)",
        "best-so-far accuracy (%)",
    );
    p.add("validation", best_valid_t, Style::Line);
    p.add("test (of the incumbent)", best_test_t, Style::Line);
    p.save(dir.join("progress_time.svg"))?;
    let pts: Vec<(f64, f64)> = report
        .trials
        .iter()
        .filter_map(|t| Some((t.params? as f64, t.test_accuracy?)))
        .collect();
    let mut p = Plot::new(&title, "parameters", "test accuracy (%)");
    p.x_log = true;
    p.add("trials", pts, Style::Points);
    p.save(dir.join("params_accuracy.svg"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[f64::NAN, 1.0]), Some(1.0));
    }

    #[test]
    fn reconcile_cuts_torn_extra_and_duplicate_events_and_adds_missing_ones() {
        let dir = tempfile::tempdir().unwrap();
        let trial = |id: u64| Trial {
            id,
            arch: 10 + id as u32,
            fidelity: 1,
            outcome: Outcome::Failed { reason: "x".into() },
            cost: 1.0,
            cached_from: None,
            started_unix_ms: 5,
            finished_unix_ms: 6,
            wall_time_s: 0.5,
        };
        let held: Vec<Trial<u32>> = (0..3).map(trial).collect();
        let line = |t: &Trial<u32>| format!("{}\n", trial_event(t));
        let log = dir.path().join(EVENTS_FILE);
        let start = "{\"event\":\"start\"}\n";
        let end = "{\"event\":\"end\"}\n";
        // start, trial 0, trial 0 again, an end, trial 3 (not held), a torn line.
        let text = format!(
            "{start}{}{}{end}{}{{\"event\":\"tri",
            line(&held[0]),
            line(&held[0]),
            line(&trial(3))
        );
        fs::write(&log, &text).unwrap();
        assert!(reconcile_events(dir.path(), &held).unwrap());
        let got: Vec<serde_json::Value> = fs::read_to_string(&log)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(got.len(), 4, "{got:?}");
        assert_eq!(got[0]["event"], "start");
        for (i, e) in got[1..].iter().enumerate() {
            assert_eq!(e["event"], "trial");
            assert_eq!(e["id"], i as u64);
            assert_eq!(e["arch"], (10 + i).to_string());
        }
        // A log that agrees is left alone.
        assert!(!reconcile_events(dir.path(), &held).unwrap());
    }

    #[test]
    fn table_search_writes_summary_events_plots_and_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let s = Search::new()
            .table("cifar10", 12)
            .evaluations(30)
            .seed(3)
            .output_dir(dir.path());
        let r = s.run().unwrap();
        assert_eq!(r.trials.len(), 30);
        assert_eq!(r.evaluations, 30);
        assert!(!r.resumed);
        let best_valid = r
            .trials
            .iter()
            .filter_map(|t| t.valid_accuracy)
            .fold(f64::MIN, f64::max);
        assert_eq!(r.best.valid_accuracy, best_valid);
        assert!(
            r.median_test_accuracy.unwrap()
                <= r.trials
                    .iter()
                    .filter_map(|t| t.test_accuracy)
                    .fold(f64::MIN, f64::max)
        );
        for f in [
            "summary.json",
            "events.jsonl",
            "progress.svg",
            "progress_time.svg",
            "params_accuracy.svg",
            "checkpoint.json",
        ] {
            assert!(dir.path().join(f).exists(), "{f} missing");
        }
        let summary: SearchReport =
            serde_json::from_str(&fs::read_to_string(dir.path().join("summary.json")).unwrap())
                .unwrap();
        assert_eq!(summary, r);
        let events = fs::read_to_string(dir.path().join("events.jsonl")).unwrap();
        let lines: Vec<serde_json::Value> = events
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 32);
        assert_eq!(lines[0]["event"], "start");
        assert_eq!(lines[31]["event"], "end");
        assert_eq!(lines[5]["event"], "trial");
        assert!(
            fs::read_to_string(dir.path().join("progress.svg"))
                .unwrap()
                .contains("<svg")
        );
        // Running it again resumes the finished search: same history, nothing re-evaluated.
        let again = s.run().unwrap();
        assert!(again.resumed);
        assert_eq!(again.best, r.best);
        assert_eq!(again.trials.len(), 30);
        // A different search into the same directory is refused.
        assert!(s.clone().seed(4).run().is_err());
        // The DARTS space cannot use the NB201 table.
        assert!(
            Search::new()
                .space(SpaceChoice::Darts)
                .table("cifar10", 12)
                .run()
                .is_err()
        );
    }

    #[test]
    fn training_search_on_real_data() {
        let dir = tempfile::tempdir().unwrap();
        let recipe = TrainRecipe {
            train_examples: Some(300),
            ..TrainRecipe::default()
        };
        let r = Search::new()
            .data(DataSpec::DigitsEmbedded)
            .train(recipe, 1, 4, 1)
            .evaluations(3)
            .seed(2)
            .output_dir(dir.path())
            .run()
            .unwrap();
        assert_eq!(r.trials.len(), 3);
        assert!(r.best.test_accuracy.is_some() && r.best.params.is_some());
        assert!(r.evaluator.starts_with("train/nb201(C=4,N=1)/"));
        assert!(dir.path().join("params_accuracy.svg").exists());
        // Every space trains through the same call (tiny networks, 1 trial each).
        for (space, cells) in [
            (SpaceChoice::Darts, 3),
            (SpaceChoice::Nb101, 1),
            (SpaceChoice::Chain, 1),
        ] {
            let recipe = TrainRecipe {
                train_examples: Some(100),
                ..TrainRecipe::default()
            };
            let r = Search::new()
                .space(space)
                .data(DataSpec::DigitsEmbedded)
                .train(recipe, 1, 4, cells)
                .strategy(StrategyKind::parse("random").unwrap())
                .evaluations(1)
                .run();
            let r = r.unwrap_or_else(|e| panic!("{space:?}: {e}"));
            assert_eq!(r.trials.len(), 1, "{space:?}");
        }
    }
}
