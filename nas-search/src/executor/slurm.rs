//! The Slurm executor: trials as tasks of Slurm job arrays.
//!
//! Everything goes through the search's output directory, which must be on a file system the
//! compute nodes share with the machine running `nas search`:
//!
//! * `trials/<id>/spec.json`: the [`TrialSpec`] of trial `id`, written atomically before
//!   anything is submitted;
//! * `trials/submit-<n>.sh` and `trials/submit-<n>.list`: the batch script of the `n`th
//!   submission and the trial directories its array tasks run (task `i` runs line `i + 1`:
//!   `PROGRAM eval --spec DIR/spec.json --out DIR`);
//! * `trials/<id>/result.json`: the [`TrialResult`] `nas eval` writes (atomically);
//! * `trials/slurm-<job>_<task>.out`: each task's standard output and error.
//!
//! Trials waiting to be submitted when the loop next waits for an event go out together as one
//! `sbatch --parsable --array=0-(n-1)` (the first `--workers` trials of a search; afterwards
//! usually one at a time, as results return). Every `poll` the executor lists the search's
//! tasks with `squeue -h -r --name=JOB_NAME` and reads the result files. A task that has left
//! the queue without a whole result for longer than `lost_after` (or whose result file is
//! corrupt: it is moved aside as `result.json.bad-<n>`) is *lost*: `scontrol show job` says
//! how it ended, and it is submitted again, up to `max_retries` times; after that the trial
//! is recorded as failed, with the reason and its log file. A result file is the only thing
//! that finishes a trial, so a trial is never recorded twice, and a task that ran twice (a
//! retry while the first run was still alive) writes the same result.
//!
//! Timeouts: every Slurm command is killed after `command_timeout` (an error after three
//! failed `sbatch` attempts or `max_poll_failures` failed `squeue` calls in a row); the
//! executor waits for a trial as long as Slurm keeps it queued or running (`--slurm-time`
//! bounds a running task; a pending one waits for the cluster). Dropping the executor, and an
//! interrupt of `nas search` ([`crate::outdir::run_interrupt_hooks`]), cancels the tasks still
//! in flight with `scancel`; a search killed outright leaves them running, and its resume
//! watches them again (their ids are in the checkpoint).

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
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

/// Settings of the Slurm executor.
#[derive(Debug, Clone, PartialEq)]
pub struct SlurmSettings {
    /// `--partition` of every submission (`None`: the cluster's default).
    pub partition: Option<String>,
    /// `--time` of every task (`None`: the partition's default).
    pub time: Option<String>,
    /// More `sbatch` arguments (`--slurm-args`, split on white space).
    pub args: Vec<String>,
    /// How often a lost task is submitted again before its trial is recorded as failed.
    pub max_retries: u32,
    /// Time between two looks at the queue and the result files.
    pub poll: Duration,
    /// How long a task may be out of the queue without a result before it counts as lost
    /// (a shared file system may show a new file late).
    pub lost_after: Duration,
    /// Longest a Slurm command may run.
    pub command_timeout: Duration,
    /// Consecutive failed `squeue` calls before the search stops with an error.
    pub max_poll_failures: u32,
}

impl Default for SlurmSettings {
    /// Two retries, a look every 5 s, lost after 60 s out of the queue, commands killed after
    /// 60 s, 10 failed `squeue` calls in a row. `NAS_SLURM_POLL_MS` and `NAS_SLURM_LOST_MS`
    /// override the two intervals (tests use a fake Slurm that answers in milliseconds).
    fn default() -> Self {
        let ms = |var: &str, default: u64| {
            Duration::from_millis(
                std::env::var(var)
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(default),
            )
        };
        SlurmSettings {
            partition: None,
            time: None,
            args: Vec::new(),
            max_retries: 2,
            poll: ms("NAS_SLURM_POLL_MS", 5_000),
            lost_after: ms("NAS_SLURM_LOST_MS", 60_000),
            command_timeout: Duration::from_secs(60),
            max_poll_failures: 10,
        }
    }
}

/// The commands the executor runs.
const COMMANDS: [&str; 4] = ["sbatch", "squeue", "scontrol", "scancel"];

impl SlurmSettings {
    /// Checks the settings and that the Slurm commands are on `PATH`.
    pub fn check(&self) -> Result<()> {
        for (flag, v) in [
            ("--slurm-partition", &self.partition),
            ("--slurm-time", &self.time),
        ] {
            if v.as_deref().is_some_and(|v| v.trim().is_empty()) {
                return Err(SearchError::Setting(format!("{flag} must not be empty")));
            }
        }
        for cmd in COMMANDS {
            if find_on_path(cmd).is_none() {
                return Err(SearchError::Executor(format!(
                    "--executor slurm: `{cmd}` was not found on PATH ({}); run the search on a \
                     machine that submits Slurm jobs, or use --executor local",
                    std::env::var("PATH").unwrap_or_default()
                )));
            }
        }
        // Partition, time and extra arguments are validated by Slurm itself before anything is
        // written (`sbatch --test-only` submits nothing).
        let options = self.sbatch_options();
        if !options.is_empty() {
            let mut args = vec!["--test-only".to_string()];
            args.extend(options);
            args.push("--wrap=true".into());
            let r = run_command("sbatch", &args, self.command_timeout)?;
            if !r.ok {
                return Err(SearchError::Executor(format!(
                    "--executor slurm: sbatch refuses these settings ({}): {}",
                    args[1..args.len() - 1].join(" "),
                    r.stderr.trim()
                )));
            }
        }
        Ok(())
    }

    /// The sbatch options these settings add to every submission.
    fn sbatch_options(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(p) = &self.partition {
            args.push(format!("--partition={p}"));
        }
        if let Some(t) = &self.time {
            args.push(format!("--time={t}"));
        }
        args.extend(self.args.iter().cloned());
        args
    }
}

/// The executable `name` in a directory of `PATH`, if any.
fn find_on_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// The output of a command run with a time limit.
struct Ran {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// Runs `cmd args` with its output captured, killed after `timeout`.
fn run_command(cmd: &str, args: &[String], timeout: Duration) -> Result<Ran> {
    let fail = |e: String| SearchError::Executor(format!("slurm: `{cmd}`: {e}"));
    let mut child = Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(e.to_string()))?;
    // Readers on threads (a full pipe must not stall the command); their text is awaited a
    // bounded time, so a background process that keeps a pipe open cannot hang the search.
    let read = |mut r: Box<dyn std::io::Read + Send>| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = r.read_to_end(&mut s);
            let _ = tx.send(String::from_utf8_lossy(&s).into_owned());
        });
        rx
    };
    let out = read(Box::new(child.stdout.take().expect("piped")));
    let err = read(Box::new(child.stderr.take().expect("piped")));
    let start = Instant::now();
    let status = loop {
        match child.try_wait().map_err(|e| fail(e.to_string()))? {
            Some(s) => break s,
            None if start.elapsed() >= timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(fail(format!(
                    "no answer within {} s (killed)",
                    timeout.as_secs_f64()
                )));
            }
            None => std::thread::sleep(Duration::from_millis(10)),
        }
    };
    let text = |rx: std::sync::mpsc::Receiver<String>| {
        rx.recv_timeout(Duration::from_secs(5)).unwrap_or_default()
    };
    Ok(Ran {
        ok: status.success(),
        stdout: text(out),
        stderr: text(err),
    })
}

/// Quotes `s` for a POSIX shell.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// A trial the executor is responsible for.
struct Task {
    id: u64,
    dir: PathBuf,
    spec_fnv: u64,
    /// The array task running it (`JOB_TASK`), once submitted.
    ticket: Option<String>,
    /// Submissions made this session.
    attempts: u32,
    /// Waiting for the next `sbatch`.
    queued: bool,
    /// Since when the task has been missing from the queue without a result.
    gone_since: Option<Instant>,
    /// What happened to earlier attempts.
    history: Vec<String>,
}

/// The Slurm executor (see the [module docs](self)).
pub struct SlurmExecutor {
    settings: SlurmSettings,
    program: PathBuf,
    template: SpecTemplate,
    trials_dir: PathBuf,
    job_name: String,
    tasks: BTreeMap<u64, Task>,
    ready: VecDeque<RemoteEvent>,
    submissions: u64,
    poll_failures: u32,
    /// Tickets in flight, shared with the interrupt hook that cancels them.
    live: Arc<Mutex<HashSet<String>>>,
    hook: u64,
}

impl SlurmExecutor {
    /// An executor for the search writing into `dir` (trials under `dir/trials`), running
    /// `program eval` on the nodes.
    pub fn new(
        settings: SlurmSettings,
        program: PathBuf,
        template: SpecTemplate,
        dir: &Path,
    ) -> Result<SlurmExecutor> {
        let dir = std::path::absolute(dir).map_err(|e| SearchError::io(dir, e))?;
        let trials_dir = dir.join("trials");
        let job_name = format!(
            "nas-{:08x}",
            fnv1a64(dir.to_string_lossy().as_bytes()) as u32
        );
        let live: Arc<Mutex<HashSet<String>>> = Arc::default();
        let (l, timeout) = (
            live.clone(),
            settings.command_timeout.min(Duration::from_secs(10)),
        );
        let hook = add_interrupt_hook(Box::new(move || {
            let ids: Vec<String> = l
                .lock()
                .map(|s| s.iter().cloned().collect())
                .unwrap_or_default();
            if !ids.is_empty() {
                let _ = run_command("scancel", &ids, timeout);
            }
        }));
        Ok(SlurmExecutor {
            settings,
            program,
            template,
            trials_dir,
            job_name,
            tasks: BTreeMap::new(),
            ready: VecDeque::new(),
            submissions: 0,
            poll_failures: 0,
            live,
            hook,
        })
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

    /// Submits every queued task as one job array.
    fn flush(&mut self) -> Result<()> {
        let queued: Vec<u64> = self
            .tasks
            .values()
            .filter(|t| t.queued)
            .map(|t| t.id)
            .collect();
        if queued.is_empty() {
            return Ok(());
        }
        // Continue the numbering of an earlier session's scripts.
        let mut n = self.submissions;
        while self.trials_dir.join(format!("submit-{n}.sh")).exists() {
            n += 1;
        }
        self.submissions = n + 1;
        let list = self.trials_dir.join(format!("submit-{n}.list"));
        let script = self.trials_dir.join(format!("submit-{n}.sh"));
        let lines: String = queued
            .iter()
            .map(|id| format!("{}\n", self.tasks[id].dir.display()))
            .collect();
        write_file_atomic(&list, lines.as_bytes())?;
        let body = format!(
            "#!/bin/sh\n# nas-rs: array task i runs the trial in line i + 1 of {list}.\nset -eu\n\
             d=$(sed -n \"$((SLURM_ARRAY_TASK_ID + 1))p\" {list})\n\
             exec {prog} eval --spec \"$d/{SPEC_FILE}\" --out \"$d\"\n",
            list = sh_quote(&list.to_string_lossy()),
            prog = sh_quote(&self.program.to_string_lossy()),
        );
        write_file_atomic(&script, body.as_bytes())?;
        let mut args = vec![
            "--parsable".to_string(),
            format!("--array=0-{}", queued.len() - 1),
            format!("--job-name={}", self.job_name),
            format!(
                "--output={}",
                self.trials_dir.join("slurm-%A_%a.out").display()
            ),
        ];
        args.extend(self.settings.sbatch_options());
        args.push(script.to_string_lossy().into_owned());
        let mut last = String::new();
        let mut job = None;
        for attempt in 0..3 {
            if attempt > 0 {
                std::thread::sleep(self.settings.poll.min(Duration::from_secs(5)));
            }
            match run_command("sbatch", &args, self.settings.command_timeout) {
                Ok(r) if r.ok => {
                    // `--parsable`: `JOBID` or `JOBID;CLUSTER`.
                    let id = r.stdout.trim().split(';').next().unwrap_or("").to_string();
                    if !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) {
                        job = Some(id);
                        break;
                    }
                    last = format!("answered {:?}, not a job id", r.stdout.trim());
                }
                Ok(r) => {
                    last = r.stderr.trim().to_string();
                    // A refused request (bad partition, bad time) will not pass on a retry.
                    if last.contains("invalid") || last.contains("Invalid") {
                        break;
                    }
                }
                Err(e) => last = e.to_string(),
            }
        }
        let job = job.ok_or_else(|| {
            SearchError::Executor(format!(
                "--executor slurm: sbatch refused the trials ({}): {last}",
                script.display()
            ))
        })?;
        for (i, id) in queued.iter().enumerate() {
            let ticket = format!("{job}_{i}");
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

    /// The array tasks of this search Slurm still lists (pending or running), or `None` when
    /// `squeue` did not answer.
    fn queue(&mut self) -> Result<Option<HashSet<String>>> {
        let args: Vec<String> = ["-h", "-r", "-o", "%i"]
            .iter()
            .map(|s| s.to_string())
            .chain([format!("--name={}", self.job_name)])
            .collect();
        let problem = match run_command("squeue", &args, self.settings.command_timeout) {
            Ok(r) if r.ok => {
                self.poll_failures = 0;
                return Ok(Some(
                    r.stdout.split_whitespace().map(str::to_string).collect(),
                ));
            }
            Ok(r) => r.stderr.trim().to_string(),
            Err(e) => e.to_string(),
        };
        self.poll_failures += 1;
        if self.poll_failures >= self.settings.max_poll_failures {
            return Err(SearchError::Executor(format!(
                "--executor slurm: squeue failed {} times in a row (last: {problem}); the \
                 search's state is saved: resume it when Slurm answers again",
                self.poll_failures
            )));
        }
        Ok(None)
    }

    /// How `ticket` ended, as `scontrol` tells it (best effort).
    fn how_it_ended(&self, ticket: &str) -> String {
        let args = ["show".to_string(), "job".into(), "-o".into(), ticket.into()];
        match run_command("scontrol", &args, self.settings.command_timeout) {
            Ok(r) if r.ok => {
                let fields: Vec<&str> = r
                    .stdout
                    .split_whitespace()
                    .filter(|f| {
                        ["JobState=", "Reason=", "ExitCode="]
                            .iter()
                            .any(|k| f.starts_with(k))
                    })
                    .collect();
                if fields.is_empty() {
                    "no state from scontrol".into()
                } else {
                    fields.join(" ")
                }
            }
            _ => "unknown to scontrol (ended a while ago)".into(),
        }
    }

    /// A task that ended without a usable result: submitted again, or its trial failed.
    fn lost(&mut self, id: u64, why: String) {
        let ticket = self.tasks[&id].ticket.clone().unwrap_or_default();
        self.set_live(&ticket, false);
        let ended = self.how_it_ended(&ticket);
        let log = self.trials_dir.join(format!("slurm-{ticket}.out"));
        let t = self.tasks.get_mut(&id).expect("task exists");
        t.history.push(format!(
            "task {ticket} {why} ({ended}; log {})",
            log.display()
        ));
        t.gone_since = None;
        if t.attempts <= self.settings.max_retries {
            t.queued = true;
        } else {
            let t = self.tasks.remove(&id).expect("task exists");
            self.ready.push_back(RemoteEvent::Done {
                id,
                finished: failed(format!(
                    "slurm: no result after {} submission(s): {}",
                    t.attempts,
                    t.history.join("; ")
                )),
            });
        }
    }

    /// The event of a result file, if the trial has one; a corrupt one is moved aside and the
    /// task counts as lost.
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

    /// One look at the queue and the result files.
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
        let queue = self.queue()?;
        for id in ids {
            if self.check_result(id) {
                continue;
            }
            let Some(queue) = &queue else { continue };
            let t = self.tasks.get_mut(&id).expect("task exists");
            let listed = t.ticket.as_ref().is_some_and(|k| queue.contains(k));
            if listed {
                t.gone_since = None;
                continue;
            }
            let since = *t.gone_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= self.settings.lost_after {
                // Read once more: the result may have appeared after the first look.
                if !self.check_result(id) {
                    self.lost(id, "left the queue without a result".into());
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

impl RemoteExecutor for SlurmExecutor {
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
        // is left as it is, so a task still running reads the file it was given.
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
        // A result already there (a search killed after the task finished, before it saved
        // the outcome): taken, nothing submitted.
        if !self.check_result(job.id) && resumed {
            // The recorded task is watched; one that is gone is submitted again (not counted
            // as a failure: the earlier session may have cancelled it).
            if let Some(t) = self.tasks.get_mut(&job.id) {
                t.attempts = 0;
                t.gone_since = Some(Instant::now() - self.settings.lost_after);
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
                return Err(SearchError::Executor(
                    "--executor slurm: asked for a result with no trial in flight".into(),
                ));
            }
            self.flush()?;
            if !self.ready.is_empty() {
                continue;
            }
            if !first {
                std::thread::sleep(self.settings.poll);
            }
            first = false;
            self.poll()?;
        }
    }
}

impl Drop for SlurmExecutor {
    fn drop(&mut self) {
        remove_interrupt_hook(self.hook);
        let ids: Vec<String> = self
            .live
            .lock()
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        if !ids.is_empty() {
            let _ = run_command("scancel", &ids, self.settings.command_timeout);
        }
    }
}
