//! Fault tests of `nas search` (docs/RELIABILITY.md lists them): a second process on the same
//! output directory, default directory names, kills and signals, refused resumes.

use serde_json::Value;
use std::fs;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn nas(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nas"))
        .args(args)
        .output()
        .expect("run nas")
}

fn spawn(args: &[&str], cwd: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_nas"))
        .args(args)
        .current_dir(cwd)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn nas")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A user error: the exit code, one `error:` message, no panic.
fn fails(o: &Output, code: i32) -> String {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(code), "stderr: {err}");
    assert!(err.contains("error:"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

fn wait_for(what: &str, child: &mut Child, mut done: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !done() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the search ended before {what}"
        );
        assert!(t0.elapsed() < Duration::from_secs(120), "no {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A training search slow enough to be caught running (digits, 3 epochs per trial).
fn slow_search(dir: &str) -> Vec<String> {
    [
        "search",
        "--data",
        "digits",
        "--strategy",
        "random",
        "-n",
        "6",
        "--epochs",
        "3",
        "--channels",
        "4",
        "--seed",
        "1",
        "--out",
        dir,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// A second search on a directory in use is refused, naming the holder's pid, and leaves the
/// directory alone; the lock goes with the holder when it is killed.
#[test]
fn second_search_on_a_busy_directory_is_refused_naming_the_pid() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("busy");
    let d = dir.to_str().unwrap();
    let args = slow_search(d);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut first = spawn(&args, tmp.path());
    let pid = first.id();
    let lock = dir.join(".nas.lock");
    wait_for("the lock", &mut first, || {
        fs::read_to_string(&lock).is_ok_and(|s| s.trim() == pid.to_string())
    });
    // Another search, with --resume or without, and another kind of search: all refused.
    for extra in [&[][..], &["--resume"][..]] {
        let mut second: Vec<&str> = vec!["search", "--evaluator", "nb201-table", "--out", d];
        second.extend_from_slice(extra);
        let err = fails(&nas(&second), 1);
        assert!(err.contains(&format!("pid {pid}")), "{err}");
        assert!(err.contains("in use by another search"), "{err}");
    }
    let _ = first.kill(); // SIGKILL: the OS releases the lock
    first.wait().unwrap();
    nas_search::outdir::DirLock::acquire(&dir).expect("the lock died with its holder");
}

/// Two searches started at the same moment with the default directory name get two
/// directories, and each keeps all of its results.
#[test]
fn default_directory_names_do_not_collide() {
    let tmp = tempfile::tempdir().unwrap();
    let args = [
        "--json",
        "search",
        "--evaluator",
        "nb201-table",
        "--strategy",
        "random",
        "-n",
        "300",
    ];
    let kids: Vec<Child> = (0..3).map(|_| spawn(&args, tmp.path())).collect();
    let mut dirs = Vec::new();
    for k in kids {
        let o = k.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["resumed"], false);
        let dir = tmp.path().join(v["output_dir"].as_str().unwrap());
        let summary: Value =
            serde_json::from_str(&fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
        assert_eq!(summary["trials"].as_array().unwrap().len(), 300);
        assert_eq!(summary["trials"], v["trials"], "{}", dir.display());
        dirs.push(dir);
    }
    dirs.sort();
    dirs.dedup();
    assert_eq!(dirs.len(), 3, "{dirs:?}");
}
