//! `nas search --objectives` and `--max-params`/`--max-flops`: the front printed and written,
//! limits honoured, a resumed multi-objective search equal to an uninterrupted one, bad values
//! refused naming the flag, with the exit code of every malformed flag value (2, as clap's).

use crate::common::{fails, nas, ok_json};
use std::fs;

fn table_search(extra: &[&str]) -> std::process::Output {
    let mut v = vec!["--json", "search", "--evaluator", "nb201-table"];
    v.extend_from_slice(extra);
    nas(&v)
}

#[test]
fn nsga2_writes_its_front_and_keeps_the_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("m");
    let d = dir.to_str().unwrap();
    let r = ok_json(&table_search(&[
        "--strategy",
        "nsga2",
        "--objectives",
        "acc,params",
        "--max-params",
        "4e5",
        "-n",
        "60",
        "--seed",
        "4",
        "--out",
        d,
    ]));
    let trials = r["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 60);
    assert!(trials.iter().all(|t| t["params"].as_f64().unwrap() <= 4e5));
    let front: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(dir.join("front.json")).unwrap()).unwrap();
    assert_eq!(front, r["front"]);
    let members = front["front"].as_array().unwrap();
    assert!(!members.is_empty());
    // The front is exactly the non-dominated trials, by increasing cost and accuracy.
    for t in trials {
        let (a, c) = (
            t["valid_accuracy"].as_f64().unwrap(),
            t["params"].as_f64().unwrap(),
        );
        let dominated = trials.iter().any(|u| {
            let (b, e) = (
                u["valid_accuracy"].as_f64().unwrap(),
                u["params"].as_f64().unwrap(),
            );
            b >= a && e <= c && (b > a || e < c)
        });
        let on_front = members.iter().any(|m| m["trial"] == t["id"]);
        assert_eq!(on_front, !dominated, "trial {}", t["id"]);
    }
    for w in members.windows(2) {
        assert!(w[0]["cost"].as_f64() <= w[1]["cost"].as_f64());
        assert!(w[0]["valid_accuracy"].as_f64() < w[1]["valid_accuracy"].as_f64());
    }
    assert_eq!(front["reference"][1].as_f64(), Some(4e5));
    // NSGA-II's children of small parents are often larger: some were rejected.
    assert!(r["rejected"].as_u64().unwrap() > 0, "{}", r["rejected"]);
    let hv = front["hypervolume"].as_f64().unwrap();
    assert!(hv > 0.0 && hv < 1.0, "{hv}");
    let svg = fs::read_to_string(dir.join("front.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("#b0b0b0") && svg.contains("Pareto front"));
    // The text summary prints the front.
    let text = nas(&[
        "search",
        "--evaluator",
        "nb201-table",
        "--strategy",
        "pareto",
        "-n",
        "30",
        "--out",
        tmp.path().join("t").to_str().unwrap(),
    ]);
    assert!(text.status.success());
    let out = String::from_utf8_lossy(&text.stdout);
    assert!(out.contains("Pareto front (acc,params;"), "{out}");
}

#[test]
fn a_resumed_multi_objective_search_equals_an_uninterrupted_one() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let base = [
        "--strategy",
        "nsga2",
        "--objectives",
        "acc,flops",
        "--max-flops",
        "60M",
        "--seed",
        "2",
    ];
    let run = |extra: &[&str]| {
        let mut v = base.to_vec();
        v.extend_from_slice(extra);
        ok_json(&table_search(&v))
    };
    run(&["-n", "25", "--out", a.to_str().unwrap()]);
    // --resume takes the objectives and limits from settings.json.
    let resumed = ok_json(&nas(&[
        "--json",
        "search",
        "--resume",
        "--out",
        a.to_str().unwrap(),
        "-n",
        "70",
    ]));
    let whole = run(&["-n", "70", "--out", b.to_str().unwrap()]);
    assert_eq!(resumed["resumed"], true);
    assert_eq!(resumed["front"], whole["front"]);
    let strip = |v: &serde_json::Value| -> Vec<(String, String)> {
        v["trials"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| (t["arch"].to_string(), t["flops"].to_string()))
            .collect()
    };
    assert_eq!(strip(&resumed), strip(&whole));
}

#[test]
fn bad_objectives_and_limits_are_usage_errors_naming_the_flag() {
    for (flag, bad) in [
        ("--objectives", "acc,latency,params"),
        ("--objectives", "latency,flops"),
        ("--max-latency-ms", "0"),
        ("--max-latency-ms", "-2"),
        ("--max-latency-ms", "nan"),
        ("--max-latency-ms", "fast"),
        ("--objectives", "acc"),
        ("--objectives", "params,flops"),
        ("--max-params", "-1"),
        ("--max-params", "lots"),
        ("--max-flops", "0"),
        ("--max-flops", "nan"),
    ] {
        let arg = format!("{flag}={bad}");
        let err = fails(&table_search(&["--strategy", "nsga2", &arg]), 2);
        assert!(err.contains(flag), "{flag} {bad}: {err}");
    }
}

#[test]
fn a_latency_search_writes_a_front_with_a_latency_axis() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("l");
    let r = ok_json(&table_search(&[
        "--strategy",
        "nsga2",
        "--objectives",
        "acc,latency",
        "--max-latency-ms",
        "1e3",
        "-n",
        "12",
        "--out",
        dir.to_str().unwrap(),
    ]));
    let trials = r["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 12);
    assert!(trials.iter().all(|t| {
        t["latency_ms"]
            .as_f64()
            .is_some_and(|v| v > 0.0 && v <= 1e3)
    }));
    let front: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(dir.join("front.json")).unwrap()).unwrap();
    assert_eq!(front["objectives"], "acc,latency");
    assert!(!front["front"].as_array().unwrap().is_empty());
    let svg = fs::read_to_string(dir.join("front.svg")).unwrap();
    assert!(svg.contains("latency (ms"), "no latency axis label");
    let table: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(dir.join("latency_table.json")).unwrap()).unwrap();
    assert_eq!(table["key"]["settings"]["threads"], 1);
    // A corrupt table in the directory is an error naming it, not a panic.
    fs::write(dir.join("latency_table.json"), "{ truncated").unwrap();
    let out = nas(&[
        "search",
        "--resume",
        "--out",
        dir.to_str().unwrap(),
        "-n",
        "14",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("latency_table.json"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
