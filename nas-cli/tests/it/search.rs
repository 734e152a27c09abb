//! End-to-end tests of `nas search`, `nas train` and `nas bench`: run the built binary and check
//! its exit codes, stdout, and the files it writes.

use super::common::{events, fails, nas, ok_json, slow_search, stderr};
use serde_json::Value;
use std::fs;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn max_of(trials: &[Value], key: &str) -> f64 {
    trials
        .iter()
        .filter_map(|t| t[key].as_f64())
        .fold(f64::MIN, f64::max)
}

/// The small training search the acceptance asks for: train evaluator, 2 trials, 1 epoch, a tiny
/// subset; checks the text output, exit code and every file of the output directory.
#[test]
fn training_search_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let d = dir.to_str().unwrap();
    let o = nas(&[
        "search",
        "--evaluator",
        "train",
        "--strategy",
        "random",
        "-n",
        "2",
        "--epochs",
        "1",
        "--limit-train",
        "300",
        "--channels",
        "4",
        "--seed",
        "5",
        "--out",
        d,
    ]);
    assert!(o.status.success(), "stderr: {}", stderr(&o));
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(text.contains("best architecture: |"), "{text}");
    assert!(
        text.contains("median test accuracy of the 2 trials"),
        "{text}"
    );

    let summary: Value =
        serde_json::from_str(&fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    let trials = summary["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 2);
    assert_eq!(summary["evaluations"], 2);
    assert_eq!(summary["space"], "nb201");
    assert!(
        summary["evaluator"]
            .as_str()
            .unwrap()
            .starts_with("train/nb201(C=4,N=1)/"),
        "{}",
        summary["evaluator"]
    );
    // The best is the trial with the highest validation accuracy, and its row is reported.
    let best = &summary["best"];
    assert_eq!(
        best["valid_accuracy"].as_f64().unwrap(),
        max_of(trials, "valid_accuracy")
    );
    let best_trial = &trials[best["trial"].as_u64().unwrap() as usize];
    assert_eq!(best_trial["arch"], best["arch"]);
    assert!(text.contains(best["arch"].as_str().unwrap()));
    for t in trials {
        let acc = t["test_accuracy"].as_f64().unwrap();
        assert!((0.0..=100.0).contains(&acc), "{t}");
        assert!(t["params"].as_u64().unwrap() > 0);
        assert_eq!(t["fidelity"], 1);
    }
    let tests: Vec<f64> = trials
        .iter()
        .map(|t| t["test_accuracy"].as_f64().unwrap())
        .collect();
    let median = summary["median_test_accuracy"].as_f64().unwrap();
    assert!((median - (tests[0] + tests[1]) / 2.0).abs() < 1e-9);

    let ev = events(&dir);
    assert_eq!(ev.len(), 4, "start, 2 trials, end");
    assert_eq!(ev[0]["event"], "start");
    assert_eq!(ev[1]["event"], "trial");
    assert_eq!(ev[2]["event"], "trial");
    assert_eq!(ev[3]["event"], "end");
    assert_eq!(ev[3]["best"], summary["best"]);
    for f in ["progress.svg", "progress_time.svg", "params_accuracy.svg"] {
        let svg = fs::read_to_string(dir.join(f)).unwrap();
        assert!(svg.starts_with("<svg") || svg.contains("<svg"), "{f}");
        assert!(svg.contains("</svg>"), "{f}");
    }
    assert!(dir.join("checkpoint.json").exists());
}

#[test]
fn table_search_is_fast_deterministic_and_picks_the_best_validation() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |name: &str, seed: &str| {
        let dir = tmp.path().join(name);
        ok_json(&nas(&[
            "--json",
            "search",
            "--evaluator",
            "nb201-table",
            "--strategy",
            "evolution",
            "-n",
            "60",
            "--seed",
            seed,
            "--out",
            dir.to_str().unwrap(),
        ]))
    };
    let a = run("a", "3");
    let trials = a["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 60);
    assert_eq!(
        a["best"]["valid_accuracy"].as_f64().unwrap(),
        max_of(trials, "valid_accuracy")
    );
    // Regularized evolution's pick beats the median trial it looked at.
    assert!(
        a["best"]["test_accuracy"].as_f64().unwrap() > a["median_test_accuracy"].as_f64().unwrap()
    );
    assert!(a["evaluator"].as_str().unwrap().contains("cifar10"));
    assert_eq!(a["output_dir"], tmp.path().join("a").to_str().unwrap());
    // Same seed: same search; another seed: another history.
    let b = run("b", "3");
    assert_eq!(a["trials"].as_array().unwrap().len(), 60);
    let arches = |v: &Value| -> Vec<String> {
        v["trials"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["arch"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(arches(&a), arches(&b));
    assert_ne!(arches(&a), arches(&run("c", "4")));
}

#[test]
fn resume_continues_a_search_as_if_uninterrupted() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("r");
    let d = dir.to_str().unwrap();
    let base = [
        "--json",
        "search",
        "--evaluator",
        "nb201-table",
        "--strategy",
        "reinforce",
        "--seed",
        "9",
    ];
    let with = |extra: &[&str]| {
        let mut v: Vec<&str> = base.to_vec();
        v.extend_from_slice(extra);
        nas(&v)
    };
    let first = ok_json(&with(&["-n", "15", "--out", d]));
    assert_eq!(first["resumed"], false);
    // The same directory without --resume is refused (nothing is overwritten).
    let err = fails(&with(&["-n", "30", "--out", d]), 2);
    assert!(err.contains("--resume"), "{err}");
    let resumed = ok_json(&with(&["-n", "30", "--out", d, "--resume"]));
    assert_eq!(resumed["resumed"], true);
    assert_eq!(resumed["trials"].as_array().unwrap().len(), 30);
    assert_eq!(
        resumed["trials"].as_array().unwrap()[..15],
        first["trials"].as_array().unwrap()[..15]
    );
    // Identical to a search that ran 30 evaluations in one go (wall times aside).
    let whole = ok_json(&with(&[
        "-n",
        "30",
        "--out",
        tmp.path().join("w").to_str().unwrap(),
    ]));
    let strip = |v: &Value| -> Vec<(String, Value)> {
        v["trials"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["arch"].as_str().unwrap().to_string(),
                    t["test_accuracy"].clone(),
                )
            })
            .collect()
    };
    assert_eq!(strip(&resumed), strip(&whole));
    assert_eq!(resumed["best"], whole["best"]);
    // The events log holds both sessions' starts, 30 trials and the end of the last session
    // (the first session's end is superseded).
    let ev = events(&dir);
    let count = |k: &str| ev.iter().filter(|e| e["event"] == k).count();
    assert_eq!((count("start"), count("trial"), count("end")), (2, 30, 1));
    // --resume with settings of another search is refused, naming the checkpoint.
    let mut other: Vec<&str> = base.to_vec();
    other[7] = "10";
    other.extend_from_slice(&["-n", "40", "--out", d, "--resume"]);
    let err = fails(&nas(&other), 1);
    assert!(err.contains("settings.json"), "{err}");
    assert!(err.contains("started with --seed 9"), "{err}");
    // --resume --out DIR alone takes the settings from the directory; a larger -n extends it.
    let more = ok_json(&nas(&[
        "--json", "search", "--resume", "--out", d, "-n", "40",
    ]));
    assert_eq!(more["resumed"], true);
    assert_eq!(more["seed"], 9);
    assert_eq!(more["strategy"]["name"], "reinforce");
    assert_eq!(more["trials"].as_array().unwrap().len(), 40);
    assert_eq!(
        more["trials"].as_array().unwrap()[..30],
        resumed["trials"].as_array().unwrap()[..30]
    );
    let again = ok_json(&nas(&["--json", "search", "--resume", "--out", d]));
    assert_eq!(again["trials"], more["trials"]);
    // More workers may be given (fewer may not).
    let wider = ok_json(&nas(&[
        "--json",
        "search",
        "--resume",
        "--out",
        d,
        "-n",
        "44",
        "--workers",
        "2",
    ]));
    assert_eq!(wider["workers"], 2);
    assert_eq!(wider["trials"].as_array().unwrap().len(), 44);
    assert_eq!(
        wider["trials"].as_array().unwrap()[..40],
        more["trials"].as_array().unwrap()[..40]
    );
    let err = fails(
        &nas(&[
            "search",
            "--resume",
            "--out",
            d,
            "-n",
            "48",
            "--workers",
            "1",
        ]),
        1,
    );
    assert!(err.contains("workers 2 (this search: 1)"), "{err}");
    // Without settings.json (a search of an older version), the checkpoint itself refuses
    // other settings, naming itself.
    fs::remove_file(dir.join("settings.json")).unwrap();
    let err = fails(&nas(&other), 1);
    assert!(err.contains("checkpoint.json"), "{err}");
    // --resume where there is nothing to resume.
    let empty = tmp.path().join("empty");
    let err = fails(
        &with(&["-n", "5", "--out", empty.to_str().unwrap(), "--resume"]),
        2,
    );
    assert!(err.contains("no search to continue"), "{err}");
}

/// Killing a training search loses no finished trial: `--resume` continues from the checkpoint.
#[test]
fn killed_training_search_resumes_without_losing_trials() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("k");
    let d = dir.to_str().unwrap();
    let owned = slow_search(d);
    let args: Vec<&str> = owned.iter().map(String::as_str).collect();
    let mut child = Command::new(env!("CARGO_BIN_EXE_nas"))
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let trials_logged = || {
        fs::read_to_string(dir.join("events.jsonl"))
            .map(|t| t.matches("\"event\":\"trial\"").count())
            .unwrap_or(0)
    };
    while trials_logged() < 1 && start.elapsed() < Duration::from_secs(240) {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    child.wait().unwrap();
    let before = trials_logged();
    assert!(before >= 1, "no trial finished before the kill");
    let first_logged = events(&dir)
        .into_iter()
        .find(|e| e["event"] == "trial")
        .unwrap();
    let mut resume: Vec<&str> = vec!["--json"];
    resume.extend_from_slice(&args);
    resume.push("--resume");
    let r = ok_json(&nas(&resume));
    assert_eq!(r["resumed"], true);
    let trials = r["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 6);
    assert_eq!(trials[0]["arch"], first_logged["arch"]);
    assert_eq!(trials[0]["test_accuracy"], first_logged["test_accuracy"]);
}

#[test]
fn bad_arguments_fail_with_a_message() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("x");
    let o = out.to_str().unwrap();
    // A data path that does not exist: exit 1, the path named.
    let err = fails(
        &nas(&[
            "search",
            "--data",
            "mnist:/nonexistent/mnist-dir",
            "--out",
            o,
        ]),
        1,
    );
    assert!(err.contains("/nonexistent/mnist-dir"), "{err}");
    // CUDA is refused clearly: not built in, or (with `--features cuda`) no driver here.
    if !cuda_usable() {
        let err = fails(&nas(&["search", "--device", "cuda", "--out", o]), 1);
        assert!(
            err.contains("CUDA") && err.contains("--device cpu"),
            "{err}"
        );
        let err = fails(
            &nas(&[
                "train",
                "|skip_connect~0|+|none~0|none~1|+|none~0|none~1|none~2|",
                "--device",
                "cuda:0",
            ]),
            1,
        );
        assert!(err.contains("--device cpu"), "{err}");
    }
    // An unknown device, strategy, evaluator or data-set kind is a usage error.
    fails(&nas(&["search", "--device", "tpu", "--out", o]), 2);
    let err = fails(&nas(&["search", "--strategy", "annealing", "--out", o]), 2);
    assert!(err.contains("annealing"), "{err}");
    fails(&nas(&["search", "--evaluator", "oracle", "--out", o]), 2);
    fails(&nas(&["search", "--data", "imagenet:/x", "--out", o]), 2);
    fails(&nas(&["search", "-n", "0", "--out", o]), 2);
    // The table covers only the nb201 space.
    let err = fails(
        &nas(&[
            "search",
            "--space",
            "darts",
            "--evaluator",
            "nb201-table",
            "--out",
            o,
        ]),
        2,
    );
    assert!(err.contains("nb201"), "{err}");
    // One-shot strategies train a supernet: the table does not apply.
    fails(
        &nas(&[
            "search",
            "--strategy",
            "gdas",
            "--evaluator",
            "nb201-table",
            "--out",
            o,
        ]),
        2,
    );
    // Hyperband with 1 training epoch has no ladder to climb.
    fails(
        &nas(&[
            "search",
            "--strategy",
            "hyperband",
            "--epochs",
            "1",
            "--out",
            o,
        ]),
        2,
    );
    // A bad architecture for `nas train`.
    let err = fails(
        &nas(&[
            "train",
            "|conv_9x9~0|+|none~0|none~1|+|none~0|none~1|none~2|",
            "--space",
            "nb201",
        ]),
        1,
    );
    assert!(err.contains("conv_9x9"), "{err}");
}

#[test]
fn train_reports_accuracy_and_saves_safetensors() {
    let tmp = tempfile::tempdir().unwrap();
    let weights = tmp.path().join("w.safetensors");
    let arch = "|nor_conv_3x3~0|+|nor_conv_3x3~0|skip_connect~1|+|skip_connect~0|nor_conv_1x1~1|nor_conv_3x3~2|";
    let v = ok_json(&nas(&[
        "--json",
        "train",
        arch,
        "--data",
        "digits",
        "--epochs",
        "3",
        "--channels",
        "4",
        "--cells",
        "1",
        "--device",
        "cpu",
        "--out",
        weights.to_str().unwrap(),
    ]));
    assert_eq!(v["arch"], arch);
    assert_eq!(v["network"], "nb201(C=4,N=1)");
    // --device (default cpu) reached the network: its tensors report the device
    assert_eq!(v["device"], "cpu");
    assert_eq!(v["epochs"].as_array().unwrap().len(), 3);
    // Three epochs on the 8x8 digits: far above chance (10%).
    let acc = v["test_accuracy"].as_f64().unwrap();
    assert!(acc > 50.0, "test accuracy {acc}");
    let l0 = v["epochs"][0]["train_loss"].as_f64().unwrap();
    let l2 = v["epochs"][2]["train_loss"].as_f64().unwrap();
    assert!(l2 < l0, "loss {l0} -> {l2}");
    // A safetensors file: u64 header length, JSON header naming float32 tensors.
    let bytes = fs::read(&weights).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let tensors = header.as_object().unwrap();
    assert!(tensors.len() > 3, "{header}");
    assert!(tensors.values().any(|t| t["dtype"] == "F32"));
    let params: usize = tensors
        .iter()
        .filter(|(k, _)| *k != "__metadata__")
        .map(|(_, t)| {
            t["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .product::<usize>()
        })
        .sum();
    // Every parameter is saved (buffers such as batch-norm statistics may come on top).
    assert!(params >= v["params"].as_u64().unwrap() as usize);
    // The architecture may also come as JSON in a file (@FILE); same seed, same result.
    let j = nas(&["space", "--space", "nb201", "convert", arch, "--to", "json"]);
    assert!(j.status.success(), "{}", stderr(&j));
    let file = tmp.path().join("arch.json");
    fs::write(&file, &j.stdout).unwrap();
    let at = format!("@{}", file.display());
    let w = ok_json(&nas(&[
        "--json",
        "train",
        &at,
        "--data",
        "digits",
        "--epochs",
        "3",
        "--channels",
        "4",
        "--cells",
        "1",
    ]));
    assert_eq!(w["arch"], arch);
    assert_eq!(w["test_accuracy"], v["test_accuracy"]);
}

#[test]
fn bench_kernels_and_search_report_numbers() {
    let v = ok_json(&nas(&[
        "--json",
        "bench",
        "kernels",
        "--threads",
        "1",
        "--time",
        "0",
    ]));
    let rows = v["results"].as_array().unwrap();
    assert_eq!(rows.len(), 7, "3 squares, 3 conv GEMMs, 1 conv2d");
    for r in rows {
        assert!(r["gflops"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["ms"].as_f64().unwrap() > 0.0, "{r}");
    }
    assert_eq!(v["threads"], 1);
    let v = ok_json(&nas(&[
        "--json",
        "bench",
        "search",
        "--runs",
        "6",
        "--budget",
        "30",
        "--strategies",
        "random,evolution",
    ]));
    let s = v["strategies"].as_array().unwrap();
    assert_eq!(s.len(), 2);
    let optimum = v["optimum"].as_f64().unwrap();
    for r in s {
        assert_eq!(r["final_test"].as_array().unwrap().len(), 6);
        assert!(r["mean"].as_f64().unwrap() <= optimum);
        assert!(r["mean"].as_f64().unwrap() > 80.0, "{r}");
    }
    assert!(v["wall_time_s"].as_f64().unwrap() > 0.0);
}

#[test]
fn every_new_subcommand_has_help_with_examples() {
    for args in [
        &["search", "--help"][..],
        &["train", "--help"],
        &["bench", "--help"],
        &["--help"],
    ] {
        let o = nas(args);
        assert!(o.status.success(), "{args:?}");
        let t = String::from_utf8(o.stdout).unwrap();
        assert!(t.contains("Examples:"), "{args:?}: {t}");
    }
}

/// A tiny one-shot search (DARTS first order on the NAS-Bench-201 supernet): a valid cell, its
/// outputs, and the table's accuracy of the derived cell.
#[test]
fn darts_oneshot_search_derives_a_valid_cell() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    let v = ok_json(&nas(&[
        "--json",
        "search",
        "--strategy",
        "darts",
        "--epochs",
        "2",
        "--limit-train",
        "256",
        "--channels",
        "4",
        "--batch-size",
        "32",
        "--out",
        dir.to_str().unwrap(),
    ]));
    assert_eq!(v["method"], "darts");
    assert_eq!(v["space"], "nb201");
    assert_eq!(v["history"].as_array().unwrap().len(), 2);
    let cell = v["genotype"].as_str().unwrap();
    assert_eq!(
        fs::read_to_string(dir.join("genotype.txt")).unwrap().trim(),
        cell
    );
    // The derived cell is in the space, and its table accuracy is reported.
    let o = nas(&["space", "--space", "nb201", "validate", cell]);
    assert!(o.status.success(), "{cell}: {}", stderr(&o));
    let t = v["history"][1]["nb201_cifar10_test"].as_f64().unwrap();
    assert!((0.0..=100.0).contains(&t));
    for f in [
        "result.json",
        "history.json",
        "alphas.svg",
        "checkpoint.bin",
    ] {
        assert!(dir.join(f).exists(), "{f}");
    }
    // Resuming the finished search runs no step and derives the same cell.
    let again = ok_json(&nas(&[
        "--json",
        "search",
        "--strategy",
        "darts",
        "--epochs",
        "2",
        "--limit-train",
        "256",
        "--channels",
        "4",
        "--batch-size",
        "32",
        "--out",
        dir.to_str().unwrap(),
        "--resume",
    ]));
    assert_eq!(again["steps_run"], 0);
    assert_eq!(again["genotype"], v["genotype"]);
    // `--resume --out DIR --epochs 3` extends the finished search by one epoch (its settings
    // come from the directory).
    let more = ok_json(&nas(&[
        "--json",
        "search",
        "--resume",
        "--out",
        dir.to_str().unwrap(),
        "--epochs",
        "3",
    ]));
    assert_eq!(more["history"].as_array().unwrap().len(), 3);
    assert_eq!(
        more["history"].as_array().unwrap()[..2],
        v["history"].as_array().unwrap()[..2]
    );
    assert!(more["steps_run"].as_u64().unwrap() > 0);
}

/// A tiny SPOS search from the command line: `-n` sets the candidate paths searched after
/// training, whose scores and table accuracies land in candidates.json.
#[test]
fn spos_oneshot_search_writes_candidates() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let v = ok_json(&nas(&[
        "--json",
        "search",
        "--strategy",
        "spos",
        "-n",
        "6",
        "--epochs",
        "1",
        "--limit-train",
        "256",
        "--channels",
        "4",
        "--batch-size",
        "32",
        "--out",
        dir.to_str().unwrap(),
    ]));
    assert_eq!(v["method"], "spos");
    let p = &v["paths"];
    assert_eq!(p["candidates"].as_array().unwrap().len(), 6);
    assert_eq!(p["strategy"], "rea");
    let best = &p["candidates"][p["best"].as_u64().unwrap() as usize];
    let cell = v["genotype"].as_str().unwrap();
    let o = nas(&["space", "--space", "nb201", "validate", cell]);
    assert!(o.status.success(), "{cell}: {}", stderr(&o));
    assert!(best["nb201_cifar10_test"].as_f64().unwrap() > 0.0);
    let saved: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(dir.join("candidates.json")).unwrap()).unwrap();
    assert_eq!(&saved, p);
    // PC-DARTS needs --channels to be a multiple of K = 4: refused, naming it, writing nothing.
    let bad = tmp.path().join("pc");
    let o = nas(&[
        "search",
        "--strategy",
        "pcdarts",
        "--channels",
        "6",
        "--out",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("--channels"), "{}", stderr(&o));
    assert!(!bad.exists());
}

/// Every space of `nas search --space` trains: one 1-epoch trial each on a small subset.
#[test]
fn training_search_runs_in_every_space() {
    let tmp = tempfile::tempdir().unwrap();
    for space in ["darts", "nb101", "chain"] {
        let dir = tmp.path().join(space);
        let v = ok_json(&nas(&[
            "--json",
            "search",
            "--space",
            space,
            "--data",
            "digits",
            "--strategy",
            "random",
            "-n",
            "1",
            "--epochs",
            "1",
            "--limit-train",
            "256",
            "--channels",
            "4",
            "--out",
            dir.to_str().unwrap(),
        ]));
        assert_eq!(v["space"], space);
        assert_eq!(v["trials"].as_array().unwrap().len(), 1);
        assert!(v["best"]["params"].as_u64().unwrap() > 0, "{space}");
        assert!(dir.join("summary.json").exists());
    }
}

/// Whether this `nas` can open a CUDA device (built with `cuda` and a driver is present).
fn cuda_usable() -> bool {
    #[cfg(feature = "cuda")]
    return nas_kernels::cuda::driver_present();
    #[cfg(not(feature = "cuda"))]
    false
}
