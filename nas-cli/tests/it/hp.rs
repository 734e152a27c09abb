//! `nas search --hp`: bad specs are usage errors, and the best trial's values are flags
//! `nas train` takes.

use crate::common::{fails, nas, ok_json};

#[test]
fn bad_hp_specs_exit_2_naming_hp() {
    for (spec, want) in [
        ("batch=32.5|64", "\"32.5\" is not a positive integer"),
        ("foo=1..2", "unknown hyperparameter \"foo\""),
        ("lr=0.2..0.1", "not below"),
    ] {
        let o = nas(&["search", "--hp", spec, "-n", "1"]);
        let err = fails(&o, 2);
        assert!(err.contains("--hp") && err.contains(want), "{spec}: {err}");
    }
    let o = nas(&[
        "search",
        "--hp",
        "lr=0.05|0.1",
        "--evaluator",
        "nb201-table",
    ]);
    let err = fails(&o, 2);
    assert!(err.contains("--hp") && err.contains("nb201-table"), "{err}");
}

#[test]
fn the_best_values_train_with_nas_train() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let d = dir.to_str().unwrap();
    let hp = "lr=0.05|0.1,batch=16|32";
    let common = ["--epochs", "1", "--limit-train", "32", "--channels", "2"];
    let mut args = vec!["--json", "search", "--hp", hp, "-n", "2", "--out", d];
    args.extend(common);
    let v = ok_json(&nas(&args));
    let flags = v["train_flags"].as_str().unwrap().to_string();
    assert!(
        flags.starts_with("--lr 0.") && flags.contains(" --batch-size "),
        "{flags}"
    );
    // the values are recorded next to each architecture, and resumed with the search
    for t in v["trials"].as_array().unwrap() {
        let arch = t["arch"].as_str().unwrap();
        assert!(
            arch.contains(" [lr=0.") && arch.contains(",batch="),
            "{arch}"
        );
    }
    let settings = std::fs::read_to_string(dir.join("settings.json")).unwrap();
    assert!(
        settings.contains(&format!("\"hp\": \"{hp}\"")),
        "{settings}"
    );
    let best = format!("@{}", dir.join("best.txt").display());
    let mut args = vec!["--json", "train", &best, "--cells", "1"];
    args.extend(common);
    args.extend(flags.split(' '));
    let t = ok_json(&nas(&args));
    assert!(t.is_object(), "{t}");
}
