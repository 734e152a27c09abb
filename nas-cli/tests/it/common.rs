//! Helpers every test module of the `nas` binary uses: run it, read its output, and check what
//! a success and a user error look like.

use serde_json::Value;
use std::fs;
use std::path::Path;
use std::process::{Command, Output};

/// Runs the built `nas` with `args` and waits for it.
pub fn nas(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nas"))
        .args(args)
        .output()
        .expect("run nas")
}

/// Its standard error as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Success, and standard output is one JSON document (returned).
pub fn ok_json(o: &Output) -> Value {
    assert!(
        o.status.success(),
        "exit {:?}, stderr: {}",
        o.status.code(),
        stderr(o)
    );
    serde_json::from_slice(&o.stdout).expect("stdout is one JSON document")
}

/// A user error: exit code `code`, one `error:` message (returned), no panic and no backtrace
/// hint.
pub fn fails(o: &Output, code: i32) -> String {
    let err = stderr(o);
    assert_eq!(
        o.status.code(),
        Some(code),
        "stdout: {} stderr: {err}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert!(err.contains("error:"), "{err}");
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "{err}"
    );
    err
}

/// The lines of `dir/events.jsonl`, each a whole JSON value (a torn line fails the test).
pub fn events(dir: &Path) -> Vec<Value> {
    let text = fs::read_to_string(dir.join("events.jsonl")).unwrap();
    assert!(text.is_empty() || text.ends_with('\n'), "torn last line");
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("torn line {l:?}: {e}")))
        .collect()
}

/// A training search slow enough to be caught running (digits, 3 epochs per trial).
pub fn slow_search(dir: &str) -> Vec<String> {
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
