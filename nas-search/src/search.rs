//! The search loop: parallel evaluation, budgets, checkpoint and resume.
//!
//! # Determinism
//!
//! With a fixed seed and number of workers, the history does not depend on timing:
//!
//! * **bounded window of asks**: the loop keeps at most `workers` candidates asked but not yet
//!   told. It asks only right after a tell (or at the start), until the window is full, so
//!   every `ask` sees the strategy after exactly the same sequence of tells;
//! * **tells in ask order**: a result that arrives early waits until every older candidate has
//!   been told, so the strategy sees results in the order it asked, whatever order the workers
//!   finish in;
//! * **per-trial seeds**: the evaluator gets a seed derived from the search seed and the trial
//!   id ([`crate::evaluator::trial_seed`]), never from the worker;
//! * the one random generator (ChaCha8, owned by the loop, passed to `ask`) is checkpointed.
//!
//! Changing `workers` changes the window and therefore the history (a checkpoint records it and
//! a resume must use the same number, unless [`SearchConfig::more_workers_on_resume`] allows
//! more: the search then goes on with the new window). Budgets by evaluations and by simulated cost are
//! deterministic; a wall-time budget is not.
//!
//! # Example
//!
//! ```
//! use nas_search::tabular::{Dataset, Nb201Evaluator, Nb201Table};
//! use nas_search::{Budget, SearchConfig, StrategyKind, run_search};
//! use nas_space::nb201::Nb201Space;
//!
//! let table = Nb201Table::embedded()?;
//! let evaluator = Nb201Evaluator::new(table, Dataset::Cifar10);
//! let mut strategy = StrategyKind::parse("rea")?.build(&Nb201Space)?;
//! let mut config = SearchConfig::new(42, Budget::evaluations(100));
//! config.workers = 2;
//! let out = run_search(&Nb201Space, strategy.as_mut(), &evaluator, &config)?;
//! let best = out.best().expect("some trial succeeded");
//! assert_eq!(out.history.len(), 100);
//! assert!(best.metrics().unwrap().test_accuracy.unwrap() > 90.0);
//! # Ok::<(), nas_search::SearchError>(())
//! ```
//!
//! # Checkpoints
//!
//! With [`SearchConfig::checkpoint`] set, the [`SearchState`] (strategy state, history,
//! candidates in flight with any results already in, RNG state, budget spent) is saved after
//! every finished evaluation, at a cost that does not grow with the history: a save appends one
//! checksummed line to the journal ([`journal_path`]: the trials told since the previous save
//! and the small parts of the state), and the whole state is written as an atomic snapshot
//! (see [`crate::checkpoint`]) only at the start and end of a session and when the journal has
//! outgrown the last snapshot (then the journal starts over). [`read_state_value`] reads the
//! snapshot and replays the journal; a kill in the middle of a journal write leaves a torn last
//! line, which is ignored. If the file exists
//! when the search starts, the search resumes from it; a corrupt file or one written by another
//! search (other space, strategy, settings, evaluator, seed, workers) is refused with an error
//! and left untouched. Candidates that were in flight without a result are evaluated again
//! (same trial id, same seed), so a resumed search ends with exactly the history of an
//! uninterrupted one, timing fields aside.

use crate::checkpoint;
use crate::error::{Result, SearchError};
use crate::evaluator::{EvalError, EvalRequest, Evaluator, trial_seed};
use crate::executor::{RemoteEvent, RemoteExecutor, RemoteHandle, RemoteJob, TrialOutcome};
use crate::history::{History, Outcome, Trial};
use crate::outdir::persist_guard;
use crate::strategy::{Ask, Strategy};
use nas_space::SearchSpace;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, mpsc};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Limits of a search; the first one reached stops it (`None` = no limit). At least one of
/// them, or a strategy that finishes by itself, must end the search.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Budget {
    /// Maximum number of evaluations (trials reusing an equivalent's result do not count).
    pub max_evaluations: Option<u64>,
    /// Maximum simulated cost (sum of [`crate::evaluator::Metrics::cost`]; epochs for the table).
    /// Checked before each ask, so in-flight trials may overshoot it by up to `workers - 1`.
    pub max_cost: Option<f64>,
    /// Maximum wall time in seconds, summed over resumed sessions (not deterministic).
    pub max_wall_time_s: Option<f64>,
}

impl Budget {
    /// A budget of `n` evaluations.
    pub fn evaluations(n: u64) -> Self {
        Budget {
            max_evaluations: Some(n),
            ..Budget::default()
        }
    }
    /// A budget of simulated cost `c`.
    pub fn cost(c: f64) -> Self {
        Budget {
            max_cost: Some(c),
            ..Budget::default()
        }
    }
}

/// Settings of one search.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchConfig {
    /// Seed of the search's random generator and of the per-trial seeds.
    pub seed: u64,
    /// Number of evaluations run at once (worker threads; 1 = evaluate on the calling thread).
    pub workers: usize,
    /// When to stop.
    pub budget: Budget,
    /// Checkpoint file: written after every finished evaluation; resumed from if it exists.
    pub checkpoint: Option<PathBuf>,
    /// Reuse the result of an equivalent architecture (same [`SearchSpace::canonical`] key, same
    /// fidelity) instead of evaluating it again. Off by default, as in the literature's
    /// protocol (equivalent NAS-Bench-201 cells were trained separately and differ). For
    /// NAS-Bench-201 the key is nas-space's normal form of the cell. A skipped trial is
    /// recorded with `cached_from` and charged nothing.
    pub skip_equivalent: bool,
    /// Whether a resume may run with more workers than the checkpoint's (off by default).
    /// The search continues, but from then on its window of asks is the new one: the history
    /// is no longer the one an uninterrupted search with either number of workers would give.
    pub more_workers_on_resume: bool,
    /// Where trials run: `None` in this process (inline or on `workers` threads); a remote
    /// executor ([`crate::executor`]) otherwise, with up to `workers` trials in flight. The
    /// history is the same either way.
    pub executor: Option<RemoteHandle>,
}

impl SearchConfig {
    /// One worker, no checkpoint, no skipping, the given seed and budget.
    pub fn new(seed: u64, budget: Budget) -> Self {
        SearchConfig {
            seed,
            workers: 1,
            budget,
            checkpoint: None,
            skip_equivalent: false,
            more_workers_on_resume: false,
            executor: None,
        }
    }
}

/// Resources used so far.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Spent {
    /// Evaluations told (trials reusing a cached result not counted).
    pub evaluations: u64,
    /// Simulated cost told.
    pub cost: f64,
    /// Wall time of all sessions, seconds.
    pub wall_time_s: f64,
}

/// Why a search stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StopReason {
    /// The evaluation budget was used up.
    Evaluations,
    /// The cost budget was used up.
    Cost,
    /// The wall-time budget was used up.
    WallTime,
    /// The strategy said it was done.
    StrategyDone,
    /// The strategy waited with nothing in flight.
    StrategyStuck,
    /// More than [`MAX_CACHED_STREAK`] proposals in a row were equivalent to evaluated ones.
    OnlyEquivalents,
}

/// With `skip_equivalent`, the search stops after this many consecutive skipped proposals.
pub const MAX_CACHED_STREAK: u64 = 10_000;

/// What a finished search returns.
#[derive(Debug, Clone)]
pub struct SearchOutcome<A> {
    /// Every trial in order.
    pub history: History<A>,
    /// Resources used.
    pub spent: Spent,
    /// Why it stopped.
    pub stop: StopReason,
    /// Whether it continued from a checkpoint.
    pub resumed: bool,
    /// Trials cut by the wall-time budget part-way (id, where), left pending in the checkpoint
    /// (not in the history: a resumed search runs them again).
    pub cut: Vec<(u64, String)>,
}

impl<A: PartialEq> SearchOutcome<A> {
    /// The final choice ([`History::best`]).
    pub fn best(&self) -> Option<&Trial<A>> {
        self.history.best()
    }
}

/// What identifies a search; a checkpoint is resumed only when all of it matches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchMeta {
    /// [`SearchSpace::name`].
    pub space: String,
    /// [`Strategy::name`].
    pub strategy: String,
    /// [`Strategy::config`].
    pub strategy_config: serde_json::Value,
    /// [`Evaluator::name`].
    pub evaluator: String,
    /// The seed.
    pub seed: u64,
    /// The number of workers (it shapes the history).
    pub workers: usize,
    /// Whether equivalent architectures are skipped.
    pub skip_equivalent: bool,
}

/// A finished evaluation not yet told.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finished {
    /// The outcome.
    pub outcome: Outcome,
    /// Its cost.
    pub cost: f64,
    /// Start (Unix ms).
    pub started_unix_ms: u64,
    /// End (Unix ms).
    pub finished_unix_ms: u64,
    /// Wall time (s).
    pub wall_time_s: f64,
}

/// A candidate asked and not yet told.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound = "A: Serialize + DeserializeOwned")]
pub struct Pending<A> {
    /// Trial id.
    pub id: u64,
    /// Architecture.
    pub arch: A,
    /// Fidelity.
    pub fidelity: u32,
    /// Reuses this earlier trial's result (skip-equivalent).
    pub cached_from: Option<u64>,
    /// The result, once its evaluation finished.
    pub result: Option<Finished>,
    /// A remote executor's handle of the running evaluation (a Slurm array task), handed
    /// back to it on resume so that the job is watched, not submitted again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
}

/// The whole state of a search: what a checkpoint holds (JSON after the header line).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(bound = "A: Serialize + DeserializeOwned")]
pub struct SearchState<A> {
    /// Identity of the search.
    pub meta: SearchMeta,
    /// The budget it runs under (a resume may change it).
    pub budget: Budget,
    /// The search's random generator (after the last ask).
    pub rng: ChaCha8Rng,
    /// [`Strategy::save_state`].
    pub strategy_state: serde_json::Value,
    /// Trials told so far.
    pub history: History<A>,
    /// Candidates asked and not yet told, oldest first.
    pub pending: VecDeque<Pending<A>>,
    /// Id of the next trial.
    pub next_id: u64,
    /// Resources used.
    pub spent: Spent,
    /// Set once the search has stopped asking.
    pub stop: Option<StopReason>,
    /// Consecutive skipped proposals.
    pub cached_streak: u64,
    /// Number of the save point this state was written at (each save after a finished
    /// evaluation is one; the journal's records continue the count).
    #[serde(default)]
    pub seq: u64,
}

/// One journal record: what changed at one save point since the one before (the trials told
/// in between, and the small parts of the state, replaced whole), borrowed from the live state.
#[derive(Serialize)]
#[serde(bound = "A: Serialize + DeserializeOwned")]
struct JournalRecordRef<'a, A> {
    seq: u64,
    from: u64,
    told: &'a [Trial<A>],
    budget: &'a Budget,
    rng: &'a ChaCha8Rng,
    strategy_state: &'a serde_json::Value,
    pending: &'a VecDeque<Pending<A>>,
    next_id: u64,
    spent: &'a Spent,
    stop: &'a Option<StopReason>,
    cached_streak: u64,
}

/// The journal that goes with checkpoint `path`: `path` with the extension `journal`
/// (`checkpoint.json` -> `checkpoint.journal`).
pub fn journal_path(path: &Path) -> PathBuf {
    let j = path.with_extension("journal");
    if j == path {
        let mut s = path.as_os_str().to_owned();
        s.push(".journal");
        PathBuf::from(s)
    } else {
        j
    }
}

/// A snapshot is rewritten when the journal has grown past the snapshot's size (and this
/// floor), so the bytes written per trial stay constant on average.
const MIN_JOURNAL_BYTES: u64 = 256 * 1024;

/// Reads a checkpoint as JSON: the verified snapshot with the records of its journal applied
/// in order. A torn last record (a kill in the middle of a write) is ignored; a corrupt record
/// before the last one, a gap in the record numbers or a record that does not continue the
/// history is an error naming the journal. Records numbered at or below the snapshot's (left
/// by a kill between a snapshot and the journal's truncation) are skipped.
pub fn read_state_value(path: &Path) -> Result<serde_json::Value> {
    let payload = checkpoint::read_verified(path)?;
    let mut v: serde_json::Value =
        serde_json::from_slice(&payload).map_err(|e| SearchError::Checkpoint {
            path: path.to_path_buf(),
            problem: format!("not a search state: {e}"),
        })?;
    let jpath = journal_path(path);
    let bytes = match fs::read(&jpath) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(v),
        Err(e) => return Err(SearchError::io(&jpath, e)),
    };
    let bad = |problem: String| SearchError::Checkpoint {
        path: jpath.clone(),
        problem,
    };
    if !v["history"]["trials"].is_array() {
        return Err(SearchError::Checkpoint {
            path: path.to_path_buf(),
            problem: "not a search state: no history".into(),
        });
    }
    let mut seq = v["seq"].as_u64().unwrap_or(0);
    let lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    let n = lines.len();
    for (i, line) in lines.iter().enumerate() {
        let last = i + 1 == n;
        if last && line.is_empty() {
            break;
        }
        let Some(mut rec) = parse_record(line) else {
            if last {
                break; // torn tail
            }
            return Err(bad(format!(
                "record {} of {} is corrupt (bad length or checksum)",
                i + 1,
                n - 1
            )));
        };
        let (Some(rs), Some(from)) = (rec["seq"].as_u64(), rec["from"].as_u64()) else {
            return Err(bad(format!("record {} has no seq/from", i + 1)));
        };
        if rs <= seq {
            continue;
        }
        if rs != seq + 1 {
            return Err(bad(format!(
                "record {} jumps from save point {seq} to {rs}",
                i + 1
            )));
        }
        let trials = v["history"]["trials"]
            .as_array_mut()
            .expect("checked above");
        if from != trials.len() as u64 {
            return Err(bad(format!(
                "record {} continues {from} trials, the state holds {}",
                i + 1,
                trials.len()
            )));
        }
        match rec["told"].take() {
            serde_json::Value::Array(t) => trials.extend(t),
            _ => return Err(bad(format!("record {} has no trials list", i + 1))),
        }
        for k in [
            "budget",
            "rng",
            "strategy_state",
            "pending",
            "next_id",
            "spent",
            "stop",
            "cached_streak",
        ] {
            v[k] = rec[k].take();
        }
        seq = rs;
        v["seq"] = seq.into();
    }
    Ok(v)
}

/// One journal line `<len> <fnv64-hex> <json>` (without its newline), verified.
fn parse_record(line: &[u8]) -> Option<serde_json::Value> {
    let mut parts = line.splitn(3, |&b| b == b' ');
    let len: usize = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
    let hash = u64::from_str_radix(std::str::from_utf8(parts.next()?).ok()?, 16).ok()?;
    let json = parts.next()?;
    if json.len() != len || checkpoint::fnv1a64(json) != hash {
        return None;
    }
    serde_json::from_slice(json).ok()
}

/// The open journal of a running search.
struct Journal {
    file: Option<fs::File>,
    bytes: u64,
    snapshot_bytes: u64,
    told_at: usize,
    last_sync: Instant,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

struct Job<A> {
    id: u64,
    arch: A,
    fidelity: u32,
    seed: u64,
    deadline: Option<Instant>,
    ticket: Option<String>,
}

enum EvalMsg {
    Done(u64, Finished),
    Fatal(u64, String),
    Cut(u64, String),
    /// A remote executor submitted the trial under this ticket.
    Ticket(u64, String),
}

/// One trial evaluated as the loop evaluates it locally (no deadline): what `nas eval` runs.
pub(crate) fn evaluate_trial<A, E: Evaluator<A> + ?Sized>(
    evaluator: &E,
    arch: &A,
    fidelity: u32,
    id: u64,
    seed: u64,
) -> TrialOutcome {
    let job = Job {
        id,
        arch,
        fidelity,
        seed,
        deadline: None,
        ticket: None,
    };
    match evaluate_one(evaluator, &job) {
        EvalMsg::Done(_, f) => TrialOutcome::Finished(f),
        EvalMsg::Fatal(_, r) | EvalMsg::Cut(_, r) | EvalMsg::Ticket(_, r) => TrialOutcome::Fatal(r),
    }
}

fn evaluate_one<A, B: std::borrow::Borrow<A>, E: Evaluator<A> + ?Sized>(
    evaluator: &E,
    job: &Job<B>,
) -> EvalMsg {
    let started_unix_ms = now_ms();
    let t0 = Instant::now();
    let req = EvalRequest {
        arch: job.arch.borrow(),
        fidelity: job.fidelity,
        trial_id: job.id,
        seed: job.seed,
        deadline: job.deadline,
    };
    let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| evaluator.evaluate(&req)));
    let wall_time_s = t0.elapsed().as_secs_f64();
    let finished_unix_ms = now_ms();
    let (outcome, cost) = match res {
        Ok(Ok(m)) if !m.valid_accuracy.is_finite() => (
            Outcome::Failed {
                reason: format!("non-finite accuracy {}", m.valid_accuracy),
            },
            m.cost,
        ),
        Ok(Ok(m)) => {
            let c = m.cost;
            (Outcome::Ok(m), c)
        }
        Ok(Err(EvalError::Failed { reason, cost })) => (Outcome::Failed { reason }, cost),
        Ok(Err(EvalError::Fatal(reason))) => return EvalMsg::Fatal(job.id, reason),
        Ok(Err(EvalError::Cut { reason })) => return EvalMsg::Cut(job.id, reason),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            (
                Outcome::Failed {
                    reason: format!("evaluator panicked: {msg}"),
                },
                0.0,
            )
        }
    };
    EvalMsg::Done(
        job.id,
        Finished {
            outcome,
            cost,
            started_unix_ms,
            finished_unix_ms,
            wall_time_s,
        },
    )
}

/// Where evaluations run: inline on the calling thread, on worker threads, or through a
/// remote executor.
enum Exec<'e, A, E: ?Sized> {
    Inline {
        evaluator: &'e E,
        queue: VecDeque<Job<A>>,
    },
    Threads {
        jobs: Option<mpsc::Sender<Job<A>>>,
        results: mpsc::Receiver<EvalMsg>,
    },
    Remote {
        exec: &'e mut dyn RemoteExecutor,
        evaluator_id: String,
    },
}

impl<A: Serialize, E: Evaluator<A> + ?Sized> Exec<'_, A, E> {
    fn dispatch(&mut self, job: Job<A>) -> Result<()> {
        match self {
            Exec::Inline { queue, .. } => queue.push_back(job),
            Exec::Threads { jobs, .. } => {
                if let Some(tx) = jobs {
                    let _ = tx.send(job);
                }
            }
            Exec::Remote { exec, evaluator_id } => exec.submit(RemoteJob {
                id: job.id,
                arch: serde_json::to_value(&job.arch)
                    .map_err(|e| SearchError::Serde(e.to_string()))?,
                fidelity: job.fidelity,
                seed: job.seed,
                evaluator_id: evaluator_id.clone(),
                ticket: job.ticket,
            })?,
        }
        Ok(())
    }
    fn next(&mut self) -> Result<Option<EvalMsg>> {
        Ok(match self {
            Exec::Inline { evaluator, queue } => {
                queue.pop_front().map(|j| evaluate_one(*evaluator, &j))
            }
            Exec::Threads { results, .. } => results.recv().ok(),
            Exec::Remote { exec, .. } => Some(match exec.next_event()? {
                RemoteEvent::Submitted { id, ticket } => EvalMsg::Ticket(id, ticket),
                RemoteEvent::Done { id, finished } => EvalMsg::Done(id, finished),
                RemoteEvent::Fatal { id, reason } => EvalMsg::Fatal(id, reason),
            }),
        })
    }
}

struct Driver<'a, S: SearchSpace, E: ?Sized> {
    space: &'a S,
    strategy: &'a mut dyn Strategy<S>,
    config: &'a SearchConfig,
    st: SearchState<S::Arch>,
    seen: HashMap<(String, u32), u64>,
    started: Instant,
    wall_before: f64,
    observer: &'a mut dyn FnMut(&Trial<S::Arch>),
    journal: Journal,
    /// When the wall-time budget runs out (handed to evaluators).
    deadline: Option<Instant>,
    /// Jobs dispatched and not yet answered.
    outstanding: usize,
    cut: Vec<(u64, String)>,
    _e: std::marker::PhantomData<fn(&E)>,
}

impl<S: SearchSpace, E: Evaluator<S::Arch> + ?Sized> Driver<'_, S, E> {
    fn wall(&self) -> f64 {
        self.wall_before + self.started.elapsed().as_secs_f64()
    }

    fn budget_stop(&self) -> Option<StopReason> {
        let b = &self.st.budget;
        let in_flight = self
            .st
            .pending
            .iter()
            .filter(|p| p.cached_from.is_none())
            .count() as u64;
        if let Some(n) = b.max_evaluations
            && self.st.spent.evaluations + in_flight >= n
        {
            return Some(StopReason::Evaluations);
        }
        if let Some(c) = b.max_cost
            && self.st.spent.cost >= c
        {
            return Some(StopReason::Cost);
        }
        if let Some(w) = b.max_wall_time_s
            && self.wall() >= w
        {
            return Some(StopReason::WallTime);
        }
        None
    }

    fn fill(&mut self, exec: &mut Exec<'_, S::Arch, E>) -> Result<()> {
        while self.st.stop.is_none() && self.st.pending.len() < self.config.workers {
            if let Some(r) = self.budget_stop() {
                self.st.stop = Some(r);
                break;
            }
            let cand = match self.strategy.ask(self.space, &mut self.st.rng)? {
                Ask::Done => {
                    self.st.stop = Some(StopReason::StrategyDone);
                    break;
                }
                Ask::Wait => break,
                Ask::Evaluate(c) => c,
            };
            self.space.validate(&cand.arch).map_err(|e| {
                SearchError::strategy(
                    self.strategy.name(),
                    format!("proposed an invalid architecture: {e}"),
                )
            })?;
            let id = self.st.next_id;
            self.st.next_id += 1;
            let mut cached_from = None;
            if self.config.skip_equivalent {
                let key = (self.space.canonical(&cand.arch), cand.fidelity);
                match self.seen.get(&key) {
                    Some(&orig) => cached_from = Some(orig),
                    None => {
                        self.seen.insert(key, id);
                    }
                }
            }
            if cached_from.is_some() {
                self.st.cached_streak += 1;
                if self.st.cached_streak >= MAX_CACHED_STREAK {
                    self.st.stop = Some(StopReason::OnlyEquivalents);
                }
            } else {
                self.st.cached_streak = 0;
                self.outstanding += 1;
                exec.dispatch(Job {
                    id,
                    arch: cand.arch.clone(),
                    fidelity: cand.fidelity,
                    seed: trial_seed(self.config.seed, id),
                    deadline: self.deadline,
                    ticket: None,
                })?;
            }
            self.st.pending.push_back(Pending {
                id,
                arch: cand.arch,
                fidelity: cand.fidelity,
                cached_from,
                result: None,
                ticket: None,
            });
        }
        Ok(())
    }

    /// Tells every ready candidate at the head of the queue, asking after each tell.
    fn tell_ready(&mut self, exec: &mut Exec<'_, S::Arch, E>) -> Result<()> {
        loop {
            let ready = match self.st.pending.front() {
                Some(p) => p.result.is_some() || p.cached_from.is_some(),
                None => false,
            };
            if !ready {
                return Ok(());
            }
            let p = self.st.pending.pop_front().expect("front exists");
            let trial = match (p.cached_from, p.result) {
                (Some(orig), _) => {
                    let o = self.st.history.trials.get(orig as usize).ok_or_else(|| {
                        SearchError::strategy(
                            self.strategy.name(),
                            "cached trial refers to an unknown trial",
                        )
                    })?;
                    let t = now_ms();
                    Trial {
                        id: p.id,
                        arch: p.arch,
                        fidelity: p.fidelity,
                        outcome: o.outcome.clone(),
                        cost: 0.0,
                        cached_from: Some(orig),
                        started_unix_ms: t,
                        finished_unix_ms: t,
                        wall_time_s: 0.0,
                    }
                }
                (None, Some(f)) => Trial {
                    id: p.id,
                    arch: p.arch,
                    fidelity: p.fidelity,
                    outcome: f.outcome,
                    cost: f.cost,
                    cached_from: None,
                    started_unix_ms: f.started_unix_ms,
                    finished_unix_ms: f.finished_unix_ms,
                    wall_time_s: f.wall_time_s,
                },
                (None, None) => unreachable!("checked ready above"),
            };
            self.strategy.tell(self.space, &trial)?;
            if trial.cached_from.is_none() {
                self.st.spent.evaluations += 1;
                self.st.spent.cost += trial.cost;
            }
            (self.observer)(&trial);
            self.st.history.trials.push(trial);
            self.fill(exec)?;
        }
    }

    /// Records the state at a save point: a journal record (constant size per trial), or a
    /// whole snapshot when `snapshot` is asked for, no journal is open yet, or the journal has
    /// outgrown the last snapshot. Kill-safe: the snapshot is replaced atomically, a record is
    /// one write of one line, and a reader ignores a torn last record.
    fn save(&mut self, snapshot: bool) -> Result<()> {
        let Some(path) = &self.config.checkpoint else {
            return Ok(());
        };
        self.st.strategy_state = self.strategy.save_state()?;
        self.st.spent.wall_time_s = self.wall();
        self.st.seq += 1;
        let j = &mut self.journal;
        let jpath = journal_path(path);
        let io = |e| SearchError::io(&jpath, e);
        match &mut j.file {
            Some(f) if !snapshot && j.bytes < j.snapshot_bytes.max(MIN_JOURNAL_BYTES) => {
                let rec = JournalRecordRef {
                    seq: self.st.seq,
                    from: j.told_at as u64,
                    told: &self.st.history.trials[j.told_at..],
                    budget: &self.st.budget,
                    rng: &self.st.rng,
                    strategy_state: &self.st.strategy_state,
                    pending: &self.st.pending,
                    next_id: self.st.next_id,
                    spent: &self.st.spent,
                    stop: &self.st.stop,
                    cached_streak: self.st.cached_streak,
                };
                let json =
                    serde_json::to_vec(&rec).map_err(|e| SearchError::Serde(e.to_string()))?;
                let mut line =
                    format!("{} {:016x} ", json.len(), checkpoint::fnv1a64(&json)).into_bytes();
                line.extend_from_slice(&json);
                line.push(b'\n');
                f.write_all(&line).map_err(io)?;
                j.bytes += line.len() as u64;
                // A kill loses nothing written; fsync at most once a second bounds what a
                // power cut can take.
                if j.last_sync.elapsed().as_secs_f64() >= 1.0 {
                    f.sync_data().map_err(io)?;
                    j.last_sync = Instant::now();
                }
            }
            _ => {
                let json =
                    serde_json::to_vec(&self.st).map_err(|e| SearchError::Serde(e.to_string()))?;
                checkpoint::write_atomic(path, &json)?;
                // Records up to this save point are in the snapshot: start an empty journal
                // (a kill before the truncation leaves records the reader skips by number).
                let f = match j.file.take() {
                    Some(f) => f,
                    None => fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&jpath)
                        .map_err(io)?,
                };
                f.set_len(0).map_err(io)?;
                j.file = Some(f);
                j.bytes = 0;
                j.snapshot_bytes = json.len() as u64;
                j.last_sync = Instant::now();
            }
        }
        j.told_at = self.st.history.trials.len();
        Ok(())
    }

    fn run(&mut self, exec: &mut Exec<'_, S::Arch, E>) -> Result<()> {
        for p in &self.st.pending {
            if p.result.is_none() && p.cached_from.is_none() {
                self.outstanding += 1;
                exec.dispatch(Job {
                    id: p.id,
                    arch: p.arch.clone(),
                    fidelity: p.fidelity,
                    seed: trial_seed(self.config.seed, p.id),
                    deadline: self.deadline,
                    ticket: p.ticket.clone(),
                })?;
            }
        }
        {
            let _g = persist_guard();
            self.tell_ready(exec)?;
            self.fill(exec)?;
            self.save(true)?;
        }
        loop {
            self.tell_ready(exec)?;
            if self.st.pending.is_empty() {
                if self.st.stop.is_none() {
                    self.st.stop = Some(StopReason::StrategyStuck);
                }
                break;
            }
            if self.outstanding == 0 {
                // Only after cuts: the head of the queue will get no result this session.
                break;
            }
            let Some(msg) = exec.next()? else {
                return Err(SearchError::Config(
                    "all workers stopped unexpectedly".into(),
                ));
            };
            match msg {
                EvalMsg::Cut(id, reason) => {
                    // No result: the trial stays pending (saved as such) and the search stops
                    // asking; the other jobs in flight are cut the same way.
                    self.outstanding -= 1;
                    self.cut.push((id, reason));
                    self.st.stop = Some(StopReason::WallTime);
                }
                EvalMsg::Fatal(id, reason) => {
                    self.outstanding -= 1;
                    let _g = persist_guard();
                    self.save(true)?;
                    return Err(SearchError::EvaluatorFatal { trial: id, reason });
                }
                EvalMsg::Ticket(id, ticket) => {
                    // Saved at once: a search killed from here on finds the job on resume.
                    let _g = persist_guard();
                    if let Some(p) = self.st.pending.iter_mut().find(|p| p.id == id) {
                        p.ticket = Some(ticket);
                    }
                    self.save(false)?;
                }
                EvalMsg::Done(id, f) => {
                    // Telling (the observer writes the trial's event) and saving happen under
                    // the persist guard: a signal handler never exits between the two.
                    let _g = persist_guard();
                    self.outstanding -= 1;
                    if let Some(p) = self.st.pending.iter_mut().find(|p| p.id == id) {
                        p.result = Some(f);
                    }
                    self.tell_ready(exec)?;
                    self.save(false)?;
                }
            }
        }
        let _g = persist_guard();
        self.st.spent.wall_time_s = self.wall();
        self.save(true)
    }
}

fn check_meta(path: &Path, saved: &SearchMeta, want: &SearchMeta) -> Result<()> {
    let mut diffs = Vec::new();
    if saved.space != want.space {
        diffs.push(format!(
            "space {:?} (this search: {:?})",
            saved.space, want.space
        ));
    }
    if saved.strategy != want.strategy {
        diffs.push(format!(
            "strategy {:?} (this search: {:?})",
            saved.strategy, want.strategy
        ));
    } else if saved.strategy_config != want.strategy_config {
        diffs.push(format!(
            "strategy settings {} (this search: {})",
            saved.strategy_config, want.strategy_config
        ));
    }
    if saved.evaluator != want.evaluator {
        diffs.push(format!(
            "evaluator {:?} (this search: {:?})",
            saved.evaluator, want.evaluator
        ));
    }
    if saved.seed != want.seed {
        diffs.push(format!("seed {} (this search: {})", saved.seed, want.seed));
    }
    if saved.workers != want.workers {
        diffs.push(format!(
            "workers {} (this search: {})",
            saved.workers, want.workers
        ));
    }
    if saved.skip_equivalent != want.skip_equivalent {
        diffs.push(format!(
            "skip_equivalent {} (this search: {})",
            saved.skip_equivalent, want.skip_equivalent
        ));
    }
    if diffs.is_empty() {
        Ok(())
    } else {
        Err(SearchError::Checkpoint {
            path: path.to_path_buf(),
            problem: format!(
                "written by a different search: {}; refusing to resume",
                diffs.join("; ")
            ),
        })
    }
}

/// Loads and validates a checkpoint for `meta` without running anything.
pub fn load_checkpoint<A: Serialize + DeserializeOwned>(
    path: &Path,
    meta: &SearchMeta,
) -> Result<SearchState<A>> {
    load_checkpoint_for(path, meta, false)
}

/// [`load_checkpoint`], accepting a checkpoint written with fewer workers than `meta`'s when
/// `more_workers` is set (see [`SearchConfig::more_workers_on_resume`]); the state returned
/// then carries the new number.
pub fn load_checkpoint_for<A: Serialize + DeserializeOwned>(
    path: &Path,
    meta: &SearchMeta,
    more_workers: bool,
) -> Result<SearchState<A>> {
    let v = read_state_value(path)?;
    let m: SearchMeta =
        serde_json::from_value(v["meta"].clone()).map_err(|e| SearchError::Checkpoint {
            path: path.to_path_buf(),
            problem: format!("not a search state: {e}"),
        })?;
    let mut want = meta.clone();
    if more_workers && m.workers < want.workers {
        want.workers = m.workers;
    }
    check_meta(path, &m, &want)?;
    let mut st: SearchState<A> =
        serde_json::from_value(v).map_err(|e| SearchError::Checkpoint {
            path: path.to_path_buf(),
            problem: format!("state does not decode for this space: {e}"),
        })?;
    check_meta(path, &st.meta, &want)?;
    st.meta.workers = meta.workers;
    if st
        .history
        .trials
        .iter()
        .enumerate()
        .any(|(i, t)| t.id != i as u64)
        || st
            .pending
            .iter()
            .enumerate()
            .any(|(i, p)| p.id != st.history.trials.len() as u64 + i as u64)
        || st.next_id != (st.history.trials.len() + st.pending.len()) as u64
    {
        return Err(SearchError::Checkpoint {
            path: path.to_path_buf(),
            problem: "inconsistent trial numbering".into(),
        });
    }
    Ok(st)
}

/// Checks the settings [`run_search`] would refuse (workers, budget limits), writing nothing.
pub fn check_config(config: &SearchConfig) -> Result<()> {
    if config.workers == 0 {
        return Err(SearchError::Config("workers must be at least 1".into()));
    }
    let b = &config.budget;
    if b.max_cost.is_some_and(|c| c.is_nan() || c < 0.0)
        || b.max_wall_time_s.is_some_and(|w| w.is_nan() || w < 0.0)
    {
        return Err(SearchError::Config(format!(
            "budget limits must be non-negative numbers: {b:?}"
        )));
    }
    Ok(())
}

/// What identifies the search of `strategy` and `evaluator` over `space` with `config` (what
/// a checkpoint must match to be resumed).
pub fn search_meta<S, E>(
    space: &S,
    strategy: &dyn Strategy<S>,
    evaluator: &E,
    config: &SearchConfig,
) -> SearchMeta
where
    S: SearchSpace,
    E: Evaluator<S::Arch> + ?Sized,
{
    SearchMeta {
        space: space.name().to_string(),
        strategy: strategy.name().to_string(),
        strategy_config: strategy.config(),
        evaluator: evaluator.name(),
        seed: config.seed,
        workers: config.workers,
        skip_equivalent: config.skip_equivalent,
    }
}

/// Runs a search (see the module docs for determinism and checkpoints).
pub fn run_search<S, E>(
    space: &S,
    strategy: &mut dyn Strategy<S>,
    evaluator: &E,
    config: &SearchConfig,
) -> Result<SearchOutcome<S::Arch>>
where
    S: SearchSpace,
    E: Evaluator<S::Arch> + ?Sized,
{
    run_search_observed(space, strategy, evaluator, config, &mut |_| {})
}

/// [`run_search`] calling `observer` with each trial as it is told (for progress displays).
pub fn run_search_observed<S, E>(
    space: &S,
    strategy: &mut dyn Strategy<S>,
    evaluator: &E,
    config: &SearchConfig,
    observer: &mut dyn FnMut(&Trial<S::Arch>),
) -> Result<SearchOutcome<S::Arch>>
where
    S: SearchSpace,
    E: Evaluator<S::Arch> + ?Sized,
{
    check_config(config)?;
    let meta = search_meta(space, strategy, evaluator, config);
    let mut resumed = false;
    let mut st = match &config.checkpoint {
        Some(path) if path.exists() => {
            let st = load_checkpoint_for::<S::Arch>(path, &meta, config.more_workers_on_resume)?;
            strategy
                .load_state(st.strategy_state.clone())
                .map_err(|e| SearchError::Checkpoint {
                    path: path.clone(),
                    problem: format!("strategy state does not load: {e}"),
                })?;
            resumed = true;
            st
        }
        _ => SearchState {
            meta: meta.clone(),
            budget: config.budget.clone(),
            rng: ChaCha8Rng::seed_from_u64(config.seed),
            strategy_state: serde_json::Value::Null,
            history: History::default(),
            pending: VecDeque::new(),
            next_id: 0,
            spent: Spent::default(),
            stop: None,
            cached_streak: 0,
            seq: 0,
        },
    };
    // A resume may extend the budget: budget stops are re-checked.
    st.budget = config.budget.clone();
    if matches!(
        st.stop,
        Some(StopReason::Evaluations | StopReason::Cost | StopReason::WallTime)
    ) {
        st.stop = None;
    }
    let mut seen = HashMap::new();
    if config.skip_equivalent {
        let all = st
            .history
            .trials
            .iter()
            .map(|t| (t.id, &t.arch, t.fidelity, t.cached_from))
            .chain(
                st.pending
                    .iter()
                    .map(|p| (p.id, &p.arch, p.fidelity, p.cached_from)),
            );
        for (id, arch, fid, cached) in all {
            if cached.is_none() {
                seen.entry((space.canonical(arch), fid)).or_insert(id);
            }
        }
    }
    let wall_before = st.spent.wall_time_s;
    let mut driver: Driver<'_, S, E> = Driver {
        space,
        strategy,
        config,
        st,
        seen,
        started: Instant::now(),
        wall_before,
        observer,
        journal: Journal {
            file: None,
            bytes: 0,
            snapshot_bytes: 0,
            told_at: 0,
            last_sync: Instant::now(),
        },
        deadline: config.budget.max_wall_time_s.map(|w| {
            Instant::now() + std::time::Duration::from_secs_f64((w - wall_before).clamp(0.0, 1e9))
        }),
        outstanding: 0,
        cut: Vec::new(),
        _e: std::marker::PhantomData,
    };
    if let Some(RemoteHandle(remote)) = &config.executor {
        let mut guard = remote
            .lock()
            .map_err(|_| SearchError::Executor("the trial executor was poisoned".into()))?;
        let mut exec: Exec<'_, S::Arch, E> = Exec::Remote {
            exec: &mut *guard,
            evaluator_id: evaluator.name(),
        };
        driver.run(&mut exec)?;
    } else if config.workers == 1 {
        let mut exec = Exec::Inline {
            evaluator,
            queue: VecDeque::new(),
        };
        driver.run(&mut exec)?;
    } else {
        let (job_tx, job_rx) = mpsc::channel::<Job<S::Arch>>();
        let (res_tx, res_rx) = mpsc::channel::<EvalMsg>();
        let job_rx = Mutex::new(job_rx);
        // One thread budget: the workers split the kernel threads among them.
        let share = nas_tensor::threads::share_for(config.workers);
        std::thread::scope(|scope| -> Result<()> {
            for _ in 0..config.workers {
                let res_tx = res_tx.clone();
                let job_rx = &job_rx;
                scope.spawn(move || {
                    nas_tensor::threads::set_thread_budget(share);
                    loop {
                        let job = match job_rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        let Ok(job) = job else { return };
                        if res_tx.send(evaluate_one(evaluator, &job)).is_err() {
                            return;
                        }
                    }
                });
            }
            drop(res_tx);
            let mut exec: Exec<'_, S::Arch, E> = Exec::Threads {
                jobs: Some(job_tx),
                results: res_rx,
            };
            let r = driver.run(&mut exec);
            if let Exec::Threads { jobs, .. } = &mut exec {
                jobs.take();
            }
            r
        })?;
    }
    let stop = driver.st.stop.unwrap_or(StopReason::StrategyStuck);
    Ok(SearchOutcome {
        history: driver.st.history,
        spent: driver.st.spent,
        stop,
        resumed,
        cut: driver.cut,
    })
}
