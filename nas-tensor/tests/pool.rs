//! Tensor storage is reused from step to step: after a warm-up step, a training step takes every
//! large buffer from the per-thread pool (no fresh allocation, so no page faults).

use nas_tensor::buf::{pool_stats, set_pooling};
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
    assert!(
        h1 - h0 >= 10,
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
