//! Per-kernel timings of the convolution, depthwise, pointwise and batch-norm kernels on the
//! shapes of `benches/benches/conv.rs` (batch 64, 16 channels, 32x32): the minimum over
//! repetitions, for quick comparisons while tuning. Criterion benchmarks are the reference.
//!
//! It also times the three workloads of the criterion bench (same code) and prints the median
//! and minimum of `REPS` runs at 1 and 2 threads, which is robust enough on a loaded machine to
//! interleave with `benches/reference/conv_ref.py`.
//!
//! `cargo run --release -p nas-kernels --example conv_speed [-- workloads]`

use std::time::Instant;

use nas_kernels::workloads::{BatchNormFwdBwd, Conv3x3FwdBwd, SepConvBlock, best_seconds};
use nas_kernels::{Backend, BatchNormParams, Conv2dParams, Cpu, UnaryOp, threads};

fn time(name: &str, reps: usize, f: impl FnMut()) {
    println!("{name:<28} {:8.3} ms", best_seconds(reps, f) * 1e3);
}

/// Nanoseconds this thread has spent on a CPU (Linux `/proc/thread-self/schedstat`), so that
/// single-thread timings can exclude time the scheduler gave to other processes.
fn thread_cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

/// Median and minimum wall time (ms) of `reps` runs, and the mean on-CPU time (ms) of this
/// thread per run (only meaningful when the work runs on this thread alone).
fn stats(reps: usize, mut f: impl FnMut()) -> (f64, f64, f64) {
    for _ in 0..3 {
        f();
    }
    let c0 = thread_cpu_ns();
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    let cpu = match (c0, thread_cpu_ns()) {
        (Some(a), Some(b)) => (b - a) as f64 / 1e6 / reps as f64,
        _ => f64::NAN,
    };
    t.sort_by(f64::total_cmp);
    (t[reps / 2], t[0], cpu)
}

fn workloads() {
    let reps = 30;
    let mut conv = Conv3x3FwdBwd::new();
    let mut sep = SepConvBlock::new();
    let mut bn = BatchNormFwdBwd::new();
    for t in [1usize, 2] {
        threads::set_num_threads(t);
        let show = |name: &str, (m, lo, cpu): (f64, f64, f64)| {
            let cpu = if t == 1 {
                format!("  thread-cpu {cpu:7.3} ms")
            } else {
                String::new()
            };
            println!("threads={t} {name:<18} median {m:7.3} ms  min {lo:7.3} ms{cpu}");
        };
        show("conv3x3_fwd_bwd", stats(reps, || conv.step().unwrap()));
        show(
            "sepconv_fwd_bwd",
            stats(reps, || {
                sep.forward().unwrap();
                sep.backward().unwrap()
            }),
        );
        show("batchnorm_fwd_bwd", stats(reps, || bn.step().unwrap()));
    }
}

fn main() -> nas_kernels::Result<()> {
    if std::env::args().any(|a| a == "workloads") {
        workloads();
        return Ok(());
    }
    let reps = 15;
    for (name, p) in [
        (
            "conv3x3",
            Conv2dParams::new(64, 16, 32, 32, 16, 3).padding(1),
        ),
        (
            "depthwise3x3",
            Conv2dParams::new(64, 16, 32, 32, 16, 3)
                .padding(1)
                .groups(16),
        ),
        ("pointwise1x1", Conv2dParams::new(64, 16, 32, 32, 16, 1)),
    ] {
        let x: Vec<f32> = (0..p.x_len())
            .map(|i| (i % 17) as f32 * 0.1 - 0.8)
            .collect();
        let w: Vec<f32> = (0..p.w_len()).map(|i| (i % 5) as f32 * 0.1 - 0.2).collect();
        let dy: Vec<f32> = (0..p.y_len())
            .map(|i| (i % 13) as f32 * 0.1 - 0.6)
            .collect();
        let mut y = vec![0.0; p.y_len()];
        let mut dx = vec![0.0; p.x_len()];
        let mut dw = vec![0.0; p.w_len()];
        time(&format!("{name} forward"), reps, || {
            Cpu.conv2d(&p.check().expect("valid parameters"), &x, &w, None, &mut y)
                .unwrap()
        });
        time(&format!("{name} backward input"), reps, || {
            Cpu.conv2d_backward_input(&p.check().expect("valid parameters"), &w, &dy, &mut dx)
                .unwrap()
        });
        time(&format!("{name} backward weight"), reps, || {
            Cpu.conv2d_backward_weight(
                &p.check().expect("valid parameters"),
                &x,
                &dy,
                &mut dw,
                None,
            )
            .unwrap()
        });
    }
    let bn = BatchNormParams::new(64, 16, 1024);
    let x: Vec<f32> = (0..bn.x_len()).map(|i| (i % 17) as f32 * 0.1).collect();
    let dy = x.clone();
    let (mut y, mut dx) = (vec![0.0; bn.x_len()], vec![0.0; bn.x_len()]);
    let (mut rm, mut rv, mut m, mut v) =
        (vec![0.0; 16], vec![1.0; 16], vec![0.0; 16], vec![0.0; 16]);
    time("batch_norm forward", reps, || {
        Cpu.batch_norm(
            &bn.check().expect("valid parameters"),
            &x,
            None,
            None,
            Some(&mut rm),
            Some(&mut rv),
            &mut y,
            &mut m,
            &mut v,
        )
        .unwrap()
    });
    time("batch_norm backward", reps, || {
        Cpu.batch_norm_backward(
            &bn.check().expect("valid parameters"),
            &x,
            None,
            &m,
            &v,
            &dy,
            &mut dx,
            None,
            None,
        )
        .unwrap()
    });
    time("relu forward", reps, || {
        Cpu.unary(UnaryOp::Relu, &x, &mut y).unwrap()
    });
    time("relu backward", reps, || {
        Cpu.unary_backward(UnaryOp::Relu, &x, &y, &dy, &mut dx)
            .unwrap()
    });
    Ok(())
}
