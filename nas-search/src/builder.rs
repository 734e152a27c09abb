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

use std::collections::BTreeMap;
use std::fmt::Display;
use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use nas_space::SearchSpace;
use nas_tensor::Device;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::data::{DataSpec, LoadedData};
use crate::error::{Result, SearchError};
use crate::evaluator::Evaluator;
use crate::evaluator::{EvalSetup, load_data};
use crate::executor::{ExecutorSettings, SetupSpec, SpecTemplate};
use crate::history::{Outcome, Trial};
use crate::memory::{NetSize, check_limit};
use crate::nets::rnn::RnnSupernet;
use crate::oneshot::{
    CHECKPOINT_FILE, Event as OneShotEvent, Method, OneShotConfig, OneShotSearch, SpaceKind,
    Supernet, run_oneshot_observed, run_oneshot_on,
};
use crate::outdir::{DirLock, LOCK_FILE, create_unique_dir, persist_guard};
use crate::plot::{Plot, Style};
use crate::search::{
    Budget, SearchConfig, SearchOutcome, StopReason, check_config, load_checkpoint_for,
    run_search_observed, search_meta,
};
use crate::spaces::{NetSettings, Purpose, Registry, SearchRun, Space};
use crate::strategy::StrategyKind;
use crate::train::{EpochStats, TrainRecipe};

/// Default number of evaluations.
pub const DEFAULT_EVALUATIONS: u64 = 16;
/// Default training epochs per candidate.
pub const DEFAULT_EPOCHS: u32 = 2;
/// Default number of training images per candidate.
pub const DEFAULT_TRAIN_EXAMPLES: usize = 3600;
/// Default space.
pub const DEFAULT_SPACE: &str = "nb201";
/// Default strategy: regularized evolution with a population of 8 (not its documented default
/// of 10, [`crate::strategy::ReaConfig`]), so that a search of [`DEFAULT_EVALUATIONS`]
/// candidates still evolves half of them. `--strategy evolution` (or `rea`) without settings
/// is the strategy's own default.
pub const DEFAULT_STRATEGY: &str = "rea:population_size=8";
/// Default evaluator.
pub const DEFAULT_EVALUATOR: &str = "train";
/// Default fraction of the training set held out for validation.
pub const DEFAULT_VALID_FRACTION: f64 = 0.1;
/// Default NAS-Bench-201 table data set.
pub const DEFAULT_TABLE_DATASET: &str = "cifar10";
/// Default NAS-Bench-201 table fidelity (its 12-epoch validation accuracy).
pub const DEFAULT_TABLE_EPOCHS: u32 = 12;
/// A one-shot search writes its checkpoint every this many steps (and after every epoch), so
/// a kill loses at most this many steps.
pub const ONESHOT_CHECKPOINT_EVERY: usize = 20;

/// Where a search writes its outputs.
#[derive(Debug, Clone, PartialEq)]
enum Output {
    /// Nowhere.
    None,
    /// This directory (created if needed).
    Dir(PathBuf),
    /// A new directory `search-<date>-<time>` under this one.
    Fresh(PathBuf),
}

/// Progress hooks of a search (all optional; called from the thread running the search, except
/// [`Observer::epoch`], called from the worker thread training the trial).
pub trait Observer: Send + Sync {
    /// The checks passed and the search starts writing.
    fn started(&self, start: &Started<'_>) {
        let _ = start;
    }
    /// A trial finished.
    fn trial(&self, record: &TrialRecord) {
        let _ = record;
    }
    /// A training epoch of trial `trial` finished.
    fn epoch(&self, trial: u64, stats: &EpochStats) {
        let _ = (trial, stats);
    }
    /// A one-shot search made a step or finished an epoch.
    fn oneshot(&self, event: &OneShotEvent<'_>) {
        let _ = event;
    }
}

/// What [`Observer::started`] is told.
#[derive(Debug)]
pub struct Started<'a> {
    /// The output directory, if any.
    pub dir: Option<&'a Path>,
    /// One line saying what the search does and where its outputs go.
    pub header: &'a str,
    /// Trials an earlier session already finished (a resumed search).
    pub already: u64,
    /// The evaluation budget (0 for a one-shot search).
    pub evaluations: u64,
    /// An upper bound of the training epochs of the whole search (`None`: nothing trains).
    pub epochs: Option<u64>,
}

/// Prints one line per trial on stderr (what [`Search::verbose`] turns on).
struct TrialLines;

impl Observer for TrialLines {
    fn trial(&self, r: &TrialRecord) {
        eprintln!("{}", r.line());
    }
}

/// A search described in one value; see the [module docs](self). Every default lives here.
#[derive(Clone)]
pub struct Search {
    registry: Registry,
    space: String,
    strategy: String,
    evaluator: String,
    setup: EvalSetup,
    budget: Budget,
    workers: usize,
    output: Output,
    resume: Option<bool>,
    memory_check: bool,
    max_memory: Option<u64>,
    observer: Option<Arc<dyn Observer>>,
    executor: ExecutorSettings,
    prefilter: Option<String>,
    objectives: Option<String>,
    max_params: Option<String>,
    max_flops: Option<String>,
    max_latency_ms: Option<String>,
    comm: Option<Arc<dyn crate::dist::Communicator>>,
    sync_bn: bool,
    search_dataset: Option<String>,
    hp: Option<String>,
}

impl Default for Search {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Search {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Search")
            .field("space", &self.space)
            .field("strategy", &self.strategy)
            .field("evaluator", &self.evaluator)
            .field("budget", &self.budget)
            .field("seed", &self.setup.seed)
            .finish_non_exhaustive()
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
    /// Test accuracies (%) by data set that `--report` asked for (the NAS-Bench-201 paper's
    /// protocol: search on one data set, report the choice's accuracy on all three); looked
    /// up once the search has ended, never seen by the strategy. Empty without `--report`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub reported_test: BTreeMap<String, f64>,
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
    /// Measured CPU latency (ms), when latency is an objective or a limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
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
    /// The Pareto front of a search with objectives (`--objectives`, or a multi-objective
    /// strategy's); also written to `front.json` and drawn in `front.svg`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub front: Option<crate::pareto::ParetoFront>,
    /// Proposals over `--max-params`/`--max-flops`, rejected unevaluated (all sessions).
    #[serde(default)]
    pub rejected: u64,
    /// The output directory (not written to `summary.json`).
    #[serde(skip)]
    pub output_dir: Option<PathBuf>,
    /// With `--hp`: the best trial's hyperparameters as `nas train` flags
    /// (`--lr 0.05 --batch-size 64`; [`crate::hp`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_flags: Option<String>,
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
                reported_test: BTreeMap::new(),
            },
            median_test_accuracy: median(&tests),
            evaluations: outcome.spent.evaluations,
            failed: trials.iter().filter(|t| t.failure.is_some()).count(),
            stop: outcome.stop,
            resumed: outcome.resumed,
            wall_time_s,
            trials,
            cut: outcome.cut.iter().map(|(id, _)| *id).collect(),
            front: None,
            rejected: 0,
            output_dir: None,
            train_flags: None,
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
        latency_ms: m.and_then(|m| m.latency_ms),
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
    let tmp = crate::checkpoint::temp_path(
        dir,
        &path
            .file_name()
            .map_or("file".into(), |n| n.to_string_lossy()),
    );
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
/// `nas search` both run their searches through it. `strategy` already carries the fidelity;
/// `warm_start` are its first proposals ([`crate::prefilter::WarmStarted`]; empty: none).
///
/// Check, then write: the settings and any checkpoint to resume are checked before anything is
/// written, so a refused search (other settings, corrupt checkpoint) leaves every file as it
/// was. Once they pass, the events log is reconciled with the checkpoint
/// ([`reconcile_events`]) and `on_start` is called with the number of trials the checkpoint
/// already holds (0 for a new search); then the search runs.
pub fn run_recorded<S, E>(
    space: &S,
    strategy: &StrategyKind,
    warm_start: &[S::Arch],
    moo: &crate::pareto::MooRun<S::Arch>,
    evaluator: &E,
    config: &SearchConfig,
    dir: Option<&Path>,
    extra: serde_json::Value,
    on_start: &mut dyn FnMut(u64),
    on_trial: &mut dyn FnMut(&TrialRecord),
) -> Result<SearchReport>
where
    S: SearchSpace + 'static,
    S::Arch: Display,
    E: Evaluator<S::Arch> + ?Sized,
{
    let start = Instant::now();
    let build = || moo.wrap(crate::prefilter::build_warm(strategy, warm_start, space)?);
    let mut built = build()?;
    check_config(config)?;
    let held = match &config.checkpoint {
        Some(path) if path.exists() => {
            let meta = search_meta(space, built.as_ref(), evaluator, config);
            let st = load_checkpoint_for::<S::Arch>(path, &meta, config.more_workers_on_resume)?;
            build()?
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
    let mut report = SearchReport::from_outcome(
        space.name(),
        json!({ "name": strategy.name(), "config": built.config() }),
        evaluator.name(),
        config.seed,
        config.workers,
        &outcome,
        start.elapsed().as_secs_f64(),
    )?;
    if let Some(best) = outcome.best() {
        // `--report`: looked up for the final choice only, after the search has ended
        report.best.reported_test = evaluator.reported_tests(&best.arch).into_iter().collect();
    }
    if !moo.limits.is_empty() {
        report.rejected = built.save_state()?["rejected"].as_u64().unwrap_or(0);
    }
    if let Some(objectives) = moo.objectives {
        // The hypervolume's reference cost: the limit when there is one, else the largest
        // cost evaluated.
        let limit = match objectives.cost {
            crate::pareto::CostKind::Params => moo.limits.max_params,
            crate::pareto::CostKind::Flops => moo.limits.max_flops,
            crate::pareto::CostKind::Latency => moo.limits.max_latency_ms,
        };
        report.front = Some(crate::pareto::ParetoFront::of_trials(
            &outcome.history.trials,
            objectives,
            limit,
        ));
    }
    let _guard = persist_guard();
    events.write(report.end_event())?;
    events.sync();
    if let Some(dir) = dir {
        write_outputs(dir, &report)?;
    }
    Ok(report)
}

impl TrialRecord {
    /// One line for a progress log: id, accuracies, parameters, time, architecture.
    pub fn line(&self) -> String {
        match &self.failure {
            None => format!(
                "trial {:>3}  valid {:6.2}%  test {:6.2}%  {:>9} params  {:7.2}s  {}",
                self.id,
                self.valid_accuracy.unwrap_or(f64::NAN),
                self.test_accuracy.unwrap_or(f64::NAN),
                self.params.unwrap_or(0),
                self.wall_time_s,
                self.arch
            ),
            Some(f) => format!("trial {:>3}  FAILED ({f})  {}", self.id, self.arch),
        }
    }
}

/// What [`Search::run_any`] returns: a multi-trial search's report or a one-shot search's.
#[derive(Debug, Clone)]
pub enum Finished {
    /// A multi-trial search.
    Search(SearchReport),
    /// A one-shot search (DARTS, GDAS, SPOS, RSWS).
    OneShot(OneShotReport),
}

/// The result of a one-shot search (DARTS, GDAS) run by [`Search::run_any`].
#[derive(Debug, Clone, Serialize)]
pub struct OneShotReport {
    /// `darts`, `darts2`, `gdas`, `pcdarts`, `spos` or `rsws`.
    pub method: String,
    /// The space.
    pub space: String,
    /// The derived architecture (text form).
    pub genotype: String,
    /// One record per epoch.
    pub history: Vec<crate::oneshot::EpochRecord>,
    /// SPOS / RSWS: the path search after training (`candidates.json`).
    pub paths: Option<crate::oneshot::PathSearch>,
    /// Where the search resumed from, if it did.
    pub resumed_from_step: Option<u64>,
    /// Steps run by this call.
    pub steps_run: u64,
    /// Wall time of this call (s).
    pub wall_time_s: f64,
    /// The output directory.
    pub output_dir: String,
}

impl std::fmt::Display for OneShotReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "derived architecture ({} on {}): {}",
            self.method, self.space, self.genotype
        )?;
        if let Some(p) = &self.paths {
            let b = &p.candidates[p.best];
            write!(
                f,
                "\n  path search ({}): {} candidate(s); the best's validation accuracy with \
                 inherited weights {:.2}%",
                p.strategy,
                p.candidates.len(),
                b.valid_acc * 100.0
            )?;
            if let Some(t) = b.nb201_cifar10_test {
                write!(
                    f,
                    "\n  NAS-Bench-201 table: this cell's 200-epoch CIFAR-10 test accuracy is {t:.2}%"
                )?;
            }
            if let Some((rho, n)) = p.spearman_vs_table {
                write!(
                    f,
                    "\n  Spearman rank correlation of supernet and table accuracy over {n} cells: {rho:.3}"
                )?;
            }
        } else if let Some(r) = self.history.last() {
            if let Some(a) = r.valid_acc {
                write!(
                    f,
                    "\n  supernet accuracy on the architecture half after {} epoch(s): {:.2}%",
                    r.epoch + 1,
                    a * 100.0
                )?;
            }
            if let Some(t) = r.nb201_cifar10_test {
                write!(
                    f,
                    "\n  NAS-Bench-201 table: this cell's 200-epoch CIFAR-10 test accuracy is {t:.2}%"
                )?;
            }
        }
        let dir = &self.output_dir;
        writeln!(
            f,
            "\n{} step(s) this session{} in {:.1} s\noutputs: {dir}/{{genotype.txt, result.json, history.json, {}, epochs/, checkpoint.bin}}\ntrain it: nas train \"$(cat {dir}/genotype.txt)\" --space {}",
            self.steps_run,
            if self.resumed_from_step.is_some() {
                " (resumed)"
            } else {
                ""
            },
            self.wall_time_s,
            if self.paths.is_some() {
                "candidates.json"
            } else {
                "alphas.svg"
            },
            self.space
        )
    }
}

impl SearchReport {
    /// The text summary `nas search` prints: the best architecture, its scores, the median of
    /// the trials, what stopped the search and where its outputs are.
    pub fn summary(&self, dir: Option<&Path>) -> String {
        let pct = |x: Option<f64>| x.map_or("n/a".into(), |v| format!("{v:.2}%"));
        let b = &self.best;
        let mut text = format!(
            "best architecture: {}  (trial {})\n  validation accuracy {:.2}%, test accuracy {}",
            b.arch,
            b.trial,
            b.valid_accuracy,
            pct(b.test_accuracy)
        );
        if let Some(p) = b.params {
            text += &format!(", {p} parameters");
        }
        if let Some(f) = b.flops {
            text += &format!(", {:.2} MFLOPs", f as f64 / 1e6);
        }
        if !b.reported_test.is_empty() {
            let each: Vec<String> = b
                .reported_test
                .iter()
                .map(|(d, a)| format!("{d} {a:.2}%"))
                .collect();
            text += &format!("\n  reported test accuracy: {}", each.join(", "));
        }
        text += &format!(
            "\nmedian test accuracy of the {} trials: {}",
            self.trials.len(),
            pct(self.median_test_accuracy)
        );
        if let (Some(t), Some(m)) = (b.test_accuracy, self.median_test_accuracy) {
            text += &format!(" (the search's pick: {:+.2} points)", t - m);
        }
        for id in &self.cut {
            text += &format!(
                "\ntrial {id} was cut by --max-time part-way: not recorded (--resume with a \
                 larger --max-time runs it again)"
            );
        }
        text += &format!(
            "\n{} evaluations{}, {} failed, stopped: {:?}; this session {:.1} s\n",
            self.evaluations,
            if self.resumed { " (resumed)" } else { "" },
            self.failed,
            self.stop,
            self.wall_time_s,
        );
        if self.rejected > 0 {
            text += &format!(
                "{} proposals over the cost limits were rejected unevaluated\n",
                self.rejected
            );
        }
        if let Some(front) = &self.front {
            text += &front.lines();
        }
        if let Some(flags) = &self.train_flags {
            let best = dir.map_or("BEST".into(), |d| {
                format!("@{}", d.join("best.txt").display())
            });
            text += &format!(
                "the best trial's hyperparameters: {flags}\n  train it with: nas train {best} {flags}\n"
            );
        }
        if let Some(dir) = dir {
            text += &format!(
                "outputs: {}/{{summary.json, best.txt, events.jsonl, progress.svg, progress_time.svg, params_accuracy.svg, {}checkpoint.json, checkpoint.journal}}\n",
                dir.display(),
                if self.front.is_some() {
                    "front.json, front.svg, "
                } else {
                    ""
                }
            );
        }
        text
    }
}

/// `YYYYmmdd-HHMMSS` (UTC) of now.
fn timestamp() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

impl Search {
    /// The defaults of `nas search` (see the [module docs](self) and the `DEFAULT_*` constants).
    pub fn new() -> Self {
        Search {
            registry: Registry::builtin(),
            space: DEFAULT_SPACE.into(),
            strategy: DEFAULT_STRATEGY.into(),
            evaluator: DEFAULT_EVALUATOR.into(),
            setup: EvalSetup {
                data: None,
                valid_fraction: DEFAULT_VALID_FRACTION,
                seed: 0,
                epochs: DEFAULT_EPOCHS,
                recipe: None,
                lr: None,
                batch_size: None,
                train_examples: Some(DEFAULT_TRAIN_EXAMPLES),
                device: Device::Cpu,
                net: NetSettings::default(),
                table_dataset: DEFAULT_TABLE_DATASET.into(),
                table_epochs: DEFAULT_TABLE_EPOCHS,
                table_report: None,
                loaded: None,
                on_epoch: None,
                hp: None,
            },
            budget: Budget::evaluations(DEFAULT_EVALUATIONS),
            workers: 1,
            output: Output::None,
            resume: None,
            memory_check: false,
            max_memory: None,
            observer: None,
            executor: ExecutorSettings::default(),
            prefilter: None,
            objectives: None,
            max_params: None,
            max_flops: None,
            max_latency_ms: None,
            comm: None,
            sync_bn: false,
            search_dataset: None,
            hp: None,
        }
    }

    /// The evaluation settings (data, epochs, recipe overrides, network sizes).
    pub fn setup(&self) -> &EvalSetup {
        &self.setup
    }
    /// The spaces and evaluators to look names up in ([`Registry::builtin`] by default).
    pub fn registry(mut self, registry: Registry) -> Self {
        self.registry = registry;
        self
    }
    /// The search space, by name ([`DEFAULT_SPACE`] by default).
    pub fn space(mut self, name: &str) -> Self {
        self.space = name.into();
        self
    }
    /// The strategy ([`DEFAULT_STRATEGY`] by default); its fidelity is set to the evaluator's.
    pub fn strategy(mut self, strategy: StrategyKind) -> Self {
        self.strategy = strategy.label();
        self
    }
    /// The strategy by name with `:key=value` settings ([`StrategyKind::parse`]), or a one-shot
    /// method (`darts`, `darts2`, `gdas`, `pcdarts`, `spos`, `rsws`: run it with [`Search::run_any`]).
    pub fn strategy_spec(mut self, spec: &str) -> Self {
        self.strategy = spec.into();
        self
    }
    /// `PROXY:SAMPLES[:KEEP]` ([`crate::prefilter`]): the strategy's first KEEP proposals are
    /// the best of SAMPLES random architectures by the proxy (none by default).
    pub fn prefilter(mut self, spec: Option<&str>) -> Self {
        self.prefilter = spec.map(str::to_string);
        self
    }

    /// `--objectives acc,params` ([`crate::pareto::Objectives::parse`]): the objectives of a
    /// multi-objective strategy, and of the Pareto front reported for any strategy.
    pub fn objectives(mut self, spec: Option<&str>) -> Self {
        self.objectives = spec.map(str::to_string);
        self
    }

    /// `--hp NAME=DOMAIN,...` (`lr=log:0.01..0.2,batch=32|64|128`): hyperparameters of the
    /// train evaluator searched jointly with the architecture ([`crate::hp`]).
    pub fn hp(mut self, spec: Option<&str>) -> Self {
        self.hp = spec.map(String::from);
        self
    }
    /// `--max-params N` (`1e6`, `1.5M`): candidates with more parameters are never
    /// evaluated ([`crate::pareto::Constrained`]).
    pub fn max_params(mut self, limit: Option<&str>) -> Self {
        self.max_params = limit.map(str::to_string);
        self
    }

    /// `--max-flops N`: candidates with more multiply-accumulates are never evaluated.
    pub fn max_flops(mut self, limit: Option<&str>) -> Self {
        self.max_flops = limit.map(str::to_string);
        self
    }

    /// `--max-latency-ms X`: candidates whose measured CPU latency ([`crate::latency`]) is
    /// more than `X` milliseconds are never evaluated.
    pub fn max_latency_ms(mut self, limit: Option<&str>) -> Self {
        self.max_latency_ms = limit.map(str::to_string);
        self
    }

    /// The parsed `--objectives`, `--max-params`, `--max-flops` and `--max-latency-ms`.
    fn moo_settings(&self) -> Result<crate::pareto::MooSettings> {
        use crate::pareto::{Limits, Objectives};
        let parse = |flag: &str, v: &Option<String>| {
            v.as_deref()
                .map(|t| Limits::parse_value(flag, t))
                .transpose()
        };
        Ok(crate::pareto::MooSettings {
            objectives: self
                .objectives
                .as_deref()
                .map(Objectives::parse)
                .transpose()?,
            limits: Limits {
                max_params: parse("--max-params", &self.max_params)?,
                max_flops: parse("--max-flops", &self.max_flops)?,
                max_latency_ms: parse("--max-latency-ms", &self.max_latency_ms)?,
            },
        })
    }

    /// How candidates are evaluated, by name ([`DEFAULT_EVALUATOR`] by default).
    pub fn evaluator(mut self, name: &str) -> Self {
        self.evaluator = name.into();
        self
    }
    /// Train candidates with `recipe` for `epochs` epochs in networks of `channels` and
    /// `cells` (the `train` evaluator).
    pub fn train(
        mut self,
        recipe: TrainRecipe,
        epochs: u32,
        channels: usize,
        cells: usize,
    ) -> Self {
        self.evaluator = "train".into();
        self.setup.train_examples = recipe.train_examples;
        self.setup.recipe = Some(recipe);
        self.setup.epochs = epochs;
        self.setup.net = NetSettings {
            channels: Some(channels),
            cells: Some(cells),
        };
        self
    }
    /// Look candidates up in the NAS-Bench-201 table (`cifar10`, `cifar100`,
    /// `ImageNet16-120`) at 12 or 200 epochs.
    pub fn table(mut self, dataset: &str, fidelity: u32) -> Self {
        self.evaluator = "nb201-table".into();
        self.setup.table_dataset = dataset.into();
        self.setup.table_epochs = fidelity;
        self
    }
    /// Training epochs per candidate ([`DEFAULT_EPOCHS`]; one-shot: epochs of the search).
    pub fn epochs(mut self, epochs: u32) -> Self {
        self.setup.epochs = epochs;
        self
    }
    /// Train on at most this many training images (`None`: all; [`DEFAULT_TRAIN_EXAMPLES`] by
    /// default).
    pub fn train_examples(mut self, n: Option<usize>) -> Self {
        self.setup.train_examples = n;
        self
    }
    /// Network sizes (unset ones: the space's defaults, [`crate::spaces::SpaceDef::shape`]).
    pub fn net(mut self, net: NetSettings) -> Self {
        self.setup.net = net;
        self
    }
    /// Learning rate over the space's recipe.
    pub fn lr(mut self, lr: Option<f32>) -> Self {
        self.setup.lr = lr;
        self
    }
    /// Batch size over the space's recipe.
    pub fn batch_size(mut self, b: Option<usize>) -> Self {
        self.setup.batch_size = b;
        self
    }
    /// The NAS-Bench-201 table's data set ([`DEFAULT_TABLE_DATASET`]).
    pub fn table_dataset(mut self, name: &str) -> Self {
        self.setup.table_dataset = name.into();
        self
    }
    /// The NAS-Bench-201 data set whose validation accuracy the strategy sees (`--search-dataset`;
    /// over [`Search::table_dataset`], and refused with any evaluator but the table).
    pub fn search_dataset(mut self, name: Option<&str>) -> Self {
        self.search_dataset = name.map(Into::into);
        self
    }
    /// The NAS-Bench-201 data sets whose 200-epoch test accuracy of the final choice is
    /// reported (`--report`: `cifar10`, `cifar100`, `imagenet16-120`, a comma-separated list of
    /// them, or `all`); the table evaluator only. `None`: the searched one alone.
    pub fn report(mut self, datasets: Option<&str>) -> Self {
        self.setup.table_report = datasets.map(Into::into);
        self
    }
    /// The NAS-Bench-201 table's fidelity, 12 or 200 ([`DEFAULT_TABLE_EPOCHS`]).
    pub fn table_epochs(mut self, epochs: u32) -> Self {
        self.setup.table_epochs = epochs;
        self
    }
    /// The data set to train on (ignored by the table; by default the embedded set of the
    /// kind the space trains on: Fashion-MNIST images, or the Shakespeare corpus).
    pub fn data(mut self, data: DataSpec) -> Self {
        self.setup.data = Some(data);
        self
    }
    /// Fraction of the training set held out for validation ([`DEFAULT_VALID_FRACTION`]).
    pub fn valid_fraction(mut self, f: f64) -> Self {
        self.setup.valid_fraction = f;
        self
    }
    /// The budget.
    pub fn budget(mut self, budget: Budget) -> Self {
        self.budget = budget;
        self
    }
    /// A budget of `n` evaluations ([`DEFAULT_EVALUATIONS`]).
    pub fn evaluations(mut self, n: u64) -> Self {
        self.budget.max_evaluations = Some(n);
        self
    }
    /// Also stop after this many seconds of wall time (summed over resumed sessions).
    pub fn max_time(mut self, seconds: Option<f64>) -> Self {
        self.budget.max_wall_time_s = seconds;
        self
    }
    /// The seed of the search (strategy, splits, every trial's training); 0 by default.
    pub fn seed(mut self, seed: u64) -> Self {
        self.setup.seed = seed;
        self
    }
    /// Evaluations run in parallel (1 by default).
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = workers;
        self
    }
    /// The device candidates are trained on (`cpu` by default).
    pub fn device(mut self, device: Device) -> Self {
        self.setup.device = device;
        self
    }
    /// Where to write the summary, events, plots and checkpoint (none by default).
    pub fn output_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.output = Output::Dir(dir.into());
        self
    }
    /// Write into a new directory `search-<date>-<time>` under `parent`.
    pub fn output_under(mut self, parent: impl Into<PathBuf>) -> Self {
        self.output = Output::Fresh(parent.into());
        self
    }
    /// `Some(true)`: continue the search in the output directory (an error if it holds none);
    /// `Some(false)`: start a new one (an error if it holds one); `None` (default): continue
    /// one if there is one.
    pub fn resume(mut self, resume: Option<bool>) -> Self {
        self.resume = resume;
        self
    }
    /// Refuse a training search whose networks would need more memory than `max_memory`
    /// (the available memory when `None`) by the closed-form estimate (off by default).
    pub fn check_memory(mut self, max_memory: Option<u64>) -> Self {
        self.memory_check = true;
        self.max_memory = max_memory;
        self
    }
    /// Progress hooks.
    pub fn observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observer = Some(observer);
        self
    }
    /// Where the trials of a multi-trial search run ([`crate::executor`]; in this process by
    /// default).
    pub fn executor(mut self, executor: ExecutorSettings) -> Self {
        self.executor = executor;
        self
    }
    /// Runs a one-shot DARTS search data-parallel over `comm`'s ranks
    /// ([`crate::oneshot::run_oneshot_parallel`]); every rank builds the same `Search` and
    /// calls [`Search::run_any`]. Rank 0 alone creates, locks and writes the output directory
    /// and reports progress. A multi-trial search on more than one rank is refused.
    pub fn communicator(mut self, comm: Arc<dyn crate::dist::Communicator>) -> Self {
        self.comm = Some(comm);
        self
    }
    /// Data-parallel one-shot searches: synchronised batch norm (`--sync-bn`; see
    /// [`crate::oneshot::OneShotConfig::sync_bn`]).
    pub fn sync_bn(mut self, on: bool) -> Self {
        self.sync_bn = on;
        self
    }
    /// Print one line per trial to standard error (off by default).
    pub fn verbose(mut self, on: bool) -> Self {
        self.observer = on.then(|| Arc::new(TrialLines) as Arc<dyn Observer>);
        self
    }

    /// Runs a multi-trial search; see the [module docs](self) for what is written.
    pub fn run(&self) -> Result<SearchReport> {
        match self.run_any()? {
            Finished::Search(r) => Ok(r),
            Finished::OneShot(_) => Err(SearchError::Setting(
                "a one-shot strategy: run it with Search::run_any".into(),
            )),
        }
    }

    /// Runs the search: a multi-trial one, or a one-shot one when the strategy names a
    /// one-shot method.
    pub fn run_any(&self) -> Result<Finished> {
        let space = self.registry.space(&self.space)?;
        self.setup.check()?;
        let name = self.strategy.split(':').next().unwrap_or("").trim();
        let mut moo = self.moo_settings()?;
        if let Ok(method) = Method::parse(name) {
            if moo != crate::pareto::MooSettings::default() {
                return Err(SearchError::Setting(format!(
                    "--objectives, --max-params, --max-flops and --max-latency-ms apply to multi-trial strategies, not the one-shot {name}"
                )));
            }
            if self.hp.is_some() {
                return Err(SearchError::Setting(format!(
                    "--hp searches hyperparameters with multi-trial strategies, not the one-shot {name} (its supernet trains with one recipe)"
                )));
            }
            return self.run_oneshot(space, method).map(Finished::OneShot);
        }
        if let Some(c) = &self.comm
            && c.size() > 1
        {
            return Err(SearchError::Setting(format!(
                "--strategy {name}: {} processes were started (MPI), but only one-shot DARTS \
                 searches run data-parallel; run multi-trial searches as one process (their \
                 trials spread with --workers or --executor slurm)",
                c.size()
            )));
        }
        if self.sync_bn {
            return Err(SearchError::Setting(format!(
                "--sync-bn applies to data-parallel one-shot searches, not --strategy {name}"
            )));
        }
        let mut strategy = StrategyKind::parse(&self.strategy)
            .map_err(|e| SearchError::Setting(format!("--strategy: {e}")))?;
        let evaluations = self.budget.max_evaluations.unwrap_or(u64::MAX);
        if evaluations == 0 {
            return Err(SearchError::Setting(
                "--evaluations must be at least 1".into(),
            ));
        }
        if self.workers == 0 {
            return Err(SearchError::Setting("--workers must be at least 1".into()));
        }
        if self
            .budget
            .max_wall_time_s
            .is_some_and(|t| t.is_nan() || t <= 0.0)
        {
            return Err(SearchError::Setting(
                "--max-time must be a positive number of seconds".into(),
            ));
        }
        let def = self.registry.evaluator(&self.evaluator)?;
        let mut setup = self.setup.clone();
        crate::tabular::apply_protocol(&mut setup, self.search_dataset.as_deref(), def.name())?;
        let fidelity = def.fidelity(&setup)?;
        strategy.set_fidelity(fidelity, def.trains())?;
        match moo.objectives {
            Some(o) => strategy.set_objectives(o),
            None => moo.objectives = strategy.objectives(),
        }
        let prefilter = self
            .prefilter
            .as_deref()
            .map(crate::prefilter::PrefilterSpec::parse)
            .transpose()?;
        if prefilter.is_some() && strategy.fidelities(fidelity).len() > 1 {
            return Err(SearchError::Setting(format!(
                "--prefilter warm-starts single-fidelity strategies; {} evaluates at {:?} epochs",
                strategy.name(),
                strategy.fidelities(fidelity)
            )));
        }
        if let Some(text) = &self.hp {
            let spec = crate::hp::HpSpec::parse(text)?;
            if def.name() != "train" {
                return Err(SearchError::Setting(format!(
                    "--hp with --evaluator {}: the evaluator's results were measured with fixed \
                     hyperparameters; --hp needs --evaluator train",
                    def.name()
                )));
            }
            if prefilter.is_some() {
                return Err(SearchError::Setting(
                    "--prefilter with --hp: the proxies score architectures at the default width \
                     and recipe, not candidates with their own hyperparameters; use one or the other"
                        .into(),
                ));
            }
            let latency = moo
                .objectives
                .as_ref()
                .is_some_and(|o| o.cost == crate::pareto::CostKind::Latency)
                || moo.limits.max_latency_ms.is_some();
            if latency {
                return Err(SearchError::Setting(
                    "--hp with --objectives acc,latency or --max-latency-ms: the latency table \
                     costs an architecture's network at one width and depth, not candidates \
                     with their own; use one or the other"
                        .into(),
                ));
            }
            crate::hp::conflicts(&spec, &setup)?;
            setup.hp = Some(spec);
        }
        let mut epochs = None;
        if def.trains() {
            let data = setup.load(space)?;
            if self.memory_check
                && let LoadedData::Images(splits) = &data
                && let Some(size) = setup
                    .shape_for(space, Purpose::Search)
                    .map(|s| crate::hp::largest_shape(setup.hp.as_ref(), s))
                    .and_then(|s| space.memory(s))
            {
                let recipe = setup.recipe_for(space);
                check_limit(
                    size,
                    &splits.train,
                    recipe.train_examples,
                    crate::hp::largest_batch(setup.hp.as_ref(), recipe.batch_size),
                    self.workers,
                    self.max_memory,
                    "training these candidates",
                )?;
            }
            setup.loaded = Some(data);
            let most = strategy
                .fidelities(fidelity)
                .into_iter()
                .max()
                .unwrap_or(fidelity);
            epochs = Some(evaluations.saturating_mul(u64::from(most)));
            if let Some(o) = &self.observer {
                let o = o.clone();
                setup.on_epoch = Some(Arc::new(move |trial, s| o.epoch(trial, s)));
            }
        }
        self.executor.check()?;
        let template = SpecTemplate {
            space: space.name().into(),
            evaluator: def.name().into(),
            setup: SetupSpec::of(&setup),
        };
        let evaluator = def.build(space, &setup)?;
        let out = OutDir::open(&self.output, self.resume, "checkpoint.json")?;
        let dir = out.path();
        let mut header = def.describe(space, &setup, &strategy, evaluations);
        if let Some(spec) = &setup.hp {
            header += &format!(
                "; with hyperparameters {} ({} combinations)",
                spec.text(),
                spec.combinations()
            );
        }
        if let Some(d) = dir {
            header += &format!("; outputs in {}", d.display());
        }
        let config = SearchConfig {
            seed: setup.seed,
            workers: self.workers,
            budget: self.budget.clone(),
            checkpoint: dir.map(|d| d.join("checkpoint.json")),
            skip_equivalent: false,
            // `--resume --workers N` may add workers (see SearchConfig::more_workers_on_resume).
            more_workers_on_resume: self.resume == Some(true),
            executor: self.executor.build(template, dir)?,
        };
        let observer = self.observer.clone();
        let started = std::cell::Cell::new(false);
        let mut report = space.search(SearchRun {
            strategy: &strategy,
            prefilter,
            moo,
            evaluator,
            config: &config,
            dir,
            extra: json!({ "resume": self.resume == Some(true) }),
            on_start: &mut |already| {
                started.set(true);
                if let Some(o) = &observer {
                    o.started(&Started {
                        dir,
                        header: &header,
                        already,
                        evaluations,
                        epochs,
                    });
                }
            },
            on_trial: &mut |r| {
                if let Some(o) = &observer {
                    o.trial(r);
                }
            },
            hp: setup.hp.is_some().then_some(&setup),
        });
        if started.get() {
            out.keep();
        }
        if let Ok(r) = &mut report {
            r.output_dir = dir.map(Path::to_path_buf);
        }
        report.map(Finished::Search)
    }

    /// A one-shot search (`nas_search::oneshot`) of `epochs` epochs over the space's supernet,
    /// on the training part of the data.
    fn run_oneshot(&self, space: &dyn Space, method: Method) -> Result<OneShotReport> {
        let m = method.name();
        if self.evaluator != "train" {
            return Err(SearchError::Setting(format!(
                "--strategy {m}: one-shot strategies train a supernet; --evaluator {} does not apply",
                self.evaluator
            )));
        }
        if !self.executor.is_local() {
            return Err(SearchError::Setting(format!(
                "--strategy {m}: a one-shot search trains one supernet in this process; \
                 --executor {} runs the trials of multi-trial searches",
                self.executor.kind
            )));
        }
        if self.setup.epochs == 0 {
            return Err(SearchError::Setting("--epochs must be at least 1".into()));
        }
        let (Some(kind), Some(shape)) = (
            space.supernet(),
            self.setup.shape_for(space, Purpose::Supernet),
        ) else {
            let with: Vec<&str> = self
                .registry
                .spaces()
                .filter(|s| s.supernet().is_some())
                .map(|s| s.name())
                .collect();
            return Err(SearchError::Setting(format!(
                "--strategy {m}: one-shot supernets exist for --space {}, not {}",
                with.join(" and "),
                space.name()
            )));
        };
        let mut config = OneShotConfig::new(method, kind);
        config.device = self.setup.device;
        config.epochs = self.setup.epochs as usize;
        config.seed = self.setup.seed;
        config.c = shape.channels;
        config.layers = shape.cells;
        if let Some(b) = self.setup.batch_size {
            config.batch_size = b;
        }
        if let Some(lr) = self.setup.lr {
            config.w_lr = lr;
            if kind == SpaceKind::Rnn {
                // the recurrent search's learning rate is constant (the original's)
                config.w_lr_min = lr;
            }
        }
        config.checkpoint_every = ONESHOT_CHECKPOINT_EVERY;
        config.sync_bn = self.sync_bn;
        // `name:key=value:key=value`, the syntax of the multi-trial strategies' settings
        for kv in self.strategy.split(':').skip(1) {
            let (k, v) = kv.split_once('=').ok_or_else(|| {
                SearchError::Setting(format!(
                    "--strategy {}: setting {kv:?} is not key=value",
                    self.strategy
                ))
            })?;
            config
                .apply_setting(k.trim(), v.trim())
                .map_err(|e| SearchError::Setting(format!("--strategy {}: {e}", self.strategy)))?;
        }
        if method.samples_paths()
            && let Some(n) = self.budget.max_evaluations
        {
            // SPOS / RSWS: the evaluations are the candidate paths searched after training
            config.candidates = usize::try_from(n).unwrap_or(usize::MAX);
        }
        // Check, then write: settings no search can use are refused before the directory is
        // created and its settings are written
        config.validate()?;
        let data = self.setup.data_for(space)?;
        let input = if kind == SpaceKind::Rnn {
            let LoadedData::Text(corpus) = load_data(&data, 0.0, self.setup.seed)? else {
                return Err(SearchError::Setting(format!(
                    "--data {data}: the recurrent space searches text"
                )));
            };
            let mut corpus = (*corpus).clone();
            if let Some(n) = self.setup.train_examples {
                // --limit-train counts training sequences of TEXT_BPTT characters
                let keep = n.saturating_mul(crate::rnn::TEXT_BPTT);
                corpus.train.truncate(keep.max(2));
            }
            OneShotInput::Text(corpus)
        } else {
            let splits = data.load()?.prepare(0.0, self.setup.seed)?;
            let train = match self.setup.train_examples {
                Some(n) if n < splits.train.len() => {
                    splits.train.subset(&(0..n).collect::<Vec<_>>())?
                }
                _ => splits.train,
            };
            if self.memory_check {
                // A supernet that cannot fit is refused before anything is built or written.
                check_limit(
                    NetSize::Supernet {
                        darts: kind == SpaceKind::Darts,
                        channels: config.c,
                        cells: config.layers,
                    },
                    &train,
                    None,
                    config.batch_size,
                    1,
                    self.max_memory,
                    "this one-shot search's supernet",
                )?;
            }
            OneShotInput::Images(train)
        };
        // Data-parallel: the ranks other than 0 touch no directory and report nothing; rank 0
        // tells them whether to resume. The image supernets alone run data-parallel.
        let comm = self.comm.clone().filter(|c| c.size() > 1);
        if let Some(c) = &comm
            && kind == SpaceKind::Rnn
        {
            return Err(SearchError::Setting(format!(
                "--strategy {m} --space {}: data-parallel one-shot search ({} ranks) runs on \
                 the image supernets only; run the recurrent search in one process",
                space.name(),
                c.size()
            )));
        }
        if let (Some(c), OneShotInput::Images(train)) = (&comm, &input)
            && c.rank() != 0
        {
            let start = Instant::now();
            let outcome = crate::oneshot::run_oneshot_parallel(
                &config,
                train,
                Path::new(""),
                false,
                c.clone(),
                &mut |_| {},
            )?;
            return Ok(OneShotReport {
                method: m.into(),
                space: space.name().into(),
                genotype: outcome.genotype.to_string(),
                history: outcome.history,
                paths: outcome.paths,
                resumed_from_step: outcome.resumed_from_step,
                steps_run: outcome.steps_run,
                wall_time_s: start.elapsed().as_secs_f64(),
                output_dir: String::new(),
            });
        }
        let out = OutDir::open(&self.output, self.resume, CHECKPOINT_FILE)?;
        let dir = out
            .path()
            .ok_or_else(|| {
                SearchError::Setting("a one-shot search needs an output directory".into())
            })?
            .to_path_buf();
        out.keep();
        // Check, then write: a checkpoint this search cannot continue (other settings,
        // corrupt) is refused before anything else is written.
        let ck = dir.join(CHECKPOINT_FILE);
        let resume = self.resume.unwrap_or(ck.exists());
        if resume && ck.exists() {
            match &input {
                OneShotInput::Images(train) => {
                    drop(OneShotSearch::<Supernet>::resume(&ck, &config, train)?)
                }
                OneShotInput::Text(corpus) => {
                    drop(OneShotSearch::<RnnSupernet>::resume(&ck, &config, corpus)?)
                }
            }
        }
        let header = match &input {
            OneShotInput::Images(train) => format!(
                "{m} on the {} supernet (C={}, {} cells): {} epoch(s) on {} images of {} (half \
                 trains the weights, half the architecture); outputs in {}",
                kind.name(),
                config.c,
                config.layers,
                config.epochs,
                train.len(),
                data,
                dir.display()
            ),
            OneShotInput::Text(corpus) => format!(
                "{m} on the recurrent supernet ({} hidden units, windows of {}, batch {}): {} \
                 epoch(s) on the {} training characters of {} (the first {} train the weights, \
                 the rest the architecture); outputs in {}",
                config.c,
                config.bptt,
                config.batch_size,
                config.epochs,
                corpus.train.len(),
                data,
                config.train_portion,
                dir.display()
            ),
        };
        let header = match &comm {
            Some(c) => format!(
                "{header}; data-parallel on {} {} ranks, each on 1/{} of every batch ({})",
                c.size(),
                c.kind(),
                c.size(),
                if config.sync_bn {
                    "batch norm synchronised"
                } else {
                    "batch norm per rank"
                }
            ),
            None => header,
        };
        if let Some(o) = &self.observer {
            o.started(&Started {
                dir: Some(&dir),
                header: &header,
                already: 0,
                evaluations: 0,
                epochs: None,
            });
        }
        let start = Instant::now();
        let observer = self.observer.clone();
        let mut observe = |e: &OneShotEvent<'_>| {
            if let Some(o) = &observer {
                o.oneshot(e);
            }
        };
        let outcome = match (&input, comm) {
            (OneShotInput::Images(train), Some(c)) => {
                crate::oneshot::run_oneshot_parallel(&config, train, &dir, resume, c, &mut observe)?
            }
            (OneShotInput::Images(train), None) => {
                run_oneshot_observed(&config, train, &dir, resume, &mut observe)?
            }
            (OneShotInput::Text(corpus), _) => {
                run_oneshot_on::<RnnSupernet>(&config, corpus, &dir, resume, &mut observe)?
            }
        };
        Ok(OneShotReport {
            method: m.into(),
            space: space.name().into(),
            genotype: outcome.genotype.to_string(),
            history: outcome.history,
            paths: outcome.paths,
            resumed_from_step: outcome.resumed_from_step,
            steps_run: outcome.steps_run,
            wall_time_s: start.elapsed().as_secs_f64(),
            output_dir: dir.display().to_string(),
        })
    }
}

/// What a one-shot search reads: the training images, or a text corpus (recurrent space).
enum OneShotInput {
    Images(crate::data::Dataset),
    Text(crate::data::text::TextCorpus),
}

/// The output directory of a search, locked for this process. A directory this run created
/// is removed again when the run ends before its search started writing (a refused or failed
/// start leaves nothing behind).
struct OutDir {
    path: Option<PathBuf>,
    lock: Option<DirLock>,
    created: bool,
    keep: std::cell::Cell<bool>,
}

impl OutDir {
    /// Creates (if needed) and locks the directory, then checks, under the lock, that it holds
    /// a search to continue (`resume == Some(true)`) or none (`Some(false)`). Nothing else is
    /// written.
    fn open(output: &Output, resume: Option<bool>, checkpoint_file: &str) -> Result<OutDir> {
        let (dir, created) = match output {
            Output::None if resume == Some(true) => {
                return Err(SearchError::Setting(
                    "--resume needs --out DIR (the directory of the search to continue)".into(),
                ));
            }
            Output::None => {
                return Ok(OutDir {
                    path: None,
                    lock: None,
                    created: false,
                    keep: std::cell::Cell::new(true),
                });
            }
            Output::Fresh(_) if resume == Some(true) => {
                return Err(SearchError::Setting(
                    "--resume needs --out DIR (the directory of the search to continue)".into(),
                ));
            }
            Output::Fresh(parent) => (
                create_unique_dir(parent, &format!("search-{}", timestamp()))?,
                true,
            ),
            Output::Dir(d) => {
                let no_search = || {
                    SearchError::Setting(format!(
                        "--resume: {} holds no search to continue (no {})",
                        d.display(),
                        d.join(checkpoint_file).display()
                    ))
                };
                if resume == Some(true) && !d.join(checkpoint_file).exists() {
                    return Err(no_search());
                }
                let created = !d.exists();
                fs::create_dir_all(d).map_err(|e| SearchError::io(d, e))?;
                (d.clone(), created)
            }
        };
        let mut out = OutDir {
            path: Some(dir.clone()),
            lock: None,
            created,
            keep: std::cell::Cell::new(false),
        };
        out.lock = Some(DirLock::acquire(&dir)?);
        let checkpoint = dir.join(checkpoint_file);
        if resume == Some(true) && !checkpoint.exists() {
            return Err(SearchError::Setting(format!(
                "--resume: {} holds no search to continue (no {})",
                dir.display(),
                checkpoint.display()
            )));
        }
        if resume == Some(false) && checkpoint.exists() {
            return Err(SearchError::Setting(format!(
                "{} already holds a search ({}); pass --resume to continue it, or choose another --out",
                dir.display(),
                checkpoint.display()
            )));
        }
        Ok(out)
    }

    fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The search started writing: the directory stays.
    fn keep(&self) {
        self.keep.set(true);
    }
}

impl Drop for OutDir {
    fn drop(&mut self) {
        if let Some(path) = &self.path
            && self.created
            && !self.keep.get()
        {
            let _ = fs::remove_file(path.join(LOCK_FILE));
            self.lock.take();
            let _ = fs::remove_dir(path);
        }
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
    if let Some(front) = &report.front {
        let text =
            serde_json::to_string_pretty(front).map_err(|e| SearchError::Serde(e.to_string()))?;
        write_file_atomic(&dir.join("front.json"), (text + "\n").as_bytes())?;
        front
            .plot(&format!("{title}: Pareto front ({})", front.objectives))
            .save(dir.join("front.svg"))?;
    }
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
        assert_eq!(r.output_dir.as_deref(), Some(dir.path()));
        assert_eq!(
            summary,
            SearchReport {
                output_dir: None,
                ..r.clone()
            }
        );
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
                .space("darts")
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
        for (space, cells) in [("darts", 3), ("nb101", 1), ("chain", 1), ("chain-mlp", 1)] {
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
