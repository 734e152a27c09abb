//! GEMM benchmarks: `nas_kernels::gemm` (one and two threads) against ndarray's matrixmultiply
//! on the same shapes, side by side.
//!
//! ```text
//! cargo bench -p benches --bench gemm                 # criterion
//! cargo bench -p benches --bench gemm -- conv         # only the convolution shapes
//! GEMM_TABLE=1 cargo bench -p benches --bench gemm    # interleaved table (JSON lines), no criterion
//! ```
//!
//! Shapes: squares 64..1024 (NN) and the three GEMMs of a 3x3 convolution at batch 64 in three
//! CIFAR-ResNet stages (16 channels at 32x32, 32 at 16x16, 64 at 8x8): forward `NN`
//! (M = C_out, K = 9 C_in, N = batch H W), weight gradient `NT` (M = C_out, N = 9 C_in,
//! contraction over batch H W), input gradient `TN` (M = 9 C_in, N = batch H W, K = C_out).
//!
//! ndarray is timed through `ndarray::linalg::general_mat_mul` (the matrixmultiply kernel behind
//! `dot`, writing into an existing output so that neither side pays for allocating `C`), on one
//! thread (ndarray's default build). Transposed operands are passed as transposed views.
//!
//! Table mode (`GEMM_TABLE=1`, optional `GEMM_ROUNDS`, default 3): for every shape and round,
//! times the contenders back to back (ours 1 thread, ours 2 threads, ndarray), each as the
//! median of repeated calls over ~0.25 s, and prints one JSON object per shape and contender
//! with the median over rounds (wall time, and the calling thread's CPU time `cpu_ms`, which
//! is what a one-thread run costs when the machine is shared). This is what docs/PERF.md
//! quotes.

use criterion::{BenchmarkId, Criterion, Throughput};
use nas_kernels::gemm::{Kernel, sgemm_with};
use ndarray::{Array2, ArrayView2, linalg::general_mat_mul};
use std::hint::black_box;
use std::time::{Duration, Instant};

/// One GEMM problem with its operands.
struct Problem {
    ta: bool,
    tb: bool,
    m: usize,
    n: usize,
    k: usize,
    /// Stored `A` (`m x k`, or `k x m` when `ta`).
    a: Array2<f32>,
    /// Stored `B` (`k x n`, or `n x k` when `tb`).
    b: Array2<f32>,
    c: Array2<f32>,
}

impl Problem {
    fn new(ta: bool, tb: bool, m: usize, n: usize, k: usize) -> Problem {
        // Deterministic, cheap, non-trivial values.
        let fill = |r: usize, c: usize, salt: usize| {
            Array2::from_shape_fn((r, c), |(i, j)| {
                (((i * 131 + j * 71 + salt) % 97) as f32 - 48.0) / 64.0
            })
        };
        let a = if ta { fill(k, m, 1) } else { fill(m, k, 1) };
        let b = if tb { fill(n, k, 2) } else { fill(k, n, 2) };
        Problem {
            ta,
            tb,
            m,
            n,
            k,
            a,
            b,
            c: Array2::zeros((m, n)),
        }
    }

    fn flops(&self) -> f64 {
        2.0 * (self.m * self.n * self.k) as f64
    }

    fn ours(&mut self, threads: usize) {
        let lda = if self.ta { self.m } else { self.k };
        let ldb = if self.tb { self.k } else { self.n };
        let (a, b) = (
            self.a.as_slice().expect("standard layout"),
            self.b.as_slice().expect("standard layout"),
        );
        let c = self.c.as_slice_mut().expect("standard layout");
        sgemm_with(
            Kernel::best(),
            threads,
            self.ta,
            self.tb,
            self.m,
            self.n,
            self.k,
            1.0,
            a,
            lda,
            b,
            ldb,
            0.0,
            c,
            self.n,
        )
        .expect("valid shapes");
    }

    fn ndarray(&mut self) {
        let a: ArrayView2<f32> = if self.ta { self.a.t() } else { self.a.view() };
        let b: ArrayView2<f32> = if self.tb { self.b.t() } else { self.b.view() };
        general_mat_mul(1.0, &a, &b, 0.0, &mut self.c);
    }
}

/// The benchmarked shapes (name, transposes, m, n, k).
fn shapes() -> Vec<(String, bool, bool, usize, usize, usize)> {
    let mut out = Vec::new();
    for s in [64, 128, 256, 512, 1024] {
        out.push((format!("square{s}"), false, false, s, s, s));
    }
    for (ch, side) in [(16usize, 32usize), (32, 16), (64, 8)] {
        let (kdim, bhw) = (9 * ch, 64 * side * side);
        out.push((format!("conv{ch}_fwd_NN"), false, false, ch, bhw, kdim));
        out.push((format!("conv{ch}_dW_NT"), false, true, ch, kdim, bhw));
        out.push((format!("conv{ch}_dX_TN"), true, false, kdim, bhw, ch));
    }
    out
}

fn bench(c: &mut Criterion) {
    for (name, ta, tb, m, n, k) in shapes() {
        let group_name = if name.starts_with("square") {
            "gemm_square"
        } else {
            "gemm_conv"
        };
        let mut p = Problem::new(ta, tb, m, n, k);
        let mut g = c.benchmark_group(group_name);
        g.throughput(Throughput::Elements(p.flops() as u64));
        // Small samples for big shapes keep the whole run to a few minutes.
        let big = p.flops() > 5e7;
        g.sample_size(if big { 10 } else { 30 });
        g.warm_up_time(Duration::from_millis(300));
        g.measurement_time(Duration::from_millis(if big { 1500 } else { 800 }));
        for threads in [1, 2] {
            g.bench_function(BenchmarkId::new(format!("nas_t{threads}"), &name), |bch| {
                bch.iter(|| {
                    p.ours(threads);
                    black_box(&p.c);
                })
            });
        }
        g.bench_function(BenchmarkId::new("ndarray_t1", &name), |bch| {
            bch.iter(|| {
                p.ndarray();
                black_box(&p.c);
            })
        });
        g.finish();
    }
}

/// Median of a sample (sorted in place).
fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// CPU time of the calling thread in seconds (Linux; elsewhere `NaN`): on a loaded machine
/// it excludes the time the thread waited for a core, which wall time does not.
fn thread_cpu_seconds() -> f64 {
    #[cfg(target_os = "linux")]
    {
        #[repr(C)]
        struct Timespec {
            sec: i64,
            nsec: i64,
        }
        unsafe extern "C" {
            fn clock_gettime(clock: i32, ts: *mut Timespec) -> i32;
        }
        const CLOCK_THREAD_CPUTIME_ID: i32 = 3;
        let mut ts = Timespec { sec: 0, nsec: 0 };
        // SAFETY: `ts` is a valid, writable timespec (64-bit Linux layout).
        if unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut ts) } == 0 {
            return ts.sec as f64 + ts.nsec as f64 * 1e-9;
        }
    }
    f64::NAN
}

/// Median wall and calling-thread CPU seconds per call over ~`budget` of repeated calls
/// (after one warm-up call).
fn time_median(budget: Duration, mut f: impl FnMut()) -> (f64, f64) {
    f();
    let start = Instant::now();
    let (mut walls, mut cpus) = (Vec::new(), Vec::new());
    while walls.len() < 3 || (start.elapsed() < budget && walls.len() < 2000) {
        let c = thread_cpu_seconds();
        let t = Instant::now();
        f();
        walls.push(t.elapsed().as_secs_f64());
        cpus.push(thread_cpu_seconds() - c);
    }
    (median(&mut walls), median(&mut cpus))
}

/// Interleaved table: per shape and round, ours-1, ours-2 and ndarray back to back.
fn table() {
    let rounds: usize = std::env::var("GEMM_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let budget = Duration::from_millis(250);
    for (name, ta, tb, m, n, k) in shapes() {
        let mut p = Problem::new(ta, tb, m, n, k);
        let mut wall: [Vec<f64>; 3] = Default::default();
        let mut cpu: [Vec<f64>; 3] = Default::default();
        for _ in 0..rounds {
            for (i, w, c) in [
                (0, time_median(budget, || p.ours(1))),
                (1, time_median(budget, || p.ours(2))),
                (2, time_median(budget, || p.ndarray())),
            ]
            .map(|(i, (w, c))| (i, w, c))
            {
                wall[i].push(w);
                cpu[i].push(c);
            }
        }
        for (i, (lib, threads)) in [("nas", 1), ("nas", 2), ("ndarray", 1)].iter().enumerate() {
            let (s, c) = (median(&mut wall[i]), median(&mut cpu[i]));
            println!(
                "{{\"shape\":\"{name}\",\"m\":{m},\"n\":{n},\"k\":{k},\"ta\":{ta},\"tb\":{tb},\"lib\":\"{lib}\",\"threads\":{threads},\"ms\":{:.4},\"gflops\":{:.2},\"cpu_ms\":{:.4},\"rounds\":{rounds}}}",
                s * 1e3,
                p.flops() / s / 1e9,
                c * 1e3
            );
        }
    }
}

fn main() {
    if std::env::var_os("GEMM_TABLE").is_some() {
        table();
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
}
