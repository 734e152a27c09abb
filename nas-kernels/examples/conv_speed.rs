//! Per-kernel timings of the convolution, depthwise, pointwise and batch-norm kernels on the
//! shapes of `benches/benches/conv.rs` (batch 64, 16 channels, 32x32): the minimum over
//! repetitions, for quick comparisons while tuning. Criterion benchmarks are the reference.
//!
//! It also times the three workloads of the criterion bench (same code) and prints the median
//! and minimum of `REPS` runs at 1 and 2 threads, which is robust enough on a loaded machine to
//! interleave with `benches/reference/conv_ref.py`.
//!
//! `cargo run --release -p nas-kernels --example conv_speed [-- workloads]`

use std::hint::black_box;
use std::time::Instant;

use nas_kernels::{Backend, BatchNorm2d, Conv2d, Cpu, UnaryOp, threads};

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

fn data(len: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2654435761).wrapping_add(12345);
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        })
        .collect()
}

/// Conv 3x3, 16 -> 16 channels, batch 64, 32x32, padding 1: forward, input and weight
/// gradients (0.91 GFLOP).
struct Conv3x3 {
    p: Conv2d,
    x: Vec<f32>,
    w: Vec<f32>,
    y: Vec<f32>,
    dy: Vec<f32>,
    dx: Vec<f32>,
    dw: Vec<f32>,
}

impl Conv3x3 {
    fn new() -> Self {
        let p = Conv2d::new(64, 16, 32, 32, 16, 3).padding(1);
        Conv3x3 {
            x: data(p.x_len(), 1),
            w: data(p.w_len(), 2),
            y: vec![0.0; p.y_len()],
            dy: data(p.y_len(), 3),
            dx: vec![0.0; p.x_len()],
            dw: vec![0.0; p.w_len()],
            p,
        }
    }
    fn step(&mut self) {
        Cpu.conv2d(&self.p, &self.x, &self.w, None, &mut self.y)
            .unwrap();
        Cpu.conv2d_backward_input(&self.p, &self.w, &self.dy, &mut self.dx)
            .unwrap();
        Cpu.conv2d_backward_weight(&self.p, &self.x, &self.dy, &mut self.dw, None)
            .unwrap();
        black_box(&self.dx);
    }
}

/// DARTS `SepConv(C, C, 3, stride 1, padding 1, affine=False)`:
/// ReLU, depthwise 3x3, pointwise 1x1, BN, ReLU, depthwise 3x3, pointwise 1x1, BN;
/// forward, then backward to the input and all weights. C = 16, batch 64, 32x32.
struct SepConv {
    dw: Conv2d,
    pw: Conv2d,
    bn: BatchNorm2d,
    x: Vec<f32>,
    wd: [Vec<f32>; 2],
    wp: [Vec<f32>; 2],
    rm: [Vec<f32>; 2],
    rv: [Vec<f32>; 2],
    mean: [Vec<f32>; 2],
    inv: [Vec<f32>; 2],
    // activations: r1, d1, p1, b1, r2, d2, p2, y
    act: Vec<Vec<f32>>,
    dy: Vec<f32>,
    g: [Vec<f32>; 2],
    gwd: [Vec<f32>; 2],
    gwp: [Vec<f32>; 2],
}

impl SepConv {
    fn new() -> Self {
        let (n, c, h) = (64, 16, 32);
        let dw = Conv2d::new(n, c, h, h, c, 3).padding(1).groups(c);
        let pw = Conv2d::new(n, c, h, h, c, 1);
        let bn = BatchNorm2d::new(n, c, h * h);
        let len = dw.x_len();
        SepConv {
            x: data(len, 1),
            wd: [data(dw.w_len(), 2), data(dw.w_len(), 3)],
            wp: [data(pw.w_len(), 4), data(pw.w_len(), 5)],
            rm: [vec![0.0; c], vec![0.0; c]],
            rv: [vec![1.0; c], vec![1.0; c]],
            mean: [vec![0.0; c], vec![0.0; c]],
            inv: [vec![0.0; c], vec![0.0; c]],
            act: vec![vec![0.0; len]; 8],
            dy: data(len, 6),
            g: [vec![0.0; len], vec![0.0; len]],
            gwd: [vec![0.0; dw.w_len()], vec![0.0; dw.w_len()]],
            gwp: [vec![0.0; pw.w_len()], vec![0.0; pw.w_len()]],
            dw,
            pw,
            bn,
        }
    }

    fn forward(&mut self) {
        let s = self;
        for half in 0..2 {
            let (before, rest) = s.act.split_at_mut(4 * half);
            let input = if half == 0 { &s.x } else { &before[3] };
            let [r, d, p, b] = &mut rest[..4] else {
                unreachable!()
            };
            Cpu.unary(UnaryOp::Relu, input, r).unwrap();
            Cpu.conv2d(&s.dw, r, &s.wd[half], None, d).unwrap();
            Cpu.conv2d(&s.pw, d, &s.wp[half], None, p).unwrap();
            Cpu.batch_norm(
                &s.bn,
                p,
                None,
                None,
                Some(&mut s.rm[half]),
                Some(&mut s.rv[half]),
                b,
                &mut s.mean[half],
                &mut s.inv[half],
            )
            .unwrap();
        }
    }

    fn backward(&mut self) {
        let s = self;
        // g[0] holds the running gradient, g[1] is scratch
        s.g[0].copy_from_slice(&s.dy);
        for half in (0..2).rev() {
            let a = &s.act[4 * half..4 * half + 4];
            let input = if half == 0 { &s.x } else { &s.act[3] };
            let [g0, g1] = &mut s.g;
            // BN: g0 -> g1
            Cpu.batch_norm_backward(
                &s.bn,
                &a[2],
                None,
                &s.mean[half],
                &s.inv[half],
                g0,
                g1,
                None,
                None,
            )
            .unwrap();
            // pointwise: g1 -> g0, weight grad from d
            Cpu.conv2d_backward_weight(&s.pw, &a[1], g1, &mut s.gwp[half], None)
                .unwrap();
            Cpu.conv2d_backward_input(&s.pw, &s.wp[half], g1, g0)
                .unwrap();
            // depthwise: g0 -> g1, weight grad from r
            Cpu.conv2d_backward_weight(&s.dw, &a[0], g0, &mut s.gwd[half], None)
                .unwrap();
            Cpu.conv2d_backward_input(&s.dw, &s.wd[half], g0, g1)
                .unwrap();
            // ReLU: g1 -> g0
            Cpu.unary_backward(UnaryOp::Relu, input, &a[0], g1, g0)
                .unwrap();
        }
        black_box(&s.g[0]);
    }
}

/// Batch norm (training, affine) forward + backward on (64, 16, 32, 32).
struct Bn {
    p: BatchNorm2d,
    x: Vec<f32>,
    gamma: Vec<f32>,
    beta: Vec<f32>,
    rm: Vec<f32>,
    rv: Vec<f32>,
    y: Vec<f32>,
    mean: Vec<f32>,
    inv: Vec<f32>,
    dy: Vec<f32>,
    dx: Vec<f32>,
    dg: Vec<f32>,
    db: Vec<f32>,
}

impl Bn {
    fn new() -> Self {
        let p = BatchNorm2d::new(64, 16, 1024);
        let c = 16;
        Bn {
            x: data(p.x_len(), 1),
            gamma: data(c, 2),
            beta: data(c, 3),
            rm: vec![0.0; c],
            rv: vec![1.0; c],
            y: vec![0.0; p.x_len()],
            mean: vec![0.0; c],
            inv: vec![0.0; c],
            dy: data(p.x_len(), 4),
            dx: vec![0.0; p.x_len()],
            dg: vec![0.0; c],
            db: vec![0.0; c],
            p,
        }
    }
    fn step(&mut self) {
        Cpu.batch_norm(
            &self.p,
            &self.x,
            Some(&self.gamma),
            Some(&self.beta),
            Some(&mut self.rm),
            Some(&mut self.rv),
            &mut self.y,
            &mut self.mean,
            &mut self.inv,
        )
        .unwrap();
        Cpu.batch_norm_backward(
            &self.p,
            &self.x,
            Some(&self.gamma),
            &self.mean,
            &self.inv,
            &self.dy,
            &mut self.dx,
            Some(&mut self.dg),
            Some(&mut self.db),
        )
        .unwrap();
        black_box(&self.dx);
    }
}

fn workloads() {
    let reps = 30;
    let mut conv = Conv3x3::new();
    let mut sep = SepConv::new();
    let mut bn = Bn::new();
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
        show("conv3x3_fwd_bwd", stats(reps, || conv.step()));
        show(
            "sepconv_fwd_bwd",
            stats(reps, || {
                sep.forward();
                sep.backward()
            }),
        );
        show("batchnorm_fwd_bwd", stats(reps, || bn.step()));
    }
}

fn main() -> nas_kernels::Result<()> {
    if std::env::args().any(|a| a == "workloads") {
        workloads();
        return Ok(());
    }
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
