//! One first-order DARTS search step (architecture step on a validation batch + weight step on a
//! training batch, gradient clipping, both optimizers) of the DARTS supernet: C = 16, 8 cells,
//! batch 64, 3x32x32, 10 classes: one graph over the network (the default), recomputing the first
//! 4 cells, and recomputing every cell.
//!
//! A step takes seconds, so the sample size is the minimum criterion allows (10) and the
//! measurement time is short; `DARTS_BENCH_C` / `DARTS_BENCH_BATCH` shrink the problem for a
//! quick run. `NAS_THREADS` sets the threads. The PyTorch reference is
//! `benches/reference/darts_step_ref.py`; `nas-search/examples/darts_step.rs` reports per-step
//! times and peak memory.

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use nas_search::data::Dataset;
use nas_search::oneshot::{Method, OneShotConfig, OneShotSearch, RECOMPUTE_CELLS, SpaceKind};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn bench(c: &mut Criterion) {
    let ch = env("DARTS_BENCH_C", 16);
    let batch = env("DARTS_BENCH_BATCH", 64);
    // Enough examples for many steps in each half (steps wrap around via epochs).
    let n = 2 * batch * 4;
    let images: Vec<f32> = (0..n * 3 * 32 * 32)
        .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    let labels: Vec<usize> = (0..n).map(|i| i % 10).collect();
    let data = Dataset::new("synthetic", (3, 32, 32), 10, images, labels).expect("data");
    let mut g = c.benchmark_group("darts_step");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(30));
    for (recompute, label) in [
        (RECOMPUTE_CELLS, "default"),
        (4, "recompute_4_cells"),
        (usize::MAX, "recompute_all"),
    ] {
        let mut cfg = OneShotConfig::new(Method::Darts1, SpaceKind::Darts);
        cfg.c = ch;
        cfg.batch_size = batch;
        cfg.recompute_cells = recompute;
        cfg.epochs = 1_000_000;
        cfg.eval_each_epoch = false;
        let mut s = OneShotSearch::new(cfg, &data).expect("search");
        let name = format!("first_order_C{ch}_b{batch}_{label}");
        g.bench_function(name, |b| {
            b.iter(|| {
                if s.step_in_epoch() >= s.steps_per_epoch() {
                    // Close the epoch (no evaluation configured) and start the next.
                    let _ = s.run_epoch();
                }
                s.step().expect("step")
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
