//! `nas search` and data-parallel runs, without MPI: a build without the `mpi` feature started
//! by an MPI launcher refuses to run; `--sync-bn` belongs to one-shot searches. (Two MPI ranks
//! against one: `scripts/mpi-check.sh`; the data-parallel arithmetic: nas-search's
//! `oneshot_dist` tests.)

use crate::common::{fails, nas, ok_json};

const TINY: [&str; 14] = [
    "search",
    "--strategy",
    "darts",
    "--space",
    "nb201",
    "--epochs",
    "1",
    "--channels",
    "4",
    "--cells",
    "1",
    "--limit-train",
    "64",
    "--json",
];

#[cfg(not(feature = "mpi"))]
#[test]
fn several_launcher_ranks_without_the_mpi_feature_are_refused_before_writing() {
    use std::process::Command;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    for (var, val) in [("OMPI_COMM_WORLD_SIZE", "2"), ("PMI_SIZE", "4")] {
        let o = Command::new(env!("CARGO_BIN_EXE_nas"))
            .args(TINY)
            .args(["-o", out.to_str().unwrap()])
            .env(var, val)
            .output()
            .unwrap();
        let e = fails(&o, 1);
        assert!(e.contains("built without the `mpi` feature"), "{e}");
        assert!(!out.exists(), "a refused run wrote {}", out.display());
    }
    // a launcher of one rank is an ordinary run
    let o = Command::new(env!("CARGO_BIN_EXE_nas"))
        .args(TINY)
        .args(["-o", out.to_str().unwrap()])
        .env("OMPI_COMM_WORLD_SIZE", "1")
        .output()
        .unwrap();
    ok_json(&o);
}

#[test]
fn sync_bn_is_a_one_shot_setting_and_is_saved_for_resume() {
    let o = nas(&[
        "search",
        "--space",
        "nb201",
        "--strategy",
        "random",
        "--sync-bn",
        "-n",
        "1",
    ]);
    let e = fails(&o, 2);
    assert!(
        e.contains("--sync-bn applies to data-parallel one-shot searches"),
        "{e}"
    );
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mut args: Vec<&str> = TINY.to_vec();
    args.extend(["--sync-bn", "-o", out.to_str().unwrap()]);
    ok_json(&nas(&args));
    let settings = std::fs::read_to_string(out.join("settings.json")).unwrap();
    assert!(settings.contains("\"sync_bn\""), "{settings}");
    // and resumed (a finished search: nothing to run, same settings accepted)
    ok_json(&nas(&[
        "search",
        "--resume",
        "-o",
        out.to_str().unwrap(),
        "--json",
    ]));
}
