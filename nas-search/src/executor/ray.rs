//! The Ray executor: each trial one Ray job, submitted through the jobs REST API of the head's
//! dashboard (what `ray job submit` calls; no Python is needed where `nas search` runs).
//!
//! Ray has no Rust API; its job interface is plain HTTP. The executor writes a small Python
//! driver, [`DRIVER`] (shipped inside the binary), to `DIR/trials/ray-driver.py` and submits one
//! job per trial (`POST /api/jobs/`) whose entrypoint runs that driver with the trial's spec;
//! the driver asks Ray for one task with `--ray-cpus`/`--ray-gpus` and runs
//! `nas eval --spec DIR/trials/<id>/spec.json --out DIR/trials/<id>` in it, on whichever node
//! Ray picks, its output in `DIR/trials/<id>/<ticket>.log`. So, as with Slurm, the output
//! directory, the `nas` binary and the data must be at the same paths on every node.
//!
//! A trial's ticket is its job's submission id, `nas-<hash of DIR>-<trial>-<session>-<n>`
//! (unique to each submission, so a resubmission never collides with an earlier job); it is
//! saved in the checkpoint, so `--resume` watches a job still running. Every `poll` the
//! executor asks the head for the status of each job in flight (`GET /api/jobs/<ticket>`):
//! `PENDING` and `RUNNING` are alive; a job that is `SUCCEEDED`, `FAILED` or `STOPPED`, or that
//! the head does not know (it was restarted), and has left no result is lost and retried by
//! the shared [`Tracker`], which also takes the result files (see [`super::remote`]).
//! Dropping the executor, and an interrupt of `nas search`, stops the jobs in flight
//! (`POST /api/jobs/<ticket>/stop`).
//!
//! Timeouts: every request to the head (resolving, connecting, sending, reading) is cut off
//! after [`RaySettings::timeout`] (10 s; `NAS_RAY_TIMEOUT_MS`), so a head that is not reachable
//! is an error before anything is written, and one that stops answering during a search is an
//! error after `max_poll_failures` looks in a row (the search's state saved); a refused
//! submission is tried 3 times.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::http::{self, Address};
use super::remote::{self, Canceller, Scheduler, Tracker, Watch};
use super::slurm::sh_quote;
use super::{SPEC_FILE, SpecTemplate};
use crate::builder::write_file_atomic;
use crate::error::{Result, SearchError};

/// The driver each Ray job runs (`ray_driver.py`, written to `DIR/trials/ray-driver.py`).
pub const DRIVER: &str = include_str!("ray_driver.py");
/// Its file name in the trials directory.
pub const DRIVER_FILE: &str = "ray-driver.py";
/// The dashboard's port when an address gives none (Ray's default).
pub const DASHBOARD_PORT: u16 = 8265;

/// Settings of the Ray executor.
#[derive(Debug, Clone, PartialEq)]
pub struct RaySettings {
    /// The head's dashboard address, `http://HOST:PORT` (`--ray-address`; `None`: the
    /// `RAY_API_SERVER_ADDRESS` or `RAY_ADDRESS` environment variable when it is an `http://`
    /// address, as `ray job submit` reads them, else `http://127.0.0.1:8265`).
    pub address: Option<String>,
    /// CPUs of each trial's task (`--ray-cpus`; also its `NAS_THREADS`).
    pub cpus: f64,
    /// GPUs of each trial's task (`--ray-gpus`).
    pub gpus: f64,
    /// The Python that runs the driver on the head (`--ray-python`; it must import `ray`).
    pub python: String,
    /// Longest one request to the head may take.
    pub timeout: Duration,
    /// Retries, poll interval, when a job is lost, failed looks tolerated in a row.
    pub watch: Watch,
}

impl Default for RaySettings {
    /// One CPU and no GPU per trial, `python`, requests cut off after 10 s
    /// (`NAS_RAY_TIMEOUT_MS`), a look every 2 s (`NAS_RAY_POLL_MS`), lost after 60 s without
    /// a result (`NAS_RAY_LOST_MS`), two retries.
    fn default() -> Self {
        RaySettings {
            address: None,
            cpus: 1.0,
            gpus: 0.0,
            python: "python".into(),
            timeout: Duration::from_millis(
                std::env::var("NAS_RAY_TIMEOUT_MS")
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(10_000),
            ),
            watch: Watch::from_env("NAS_RAY", 2_000, 60_000),
        }
    }
}

impl RaySettings {
    /// The address in use (see [`RaySettings::address`]).
    pub fn address_text(&self) -> String {
        if let Some(a) = &self.address {
            return a.clone();
        }
        ["RAY_API_SERVER_ADDRESS", "RAY_ADDRESS"]
            .iter()
            .filter_map(|v| std::env::var(v).ok())
            .find(|v| v.starts_with("http://"))
            .unwrap_or_else(|| format!("http://127.0.0.1:{DASHBOARD_PORT}"))
    }

    /// The parsed address (a setting error naming `--ray-address`).
    pub fn parsed_address(&self) -> Result<Address> {
        let text = self.address_text();
        Address::parse(&text, DASHBOARD_PORT).map_err(|e| {
            SearchError::Setting(format!(
                "--ray-address {text:?}: {e} (give the head's dashboard address, \
                 http://HOST:{DASHBOARD_PORT}, where its jobs API answers)"
            ))
        })
    }

    /// Checks the settings and asks the head for its version (`GET /api/version`), within
    /// [`RaySettings::timeout`]; returns the Ray version. Writes nothing.
    pub fn check(&self) -> Result<String> {
        if !(self.cpus.is_finite() && self.cpus > 0.0) {
            return Err(SearchError::Setting(format!(
                "--ray-cpus {} must be a positive number",
                self.cpus
            )));
        }
        if !(self.gpus.is_finite() && self.gpus >= 0.0) {
            return Err(SearchError::Setting(format!(
                "--ray-gpus {} must be 0 or more",
                self.gpus
            )));
        }
        if self.python.trim().is_empty() {
            return Err(SearchError::Setting(
                "--ray-python must not be empty".into(),
            ));
        }
        let addr = self.parsed_address()?;
        let unreachable = |e: String| {
            SearchError::Executor(format!(
                "--executor ray: the Ray head at {addr} is not reachable: {e} (every request \
                 is cut off after {:.1} s). Start one with `ray start --head` (its dashboard \
                 serves the jobs API on port {DASHBOARD_PORT}), give its dashboard address with \
                 --ray-address, or use --executor local",
                self.timeout.as_secs_f64()
            ))
        };
        let r =
            http::request(&addr, "GET", "/api/version", None, self.timeout).map_err(unreachable)?;
        let v: Option<serde_json::Value> = serde_json::from_slice(&r.body).ok();
        match v.as_ref().and_then(|v| v["ray_version"].as_str()) {
            Some(version) if r.status == 200 => Ok(version.to_string()),
            _ => Err(unreachable(format!(
                "it answers HTTP {} {:?}, not a Ray jobs API version",
                r.status,
                clip(&r.text(), 200)
            ))),
        }
    }
}

/// The first `n` characters of `s`, on one line.
fn clip(s: &str, n: usize) -> String {
    let one: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.chars().count() > n {
        format!("{}...", one.chars().take(n).collect::<String>())
    } else {
        one
    }
}

/// The last `n` characters of `s`, on one line (a failed job's message ends with its logs,
/// whose end says why).
fn clip_tail(s: &str, n: usize) -> String {
    let one: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    let count = one.chars().count();
    if count > n {
        format!("...{}", one.chars().skip(count - n).collect::<String>())
    } else {
        one
    }
}

/// The Ray executor (see the [module docs](self)).
pub type RayExecutor = Tracker<Ray>;

impl RayExecutor {
    /// An executor for the search writing into `dir` (trials under `dir/trials`, the driver
    /// written there), running `program eval` in Ray tasks. Call after [`RaySettings::check`].
    pub fn new(
        settings: RaySettings,
        program: PathBuf,
        template: SpecTemplate,
        dir: &Path,
    ) -> Result<RayExecutor> {
        let trials_dir = remote::trials_dir(dir)?;
        std::fs::create_dir_all(&trials_dir).map_err(|e| SearchError::io(&trials_dir, e))?;
        let driver = trials_dir.join(DRIVER_FILE);
        if std::fs::read(&driver).ok().as_deref() != Some(DRIVER.as_bytes()) {
            write_file_atomic(&driver, DRIVER.as_bytes())?;
        }
        // Unique to this session: a ticket is never the submission id of an earlier job.
        let session = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let watch = settings.watch.clone();
        let ray = Ray {
            addr: settings.parsed_address()?,
            job_name: remote::job_name(&trials_dir),
            settings,
            program,
            driver,
            session: format!("{session:x}{:x}", std::process::id()),
            submitted: 0,
            seen: HashMap::new(),
        };
        Ok(Tracker::over(ray, watch, template, trials_dir))
    }
}

/// Ray's jobs API as a [`Scheduler`].
pub struct Ray {
    settings: RaySettings,
    addr: Address,
    program: PathBuf,
    driver: PathBuf,
    job_name: String,
    session: String,
    submitted: u64,
    /// The last status and message the head gave for each ticket looked at.
    seen: HashMap<String, (String, String)>,
}

impl Ray {
    fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> std::result::Result<http::Response, String> {
        http::request(&self.addr, method, path, body, self.settings.timeout)
    }

    /// The job's entrypoint: the driver with the trial's spec.
    fn entrypoint(&self, dir: &Path, ticket: &str) -> String {
        let q = |p: &Path| sh_quote(&p.to_string_lossy());
        format!(
            "{} {} --program {} --spec {} --out {} --log {} --num-cpus {} --num-gpus {}",
            sh_quote(&self.settings.python),
            q(&self.driver),
            q(&self.program),
            q(&dir.join(SPEC_FILE)),
            q(dir),
            q(&dir.join(format!("{ticket}.log"))),
            self.settings.cpus,
            self.settings.gpus
        )
    }

    /// Submits one job (3 tries when the head does not answer or fails).
    fn submit_one(&mut self, id: u64, dir: &Path) -> Result<String> {
        let ticket = format!("{}-{id}-{}-{}", self.job_name, self.session, self.submitted);
        self.submitted += 1;
        let body = serde_json::json!({
            "entrypoint": self.entrypoint(dir, &ticket),
            "submission_id": ticket,
            "metadata": {
                "nas_search": dir.parent().and_then(Path::parent).unwrap_or(dir).display().to_string(),
                "nas_trial": id.to_string(),
            },
        })
        .to_string();
        let mut last = String::new();
        for attempt in 0..3 {
            if attempt > 0 {
                std::thread::sleep(self.settings.watch.poll.min(Duration::from_secs(5)));
            }
            match self.request("POST", "/api/jobs/", Some(body.as_bytes())) {
                Ok(r) if r.status == 200 => return Ok(ticket),
                // A try whose answer was lost may have submitted it: the job is ours.
                Ok(r) if attempt > 0 && r.text().contains("already exists") => return Ok(ticket),
                Ok(r) => {
                    last = format!("HTTP {}: {}", r.status, clip(&r.text(), 500));
                    // A refused request (4xx) will not pass on a retry.
                    if (400..500).contains(&r.status) {
                        break;
                    }
                }
                Err(e) => last = e,
            }
        }
        Err(SearchError::Executor(format!(
            "--executor ray: the Ray head at {} refused trial {id}'s job ({last}); the search's \
             state is saved: resume it when the head takes jobs again",
            self.addr
        )))
    }

    /// The status and message of `ticket` (`None`: the head does not know it).
    fn status(&self, ticket: &str) -> std::result::Result<Option<(String, String)>, String> {
        let r = self.request("GET", &format!("/api/jobs/{ticket}"), None)?;
        match r.status {
            200 => {
                let v: serde_json::Value = serde_json::from_slice(&r.body)
                    .map_err(|e| format!("job {ticket}: not JSON ({e})"))?;
                let status = v["status"].as_str().ok_or_else(|| {
                    format!("job {ticket}: no status in {}", clip(&r.text(), 200))
                })?;
                let message = v["message"].as_str().unwrap_or("").to_string();
                Ok(Some((status.to_string(), message)))
            }
            404 => Ok(None),
            s => Err(format!("job {ticket}: HTTP {s}: {}", clip(&r.text(), 200))),
        }
    }
}

impl Scheduler for Ray {
    fn name(&self) -> &'static str {
        "ray"
    }

    fn unit(&self) -> &'static str {
        "job"
    }

    fn poll_source(&self) -> String {
        format!("the Ray head's jobs API at {}", self.addr)
    }

    fn submit(&mut self, trials: &[(u64, PathBuf)]) -> Result<Vec<String>> {
        trials
            .iter()
            .map(|(id, dir)| self.submit_one(*id, dir))
            .collect()
    }

    fn alive(&mut self, tickets: &[String]) -> std::result::Result<HashSet<String>, String> {
        let mut alive = HashSet::new();
        for t in tickets {
            match self.status(t)? {
                Some((status, message)) => {
                    if status == "PENDING" || status == "RUNNING" {
                        alive.insert(t.clone());
                    }
                    self.seen.insert(t.clone(), (status, message));
                }
                None => {
                    self.seen.insert(
                        t.clone(),
                        ("unknown to the Ray head".into(), "restarted?".into()),
                    );
                }
            }
        }
        Ok(alive)
    }

    fn how_it_ended(&mut self, ticket: &str) -> String {
        let (status, message) = match self.seen.remove(ticket) {
            Some(s) => s,
            None => match self.status(ticket) {
                Ok(Some(s)) => s,
                Ok(None) => ("unknown to the Ray head".into(), String::new()),
                Err(e) => ("status unknown".into(), e),
            },
        };
        if message.is_empty() {
            format!("status {status}")
        } else {
            format!("status {status}: {}", clip_tail(&message, 400))
        }
    }

    fn log(&self, dir: &Path, ticket: &str) -> String {
        format!(
            "{}, or `ray job logs {ticket}`",
            dir.join(format!("{ticket}.log")).display()
        )
    }

    /// `POST /api/jobs/<ticket>/stop` for each, all within 10 s.
    fn canceller(&self) -> Canceller {
        let addr = self.addr.clone();
        let per = self.settings.timeout.min(Duration::from_secs(5));
        Arc::new(move |ids: &[String]| {
            let deadline = Instant::now() + Duration::from_secs(10);
            for id in ids {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                let _ = http::request(
                    &addr,
                    "POST",
                    &format!("/api/jobs/{id}/stop"),
                    None,
                    per.min(left),
                );
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_clipped_on_one_line_keeping_the_head_or_the_tail() {
        assert_eq!(clip("a  b\nc", 10), "a b c");
        assert_eq!(clip("abcdef", 3), "abc...");
        assert_eq!(
            clip_tail("x\n\nModuleNotFoundError: ray", 10),
            "...Error: ray"
        );
        assert_eq!(clip_tail("short", 10), "short");
    }

    #[test]
    fn the_address_comes_from_the_option_then_the_environment_then_the_default() {
        let given = RaySettings {
            address: Some("http://h:1".into()),
            ..RaySettings::default()
        };
        assert_eq!(given.address_text(), "http://h:1");
        assert_eq!(given.parsed_address().unwrap().port, 1);
        let bad = RaySettings {
            address: Some("ray://h:10001".into()),
            ..RaySettings::default()
        };
        let e = bad.parsed_address().unwrap_err().to_string();
        assert!(
            e.contains("--ray-address \"ray://h:10001\"") && e.contains("8265"),
            "{e}"
        );
    }
}
