//! One training step (forward, backward, SGD step) of a small CNN, with the per-thread buffer
//! pool on and off, and inference under `no_grad`.
//!
//! `cargo bench -p nas-tensor --bench train_step`

use criterion::{Criterion, criterion_group, criterion_main};
use nas_tensor::buf::set_pooling;
use nas_tensor::nn::{
    BatchNorm2d, Conv2d, GlobalAvgPool, Linear, MaxPool2d, Module, ReLU, Sequential,
};
use nas_tensor::optim::{Optimizer, Sgd, SgdConfig};
use nas_tensor::{ConvOptions, Tensor, no_grad};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn net() -> Sequential {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let p1 = ConvOptions::default().padding(1);
    Sequential::new()
        .push(Conv2d::new(3, 16, 3, p1, false, &mut rng).unwrap())
        .push(BatchNorm2d::new(16, true))
        .push(ReLU::new())
        .push(Conv2d::new(16, 16, 3, p1, false, &mut rng).unwrap())
        .push(BatchNorm2d::new(16, true))
        .push(ReLU::new())
        .push(MaxPool2d::new(3, 2, 1))
        .push(Conv2d::new(16, 32, 3, p1, false, &mut rng).unwrap())
        .push(BatchNorm2d::new(32, true))
        .push(ReLU::new())
        .push(GlobalAvgPool::new())
        .push(Linear::new(32, 10, true, &mut rng).unwrap())
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("cnn_32x32_batch32");
    g.sample_size(20);
    let x = Tensor::randn(&[32, 3, 32, 32], 1);
    let labels: Vec<usize> = (0..32).map(|i| i % 10).collect();
    for (name, pooled) in [
        ("train_step_pool_on", true),
        ("train_step_pool_off", false),
        ("train_step_pool_on_again", true),
    ] {
        let m = net();
        let mut opt = Sgd::new(m.parameters(), SgdConfig::new(0.01).momentum(0.9)).unwrap();
        set_pooling(pooled);
        g.bench_function(name, |b| {
            b.iter(|| {
                let loss = m.forward(&x).unwrap().cross_entropy(&labels).unwrap();
                opt.zero_grad();
                loss.backward().unwrap();
                opt.step().unwrap();
            })
        });
    }
    set_pooling(true);
    let m = net();
    m.set_training(false);
    g.bench_function("inference_no_grad", |b| {
        b.iter(|| no_grad(|| m.forward(&x).unwrap()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
