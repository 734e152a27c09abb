//! Tensor storage is reused from step to step: after a warm-up step, a training step takes every
//! large buffer from the per-thread pool (no fresh allocation, so no page faults).

use nas_tensor::buf::{fill_pooled, pool_stats, set_pooling};
use nas_tensor::nn::{
    BatchNorm2d, Conv2d, GlobalAvgPool, Linear, MaxPool2d, Module, ReLU, Sequential,
};
use nas_tensor::optim::{Optimizer, Sgd, SgdConfig};
use nas_tensor::{ConvOptions, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

#[test]
fn steady_state_training_steps_reuse_buffers() {
    set_pooling(true);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let net = Sequential::new()
        .push(Conv2d::new(3, 16, 3, ConvOptions::default().padding(1), false, &mut rng).unwrap())
        .push(BatchNorm2d::new(16, true))
        .push(ReLU::new())
        .push(MaxPool2d::new(3, 2, 1))
        .push(GlobalAvgPool::new())
        .push(Linear::new(16, 10, true, &mut rng).unwrap());
    let mut opt = Sgd::new(net.parameters(), SgdConfig::new(0.1).momentum(0.9)).unwrap();
    let x = Tensor::randn(&[8, 3, 16, 16], 1);
    let labels = [0, 1, 2, 3, 4, 5, 6, 7];
    let step = |opt: &mut Sgd| {
        let loss = net.forward(&x).unwrap().cross_entropy(&labels).unwrap();
        opt.zero_grad();
        loss.backward().unwrap();
        opt.step().unwrap();
    };
    step(&mut opt);
    step(&mut opt);
    let (h0, m0, _) = pool_stats();
    step(&mut opt);
    let (h1, m1, pooled) = pool_stats();
    // conv, BN and ReLU outputs and their gradients, the pooling output and gradient: at least
    // 6 pool-sized buffers per step (8 when this was written)
    assert!(
        h1 - h0 >= 6,
        "a step takes many large buffers from the pool: {}",
        h1 - h0
    );
    assert_eq!(
        m1, m0,
        "no large buffer is freshly allocated in steady state"
    );
    assert!(pooled > 0);

    // With the pool off, the same step allocates afresh (and the stats stay put).
    set_pooling(false);
    let (h2, m2, _) = pool_stats();
    step(&mut opt);
    assert_eq!(pool_stats().0, h2);
    assert_eq!(pool_stats().2, 0);
    let _ = m2;
    set_pooling(true);
}

/// Op outputs come from the pool without being zeroed (`Buf::for_overwrite`): every op must
/// write all of its output. Poisoning the pooled buffers with NaN between two identical steps
/// must not change a single bit of the loss or the gradients.
#[test]
fn ops_overwrite_every_value_of_reused_buffers() {
    set_pooling(true);
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let conv1 = Conv2d::new(3, 8, 3, ConvOptions::default().padding(1), false, &mut rng).unwrap();
    let conv2 = Conv2d::new(8, 8, 1, ConvOptions::default(), true, &mut rng).unwrap();
    let dw = Conv2d::new(
        8,
        8,
        3,
        ConvOptions::default().padding(2).dilation(2).groups(8),
        false,
        &mut rng,
    )
    .unwrap();
    let bn = BatchNorm2d::new(8, true);
    let head = Linear::new(8, 10, true, &mut rng).unwrap();
    let x = Tensor::randn(&[4, 3, 12, 12], 7);
    let labels = [1, 3, 5, 7];
    let run = || {
        let mut params = conv1.parameters();
        params.extend(conv2.parameters());
        params.extend(dw.parameters());
        params.extend(bn.parameters());
        params.extend(head.parameters());
        for p in &params {
            p.zero_grad();
        }
        let h = bn.forward(&conv1.forward(&x).unwrap()).unwrap().relu();
        let a = conv2.forward(&h).unwrap().sigmoid();
        let b = dw.forward(&h).unwrap().tanh();
        let s = a.add(&b).unwrap().mul(&h).unwrap();
        let s = s.max_pool2d(3, 1, 1).unwrap().avg_pool2d(3, 1, 1).unwrap();
        let loss = head
            .forward(&s.global_avg_pool().unwrap())
            .unwrap()
            .cross_entropy(&labels)
            .unwrap();
        loss.backward().unwrap();
        let mut out = loss.to_vec().unwrap();
        for p in &params {
            out.extend(
                p.grad()
                    .unwrap()
                    .expect("every parameter has a gradient")
                    .to_vec()
                    .unwrap(),
            );
        }
        out
    };
    let first = run();
    assert!(first.iter().all(|v| v.is_finite()));
    let (h0, _, pooled) = pool_stats();
    assert!(pooled > 0, "the first step left buffers in the pool");
    fill_pooled(f32::NAN);
    let second = run();
    assert!(pool_stats().0 > h0, "the second step reused pooled buffers");
    let same = first
        .iter()
        .zip(&second)
        .all(|(a, b)| a.to_bits() == b.to_bits());
    assert!(
        same && first.len() == second.len(),
        "poisoned pool changed the results"
    );
}
