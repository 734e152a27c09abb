//! Regularised DARTS: beta-DARTS' regulariser gradient against a finite difference and its
//! closed form, beta-DARTS with lambda 0 is DARTS bit for bit (and lambda > 0 is not, from the
//! second epoch, as the schedule says), and DARTS+ stops at exactly the first epoch whose
//! derived cell meets its threshold, also after a checkpoint round trip.

use nas_search::data::{Dataset, digits_embedded};
use nas_search::oneshot::{Genotype, Method, OneShotConfig, OneShotSearch, SpaceKind};
use nas_space::nb201::{Nb201Cell, Nb201Op};
use nas_tensor::Tensor;

fn data() -> Dataset {
    let d = digits_embedded().unwrap().normalize().unwrap().train;
    d.subset(&(0..128).collect::<Vec<_>>()).unwrap()
}

fn tiny(method: Method, space: SpaceKind) -> OneShotConfig {
    let mut c = OneShotConfig::new(method, space);
    c.c = 4;
    c.layers = if space == SpaceKind::Darts { 3 } else { 1 };
    c.batch_size = 16;
    c.steps_per_epoch = Some(2);
    c.epochs = 3;
    c.seed = 5;
    c
}

/// Overwrites a `[rows, cols]` logit tensor.
fn set(t: &Tensor, rows: &[Vec<f32>]) {
    let shape = t.shape().to_vec();
    let v: Vec<f32> = rows.iter().flatten().copied().collect();
    t.copy_from(&Tensor::from_vec(v, &shape).unwrap()).unwrap();
}

fn grads(s: &OneShotSearch) -> Vec<Vec<f32>> {
    let a = s.arch();
    [Some(&a.normal), a.reduce.as_ref()]
        .into_iter()
        .flatten()
        .map(|t| t.grad().unwrap().unwrap().to_vec().unwrap())
        .collect()
}

/// Deterministic, clearly non-uniform logits.
fn logits(rows: usize, cols: usize, salt: usize) -> Vec<Vec<f32>> {
    (0..rows)
        .map(|e| {
            (0..cols)
                .map(|k| (((e * 7 + k * 3 + salt) % 11) as f32 - 5.0) * 0.3)
                .collect()
        })
        .collect()
}

#[test]
fn beta_regulariser_gradient_matches_finite_difference_and_closed_form() {
    let d = data();
    for space in [SpaceKind::Nb201, SpaceKind::Darts] {
        let mut s = OneShotSearch::new(tiny(Method::BetaDarts, space), &d).unwrap();
        let (e, k) = (space.num_edges(), space.num_ops());
        let tensors: Vec<Tensor> = {
            let a = s.arch();
            [Some(a.normal.clone()), a.reduce.clone()]
                .into_iter()
                .flatten()
                .collect()
        };
        for (i, t) in tensors.iter().enumerate() {
            set(t, &logits(e, k, i));
        }
        let lambda = 3.0f32;
        let (_, vb) = s.batch_pair(0).unwrap();
        s.arch_grad_first_order(&vb).unwrap();
        let g0 = grads(&s);
        s.add_beta_regulariser_grad(lambda).unwrap();
        let g1 = grads(&s);
        for (ti, t) in tensors.iter().enumerate() {
            let base = t.to_vec().unwrap();
            for idx in [0, 1, k + 2, (e - 1) * k + k - 1, (e / 2) * k + 3] {
                let added = (g1[ti][idx] - g0[ti][idx]) as f64;
                // closed form: lambda / edges * softmax(alpha_edge)
                let row = &base[(idx / k) * k..(idx / k + 1) * k];
                let z: f64 = row.iter().map(|&x| (x as f64).exp()).sum();
                let closed = lambda as f64 / e as f64 * (base[idx] as f64).exp() / z;
                assert!(
                    (added - closed).abs() < 1e-5,
                    "{space:?} tensor {ti} [{idx}]: added {added}, closed form {closed}"
                );
                // central finite difference of the regulariser's value
                let h = 1e-2f32;
                let f = |delta: f32| -> (f64, f64) {
                    let mut v = base.clone();
                    v[idx] += delta;
                    let actual = v[idx] as f64 - base[idx] as f64;
                    t.copy_from(&Tensor::from_vec(v, t.shape()).unwrap())
                        .unwrap();
                    (s.beta_regulariser(lambda).unwrap(), actual)
                };
                let (fp, dp) = f(h);
                let (fm, dm) = f(-h);
                t.copy_from(&Tensor::from_vec(base.clone(), t.shape()).unwrap())
                    .unwrap();
                let fd = (fp - fm) / (dp - dm);
                assert!(
                    (added - fd).abs() < 1e-4 * (1.0 + fd.abs()),
                    "{space:?} tensor {ti} [{idx}]: added {added}, finite difference {fd}"
                );
            }
        }
    }
}

fn run(mut s: OneShotSearch, epochs: usize) -> OneShotSearch {
    for _ in 0..epochs {
        s.run_epoch().unwrap();
    }
    s
}

fn weights_bits(s: &OneShotSearch) -> Vec<u32> {
    let mut v: Vec<u32> = Vec::new();
    for t in s.weights() {
        v.extend(t.to_vec().unwrap().iter().map(|x| x.to_bits()));
    }
    for t in s.arch().tensors() {
        v.extend(t.to_vec().unwrap().iter().map(|x| x.to_bits()));
    }
    v
}

#[test]
fn beta_darts_with_lambda_zero_is_darts_bit_for_bit() {
    let d = data();
    let space = SpaceKind::Nb201;
    let darts = run(
        OneShotSearch::new(tiny(Method::Darts1, space), &d).unwrap(),
        3,
    );
    let mut c = tiny(Method::BetaDarts, space);
    c.beta_lambda = 0.0;
    let beta0 = run(OneShotSearch::new(c.clone(), &d).unwrap(), 3);
    assert_eq!(weights_bits(&darts), weights_bits(&beta0));
    for (a, b) in darts.history().iter().zip(beta0.history()) {
        assert_eq!(a.arch, b.arch);
        assert_eq!(a.train_loss.to_bits(), b.train_loss.to_bits());
        assert_eq!(b.beta_lambda, Some(0.0));
    }
    // lambda_max 5: epoch 0 has lambda 0 (still DARTS), epochs 1 and 2 have 2.5 and 5.
    c.beta_lambda = 5.0;
    let beta = run(OneShotSearch::new(c, &d).unwrap(), 3);
    let lams: Vec<Option<f32>> = beta.history().iter().map(|r| r.beta_lambda).collect();
    assert_eq!(lams, vec![Some(0.0), Some(2.5), Some(5.0)]);
    assert_eq!(darts.history()[0].arch, beta.history()[0].arch);
    assert_ne!(darts.history()[1].arch, beta.history()[1].arch);
    // its gradient is positive everywhere: the logits end lower than DARTS' on average
    let mean = |s: &OneShotSearch| -> f64 {
        let a = &s.history()[2].arch.alpha_normal;
        a.iter().flatten().map(|&x| x as f64).sum::<f64>() / (a.len() * a[0].len()) as f64
    };
    assert!(
        mean(&beta) < mean(&darts) - 1e-4,
        "{} {}",
        mean(&beta),
        mean(&darts)
    );
    assert!(darts.history()[0].beta_lambda.is_none());
}

#[test]
fn bad_regularised_settings_are_errors() {
    let d = data();
    let mut c = tiny(Method::BetaDarts, SpaceKind::Nb201);
    c.beta_lambda = -1.0;
    let e = OneShotSearch::new(c.clone(), &d).err().unwrap().to_string();
    assert!(e.contains("lambda"), "{e}");
    c.beta_lambda = f32::NAN;
    assert!(OneShotSearch::new(c, &d).is_err());
    let mut c = tiny(Method::DartsPlus, SpaceKind::Nb201);
    for t in [0, 7] {
        c.plus_threshold = Some(t);
        let e = OneShotSearch::new(c.clone(), &d).err().unwrap().to_string();
        assert!(e.contains("threshold"), "{e}");
    }
    assert_eq!(Method::parse("beta-darts").unwrap(), Method::BetaDarts);
    assert_eq!(Method::parse("darts-plus").unwrap(), Method::DartsPlus);
    assert_eq!(Method::DartsPlus.name(), "darts-plus");
}

/// NB201 logits that derive `ops` (10 on the chosen op, 0 elsewhere).
fn nb201_logits(ops: [Nb201Op; 6]) -> Vec<Vec<f32>> {
    ops.iter()
        .map(|op| {
            let mut r = vec![0.0; 5];
            r[op.index()] = 10.0;
            r
        })
        .collect()
}

#[test]
fn darts_plus_stops_at_the_first_epoch_meeting_the_threshold_nb201() {
    use Nb201Op::*;
    let d = data();
    let mut c = tiny(Method::DartsPlus, SpaceKind::Nb201);
    c.epochs = 6;
    assert_eq!(c.plus_threshold_or_default(), 3);
    let mut s = OneShotSearch::new(c.clone(), &d).unwrap();
    // 2 parameter-free ops (none, avg_pool), 2 again (skip, none), then 3 (skip, avg, none)
    let cells = [
        [
            None, NorConv3x3, AvgPool3x3, NorConv1x1, NorConv3x3, NorConv3x3,
        ],
        [
            SkipConnect,
            NorConv3x3,
            NorConv3x3,
            None,
            NorConv1x1,
            NorConv3x3,
        ],
        [
            SkipConnect,
            AvgPool3x3,
            NorConv3x3,
            None,
            NorConv1x1,
            NorConv3x3,
        ],
    ];
    for (epoch, ops) in cells.iter().enumerate() {
        assert!(!s.is_done());
        set(&s.arch().normal, &nb201_logits(*ops));
        let rec = s.run_epoch().unwrap();
        assert_eq!(rec.genotype, Genotype::Nb201(Nb201Cell::new(*ops)));
        if epoch < 2 {
            assert!(rec.stop_reason.is_none(), "epoch {epoch}");
        } else {
            let why = rec.stop_reason.clone().unwrap();
            assert!(why.contains("3 parameter-free ops"), "{why}");
        }
    }
    assert!(s.is_done() && s.stopped_early());
    assert_eq!(s.history().len(), 3);
    assert!(s.step().is_err());
    // the stop survives a checkpoint round trip
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("checkpoint.bin");
    s.save_checkpoint(&p).unwrap();
    let r = OneShotSearch::load_checkpoint(&p, &c, &d).unwrap();
    assert!(r.is_done());
    assert_eq!(r.history(), s.history());
    // plain DARTS on the same cells does not stop
    let mut plain = OneShotSearch::new(tiny(Method::Darts1, SpaceKind::Nb201), &d).unwrap();
    set(&plain.arch().normal, &nb201_logits(cells[2]));
    assert!(plain.run_epoch().unwrap().stop_reason.is_none());
    assert!(!plain.is_done());
}

#[test]
fn darts_plus_counts_skip_connections_of_the_darts_normal_cell() {
    let d = data();
    let mut c = tiny(Method::DartsPlus, SpaceKind::Darts);
    c.epochs = 4;
    let mut s = OneShotSearch::new(c, &d).unwrap();
    // Columns: none, max, avg, skip, sep3, sep5, dil3, dil5. Every edge prefers sep_conv_3x3;
    // `skip_edges` of node 2's two edges prefer skip_connect instead.
    let normal = |skip_edges: usize| -> Vec<Vec<f32>> {
        (0..14)
            .map(|e| {
                let mut r = vec![0.0; 8];
                r[if e < skip_edges { 3 } else { 4 }] = 10.0;
                r
            })
            .collect()
    };
    // the reduction cell all skip connections: not counted
    let reduce: Vec<Vec<f32>> = (0..14)
        .map(|_| {
            let mut r = vec![0.0; 8];
            r[3] = 10.0;
            r
        })
        .collect();
    set(s.arch().reduce.as_ref().unwrap(), &reduce);
    set(&s.arch().normal, &normal(1));
    let rec = s.run_epoch().unwrap();
    assert_eq!(OneShotConfig::plus_count(&rec.genotype), 1);
    assert!(rec.stop_reason.is_none() && !s.is_done());
    set(&s.arch().normal, &normal(2));
    let rec = s.run_epoch().unwrap();
    assert_eq!(OneShotConfig::plus_count(&rec.genotype), 2);
    let why = rec.stop_reason.unwrap();
    assert!(why.contains("2 skip connections"), "{why}");
    assert!(s.is_done());
    assert_eq!(s.epoch(), 2);
}
