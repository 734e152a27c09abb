//! DARTS on the recurrent space: the supernet against the standalone cell, the first- and
//! second-order architecture gradients against finite differences, derivation, and resume
//! after a real SIGKILL.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use nas_search::data::text::{TextCorpus, TextSpec};
use nas_search::nets::rnn::{RNN_EDGES, RnnDropout, RnnSupernet, rnn_edge_offset};
use nas_search::oneshot::{
    CHECKPOINT_FILE, Genotype, Method, OneShotConfig, OneShotNet, OneShotSearch, SpaceKind,
    TextBatch, checkpoint_progress, derive_rnn_cell, run_oneshot_on,
};
use nas_space::rnn::{DARTS_V1_RNN, DARTS_V2_RNN, RnnActivation, RnnGenotype};
use nas_tensor::nn::{Module, TokenWindows};
use nas_tensor::{Tensor, no_grad};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The shipped corpus with its training part cut to `keep` characters.
fn corpus(keep: usize) -> TextCorpus {
    let mut c = TextSpec::Shakespeare.load(64).unwrap();
    c.train.truncate(keep);
    c
}

fn test_name(f: &str) -> String {
    match module_path!().split_once("::") {
        Some((_, m)) => format!("{m}::{f}"),
        None => f.to_string(),
    }
}

/// One-hot mixing weights `[36, 5]` selecting `g`.
fn one_hot(g: &RnnGenotype) -> Tensor {
    let mut v = vec![0.0f32; RNN_EDGES * 5];
    for (k, &(a, j)) in g.nodes.iter().enumerate() {
        v[(rnn_edge_offset(k + 1) + j) * 5 + 1 + a.index()] = 1.0;
    }
    Tensor::from_vec(v, &[RNN_EDGES, 5]).unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// With one-hot architecture weights the supernet computes the standalone network of that
/// genotype holding the same weights: the same logits, end state and weight gradients (dropout
/// on, masks from equal generators); other mixing weights compute something else.
#[test]
fn one_hot_supernet_is_the_standalone_cell() {
    let c = corpus(2000);
    let v = c.vocab.len();
    let net = RnnSupernet::new(v, 8, RnnDropout::default(), 5, false).unwrap();
    // weights of order 1, so that every node matters
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for p in net.parameters() {
        let x = Tensor::randn_with(p.shape(), &mut rng).scale(0.5);
        p.set_data(&x.to_vec().unwrap()).unwrap();
    }
    let w = TokenWindows::new(&c.train, 3, 6).unwrap().next().unwrap();
    let h0 = Tensor::randn_with(&[3, 8], &mut rng).scale(0.3);
    let mut last_logits = Vec::new();
    for g in [DARTS_V2_RNN, DARTS_V1_RNN] {
        let lm = net.standalone(&g).unwrap();
        for p in net.parameters() {
            p.zero_grad();
        }
        let (ls, ss) = net
            .window_loss(
                &w,
                std::slice::from_ref(&h0),
                &mut ChaCha8Rng::seed_from_u64(3),
                &one_hot(&g),
            )
            .unwrap();
        let (ll, sl) = lm
            .window_loss(
                &w,
                std::slice::from_ref(&h0),
                &mut ChaCha8Rng::seed_from_u64(3),
            )
            .unwrap();
        let (a, b) = (ls.item().unwrap(), ll.item().unwrap());
        assert!((a - b).abs() <= 1e-6 * b.abs(), "{g}: loss {a} vs {b}");
        let d = max_diff(&ss[0].to_vec().unwrap(), &sl[0].to_vec().unwrap());
        assert!(d <= 1e-6, "{g}: end states differ by {d}");
        ls.backward().unwrap();
        ll.backward().unwrap();
        let theirs = lm.named_parameters();
        let mut compared = 0;
        for (name, p) in net.named_parameters() {
            let q = &theirs.iter().find(|(n, _)| *n == name).unwrap().1;
            let (gp, gq) = (p.grad_vec().unwrap(), q.grad_vec().unwrap());
            let (gp, gq) = (gp.unwrap(), gq.unwrap());
            let scale = gq.iter().fold(0.0f32, |m, x| m.max(x.abs()));
            let d = max_diff(&gp, &gq);
            assert!(
                d <= 1e-5 * scale.max(1e-3),
                "{g}: {name} grads differ by {d}"
            );
            compared += 1;
        }
        assert_eq!(compared, net.parameters().len());
        // logits of the two cells differ: the mixing steers the supernet
        let logits = no_grad(|| {
            net.forward_window(
                &w,
                std::slice::from_ref(&h0),
                &mut ChaCha8Rng::seed_from_u64(3),
                &one_hot(&g),
            )
            .unwrap()
            .0
            .to_vec()
            .unwrap()
        });
        if !last_logits.is_empty() {
            assert!(max_diff(&logits, &last_logits) > 1e-3);
        }
        last_logits = logits;
    }
    // a wrong shape is refused
    let bad = Tensor::zeros(&[RNN_EDGES, 4]);
    let e = net
        .forward_window(&w, &[h0], &mut ChaCha8Rng::seed_from_u64(3), &bad)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("[36, 5]"), "{e}");
}

fn tiny_config(method: Method) -> OneShotConfig {
    let mut cfg = OneShotConfig::new(method, SpaceKind::Rnn);
    cfg.c = 6;
    cfg.batch_size = 2;
    cfg.bptt = 5;
    cfg.seed = 11;
    cfg
}

/// A search in evaluation mode (no dropout: the losses are functions of the weights alone)
/// with architecture logits and weights of order 1, and its first batch pair.
fn fd_setup(method: Method) -> (OneShotSearch<RnnSupernet>, TextBatch, TextBatch) {
    let c = corpus(600);
    let mut cfg = tiny_config(method);
    // ReLU kinks: the Hessian-vector product's finite difference must stay below their
    // spacing on a problem this small (as the image test of the unrolled gradient does)
    cfg.unroll_r = 3e-4;
    let mut s = OneShotSearch::<RnnSupernet>::start(cfg, &c).unwrap();
    s.supernet().set_training(false);
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    for a in s.arch().tensors() {
        let v = Tensor::randn_with(a.shape(), &mut rng).to_vec().unwrap();
        a.set_data(&v).unwrap();
    }
    for p in s.weights() {
        let v = Tensor::randn_with(p.shape(), &mut rng).scale(0.4);
        p.set_data(&v.to_vec().unwrap()).unwrap();
    }
    let (tb, vb) = RnnSupernet::batch_pair(&mut s, 0).unwrap();
    (s, tb, vb)
}

/// The window loss of `b` under the softmax of the current architecture logits.
fn loss_at(s: &OneShotSearch<RnnSupernet>, b: &TextBatch) -> f64 {
    no_grad(|| {
        let mix = s.arch().normal.detach().softmax(1).unwrap();
        s.supernet()
            .window_loss(&b.window, &b.state, &mut ChaCha8Rng::seed_from_u64(0), &mix)
            .unwrap()
            .0
            .item()
            .unwrap() as f64
    })
}

/// Central differences of `f` over the architecture logits with two steps; elements whose two
/// estimates disagree straddle a ReLU kink and are skipped (returned as `None`).
fn central_differences(
    s: &OneShotSearch<RnnSupernet>,
    h: f32,
    f: &dyn Fn(&OneShotSearch<RnnSupernet>) -> f64,
) -> Vec<Option<f64>> {
    let alpha = s.arch().normal.clone();
    let at = |e: usize, h: f32| -> f64 {
        let mut v = alpha.to_vec().unwrap();
        let orig = v[e];
        v[e] = orig + h;
        alpha.set_data(&v).unwrap();
        let lp = f(s);
        v[e] = orig - h;
        alpha.set_data(&v).unwrap();
        let lm = f(s);
        v[e] = orig;
        alpha.set_data(&v).unwrap();
        (lp - lm) / (2.0 * h as f64)
    };
    (0..alpha.numel())
        .map(|e| {
            let (a, b) = (at(e, h), at(e, h / 2.0));
            ((a - b).abs() <= 0.05 * a.abs() + 1e-4).then_some(b)
        })
        .collect()
}

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

/// Compares an analytic gradient with central differences where they are smooth; returns
/// (|fd|, |analytic - fd|).
fn compare(analytic: &[f32], fd: &[Option<f64>]) -> (f64, f64) {
    let smooth: Vec<(f64, f64)> = analytic
        .iter()
        .zip(fd)
        .filter_map(|(&a, d)| d.map(|d| (a as f64, d)))
        .collect();
    assert!(
        smooth.len() * 10 >= fd.len() * 8,
        "only {} of {} elements smooth",
        smooth.len(),
        fd.len()
    );
    let b: Vec<f64> = smooth.iter().map(|p| p.1).collect();
    let d: Vec<f64> = smooth.iter().map(|p| p.0 - p.1).collect();
    (norm(&b), norm(&d))
}

#[test]
fn first_order_architecture_gradient_matches_finite_differences() {
    let (mut s, _tb, vb) = fd_setup(Method::Darts1);
    s.arch_grad_first_order(&vb).unwrap();
    let g = s.arch().normal.grad_vec().unwrap().unwrap();
    // the weights got no gradient (only the architecture's was asked for)
    assert!(s.weights().iter().all(|p| p.grad_vec().unwrap().is_none()));
    let fd = central_differences(&s, 1e-2, &|s| loss_at(s, &vb));
    let (scale, err) = compare(&g, &fd);
    eprintln!("|fd| {scale:.4e}  |analytic - fd| {err:.4e}");
    assert!(scale > 1e-3, "gradient too small to test: {scale}");
    assert!(
        err < 0.02 * scale,
        "first-order gradient off: {err} vs {scale}"
    );
    // `none` (column 0) gets a gradient too: its weight is in the softmax
    assert!((0..RNN_EDGES).any(|e| g[e * 5].abs() > 1e-6));
}

/// `L_valid(w - xi * (grad_w L_train(w, a) + wd * w), a)`, by brute force on the host.
fn unrolled_loss(
    s: &OneShotSearch<RnnSupernet>,
    tb: &TextBatch,
    vb: &TextBatch,
    xi: f32,
    wd: f32,
) -> f64 {
    let w0: Vec<Vec<f32>> = s.weights().iter().map(|p| p.to_vec().unwrap()).collect();
    for p in s.weights() {
        p.zero_grad();
    }
    let mix = s.arch().normal.detach().softmax(1).unwrap();
    let (loss, _) = s
        .supernet()
        .window_loss(
            &tb.window,
            &tb.state,
            &mut ChaCha8Rng::seed_from_u64(0),
            &mix,
        )
        .unwrap();
    loss.backward().unwrap();
    for p in s.weights() {
        let g = p.grad_vec().unwrap().unwrap();
        let mut w = p.to_vec().unwrap();
        for j in 0..w.len() {
            w[j] -= xi * (g[j] + wd * w[j]);
        }
        p.set_data(&w).unwrap();
    }
    let l = loss_at(s, vb);
    for (p, w) in s.weights().iter().zip(&w0) {
        p.set_data(w).unwrap();
        p.zero_grad();
    }
    l
}

/// The unrolled (second-order) gradient with its finite-difference Hessian-vector product
/// matches central differences of the unrolled objective, and differs from the first-order
/// gradient by much more than its error.
#[test]
fn second_order_gradient_matches_the_unrolled_objective() {
    let (mut s, tb, vb) = fd_setup(Method::Darts2);
    let xi = 0.5f32;
    let wd = s.config().w_weight_decay;
    let w_before: Vec<Vec<u32>> = s
        .weights()
        .iter()
        .map(|p| p.to_vec().unwrap().iter().map(|x| x.to_bits()).collect())
        .collect();
    s.arch_grad_second_order(&tb, &vb, xi).unwrap();
    let second = s.arch().normal.grad_vec().unwrap().unwrap();
    let w_after: Vec<Vec<u32>> = s
        .weights()
        .iter()
        .map(|p| p.to_vec().unwrap().iter().map(|x| x.to_bits()).collect())
        .collect();
    assert_eq!(w_before, w_after, "the weights are restored exactly");
    s.arch_grad_first_order(&vb).unwrap();
    let first = s.arch().normal.grad_vec().unwrap().unwrap();
    let fd = central_differences(&s, 1e-2, &|s| unrolled_loss(s, &tb, &vb, xi, wd));
    let (scale, err2) = compare(&second, &fd);
    let (_, err1) = compare(&first, &fd);
    eprintln!("|fd| {scale:.4e}  |second - fd| {err2:.4e}  |first - fd| {err1:.4e}");
    assert!(scale > 1e-3, "gradient too small to test: {scale}");
    assert!(
        err2 < 0.05 * scale,
        "second-order gradient off: {err2} vs {scale}"
    );
    assert!(
        err1 > 4.0 * err2,
        "the test cannot tell the orders apart: {err1} vs {err2}"
    );
}

#[test]
fn recurrent_rule_on_hand_made_weights() {
    let mut w = vec![vec![0.2f32; 5]; RNN_EDGES];
    // node 1: its only predecessor, 0, with `none` dominant: the best activation is kept
    w[rnn_edge_offset(1)] = vec![0.9, 0.01, 0.05, 0.02, 0.02];
    // node 2: predecessor 1 has the largest real weight (sigmoid)
    w[rnn_edge_offset(2)] = vec![0.0, 0.3, 0.1, 0.1, 0.1];
    w[rnn_edge_offset(2) + 1] = vec![0.0, 0.1, 0.1, 0.4, 0.1];
    // node 3: a tie of scores between predecessors 0 and 2 -> 0; within it a tie between
    // relu and identity -> relu (listed first)
    w[rnn_edge_offset(3)] = vec![0.0, 0.1, 0.5, 0.1, 0.5];
    w[rnn_edge_offset(3) + 1] = vec![0.9, 0.1, 0.1, 0.1, 0.1];
    w[rnn_edge_offset(3) + 2] = vec![0.0, 0.5, 0.1, 0.1, 0.1];
    let g = derive_rnn_cell(&w).unwrap();
    assert_eq!(g.nodes[0], (RnnActivation::Relu, 0));
    assert_eq!(g.nodes[1], (RnnActivation::Sigmoid, 1));
    assert_eq!(g.nodes[2], (RnnActivation::Relu, 0));
    // nodes 4..8: all equal -> predecessor 0, tanh
    assert!(g.nodes[3..].iter().all(|&n| n == (RnnActivation::Tanh, 0)));
    // the text form is the DARTS one nas-space parses
    assert_eq!(RnnGenotype::parse(&g.to_string()).unwrap(), g);
    // NaN and wrong sizes are refused
    w[5][2] = f32::NAN;
    assert!(derive_rnn_cell(&w).unwrap_err().to_string().contains("NaN"));
    assert!(derive_rnn_cell(&w[..35]).is_err());
}

fn resume_config(method: Method) -> OneShotConfig {
    let mut cfg = tiny_config(method);
    cfg.c = 8;
    cfg.batch_size = 4;
    cfg.bptt = 8;
    cfg.epochs = 3;
    cfg.steps_per_epoch = Some(5);
    cfg.checkpoint_every = 1;
    cfg.w_lr = 1.0;
    cfg.w_lr_min = 1.0;
    cfg
}

const CHILD_ENV: &str = "NAS_ONESHOT_RNN_KILL_CHILD";

/// The child half of the kill test: a slowed search that checkpoints every step until the
/// parent kills it.
#[test]
#[ignore]
fn oneshot_rnn_kill_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (method, dir) = spec.split_once(':').unwrap();
    let cfg = resume_config(Method::parse(method).unwrap());
    let _ = run_oneshot_on::<RnnSupernet>(&cfg, &corpus(1200), Path::new(dir), false, &mut |_| {
        std::thread::sleep(Duration::from_millis(150))
    });
}

/// A search on the recurrent space killed by SIGKILL mid-epoch and resumed ends bit for bit
/// where an uninterrupted one does (final checkpoint bytes: weights, architecture weights,
/// optimizer states, carried recurrent states, history), and writes the same outputs.
#[test]
fn rnn_resume_after_sigkill_is_bit_identical() {
    let c = corpus(1200);
    for method in [Method::Darts2, Method::Darts1] {
        let cfg = resume_config(method);
        let full = tempfile::tempdir().unwrap();
        let a = run_oneshot_on::<RnnSupernet>(&cfg, &c, full.path(), false, &mut |_| {}).unwrap();
        assert_eq!(a.history.len(), 3);
        assert!(matches!(a.genotype, Genotype::Rnn(_)));
        let text = std::fs::read_to_string(full.path().join("genotype.txt")).unwrap();
        assert!(text.starts_with("Genotype(recurrent=["), "{text}");
        assert!(full.path().join("alphas.svg").exists());
        assert!(a.history.iter().all(|r| r.valid_loss.is_some()));

        let killed = tempfile::tempdir().unwrap();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                &test_name("oneshot_rnn_kill_child"),
                "--ignored",
                "--nocapture",
            ])
            .env(
                CHILD_ENV,
                format!("{}:{}", method.name(), killed.path().display()),
            )
            .spawn()
            .unwrap();
        let ckpt = killed.path().join(CHECKPOINT_FILE);
        let t0 = Instant::now();
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
        child.kill().unwrap();
        assert!(!child.wait().unwrap().success());
        let p = checkpoint_progress(&ckpt).unwrap();
        assert!(p.global_step >= at.global_step && p.global_step < 15);
        let b = run_oneshot_on::<RnnSupernet>(&cfg, &c, killed.path(), true, &mut |_| {}).unwrap();
        assert_eq!(b.resumed_from_step, Some(p.global_step));
        assert_eq!(a.genotype, b.genotype);
        assert_eq!(a.history, b.history, "{method:?}: histories differ");
        let ca = std::fs::read(full.path().join(CHECKPOINT_FILE)).unwrap();
        let cb = std::fs::read(&ckpt).unwrap();
        assert!(ca == cb, "{method:?}: final checkpoints differ");
        eprintln!(
            "{method:?}: killed at step {}, resumed, identical",
            p.global_step
        );
    }
}

/// The carried state matters: a checkpoint whose carried state is changed resumes into a
/// different search (so the resume test above would catch a state that is not restored).
#[test]
fn carried_state_is_part_of_the_search() {
    let c = corpus(1200);
    let mut cfg = resume_config(Method::Darts1);
    cfg.epochs = 1;
    let dir = tempfile::tempdir().unwrap();
    let mut s = OneShotSearch::<RnnSupernet>::start(cfg.clone(), &c).unwrap();
    s.step().unwrap();
    s.step().unwrap();
    let p = dir.path().join("a.bin");
    s.save_checkpoint(&p).unwrap();
    let mut r = OneShotSearch::<RnnSupernet>::resume(&p, &cfg, &c).unwrap();
    let mut z = OneShotSearch::<RnnSupernet>::resume(&p, &cfg, &c).unwrap();
    for (_, t) in RnnSupernet::carried_state(z.data()) {
        t.set_data(&vec![0.0; t.numel()]).unwrap();
    }
    s.step().unwrap();
    r.step().unwrap();
    z.step().unwrap();
    let bits = |s: &OneShotSearch<RnnSupernet>| -> Vec<u32> {
        s.arch()
            .normal
            .to_vec()
            .unwrap()
            .iter()
            .map(|x| x.to_bits())
            .collect()
    };
    assert_eq!(bits(&s), bits(&r));
    assert_ne!(bits(&s), bits(&z));
    // settings of another space are refused
    let other = OneShotConfig::new(Method::Darts1, SpaceKind::Nb201);
    assert!(OneShotSearch::<RnnSupernet>::start(other, &c).is_err());
    let mut gdas = tiny_config(Method::Gdas);
    gdas.epochs = 1;
    let e = OneShotSearch::<RnnSupernet>::start(gdas, &c)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("gdas"), "{e}");
}

/// ENAS and data-parallel runs are image-only: the recurrent space refuses both, naming the
/// method and the space, instead of running something else.
#[test]
fn enas_and_data_parallel_are_refused_on_the_recurrent_space() {
    let c = corpus(600);
    let mut enas = tiny_config(Method::Enas);
    enas.epochs = 1;
    let e = OneShotSearch::<RnnSupernet>::start(enas, &c)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("enas") && e.contains("recurrent"), "{e}");
    let mut cfg = tiny_config(Method::Darts1);
    cfg.epochs = 1;
    let s = OneShotSearch::<RnnSupernet>::start(cfg, &c).unwrap();
    let comm = nas_search::dist::ThreadGroup::new(1).pop().unwrap();
    let e = RnnSupernet::with_communicator(s, std::sync::Arc::new(comm))
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("darts") && e.contains("rnn") && e.contains("data-parallel"),
        "{e}"
    );
}
