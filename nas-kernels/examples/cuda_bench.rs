//! CUDA kernel timings (feature `cuda`, a GPU): SGEMM 4096^3 and a 3x3 convolution's forward
//! and backward (N=64, C=64, 32x32), median milliseconds over repetitions, each timed from a
//! synchronised start to a synchronised end. `scripts/gpu-check.sh` runs it next to PyTorch's
//! cuBLAS/cuDNN on the same card.
//!
//! `cargo run --release --features cuda -p nas-kernels --example cuda_bench [-- cuda:N]`

use std::time::Instant;

use nas_kernels::{Backend, Conv2dParams, Cuda, Device, Matmul};

fn median_ms(cuda: &Cuda, reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    cuda.synchronize().unwrap();
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let s = Instant::now();
            f();
            cuda.synchronize().unwrap();
            s.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[reps / 2]
}

fn main() {
    let dev: Device = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "cuda:0".into())
        .parse()
        .unwrap();
    let c = Cuda::new(dev).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(1)
    });
    println!("device: {}", c.name());
    let n = 4096;
    let p = Matmul {
        batch: 1,
        m: n,
        n,
        k: n,
        trans_a: false,
        trans_b: false,
        b_shared: false,
        alpha: 1.0,
        beta: 0.0,
    };
    let a = c.from_vec(vec![0.5; n * n]).unwrap();
    let b = c.from_vec(vec![0.25; n * n]).unwrap();
    let mut out = c.alloc(n * n).unwrap();
    let ms = median_ms(&c, 20, || c.matmul(&p, &a, &b, &mut out).unwrap());
    let gflops = 2.0 * (n as f64).powi(3) / (ms * 1e-3) / 1e9;
    println!("sgemm 4096 nas: {ms:.3} ms, {gflops:.0} GFLOP/s");
    let got = c.to_vec(&out).unwrap();
    assert!(
        (got[12345] - 0.125 * n as f32).abs() < 1e-2,
        "sgemm result {}",
        got[12345]
    );

    let p = Conv2dParams::new(64, 64, 32, 32, 64, 3).padding(1);
    let x = c.from_vec(vec![0.1; p.x_len()]).unwrap();
    let w = c.from_vec(vec![0.01; p.w_len()]).unwrap();
    let dy = c.from_vec(vec![0.2; p.y_len()]).unwrap();
    let (mut y, mut dx, mut dw) = (
        c.alloc(p.y_len()).unwrap(),
        c.alloc(p.x_len()).unwrap(),
        c.alloc(p.w_len()).unwrap(),
    );
    let f = median_ms(&c, 20, || {
        c.conv2d(&p.check().expect("valid parameters"), &x, &w, None, &mut y)
            .unwrap()
    });
    let bi = median_ms(&c, 20, || {
        c.conv2d_backward_input(&p.check().expect("valid parameters"), &w, &dy, &mut dx)
            .unwrap()
    });
    let bw = median_ms(&c, 20, || {
        c.conv2d_backward_weight(
            &p.check().expect("valid parameters"),
            &x,
            &dy,
            &mut dw,
            None,
        )
        .unwrap()
    });
    println!(
        "conv3x3 n64 c64 32x32 nas: forward {f:.3} ms, backward input {bi:.3} ms, backward weight {bw:.3} ms, total {:.3} ms",
        f + bi + bw
    );
}
