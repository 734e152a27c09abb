//! `nas search --strategy bohb` in a training search: epochs are the fidelity (the ladder
//! runs from 1 epoch to --epochs), every rung is ranked by validation accuracy, TPE's state
//! survives a SIGKILL, and the resumed search ends with the uninterrupted one's trials.

use crate::common::{events, nas, stderr};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A BOHB training search small enough for a test: digits, 300 images, C = 4, ladder 1/2
/// epochs, TPE from 2 results per rung on (BOHB's default waits for 7) and no random share, so
/// the model proposes from the third trial on.
fn args(dir: &Path) -> Vec<String> {
    [
        "search",
        "--data",
        "digits",
        "--strategy",
        "bohb:min_points=2:random_fraction=0",
        "--epochs",
        "2",
        "-n",
        "8",
        "--limit-train",
        "300",
        "--channels",
        "4",
        "--seed",
        "4",
        "--out",
        dir.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// The trial events without their timing fields.
fn trials(dir: &Path) -> Vec<Value> {
    events(dir)
        .into_iter()
        .filter(|e| e["event"] == "trial")
        .map(|mut e| {
            let o = e.as_object_mut().unwrap();
            o.remove("unix_ms");
            o.remove("wall_time_s");
            e
        })
        .collect()
}

fn valid(t: &Value) -> f64 {
    t["valid_accuracy"].as_f64().unwrap()
}

#[test]
fn bohb_training_search_climbs_epochs_by_validation_and_resumes_after_a_kill() {
    let tmp = tempfile::tempdir().unwrap();
    let whole = tmp.path().join("whole");
    let a = args(&whole);
    let o = nas(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("trained 1/2 epoch(s) by BOHB's rungs"),
        "{}",
        stderr(&o)
    );
    let summary = |d: &Path| -> Value {
        serde_json::from_str(&std::fs::read_to_string(d.join("summary.json")).unwrap()).unwrap()
    };
    let report = summary(&whole);
    let reference = trials(&whole);
    // Bracket s = 1: 3 cells at 1 epoch, the best 1 promoted to 2; bracket s = 0: 2 cells at
    // 2 epochs; then the next bracket s = 1 starts.
    let fid: Vec<u64> = reference
        .iter()
        .map(|t| t["fidelity"].as_u64().unwrap())
        .collect();
    assert_eq!(fid, [1, 1, 1, 2, 2, 2, 1, 1]);
    // The promotion reads validation accuracy: the promoted cell has the best validation
    // accuracy of its rung (its test accuracy need not be the best).
    let rung0 = &reference[..3];
    let promoted = reference[3]["arch"].as_str().unwrap();
    let from = rung0.iter().find(|t| t["arch"] == promoted).unwrap();
    assert!(
        rung0.iter().all(|t| valid(from) >= valid(t)),
        "promoted {promoted} is not the best of {rung0:?} by validation accuracy"
    );
    // The choice: the best validation accuracy at the highest fidelity.
    let top: Vec<&Value> = reference.iter().filter(|t| t["fidelity"] == 2).collect();
    let best = top
        .iter()
        .fold(top[0], |b, t| if valid(t) > valid(b) { t } else { b });
    assert_eq!(report["best"]["arch"], best["arch"]);
    assert_eq!(report["best"]["valid_accuracy"], best["valid_accuracy"]);
    assert!(report["best"]["test_accuracy"].as_f64().is_some());

    // Killed (SIGKILL) once 3 trials are logged, then resumed: the same trials as the
    // uninterrupted search (BOHB's rung results, TPE's input, come back from the checkpoint).
    let dir = tmp.path().join("killed");
    let a = args(&dir);
    let mut child = Command::new(env!("CARGO_BIN_EXE_nas"))
        .args(&a)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    let logged = |d: &Path| {
        std::fs::read_to_string(d.join("events.jsonl"))
            .map_or(0, |t| t.matches("\"event\":\"trial\"").count())
    };
    let mut killed = false;
    while t0.elapsed() < Duration::from_secs(300) {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if logged(&dir) >= 3 {
            child.kill().unwrap();
            killed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    child.wait().unwrap();
    assert!(killed, "the search ended before 3 trials were logged");
    let mut resume = a.clone();
    resume.push("--resume".into());
    let o = nas(&resume.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", stderr(&o));
    let resumed = summary(&dir);
    assert_eq!(resumed["resumed"], true);
    assert_eq!(trials(&dir), reference);
    assert_eq!(resumed["best"]["arch"], report["best"]["arch"]);
}
