//! Gradients of the one-shot supernets: architecture-weight gradients against central
//! differences, the second-order DARTS gradient against a brute-force unrolled computation, and
//! the GDAS straight-through forward.

use nas_search::data::{Dataset, digits_embedded};
use nas_search::oneshot::{
    ArchParams, Method, Mixing, OneShotConfig, OneShotSearch, SpaceKind, Supernet, SupernetConfig,
};
use nas_tensor::nn::Module;
use nas_tensor::{GradcheckOptions, Tensor, gradcheck, no_grad};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn digits() -> Dataset {
    digits_embedded().unwrap().normalize().unwrap().train
}

fn batch(d: &Dataset, n: usize, offset: usize) -> (Tensor, Vec<usize>) {
    let (c, h, w) = d.shape();
    let per = c * h * w;
    let x = d.images()[offset * per..(offset + n) * per].to_vec();
    let y = d.labels()[offset..offset + n].to_vec();
    (Tensor::from_vec(x, &[n, c, h, w]).unwrap(), y)
}

fn soft(alphas: &[Tensor]) -> Mixing {
    Mixing::Soft {
        normal: alphas[0].softmax(1).unwrap(),
        reduce: alphas.get(1).map(|r| r.softmax(1).unwrap()),
    }
}

/// d loss / d alpha of the softmax mixing equals central differences, on both spaces.
#[test]
fn arch_gradient_matches_finite_differences() {
    let data = digits();
    let (x, y) = batch(&data, 6, 0);
    for space in [SpaceKind::Darts, SpaceKind::Nb201] {
        let net = Supernet::new(
            SupernetConfig {
                space,
                c: 4,
                layers: if space == SpaceKind::Darts { 3 } else { 1 },
                in_channels: 1,
                classes: 10,
            },
            11,
        )
        .unwrap();
        // Logits of order 1 so that the softmax is far from uniform and every op matters.
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let shape = [space.num_edges(), space.num_ops()];
        let mut alphas = vec![Tensor::randn_with(&shape, &mut rng).param()];
        if space.has_reduce() {
            alphas.push(Tensor::randn_with(&shape, &mut rng).param());
        }
        let f = |a: &[Tensor]| -> nas_tensor::Result<Tensor> {
            let logits = net.forward_mix(&x, &soft(a)).map_err(|e| {
                nas_tensor::TensorError::InvalidArgument {
                    op: "test",
                    detail: e.to_string(),
                }
            })?;
            logits.cross_entropy(&y)
        };
        let report = gradcheck(
            f,
            &alphas,
            GradcheckOptions {
                eps: 2e-3,
                atol: 1e-3,
                rtol: 5e-2,
                seed: 3,
                skip_kinks: false,
            },
        )
        .unwrap();
        // A wrong gradient fails everywhere; allow 1% of elements (at least one) next to a kink.
        assert!(
            report.failures.len() * 100 <= report.checked.max(100),
            "{space:?}: {} of {} elements failed: {:?}",
            report.failures.len(),
            report.checked,
            report.failures
        );
        assert_eq!(
            report.checked + report.skipped,
            alphas.iter().map(|a| a.numel()).sum::<usize>()
        );
        assert!(
            report.max_abs_grad > 1e-4,
            "{space:?}: gradients too small to test anything ({})",
            report.max_abs_grad
        );
    }
}

/// The unrolled loss `L_val(w - xi * (grad_w L_train(w, a) + wd * w), a)` as a function of the
/// architecture weights, evaluated by brute force (one real weight step per evaluation).
fn unrolled_valid_loss(
    s: &OneShotSearch,
    tb: &(Tensor, Vec<usize>),
    vb: &(Tensor, Vec<usize>),
    xi: f32,
    wd: f32,
) -> f64 {
    let w0: Vec<Vec<f32>> = s.weights().iter().map(|p| p.to_vec().unwrap()).collect();
    for p in s.weights() {
        p.zero_grad();
    }
    let arch = s.arch();
    let detached: Vec<Tensor> = arch.tensors().iter().map(|a| a.detach()).collect();
    let loss = s
        .supernet()
        .forward_mix(&tb.0, &soft(&detached))
        .unwrap()
        .cross_entropy(&tb.1)
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
    let l = no_grad(|| {
        s.supernet()
            .forward_mix(&vb.0, &soft(&detached))
            .unwrap()
            .cross_entropy(&vb.1)
            .unwrap()
            .item()
            .unwrap()
    });
    for (p, w) in s.weights().iter().zip(&w0) {
        p.set_data(w).unwrap();
        p.zero_grad();
    }
    l as f64
}

/// The second-order DARTS gradient (finite-difference Hessian-vector product) matches central
/// differences of the brute-force unrolled validation loss, and differs from the first-order
/// gradient by much more than the error (so the test tells the two apart).
#[test]
fn second_order_gradient_matches_brute_force_unrolling() {
    let data = digits();
    let mut cfg = OneShotConfig::new(Method::Darts2, SpaceKind::Nb201);
    cfg.c = 4;
    cfg.layers = 1;
    cfg.batch_size = 2;
    cfg.seed = 7;
    // ReLU kinks make the unrolled loss piecewise smooth (the weight step's gradient jumps when
    // an activation changes sign), so on a problem this small both finite differences must stay
    // below the kink spacing: batch 2, a Hessian-vector step of 3e-4 instead of 0.01.
    cfg.unroll_r = 3e-4;
    let mut s = OneShotSearch::new(cfg.clone(), &data).unwrap();
    // Make the architecture matter: logits of order 1.
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    for a in s.arch().tensors() {
        let v = Tensor::randn_with(a.shape(), &mut rng).to_vec().unwrap();
        a.set_data(&v).unwrap();
    }
    let (tb, vb) = s.batch_pair(0).unwrap();
    let tb = (tb.x, tb.y);
    let vb = (vb.x, vb.y);
    // A large virtual step so the second-order term is large.
    let xi = 0.05f32;
    let wd = cfg.w_weight_decay;
    let sb = nas_search::oneshot::search::SearchBatch {
        x: tb.0.clone(),
        y: tb.1.clone(),
    };
    let vsb = nas_search::oneshot::search::SearchBatch {
        x: vb.0.clone(),
        y: vb.1.clone(),
    };
    let w_before: Vec<Vec<f32>> = s.weights().iter().map(|p| p.to_vec().unwrap()).collect();
    s.arch_grad_second_order(&sb, &vsb, xi).unwrap();
    let second: Vec<f32> = s.arch().normal.grad_vec().unwrap().unwrap();
    // Weights restored exactly.
    for (p, w) in s.weights().iter().zip(&w_before) {
        assert!(
            p.to_vec()
                .unwrap()
                .iter()
                .zip(w)
                .all(|(a, b)| a.to_bits() == b.to_bits())
        );
    }
    s.arch_grad_first_order(&vsb).unwrap();
    let first: Vec<f32> = s.arch().normal.grad_vec().unwrap().unwrap();

    let alpha = s.arch().normal.clone();
    // Central differences with two steps; an element whose two estimates disagree straddles a
    // ReLU kink (the unrolled loss jumps there: the weight step's gradient is discontinuous)
    // and is skipped, as gradcheck's `skip_kinks` does.
    let fd = |h: f32, e: usize| -> f64 {
        let mut v = alpha.to_vec().unwrap();
        let orig = v[e];
        v[e] = orig + h;
        alpha.set_data(&v).unwrap();
        let lp = unrolled_valid_loss(&s, &tb, &vb, xi, wd);
        v[e] = orig - h;
        alpha.set_data(&v).unwrap();
        let lm = unrolled_valid_loss(&s, &tb, &vb, xi, wd);
        v[e] = orig;
        alpha.set_data(&v).unwrap();
        (lp - lm) / (2.0 * h as f64)
    };
    let (mut b, mut f, mut sec) = (Vec::new(), Vec::new(), Vec::new());
    for e in 0..alpha.numel() {
        let h1 = 4e-5f32;
        let (b1, b2) = (fd(h1, e), fd(h1 / 2.0, e));
        let ok = (b1 - b2).abs() <= 0.05 * b1.abs() + 0.02;
        if ok {
            b.push(b2);
            f.push(first[e]);
            sec.push(second[e]);
        }
    }
    assert!(
        b.len() * 10 >= alpha.numel() * 7,
        "only {} of {} elements smooth",
        b.len(),
        alpha.numel()
    );
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    let diff = |a: &[f32], b: &[f64]| -> Vec<f64> {
        a.iter().zip(b).map(|(&a, &b)| a as f64 - b).collect()
    };
    let err2 = norm(&diff(&sec, &b));
    let err1 = norm(&diff(&f, &b));
    let scale = norm(&b);
    eprintln!("|brute| {scale:.4e}  |second - brute| {err2:.4e}  |first - brute| {err1:.4e}");
    assert!(scale > 1e-3, "gradient too small to test: {scale}");
    assert!(
        err2 < 0.15 * scale,
        "second-order gradient off by {err2:.3e} (|g| = {scale:.3e})"
    );
    assert!(
        err1 > 3.0 * err2,
        "first-order gradient ({err1:.3e}) is not clearly worse than second order ({err2:.3e}): the test cannot tell them apart"
    );
}

/// GDAS: the hard forward equals the forward with one-hot weights (only the sampled op runs),
/// and the straight-through backward reaches every logit of every edge.
#[test]
fn gdas_hard_forward_and_straight_through_gradient() {
    let data = digits();
    let (x, y) = batch(&data, 8, 0);
    for space in [SpaceKind::Darts, SpaceKind::Nb201] {
        let net = Supernet::new(
            SupernetConfig {
                space,
                c: 4,
                layers: if space == SpaceKind::Darts { 3 } else { 1 },
                in_channels: 1,
                classes: 10,
            },
            3,
        )
        .unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let arch = ArchParams::new(space, &mut rng);
        // NB201: resample until an edge into the output node runs a convolution; otherwise the
        // output can be a constant that the final BN cancels (then no gradient flows, rightly).
        let mix = loop {
            let m = arch.gumbel(1.0, &mut rng).unwrap();
            if let Mixing::Hard { normal, .. } = &m
                && (space == SpaceKind::Darts
                    || normal.index[3..].iter().any(|&i| i == 2 || i == 3))
            {
                break m;
            }
        };
        let (idx_n, idx_r) = match &mix {
            Mixing::Hard { normal, reduce } => (
                normal.index.clone(),
                reduce.as_ref().map(|r| r.index.clone()),
            ),
            _ => unreachable!(),
        };
        let one_hot = |idx: &[usize]| {
            let k = space.num_ops();
            let mut v = vec![0.0f32; idx.len() * k];
            for (e, &i) in idx.iter().enumerate() {
                v[e * k + i] = 1.0;
            }
            Tensor::from_vec(v, &[idx.len(), k]).unwrap()
        };
        let hard = net.forward_mix(&x, &mix).unwrap();
        let reference = net
            .forward_mix(
                &x,
                &Mixing::Soft {
                    normal: one_hot(&idx_n),
                    reduce: idx_r.as_deref().map(one_hot),
                },
            )
            .unwrap();
        let (a, b) = (hard.to_vec().unwrap(), reference.to_vec().unwrap());
        let max_diff = a
            .iter()
            .zip(&b)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            max_diff < 1e-4,
            "{space:?}: hard forward differs by {max_diff}"
        );
        hard.cross_entropy(&y).unwrap().backward().unwrap();
        // Edges that feed the network output directly (the last cell's edges into its output
        // node(s)) must pass a gradient to every logit; edges elsewhere may be cut off when the
        // sampled ops downstream are `none`.
        let (t, direct): (Tensor, Vec<usize>) = match space {
            SpaceKind::Darts => (arch.reduce.clone().unwrap(), (0..14).collect()),
            SpaceKind::Nb201 => (
                arch.normal.clone(),
                (3..6).filter(|&e| idx_n[e] == 2 || idx_n[e] == 3).collect(),
            ),
            SpaceKind::Rnn => unreachable!("an image space"),
        };
        {
            let g = t.grad_vec().unwrap().expect("logits get a gradient");
            let k = space.num_ops();
            for (e, row) in g.chunks(k).enumerate().filter(|(e, _)| direct.contains(e)) {
                assert!(
                    row.iter().filter(|v| **v != 0.0).count() >= k - 1,
                    "{space:?} edge {e}: straight-through gradient reaches too few logits: {row:?}"
                );
            }
        }
        net.zero_grad();
    }
}

/// The memory-saving recomputation path (of some cells, or all) gives the same loss and
/// gradients (weights and architecture) as one graph over the whole network, up to float
/// summation order, and updates the BN running statistics once, like the plain pass. The
/// architecture step, which asks for the architecture weights' gradient alone, gets the same
/// one on every path and leaves the weights' gradients uncomputed.
#[test]
fn recompute_matches_plain_backward() {
    let data = digits();
    let mut grads = Vec::new();
    for recompute in [0, 2, 3, usize::MAX] {
        let mut cfg = OneShotConfig::new(Method::Darts1, SpaceKind::Darts);
        cfg.c = 4;
        cfg.layers = 5;
        cfg.batch_size = 8;
        cfg.recompute_cells = recompute;
        let mut s = OneShotSearch::new(cfg, &data).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        for a in s.arch().tensors() {
            let v = Tensor::randn_with(a.shape(), &mut rng).to_vec().unwrap();
            a.set_data(&v).unwrap();
        }
        let (_, vb) = s.batch_pair(0).unwrap();
        // the architecture step: architecture gradient only
        let (loss, _) = s.arch_grad_first_order(&vb).unwrap();
        let mut g: Vec<f32> = vec![loss];
        for a in s.arch().tensors() {
            g.extend(a.grad_vec().unwrap().unwrap());
            a.zero_grad();
        }
        assert!(s.weights().iter().all(|w| w.grad_vec().unwrap().is_none()));
        // every gradient, through the supernet directly (BN statistics updated twice now)
        let make = || s.arch().soft();
        let net = s.supernet();
        let (loss2, _) = if recompute == 0 {
            net.loss_backward_plain(&vb.x, &vb.y, &make().unwrap(), None)
        } else {
            net.loss_backward_recompute(&vb.x, &vb.y, &make, recompute, None)
        }
        .unwrap();
        g.push(loss2);
        for a in s.arch().tensors() {
            g.extend(a.grad_vec().unwrap().unwrap());
        }
        for w in s.weights() {
            g.extend(w.grad_vec().unwrap().unwrap());
        }
        for (_, b) in s.supernet().named_buffers() {
            g.extend(b.to_vec().unwrap());
        }
        grads.push(g);
    }
    let a = &grads[0];
    let scale = a.iter().map(|x| x.abs()).fold(0.0f32, f32::max);
    for (b, k) in grads[1..].iter().zip(["2", "3", "all"]) {
        assert_eq!(a.len(), b.len());
        let (at, worst) = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .enumerate()
            .fold((0, 0.0f32), |m, (i, d)| if d > m.1 { (i, d) } else { m });
        assert!(
            worst <= 1e-4 * scale.max(1.0),
            "recomputing {k} cells: max difference {worst} at {at} of {} (scale {scale})",
            a.len()
        );
    }
}

/// GDAS sampling with non-finite architecture weights is an error (it used to redraw noise
/// forever), and a seed gives the same choice twice.
#[test]
fn gdas_sampling_rejects_non_finite_weights_and_is_seeded() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let arch = ArchParams::new(SpaceKind::Nb201, &mut rng);
    let pick = |seed: u64| match arch
        .gumbel(0.5, &mut ChaCha8Rng::seed_from_u64(seed))
        .unwrap()
    {
        Mixing::Hard { normal, .. } => normal.index,
        _ => unreachable!(),
    };
    assert_eq!(pick(7), pick(7));
    assert!(
        (0..8).any(|s| pick(s) != pick(7)),
        "the noise depends on the seed"
    );
    let t = &arch.tensors()[0];
    let mut v = t.to_vec().unwrap();
    v[3] = f32::NAN;
    t.set_data(&v).unwrap();
    let Err(err) = arch.gumbel(1.0, &mut rng) else {
        panic!("non-finite weights were sampled from");
    };
    assert!(err.to_string().contains("non-finite"), "{err}");
}

/// Edges on the same state share their parameter-free ops' outputs (pools and their
/// non-affine BN, a factorized reduction's ReLU and shifted input) where that changes no value:
/// logits and BN running statistics equal those of separate ops bit for bit, gradients up to
/// summation order; an edge whose BN statistics differ from the computing edge's gets its own
/// pool (checked in evaluation, where the statistics normalise). The graph is smaller by
/// exactly the shared ops.
#[test]
fn shared_edge_outputs_change_no_value() {
    let data = digits();
    let (x, y) = batch(&data, 8, 0);
    for (space, layers, saved) in [
        // 5 cells x 18 pool + BN ops (one node each: `Tensor::pool_batch_norm`), and 2
        // reduction cells x 6 x (ReLU, two narrows)
        (SpaceKind::Darts, 5, 5 * 18 + 2 * 18),
        // 3 cells x 3 of 6 average pools (its one parameter-free op)
        (SpaceKind::Nb201, 1, 3 * 3),
    ] {
        let cfg = SupernetConfig {
            space,
            c: 4,
            layers,
            in_channels: 1,
            classes: 10,
        };
        let (shared, separate) = (
            Supernet::new(cfg, 7).unwrap(),
            Supernet::new(cfg, 7).unwrap(),
        );
        separate.set_share_outputs(false);
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let shape = [space.num_edges(), space.num_ops()];
        let alphas: Vec<Vec<f32>> = (0..if space.has_reduce() { 2 } else { 1 })
            .map(|_| Tensor::randn_with(&shape, &mut rng).to_vec().unwrap())
            .collect();
        let mut runs = Vec::new();
        for net in [&shared, &separate] {
            let a: Vec<Tensor> = alphas
                .iter()
                .map(|v| Tensor::from_vec(v.clone(), &shape).unwrap().param())
                .collect();
            let n0 = nas_tensor::graph_nodes_recorded();
            let logits = net.forward_mix(&x, &soft(&a)).unwrap();
            let nodes = nas_tensor::graph_nodes_recorded() - n0;
            logits.cross_entropy(&y).unwrap().backward().unwrap();
            let mut grads: Vec<f32> = Vec::new();
            for t in a.iter().chain(&net.parameters()) {
                grads.extend(t.grad_vec().unwrap().unwrap());
            }
            let buffers: Vec<Vec<f32>> = net
                .named_buffers()
                .iter()
                .map(|(_, b)| b.to_vec().unwrap())
                .collect();
            runs.push((logits.to_vec().unwrap(), buffers, grads, nodes));
        }
        let (s, p) = (&runs[0], &runs[1]);
        assert_eq!(s.0, p.0, "{space:?}: logits");
        assert_eq!(s.1, p.1, "{space:?}: BN running statistics");
        let scale = p.2.iter().fold(0.0f32, |m, g| m.max(g.abs()));
        let worst =
            s.2.iter()
                .zip(&p.2)
                .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(
            worst <= 1e-5 * scale,
            "{space:?}: gradient differs by {worst} (scale {scale})"
        );
        assert_eq!(p.3 - s.3, saved as u64, "{space:?}: graph nodes saved");
        // An edge whose pool BN statistics differ from the first edge's on that state must
        // normalise with its own (evaluation uses them); perturb the second edge's.
        if space == SpaceKind::Darts {
            let name = "cells.0._ops.2._ops.1.1.running_var";
            for net in [&shared, &separate] {
                let (_, rv) = net
                    .named_buffers()
                    .into_iter()
                    .find(|(n, _)| n == name)
                    .unwrap();
                rv.set_data(&vec![3.0; rv.numel()]).unwrap();
                net.set_training(false);
            }
            let a: Vec<Tensor> = alphas
                .iter()
                .map(|v| Tensor::from_vec(v.clone(), &shape).unwrap())
                .collect();
            let out: Vec<Vec<f32>> = [&shared, &separate]
                .iter()
                .map(|net| {
                    no_grad(|| net.forward_mix(&x, &soft(&a)))
                        .unwrap()
                        .to_vec()
                        .unwrap()
                })
                .collect();
            assert_eq!(out[0], out[1], "evaluation with differing statistics");
        }
    }
}
