//! `nas search --search-dataset D --report all`: the NAS-Bench-201 paper's protocol on the table,
//! its outputs, and its usage errors (exit 2, naming the options).

use crate::common::{events, fails, nas, ok_json};
use nas_search::tabular::Nb201Table;

#[test]
fn paper_protocol_reports_all_three_datasets_of_the_chosen_cell() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    let v = ok_json(&nas(&[
        "--json",
        "search",
        "--evaluator",
        "nb201-table",
        "--strategy",
        "rea",
        "-n",
        "30",
        "--seed",
        "2",
        "--search-dataset",
        "cifar10",
        "--report",
        "all",
        "--out",
        dir.to_str().unwrap(),
    ]));
    let t = Nb201Table::embedded().unwrap();
    let row_of = |v: &serde_json::Value| {
        let arch = v["best"]["arch"].as_str().unwrap();
        t.rows()
            .iter()
            .find(|r| r.cell.to_string() == arch)
            .unwrap()
            .clone()
    };
    let row = row_of(&v);
    let want = serde_json::json!({
        "cifar10": row.test_200[0],
        "cifar100": row.test_200[1],
        "imagenet16-120": row.test_200[2],
    });
    assert_eq!(v["best"]["reported_test"], want);
    assert_eq!(v["best"]["valid_accuracy"], row.valid_12[0]);
    // The same in the run's files: summary.json and the end event.
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["best"]["reported_test"], want);
    let end = events(&dir).into_iter().last().unwrap();
    assert_eq!(end["event"], "end");
    assert_eq!(end["best"]["reported_test"], want);
    // The settings are kept for --resume.
    let settings = std::fs::read_to_string(dir.join("settings.json")).unwrap();
    assert!(
        settings.contains("\"report\"") && settings.contains("\"search_dataset\""),
        "{settings}"
    );
    let resumed = ok_json(&nas(&[
        "--json",
        "search",
        "--resume",
        "-n",
        "35",
        "--out",
        dir.to_str().unwrap(),
    ]));
    assert_eq!(resumed["trials"].as_array().unwrap().len(), 35);
    let row = row_of(&resumed);
    assert_eq!(
        resumed["best"]["reported_test"]["cifar100"],
        row.test_200[1]
    );
    // The text summary names them too.
    let o = nas(&[
        "search",
        "--evaluator",
        "nb201-table",
        "--strategy",
        "random",
        "-n",
        "5",
        "--report",
        "cifar100,imagenet16-120",
        "--out",
        tmp.path().join("q").to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{text}");
    assert!(
        text.contains("reported test accuracy: cifar100 ") && text.contains("imagenet16-120 "),
        "{text}"
    );
}

#[test]
fn protocol_flags_refuse_bad_values_with_usage_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let o = tmp.path().join("x");
    let o = o.to_str().unwrap();
    let table = [
        "search",
        "--evaluator",
        "nb201-table",
        "-n",
        "3",
        "--out",
        o,
    ];
    let with = |extra: &[&str], base: &[&str]| {
        let mut v: Vec<&str> = base.to_vec();
        v.extend_from_slice(extra);
        nas(&v)
    };
    for (extra, want) in [
        (&["--search-dataset", "svhn"][..], "--search-dataset"),
        (&["--table-dataset", "svhn"][..], "--table-dataset"),
        (&["--report", "cifar10,mnist"][..], "--report"),
        (
            &["--table-dataset", "cifar100", "--search-dataset", "cifar10"][..],
            "--table-dataset cifar100",
        ),
    ] {
        let err = fails(&with(extra, &table), 2);
        assert!(err.contains(want), "{extra:?}: {err}");
        assert!(!std::path::Path::new(o).exists(), "{extra:?} wrote {o}");
    }
    let err = fails(
        &with(
            &["--table-dataset", "cifar100", "--search-dataset", "cifar10"],
            &table,
        ),
        2,
    );
    assert!(err.contains("--search-dataset cifar10"), "{err}");
    // The same data set under both names is no conflict.
    ok_json(&with(
        &[
            "--json",
            "--table-dataset",
            "ImageNet16-120",
            "--search-dataset",
            "imagenet16-120",
        ],
        &table,
    ));
    // A training search has no table: both options are refused, naming them.
    for (extra, want) in [
        (&["--search-dataset", "cifar10"][..], "--search-dataset"),
        (&["--report", "all"][..], "--report"),
    ] {
        let dir = tmp.path().join("t");
        let err = fails(&with(extra, &["search", "--out", dir.to_str().unwrap()]), 2);
        assert!(err.contains(want) && err.contains("nb201-table"), "{err}");
    }
}
