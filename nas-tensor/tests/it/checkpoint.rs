//! Gradient checkpointing: a checkpointed segment gives the gradients, the batch-norm
//! statistics and the `backward_for` selectivity of the plain graph, while keeping only its
//! inputs alive between forward and backward.

use std::sync::Arc;

use nas_tensor::nn::{BatchNorm2d, Conv2d, Module, ReLU, Sequential};
use nas_tensor::{ConvOptions, Tensor, checkpoint, live_graph_nodes, no_grad};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// conv -> BN -> ReLU -> conv -> BN: the segment that gets checkpointed.
fn block(seed: u64) -> Sequential {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let pad = ConvOptions::default().padding(1);
    Sequential::new()
        .push(Conv2d::new(3, 4, 3, pad, false, &mut rng).unwrap())
        .push(BatchNorm2d::new(4, true))
        .push(ReLU::new())
        .push(Conv2d::new(4, 4, 3, pad, true, &mut rng).unwrap())
        .push(BatchNorm2d::new(4, false))
}

fn buffers(m: &dyn Module) -> Vec<Tensor> {
    m.named_buffers().into_iter().map(|(_, t)| t).collect()
}

struct Run {
    loss: f32,
    x_grad: Vec<f32>,
    scale_grad: Vec<f32>,
    param_grads: Vec<Option<Vec<f32>>>,
    buffers: Vec<Vec<f32>>,
}

/// `loss = sum((block(x * scale))^2 * w)`, `scale` a leaf standing for an upstream weight
/// (so the segment's input has history), optionally checkpointing the block.
fn run(ckpt: bool, only_scale: bool) -> Run {
    let net = Arc::new(block(1));
    let x = Tensor::randn(&[2, 3, 6, 6], 2).param();
    let scale = Tensor::from_vec(vec![0.5, 1.5, -1.0], &[1, 3, 1, 1])
        .unwrap()
        .param();
    let w = Tensor::randn(&[2, 4, 6, 6], 3);
    let h = x.mul(&scale).unwrap();
    let y = if ckpt {
        let seg = net.clone();
        checkpoint(
            &[&h],
            &net.parameters(),
            &buffers(&*net),
            move |ins: &[Tensor]| seg.forward(&ins[0]),
        )
        .unwrap()
    } else {
        net.forward(&h).unwrap()
    };
    let loss = y.mul(&y).unwrap().mul(&w).unwrap().sum();
    let lv = loss.item().unwrap();
    if only_scale {
        loss.backward_for(std::slice::from_ref(&scale)).unwrap();
    } else {
        loss.backward().unwrap();
    }
    Run {
        loss: lv,
        x_grad: x.grad_vec().unwrap().unwrap_or_default(),
        scale_grad: scale.grad_vec().unwrap().unwrap(),
        param_grads: net
            .parameters()
            .iter()
            .map(|p| p.grad_vec().unwrap())
            .collect(),
        buffers: buffers(&*net).iter().map(|b| b.to_vec().unwrap()).collect(),
    }
}

#[test]
fn checkpointed_segment_gives_the_plain_gradients_and_statistics() {
    let plain = run(false, false);
    let ck = run(true, false);
    assert_eq!(plain.loss, ck.loss);
    assert_eq!(plain.x_grad, ck.x_grad, "input gradient");
    assert_eq!(
        plain.scale_grad, ck.scale_grad,
        "gradient through the input's history"
    );
    assert_eq!(plain.param_grads.len(), 5);
    for (i, (a, b)) in plain.param_grads.iter().zip(&ck.param_grads).enumerate() {
        assert!(a.is_some(), "parameter {i} has a gradient");
        assert_eq!(a, b, "parameter {i}");
    }
    // Running statistics moved once (not twice, not zero times).
    assert_eq!(plain.buffers, ck.buffers);
    let fresh: Vec<Vec<f32>> = buffers(&block(1))
        .iter()
        .map(|b| b.to_vec().unwrap())
        .collect();
    assert_ne!(plain.buffers, fresh);
}

#[test]
fn backward_for_skips_the_segments_weight_gradients() {
    let plain = run(false, true);
    let ck = run(true, true);
    assert_eq!(plain.scale_grad, ck.scale_grad);
    assert!(ck.x_grad.is_empty(), "x was not asked for");
    assert!(
        ck.param_grads.iter().all(Option::is_none),
        "no weight gradient computed"
    );
    assert_eq!(plain.buffers, ck.buffers);
}

#[test]
fn only_one_node_stays_alive_for_a_checkpointed_segment() {
    let net = Arc::new(block(1));
    let x = Tensor::randn(&[2, 3, 6, 6], 2).param();
    let before = live_graph_nodes();
    let plain = net.forward(&x).unwrap();
    let plain_nodes = live_graph_nodes() - before;
    drop(plain);
    assert_eq!(
        live_graph_nodes(),
        before,
        "dropping the output frees its graph"
    );
    let seg = net.clone();
    let y = checkpoint(
        &[&x],
        &net.parameters(),
        &buffers(&*net),
        move |ins: &[Tensor]| seg.forward(&ins[0]),
    )
    .unwrap();
    assert_eq!(live_graph_nodes() - before, 1);
    assert!(plain_nodes >= 5, "{plain_nodes}");
    y.sum().backward().unwrap();
    assert_eq!(
        live_graph_nodes(),
        before,
        "backward frees the segment's graph too"
    );
}

#[test]
fn bad_uses_are_errors_and_no_grad_runs_once() {
    let net = Arc::new(block(1));
    let x = Tensor::randn(&[2, 3, 6, 6], 2).param();
    // A parameter with history must go in `inputs`.
    let derived = x.mul(&x).unwrap();
    let seg = net.clone();
    let err = checkpoint(&[&x], &[derived], &[], move |ins: &[Tensor]| {
        seg.forward(&ins[0])
    })
    .unwrap_err();
    assert!(err.to_string().contains("history"), "{err}");
    // Under no_grad the segment runs once and records nothing.
    let before = live_graph_nodes();
    let seg = net.clone();
    let y = no_grad(|| {
        checkpoint(
            &[&x],
            &net.parameters(),
            &buffers(&*net),
            move |ins: &[Tensor]| seg.forward(&ins[0]),
        )
    })
    .unwrap();
    assert!(!y.requires_grad());
    assert_eq!(live_graph_nodes(), before);
    // A segment that returns a different shape the second time is caught in backward.
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let c = calls.clone();
    let y = checkpoint(&[&x], &[], &[], move |ins: &[Tensor]| {
        if c.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            ins[0].mul(&ins[0])
        } else {
            Ok(ins[0].sum())
        }
    })
    .unwrap();
    let err = y.sum().backward().unwrap_err();
    assert!(err.to_string().contains("recomputation"), "{err}");
}
