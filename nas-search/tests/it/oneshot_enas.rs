//! ENAS on the shared one-shot code: the controller's REINFORCE gradient against a finite
//! difference, a short search with its outputs, and the one-shot strategies' `key=value`
//! settings.

use nas_search::data::{Dataset, digits_embedded};
use nas_search::oneshot::{Method, OneShotConfig, OneShotSearch, SpaceKind, run_oneshot};
use nas_search::strategy::{ControllerConfig, LstmController};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn digits() -> Dataset {
    digits_embedded().unwrap().normalize().unwrap().train
}

/// `mean_i advantage_i * -log p(choices_i)` computed on the host from the controller's
/// step-by-step distributions (no graph, f64 sums): the objective the finite difference is
/// taken of.
fn objective(c: &LstmController, batch: &[(Vec<usize>, f64)]) -> f64 {
    let mut total = 0.0;
    for (choices, a) in batch {
        let mut lp = 0.0;
        for d in 0..choices.len() {
            lp += c.distribution_after(&choices[..d]).unwrap()[choices[d]].ln();
        }
        total += a * -lp;
    }
    total / batch.len() as f64
}

/// The gradient of the REINFORCE loss (one teacher-forced pass of the fused LSTM, backward)
/// equals a central finite difference of the same objective computed by stepping the LSTM cell
/// on the host, for entries of every parameter tensor, on a fixed batch of samples with
/// advantages of both signs.
#[test]
fn controller_gradient_matches_finite_difference_of_reinforce_objective() {
    let config = ControllerConfig {
        hidden: 6,
        init_seed: 3,
        tanh_constant: 2.5,
        temperature: 1.0,
        ..ControllerConfig::default()
    };
    let c = LstmController::new(config, &[3, 4, 2, 5]).unwrap();
    // Larger weights than the ±0.1 initialisation, so that the gradients are not tiny.
    let mut rng = ChaCha8Rng::seed_from_u64(17);
    for p in c.parameters() {
        let v: Vec<f32> = (0..p.numel())
            .map(|_| rng.random_range(-0.8f32..0.8))
            .collect();
        p.set_data(&v).unwrap();
    }
    let batch: Vec<(Vec<usize>, f64)> = [1.5, -0.7, 0.9, -1.2, 0.4]
        .iter()
        .map(|&a| (c.sample(&mut rng).unwrap(), a))
        .collect();
    for p in c.parameters() {
        p.zero_grad();
    }
    let loss = c.reinforce_loss(&batch).unwrap();
    let host = objective(&c, &batch);
    assert!(
        (loss.item().unwrap() as f64 - host).abs() < 1e-4 * host.abs().max(1.0),
        "graph {} vs host {host}",
        loss.item().unwrap()
    );
    loss.backward().unwrap();
    let eps = 2e-3f32;
    let (mut checked, mut big) = (0, 0);
    for (pi, p) in c.parameters().iter().enumerate() {
        let g = p
            .grad()
            .unwrap()
            .expect("every parameter is used")
            .to_vec()
            .unwrap();
        let v0 = p.to_vec().unwrap();
        // a few entries of each tensor, spread over it
        let picks: Vec<usize> = (0..4).map(|k| (k * 7919 + pi * 31) % v0.len()).collect();
        for &i in &picks {
            let mut v = v0.clone();
            v[i] = v0[i] + eps;
            p.set_data(&v).unwrap();
            let up = objective(&c, &batch);
            v[i] = v0[i] - eps;
            p.set_data(&v).unwrap();
            let down = objective(&c, &batch);
            p.set_data(&v0).unwrap();
            let fd = (up - down) / (2.0 * eps as f64);
            let an = g[i] as f64;
            assert!(
                (an - fd).abs() <= 2e-3 + 0.03 * fd.abs(),
                "parameter {pi} entry {i}: backward {an} vs finite difference {fd}"
            );
            checked += 1;
            if fd.abs() > 1e-2 {
                big += 1;
            }
        }
    }
    // the comparison is not vacuous: most checked entries have a clear gradient
    assert!(
        big * 2 > checked,
        "{big} of {checked} entries with |gradient| > 0.01"
    );
    // The step's advantages are taken against the bias-corrected moving average, updated
    // by each reward first (momentum 0.9 here).
    let mut c = c;
    let samples: Vec<(Vec<usize>, f64)> = batch.iter().map(|(ch, a)| (ch.clone(), *a)).collect();
    let adv = c.reinforce_step(&samples).unwrap();
    assert_eq!(adv.len(), samples.len());
    assert!(adv[0].abs() < 1e-12, "{adv:?}");
    let (r0, r1) = (samples[0].1, samples[1].1);
    let b1 = (0.9 * 0.1 * r0 + 0.1 * r1) / (0.9 * 0.1 + 0.1);
    assert!((adv[1] - (r1 - b1)).abs() < 1e-12, "{adv:?}");
}

fn enas_config(space: SpaceKind) -> OneShotConfig {
    let mut c = OneShotConfig::new(Method::Enas, space);
    c.c = 4;
    c.layers = if space == SpaceKind::Darts { 3 } else { 1 };
    c.batch_size = 32;
    c.seed = 5;
    c.bn_batches = 2;
    c.candidates = 12;
    c
}

/// A short ENAS run on the real digits: the shared weights learn, the controller is trained
/// (its distribution moves) while the architecture weights are untouched, every epoch's cell is
/// the best of the controller's samples, and the outputs are written.
#[test]
fn enas_trains_controller_and_weights_and_writes_outputs() {
    let data = digits();
    for (space, epochs) in [(SpaceKind::Nb201, 4), (SpaceKind::Darts, 1)] {
        let mut cfg = enas_config(space);
        cfg.epochs = epochs;
        cfg.steps_per_epoch = Some(25);
        cfg.ctrl_lr = 0.02;
        let s = OneShotSearch::new(cfg.clone(), &data).unwrap();
        let alpha0 = s.arch().snapshot().unwrap();
        let p0 = s.controller().unwrap().distribution_after(&[0]).unwrap();
        let st0 = s.controller().unwrap().state().unwrap();
        let spe = s.steps_per_epoch() as u64;
        drop(s);
        let dir = tempfile::tempdir().unwrap();
        let out = run_oneshot(&cfg, &data, dir.path(), false).unwrap();
        assert_eq!(out.arch, alpha0, "ENAS must not train architecture weights");
        assert_eq!(out.history.len(), epochs);
        let last = out.history.last().unwrap();
        let p = out.paths.as_ref().expect("the derivation's samples");
        assert_eq!(p.method, "enas");
        assert_eq!(p.candidates.len(), 12);
        let best = &p.candidates[p.best];
        assert!(p.candidates.iter().all(|c| c.valid_acc <= best.valid_acc));
        assert_eq!(out.genotype, best.genotype);
        // the final derivation is the last epoch's (same trained state, same generator)
        assert_eq!(last.genotype, out.genotype);
        assert!(dir.path().join("candidates.json").exists());
        assert!(dir.path().join("epochs/epoch_000.json").exists());
        let g = std::fs::read_to_string(dir.path().join("genotype.txt")).unwrap();
        assert_eq!(g.trim(), out.genotype.to_string());
        // the controller was trained: rebuild it from the checkpoint and compare
        let resumed = OneShotSearch::load_checkpoint(
            &dir.path().join(nas_search::oneshot::CHECKPOINT_FILE),
            &cfg,
            &data,
        )
        .unwrap();
        let ctrl = resumed.controller().unwrap();
        assert_ne!(ctrl.state().unwrap().params, st0.params);
        assert_eq!(
            ctrl.state().unwrap().adam.params[0].as_ref().unwrap().step,
            epochs as u64 * spe,
            "one controller step per search step"
        );
        let p1 = ctrl.distribution_after(&[0]).unwrap();
        eprintln!(
            "{space:?}: second decision after choice 0: {p0:?} -> {p1:?}; epoch cells {:?}; valid acc {:?}",
            out.history
                .iter()
                .map(|r| r.genotype.to_string())
                .collect::<Vec<_>>(),
            out.history.iter().map(|r| r.valid_acc).collect::<Vec<_>>()
        );
        assert_ne!(p0, p1);
        if space == SpaceKind::Nb201 {
            // 10 classes: chance is 0.1
            assert!(last.valid_acc.unwrap() > 0.3, "{last:?}");
            assert!(last.nb201_cifar10_test.is_some());
            assert!(p.spearman_vs_table.is_some());
        }
    }
}

/// `name:key=value` settings of the one-shot strategies: known keys set their field, unknown
/// keys and bad values are refused naming the key.
#[test]
fn one_shot_settings_by_key() {
    let mut c = OneShotConfig::new(Method::BetaDarts, SpaceKind::Nb201);
    c.apply_setting("lambda", "5").unwrap();
    assert_eq!(c.beta_lambda, 5.0);
    let e = c.apply_setting("lambda", "-1").unwrap_err().to_string();
    assert!(e.contains("lambda") && e.contains("-1"), "{e}");
    assert_eq!(c.beta_lambda, 5.0, "a refused value leaves the setting");
    let e = c.apply_setting("lambda", "abc").unwrap_err().to_string();
    assert!(e.contains("lambda"), "{e}");
    let e = c.apply_setting("threshold", "2").unwrap_err().to_string();
    assert!(
        e.contains("unknown setting \"threshold\"") && e.contains("lambda"),
        "{e}"
    );

    let mut c = OneShotConfig::new(Method::DartsPlus, SpaceKind::Nb201);
    c.apply_setting("threshold", "4").unwrap();
    assert_eq!(c.plus_threshold, Some(4));
    assert!(c.apply_setting("threshold", "7").is_err());
    c.apply_setting("threshold", "null").unwrap();
    assert_eq!(c.plus_threshold, None);

    let mut c = OneShotConfig::new(Method::PcDarts, SpaceKind::Nb201);
    c.apply_setting("k", "2").unwrap();
    assert_eq!(c.pc_k, 2);
    let e = c.apply_setting("k", "3").unwrap_err().to_string();
    assert!(e.contains("setting k"), "{e}");
    let e = c.apply_setting("k", "2.5").unwrap_err().to_string();
    assert!(e.contains("setting k"), "{e}");

    let mut c = OneShotConfig::new(Method::Enas, SpaceKind::Darts);
    c.apply_setting("ctrl_lr", "0.01").unwrap();
    c.apply_setting("entropy_weight", "0.001").unwrap();
    c.apply_setting("samples", "3").unwrap();
    assert_eq!(
        (c.ctrl_lr, c.ctrl_entropy_weight, c.ctrl_samples),
        (0.01, 0.001, 3)
    );
    assert!(c.apply_setting("baseline_decay", "1").is_err());
    assert!(c.apply_setting("samples", "0").is_err());
    assert!(c.apply_setting("lambda", "1").is_err());
    // every method's keys are accepted with their own default value
    for m in [
        Method::Darts1,
        Method::Darts2,
        Method::Gdas,
        Method::PcDarts,
        Method::BetaDarts,
        Method::DartsPlus,
        Method::Spos,
        Method::RandomWs,
        Method::Enas,
    ] {
        let mut c = OneShotConfig::new(m, SpaceKind::Nb201);
        let before = c.clone();
        let j = serde_json::to_value(&c).unwrap();
        for (key, field, _) in OneShotConfig::settings_of(m) {
            c.apply_setting(key, &j[field].to_string()).unwrap();
        }
        assert_eq!(c, before, "{m:?}");
    }
}
