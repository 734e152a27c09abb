//! Per-kernel timings of the convolution, depthwise, pointwise and batch-norm kernels on the
//! shapes of `benches/benches/conv.rs` (batch 64, 16 channels, 32x32): the minimum over
//! repetitions, for quick comparisons while tuning. Criterion benchmarks are the reference.
//!
//! `NAS_THREADS=1 cargo run --release -p nas-kernels --example conv_speed`

use std::time::Instant;

use nas_kernels::{Backend, BatchNorm2d, Conv2d, Cpu, UnaryOp};

fn time(name: &str, reps: usize, mut f: impl FnMut()) {
    f();
    let mut best = f64::MAX;
    for _ in 0..reps {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64());
    }
    println!("{name:<28} {:8.3} ms", best * 1e3);
}

fn main() -> nas_kernels::Result<()> {
    let reps = 15;
    for (name, p) in [
        ("conv3x3", Conv2d::new(64, 16, 32, 32, 16, 3).padding(1)),
        (
            "depthwise3x3",
            Conv2d::new(64, 16, 32, 32, 16, 3).padding(1).groups(16),
        ),
        ("pointwise1x1", Conv2d::new(64, 16, 32, 32, 16, 1)),
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
            Cpu.conv2d(&p, &x, &w, None, &mut y).unwrap()
        });
        time(&format!("{name} backward input"), reps, || {
            Cpu.conv2d_backward_input(&p, &w, &dy, &mut dx).unwrap()
        });
        time(&format!("{name} backward weight"), reps, || {
            Cpu.conv2d_backward_weight(&p, &x, &dy, &mut dw, None)
                .unwrap()
        });
    }
    let bn = BatchNorm2d::new(64, 16, 1024);
    let x: Vec<f32> = (0..bn.x_len()).map(|i| (i % 17) as f32 * 0.1).collect();
    let dy = x.clone();
    let (mut y, mut dx) = (vec![0.0; bn.x_len()], vec![0.0; bn.x_len()]);
    let (mut rm, mut rv, mut m, mut v) =
        (vec![0.0; 16], vec![1.0; 16], vec![0.0; 16], vec![0.0; 16]);
    time("batch_norm forward", reps, || {
        Cpu.batch_norm(
            &bn,
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
        Cpu.batch_norm_backward(&bn, &x, None, &m, &v, &dy, &mut dx, None, None)
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
