//! Derivation rules, a tiny real search, outputs, and resume after a real SIGKILL.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use nas_search::data::{Dataset, digits_embedded};
use nas_search::oneshot::{
    CHECKPOINT_FILE, Genotype, Method, OneShotConfig, OneShotError, OneShotSearch, SpaceKind,
    checkpoint_progress, derive_darts_cell, derive_nb201_cell, run_oneshot, run_oneshot_observed,
};
use nas_space::darts::DartsOp;
use nas_space::nb201::{Nb201Cell, Nb201Op};

fn digits() -> Dataset {
    digits_embedded().unwrap().normalize().unwrap().train
}

/// A 14 x 8 matrix with every entry `base`.
fn darts_matrix(base: f32) -> Vec<Vec<f32>> {
    vec![vec![base; 8]; 14]
}

#[test]
fn darts_rule_on_hand_made_weights() {
    // Columns: none, max, avg, skip, sep3, sep5, dil3, dil5.
    let mut w = darts_matrix(0.01);
    // Node 2 (edges 0: from 0, 1: from 1). Edge 0 is dominated by `none` but still kept (only
    // two inputs): its best real op is dil_conv_5x5. Edge 1 is stronger, so it comes first.
    w[0] = vec![0.9, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01, 0.05];
    w[1] = vec![0.1, 0.6, 0.1, 0.05, 0.05, 0.04, 0.03, 0.03];
    // Node 3 (edges 2, 3, 4 from 0, 1, 2): a three-way tie of scores -> inputs 0 and 1 (lower
    // first); within edge 2 a tie between sep_conv_3x3 and dil_conv_5x5 -> sep_conv_3x3.
    w[2] = vec![0.0, 0.1, 0.1, 0.1, 0.3, 0.1, 0.0, 0.3];
    w[3] = vec![0.0, 0.1, 0.1, 0.3, 0.1, 0.1, 0.2, 0.1];
    w[4] = vec![0.0, 0.3, 0.1, 0.1, 0.1, 0.1, 0.2, 0.1];
    // Node 4 (edges 5..9 from 0..3): edge 6 has a dominant none (0.99) and a tiny best op,
    // edge 8 and edge 5 carry the largest real weights.
    w[5] = vec![0.2, 0.0, 0.0, 0.0, 0.0, 0.4, 0.0, 0.0];
    w[6] = vec![0.99, 0.0, 0.0, 0.0, 0.0, 0.0, 0.001, 0.0];
    w[7] = vec![0.5, 0.0, 0.0, 0.2, 0.0, 0.0, 0.0, 0.0];
    w[8] = vec![0.1, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.7];
    // Node 5 (edges 9..13 from 0..4): edge 13 (from node 4) wins with avg_pool; then edge 10.
    for r in 9..14 {
        w[r] = vec![0.3, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05];
    }
    w[13][2] = 0.5;
    w[10][3] = 0.2;
    let cell = derive_darts_cell(&w).unwrap();
    use DartsOp::*;
    assert_eq!(
        cell.nodes,
        [
            [(MaxPool3x3, 1), (DilConv5x5, 0)],
            [(SepConv3x3, 0), (SkipConnect, 1)],
            [(DilConv5x5, 3), (SepConv5x5, 0)],
            [(AvgPool3x3, 4), (SkipConnect, 1)],
        ]
    );
    // All equal: the first two inputs and the first real op everywhere.
    let cell = derive_darts_cell(&darts_matrix(0.125)).unwrap();
    for (k, node) in cell.nodes.iter().enumerate() {
        assert_eq!(*node, [(MaxPool3x3, 0), (MaxPool3x3, 1)], "node {k}");
    }
    // Bad shapes and NaN are errors, not panics.
    assert!(matches!(
        derive_darts_cell(&darts_matrix(0.1)[..13]),
        Err(OneShotError::Config(_))
    ));
    let mut nan = darts_matrix(0.1);
    nan[3][4] = f32::NAN;
    let e = derive_darts_cell(&nan).unwrap_err().to_string();
    assert!(e.contains("NaN") && e.contains("edge 3"), "{e}");
}

#[test]
fn nb201_rule_on_hand_made_weights() {
    // Columns: none, skip, conv1x1, conv3x3, avg_pool.
    let w = vec![
        vec![0.6, 0.1, 0.1, 0.1, 0.1],   // dominant none -> none
        vec![0.1, 0.3, 0.3, 0.2, 0.1],   // tie skip / conv1x1 -> skip (first)
        vec![0.1, 0.1, 0.1, 0.6, 0.1],   // conv3x3
        vec![0.2, 0.2, 0.2, 0.2, 0.2],   // all equal -> none (first)
        vec![0.0, 0.0, 0.0, 0.1, 0.9],   // avg pool
        vec![0.1, 0.1, 0.7, 0.05, 0.05], // conv1x1
    ];
    use Nb201Op::*;
    assert_eq!(
        derive_nb201_cell(&w).unwrap(),
        Nb201Cell::new([None, SkipConnect, NorConv3x3, None, AvgPool3x3, NorConv1x1])
    );
    assert!(derive_nb201_cell(&w[..5]).is_err());
    let mut bad = w.clone();
    bad[2].push(0.0);
    assert!(derive_nb201_cell(&bad).is_err());
}

/// The harness name of this module's test `f`: its module path without the crate (the tests
/// of a crate are modules of one binary, `tests/it/main.rs`).
fn test_name(f: &str) -> String {
    match module_path!().split_once("::") {
        Some((_, m)) => format!("{m}::{f}"),
        None => f.to_string(),
    }
}

fn tiny_config(method: Method, space: SpaceKind) -> OneShotConfig {
    let mut c = OneShotConfig::new(method, space);
    c.c = 4;
    c.layers = if space == SpaceKind::Darts { 3 } else { 1 };
    c.batch_size = 32;
    c.seed = 3;
    c
}

/// A short search on the real digits lowers the loss on the architecture half, moves the
/// architecture weights and writes every output.
#[test]
fn tiny_search_learns_and_writes_outputs() {
    let data = digits();
    for (method, space, epochs) in [
        (Method::Darts1, SpaceKind::Nb201, 3),
        (Method::Gdas, SpaceKind::Nb201, 6),
        (Method::Darts1, SpaceKind::Darts, 2),
        (Method::PcDarts, SpaceKind::Nb201, 3),
    ] {
        let mut cfg = tiny_config(method, space);
        cfg.epochs = epochs;
        cfg.steps_per_epoch = Some(12);
        cfg.a_lr = 3e-3;
        let mut s = OneShotSearch::new(cfg.clone(), &data).unwrap();
        let (loss0, acc0) = s.evaluate_valid().unwrap();
        let alpha0 = s.arch().snapshot().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let out = run_oneshot(&cfg, &data, dir.path(), false).unwrap();
        let last = out.history.last().unwrap();
        let (loss1, acc1) = (last.valid_loss.unwrap(), last.valid_acc.unwrap());
        eprintln!(
            "{method:?} {space:?}: valid loss {loss0:.3} -> {loss1:.3}, acc {acc0:.3} -> {acc1:.3}, genotype {}",
            out.genotype
        );
        let first = &out.history[0];
        eprintln!(
            "  train loss {:.3} -> {:.3}, architecture-step loss {:.3} -> {:.3}",
            first.train_loss, last.train_loss, first.search_loss, last.search_loss
        );
        if method == Method::Gdas {
            // GDAS trains sampled networks (temperature 10 -> 0.1 over 6 epochs): the loss of
            // the sampled networks on the architecture half falls; the argmax network it is
            // evaluated with at the end has seen few steps.
            assert!(
                last.search_loss < first.search_loss - 0.15
                    && last.train_loss < first.train_loss - 0.15,
                "{method:?}/{space:?}: {first:?} -> {last:?}"
            );
        } else {
            assert!(
                loss1 < loss0 - 0.3 && acc1 > acc0 + 0.2,
                "{method:?}/{space:?}: loss {loss0} -> {loss1}, acc {acc0} -> {acc1}"
            );
        }
        let moved = alpha0
            .alpha_normal
            .iter()
            .flatten()
            .zip(out.arch.alpha_normal.iter().flatten())
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            moved > 5e-3,
            "{method:?}/{space:?}: alphas moved only {moved}"
        );
        assert_eq!(out.history.len(), epochs);
        for (e, r) in out.history.iter().enumerate() {
            assert_eq!(r.epoch, e);
            assert_eq!(r.steps, 12);
            let f = dir.path().join(format!("epochs/epoch_{e:03}.json"));
            let j: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
            assert_eq!(
                j["arch"]["alpha_normal"].as_array().unwrap().len(),
                space.num_edges()
            );
            assert!(j["genotype"].is_object());
        }
        if space == SpaceKind::Nb201 {
            assert!(last.nb201_cifar10_test.unwrap() > 0.0);
            assert!(matches!(out.genotype, Genotype::Nb201(_)));
        } else {
            assert!(matches!(out.genotype, Genotype::Darts(_)));
        }
        let svg = std::fs::read_to_string(dir.path().join("alphas.svg")).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("skip_connect"));
        let g = std::fs::read_to_string(dir.path().join("genotype.txt")).unwrap();
        assert_eq!(g.trim(), out.genotype.to_string());
        if method == Method::Gdas {
            assert!(out.history[0].tau.unwrap() > out.history.last().unwrap().tau.unwrap());
        }
    }
}

fn resume_config(method: Method, space: SpaceKind) -> OneShotConfig {
    let mut cfg = tiny_config(method, space);
    cfg.epochs = 3;
    cfg.steps_per_epoch = Some(5);
    cfg.checkpoint_every = 1;
    cfg.eval_each_epoch = false;
    // SPOS / RSWS: a short path search after training
    cfg.candidates = 10;
    cfg.bn_batches = 2;
    cfg
}

const CHILD_ENV: &str = "NAS_ONESHOT_KILL_CHILD";

/// The child half of the kill test: runs a slowed search that checkpoints every step until the
/// parent kills it.
#[test]
#[ignore]
fn oneshot_kill_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (method, space, dir) = {
        let p: Vec<&str> = spec.splitn(3, ':').collect();
        (
            Method::parse(p[0]).unwrap(),
            SpaceKind::parse(p[1]).unwrap(),
            p[2].to_string(),
        )
    };
    let cfg = resume_config(method, space);
    let _ = run_oneshot_observed(&cfg, &digits(), Path::new(&dir), false, &mut |_| {
        std::thread::sleep(Duration::from_millis(150))
    });
}

/// Resume after SIGKILL equals an uninterrupted run bit for bit (final checkpoint bytes:
/// weights, BN statistics, architecture weights, optimizer states, generator, history).
#[test]
fn resume_after_sigkill_is_bit_identical() {
    let data = digits();
    for (method, space) in [
        (Method::Darts2, SpaceKind::Nb201),
        (Method::Gdas, SpaceKind::Nb201),
        (Method::Darts1, SpaceKind::Darts),
        (Method::Spos, SpaceKind::Nb201),
        (Method::RandomWs, SpaceKind::Darts),
        (Method::PcDarts, SpaceKind::Darts),
        (Method::Enas, SpaceKind::Nb201),
        (Method::Enas, SpaceKind::Darts),
    ] {
        let cfg = resume_config(method, space);
        let full = tempfile::tempdir().unwrap();
        let a = run_oneshot(&cfg, &data, full.path(), false).unwrap();

        let killed = tempfile::tempdir().unwrap();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                &test_name("oneshot_kill_child"),
                "--ignored",
                "--nocapture",
            ])
            .env(
                CHILD_ENV,
                format!(
                    "{}:{}:{}",
                    method.name(),
                    space.name(),
                    killed.path().display()
                ),
            )
            .spawn()
            .unwrap();
        let ckpt = killed.path().join(CHECKPOINT_FILE);
        let t0 = Instant::now();
        // Kill in the middle of epoch 1.
        let at = loop {
            if let Ok(p) = checkpoint_progress(&ckpt)
                && p.global_step >= 7
            {
                break p;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(120),
                "child made no progress"
            );
            assert!(
                child.try_wait().unwrap().is_none(),
                "child exited before the kill"
            );
            std::thread::sleep(Duration::from_millis(5));
        };
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        assert!(!status.success());
        let p = checkpoint_progress(&ckpt).unwrap();
        assert!(
            p.global_step >= at.global_step && p.global_step < 15,
            "{p:?}"
        );
        assert!(p.step_in_epoch > 0 || p.epoch > 0);

        let b = run_oneshot(&cfg, &data, killed.path(), true).unwrap();
        assert_eq!(b.resumed_from_step, Some(p.global_step));
        assert_eq!(b.steps_run, 15 - p.global_step);
        let bits =
            |v: &Vec<Vec<f32>>| -> Vec<u32> { v.iter().flatten().map(|x| x.to_bits()).collect() };
        assert_eq!(
            bits(&a.arch.alpha_normal),
            bits(&b.arch.alpha_normal),
            "{method:?}"
        );
        assert_eq!(
            a.arch.alpha_reduce.as_ref().map(bits),
            b.arch.alpha_reduce.as_ref().map(bits)
        );
        assert_eq!(a.genotype, b.genotype);
        assert_eq!(a.paths, b.paths, "{method:?}: path searches differ");
        assert_eq!(a.paths.is_some(), method.samples_paths());
        let ca = std::fs::read(full.path().join(CHECKPOINT_FILE)).unwrap();
        let cb = std::fs::read(ckpt).unwrap();
        assert!(ca == cb, "{method:?}/{space:?}: final checkpoints differ");
        eprintln!(
            "{method:?}/{space:?}: killed at step {}, resumed, identical",
            p.global_step
        );
    }
}

#[test]
fn resume_refuses_other_settings_and_missing_checkpoint() {
    let data = digits();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = resume_config(Method::Darts1, SpaceKind::Nb201);
    let e = run_oneshot(&cfg, &data, dir.path(), true).unwrap_err();
    assert!(matches!(e, OneShotError::Checkpoint { .. }), "{e}");
    cfg.epochs = 1;
    cfg.steps_per_epoch = Some(2);
    run_oneshot(&cfg, &data, dir.path(), false).unwrap();
    let mut other = cfg.clone();
    other.w_lr = 0.05;
    let e = run_oneshot(&other, &data, dir.path(), true)
        .unwrap_err()
        .to_string();
    assert!(e.contains("other settings"), "{e}");
    // The message names the field that differs, not two JSON blobs.
    assert!(e.contains("w_lr 0.025 (this search: 0.05)"), "{e}");
    assert!(!e.contains("epochs"), "{e}");
    // How often checkpoints are written is not a setting of the search.
    let mut cadence = cfg.clone();
    cadence.checkpoint_every = 7;
    run_oneshot(&cadence, &data, dir.path(), true).unwrap();
    // More epochs extend a finished search (fewer are refused).
    let mut longer = cfg.clone();
    longer.epochs = 2;
    let out = run_oneshot(&longer, &data, dir.path(), true).unwrap();
    assert_eq!(out.resumed_from_step, Some(2));
    assert_eq!(out.steps_run, 2);
    assert_eq!(out.history.len(), 2);
    let e = run_oneshot(&cfg, &data, dir.path(), true)
        .unwrap_err()
        .to_string();
    assert!(e.contains("epochs 2 (this search: 1)"), "{e}");
    // A corrupted checkpoint is detected.
    let ckpt = dir.path().join(CHECKPOINT_FILE);
    let mut bytes = std::fs::read(&ckpt).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 0x40;
    std::fs::write(&ckpt, &bytes).unwrap();
    assert!(run_oneshot(&cfg, &data, dir.path(), true).is_err());
}

#[test]
fn bad_settings_are_errors() {
    let data = digits();
    let mut cfg = tiny_config(Method::Gdas, SpaceKind::Darts);
    cfg.tau_min = 0.0;
    assert!(matches!(
        OneShotSearch::new(cfg, &data),
        Err(OneShotError::Config(_))
    ));
    let mut cfg = tiny_config(Method::Darts1, SpaceKind::Darts);
    cfg.layers = 2;
    assert!(OneShotSearch::new(cfg, &data).is_err());
    let mut cfg = tiny_config(Method::Darts1, SpaceKind::Nb201);
    cfg.train_portion = 1.0;
    assert!(OneShotSearch::new(cfg, &data).is_err());
    assert!(Method::parse("nas").is_err());
    assert_eq!(Method::parse("enas").unwrap(), Method::Enas);
    assert!(SpaceKind::parse("nb101").is_err());
}
