//! `nas search --space rnn` and `nas train --space rnn`: recurrent cells trained as character
//! language models through the registry, their outputs, resume after a kill, and bad input
//! (text files, genotypes, data of the wrong kind).

use super::common::{nas, ok_json, stderr};
use serde_json::Value;
use std::fs;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A user error: exit code 1, one `error:` message naming `what`, no panic.
fn bad_input(o: &Output, what: &str) -> String {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "stderr: {err}");
    assert!(err.contains("error:"), "{err}");
    assert!(err.contains(what), "{what:?} not named in: {err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

/// DARTS_V2's recurrent cell (the original code's `genotypes.py`).
const V2: &str = "Genotype(recurrent=[('sigmoid', 0), ('relu', 1), ('relu', 1), ('identity', 1), \
                  ('tanh', 2), ('sigmoid', 5), ('tanh', 3), ('relu', 5)], concat=range(1, 9))";

/// About 14,000 characters of made-up English: long enough for 64-character windows in each
/// part of a 90/5/5 split, small enough that measuring bpc takes milliseconds.
fn small_text(dir: &Path) -> String {
    let words = [
        "the", "king", "speaks", "of", "a", "long", "night", "and", "her", "crown", "is", "gold",
        "when", "morning", "comes", "we", "ride", "to", "sea",
    ];
    let mut s = String::new();
    let mut x: u64 = 7;
    while s.len() < 14_000 {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        s.push_str(words[(x >> 33) as usize % words.len()]);
        s.push_str(if (x >> 20).is_multiple_of(9) {
            ".\n"
        } else {
            " "
        });
    }
    let path = dir.join("small.txt");
    fs::write(&path, s).unwrap();
    format!("text:{}", path.display())
}

fn search_args<'a>(data: &'a str, dir: &'a str, n: &'a str) -> Vec<&'a str> {
    vec![
        "--json",
        "search",
        "--space",
        "rnn",
        "--strategy",
        "evolution:population_size=2:sample_size=2",
        "--data",
        data,
        "-n",
        n,
        "--epochs",
        "1",
        "--limit-train",
        "64",
        "--channels",
        "8",
        "--batch-size",
        "8",
        "--seed",
        "5",
        "--out",
        dir,
    ]
}

/// A search over recurrent cells on a text file: scores in bits per character, the best cell
/// in the DARTS recurrent text format (it parses again and trains with `nas train`), plots and
/// events, and `--resume` with a larger budget extends it with the same first trials.
#[test]
fn rnn_search_writes_a_darts_recurrent_genotype_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let data = small_text(tmp.path());
    let dir = tmp.path().join("run");
    let d = dir.to_str().unwrap();
    let v = ok_json(&nas(&search_args(&data, d, "3")));
    let trials = v["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 3);
    for t in trials {
        let bpc = t["loss"].as_f64().unwrap();
        // Scores are 100 * 2^-bpc of the validation part; an untrained model of a vocabulary
        // of ~25 characters is near log2(25) = 4.6 bpc.
        assert!(bpc > 1.0 && bpc < 8.0, "{t}");
        let acc = t["valid_accuracy"].as_f64().unwrap();
        assert!((acc - 100.0 * (-bpc).exp2()).abs() < 1e-6, "{t}");
        assert!(
            t["arch"]
                .as_str()
                .unwrap()
                .starts_with("Genotype(recurrent=[")
        );
    }
    let best = fs::read_to_string(dir.join("best.txt")).unwrap();
    assert!(best.trim().ends_with("concat=range(1, 9))"), "{best}");
    for f in [
        "progress.svg",
        "summary.json",
        "events.jsonl",
        "checkpoint.json",
    ] {
        assert!(dir.join(f).exists(), "{f}");
    }
    // The exported cell is the DARTS format and `nas train` takes it back.
    let e = ok_json(&nas(&[
        "--json",
        "export",
        "--format",
        "darts",
        &format!("@{}", dir.join("best.txt").display()),
    ]));
    assert_eq!(e["content"].as_str().unwrap().trim(), best.trim());

    // `--resume --out DIR` alone: the text data and every other setting come back from
    // settings.json.
    let more = ok_json(&nas(&[
        "--json", "search", "--resume", "--out", d, "-n", "5",
    ]));
    let all = more["trials"].as_array().unwrap();
    assert_eq!(all.len(), 5);
    for (a, b) in trials.iter().zip(all) {
        assert_eq!(a["arch"], b["arch"]);
        assert_eq!(a["loss"], b["loss"]);
    }
}

/// `nas train --space rnn` trains the cell as a language model and reports bits per character
/// (and saves the weights); without --data it is the embedded Shakespeare corpus.
#[test]
fn rnn_train_reports_bits_per_character() {
    let tmp = tempfile::tempdir().unwrap();
    let data = small_text(tmp.path());
    let w = tmp.path().join("w.safetensors");
    let common = ["--json", "train", "--space", "rnn", V2, "--channels", "8"];
    let mut args = common.to_vec();
    args.extend(["--epochs", "2", "--data", &data, "--limit-train", "80"]);
    args.extend(["--batch-size", "8"]);
    args.extend(["-o", w.to_str().unwrap()]);
    let v = ok_json(&nas(&args));
    assert_eq!(v["space"], "rnn");
    assert_eq!(v["epochs"].as_array().unwrap().len(), 2);
    let test_bpc = v["test_bpc"].as_f64().unwrap();
    assert!(test_bpc > 1.0 && test_bpc < 6.0, "{v}");
    assert_eq!(v["test_loss"].as_f64(), Some(test_bpc));
    // 8 units, ~25 symbols: embedding + tied decoder 25 * 8 + 25, the cell 2 * 64 * 10.
    let params = v["params"].as_u64().unwrap();
    let vocab = (params - 1280) / 9;
    assert_eq!(params, 9 * vocab + 1280, "{v}");
    assert!(fs::metadata(&w).unwrap().len() > params * 4);
    // Training lowers the loss from epoch 1 to epoch 2.
    let e = v["epochs"].as_array().unwrap();
    assert!(
        e[1]["train_loss"].as_f64() < e[0]["train_loss"].as_f64(),
        "{v}"
    );

    // The default corpus: Shakespeare (the vocabulary of its training part).
    let mut args = common.to_vec();
    args.extend(["--epochs", "1", "--limit-train", "16"]);
    let v = ok_json(&nas(&args));
    assert_eq!(v["data"], "shakespeare");
    assert!(v["test_bpc"].as_f64().unwrap() > 1.0);
}

/// Every bad input is exit code 1 with a message naming the file or argument, and no output
/// directory is left behind.
#[test]
fn rnn_bad_input_is_refused_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let file = |name: &str, bytes: &[u8]| {
        let p = tmp.path().join(name);
        fs::write(&p, bytes).unwrap();
        p.display().to_string()
    };
    let out = tmp.path().join("never");
    let o = out.to_str().unwrap();
    let search = |data: &str, space: &str| {
        nas(&[
            "search", "--space", space, "--data", data, "-n", "1", "--out", o,
        ])
    };
    let cases = [
        (file("empty.txt", b""), "empty"),
        (file("nul.txt", b"abc\0def"), "NUL byte"),
        (
            file("latin1.txt", b"caf\xe9 au lait, s'il vous pla\xeet"),
            "invalid UTF-8",
        ),
        (
            file("short.txt", "a short text".repeat(4).as_bytes()),
            "fewer than one sequence",
        ),
    ];
    for (path, problem) in &cases {
        let err = bad_input(&search(&format!("text:{path}"), "rnn"), path);
        assert!(err.contains(problem), "{err}");
        let err = bad_input(
            &nas(&[
                "train",
                "--space",
                "rnn",
                V2,
                "--data",
                &format!("text:{path}"),
            ]),
            path,
        );
        assert!(err.contains(problem), "{err}");
    }
    bad_input(&search("text:no-such-file.txt", "rnn"), "no-such-file.txt");
    // Data of the other kind, both ways.
    let err = bad_input(&search("digits", "rnn"), "--data");
    assert!(
        err.contains("trains on text") && err.contains("text:FILE"),
        "{err}"
    );
    let err = bad_input(&search("shakespeare", "nb201"), "--data");
    assert!(err.contains("trains on images"), "{err}");
    let err = bad_input(
        &nas(&["train", "--space", "rnn", V2, "--data", "fashion"]),
        "--data",
    );
    assert!(err.contains("trains on text"), "{err}");
    let nb201 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|";
    bad_input(&nas(&["train", nb201, "--data", "shakespeare"]), "--data");
    let err = bad_input(
        &nas(&[
            "search",
            "--space",
            "darts",
            "--strategy",
            "darts",
            "--data",
            "shakespeare",
            "--out",
            o,
        ]),
        "--data",
    );
    assert!(err.contains("darts space trains on images"), "{err}");
    assert!(!out.exists(), "a refused search wrote {o}");
    // Genotypes: a node reading a later one (the only way to write a cycle), a node that does
    // not exist, an unknown activation, a missing node.
    let cycle = V2.replace("('relu', 1), ('relu', 1)", "('relu', 3), ('relu', 1)");
    let err = bad_input(
        &nas(&["train", "--space", "rnn", &cycle]),
        "node 2 reads node 3",
    );
    assert!(err.contains("rnn"), "{err}");
    let far = V2.replace("('relu', 5)]", "('relu', 12)]");
    bad_input(
        &nas(&["train", "--space", "rnn", &far]),
        "node 8 reads node 12",
    );
    let act = V2.replace("'tanh', 2", "'gelu', 2");
    bad_input(&nas(&["train", "--space", "rnn", &act]), "gelu");
    let seven = V2.replace(", ('relu', 5)]", "]");
    bad_input(&nas(&["train", "--space", "rnn", &seven]), "rnn");
    // A genotype file that is binary.
    let bin = file("cell.bin", b"\xff\xfe\x00G");
    bad_input(&nas(&["train", "--space", "rnn", &format!("@{bin}")]), &bin);
}

/// An rnn search killed with SIGKILL while it trains, then resumed, ends with the trials of an
/// uninterrupted search.
#[test]
fn killed_rnn_search_resumes_to_the_same_trials() {
    let tmp = tempfile::tempdir().unwrap();
    let data = small_text(tmp.path());
    let whole = tmp.path().join("whole");
    let reference = ok_json(&nas(&search_args(&data, whole.to_str().unwrap(), "4")));
    let dir = tmp.path().join("killed");
    let d = dir.to_str().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_nas"))
        .args(search_args(&data, d, "4"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill once the first trial is journalled (or, should the search already be over, not).
    let t0 = Instant::now();
    while child.try_wait().unwrap().is_none()
        && fs::read_to_string(dir.join("checkpoint.journal")).map_or(0, |s| s.lines().count()) < 1
    {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "no trial journalled"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = child.kill();
    child.wait().unwrap();
    let mut args = search_args(&data, d, "4");
    args.push("--resume");
    let resumed = ok_json(&nas(&args));
    let strip = |v: &Value| -> Vec<(Value, Value)> {
        let t = v["trials"].as_array().unwrap();
        t.iter()
            .map(|t| (t["arch"].clone(), t["loss"].clone()))
            .collect()
    };
    assert_eq!(strip(&resumed), strip(&reference));
}

/// `nas search --space rnn --strategy darts|darts2` runs DARTS on the recurrent supernet: per
/// epoch outputs, the derived cell in the DARTS recurrent format, which `nas train --space rnn`
/// then trains; methods the recurrent space lacks are usage errors.
#[test]
fn rnn_darts_search_then_train() {
    let tmp = tempfile::tempdir().unwrap();
    let data = small_text(tmp.path());
    for method in ["darts", "darts2"] {
        let dir = tmp.path().join(method);
        let d = dir.to_str().unwrap();
        let args = [
            "--json",
            "search",
            "--space",
            "rnn",
            "--strategy",
            method,
            "--data",
            &data,
            "--epochs",
            "2",
            "--limit-train",
            "20",
            "--channels",
            "8",
            "--batch-size",
            "4",
            "--out",
            d,
        ];
        let v = ok_json(&nas(&args));
        assert_eq!(v["method"], method, "{v}");
        assert_eq!(v["space"], "rnn");
        let history = v["history"].as_array().unwrap();
        assert_eq!(history.len(), 2);
        for e in history {
            assert!(e["train_loss"].as_f64().unwrap().is_finite(), "{e}");
            assert!(e["valid_loss"].as_f64().is_some(), "{e}");
            assert_eq!(e["arch"]["alpha_normal"].as_array().unwrap().len(), 36);
        }
        let g = fs::read_to_string(dir.join("genotype.txt")).unwrap();
        assert!(g.starts_with("Genotype(recurrent=[("), "{g}");
        assert_eq!(g.trim(), v["genotype"].as_str().unwrap());
        for f in [
            "epochs/epoch_000.json",
            "epochs/epoch_001.json",
            "history.json",
        ] {
            assert!(dir.join(f).exists(), "{f}");
        }
        let cell = format!("@{}", dir.join("genotype.txt").display());
        let t = ok_json(&nas(&[
            "--json",
            "train",
            "--space",
            "rnn",
            &cell,
            "--channels",
            "8",
            "--epochs",
            "1",
            "--data",
            &data,
            "--limit-train",
            "40",
            "--batch-size",
            "8",
        ]));
        assert!(t["test_bpc"].as_f64().unwrap() > 1.0, "{t}");
    }
    let o = nas(&[
        "search",
        "--space",
        "rnn",
        "--strategy",
        "gdas",
        "--data",
        &data,
        "--out",
        tmp.path().join("gdas").to_str().unwrap(),
    ]);
    bad_input(&o, "gdas");
    assert!(!tmp.path().join("gdas").exists());
}
