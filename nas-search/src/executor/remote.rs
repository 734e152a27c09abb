//! What the remote executors share: trials handed to a scheduler and watched until their result
//! files arrive.
//!
//! A [`Tracker`] implements [`RemoteExecutor`] over a [`Scheduler`] (Slurm's commands, Ray's
//! jobs API): it writes each trial's [`TrialSpec`] to `DIR/trials/<id>/spec.json` (atomically,
//! before anything is submitted), has the scheduler submit the trials queued when the loop next
//! waits, and then, every [`Watch::poll`], asks the scheduler which of its tickets are still
//! queued or running and reads the result files. A trial is finished by a whole result file
//! only ([`read_result`]), so it is never recorded twice. A ticket the scheduler no longer runs
//! that has left no result for [`Watch::lost_after`] (a shared file system may show a new file
//! late), or whose result file is corrupt (moved aside as `result.json.bad-<n>`), is *lost*: the
//! trial is submitted again, up to [`Watch::max_retries`] times, and then recorded as failed,
//! naming every ticket, how it ended and its log. [`Watch::max_poll_failures`] failed looks in
//! a row stop the search with an error (its state is saved). The tickets in flight are
//! cancelled when the tracker is dropped and at an interrupt of `nas search`
//! ([`crate::outdir::run_interrupt_hooks`]).

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{
    RESULT_FILE, RemoteEvent, RemoteExecutor, RemoteJob, SPEC_FILE, SPEC_FORMAT, SpecTemplate,
    TrialOutcome, TrialSpec, read_result,
};
use crate::builder::write_file_atomic;
use crate::checkpoint::fnv1a64;
use crate::error::{Result, SearchError};
use crate::history::Outcome;
use crate::outdir::{add_interrupt_hook, remove_interrupt_hook};
use crate::search::Finished;

/// How a remote executor watches its trials.
#[derive(Debug, Clone, PartialEq)]
pub struct Watch {
    /// How often a lost trial is submitted again before it is recorded as failed.
    pub max_retries: u32,
    /// Time between two looks at the scheduler and the result files.
    pub poll: Duration,
    /// How long a ticket may be gone from the scheduler without a result before it counts as
    /// lost (a shared file system may show a new file late).
    pub lost_after: Duration,
    /// Failed looks at the scheduler in a row before the search stops with an error.
    pub max_poll_failures: u32,
}

impl Watch {
    /// Two retries, 10 failed looks in a row, and the two intervals from the environment
    /// variables `{prefix}_POLL_MS` and `{prefix}_LOST_MS` when they are set (tests run fake
    /// schedulers that answer in milliseconds), else `poll_ms` and `lost_ms`.
    pub fn from_env(prefix: &str, poll_ms: u64, lost_ms: u64) -> Watch {
        let ms = |var: String, default: u64| {
            Duration::from_millis(
                std::env::var(var)
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(default),
            )
        };
        Watch {
            max_retries: 2,
            poll: ms(format!("{prefix}_POLL_MS"), poll_ms),
            lost_after: ms(format!("{prefix}_LOST_MS"), lost_ms),
            max_poll_failures: 10,
        }
    }
}

/// Cancels tickets (called from the interrupt hook and at drop; must return in bounded time).
pub type Canceller = Arc<dyn Fn(&[String]) + Send + Sync>;

/// A scheduler the [`Tracker`] drives: Slurm, Ray.
pub trait Scheduler: Send {
    /// The executor's name (`--executor NAME`), in messages.
    fn name(&self) -> &'static str;
    /// What one ticket is called in messages (`task`, `job`).
    fn unit(&self) -> &'static str;
    /// What a look at the scheduler asks, in the error after failed looks (`squeue`).
    fn poll_source(&self) -> String;
    /// Submits the trials `(id, trial directory)`; returns their tickets, in order. An error
    /// stops the search (its state is saved).
    fn submit(&mut self, trials: &[(u64, PathBuf)]) -> Result<Vec<String>>;
    /// Of `tickets`, the ones the scheduler still queues or runs; `Err(problem)` when it did
    /// not answer.
    fn alive(&mut self, tickets: &[String]) -> std::result::Result<HashSet<String>, String>;
    /// How `ticket` ended, in words (best effort).
    fn how_it_ended(&mut self, ticket: &str) -> String;
    /// Where the output of `ticket`, which ran the trial in `dir`, is.
    fn log(&self, dir: &Path, ticket: &str) -> String;
    /// The function that cancels tickets.
    fn canceller(&self) -> Canceller;
}

/// A trial the tracker is responsible for.
struct Task {
    id: u64,
    dir: PathBuf,
    spec_fnv: u64,
    /// The scheduler's ticket, once submitted.
    ticket: Option<String>,
    /// Submissions made this session.
    attempts: u32,
    /// Waiting for the next submission.
    queued: bool,
    /// Since when the ticket has been gone from the scheduler without a result.
    gone_since: Option<Instant>,
    /// What happened to earlier attempts.
    history: Vec<String>,
}

/// A remote executor over a [`Scheduler`] (see the [module docs](self)).
pub struct Tracker<S: Scheduler> {
    sched: S,
    watch: Watch,
    template: SpecTemplate,
    trials_dir: PathBuf,
    tasks: BTreeMap<u64, Task>,
    ready: VecDeque<RemoteEvent>,
    poll_failures: u32,
    /// Tickets in flight, shared with the interrupt hook that cancels them.
    live: Arc<Mutex<HashSet<String>>>,
    cancel: Canceller,
    hook: u64,
}

/// The trials directory of the search writing into `dir`, as an absolute path (the trials run
/// elsewhere, in other working directories).
pub fn trials_dir(dir: &Path) -> Result<PathBuf> {
    let dir = std::path::absolute(dir).map_err(|e| SearchError::io(dir, e))?;
    Ok(dir.join("trials"))
}

/// A name for the jobs of the search writing into `trials_dir` (`nas-` and a hash of the path).
pub fn job_name(trials_dir: &Path) -> String {
    let dir = trials_dir.parent().unwrap_or(trials_dir);
    format!(
        "nas-{:08x}",
        fnv1a64(dir.to_string_lossy().as_bytes()) as u32
    )
}

impl<S: Scheduler> Tracker<S> {
    /// A tracker of the trials under `trials_dir` ([`trials_dir`]), submitted through `sched`.
    pub fn over(sched: S, watch: Watch, template: SpecTemplate, trials_dir: PathBuf) -> Self {
        let live: Arc<Mutex<HashSet<String>>> = Arc::default();
        let cancel = sched.canceller();
        let (l, c) = (live.clone(), cancel.clone());
        let hook = add_interrupt_hook(Box::new(move || {
            let ids: Vec<String> = l
                .lock()
                .map(|s| s.iter().cloned().collect())
                .unwrap_or_default();
            if !ids.is_empty() {
                c(&ids);
            }
        }));
        Tracker {
            sched,
            watch,
            template,
            trials_dir,
            tasks: BTreeMap::new(),
            ready: VecDeque::new(),
            poll_failures: 0,
            live,
            cancel,
            hook,
        }
    }

    fn set_live(&self, ticket: &str, on: bool) {
        if let Ok(mut l) = self.live.lock() {
            if on {
                l.insert(ticket.to_string());
            } else {
                l.remove(ticket);
            }
        }
    }

    /// Submits every queued trial.
    fn flush(&mut self) -> Result<()> {
        let queued: Vec<(u64, PathBuf)> = self
            .tasks
            .values()
            .filter(|t| t.queued)
            .map(|t| (t.id, t.dir.clone()))
            .collect();
        if queued.is_empty() {
            return Ok(());
        }
        let tickets = self.sched.submit(&queued)?;
        debug_assert_eq!(tickets.len(), queued.len());
        for ((id, _), ticket) in queued.iter().zip(tickets) {
            self.set_live(&ticket, true);
            let t = self.tasks.get_mut(id).expect("queued task exists");
            t.queued = false;
            t.attempts += 1;
            t.gone_since = None;
            t.ticket = Some(ticket.clone());
            self.ready
                .push_back(RemoteEvent::Submitted { id: *id, ticket });
        }
        Ok(())
    }

    /// A ticket that ended without a usable result: its trial is submitted again, or failed.
    fn lost(&mut self, id: u64, why: String) {
        let ticket = self.tasks[&id].ticket.clone().unwrap_or_default();
        self.set_live(&ticket, false);
        let ended = self.sched.how_it_ended(&ticket);
        let log = self.sched.log(&self.tasks[&id].dir, &ticket);
        let unit = self.sched.unit();
        let t = self.tasks.get_mut(&id).expect("task exists");
        t.history
            .push(format!("{unit} {ticket} {why} ({ended}; log {log})"));
        t.gone_since = None;
        if t.attempts <= self.watch.max_retries {
            t.queued = true;
        } else {
            let t = self.tasks.remove(&id).expect("task exists");
            self.ready.push_back(RemoteEvent::Done {
                id,
                finished: failed(format!(
                    "{}: no result after {} submission(s): {}",
                    self.sched.name(),
                    t.attempts,
                    t.history.join("; ")
                )),
            });
        }
    }

    /// The event of a result file, if the trial has one; a corrupt one is moved aside and the
    /// ticket counts as lost.
    fn check_result(&mut self, id: u64) -> bool {
        let t = &self.tasks[&id];
        let path = t.dir.join(RESULT_FILE);
        match read_result(&path, t.spec_fnv, id) {
            Ok(None) => false,
            Ok(Some(outcome)) => {
                let t = self.tasks.remove(&id).expect("task exists");
                if let Some(ticket) = &t.ticket {
                    self.set_live(ticket, false);
                }
                self.ready.push_back(match outcome {
                    TrialOutcome::Finished(finished) => RemoteEvent::Done { id, finished },
                    TrialOutcome::Fatal(reason) => RemoteEvent::Fatal { id, reason },
                });
                true
            }
            Err(e) => {
                let mut n = 0;
                while t.dir.join(format!("{RESULT_FILE}.bad-{n}")).exists() {
                    n += 1;
                }
                let aside = t.dir.join(format!("{RESULT_FILE}.bad-{n}"));
                let _ = std::fs::rename(&path, &aside);
                self.lost(
                    id,
                    format!("left a bad result ({e}; moved to {})", aside.display()),
                );
                true
            }
        }
    }

    /// The tickets the scheduler still runs, or `None` when it did not answer (an error after
    /// too many failures in a row).
    fn alive(&mut self, tickets: &[String]) -> Result<Option<HashSet<String>>> {
        let problem = match self.sched.alive(tickets) {
            Ok(set) => {
                self.poll_failures = 0;
                return Ok(Some(set));
            }
            Err(p) => p,
        };
        self.poll_failures += 1;
        if self.poll_failures >= self.watch.max_poll_failures {
            return Err(SearchError::Executor(format!(
                "--executor {}: {} failed {} times in a row (last: {problem}); the search's \
                 state is saved: resume it when it answers again",
                self.sched.name(),
                self.sched.poll_source(),
                self.poll_failures
            )));
        }
        Ok(None)
    }

    /// One look at the scheduler and the result files.
    fn poll(&mut self) -> Result<()> {
        let ids: Vec<u64> = self
            .tasks
            .values()
            .filter(|t| !t.queued)
            .map(|t| t.id)
            .collect();
        if ids.is_empty() {
            return Ok(());
        }
        let tickets: Vec<String> = ids
            .iter()
            .filter_map(|id| self.tasks[id].ticket.clone())
            .collect();
        let alive = self.alive(&tickets)?;
        for id in ids {
            if self.check_result(id) {
                continue;
            }
            let Some(alive) = &alive else { continue };
            let t = self.tasks.get_mut(&id).expect("task exists");
            if t.ticket.as_ref().is_some_and(|k| alive.contains(k)) {
                t.gone_since = None;
                continue;
            }
            let since = *t.gone_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= self.watch.lost_after {
                // Read once more: the result may have appeared after the first look.
                if !self.check_result(id) {
                    self.lost(id, "ended without a result".into());
                }
            }
        }
        Ok(())
    }
}

/// A failed trial's record (nothing was measured).
fn failed(reason: String) -> Finished {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    Finished {
        outcome: Outcome::Failed { reason },
        cost: 0.0,
        started_unix_ms: now,
        finished_unix_ms: now,
        wall_time_s: 0.0,
    }
}

impl<S: Scheduler> RemoteExecutor for Tracker<S> {
    fn submit(&mut self, job: RemoteJob) -> Result<()> {
        let dir = self.trials_dir.join(job.id.to_string());
        std::fs::create_dir_all(&dir).map_err(|e| SearchError::io(&dir, e))?;
        let spec = TrialSpec {
            format: SPEC_FORMAT.into(),
            template: self.template.clone(),
            evaluator_id: job.evaluator_id,
            trial: job.id,
            arch: job.arch,
            fidelity: job.fidelity,
            seed: job.seed,
        };
        let bytes =
            serde_json::to_vec_pretty(&spec).map_err(|e| SearchError::Serde(e.to_string()))?;
        let path = dir.join(SPEC_FILE);
        // The same trial of the same search writes the same bytes: an existing spec (a resume)
        // is left as it is, so a ticket still running reads the file it was given.
        if std::fs::read(&path).ok().as_deref() != Some(&bytes[..]) {
            write_file_atomic(&path, &bytes)?;
        }
        let resumed = job.ticket.is_some();
        if let Some(t) = &job.ticket {
            self.set_live(t, true);
        }
        self.tasks.insert(
            job.id,
            Task {
                id: job.id,
                dir,
                spec_fnv: fnv1a64(&bytes),
                queued: job.ticket.is_none(),
                ticket: job.ticket,
                attempts: u32::from(resumed),
                gone_since: None,
                history: Vec::new(),
            },
        );
        // A result already there (a search killed after the trial finished, before it saved
        // the outcome): taken, nothing submitted.
        if !self.check_result(job.id) && resumed {
            // The recorded ticket is watched; one that is gone is submitted again (not counted
            // as a failure: the earlier session may have cancelled it).
            if let Some(t) = self.tasks.get_mut(&job.id) {
                t.attempts = 0;
                let now = Instant::now();
                t.gone_since = Some(now.checked_sub(self.watch.lost_after).unwrap_or(now));
            }
        }
        Ok(())
    }

    fn next_event(&mut self) -> Result<RemoteEvent> {
        let mut first = true;
        loop {
            if let Some(e) = self.ready.pop_front() {
                return Ok(e);
            }
            if self.tasks.is_empty() {
                return Err(SearchError::Executor(format!(
                    "--executor {}: asked for a result with no trial in flight",
                    self.sched.name()
                )));
            }
            self.flush()?;
            if !self.ready.is_empty() {
                continue;
            }
            if !first {
                std::thread::sleep(self.watch.poll);
            }
            first = false;
            self.poll()?;
        }
    }
}

impl<S: Scheduler> Drop for Tracker<S> {
    fn drop(&mut self) {
        remove_interrupt_hook(self.hook);
        let ids: Vec<String> = self
            .live
            .lock()
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        if !ids.is_empty() {
            (self.cancel)(&ids);
        }
    }
}
