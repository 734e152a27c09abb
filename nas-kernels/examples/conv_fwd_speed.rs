//! Forward convolution speed on the dense shapes NAS runs, GFLOP/s from this thread's CPU
//! time (min of N calls; `/proc/thread-self/schedstat`) and from wall time, at 1 and 2 threads.
//!
//! `cargo run --release -p nas-kernels --example conv_fwd_speed [-- --reps N] [--shapes big|small|all]`

use std::time::Instant;

use nas_kernels::workloads::data;
use nas_kernels::{Backend, Conv2dParams, Cpu, threads};

/// Nanoseconds of CPU time of the calling thread (`CLOCK_THREAD_CPUTIME_ID`, Linux x86-64
/// layout), so that one-thread timings exclude time the scheduler gave to other processes.
fn thread_cpu_ns() -> u64 {
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
    // SAFETY: `ts` is a valid, writable timespec.
    if unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut ts) } == 0 {
        ts.sec as u64 * 1_000_000_000 + ts.nsec as u64
    } else {
        0
    }
}

fn shapes(which: &str) -> Vec<(&'static str, Conv2dParams)> {
    let mut v = Vec::new();
    if which != "small" {
        v.extend([
            (
                "conv16 64x16x32x32",
                Conv2dParams::new(64, 16, 32, 32, 16, 3).padding(1),
            ),
            (
                "conv32 64x32x16x16",
                Conv2dParams::new(64, 32, 16, 16, 32, 3).padding(1),
            ),
            (
                "conv64 64x64x8x8",
                Conv2dParams::new(64, 64, 8, 8, 64, 3).padding(1),
            ),
            (
                "s2 16->32 64x32x32",
                Conv2dParams::new(64, 16, 32, 32, 32, 3)
                    .padding(1)
                    .stride(2),
            ),
            (
                "s2 32->64 64x16x16",
                Conv2dParams::new(64, 32, 16, 16, 64, 3)
                    .padding(1)
                    .stride(2),
            ),
        ]);
    }
    if which != "big" {
        v.extend([
            (
                "c8 64x8x28x28",
                Conv2dParams::new(64, 8, 28, 28, 8, 3).padding(1),
            ),
            (
                "c8 64x8x14x14",
                Conv2dParams::new(64, 8, 14, 14, 8, 3).padding(1),
            ),
            (
                "c8 64x8x7x7",
                Conv2dParams::new(64, 8, 7, 7, 8, 3).padding(1),
            ),
            (
                "c8 1x8x28x28",
                Conv2dParams::new(1, 8, 28, 28, 8, 3).padding(1),
            ),
            ("c8 1x8x7x7", Conv2dParams::new(1, 8, 7, 7, 8, 3).padding(1)),
            (
                "c16 1x16x32x32",
                Conv2dParams::new(1, 16, 32, 32, 16, 3).padding(1),
            ),
            (
                "s2 8->16 64x28x28",
                Conv2dParams::new(64, 8, 28, 28, 16, 3).padding(1).stride(2),
            ),
            (
                "s2 16->32 64x14x14",
                Conv2dParams::new(64, 16, 14, 14, 32, 3)
                    .padding(1)
                    .stride(2),
            ),
            (
                "s2 8->16 1x28x28",
                Conv2dParams::new(1, 8, 28, 28, 16, 3).padding(1).stride(2),
            ),
            (
                "s2 16->32 1x14x14",
                Conv2dParams::new(1, 16, 14, 14, 32, 3).padding(1).stride(2),
            ),
            (
                "s2 16->32 1x32x32",
                Conv2dParams::new(1, 16, 32, 32, 32, 3).padding(1).stride(2),
            ),
            (
                "s2 32->64 1x16x16",
                Conv2dParams::new(1, 32, 16, 16, 64, 3).padding(1).stride(2),
            ),
            (
                "s2 64->64 64x8x8",
                Conv2dParams::new(64, 64, 8, 8, 64, 3).padding(1).stride(2),
            ),
            (
                "1x1 s2 16->8 64x32x32",
                Conv2dParams::new(64, 16, 32, 32, 8, 1).stride(2),
            ),
            (
                "1x1 s2 8->4 64x28x28",
                Conv2dParams::new(64, 8, 28, 28, 4, 1).stride(2),
            ),
            (
                "1x1 s2 32->64 64x16x16",
                Conv2dParams::new(64, 32, 16, 16, 64, 1).stride(2),
            ),
            (
                "1x1 s2 8->4 1x28x28",
                Conv2dParams::new(1, 8, 28, 28, 4, 1).stride(2),
            ),
            (
                "5x5 s2 16->16 64x32x32",
                Conv2dParams::new(64, 16, 32, 32, 16, 5)
                    .padding(2)
                    .stride(2),
            ),
        ]);
    }
    v
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let get = |k: &str| {
        args.iter()
            .position(|a| a == k)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let reps: usize = get("--reps").and_then(|s| s.parse().ok()).unwrap_or(20);
    let which = get("--shapes").unwrap_or_else(|| "all".into());
    for t in [1usize, 2] {
        threads::set_num_threads(t);
        for (name, p) in shapes(&which) {
            let c = p.check().expect("valid parameters");
            let x = data(p.x_len(), 1);
            let w = data(p.w_len(), 2);
            let mut y = vec![0.0; p.y_len()];
            let flop = 2.0 * (p.y_len() * p.c_in * p.kh * p.kw) as f64;
            // enough calls for ~ 2e9 flop per sample set, at least `reps`
            let n = reps.max((2e9 / flop) as usize).min(20_000);
            Cpu.conv2d(&c, &x, &w, None, &mut y).unwrap();
            let (mut best_cpu, mut best_wall) = (u64::MAX, f64::MAX);
            for _ in 0..n {
                let c0 = thread_cpu_ns();
                let s = Instant::now();
                Cpu.conv2d(&c, &x, &w, None, &mut y).unwrap();
                best_wall = best_wall.min(s.elapsed().as_secs_f64());
                best_cpu = best_cpu.min(thread_cpu_ns() - c0);
            }
            let cpu = if t == 1 {
                format!("cpu {:7.1} GFLOP/s", flop / best_cpu as f64)
            } else {
                String::new()
            };
            println!(
                "threads={t} {name:<20} wall {:9.1} us {:7.1} GFLOP/s  {cpu}",
                best_wall * 1e6,
                flop / best_wall / 1e9
            );
        }
    }
}
