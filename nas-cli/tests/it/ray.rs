//! `--executor ray` against a fake Ray head: an HTTP server in this test process that answers
//! the jobs API the executor uses (`GET /api/version`, `POST /api/jobs/`,
//! `GET /api/jobs/<id>`, `POST /api/jobs/<id>/stop`) and runs each job's entrypoint with
//! `sh -c` on this machine. The entrypoint's interpreter is `tests/it/fake-ray/python`
//! (`--ray-python`), which checks that the driver was written and runs `nas eval` as the real
//! driver's Ray task does (the real driver runs in `scripts/ray-check.sh`, on a real Ray).
//! Faults: the head can fail the next jobs or every job of one trial without running them
//! (as a node that dies), answer errors to status requests, or hold jobs (a `hold` file).
//! And a head that is not there: a closed port, a server that never answers.

use super::common::{fails, ok_json, stderr};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const FAKE_PYTHON: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/fake-ray/python");

/// One job the fake head knows.
struct Job {
    trial: String,
    entrypoint: String,
    child: Option<Child>,
    /// A status decided by the head (FAILED without running, STOPPED).
    status: Option<(&'static str, String)>,
}

/// The fake head's state, shared with its server thread.
#[derive(Default)]
struct Head {
    jobs: HashMap<String, Job>,
    /// Submission ids in order.
    submitted: Vec<String>,
    stopped: Vec<String>,
    /// Fail this many next jobs without running them.
    fail_next: u32,
    /// Fail every job of this trial.
    fail_trial: Option<String>,
    /// Answer 500 to status requests.
    broken: bool,
}

struct FakeRay {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    state: PathBuf,
    addr: String,
    head: Arc<Mutex<Head>>,
}

fn respond(s: &mut TcpStream, code: u16, body: &Value) {
    let body = body.to_string();
    let _ = write!(
        s,
        "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
}

/// Reads one request: method, path, body.
fn read_request(s: &mut TcpStream) -> Option<(String, String, Vec<u8>)> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let end = loop {
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = s.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..end]).to_string();
    let mut words = head.split_whitespace();
    let (method, path) = (words.next()?.to_string(), words.next()?.to_string());
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = raw[end + 4..].to_vec();
    while body.len() < len {
        let n = s.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&buf[..n]);
    }
    Some((method, path, body))
}

fn serve(mut s: TcpStream, head: &Mutex<Head>, state: &Path) {
    let Some((method, path, body)) = read_request(&mut s) else {
        return;
    };
    let mut h = head.lock().unwrap();
    let id = path
        .strip_prefix("/api/jobs/")
        .map(|r| r.trim_end_matches("/stop").to_string());
    match (method.as_str(), path.as_str(), id) {
        ("GET", "/api/version", _) => respond(
            &mut s,
            200,
            &json!({"version": "3", "ray_version": "2.0.0-fake"}),
        ),
        ("POST", "/api/jobs/", _) => {
            let v: Value = serde_json::from_slice(&body).unwrap();
            let sid = v["submission_id"].as_str().unwrap().to_string();
            let trial = v["metadata"]["nas_trial"].as_str().unwrap().to_string();
            let entrypoint = v["entrypoint"].as_str().unwrap().to_string();
            if h.jobs.contains_key(&sid) {
                return respond(
                    &mut s,
                    400,
                    &json!(format!("Job with submission_id {sid} already exists")),
                );
            }
            h.submitted.push(sid.clone());
            let dies = if h.fail_next > 0 {
                h.fail_next -= 1;
                true
            } else {
                h.fail_trial.as_ref() == Some(&trial)
            };
            let (child, status) = if dies {
                (
                    None,
                    Some(("FAILED", "fake: the job's node died".to_string())),
                )
            } else {
                let c = Command::new("sh")
                    .args(["-c", &entrypoint])
                    .env("FAKE_RAY", state)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap();
                (Some(c), None)
            };
            h.jobs.insert(
                sid.clone(),
                Job {
                    trial,
                    entrypoint,
                    child,
                    status,
                },
            );
            respond(
                &mut s,
                200,
                &json!({"job_id": format!("raysubmit_{sid}"), "submission_id": sid}),
            );
        }
        ("POST", p, Some(id)) if p.ends_with("/stop") => {
            h.stopped.push(id.clone());
            if let Some(j) = h.jobs.get_mut(&id) {
                if let Some(c) = &mut j.child {
                    let _ = c.kill();
                    let _ = c.wait();
                }
                j.status = Some(("STOPPED", "stopped by the user".into()));
            }
            respond(&mut s, 200, &json!({"stopped": true}));
        }
        ("GET", _, Some(id)) => {
            if h.broken {
                return respond(&mut s, 500, &json!("fake: the head is unwell"));
            }
            let Some(j) = h.jobs.get_mut(&id) else {
                return respond(&mut s, 404, &json!(format!("Job {id} does not exist")));
            };
            let (status, message) = match (&j.status, &mut j.child) {
                (Some((st, m)), _) => (st.to_string(), m.clone()),
                (None, Some(c)) => match c.try_wait().unwrap() {
                    None => ("RUNNING".into(), String::new()),
                    Some(e) if e.success() => ("SUCCEEDED".into(), String::new()),
                    Some(e) => ("FAILED".into(), format!("exit code {:?}", e.code())),
                },
                (None, None) => ("PENDING".into(), String::new()),
            };
            respond(
                &mut s,
                200,
                &json!({"status": status, "message": message, "entrypoint": j.entrypoint}),
            );
        }
        _ => respond(&mut s, 404, &json!("no such route")),
    }
}

impl FakeRay {
    fn new() -> FakeRay {
        let tmp = tempfile::tempdir().unwrap();
        let state = tmp.path().join("ray");
        fs::create_dir_all(&state).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = format!("http://{}", listener.local_addr().unwrap());
        let head: Arc<Mutex<Head>> = Arc::default();
        let (h, st) = (head.clone(), state.clone());
        std::thread::spawn(move || {
            for s in listener.incoming() {
                match s {
                    Ok(s) => serve(s, &h, &st),
                    Err(_) => break,
                }
            }
        });
        FakeRay {
            root: tmp.path().to_path_buf(),
            state,
            addr,
            head,
            _tmp: tmp,
        }
    }
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_nas"));
        c.args(args)
            .env("NAS_RAY_POLL_MS", "30")
            .env("NAS_RAY_LOST_MS", "300")
            .env_remove("RAY_ADDRESS")
            .env_remove("RAY_API_SERVER_ADDRESS");
        c
    }
    /// `args`, then `--executor ray` on this head when `ray` is set.
    fn run(&self, args: &[&str], ray: bool) -> Output {
        let mut a = args.to_vec();
        if ray {
            a.extend(self.ray_args());
        }
        self.command(&a).output().expect("run nas")
    }
    fn ray_args(&self) -> [&str; 6] {
        [
            "--executor",
            "ray",
            "--ray-address",
            &self.addr,
            "--ray-python",
            FAKE_PYTHON,
        ]
    }
    fn spawn(&self, args: &[&str]) -> Child {
        self.command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn nas")
    }
    fn dir(&self, name: &str) -> String {
        self.root.join(name).display().to_string()
    }
    fn submitted(&self) -> Vec<String> {
        self.head.lock().unwrap().submitted.clone()
    }
    fn hold(&self, on: bool) {
        let p = self.state.join("hold");
        if on {
            fs::write(p, "").unwrap();
        } else {
            fs::remove_file(p).unwrap();
        }
    }
}

impl Drop for FakeRay {
    fn drop(&mut self) {
        let _ = fs::remove_file(self.state.join("hold"));
        for j in self.head.lock().unwrap().jobs.values_mut() {
            if let Some(c) = &mut j.child {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// The trial records without their timing fields.
fn records(v: &Value) -> Vec<Value> {
    v["trials"]
        .as_array()
        .expect("trials")
        .iter()
        .map(|t| {
            let mut t = t.clone();
            t.as_object_mut().unwrap().remove("wall_time_s");
            t
        })
        .collect()
}

fn table(out: &str) -> Vec<&str> {
    vec![
        "--json",
        "search",
        "--evaluator",
        "nb201-table",
        "--strategy",
        "rea:population_size=4",
        "-n",
        "10",
        "--workers",
        "3",
        "--out",
        out,
    ]
}

/// A training search (tiny networks on the embedded digits) and a table search through the
/// fake head give the local records, bit for bit; one job per trial, its entrypoint the
/// driver written into the trials directory, its output in the trial's `<ticket>.log`.
#[test]
fn ray_gives_the_same_trials_as_local() {
    let r = FakeRay::new();
    let train = |out: &str| {
        vec![
            "--json",
            "search",
            "--data",
            "digits",
            "--strategy",
            "random",
            "-n",
            "3",
            "--epochs",
            "1",
            "--limit-train",
            "200",
            "--channels",
            "4",
            "--workers",
            "2",
            "--out",
            out,
        ]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>()
    };
    let (a, b) = (train(&r.dir("local")), train(&r.dir("ray")));
    let local = ok_json(&r.run(&a.iter().map(String::as_str).collect::<Vec<_>>(), false));
    let ray = ok_json(&r.run(&b.iter().map(String::as_str).collect::<Vec<_>>(), true));
    assert_eq!(records(&local).len(), 3);
    assert!(records(&local)[0]["valid_accuracy"].is_f64());
    assert_eq!(records(&local), records(&ray));
    let subs = r.submitted();
    assert_eq!(subs.len(), 3, "{subs:?}");
    let trials = r.root.join("ray/trials");
    let driver = fs::read_to_string(trials.join("ray-driver.py")).unwrap();
    assert!(driver.contains("@ray.remote(max_retries=0)"), "{driver}");
    {
        let h = r.head.lock().unwrap();
        for sid in &subs {
            let j = &h.jobs[sid];
            assert!(sid.starts_with("nas-") && sid.contains(&format!("-{}-", j.trial)));
            assert!(
                j.entrypoint.contains("ray-driver.py")
                    && j.entrypoint.contains("--num-cpus 1 --num-gpus 0"),
                "{}",
                j.entrypoint
            );
            let log = trials.join(&j.trial).join(format!("{sid}.log"));
            assert!(log.exists(), "{}", log.display());
        }
    }

    let local = ok_json(&r.run(&table(&r.dir("tl")), false));
    let ray = ok_json(&r.run(&table(&r.dir("tr")), true));
    assert_eq!(records(&local).len(), 10);
    assert_eq!(records(&local), records(&ray));
    assert_eq!(r.submitted().len(), 13);
}

/// A job that fails without a result (its node died) is submitted again and the records are
/// the local ones, none lost or doubled; a trial whose jobs always fail is recorded as failed
/// after 2 retries, naming its jobs, how they ended and their logs. A head that stops
/// answering status requests ends the search with an error after 10 failed looks in a row;
/// the resumed search ends with the local records.
#[test]
fn lost_ray_jobs_are_retried_then_failed() {
    let r = FakeRay::new();
    let local = ok_json(&r.run(&table(&r.dir("local")), false));
    r.head.lock().unwrap().fail_next = 1;
    let died = ok_json(&r.run(&table(&r.dir("died")), true));
    assert_eq!(
        r.head.lock().unwrap().fail_next,
        0,
        "the fault was injected"
    );
    assert_eq!(records(&died), records(&local));
    assert_eq!(r.submitted().len(), 11, "one job again");

    r.head.lock().unwrap().fail_trial = Some("2".into());
    let failed = ok_json(&r.run(&table(&r.dir("failed")), true));
    r.head.lock().unwrap().fail_trial = None;
    let recs = records(&failed);
    assert_eq!(recs.len(), 10);
    let why = recs[2]["failure"].as_str().expect("trial 2 failed");
    assert!(
        why.contains("ray: no result after 3 submission(s)"),
        "{why}"
    );
    assert!(
        why.contains("status FAILED: fake: the job's node died") && why.contains("ray job logs"),
        "{why}"
    );
    assert_eq!(why.matches("job nas-").count(), 3, "{why}");
    assert_eq!(recs[..2], records(&local)[..2]);

    r.head.lock().unwrap().broken = true;
    let o = r.run(&table(&r.dir("broken")), true);
    let err = fails(&o, 1);
    assert!(
        err.contains("the Ray head's jobs API at http://127.0.0.1:")
            && err.contains("failed 10 times in a row")
            && err.contains("HTTP 500"),
        "{err}"
    );
    r.head.lock().unwrap().broken = false;
    let dir = r.dir("broken");
    let v = ok_json(&r.run(&["--json", "search", "--resume", "--out", &dir], false));
    assert_eq!(v["resumed"], true);
    assert_eq!(records(&v), records(&local));
}

/// How long `nas` took, and its output; a run that outlives `limit` is killed and fails the
/// test (it hangs).
fn run_bounded(mut c: Command, limit: Duration) -> (Output, Duration) {
    let t0 = Instant::now();
    let mut child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    while child.try_wait().unwrap().is_none() {
        if t0.elapsed() > limit {
            let _ = child.kill();
            panic!("nas still runs after {limit:?}: it hangs");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = t0.elapsed();
    (child.wait_with_output().unwrap(), took)
}

/// A head that is not reachable (nothing listens on its port; a server that accepts and never
/// answers) is an error naming the address and the timeout, exit 1, before anything is
/// written, never a hang; addresses that are not the dashboard's and bad task sizes are
/// refused naming their option.
#[test]
fn an_unreachable_ray_head_is_a_clear_error() {
    let r = FakeRay::new();
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let search = |out: &str, addr: &str, more: &[&str]| {
        let mut c = r.command(&[
            "search",
            "--evaluator",
            "nb201-table",
            "-n",
            "2",
            "--executor",
            "ray",
            "--ray-address",
            addr,
            "--out",
            out,
        ]);
        c.args(more);
        c
    };
    let out = r.dir("refused");
    let (o, _) = run_bounded(search(&out, &closed, &[]), Duration::from_secs(60));
    let err = fails(&o, 1);
    assert!(
        err.contains(&format!("the Ray head at {closed} is not reachable"))
            && err.contains("cannot connect")
            && err.contains("ray start --head")
            && err.contains("after 10.0 s"),
        "{err}"
    );
    assert!(!Path::new(&out).exists(), "nothing written");

    // Accepts connections (the kernel's backlog) and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = format!("http://{}", silent.local_addr().unwrap());
    let out = r.dir("silent");
    let mut c = search(&out, &addr, &[]);
    c.env("NAS_RAY_TIMEOUT_MS", "700");
    let (o, took) = run_bounded(c, Duration::from_secs(60));
    let err = fails(&o, 1);
    assert!(
        err.contains(&format!("the Ray head at {addr} is not reachable"))
            && err.contains("no answer within 0.7 s"),
        "{err}"
    );
    assert!(took >= Duration::from_millis(700), "{took:?}");
    assert!(!Path::new(&out).exists(), "nothing written");
    drop(silent);

    // Not a Ray head: an HTTP server answering something else.
    let other = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = format!("http://{}", other.local_addr().unwrap());
    std::thread::spawn(move || {
        for s in other.incoming().flatten() {
            let mut s = s;
            let _ = read_request(&mut s);
            respond(&mut s, 404, &json!("not found"));
        }
    });
    let (o, _) = run_bounded(search(&r.dir("other"), &addr, &[]), Duration::from_secs(60));
    let err = fails(&o, 1);
    assert!(
        err.contains("it answers HTTP 404") && err.contains("not a Ray jobs API"),
        "{err}"
    );

    for (more, want) in [
        (
            ["--ray-cpus", "0"].as_slice(),
            "--ray-cpus 0 must be a positive number",
        ),
        (&["--ray-gpus=-1"], "--ray-gpus -1 must be 0 or more"),
    ] {
        let (o, _) = run_bounded(
            search(&r.dir("bad"), &r.addr, more),
            Duration::from_secs(60),
        );
        let err = fails(&o, 2);
        assert!(err.contains(want), "{want}: {err}");
    }
    for (addr, want) in [
        ("ray://head:10001", "scheme \"ray\" is not http"),
        ("https://head:8265", "https is not supported"),
        ("head:port", "port \"port\" is not a port number"),
    ] {
        let (o, _) = run_bounded(search(&r.dir("bad"), addr, &[]), Duration::from_secs(60));
        let err = fails(&o, 2);
        assert!(
            err.contains(&format!("--ray-address {addr:?}")) && err.contains(want),
            "{want}: {err}"
        );
    }
    assert!(!Path::new(&r.dir("bad")).exists(), "nothing written");
    assert!(r.submitted().is_empty());
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !done() {
        assert!(t0.elapsed() < Duration::from_secs(60), "no {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The tickets the last journal record of `dir`'s checkpoint holds for its pending trials.
fn tickets(dir: &Path) -> usize {
    let j = fs::read_to_string(dir.join("checkpoint.journal")).unwrap_or_default();
    let last = j.lines().rfind(|l| l.ends_with('}')).unwrap_or("");
    last.matches("\"ticket\":").count()
}

/// A search killed (SIGKILL) while its first three jobs run leaves them running; `--resume`
/// watches them instead of submitting them again, and ends with the local records. A search
/// interrupted (SIGINT) stops its jobs through the head.
#[test]
fn ray_resume_watches_recorded_jobs_and_an_interrupt_stops_them() {
    let r = FakeRay::new();
    let local = ok_json(&r.run(&table(&r.dir("local")), false));
    let out = r.dir("killed");
    r.hold(true);
    let mut args = table(&out);
    args.extend(r.ray_args());
    let mut child = r.spawn(&args);
    wait_until("three recorded tickets", || tickets(Path::new(&out)) == 3);
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(r.submitted().len(), 3);
    let resumed = r.spawn(&["--json", "search", "--resume", "--out", &out]);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(r.submitted().len(), 3, "{:?}", r.submitted());
    r.hold(false);
    let o = resumed.wait_with_output().unwrap();
    let v = ok_json(&o);
    assert_eq!(v["resumed"], true);
    assert_eq!(records(&v), records(&local));
    let mut trials: Vec<u64> = {
        let h = r.head.lock().unwrap();
        h.submitted
            .iter()
            .map(|s| h.jobs[s].trial.parse().unwrap())
            .collect()
    };
    trials.sort();
    assert_eq!(trials, (0..10).collect::<Vec<u64>>(), "each trial once");

    r.hold(true);
    let out = r.dir("interrupted");
    let mut args = table(&out);
    args.extend(r.ray_args());
    let child = r.spawn(&args);
    wait_until("three recorded tickets", || tickets(Path::new(&out)) == 3);
    let st = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    let h = r.head.lock().unwrap();
    let last3: Vec<&String> = h.submitted.iter().rev().take(3).collect();
    for sid in last3 {
        assert!(
            h.stopped.contains(sid),
            "{sid} not stopped: {:?}",
            h.stopped
        );
    }
}
