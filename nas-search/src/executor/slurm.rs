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
//! tasks with `squeue -h -r --name=JOB_NAME` and reads the result files; the bookkeeping
//! (results, lost tasks and their retries, cancelling) is the [`Tracker`]'s, shared with the
//! Ray executor. A lost task's end is told by `scontrol show job`. A task that ran twice (a
//! retry while the first run was still alive) writes the same result.
//!
//! Timeouts: every Slurm command is killed after `command_timeout` (an error after three
//! failed `sbatch` attempts or `max_poll_failures` failed `squeue` calls in a row); the
//! executor waits for a trial as long as Slurm keeps it queued or running (`--slurm-time`
//! bounds a running task; a pending one waits for the cluster). Dropping the executor, and an
//! interrupt of `nas search` ([`crate::outdir::run_interrupt_hooks`]), cancels the tasks still
//! in flight with `scancel`; a search killed outright leaves them running, and its resume
//! watches them again (their ids are in the checkpoint).

use std::collections::HashSet;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::remote::{self, Canceller, Scheduler, Tracker, Watch};
use super::{SPEC_FILE, SpecTemplate};
use crate::builder::write_file_atomic;
use crate::error::{Result, SearchError};

/// Settings of the Slurm executor.
#[derive(Debug, Clone, PartialEq)]
pub struct SlurmSettings {
    /// `--partition` of every submission (`None`: the cluster's default).
    pub partition: Option<String>,
    /// `--time` of every task (`None`: the partition's default).
    pub time: Option<String>,
    /// More `sbatch` arguments (`--slurm-args`, split on white space).
    pub args: Vec<String>,
    /// Longest a Slurm command may run.
    pub command_timeout: Duration,
    /// Retries, poll interval, when a task is lost, failed `squeue` calls tolerated in a row.
    pub watch: Watch,
}

impl Default for SlurmSettings {
    /// Two retries, a look every 5 s, lost after 60 s out of the queue, commands killed after
    /// 60 s, 10 failed `squeue` calls in a row. `NAS_SLURM_POLL_MS` and `NAS_SLURM_LOST_MS`
    /// override the two intervals (tests use a fake Slurm that answers in milliseconds).
    fn default() -> Self {
        SlurmSettings {
            partition: None,
            time: None,
            args: Vec::new(),
            command_timeout: Duration::from_secs(60),
            watch: Watch::from_env("NAS_SLURM", 5_000, 60_000),
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
pub(crate) fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The Slurm executor (see the [module docs](self)).
pub type SlurmExecutor = Tracker<Slurm>;

impl SlurmExecutor {
    /// An executor for the search writing into `dir` (trials under `dir/trials`), running
    /// `program eval` on the nodes.
    pub fn new(
        settings: SlurmSettings,
        program: PathBuf,
        template: SpecTemplate,
        dir: &Path,
    ) -> Result<SlurmExecutor> {
        let trials_dir = remote::trials_dir(dir)?;
        let watch = settings.watch.clone();
        let slurm = Slurm {
            job_name: remote::job_name(&trials_dir),
            settings,
            program,
            trials_dir: trials_dir.clone(),
            submissions: 0,
        };
        Ok(Tracker::over(slurm, watch, template, trials_dir))
    }
}

/// Slurm's commands as a [`Scheduler`]: job arrays, `squeue`, `scontrol`, `scancel`.
pub struct Slurm {
    settings: SlurmSettings,
    program: PathBuf,
    trials_dir: PathBuf,
    job_name: String,
    submissions: u64,
}

impl Scheduler for Slurm {
    fn name(&self) -> &'static str {
        "slurm"
    }

    fn unit(&self) -> &'static str {
        "task"
    }

    fn poll_source(&self) -> String {
        "squeue".into()
    }

    /// Submits the trials as one job array.
    fn submit(&mut self, trials: &[(u64, PathBuf)]) -> Result<Vec<String>> {
        // Continue the numbering of an earlier session's scripts.
        let mut n = self.submissions;
        while self.trials_dir.join(format!("submit-{n}.sh")).exists() {
            n += 1;
        }
        self.submissions = n + 1;
        let list = self.trials_dir.join(format!("submit-{n}.list"));
        let script = self.trials_dir.join(format!("submit-{n}.sh"));
        let lines: String = trials
            .iter()
            .map(|(_, dir)| format!("{}\n", dir.display()))
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
            format!("--array=0-{}", trials.len() - 1),
            format!("--job-name={}", self.job_name),
            format!(
                "--output={}",
                self.trials_dir.join("slurm-%A_%a.out").display()
            ),
        ];
        args.extend(self.settings.sbatch_options());
        args.push(script.to_string_lossy().into_owned());
        let mut last = String::new();
        for attempt in 0..3 {
            if attempt > 0 {
                std::thread::sleep(self.settings.watch.poll.min(Duration::from_secs(5)));
            }
            match run_command("sbatch", &args, self.settings.command_timeout) {
                Ok(r) if r.ok => {
                    // `--parsable`: `JOBID` or `JOBID;CLUSTER`.
                    let id = r.stdout.trim().split(';').next().unwrap_or("").to_string();
                    if !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) {
                        return Ok((0..trials.len()).map(|i| format!("{id}_{i}")).collect());
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
        Err(SearchError::Executor(format!(
            "--executor slurm: sbatch refused the trials ({}): {last}",
            script.display()
        )))
    }

    /// The array tasks of this search Slurm still lists (pending or running).
    fn alive(&mut self, _tickets: &[String]) -> std::result::Result<HashSet<String>, String> {
        let args: Vec<String> = ["-h", "-r", "-o", "%i"]
            .iter()
            .map(|s| s.to_string())
            .chain([format!("--name={}", self.job_name)])
            .collect();
        match run_command("squeue", &args, self.settings.command_timeout) {
            Ok(r) if r.ok => Ok(r.stdout.split_whitespace().map(str::to_string).collect()),
            Ok(r) => Err(r.stderr.trim().to_string()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// How `ticket` ended, as `scontrol` tells it.
    fn how_it_ended(&mut self, ticket: &str) -> String {
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

    fn log(&self, _dir: &Path, ticket: &str) -> String {
        self.trials_dir
            .join(format!("slurm-{ticket}.out"))
            .display()
            .to_string()
    }

    /// `scancel` (each call bounded by 10 s).
    fn canceller(&self) -> Canceller {
        let timeout = self.settings.command_timeout.min(Duration::from_secs(10));
        Arc::new(move |ids: &[String]| {
            let _ = run_command("scancel", ids, timeout);
        })
    }
}
