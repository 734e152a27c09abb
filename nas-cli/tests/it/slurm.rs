//! Trial executors end to end: `nas eval` on its own, `--executor local` against the default,
//! and `--executor slurm` against a fake Slurm (the shell scripts in `tests/it/fake-slurm/`,
//! put first on PATH: `sbatch` runs each array task in the background on this machine,
//! `squeue`/`scontrol`/`scancel` read and write the fake queue in `$FAKE_SLURM`). Faults are
//! injected through files in that directory: `die-once` (the next task dies without running),
//! `die-always-<trial>`, `corrupt-once` (the next task's result file is overwritten with
//! garbage), `hold` (tasks wait while it exists).

use super::common::{ok_json, stderr};
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const FAKE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/fake-slurm");

/// A fake cluster: its state directory and the environment that puts it on PATH.
struct Cluster {
    _tmp: tempfile::TempDir,
    state: PathBuf,
    root: PathBuf,
}

impl Cluster {
    fn new() -> Cluster {
        let tmp = tempfile::tempdir().unwrap();
        let state = tmp.path().join("slurm");
        fs::create_dir_all(&state).unwrap();
        Cluster {
            root: tmp.path().to_path_buf(),
            state,
            _tmp: tmp,
        }
    }
    fn env(&self) -> Vec<(String, String)> {
        vec![
            (
                "PATH".into(),
                format!("{FAKE}:{}", std::env::var("PATH").unwrap_or_default()),
            ),
            ("FAKE_SLURM".into(), self.state.display().to_string()),
            ("NAS_SLURM_POLL_MS".into(), "30".into()),
            ("NAS_SLURM_LOST_MS".into(), "300".into()),
        ]
    }
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_nas"));
        c.args(args).envs(self.env());
        c
    }
    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run nas")
    }
    fn spawn(&self, args: &[&str]) -> Child {
        self.command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn nas")
    }
    fn touch(&self, name: &str) {
        fs::write(self.state.join(name), "").unwrap();
    }
    fn sbatch_calls(&self) -> Vec<String> {
        fs::read_to_string(self.state.join("sbatch.log"))
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }
    fn dir(&self, name: &str) -> String {
        self.root.join(name).display().to_string()
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

const TABLE: [&str; 10] = [
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
];

fn table_search(c: &Cluster, out: &str, more: &[&str]) -> Output {
    let mut args: Vec<&str> = TABLE.to_vec();
    args.extend(["--out", out]);
    args.extend(more);
    c.run(&args)
}

/// A training search (tiny networks on the embedded digits) under each executor, and the
/// table search: the trial records are the same, bit for bit, whichever executor ran them;
/// the default is `local`. `nas eval` on a spec the Slurm run left gives its trial's result
/// again.
#[test]
fn executors_give_the_same_trials_as_local() {
    let c = Cluster::new();
    let train = [
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
    ];
    let run = |name: &str, more: &[&str]| {
        let out = c.dir(name);
        let mut a: Vec<&str> = train.to_vec();
        a.extend(["--out", &out]);
        a.extend(more);
        ok_json(&c.run(&a))
    };
    let default = run("default", &[]);
    let local = run("local", &["--executor", "local"]);
    let slurm = run("slurm", &["--executor", "slurm"]);
    assert_eq!(records(&default).len(), 3);
    assert!(records(&default)[0]["valid_accuracy"].is_f64());
    assert_eq!(records(&default), records(&local));
    assert_eq!(records(&default), records(&slurm));
    assert_eq!(c.sbatch_calls().len(), 2, "{:?}", c.sbatch_calls());
    assert!(c.sbatch_calls()[0].contains("--array=0-1"));
    // The unit every executor runs: trial 2's spec, evaluated again on its own.
    let trial2 = c.root.join("slurm/trials/2");
    let again = c.root.join("again");
    let o = c.run(&[
        "--json",
        "eval",
        "--spec",
        trial2.join("spec.json").to_str().unwrap(),
        "--out",
        again.to_str().unwrap(),
    ]);
    let r = ok_json(&o);
    let m = &r["outcome"]["Finished"]["outcome"]["Ok"];
    assert_eq!(m["valid_accuracy"], records(&local)[2]["valid_accuracy"]);
    assert_eq!(m["loss"], records(&local)[2]["loss"]);
    assert!(again.join("result.json").exists());

    let t_local = ok_json(&table_search(&c, &c.dir("tl"), &[]));
    let t_slurm = ok_json(&table_search(
        &c,
        &c.dir("ts"),
        &[
            "--executor",
            "slurm",
            "--slurm-partition",
            "debug",
            "--slurm-time",
            "5",
        ],
    ));
    let last = c.sbatch_calls().pop().unwrap();
    assert!(last.contains("--partition=debug --time=5"), "{last}");
    assert_eq!(records(&t_local).len(), 10);
    assert_eq!(records(&t_local), records(&t_slurm));
}

/// A task that dies is submitted again; a result file that is corrupt is moved aside and its
/// trial submitted again: the records are the local ones, none lost or doubled. A trial whose
/// tasks die every time is recorded as failed after the retries, naming the tasks and logs.
#[test]
fn dead_tasks_and_corrupt_results_are_retried() {
    let c = Cluster::new();
    let local = ok_json(&table_search(&c, &c.dir("local"), &[]));
    c.touch("die-once");
    let died = ok_json(&table_search(&c, &c.dir("died"), &["--executor", "slurm"]));
    assert!(!c.state.join("die-once").exists(), "the fault was injected");
    assert_eq!(records(&died), records(&local));
    c.touch("corrupt-once");
    let corrupt = ok_json(&table_search(
        &c,
        &c.dir("corrupt"),
        &["--executor", "slurm"],
    ));
    assert!(
        !c.state.join("corrupt-once").exists(),
        "the fault was injected"
    );
    assert_eq!(records(&corrupt), records(&local));
    let bad: Vec<_> = glob(&c.root.join("corrupt/trials"), "result.json.bad-0");
    assert_eq!(bad.len(), 1, "the corrupt result kept aside: {bad:?}");

    c.touch("die-always-2");
    let failed = ok_json(&table_search(
        &c,
        &c.dir("failed"),
        &["--executor", "slurm"],
    ));
    let recs = records(&failed);
    assert_eq!(recs.len(), 10);
    let why = recs[2]["failure"].as_str().expect("trial 2 failed");
    assert!(why.contains("no result after 3 submission(s)"), "{why}");
    assert!(
        why.contains("JobState=FAILED") && why.contains("slurm-"),
        "{why}"
    );
    for (i, (a, b)) in recs.iter().zip(records(&local)).enumerate() {
        if i < 2 {
            assert_eq!(*a, b);
        }
    }
}

fn glob(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            found.extend(glob(&p, name));
        } else if p.file_name().is_some_and(|n| n == name) {
            found.push(p);
        }
    }
    found
}

/// Bad input: no sbatch on PATH (refused before anything is written), a partition sbatch
/// refuses (its message quoted), an unknown executor, and `nas eval` on a spec that is not
/// one.
#[test]
fn bad_slurm_setups_and_specs_are_clear_errors() {
    let c = Cluster::new();
    let out = c.dir("nosbatch");
    let o = Command::new(env!("CARGO_BIN_EXE_nas"))
        .args([
            "search",
            "--evaluator",
            "nb201-table",
            "--executor",
            "slurm",
        ])
        .args(["--out", &out])
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("`sbatch` was not found on PATH"),
        "{}",
        stderr(&o)
    );
    assert!(!Path::new(&out).exists(), "nothing written");

    let o = table_search(
        &c,
        &c.dir("nope"),
        &["--executor", "slurm", "--slurm-partition", "nope"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("invalid partition specified: nope"),
        "{}",
        stderr(&o)
    );
    assert!(
        !Path::new(&c.dir("nope")).exists(),
        "refused before writing"
    );
    assert!(c.sbatch_calls().is_empty(), "nothing submitted");

    // squeue that stops answering: an error after its failures in a row (the state saved);
    // the resumed search ends with the local records.
    let local = ok_json(&table_search(&c, &c.dir("local"), &[]));
    c.touch("squeue-fails");
    let o = table_search(&c, &c.dir("noqueue"), &["--executor", "slurm"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("squeue failed 10 times in a row"),
        "{}",
        stderr(&o)
    );
    fs::remove_file(c.state.join("squeue-fails")).unwrap();
    let dir = c.dir("noqueue");
    let v = ok_json(&c.run(&["--json", "search", "--resume", "--out", &dir]));
    assert_eq!(records(&v), records(&local));

    // A spec whose data this machine lacks: a fatal result (the search would stop with it),
    // exit 1 naming the data.
    let spec0 = Path::new(&dir).join("trials/0/spec.json");
    let mut v: Value = serde_json::from_str(&fs::read_to_string(&spec0).unwrap()).unwrap();
    v["evaluator"] = "train".into();
    v["setup"]["data"] = "digits:/nonexistent/digits.csv".into();
    let moved = c.root.join("moved.json");
    fs::write(&moved, v.to_string()).unwrap();
    let o = c.run(&[
        "eval",
        "--spec",
        moved.to_str().unwrap(),
        "--out",
        &c.dir("m"),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("/nonexistent/digits.csv"),
        "{}",
        stderr(&o)
    );
    let r = fs::read_to_string(c.root.join("m/result.json")).unwrap();
    assert!(r.contains("\"Fatal\"") && r.contains("nonexistent"), "{r}");

    let o = c.run(&[
        "search",
        "--strategy",
        "darts",
        "--executor",
        "slurm",
        "--out",
        &c.dir("d"),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("one-shot search trains one supernet in this process"));

    let o = table_search(&c, &c.dir("ray"), &["--executor", "pbs"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("unknown executor \"pbs\" (known: local, slurm, ray)"));

    let spec = c.root.join("spec.json");
    for (text, want) in [
        (
            "{\"format\": \"nas-rs trial spec v1\", \"trial\": 1",
            "not JSON",
        ),
        (
            "{\"format\": \"something else\"}",
            "not a trial spec (format",
        ),
        (
            "{\"format\": \"nas-rs trial spec v1\", \"trial\": 1}",
            "not a valid trial spec",
        ),
    ] {
        fs::write(&spec, text).unwrap();
        let o = c.run(&[
            "eval",
            "--spec",
            spec.to_str().unwrap(),
            "--out",
            &c.dir("e"),
        ]);
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        assert!(
            stderr(&o).contains(spec.to_str().unwrap()),
            "{}",
            stderr(&o)
        );
        assert!(stderr(&o).contains(want), "{want}: {}", stderr(&o));
        assert!(!Path::new(&c.dir("e")).join("result.json").exists());
    }
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !done() {
        assert!(t0.elapsed() < Duration::from_secs(60), "no {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The tickets (array task ids) the last journal record of `dir`'s checkpoint holds for its
/// pending trials.
fn tickets(dir: &Path) -> usize {
    let j = fs::read_to_string(dir.join("checkpoint.journal")).unwrap_or_default();
    let last = j.lines().rfind(|l| l.ends_with('}')).unwrap_or("");
    last.matches("\"ticket\":").count()
}

/// A search killed (SIGKILL) while its first three tasks run leaves them running; `--resume`
/// watches them instead of submitting them again, and ends with the local records. A search
/// interrupted (SIGINT) cancels its tasks with scancel.
#[test]
fn resume_watches_recorded_jobs_and_an_interrupt_cancels_them() {
    let c = Cluster::new();
    let local = ok_json(&table_search(&c, &c.dir("local"), &[]));
    let out = c.dir("killed");
    c.touch("hold");
    let mut args: Vec<&str> = TABLE.to_vec();
    args.extend(["--out", &out, "--executor", "slurm"]);
    let mut child = c.spawn(&args);
    wait_until("three recorded tickets", || tickets(Path::new(&out)) == 3);
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(c.sbatch_calls().len(), 1);
    // Resumed while the tasks still wait: nothing is submitted again for them.
    let resumed = c.spawn(&["--json", "search", "--resume", "--out", &out]);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(c.sbatch_calls().len(), 1, "{:?}", c.sbatch_calls());
    fs::remove_file(c.state.join("hold")).unwrap();
    let o = resumed.wait_with_output().unwrap();
    let v = ok_json(&o);
    assert_eq!(v["resumed"], true);
    assert_eq!(records(&v), records(&local));
    // Trials 0-2 went out once, in the first array; the later arrays hold the others.
    let trials = Path::new(&out).join("trials");
    let mut runs: Vec<u64> = Vec::new();
    for n in 0..c.sbatch_calls().len() {
        let list = fs::read_to_string(trials.join(format!("submit-{n}.list"))).unwrap();
        runs.extend(
            list.lines()
                .map(|l| l.rsplit('/').next().unwrap().parse::<u64>().unwrap()),
        );
    }
    runs.sort();
    assert_eq!(
        runs,
        (0..10).collect::<Vec<u64>>(),
        "each trial submitted once"
    );

    // SIGINT: exit 130, the three tasks in flight cancelled.
    c.touch("hold");
    let out = c.dir("interrupted");
    let mut args: Vec<&str> = TABLE.to_vec();
    args.extend(["--out", &out, "--executor", "slurm"]);
    let child = c.spawn(&args);
    wait_until("three recorded tickets", || tickets(Path::new(&out)) == 3);
    let st = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    let cancelled = fs::read_to_string(c.state.join("cancelled")).unwrap_or_default();
    let job = c.sbatch_calls().len() + 99; // the fake numbers jobs from 100
    for i in 0..3 {
        assert!(cancelled.contains(&format!("{job}_{i}")), "{cancelled}");
    }
    fs::remove_file(c.state.join("hold")).unwrap();
}
