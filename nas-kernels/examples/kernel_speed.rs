//! Quick GEMM speed check without criterion: GFLOP/s and milliseconds per shape.
//!
//! ```text
//! cargo run --release -p nas-kernels --example kernel_speed
//! cargo run --release -p nas-kernels --example kernel_speed -- --threads 2 --json
//! cargo run --release -p nas-kernels --example kernel_speed -- --kernel avx2 --shapes conv
//! ```
//!
//! Options: `--threads N` (default: `NAS_THREADS` or all cores), `--kernel scalar|avx2|avx512`
//! (default: the best this CPU runs), `--shapes all|square|conv` (default `all`), `--json`
//! (one JSON object per line), `--time SECONDS` per shape (default 0.3), `--shape MxNxK[:OP]`
//! for one custom shape (`OP` is `NN` (default), `NT`, `TN` or `TT`), e.g. `16x4096x144:NN`.
//!
//! Shapes: squares 64..1024 (NN), and the three GEMMs of a 3x3 convolution in three stages
//! of a CIFAR ResNet at batch 64: forward `NN` (M = C_out, K = 9 C_in, N = batch H W), weight
//! gradient `NT` (M = C_out, N = 9 C_in, contraction over batch H W) and input gradient `TN`
//! (M = 9 C_in, N = batch H W, K = C_out). Each shape reports the median (and best) over repetitions.

use nas_kernels::gemm::{Kernel, sgemm_with};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Instant;

/// One GEMM shape: name, transposes and sizes.
struct Shape {
    name: String,
    ta: bool,
    tb: bool,
    m: usize,
    n: usize,
    k: usize,
}

fn shapes(which: &str) -> Vec<Shape> {
    let mut out = Vec::new();
    if which == "all" || which == "square" {
        for s in [64, 128, 256, 512, 1024] {
            out.push(Shape {
                name: format!("square{s}"),
                ta: false,
                tb: false,
                m: s,
                n: s,
                k: s,
            });
        }
    }
    if which == "all" || which == "conv" {
        // (channels, spatial side) at batch 64: 16 @ 32x32, 32 @ 16x16, 64 @ 8x8.
        for (ch, side) in [(16usize, 32usize), (32, 16), (64, 8)] {
            let kdim = 9 * ch;
            let bhw = 64 * side * side;
            out.push(Shape {
                name: format!("conv{ch}_fwd_NN"),
                ta: false,
                tb: false,
                m: ch,
                n: bhw,
                k: kdim,
            });
            out.push(Shape {
                name: format!("conv{ch}_dW_NT"),
                ta: false,
                tb: true,
                m: ch,
                n: kdim,
                k: bhw,
            });
            out.push(Shape {
                name: format!("conv{ch}_dX_TN"),
                ta: true,
                tb: false,
                m: kdim,
                n: bhw,
                k: ch,
            });
        }
    }
    out
}

/// Parses `MxNxK[:OP]`.
fn parse_shape(v: &str) -> Option<Shape> {
    let (dims, op) = v.split_once(':').unwrap_or((v, "NN"));
    let d: Vec<usize> = dims
        .split('x')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    let (ta, tb) = match op {
        "NN" => (false, false),
        "NT" => (false, true),
        "TN" => (true, false),
        "TT" => (true, true),
        _ => return None,
    };
    match d[..] {
        [m, n, k] if m > 0 && n > 0 && k > 0 => Some(Shape {
            name: format!("{m}x{n}x{k}_{op}"),
            ta,
            tb,
            m,
            n,
            k,
        }),
        _ => None,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut json = false;
    let mut threads = nas_kernels::threads::num_threads();
    let mut kernel = Kernel::best();
    let mut which = "all".to_string();
    let mut secs = 0.3f64;
    let mut custom: Option<Shape> = None;
    let mut i = 0;
    let value = |i: usize, flag: &str| -> String {
        args.get(i + 1).cloned().unwrap_or_else(|| {
            eprintln!("{flag} needs a value");
            std::process::exit(2)
        })
    };
    while i < args.len() {
        match args[i].as_str() {
            "--json" => json = true,
            "--threads" => {
                threads = value(i, "--threads").parse().unwrap_or_else(|_| {
                    eprintln!("--threads needs a positive integer");
                    std::process::exit(2)
                });
                i += 1;
            }
            "--kernel" => {
                let v = value(i, "--kernel");
                kernel = match Kernel::ALL.into_iter().find(|k| k.name() == v) {
                    Some(k) if k.is_available() => k,
                    Some(k) => {
                        eprintln!("kernel {k} is not supported by this CPU");
                        std::process::exit(2)
                    }
                    None => {
                        eprintln!("unknown kernel `{v}` (scalar, avx2, avx512)");
                        std::process::exit(2)
                    }
                };
                i += 1;
            }
            "--shapes" => {
                which = value(i, "--shapes");
                if !["all", "square", "conv"].contains(&which.as_str()) {
                    eprintln!("--shapes must be all, square or conv");
                    std::process::exit(2)
                }
                i += 1;
            }
            "--shape" => {
                let v = value(i, "--shape");
                custom = Some(parse_shape(&v).unwrap_or_else(|| {
                    eprintln!("--shape needs MxNxK[:NN|NT|TN|TT], got `{v}`");
                    std::process::exit(2)
                }));
                i += 1;
            }
            "--time" => {
                secs = value(i, "--time").parse().unwrap_or_else(|_| {
                    eprintln!("--time needs seconds");
                    std::process::exit(2)
                });
                i += 1;
            }
            other => {
                eprintln!("unknown argument `{other}`");
                std::process::exit(2)
            }
        }
        i += 1;
    }
    if !json {
        println!("kernel {kernel}, threads {threads}");
        println!(
            "{:<18} {:>6} {:>6} {:>6} {:>10} {:>10} {:>10}",
            "shape", "M", "N", "K", "ms", "GFLOP/s", "best"
        );
    }
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let list = match custom {
        Some(s) => vec![s],
        None => shapes(&which),
    };
    for s in list {
        let a: Vec<f32> = (0..s.m * s.k)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        let b: Vec<f32> = (0..s.k * s.n)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        let mut c = vec![0.0f32; s.m * s.n];
        let lda = if s.ta { s.m } else { s.k };
        let ldb = if s.tb { s.k } else { s.n };
        let mut call = || {
            sgemm_with(
                kernel, threads, s.ta, s.tb, s.m, s.n, s.k, 1.0, &a, lda, &b, ldb, 0.0, &mut c, s.n,
            )
            .expect("valid shapes")
        };
        call();
        let mut times = Vec::new();
        let start = Instant::now();
        while times.len() < 3 || (start.elapsed().as_secs_f64() < secs && times.len() < 10_000) {
            let t = Instant::now();
            call();
            times.push(t.elapsed().as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        let med = times[times.len() / 2];
        let best = times[0];
        let gflops = 2.0 * (s.m * s.n * s.k) as f64 / med / 1e9;
        let gflops_best = 2.0 * (s.m * s.n * s.k) as f64 / best / 1e9;
        if json {
            println!(
                "{{\"shape\":\"{}\",\"ta\":{},\"tb\":{},\"m\":{},\"n\":{},\"k\":{},\"kernel\":\"{}\",\"threads\":{},\"ms\":{:.4},\"gflops\":{:.2},\"best_gflops\":{:.2},\"reps\":{}}}",
                s.name,
                s.ta,
                s.tb,
                s.m,
                s.n,
                s.k,
                kernel,
                threads,
                med * 1e3,
                gflops,
                gflops_best,
                times.len()
            );
        } else {
            println!(
                "{:<18} {:>6} {:>6} {:>6} {:>10.3} {:>10.1} {:>10.1}",
                s.name,
                s.m,
                s.n,
                s.k,
                med * 1e3,
                gflops,
                gflops_best
            );
        }
    }
}
