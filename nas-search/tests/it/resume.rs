//! Checkpoint and resume: a search killed with SIGKILL at a random point and resumed ends with
//! exactly the history of an uninterrupted run; bad checkpoints are refused and left untouched.

use nas_search::evaluator::{EvalError, EvalRequest, Evaluator, Metrics};
use nas_search::search::{Budget, SearchConfig, SearchOutcome, run_search};
use nas_search::strategy::StrategyKind;
use nas_search::synthetic::{ToyObjective, ToySpace};
use nas_search::tabular::{Dataset, Nb201Evaluator, Nb201Table};
use nas_space::nb201::{Nb201Cell, Nb201Space};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The table evaluator slowed down by a clock-random 1-4 ms per evaluation.
struct Slow(Nb201Evaluator);

impl Evaluator<Nb201Cell> for Slow {
    fn name(&self) -> String {
        self.0.name()
    }
    fn evaluate(&self, req: &EvalRequest<'_, Nb201Cell>) -> Result<Metrics, EvalError> {
        let ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        std::thread::sleep(Duration::from_micros(1000 + (ns % 3000) as u64));
        self.0.evaluate(req)
    }
}

const BUDGET: u64 = 240;

fn config(kind: &str, checkpoint: Option<&Path>) -> (StrategyKind, SearchConfig) {
    let kind = StrategyKind::parse(kind).unwrap();
    let budget = if kind.fidelities(12).len() > 1 {
        Budget::cost(12.0 * 3.0 * 40.0 + 200.0 * 3.0 * 40.0)
    } else {
        Budget::evaluations(BUDGET)
    };
    let mut cfg = SearchConfig::new(1234, budget);
    cfg.workers = 3;
    cfg.checkpoint = checkpoint.map(Path::to_path_buf);
    (kind, cfg)
}

/// `KIND` or `KIND<PARAMS`: the strategy, under `--max-params PARAMS` in the second form.
fn search(kind: &str, checkpoint: Option<&Path>, slow: bool) -> SearchOutcome<Nb201Cell> {
    let table = Nb201Table::embedded().unwrap();
    let ev = Nb201Evaluator::new(table, Dataset::Cifar10);
    let (kind, limit) = match kind.split_once('<') {
        Some((k, l)) => (k, Some(l.parse::<f64>().unwrap())),
        None => (kind, None),
    };
    let (kind, cfg) = config(kind, checkpoint);
    let mut s = kind.build(&Nb201Space).unwrap();
    if let Some(max) = limit {
        let costs = ev.clone();
        s = Box::new(nas_search::pareto::Constrained::new(
            s,
            nas_search::pareto::Limits {
                max_params: Some(max),
                ..Default::default()
            },
            std::sync::Arc::new(move |a: &Nb201Cell| Ok(costs.network_cost(a).unwrap())),
        ));
    }
    if slow {
        run_search(&Nb201Space, s.as_mut(), &Slow(ev), &cfg).unwrap()
    } else {
        run_search(&Nb201Space, s.as_mut(), &ev, &cfg).unwrap()
    }
}

/// Run by the kill test in a child process (ignored in normal runs).
#[test]
#[ignore]
fn child_search_for_kill_test() {
    let Ok(path) = std::env::var("NASRS_KILL_CHECKPOINT") else {
        return;
    };
    let kind = std::env::var("NASRS_KILL_STRATEGY").unwrap();
    search(&kind, Some(Path::new(&path)), true);
}

/// The harness name of this module's test `f`: its module path without the crate (the tests
/// of a crate are modules of one binary, `tests/it/main.rs`).
fn test_name(f: &str) -> String {
    match module_path!().split_once("::") {
        Some((_, m)) => format!("{m}::{f}"),
        None => f.to_string(),
    }
}

fn told(path: &Path) -> Option<usize> {
    // Snapshot plus journal (a read racing a snapshot rewrite may fail: retried by the caller).
    let v = nas_search::search::read_state_value(path).ok()?;
    Some(v["history"]["trials"].as_array()?.len())
}

#[test]
fn killed_search_resumes_to_the_uninterrupted_history() {
    let exe = std::env::current_exe().unwrap();
    let clock = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as usize;
    for (i, kind) in [
        "rea",
        "reinforce",
        "local",
        "hyperband",
        "bananas",
        "bohb",
        "nsga2",
        "pareto",
        "nsga2<300000",
    ]
    .iter()
    .enumerate()
    {
        let dir = tempfile::tempdir().unwrap();
        let ck = dir.path().join("search.ckpt");
        // Kill after a random number of told trials in 5..125 (of 240).
        let kill_at = 5 + (clock / (i + 1) + i * 37) % 120;
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                &test_name("child_search_for_kill_test"),
                "--ignored",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env("NASRS_KILL_CHECKPOINT", &ck)
            .env("NASRS_KILL_STRATEGY", kind)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let t0 = Instant::now();
        loop {
            if told(&ck).is_some_and(|n| n >= kill_at) {
                break;
            }
            assert!(
                child.try_wait().unwrap().is_none(),
                "{kind}: child ended before it was killed"
            );
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "{kind}: no progress"
            );
            std::thread::sleep(Duration::from_micros(300));
        }
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        assert!(
            status.code().is_none(),
            "{kind}: the child was killed by a signal"
        );
        let at_kill = told(&ck).expect("the checkpoint is complete after SIGKILL");
        assert!(at_kill >= kill_at);
        let resumed = search(kind, Some(&ck), false);
        let reference = search(kind, None, false);
        assert!(resumed.resumed);
        assert!(
            resumed.history.len() > at_kill,
            "{kind}: resumed at {at_kill} of {}",
            resumed.history.len()
        );
        assert!(
            resumed.history.same_except_timing(&reference.history),
            "{kind}: resumed history differs from the uninterrupted one (killed at {at_kill})"
        );
        assert_eq!(resumed.spent.evaluations, reference.spent.evaluations);
        assert_eq!(resumed.spent.cost, reference.spent.cost);
        assert_eq!(resumed.stop, reference.stop);
        eprintln!(
            "{kind}: killed after {at_kill} told trials, resumed to {}",
            resumed.history.len()
        );
        // Resuming a finished search returns the same history without evaluating anything.
        let again = search(kind, Some(&ck), false);
        assert!(again.history.same_except_timing(&reference.history));
    }
}

fn toy_search(
    kind: &str,
    seed: u64,
    budget: u64,
    ck: &Path,
) -> Result<SearchOutcome<nas_search::synthetic::ToyArch>, nas_search::SearchError> {
    let space = ToySpace {
        dims: 5,
        choices: 3,
    };
    let obj = ToyObjective::new(&space, 9);
    let mut s = StrategyKind::parse(kind).unwrap().build(&space).unwrap();
    let mut cfg = SearchConfig::new(seed, Budget::evaluations(budget));
    cfg.checkpoint = Some(ck.to_path_buf());
    run_search(&space, s.as_mut(), &obj, &cfg)
}

#[test]
fn bad_checkpoints_are_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("toy.ckpt");
    toy_search("rea", 1, 30, &ck).unwrap();
    let good = std::fs::read(&ck).unwrap();
    let refuse = |bytes: &[u8], kind: &str, seed: u64, want: &str| {
        std::fs::write(&ck, bytes).unwrap();
        let e = toy_search(kind, seed, 40, &ck).unwrap_err().to_string();
        assert!(
            e.contains(&ck.display().to_string()) && e.contains(want),
            "expected {want:?} in {e}"
        );
        assert_eq!(
            std::fs::read(&ck).unwrap(),
            bytes,
            "a refused checkpoint must not be modified"
        );
    };
    refuse(&good[..good.len() - 10], "rea", 1, "truncated");
    refuse(&good[..20], "rea", 1, "no header line");
    let mut flipped = good.clone();
    let n = flipped.len();
    flipped[n - 30] ^= 0x01;
    refuse(&flipped, "rea", 1, "checksum mismatch");
    refuse(b"hello\n{}", "rea", 1, "not a nas-rs search checkpoint");
    refuse(
        &good,
        "local",
        1,
        "strategy \"rea\" (this search: \"local\")",
    );
    refuse(&good, "rea", 2, "seed 1 (this search: 2)");
    // Another space: a NAS-Bench-201 search refuses the toy checkpoint.
    std::fs::write(&ck, &good).unwrap();
    let table = Nb201Table::embedded().unwrap();
    let ev = Nb201Evaluator::new(table, Dataset::Cifar10);
    let mut s = StrategyKind::parse("rea")
        .unwrap()
        .build(&Nb201Space)
        .unwrap();
    let mut cfg = SearchConfig::new(1, Budget::evaluations(40));
    cfg.checkpoint = Some(ck.clone());
    let e = run_search(&Nb201Space, s.as_mut(), &ev, &cfg)
        .unwrap_err()
        .to_string();
    assert!(e.contains("space \"toy\" (this search: \"nb201\")"), "{e}");
    assert_eq!(std::fs::read(&ck).unwrap(), good);
    // A checkpoint in a directory that does not exist: an error naming it, nothing written.
    let missing = dir.path().join("no/such/dir/x.ckpt");
    let e = toy_search("rea", 1, 5, &missing).unwrap_err().to_string();
    assert!(e.contains("no/such/dir/x.ckpt"), "{e}");
    // The good checkpoint resumes and a larger budget extends the search exactly as an
    // uninterrupted search with that budget.
    let extended = toy_search("rea", 1, 40, &ck).unwrap();
    let fresh_ck = dir.path().join("fresh.ckpt");
    let fresh = toy_search("rea", 1, 40, &fresh_ck).unwrap();
    assert!(extended.resumed && !fresh.resumed);
    assert!(extended.history.same_except_timing(&fresh.history));
    // No temporary files are left behind.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.contains(".tmp-")), "{names:?}");
}

/// The journal: a copy of the checkpoint files taken in the middle of a search, with the
/// journal cut at every record boundary and inside records (what a kill in the middle of a
/// write leaves), resumes to exactly the uninterrupted history; records older than the
/// snapshot (a kill between a snapshot and the journal's truncation) are skipped; a corrupt
/// record before the last one is refused, naming the journal.
#[test]
fn journal_cut_anywhere_resumes_to_the_uninterrupted_history() {
    use nas_search::search::{journal_path, read_state_value, run_search_observed};
    let dir = tempfile::tempdir().unwrap();
    let space = ToySpace {
        dims: 5,
        choices: 3,
    };
    let obj = ToyObjective::new(&space, 9);
    let run = |ck: &Path, observer: &mut dyn FnMut(&nas_search::Trial<_>)| {
        let mut s = StrategyKind::parse("rea").unwrap().build(&space).unwrap();
        let mut cfg = SearchConfig::new(7, Budget::evaluations(60));
        cfg.checkpoint = Some(ck.to_path_buf());
        run_search_observed(&space, s.as_mut(), &obj, &cfg, observer).unwrap()
    };
    let ck = dir.path().join("a.ckpt");
    let copy = dir.path().join("copy");
    std::fs::create_dir(&copy).unwrap();
    let reference = run(&ck, &mut |t| {
        if t.id == 40 {
            std::fs::copy(&ck, copy.join("a.ckpt")).unwrap();
            std::fs::copy(journal_path(&ck), copy.join("a.journal")).unwrap();
        }
    });
    let snap = std::fs::read(copy.join("a.ckpt")).unwrap();
    let journal = std::fs::read(copy.join("a.journal")).unwrap();
    let ends: Vec<usize> = journal
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .map(|(i, _)| i + 1)
        .collect();
    assert!(ends.len() >= 30, "{} journal records", ends.len());
    // Cut points: every record end, one byte before and after it, the middle of each record.
    let mut cuts = vec![0];
    let mut prev = 0;
    for &e in &ends {
        cuts.extend([e - 1, e, (prev + e) / 2, (e + 1).min(journal.len())]);
        prev = e;
    }
    cuts.sort();
    cuts.dedup();
    let mut told_before = 0;
    for (k, &cut) in cuts.iter().enumerate() {
        let t = dir.path().join(format!("t{k}"));
        std::fs::create_dir(&t).unwrap();
        std::fs::write(t.join("a.ckpt"), &snap).unwrap();
        std::fs::write(t.join("a.journal"), &journal[..cut]).unwrap();
        let v = read_state_value(&t.join("a.ckpt")).unwrap();
        let told = v["history"]["trials"].as_array().unwrap().len();
        // Whole records only: the state grows with the cut, never past what was written.
        assert!(told >= told_before && told <= 41, "cut {cut}: {told}");
        told_before = told;
        if k % 7 == 0 || cut == journal.len() {
            let resumed = run(&t.join("a.ckpt"), &mut |_| {});
            assert!(resumed.resumed);
            assert!(
                resumed.history.same_except_timing(&reference.history),
                "cut at byte {cut} of {}",
                journal.len()
            );
        }
    }
    assert_eq!(told_before, 40, "the whole journal holds trials 0..39");
    // Stale records (numbered at or below the snapshot's) are skipped.
    std::fs::write(journal_path(&ck), &journal).unwrap();
    let v = read_state_value(&ck).unwrap();
    assert_eq!(v["history"]["trials"].as_array().unwrap().len(), 60);
    // A corrupt record followed by others: refused, naming the journal.
    let t = dir.path().join("bad");
    std::fs::create_dir(&t).unwrap();
    std::fs::write(t.join("a.ckpt"), &snap).unwrap();
    let mut bad = journal.clone();
    bad[ends[2] + 40] ^= 0x04;
    std::fs::write(t.join("a.journal"), &bad).unwrap();
    let e = read_state_value(&t.join("a.ckpt")).unwrap_err().to_string();
    assert!(e.contains("a.journal") && e.contains("corrupt"), "{e}");
}

/// A resume may add workers when the config allows it (the search goes on from the same
/// trials); without the flag, or with fewer workers, the checkpoint is refused.
#[test]
fn a_resume_may_add_workers_when_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("w.ckpt");
    let space = ToySpace {
        dims: 5,
        choices: 3,
    };
    let obj = ToyObjective::new(&space, 9);
    let run = |workers: usize, more: bool, budget: u64| {
        let mut s = StrategyKind::parse("rea").unwrap().build(&space).unwrap();
        let mut cfg = SearchConfig::new(3, Budget::evaluations(budget));
        cfg.workers = workers;
        cfg.checkpoint = Some(ck.clone());
        cfg.more_workers_on_resume = more;
        run_search(&space, s.as_mut(), &obj, &cfg)
    };
    let first = run(1, false, 20).unwrap();
    let e = run(3, false, 40).unwrap_err().to_string();
    assert!(e.contains("workers 1 (this search: 3)"), "{e}");
    let more = run(3, true, 40).unwrap();
    assert!(more.resumed);
    assert_eq!(more.history.len(), 40);
    assert!(
        first
            .history
            .trials
            .iter()
            .zip(&more.history.trials)
            .all(|(a, b)| a.same_except_timing(b))
    );
    // The checkpoint now records 3 workers: fewer are refused even with the flag.
    let e = run(1, true, 50).unwrap_err().to_string();
    assert!(e.contains("workers 3 (this search: 1)"), "{e}");
}

/// Eight threads (standing in for several processes that share an output directory, as `nas
/// eval` runs of one trial on two nodes may) write the same checkpoint 40 times each: every
/// write must succeed, the file must end as one whole payload that verifies, and no temporary
/// file may be left. With temporary names made of the process id alone the writers share one
/// temporary file, and renames fail or publish a mixture.
#[test]
fn concurrent_atomic_writes_leave_one_whole_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("result.json");
    std::thread::scope(|s| {
        for t in 0..8u8 {
            let path = &path;
            s.spawn(move || {
                for i in 0..40u32 {
                    // Long enough that interleaved writes would be visible.
                    let payload = format!(
                        "{{\"writer\":{t},\"i\":{i},\"pad\":\"{}\"}}",
                        "x".repeat(20_000)
                    );
                    nas_search::checkpoint::write_atomic(path, payload.as_bytes())
                        .unwrap_or_else(|e| panic!("writer {t} write {i}: {e}"));
                }
            });
        }
    });
    let bytes = nas_search::checkpoint::read_verified(&path).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(
        v["i"], 39,
        "the last write of some writer survives: {}",
        v["i"]
    );
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["result.json"], "leftovers: {names:?}");
}
