//! NAS-Bench-201 network benchmark: the benchmark's CIFAR-10 network (C = 16, N = 5 cells per
//! stage, 3x32x32 input, 10 classes) with all six edges `nor_conv_3x3` (its largest cell,
//! 1,531,546 parameters, 220 MFLOPs per image), batch 64:
//!
//! * `fwd_bwd`: forward, cross-entropy loss, backward to every parameter;
//! * `sgd_step`: the same plus one SGD update (momentum 0.9 Nesterov, weight decay 5e-4) — one
//!   training step;
//!
//! at 1 and 2 threads. Compare with `benches/reference/nb201_net_ref.py` (PyTorch CPU);
//! results are recorded in docs/PERF.md.
//!
//! `cargo bench -p benches --bench nb201_net`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use nas_kernels::threads;
use nas_search::nets::nb201::{Nb201Config, Nb201Network};
use nas_space::nb201::Nb201Cell;
use nas_tensor::Tensor;
use nas_tensor::nn::Module;
use nas_tensor::optim::{Optimizer, Sgd, SgdConfig};

const CELL: &str = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|";

fn bench(c: &mut Criterion) {
    let cell: Nb201Cell = CELL.parse().expect("cell");
    let net = Nb201Network::new(&cell, Nb201Config::default(), 0).expect("network");
    assert_eq!(net.num_parameters(), 1_531_546);
    let x = Tensor::randn(&[64, 3, 32, 32], 1);
    let labels: Vec<usize> = (0..64).map(|i| (i * 7) % 10).collect();
    let mut opt = Sgd::new(
        net.parameters(),
        SgdConfig::new(0.01)
            .momentum(0.9)
            .nesterov(true)
            .weight_decay(5e-4),
    )
    .expect("sgd");
    let before = threads::num_threads();
    for t in [1usize, 2] {
        threads::set_num_threads(t);
        let mut g = c.benchmark_group(format!("nb201_net/threads={t}"));
        g.sample_size(10);
        g.bench_function("fwd_bwd_64x3x32x32", |b| {
            b.iter(|| {
                net.zero_grad();
                let loss = net
                    .forward(&x)
                    .and_then(|y| y.cross_entropy(&labels))
                    .expect("forward");
                loss.backward().expect("backward");
                black_box(loss.item().expect("loss"))
            })
        });
        g.bench_function("sgd_step_64x3x32x32", |b| {
            b.iter(|| {
                opt.zero_grad();
                let loss = net
                    .forward(&x)
                    .and_then(|y| y.cross_entropy(&labels))
                    .expect("forward");
                loss.backward().expect("backward");
                opt.step().expect("step");
                black_box(loss.item().expect("loss"))
            })
        });
        g.finish();
    }
    threads::set_num_threads(before);
}

criterion_group!(benches, bench);
criterion_main!(benches);
