//! Convolution, DARTS separable-conv block and batch-norm benchmarks (forward + backward),
//! at 1 and 2 threads, on the workloads of `nas_kernels::workloads`. Compare with
//! `benches/reference/conv_ref.py` (PyTorch CPU); results are recorded in docs/PERF.md.
//!
//! The forward alone of the dense 3x3 convolutions NAS runs (the conv16 and conv32 shapes of
//! issue 20, NB201's stride-2 reduction convolution), with flops as criterion's throughput
//! "elements" (so it reports GFLOP/s), is in the same groups.
//!
//! `cargo bench -p benches --bench conv`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use nas_kernels::workloads::{BatchNormFwdBwd, Conv3x3FwdBwd, SepConvBlock, data};
use nas_kernels::{Backend, Conv2dParams, Cpu, threads};

/// Forward-only cases: name and shape.
fn forward_cases() -> [(&'static str, Conv2dParams); 3] {
    [
        (
            "conv3x3_fwd_64x16x32x32",
            Conv2dParams::new(64, 16, 32, 32, 16, 3).padding(1),
        ),
        (
            "conv3x3_fwd_64x32x16x16",
            Conv2dParams::new(64, 32, 16, 16, 32, 3).padding(1),
        ),
        (
            "conv3x3_s2_fwd_64x16x32x32_to_32",
            Conv2dParams::new(64, 16, 32, 32, 32, 3)
                .padding(1)
                .stride(2),
        ),
    ]
}

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
        for (name, p) in forward_cases() {
            let c = p.check().expect("valid parameters");
            let (x, w) = (data(p.x_len(), 1), data(p.w_len(), 2));
            let mut y = vec![0.0; p.y_len()];
            g.throughput(Throughput::Elements(
                2 * (p.y_len() * p.c_in * p.kh * p.kw) as u64,
            ));
            g.bench_function(name, |b| {
                b.iter(|| Cpu.conv2d(&c, &x, &w, None, &mut y).unwrap())
            });
        }
        g.finish();
    }
    threads::set_num_threads(before);
}

criterion_group!(benches, bench);
criterion_main!(benches);
