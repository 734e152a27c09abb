//! Data-parallel DARTS on the threads communicator (the arithmetic of an MPI run, tested
//! without MPI): one rank is the single-process run bit for bit; two ranks, each on its half
//! of every batch, equal one rank on the whole batch with synchronised batch norm; only rank 0
//! writes, and a resumed two-rank run equals an uninterrupted one.

use std::path::Path;
use std::sync::Arc;

use nas_search::data::{Dataset, digits_embedded};
use nas_search::dist::{Communicator, ThreadGroup};
use nas_search::oneshot::{
    CHECKPOINT_FILE, Method, OneShotConfig, OneShotOutcome, OneShotSearch, SpaceKind, run_oneshot,
    run_oneshot_parallel,
};
use nas_tensor::nn::Module;

fn digits() -> Dataset {
    digits_embedded().unwrap().normalize().unwrap().train
}

fn tiny(method: Method, space: SpaceKind, sync_bn: bool) -> OneShotConfig {
    let mut c = OneShotConfig::new(method, space);
    c.c = 4;
    c.layers = if space == SpaceKind::Darts { 3 } else { 1 };
    c.batch_size = 16;
    c.seed = 5;
    c.epochs = 2;
    c.steps_per_epoch = Some(3);
    c.a_lr = 3e-3;
    c.eval_each_epoch = false;
    c.sync_bn = sync_bn;
    c
}

/// Everything a step changes: weights and BN statistics, architecture weights.
fn state(s: &OneShotSearch) -> Vec<Vec<f32>> {
    let mut v: Vec<Vec<f32>> = s
        .supernet()
        .state_dict()
        .iter()
        .map(|(_, t)| t.to_vec().unwrap())
        .collect();
    for a in s.arch().tensors() {
        v.push(a.to_vec().unwrap());
    }
    v
}

/// Runs `steps` steps of a search over `ranks` threads (`None`: no communicator at all) and
/// returns each rank's state and (train loss, train acc) of the epoch record.
fn run_ranks(
    cfg: &OneShotConfig,
    data: &Dataset,
    ranks: Option<usize>,
) -> Vec<(Vec<Vec<f32>>, f64, f64)> {
    let one = |comm: Option<Arc<dyn Communicator>>| {
        let mut s = OneShotSearch::new(cfg.clone(), data).unwrap();
        if let Some(c) = comm {
            s = s.with_communicator(c).unwrap();
        }
        let rec = s.run_epoch().unwrap();
        (state(&s), rec.train_loss, rec.train_acc)
    };
    match ranks {
        None => vec![one(None)],
        Some(n) => {
            let group = ThreadGroup::new(n);
            std::thread::scope(|sc| {
                let hs: Vec<_> = group
                    .into_iter()
                    .map(|c| sc.spawn(move || one(Some(Arc::new(c) as Arc<dyn Communicator>))))
                    .collect();
                hs.into_iter().map(|h| h.join().unwrap()).collect()
            })
        }
    }
}

fn max_rel_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    assert_eq!(a.len(), b.len());
    let mut m = 0.0f32;
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x.len(), y.len());
        for (p, q) in x.iter().zip(y) {
            m = m.max((p - q).abs() / (1.0 + q.abs()));
        }
    }
    m
}

#[test]
fn one_rank_is_the_single_process_run_bit_for_bit() {
    let data = digits();
    for (space, sync) in [
        (SpaceKind::Nb201, false),
        (SpaceKind::Nb201, true),
        (SpaceKind::Darts, false),
    ] {
        let cfg = tiny(Method::Darts1, space, sync);
        let alone = run_ranks(&cfg, &data, None);
        let one = run_ranks(&cfg, &data, Some(1));
        assert_eq!(alone[0].0, one[0].0, "{space:?} sync {sync}: state");
        assert_eq!(alone[0].1.to_bits(), one[0].1.to_bits());
        assert_eq!(alone[0].2.to_bits(), one[0].2.to_bits());
    }
}

/// With synchronised batch norm, two ranks on the halves of every batch take the steps one
/// rank takes on the whole batch; the gradient sums differ only in float rounding.
#[test]
fn two_ranks_with_sync_bn_equal_one_rank_on_the_whole_batch() {
    let data = digits();
    for (method, space, batch) in [
        (Method::Darts1, SpaceKind::Nb201, 16),
        (Method::Darts1, SpaceKind::Nb201, 15), // shards of 7 and 8, weighted by size
        (Method::Darts1, SpaceKind::Darts, 16),
        (Method::PcDarts, SpaceKind::Nb201, 16),
    ] {
        let mut cfg = tiny(method, space, true);
        cfg.batch_size = batch;
        let one = run_ranks(&cfg, &data, Some(1));
        let two = run_ranks(&cfg, &data, Some(2));
        // every rank holds the same state, the one-rank state within float tolerance (measured:
        // at most 1.1e-7 relative after 3 steps; 2.8e-2 without sync BN)
        assert_eq!(two[0].0, two[1].0, "ranks diverged");
        let d = max_rel_diff(&two[0].0, &one[0].0);
        assert!(
            d < 1e-5,
            "{method:?} {space:?} batch {batch}: max relative difference {d}"
        );
        // the epoch's loss and accuracy are the whole batch's
        assert!((two[0].1 - one[0].1).abs() < 1e-4 * one[0].1.abs().max(1.0));
        assert!((two[0].2 - one[0].2).abs() < 1e-9);
    }
}

/// Without synchronised batch norm each rank normalises its half by the half's statistics
/// (PyTorch DDP's default): a different function of the weights than batch norm over the
/// whole batch, so two ranks do not take one rank's steps. The weight and architecture
/// gradients are still averaged, so every rank keeps the same weights.
#[test]
fn two_ranks_without_sync_bn_differ_from_one_rank() {
    let data = digits();
    let cfg = tiny(Method::Darts1, SpaceKind::Nb201, false);
    let one = run_ranks(&cfg, &data, Some(1));
    let two = run_ranks(&cfg, &data, Some(2));
    let params = |s: &[Vec<f32>]| s.to_vec();
    let d = max_rel_diff(&params(&two[0].0), &params(&one[0].0));
    assert!(
        d > 1e-3,
        "per-shard statistics should change the steps, got {d}"
    );
    // weights and alphas agree across ranks; only BN running statistics are per rank
    let s = OneShotSearch::new(cfg.clone(), &data).unwrap();
    let names: Vec<String> = s
        .supernet()
        .state_dict()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    for (i, n) in names.iter().enumerate() {
        if !n.contains("running") {
            assert_eq!(two[0].0[i], two[1].0[i], "{n}");
        }
    }
}

#[test]
fn unusable_data_parallel_settings_are_refused() {
    let data = digits();
    let start = |cfg: OneShotConfig, n: usize| -> Vec<String> {
        let group = ThreadGroup::new(n);
        std::thread::scope(|sc| {
            let hs: Vec<_> = group
                .into_iter()
                .map(|c| {
                    let (cfg, data) = (cfg.clone(), &data);
                    sc.spawn(move || {
                        match OneShotSearch::new(cfg, data)
                            .unwrap()
                            .with_communicator(Arc::new(c))
                        {
                            Ok(_) => String::new(),
                            Err(e) => e.to_string(),
                        }
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        })
    };
    let e = start(tiny(Method::Gdas, SpaceKind::Nb201, false), 2);
    assert!(e[0].contains("gdas does not run data-parallel"), "{e:?}");
    let mut cfg = tiny(Method::Darts1, SpaceKind::Nb201, false);
    cfg.batch_size = 2;
    let e = start(cfg, 3);
    assert!(e[0].contains("3 ranks need at least 3 examples"), "{e:?}");
    // ranks started with different settings: the others refuse
    let group = ThreadGroup::new(2);
    let errs: Vec<String> = std::thread::scope(|sc| {
        let hs: Vec<_> = group
            .into_iter()
            .map(|c| {
                let data = &data;
                sc.spawn(move || {
                    let mut cfg = tiny(Method::Darts1, SpaceKind::Nb201, false);
                    cfg.seed += c.rank() as u64;
                    match OneShotSearch::new(cfg, data)
                        .unwrap()
                        .with_communicator(Arc::new(c))
                    {
                        Ok(_) => String::new(),
                        Err(e) => e.to_string(),
                    }
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(errs[0], "");
    assert!(
        errs[1].contains("rank 1 has other settings or data than rank 0"),
        "{errs:?}"
    );
}

/// Runs `run_oneshot_parallel` on `n` threads; rank r's directory is `dirs[r]`.
fn parallel(
    cfg: &OneShotConfig,
    data: &Dataset,
    dirs: &[&Path],
    resume: bool,
) -> Vec<OneShotOutcome> {
    let group = ThreadGroup::new(dirs.len());
    std::thread::scope(|sc| {
        let hs: Vec<_> = group
            .into_iter()
            .zip(dirs)
            .map(|(c, d)| {
                let (cfg, data) = (cfg.clone(), data);
                sc.spawn(move || {
                    run_oneshot_parallel(&cfg, data, d, resume, Arc::new(c), &mut |_| {}).unwrap()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

#[test]
fn only_rank_0_writes_and_a_resumed_run_equals_an_uninterrupted_one() {
    let data = digits();
    let mut cfg = tiny(Method::Darts1, SpaceKind::Nb201, false);
    cfg.eval_each_epoch = true;
    cfg.checkpoint_every = 2;
    let root = tempfile::tempdir().unwrap();
    let (a0, a1) = (root.path().join("a0"), root.path().join("a1"));
    let outs = parallel(&cfg, &data, &[&a0, &a1], false);
    assert!(a0.join(CHECKPOINT_FILE).exists() && a0.join("history.json").exists());
    assert!(!a1.exists(), "rank 1 wrote {}", a1.display());
    // every rank ends with the same record, rank 0's evaluation included
    assert_eq!(
        serde_json::to_string(&outs[0].history).unwrap(),
        serde_json::to_string(&outs[1].history).unwrap()
    );

    // an interrupted run: 4 of the 6 steps, rank 0's checkpoint, then --resume on two ranks
    let b0 = root.path().join("b0");
    std::fs::create_dir_all(&b0).unwrap();
    let group = ThreadGroup::new(2);
    std::thread::scope(|sc| {
        for c in group {
            let (cfg, data, b0) = (cfg.clone(), &data, &b0);
            sc.spawn(move || {
                let rank = c.rank();
                let mut s = OneShotSearch::new(cfg, data)
                    .unwrap()
                    .with_communicator(Arc::new(c))
                    .unwrap();
                s.run_epoch().unwrap();
                s.step().unwrap();
                if rank == 0 {
                    s.save_checkpoint(&b0.join(CHECKPOINT_FILE)).unwrap();
                }
            });
        }
    });
    let b1 = root.path().join("b1");
    let resumed = parallel(&cfg, &data, &[&b0, &b1], true);
    assert_eq!(resumed[0].resumed_from_step, Some(4));
    assert_eq!(resumed[1].resumed_from_step, Some(4));
    assert!(!b1.exists());
    for f in [CHECKPOINT_FILE, "history.json", "genotype.txt"] {
        assert_eq!(
            std::fs::read(a0.join(f)).unwrap(),
            std::fs::read(b0.join(f)).unwrap(),
            "{f}"
        );
    }

    // a two-rank run resumed where rank 0 has no checkpoint: both ranks fail, neither hangs
    let (c0, c1) = (root.path().join("c0"), root.path().join("c1"));
    let group = ThreadGroup::new(2);
    let errs: Vec<String> = std::thread::scope(|sc| {
        let hs: Vec<_> = group
            .into_iter()
            .zip([&c0, &c1])
            .map(|(c, d)| {
                let (cfg, data) = (cfg.clone(), &data);
                sc.spawn(move || {
                    run_oneshot_parallel(&cfg, data, d, true, Arc::new(c), &mut |_| {})
                        .unwrap_err()
                        .to_string()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(errs[0].contains("no checkpoint there"), "{errs:?}");
    assert!(
        errs[1].contains("rank 0 could not read the checkpoint"),
        "{errs:?}"
    );

    // and the single-process run with the same settings writes the same search as one rank
    let s = root.path().join("single");
    let single = run_oneshot(&cfg, &data, &s, false).unwrap();
    let one = root.path().join("one");
    let ones = parallel(&cfg, &data, &[&one], false);
    assert_eq!(single.genotype, ones[0].genotype);
    assert_eq!(
        std::fs::read(s.join(CHECKPOINT_FILE)).unwrap(),
        std::fs::read(one.join(CHECKPOINT_FILE)).unwrap()
    );
}
