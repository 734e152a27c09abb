//! Fault tests of `nas search` (docs/RELIABILITY.md lists them): a second process on the same
//! output directory, default directory names, kills and signals, refused resumes.

use super::common::{events, fails, nas, slow_search, stderr};
use serde_json::Value;
use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn spawn(args: &[&str], cwd: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_nas"))
        .args(args)
        .current_dir(cwd)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn nas")
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
    // Another kind of search, and the same search with --resume: both refused.
    let mut same = args.clone();
    same.push("--resume");
    for second in [
        vec!["search", "--evaluator", "nb201-table", "--out", d],
        same,
    ] {
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

/// Every file of `dir` with its bytes, sorted, except the lock (which holds the pid of the
/// last process that locked it).
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name() != ".nas.lock" && e.file_type().unwrap().is_file())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

/// The trial events without their timing fields.
fn trial_events(ev: &[Value]) -> Vec<Value> {
    ev.iter()
        .filter(|e| e["event"] == "trial")
        .map(|e| {
            let mut e = e.clone();
            let o = e.as_object_mut().unwrap();
            o.remove("unix_ms");
            o.remove("wall_time_s");
            e
        })
        .collect()
}

/// A refused resume (another seed, a corrupt checkpoint) writes nothing and prints no
/// "searching ..." header; a torn line and extra trial events in the log are cut on resume.
#[test]
fn refused_resume_writes_nothing_and_resume_repairs_the_log() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("r");
    let d = dir.to_str().unwrap();
    let base = [
        "search",
        "--evaluator",
        "nb201-table",
        "--strategy",
        "rea",
        "--out",
        d,
    ];
    let with = |extra: &[&str]| {
        let mut v = base.to_vec();
        v.extend_from_slice(extra);
        nas(&v)
    };
    assert!(with(&["-n", "20", "--seed", "4"]).status.success());
    let before = snapshot(&dir);
    let err = fails(&with(&["-n", "30", "--seed", "5", "--resume"]), 1);
    assert!(err.contains("started with --seed 4"), "{err}");
    assert!(!err.contains("searching"), "{err}");
    assert_eq!(
        snapshot(&dir),
        before,
        "a refused resume changed the directory"
    );
    // A corrupt checkpoint: refused, nothing written.
    let ck = dir.join("checkpoint.json");
    let good = fs::read(&ck).unwrap();
    fs::write(&ck, &good[..good.len() / 2]).unwrap();
    let before = snapshot(&dir);
    let err = fails(&with(&["-n", "30", "--seed", "4", "--resume"]), 1);
    assert!(err.contains("truncated"), "{err}");
    assert_eq!(snapshot(&dir), before);
    fs::write(&ck, &good).unwrap();
    // A log with a duplicated trial, a trial the checkpoint does not hold and a torn tail (what
    // kills left before): resume repairs it.
    let log = dir.join("events.jsonl");
    let mut text = fs::read_to_string(&log).unwrap();
    let dup = text.lines().nth(3).unwrap().to_string();
    text += &format!("{dup}\n");
    text += "{\"event\":\"trial\",\"id\":20,\"arch\":\"x\"}\n";
    text += "{\"event\":\"trial\",\"id\":21,\"ar";
    fs::write(&log, text).unwrap();
    let o = with(&["-n", "30", "--seed", "4", "--resume"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let ev = events(&dir);
    let ids: Vec<u64> = ev
        .iter()
        .filter(|e| e["event"] == "trial")
        .map(|e| e["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, (0..30).collect::<Vec<_>>());
}

/// A training search killed with SIGKILL again and again, and resumed each time, ends with the
/// events log of an uninterrupted search (trial events equal apart from timing fields; every
/// line whole).
#[test]
fn killed_and_resumed_search_logs_the_uninterrupted_events() {
    let tmp = tempfile::tempdir().unwrap();
    let args = |dir: &str| -> Vec<String> {
        [
            "search",
            "--data",
            "digits",
            "--strategy",
            "rea",
            "-n",
            "12",
            "--epochs",
            "2",
            "--limit-train",
            "1000",
            "--channels",
            "4",
            "--seed",
            "3",
            "--out",
            dir,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let whole = tmp.path().join("whole");
    let a = args(whole.to_str().unwrap());
    let o = nas(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", stderr(&o));
    let reference = trial_events(&events(&whole));
    assert_eq!(reference.len(), 12);

    let dir = tmp.path().join("killed");
    let mut a = args(dir.to_str().unwrap());
    let clock = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    let mut kills = 0;
    for cycle in 0..40u64 {
        let mut child = spawn(
            &a.iter().map(String::as_str).collect::<Vec<_>>(),
            tmp.path(),
        );
        // Kill after a clock-random 30-330 ms (the whole search takes over a second); from
        // cycle 30 on, let the run finish (on a loaded machine one trial can take longer than
        // the longest kill delay, and the tests of the crate run in parallel in one binary).
        let ms = if cycle < 30 {
            30 + (clock / (cycle + 1) + cycle * 71) % 300
        } else {
            120_000
        };
        let t0 = Instant::now();
        let mut exited = None;
        while t0.elapsed() < Duration::from_millis(ms) {
            if let Some(s) = child.try_wait().unwrap() {
                exited = Some(s);
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        match exited {
            Some(s) => {
                let o = child.wait_with_output().unwrap();
                assert!(s.success(), "{}", String::from_utf8_lossy(&o.stderr));
                break;
            }
            None => {
                child.kill().unwrap();
                child.wait().unwrap();
                kills += 1;
            }
        }
        if !a.iter().any(|x| x == "--resume") && dir.join("checkpoint.json").exists() {
            a.push("--resume".into());
        }
        assert!(cycle < 39, "the search never finished");
    }
    eprintln!("{kills} kills");
    assert!(kills >= 1);
    let ev = events(&dir);
    assert_eq!(trial_events(&ev), reference, "after {kills} kills");
    assert_eq!(ev.iter().filter(|e| e["event"] == "end").count(), 1);
}

/// A long table search (its checkpoint rotates between journal and snapshots many times)
/// killed with SIGKILL at clock-random moments and resumed each time ends with the trials of
/// the uninterrupted search.
#[test]
fn killed_table_search_with_journal_resumes_to_the_same_trials() {
    let tmp = tempfile::tempdir().unwrap();
    let args = |dir: &Path| -> Vec<String> {
        [
            "-q",
            "search",
            "--evaluator",
            "nb201-table",
            "--strategy",
            "rea",
            "-n",
            "12000",
            "--seed",
            "2",
            "--out",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([dir.to_str().unwrap().to_string()])
        .collect()
    };
    let strip = |v: &Value| -> Vec<(Value, Value)> {
        v["trials"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| (t["arch"].clone(), t["valid_accuracy"].clone()))
            .collect()
    };
    let t0 = Instant::now();
    let o = nas(&args(&tmp.path().join("whole"))
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>());
    let whole_s = t0.elapsed().as_millis() as u64;
    assert!(o.status.success(), "{}", stderr(&o));
    let summary = |dir: &Path| -> Value {
        serde_json::from_str(&fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap()
    };
    let whole = summary(&tmp.path().join("whole"));

    let dir = tmp.path().join("killed");
    let mut a = args(&dir);
    let clock = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    let mut kills = 0;
    for cycle in 0..40u64 {
        let argv: Vec<&str> = a.iter().map(String::as_str).collect();
        let mut child = spawn(&argv, tmp.path());
        // A clock-random moment in the first half of the whole search's time, later each
        // cycle (so that a loaded machine still finishes).
        let ms =
            50 + (clock / (cycle + 1) + cycle * 97) % (whole_s / 2).max(50) + cycle * cycle * 5;
        std::thread::sleep(Duration::from_millis(ms));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            kills += 1;
        }
        let o = child.wait_with_output().unwrap();
        if o.status.success() {
            let v = summary(&dir);
            assert_eq!(strip(&v), strip(&whole), "after {kills} kills");
            assert_eq!(v["best"], whole["best"]);
            eprintln!("{kills} kills (whole search {whole_s} ms)");
            assert!(kills >= 1 || cycle > 0);
            return;
        }
        assert!(o.status.code().is_none(), "{}", stderr(&o));
        if !a.iter().any(|x| x == "--resume") && dir.join("checkpoint.json").exists() {
            a.push("--resume".into());
        }
    }
    panic!("the search never finished");
}

/// Runs `nas` with stderr into a file (read while it runs).
fn spawn_logged(args: &[&str], cwd: &Path, log: &Path, env: &[(&str, &str)]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_nas"))
        .args(args)
        .current_dir(cwd)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::from(fs::File::create(log).unwrap()))
        .spawn()
        .expect("spawn nas")
}

fn signal(child: &Child, sig: &str) {
    let st = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
}

fn trials_in_log(dir: &Path) -> usize {
    fs::read_to_string(dir.join("events.jsonl"))
        .map(|t| t.matches("\"event\":\"trial\"").count())
        .unwrap_or(0)
}

fn wait_exit(child: &mut Child, limit: Duration) -> Option<i32> {
    let t0 = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s.code();
        }
        assert!(t0.elapsed() < limit, "did not exit within {limit:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// SIGINT and SIGTERM: exit 130 with the exact command that continues the search, every file
/// whole; that command finishes the search with all its trials. A second SIGINT while the
/// first is being handled exits at once.
#[test]
fn sigint_and_sigterm_save_print_the_resume_command_and_exit_130() {
    let tmp = tempfile::tempdir().unwrap();
    for (k, sig) in ["-INT", "-TERM"].iter().enumerate() {
        let dir = tmp.path().join(format!("s{k}"));
        let log = tmp.path().join(format!("s{k}.log"));
        let args = [
            "search",
            "--data",
            "digits",
            "--strategy",
            "rea",
            "-n",
            "12",
            "--epochs",
            "2",
            "--limit-train",
            "1000",
            "--channels",
            "4",
            "--seed",
            "3",
            "--out",
            dir.to_str().unwrap(),
        ];
        let mut child = spawn_logged(&args, tmp.path(), &log, &[]);
        wait_for("a trial", &mut child, || trials_in_log(&dir) >= 1);
        signal(&child, sig);
        assert_eq!(
            wait_exit(&mut child, Duration::from_secs(30)),
            Some(130),
            "{sig}"
        );
        let err = fs::read_to_string(&log).unwrap();
        let cmd = err
            .lines()
            .skip_while(|l| !l.contains("Continue the search with:"))
            .nth(1)
            .unwrap_or_else(|| panic!("no resume command in {err}"))
            .trim()
            .to_string();
        assert!(cmd.ends_with("--resume"), "{cmd}");
        let held = trials_in_log(&dir);
        assert!(held < 12, "the search had finished before {sig}");
        // The printed command, run as printed (no argument here needs quoting).
        let words: Vec<&str> = cmd.split(' ').collect();
        let o = Command::new(words[0])
            .args(&words[1..])
            .current_dir(tmp.path())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        let ev = events(&dir);
        let ids: Vec<u64> = ev
            .iter()
            .filter(|e| e["event"] == "trial")
            .map(|e| e["id"].as_u64().unwrap())
            .collect();
        assert_eq!(ids, (0..12).collect::<Vec<_>>(), "{sig}");
    }
    // A second SIGINT while the first is handled (held 30 s by the test hook) exits at once.
    let dir = tmp.path().join("twice");
    let log = tmp.path().join("twice.log");
    let args = [
        "search",
        "--data",
        "digits",
        "-n",
        "12",
        "--epochs",
        "2",
        "--limit-train",
        "1000",
        "--channels",
        "4",
        "--out",
        dir.to_str().unwrap(),
    ];
    let mut child = spawn_logged(
        &args,
        tmp.path(),
        &log,
        &[("NAS_TEST_INTERRUPT_DELAY_MS", "30000")],
    );
    wait_for("a trial", &mut child, || trials_in_log(&dir) >= 1);
    signal(&child, "-INT");
    wait_for("the first signal's message", &mut child, || {
        fs::read_to_string(&log).is_ok_and(|t| t.contains("Continue the search with:"))
    });
    let t0 = Instant::now();
    signal(&child, "-INT");
    assert_eq!(wait_exit(&mut child, Duration::from_secs(5)), Some(130));
    assert!(t0.elapsed() < Duration::from_secs(5));
}

/// `--max-time` is checked inside training: a trial still training at the limit is cut
/// within a step, logged as a `cut` event, kept pending in the checkpoint (never recorded as
/// finished with a partial score), and a resume with a larger limit runs it again to the
/// result an uninterrupted search gets.
#[test]
fn max_time_cuts_the_running_trial_and_resume_reruns_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t");
    let d = dir.to_str().unwrap();
    let base = [
        "search",
        "--data",
        "digits",
        "--epochs",
        "20",
        "--limit-train",
        "1000",
        "--channels",
        "4",
        "--seed",
        "6",
    ];
    let with = |extra: &[&str]| {
        let mut v = base.to_vec();
        v.extend_from_slice(extra);
        nas(&v)
    };
    let t0 = Instant::now();
    let o = with(&["-n", "1", "--max-time", "0.3", "--out", d]);
    let took = t0.elapsed();
    let err = fails(&o, 1);
    assert!(err.contains("time limit"), "{err}");
    // One 40-epoch trial takes about 2 s here; the cut comes within a step of 0.3 s.
    assert!(took < Duration::from_millis(1200), "{took:?}");
    let ev = events(&dir);
    assert!(ev.iter().all(|e| e["event"] != "trial"), "{ev:?}");
    let cut: Vec<&Value> = ev.iter().filter(|e| e["event"] == "cut").collect();
    assert_eq!(cut.len(), 1);
    assert_eq!(cut[0]["id"], 0);
    let st = nas_search::search::read_state_value(&dir.join("checkpoint.json")).unwrap();
    assert_eq!(st["history"]["trials"].as_array().unwrap().len(), 0);
    assert_eq!(st["pending"][0]["id"], 0);
    assert!(st["pending"][0]["result"].is_null(), "{}", st["pending"]);
    // Resumed with room: trial 0 runs again, to the uninterrupted search's result.
    let resumed = with(&[
        "--json",
        "-n",
        "1",
        "--max-time",
        "600",
        "--out",
        d,
        "--resume",
    ]);
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    let r: Value = serde_json::from_slice(&resumed.stdout).unwrap();
    let other = tmp.path().join("u");
    let whole = with(&["--json", "-n", "1", "--out", other.to_str().unwrap()]);
    let w: Value = serde_json::from_slice(&whole.stdout).unwrap();
    for k in ["arch", "valid_accuracy", "test_accuracy", "fidelity"] {
        assert_eq!(r["trials"][0][k], w["trials"][0][k], "{k}");
    }
}

const CELL: &str = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|";

/// Sizes that cannot fit are refused from the closed-form estimate before anything is built
/// (they used to abort on an allocation or be OOM-killed), writing nothing.
#[test]
fn sizes_that_cannot_fit_are_refused_before_building() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("x");
    let o = out.to_str().unwrap();
    let t0 = Instant::now();
    let err = fails(&nas(&["search", "--channels", "100000", "--out", o]), 1);
    assert!(
        err.contains("would need about") && err.contains("TiB"),
        "{err}"
    );
    assert!(err.contains("MemAvailable"), "{err}");
    // (these two need tens of GiB: compared with 16G, so that a large machine refuses too)
    let err = fails(
        &nas(&[
            "search",
            "--cells",
            "1000",
            "--max-memory",
            "16G",
            "--out",
            o,
        ]),
        1,
    );
    assert!(err.contains("would need about"), "{err}");
    let err = fails(
        &nas(&["train", CELL, "--cells", "1000", "--max-memory", "16G"]),
        1,
    );
    assert!(err.contains("would need about"), "{err}");
    assert!(
        t0.elapsed() < Duration::from_secs(20),
        "refusals are immediate"
    );
    assert!(!out.exists(), "a refused search created its directory");
    // --max-memory sets the limit (and is named); a malformed size is a usage error.
    let err = fails(
        &nas(&[
            "train",
            CELL,
            "--data",
            "digits",
            "--channels",
            "64",
            "--max-memory",
            "10M",
        ]),
        1,
    );
    assert!(err.contains("more than 10.0 MiB (--max-memory)"), "{err}");
    fails(&nas(&["train", CELL, "--max-memory", "lots"]), 2);
    // Workers multiply the need.
    let err = fails(
        &nas(&[
            "search",
            "--data",
            "digits",
            "--channels",
            "16",
            "--max-memory",
            "40M",
            "--workers",
            "4",
            "--out",
            o,
        ]),
        1,
    );
    assert!(err.contains("times 4 workers"), "{err}");
}

/// Architecture inputs are read up to 16 MiB (`@/dev/zero`, `- < /dev/zero` used to grow to
/// 10 GB).
#[test]
fn architecture_inputs_are_capped() {
    let err = fails(&nas(&["export", "@/dev/zero"]), 1);
    assert!(err.contains("/dev/zero: more than 16 MiB"), "{err}");
    let o = Command::new(env!("CARGO_BIN_EXE_nas"))
        .args(["space", "validate", "-"])
        .stdin(Stdio::from(fs::File::open("/dev/zero").unwrap()))
        .output()
        .unwrap();
    let err = fails(&o, 1);
    assert!(err.contains("<stdin>: more than 16 MiB"), "{err}");
    let tmp = tempfile::tempdir().unwrap();
    let bin = tmp.path().join("bin");
    fs::write(&bin, [0xffu8, 0xfe, 0x00]).unwrap();
    let err = fails(&nas(&["export", &format!("@{}", bin.display())]), 1);
    assert!(err.contains("not UTF-8"), "{err}");
}

/// `nas space mutate -n 10000000` streams: the first step arrives at once, and closing the
/// pipe ends it (exit 0, as `| head` expects).
#[test]
fn mutate_streams_its_walk() {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_nas"))
        .args(["space", "mutate", "-n", "10000000", CELL])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    assert!(first.starts_with('|'), "{first}");
    drop(lines);
    let st = child.wait().unwrap();
    assert!(st.success(), "{st:?}");
    assert!(t0.elapsed() < Duration::from_secs(5));
    // --json is one document, written as it goes.
    let o = nas(&["--json", "space", "mutate", "-n", "3", CELL]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["walk"].as_array().unwrap().len(), 3);
}

/// `nas train` with a learning rate that makes the loss explode stops with exit 1.
#[test]
fn train_divergence_exits_1() {
    let err = fails(
        &nas(&[
            "train",
            CELL,
            "--data",
            "digits",
            "--lr",
            "1e30",
            "--epochs",
            "1",
            "--channels",
            "4",
            "--cells",
            "1",
        ]),
        1,
    );
    assert!(err.contains("diverged"), "{err}");
}

/// `nas train --out`: a path that cannot be written is refused before training; a save that
/// fails after training (here `/dev/full`) keeps the weights in a file next to the run and
/// names both paths.
#[test]
fn train_out_is_checked_first_and_weights_survive_a_failed_save() {
    let tmp = tempfile::tempdir().unwrap();
    let t0 = Instant::now();
    let err = fails(
        &nas(&[
            "train",
            CELL,
            "--data",
            "digits",
            "--epochs",
            "50",
            "--channels",
            "4",
            "--cells",
            "1",
            "--out",
            "/nonexistent/dir/w.safetensors",
        ]),
        1,
    );
    assert!(err.contains("/nonexistent/dir/w.safetensors"), "{err}");
    assert!(err.contains("nothing was trained"), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(2), "it trained first");
    if Path::new("/dev/full").exists() {
        let o = Command::new(env!("CARGO_BIN_EXE_nas"))
            .args([
                "-q",
                "train",
                CELL,
                "--data",
                "digits",
                "--epochs",
                "1",
                "--channels",
                "4",
                "--cells",
                "1",
                "--out",
                "/dev/full",
            ])
            .current_dir(tmp.path())
            .output()
            .unwrap();
        let err = fails(&o, 1);
        assert!(
            err.contains("/dev/full") && err.contains("saved in "),
            "{err}"
        );
        let saved: Vec<_> = fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
            .collect();
        assert_eq!(saved.len(), 1, "{saved:?}");
        let name = saved[0].file_name().unwrap().to_str().unwrap();
        assert!(err.contains(name), "{err}");
        // A safetensors file: 8-byte header length, then that much JSON, then the data.
        let bytes = fs::read(&saved[0]).unwrap();
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let header: Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
        assert!(header.as_object().unwrap().len() > 5);
    }
}

/// A search writes `best.txt`, and `nas train @DIR/best.txt` (the help's example) trains it.
#[test]
fn search_writes_best_txt_for_nas_train() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("b");
    let d = dir.to_str().unwrap();
    let o = nas(&[
        "--json",
        "search",
        "--evaluator",
        "nb201-table",
        "-n",
        "20",
        "--out",
        d,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let best = fs::read_to_string(dir.join("best.txt")).unwrap();
    assert_eq!(best.trim(), v["best"]["arch"].as_str().unwrap());
    let at = format!("@{d}/best.txt");
    let o = nas(&[
        "--json",
        "train",
        &at,
        "--data",
        "digits",
        "--epochs",
        "1",
        "--channels",
        "4",
        "--cells",
        "1",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let t: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(t["arch"], v["best"]["arch"]);
}

/// Exit codes: a value no run can use is a malformed command line (2), for every option alike,
/// and nothing is written; bad input (files, checkpoints, busy directories, sizes) is 1.
#[test]
fn unusable_option_values_exit_2_consistently() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("o");
    let o = out.to_str().unwrap();
    for bad in [
        &["--batch-size", "0"][..],
        &["--lr", "nan"],
        &["--lr=-1"],
        &["--epochs", "0"],
        &["--workers", "0"],
        &["--channels", "0"],
        &["--cells", "0"],
        &["--evaluations", "0"],
    ] {
        let mut v = vec!["search", "--out", o];
        v.extend_from_slice(bad);
        let err = fails(&nas(&v), 2);
        let flag = bad[0].split('=').next().unwrap();
        assert!(err.contains(flag), "{bad:?}: {err}");
        assert!(!out.exists(), "{bad:?} created the output directory");
    }
    // Bad input: exit 1, and no empty output directory left behind.
    let err = fails(
        &nas(&["search", "--data", "mnist:/nonexistent/m", "--out", o]),
        1,
    );
    assert!(err.contains("/nonexistent/m"), "{err}");
    assert!(!out.exists(), "a search that failed on its data left {o}");
    for bad in [
        &["--batch-size", "0"][..],
        &["--lr", "nan"],
        &["--epochs", "0"],
        &["--cells", "0"],
    ] {
        let mut v = vec!["train", CELL];
        v.extend_from_slice(bad);
        fails(&nas(&v), 2);
    }
}

/// Hyperband's header names its rungs (it used to say every trial trains --epochs epochs).
#[test]
fn hyperband_header_names_its_rungs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("hb");
    let o = nas(&[
        "search",
        "--strategy",
        "hyperband",
        "--epochs",
        "2",
        "--data",
        "digits",
        "--limit-train",
        "300",
        "--channels",
        "4",
        "-n",
        "2",
        "--out",
        dir.to_str().unwrap(),
    ]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("trained 1/2 epoch(s) by Hyperband's rungs"),
        "{err}"
    );
    assert!(!err.contains("each trained 2 epoch(s)"), "{err}");
}

/// A training-only set named by its files (`--data idx:IMAGES,LABELS`): searched, with its
/// last sixth as the test set and a validation split from the rest.
#[test]
fn search_on_explicit_idx_files() {
    let tmp = tempfile::tempdir().unwrap();
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/fashion-mnist");
    let spec = format!(
        "idx:{},{}",
        data.join("train-4k-images-idx3-ubyte.gz").display(),
        data.join("train-4k-labels-idx1-ubyte.gz").display()
    );
    let dir = tmp.path().join("i");
    let o = nas(&[
        "--json",
        "search",
        "--data",
        &spec,
        "--strategy",
        "random",
        "-n",
        "1",
        "--epochs",
        "1",
        "--limit-train",
        "300",
        "--channels",
        "4",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let t = v["trials"][0]["test_accuracy"].as_f64().unwrap();
    assert!((0.0..=100.0).contains(&t));
    let o = nas(&["--json", "data", "info", &spec]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("3334") && text.contains("666"), "{text}");
}

/// A one-shot resume from a corrupt checkpoint is refused before anything is written: no
/// header, no rewritten settings, the directory byte for byte as it was.
#[test]
fn refused_oneshot_resume_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("os");
    let d = dir.to_str().unwrap();
    let run = |extra: &[&str]| {
        let mut v = vec![
            "search",
            "--strategy",
            "darts",
            "--space",
            "nb201",
            "--data",
            "digits",
            "--epochs",
            "1",
            "--channels",
            "4",
            "--limit-train",
            "200",
            "--out",
            d,
        ];
        v.extend_from_slice(extra);
        nas(&v)
    };
    assert!(run(&[]).status.success());
    let ck = dir.join("checkpoint.bin");
    let good = fs::read(&ck).unwrap();
    fs::write(&ck, &good[..good.len() / 2]).unwrap();
    let before = snapshot(&dir);
    let err = fails(&run(&["--resume"]), 1);
    assert!(err.contains("checkpoint"), "{err}");
    assert!(
        !err.contains("supernet (C="),
        "the header was printed: {err}"
    );
    assert_eq!(
        snapshot(&dir),
        before,
        "a refused one-shot resume changed the directory"
    );
}

/// A one-shot supernet that cannot fit is refused from the closed-form estimate before the
/// data is batched, the supernet built or the output directory created.
#[test]
fn oneshot_supernets_that_cannot_fit_are_refused_before_building() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("big");
    let out = nas(&[
        "search",
        "--strategy",
        "darts",
        "--channels",
        "100000",
        "--out",
        dir.to_str().unwrap(),
    ]);
    let err = fails(&out, 1);
    assert!(err.contains("supernet would need about"), "{err}");
    assert!(!dir.exists(), "the output directory was created");
    let out = nas(&[
        "search",
        "--strategy",
        "darts",
        "--max-memory",
        "10M",
        "--out",
        dir.to_str().unwrap(),
    ]);
    let err = fails(&out, 1);
    assert!(err.contains("--max-memory"), "{err}");
}
