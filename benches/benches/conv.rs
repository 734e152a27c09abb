//! Convolution, DARTS separable-conv block and batch-norm benchmarks (forward + backward),
//! at 1 and 2 threads, on the workloads of `nas_kernels::workloads`. Compare with
//! `benches/reference/conv_ref.py` (PyTorch CPU); results are recorded in docs/PERF.md.
//!
//! `cargo bench -p benches --bench conv`

use criterion::{Criterion, criterion_group, criterion_main};
use nas_kernels::threads;
use nas_kernels::workloads::{BatchNormFwdBwd, Conv3x3FwdBwd, SepConvBlock};

fn bench(c: &mut Criterion) {
    let mut conv = Conv3x3FwdBwd::new();
    let mut sep = SepConvBlock::new();
    let mut bn = BatchNormFwdBwd::new();
    let before = threads::num_threads();
    for t in [1usize, 2] {
        threads::set_num_threads(t);
        let mut g = c.benchmark_group(format!("threads={t}"));
        g.sample_size(20);
        g.bench_function("conv3x3_fwd_bwd_64x16x32x32", |b| {
            b.iter(|| conv.step().unwrap())
        });
        g.bench_function("sepconv_block_fwd_bwd_64x16x32x32", |b| {
            b.iter(|| {
                sep.forward().unwrap();
                sep.backward().unwrap();
            })
        });
        g.bench_function("batchnorm_fwd_bwd_64x16x32x32", |b| {
            b.iter(|| bn.step().unwrap())
        });
        g.finish();
    }
    threads::set_num_threads(before);
}

criterion_group!(benches, bench);
criterion_main!(benches);
