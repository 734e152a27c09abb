//! Runs the built `nas` binary and checks its outputs and exit codes.

use super::common::{nas, stderr};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn nas_stdin(args: &[&str], input: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_nas"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run nas");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

/// Success with empty-or-not stdout; prints stderr on failure for diagnosis.
fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}, stderr: {}",
        o.status.code(),
        stderr(o)
    );
    stdout(o)
}

/// A user error: the given exit code, a one-line `nas: error:` message (or clap's `error:`), and
/// no panic or debug output.
fn fails(o: &Output, code: i32) -> String {
    let err = stderr(o);
    assert_eq!(
        o.status.code(),
        Some(code),
        "stdout: {} stderr: {err}",
        stdout(o)
    );
    assert!(err.contains("error:"), "{err}");
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "{err}"
    );
    assert!(
        !err.contains("Error {") && !err.contains("Os {"),
        "debug output: {err}"
    );
    err
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_str(&ok(o)).expect("valid JSON on stdout")
}

const CELL: &str =
    "|nor_conv_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|avg_pool_3x3~0|none~1|nor_conv_3x3~2|";

fn shipped(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../data")
        .join(rel)
}

// ------------------------------------------------------------------ help and globals

#[test]
fn help_lists_commands_and_each_has_examples() {
    let top = ok(&nas(&["--help"]));
    for c in [
        "search",
        "train",
        "bench",
        "space",
        "export",
        "data",
        "--json",
        "--quiet",
        "Examples:",
    ] {
        assert!(top.contains(c), "{c} missing from\n{top}");
    }
    for sub in [
        &["space", "--help"][..],
        &["export", "--help"],
        &["data", "--help"],
        &["search", "--help"],
        &["train", "--help"],
        &["bench", "--help"],
    ] {
        let h = ok(&nas(sub));
        assert!(h.contains("Examples:\n  nas "), "{sub:?}:\n{h}");
    }
    // Unknown commands are refused.
    fails(&nas(&["serch"]), 2);
    // No command: usage on stderr, exit 2.
    let o = nas(&[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("Usage: nas"), "{}", stderr(&o));
}

#[test]
fn quiet_silences_notes_but_not_results() {
    let loud = nas(&["space", "size"]);
    assert!(!stderr(&loud).is_empty());
    let quiet = nas(&["--quiet", "space", "size"]);
    assert_eq!(ok(&quiet).trim(), "15625");
    assert!(stderr(&quiet).is_empty(), "{}", stderr(&quiet));
}

// ------------------------------------------------------------------ nas space

#[test]
fn nb201_size_is_15625() {
    assert_eq!(
        ok(&nas(&["space", "--space", "nb201", "size"])).trim(),
        "15625"
    );
    let v = json(&nas(&["--json", "space", "--space", "nb201", "size"]));
    assert_eq!(v["size"], 15625);
    assert_eq!(v["decisions"], serde_json::json!([5, 5, 5, 5, 5, 5]));
    // --space also accepted after the action.
    assert_eq!(
        ok(&nas(&["space", "size", "--space", "nb201"])).trim(),
        "15625"
    );
    let e = fails(&nas(&["space", "--space", "imagenet", "size"]), 2);
    assert!(e.contains("imagenet"), "{e}");
}

#[test]
fn sampling_is_seeded_and_gives_valid_architectures() {
    let a = ok(&nas(&["space", "sample", "-n", "20", "--seed", "3"]));
    let b = ok(&nas(&["space", "sample", "-n", "20", "--seed", "3"]));
    let c = ok(&nas(&["space", "sample", "-n", "20", "--seed", "4"]));
    assert_eq!(a, b);
    assert_ne!(a, c);
    let lines: Vec<&str> = a.lines().collect();
    assert_eq!(lines.len(), 20);
    let distinct: std::collections::HashSet<&&str> = lines.iter().collect();
    assert!(
        distinct.len() > 15,
        "20 draws from 15,625 cells are almost all distinct"
    );
    for l in &lines {
        ok(&nas(&["space", "validate", l]));
    }
    let v = json(&nas(&[
        "--json", "space", "sample", "-n", "4", "--seed", "3",
    ]));
    let texts: Vec<&str> = v["archs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, lines[..4]);
    // JSON lines read back as the same cells.
    let j = ok(&nas(&[
        "space", "sample", "-n", "4", "--seed", "3", "--format", "json",
    ]));
    for (line, text) in j.lines().zip(&lines) {
        assert_eq!(
            ok(&nas(&["space", "convert", "--to", "text", line])).trim(),
            *text
        );
    }
}

#[test]
fn canonical_forms_merge_equivalent_cells() {
    // Node 1 feeds nothing when edges 1->2 and 1->3 are `none`, so its input edge does not matter.
    let a = "|none~0|+|none~0|none~1|+|nor_conv_3x3~0|none~1|none~2|";
    let b = "|avg_pool_3x3~0|+|none~0|none~1|+|nor_conv_3x3~0|none~1|none~2|";
    let c = "|none~0|+|none~0|none~1|+|nor_conv_1x1~0|none~1|none~2|";
    let ca = ok(&nas(&["space", "canonical", a]));
    assert_eq!(ca, ok(&nas(&["space", "canonical", b])));
    assert_ne!(ca, ok(&nas(&["space", "canonical", c])));
    assert_eq!(ca.trim(), "nor_conv_3x3(x)");
}

#[test]
fn neighbours_are_the_24_single_edge_changes() {
    let out = ok(&nas(&["-q", "space", "neighbours", CELL]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 24);
    let distinct: std::collections::HashSet<&&str> = lines.iter().collect();
    assert_eq!(distinct.len(), 24);
    for l in &lines {
        assert_eq!(ok(&nas(&["space", "distance", CELL, l])).trim(), "1");
    }
    assert!(!lines.contains(&CELL));
}

#[test]
fn convert_round_trips_through_files_and_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let j = ok(&nas(&["space", "convert", "--to", "json", CELL]));
    let v: serde_json::Value = serde_json::from_str(&j).unwrap();
    assert_eq!(v["ops"][0], "NorConv3x3");
    let f = dir.path().join("cell.json");
    std::fs::write(&f, &j).unwrap();
    let at = format!("@{}", f.display());
    assert_eq!(
        ok(&nas(&["space", "convert", "--to", "text", &at])).trim(),
        CELL
    );
    assert_eq!(
        ok(&nas_stdin(&["space", "convert", "--to", "text", "-"], &j)).trim(),
        CELL
    );
    let e = fails(
        &nas(&["space", "convert", "--to", "text", "@/no/such/cell.json"]),
        1,
    );
    assert!(e.contains("/no/such/cell.json"), "{e}");
}

#[test]
fn bad_architectures_exit_1_naming_the_problem() {
    let e = fails(
        &nas(&[
            "space",
            "--space",
            "nb201",
            "canonical",
            "|nor_conv_3x3~0|+|bogus_op~0|none~1|+|none~0|none~1|none~2|",
        ]),
        1,
    );
    assert!(
        e.contains("bad nb201 architecture") && e.contains("bogus_op"),
        "{e}"
    );
    assert!(e.contains("byte"), "{e}");
    let e = fails(&nas(&["space", "validate", "|none~0|+|none~0|none~1|"]), 1);
    assert!(e.contains("parse error"), "{e}");
    let e = fails(
        &nas(&["space", "convert", "--to", "text", r#"{"ops":["None"]}"#]),
        1,
    );
    assert!(e.contains("JSON"), "{e}");
}

// ------------------------------------------------------------------ nas export

#[test]
fn export_formats() {
    let j = ok(&nas(&["export", CELL]));
    let v: serde_json::Value = serde_json::from_str(&j).unwrap();
    assert_eq!(v["ops"].as_array().unwrap().len(), 6);
    assert_eq!(ok(&nas(&["export", "-f", "nb201", &j])).trim(), CELL);
    assert_eq!(
        ok(&nas(&["export", "-f", "text", "--space", "nb201", CELL])).trim(),
        CELL
    );

    let dot = ok(&nas(&["export", "--format", "dot", CELL]));
    assert!(dot.contains("digraph"));
    // Five non-`none` edges, each drawn once with its op.
    assert_eq!(dot.matches("->").count(), 5, "{dot}");
    assert!(dot.contains("n0 -> n3 [label=\"avg_pool_3x3\"]"), "{dot}");
    assert!(dot.contains("n1 -> n2 [label=\"skip_connect\"]"), "{dot}");
    assert!(
        !dot.contains("n1 -> n3"),
        "the none edge is not drawn: {dot}"
    );

    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("cell.dot");
    let o = nas(&["export", "-f", "dot", "-o", f.to_str().unwrap(), CELL]);
    assert!(ok(&o).is_empty());
    assert_eq!(std::fs::read_to_string(&f).unwrap(), dot);

    let v = json(&nas(&["--json", "export", "-f", "nb201", CELL]));
    assert_eq!(v["space"], "nb201");
    assert_eq!(v["content"].as_str().unwrap().trim(), CELL);

    let e = fails(&nas(&["export", "-f", "darts", CELL]), 1);
    assert!(e.contains("darts format"), "{e}");
    let e = fails(&nas(&["export", "not-an-architecture"]), 1);
    assert!(e.contains("not an architecture of any known space"), "{e}");
    fails(&nas(&["export", "-f", "png", CELL]), 2);
}

// ------------------------------------------------------------------ nas data

#[test]
fn data_info_on_the_embedded_sets() {
    let d = ok(&nas(&["data", "info", "digits"]));
    assert!(d.contains("examples:  1797 (train 1438, test 359)"), "{d}");
    assert!(d.contains("1x8x8"), "{d}");
    let v = json(&nas(&["--json", "data", "info"]));
    assert_eq!(v["examples"], 5000);
    assert_eq!(v["train"]["examples"], 4000);
    assert_eq!(v["shape"], serde_json::json!([1, 28, 28]));
    assert_eq!(v["num_classes"], 10);
    assert_eq!(v["class_names"][9], "Ankle boot");
    let v = json(&nas(&[
        "--json", "data", "info", "digits", "--valid", "0.25", "--seed", "5",
    ]));
    assert_eq!(v["valid"]["examples"], 360);
    assert_eq!(v["train"]["examples"], 1438 - 360);
    fails(&nas(&["data", "info", "digits", "--valid", "1.5"]), 2);
}

#[test]
fn data_info_reads_files_from_disk() {
    let dir = shipped("fashion-mnist");
    let spec = format!("fashion:{}", dir.display());
    let v = json(&nas(&["--json", "data", "info", &spec]));
    assert_eq!(v["examples"], 5000);
    assert_eq!(v["embedded"], false);
    let spec = format!("digits:{}", shipped("digits/digits.csv.gz").display());
    assert!(ok(&nas(&["data", "info", &spec])).contains("1797"));
}

/// Writes a CIFAR-10 directory into `dir` whose pixels are real Fashion-MNIST bytes.
fn cifar_dir(dir: &Path, per_file: usize) {
    let mut images = Vec::new();
    let gz = std::fs::File::open(shipped("fashion-mnist/train-4k-images-idx3-ubyte.gz")).unwrap();
    flate2::read::GzDecoder::new(gz)
        .read_to_end(&mut images)
        .unwrap();
    let pixels = &images[16..];
    let mut k = 0;
    let mut file = |name: &str, n: usize| {
        let mut rec = Vec::new();
        for _ in 0..n {
            rec.push((k % 10) as u8);
            rec.extend_from_slice(&pixels[k * 3072..(k + 1) * 3072]);
            k += 1;
        }
        std::fs::write(dir.join(name), rec).unwrap();
    };
    for i in 1..=5 {
        file(&format!("data_batch_{i}.bin"), per_file);
    }
    file("test_batch.bin", 2);
}

#[test]
fn data_info_on_cifar10_files_and_their_errors() {
    let dir = tempfile::tempdir().unwrap();
    cifar_dir(dir.path(), 3);
    let spec = format!("cifar10:{}", dir.path().display());
    let v = json(&nas(&["--json", "data", "info", &spec]));
    assert_eq!(v["examples"], 17);
    assert_eq!(v["shape"], serde_json::json!([3, 32, 32]));
    assert_eq!(v["class_names"][0], "airplane");

    let p = dir.path().join("test_batch.bin");
    let mut b = std::fs::read(&p).unwrap();
    b.truncate(b.len() - 10);
    std::fs::write(&p, &b).unwrap();
    let e = fails(&nas(&["data", "info", &spec]), 1);
    assert!(
        e.contains("test_batch.bin") && e.contains("truncated"),
        "{e}"
    );
}

#[test]
fn data_info_errors() {
    let e = fails(&nas(&["data", "info", "mnist:/no/such/dir"]), 1);
    assert!(
        e.contains("/no/such/dir") && e.contains("no such file"),
        "{e}"
    );
    let e = fails(&nas(&["data", "info", "imagenet:/x"]), 2);
    assert!(e.contains("unknown data set kind \"imagenet\""), "{e}");
    let e = fails(&nas(&["data", "info", "cifar10"]), 2);
    assert!(e.contains("cifar10:DIR"), "{e}");
    // A file whose magic is wrong: the digits CSV given as an MNIST directory's images.
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ] {
        std::fs::copy(shipped("digits/digits.csv.gz"), dir.path().join(name)).unwrap();
    }
    let e = fails(
        &nas(&["data", "info", &format!("mnist:{}", dir.path().display())]),
        1,
    );
    assert!(
        e.contains("train-images-idx3-ubyte") && e.contains("magic"),
        "{e}"
    );
}

// ------------------------------------------------------------------ DARTS

/// DARTS (second order) as published, in the original code's form with `range(2, 6)`.
const DARTS_V2_PY: &str = "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], normal_concat=range(2, 6), reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=range(2, 6))";

#[test]
fn darts_space_through_the_cli() {
    assert_eq!(
        ok(&nas(&["space", "--space", "darts", "size"])).trim(),
        "1076746950455072400"
    );
    let text = ok(&nas(&["export", "-f", "darts", DARTS_V2_PY]));
    assert!(
        text.starts_with("Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), "),
        "{text}"
    );
    assert!(text.contains("normal_concat=[2, 3, 4, 5]"), "{text}");
    // JSON round trip, space guessed from the JSON.
    let j = ok(&nas(&["export", DARTS_V2_PY]));
    assert_eq!(ok(&nas(&["export", "-f", "darts", &j])), text);
    // Swapping the two edges of a node leaves the canonical form unchanged.
    let swapped = DARTS_V2_PY.replacen(
        "('sep_conv_3x3', 1), ('skip_connect', 0)",
        "('skip_connect', 0), ('sep_conv_3x3', 1)",
        1,
    );
    assert_ne!(swapped, DARTS_V2_PY);
    let c1 = ok(&nas(&["space", "-s", "darts", "canonical", DARTS_V2_PY]));
    let c2 = ok(&nas(&["space", "-s", "darts", "canonical", &swapped]));
    assert_eq!(c1, c2);
    let n = ok(&nas(&[
        "-q",
        "space",
        "-s",
        "darts",
        "neighbours",
        DARTS_V2_PY,
    ]));
    assert_eq!(n.lines().count(), 120);

    let dot = ok(&nas(&["export", "-f", "dot", DARTS_V2_PY]));
    assert!(dot.contains("subgraph cluster_normal") && dot.contains("subgraph cluster_reduce"));
    // 2 x (8 op edges + 4 concat edges).
    assert_eq!(dot.matches("->").count(), 24, "{dot}");
    assert!(
        dot.contains("normal_n0 -> normal_n3 [label=\"dil_conv_3x3\"]"),
        "{dot}"
    );
    assert!(
        dot.contains("reduce_in0 -> reduce_n0 [label=\"max_pool_3x3\"]"),
        "{dot}"
    );

    let e = fails(&nas(&["export", "-f", "nb201", DARTS_V2_PY]), 1);
    assert!(
        e.contains("nb201 format cannot hold a DARTS genotype"),
        "{e}"
    );
    let bad = DARTS_V2_PY.replace("('dil_conv_3x3', 2)", "('dil_conv_3x3', 7)");
    let e = fails(&nas(&["space", "-s", "darts", "validate", &bad]), 1);
    assert!(e.contains("bad darts architecture"), "{e}");
    // Seeded sampling in the DARTS space.
    let a = ok(&nas(&[
        "space", "-s", "darts", "sample", "-n", "3", "--seed", "9",
    ]));
    assert_eq!(
        a,
        ok(&nas(&[
            "space", "-s", "darts", "sample", "-n", "3", "--seed", "9"
        ]))
    );
    assert_eq!(a.lines().count(), 3);
}

// ------------------------------------------------------------------ NAS-Bench-101

const NB101_A: &str = "ModelSpec(matrix=[[0, 1, 1, 0], [0, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 0]], ops=['input', 'conv3x3-bn-relu', 'maxpool3x3', 'output'])";
/// `NB101_A` with the two interior vertices swapped: the same graph up to relabelling.
const NB101_B: &str = "ModelSpec(matrix=[[0, 1, 1, 0], [0, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 0]], ops=['input', 'maxpool3x3', 'conv3x3-bn-relu', 'output'])";

#[test]
fn nb101_space_through_the_cli() {
    assert_eq!(
        ok(&nas(&["space", "--space", "nb101", "size"])).trim(),
        "423624"
    );
    let ca = ok(&nas(&["space", "-s", "nb101", "canonical", NB101_A]));
    assert_eq!(
        ca,
        ok(&nas(&["space", "-s", "nb101", "canonical", NB101_B]))
    );
    let other = NB101_A.replace("'maxpool3x3'", "'conv1x1-bn-relu'");
    assert_ne!(ca, ok(&nas(&["space", "-s", "nb101", "canonical", &other])));
    // Text -> JSON -> text, with the space guessed both ways.
    let j = ok(&nas(&["export", NB101_A]));
    assert_eq!(ok(&nas(&["export", "-f", "text", &j])).trim(), NB101_A);
    let dot = ok(&nas(&["export", "-f", "dot", NB101_A]));
    assert_eq!(dot.matches("->").count(), 4, "{dot}");
    assert!(
        dot.contains("v2 [label=\"maxpool3x3\"]") && dot.contains("v2 -> v3;"),
        "{dot}"
    );
    for n in ok(&nas(&["-q", "space", "-s", "nb101", "neighbours", NB101_A])).lines() {
        ok(&nas(&["space", "-s", "nb101", "validate", n]));
    }
    // A well-formed JSON value that is not a valid graph.
    let e = fails(
        &nas(&[
            "space",
            "-s",
            "nb101",
            "validate",
            r#"{"matrix":[[false,true],[false]],"ops":[]}"#,
        ]),
        1,
    );
    assert!(
        e.contains("bad nb101 architecture") && e.contains("row 1"),
        "{e}"
    );
    let e = fails(&nas(&["export", "-f", "darts", NB101_A]), 1);
    assert!(e.contains("NAS-Bench-101 graph"), "{e}");
}

// ------------------------------------------------------------------ chain

#[test]
fn chain_spaces_through_the_cli() {
    // CNN preset: 4 ops x 3 widths = 12 layer kinds, up to 6 layers: sum of 12^l, l = 1..=6.
    let cnn: u64 = (1..=6).map(|l| 12u64.pow(l)).sum();
    assert_eq!(
        ok(&nas(&["space", "-s", "chain", "size"])).trim(),
        cnn.to_string()
    );
    // MLP preset: 5 widths, up to 4 layers.
    let mlp: u64 = (1..=4).map(|l| 5u64.pow(l)).sum();
    assert_eq!(
        ok(&nas(&["space", "-s", "chain-mlp", "size"])).trim(),
        mlp.to_string()
    );

    let a = "conv3x3(32) -> conv3x3(32) -> sep_conv_5x5(64)";
    // Closed form of the space: (len + 1) K - len insertions + 2 runs removable + len * (3 + 2) changes.
    let n = ok(&nas(&["-q", "space", "-s", "chain", "neighbours", a]));
    assert_eq!(n.lines().count(), (4 * 12 - 3) + 2 + 3 * 5);
    assert!(n.lines().any(|l| l == "conv3x3(32) -> sep_conv_5x5(64)"));
    assert_eq!(
        ok(&nas(&[
            "space",
            "-s",
            "chain",
            "distance",
            a,
            "conv3x3(32) -> sep_conv_5x5(64)"
        ]))
        .trim(),
        "1"
    );
    let dot = ok(&nas(&["export", "-f", "dot", a]));
    assert_eq!(
        dot.matches("->").count() - 2,
        4,
        "4 edges plus the 2 arrows in the comment: {dot}"
    );
    assert!(dot.contains("l2 [label=\"sep_conv_5x5(64)\"]"), "{dot}");
    let j = ok(&nas(&["export", a]));
    assert_eq!(ok(&nas(&["export", "-f", "text", &j])).trim(), a);
    let e = fails(
        &nas(&["space", "-s", "chain", "validate", "conv3x3(33)"]),
        1,
    );
    assert!(e.contains("width 33"), "{e}");
    let e = fails(&nas(&["space", "-s", "chain", "validate", "dense(32)"]), 1);
    assert!(e.contains("op dense"), "{e}");
    // A dense chain is guessed to be in the MLP preset.
    let v = json(&nas(&[
        "--json",
        "export",
        "-f",
        "text",
        "dense(64) -> dense(16)",
    ]));
    assert_eq!(v["space"], "chain-mlp");
}

#[test]
fn mutate_encode_and_decode() {
    let walk = ok(&nas(&["space", "mutate", "-n", "5", "--seed", "1", CELL]));
    assert_eq!(
        walk,
        ok(&nas(&["space", "mutate", "-n", "5", "--seed", "1", CELL]))
    );
    let steps: Vec<&str> = walk.lines().collect();
    assert_eq!(steps.len(), 5);
    // Each step is one move from the previous one.
    let mut prev = CELL;
    for s in &steps {
        assert_eq!(ok(&nas(&["space", "distance", prev, s])).trim(), "1");
        prev = s;
    }
    // Encoding: the op index of each edge (none 0, skip 1, conv1x1 2, conv3x3 3, avg pool 4).
    assert_eq!(ok(&nas(&["space", "encode", CELL])).trim(), "3,2,1,4,0,3");
    assert_eq!(ok(&nas(&["space", "decode", "3,2,1,4,0,3"])).trim(), CELL);
    for space in ["darts", "nb101", "chain"] {
        let a = ok(&nas(&["space", "-s", space, "sample", "--seed", "4"]));
        let code = ok(&nas(&["space", "-s", space, "encode", a.trim()]));
        let back = ok(&nas(&["space", "-s", space, "decode", code.trim()]));
        assert_eq!(
            ok(&nas(&["space", "-s", space, "canonical", back.trim()])),
            ok(&nas(&["space", "-s", space, "canonical", a.trim()])),
            "{space}"
        );
    }
    let e = fails(&nas(&["space", "decode", "3,2,1,9,0,3"]), 1);
    assert!(e.contains("out of range"), "{e}");
    let e = fails(&nas(&["space", "decode", "3,x"]), 1);
    assert!(e.contains("\"x\""), "{e}");
}

/// `nas space --list` prints the library's space registry: every registered space, once, with
/// what it is; `--json` gives the same list.
#[test]
fn space_list_prints_the_registry() {
    let registry = nas_search::spaces::Registry::builtin();
    let text = ok(&nas(&["space", "--list"]));
    assert_eq!(text, registry.describe_spaces());
    assert_eq!(text.lines().count(), registry.names().len());
    for name in registry.names() {
        assert_eq!(
            text.lines()
                .filter(|l| l.split_whitespace().next() == Some(name))
                .count(),
            1,
            "{name}: {text}"
        );
    }
    let v = json(&nas(&["--json", "space", "--list"]));
    let names: Vec<&str> = v["spaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, registry.names());
    assert_eq!(v["spaces"][0]["size"], 15_625);
    // Neither an action nor --list: a usage error.
    let o = nas(&["space"]);
    assert_eq!(o.status.code(), Some(2));
}
