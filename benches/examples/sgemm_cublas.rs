//! The CUDA backend's SGEMM against cuBLAS on the same device in the same run: C = A B,
//! row-major, N x N x N (default 4096), exact f32 (ours: `mm_sgemm`; cuBLAS:
//! `CUBLAS_DEFAULT_MATH`) and TF32 tensor cores (ours: `mm_sgemm_tf32`, `Cuda::with_tf32`;
//! cuBLAS: `CUBLAS_TF32_TENSOR_OP_MATH`). The four contenders run interleaved, each timed from
//! a synchronised start to a synchronised end; medians and throughput ratios are printed, and
//! the results are compared with cuBLAS's, so the four compute the same product.
//!
//! cuBLAS is only the yardstick here (feature `cublas` of this crate); the engine never uses
//! it. Without a CUDA driver or device it says so and exits with code 0; without cuBLAS it
//! times nas-rs alone.
//!
//! `cargo run --release -p benches --features cublas --example sgemm_cublas -- [cuda:N] [reps] [n]`
//! (`scripts/gpu-check.sh` runs it).

use std::process::exit;
use std::sync::Arc;
use std::time::Instant;

use cudarc::cublas::sys::{cublasMath_t, cublasOperation_t, cublasSetMathMode, cublasStatus_t};
use cudarc::cublas::{CudaBlas, Gemm, GemmConfig};
use cudarc::driver::{CudaContext, CudaSlice, CudaStream};
use nas_kernels::{Backend, Cuda, Device, Matmul};

fn usage(msg: &str) -> ! {
    eprintln!("sgemm_cublas: {msg}\nusage: sgemm_cublas [cuda:N] [reps >= 1] [n >= 1]");
    exit(1)
}

/// Deterministic values in [-1, 1).
fn data(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// cuBLAS on the device's primary context, its matrices, its stream.
struct Blas {
    blas: CudaBlas,
    stream: Arc<CudaStream>,
    a: CudaSlice<f32>,
    b: CudaSlice<f32>,
    c: CudaSlice<f32>,
}

impl Blas {
    fn open(ordinal: usize, a: &[f32], b: &[f32]) -> Result<Blas, String> {
        // SAFETY: only tries to load the library by its candidate names.
        if !unsafe { cudarc::cublas::sys::is_culib_present() } {
            return Err(
                "cuBLAS (libcublas) could not be loaded: put CUDA's lib64 folder on \
                        LD_LIBRARY_PATH"
                    .into(),
            );
        }
        let ctx = CudaContext::new(ordinal).map_err(|e| format!("context: {e}"))?;
        let stream = ctx.default_stream();
        let blas = CudaBlas::new(stream.clone()).map_err(|e| format!("cublasCreate: {e}"))?;
        let up = |v: &[f32]| stream.clone_htod(v).map_err(|e| format!("upload: {e}"));
        let (a, b) = (up(a)?, up(b)?);
        let c = stream
            .alloc_zeros::<f32>(a.len())
            .map_err(|e| format!("alloc: {e}"))?;
        Ok(Blas {
            blas,
            stream,
            a,
            b,
            c,
        })
    }

    fn set_math(&self, mode: cublasMath_t) -> Result<(), String> {
        // SAFETY: a live handle; the mode is one of the enum's values.
        let st = unsafe { cublasSetMathMode(*self.blas.handle(), mode) };
        match st {
            cublasStatus_t::CUBLAS_STATUS_SUCCESS => Ok(()),
            other => Err(format!("cublasSetMathMode({mode:?}): {other:?}")),
        }
    }

    /// Row-major C = A B as cuBLAS's column-major C^T = B^T A^T.
    fn gemm(&mut self, n: usize) -> Result<(), String> {
        let n = n as i32;
        let cfg = GemmConfig {
            transa: cublasOperation_t::CUBLAS_OP_N,
            transb: cublasOperation_t::CUBLAS_OP_N,
            m: n,
            n,
            k: n,
            alpha: 1.0f32,
            lda: n,
            ldb: n,
            beta: 0.0f32,
            ldc: n,
        };
        // SAFETY: the three buffers hold n * n floats each, as the configuration says.
        unsafe { self.blas.gemm(cfg, &self.b, &self.a, &mut self.c) }
            .map_err(|e| format!("cublasSgemm: {e}"))
    }

    fn sync(&self) -> Result<(), String> {
        self.stream.synchronize().map_err(|e| format!("sync: {e}"))
    }

    fn result(&self) -> Result<Vec<f32>, String> {
        self.stream
            .clone_dtoh(&self.c)
            .map_err(|e| format!("download: {e}"))
    }
}

/// Largest |x - y| over the largest |y|.
fn rel_diff(x: &[f32], y: &[f32]) -> f64 {
    let scale = y.iter().fold(0.0f64, |m, v| m.max(v.abs() as f64));
    let d = x
        .iter()
        .zip(y)
        .fold(0.0f64, |m, (a, b)| m.max((a - b).abs() as f64));
    d / scale.max(1e-30)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() > 3 {
        usage("at most three arguments");
    }
    let dev: Device = args
        .first()
        .map_or("cuda:0", String::as_str)
        .parse()
        .unwrap_or_else(|e| usage(&format!("device: {e}")));
    let Device::Cuda(ordinal) = dev else {
        usage(&format!(
            "device: `{dev}` is not a CUDA device (cuda or cuda:N)"
        ))
    };
    let num = |i: usize, default: usize, what: &str| -> usize {
        args.get(i).map_or(default, |s| match s.parse::<usize>() {
            Ok(v) if v >= 1 => v,
            _ => usage(&format!("{what}: `{s}` is not a whole number >= 1")),
        })
    };
    let reps = num(1, 20, "reps");
    let n = num(2, 4096, "n");
    if !nas_kernels::cuda::driver_present() {
        println!(
            "SKIPPED: no CUDA driver on this machine (libcuda could not be loaded): nothing to time"
        );
        return;
    }
    let ours = match Cuda::new(dev) {
        Ok(c) => c,
        Err(e) => {
            println!("SKIPPED: {e}: nothing to time");
            return;
        }
    };
    if let Err(e) = run(ours, ordinal, reps, n) {
        eprintln!("sgemm_cublas: {e}");
        exit(1);
    }
}

fn run(ours: Cuda, ordinal: usize, reps: usize, n: usize) -> Result<(), String> {
    println!("device: {}", ours.name());
    let (a, b) = (data(n * n, 1), data(n * n, 2));
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
    let e = |e: nas_kernels::KernelError| e.to_string();
    let (a_, b_) = (
        ours.from_slice(&a).map_err(e)?,
        ours.from_slice(&b).map_err(e)?,
    );
    let mut c_ = ours.alloc(n * n).map_err(e)?;
    let tf32 = ours.with_tf32(true);
    let exact = ours.with_tf32(false);
    let have_tf32 = tf32.tf32();
    let mut blas = match Blas::open(ordinal, &a, &b) {
        Ok(b) => Some(b),
        Err(why) => {
            println!("cuBLAS unavailable ({why}): timing nas-rs alone");
            None
        }
    };
    // warm-up (NVRTC compiles the module, cuBLAS picks its kernels) and the results compared
    let mut results: Vec<(&str, Vec<f32>)> = Vec::new();
    exact.matmul(&p, &a_, &b_, &mut c_).map_err(e)?;
    results.push(("nas f32", exact.to_vec(&c_).map_err(e)?));
    if have_tf32 {
        tf32.matmul(&p, &a_, &b_, &mut c_).map_err(e)?;
        results.push(("nas tf32", tf32.to_vec(&c_).map_err(e)?));
    }
    if let Some(bl) = blas.as_mut() {
        bl.set_math(cublasMath_t::CUBLAS_DEFAULT_MATH)?;
        bl.gemm(n)?;
        results.push(("cublas f32", bl.result()?));
        if have_tf32 {
            bl.set_math(cublasMath_t::CUBLAS_TF32_TENSOR_OP_MATH)?;
            bl.gemm(n)?;
            results.push(("cublas tf32", bl.result()?));
        }
    }
    let find = |name: &str| results.iter().find(|r| r.0 == name).map(|r| &r.1);
    if let (Some(x), Some(y)) = (find("nas f32"), find("cublas f32")) {
        println!(
            "sgemm {n} check: nas f32 vs cublas f32: max diff / max |C| = {:.1e}",
            rel_diff(x, y)
        );
    }
    if let (Some(x), Some(y)) = (find("nas tf32"), find("cublas f32")) {
        println!(
            "sgemm {n} check: nas tf32 vs cublas f32: max diff / max |C| = {:.1e}",
            rel_diff(x, y)
        );
    }
    if let (Some(x), Some(y)) = (find("nas tf32"), find("cublas tf32")) {
        println!(
            "sgemm {n} check: nas tf32 vs cublas tf32: max diff / max |C| = {:.1e}",
            rel_diff(x, y)
        );
    }

    // interleaved rounds: nas f32, cublas f32, nas tf32, cublas tf32
    let mut t: [Vec<f64>; 4] = Default::default();
    for _ in 0..reps {
        let s = Instant::now();
        exact.matmul(&p, &a_, &b_, &mut c_).map_err(e)?;
        exact.synchronize().map_err(e)?;
        t[0].push(s.elapsed().as_secs_f64() * 1e3);
        if let Some(bl) = blas.as_mut() {
            bl.set_math(cublasMath_t::CUBLAS_DEFAULT_MATH)?;
            let s = Instant::now();
            bl.gemm(n)?;
            bl.sync()?;
            t[1].push(s.elapsed().as_secs_f64() * 1e3);
        }
        if have_tf32 {
            let s = Instant::now();
            tf32.matmul(&p, &a_, &b_, &mut c_).map_err(e)?;
            tf32.synchronize().map_err(e)?;
            t[2].push(s.elapsed().as_secs_f64() * 1e3);
            if let Some(bl) = blas.as_mut() {
                bl.set_math(cublasMath_t::CUBLAS_TF32_TENSOR_OP_MATH)?;
                let s = Instant::now();
                bl.gemm(n)?;
                bl.sync()?;
                t[3].push(s.elapsed().as_secs_f64() * 1e3);
            }
        }
    }
    let flop = 2.0 * (n as f64).powi(3);
    let show = |ms: f64| format!("{ms:.3} ms ({:.1} TFLOP/s)", flop / (ms * 1e-3) / 1e12);
    let med: Vec<Option<f64>> = t
        .into_iter()
        .map(|v| (!v.is_empty()).then(|| median(v)))
        .collect();
    println!("sgemm {n} timing: median of {reps} interleaved rounds, synchronised");
    let names = [
        "nas f32",
        "cublas f32",
        "nas tf32",
        "cublas tf32 (CUBLAS_TF32_TENSOR_OP_MATH)",
    ];
    for (name, m) in names.iter().zip(&med) {
        if let Some(ms) = m {
            println!("sgemm {n} {name}: {}", show(*ms));
        }
    }
    if let (Some(ours), Some(theirs)) = (med[0], med[1]) {
        println!(
            "SGEMM {n} vs cuBLAS (target >= 70% without tensor cores): nas f32 at {:.0}% of cuBLAS f32's throughput",
            100.0 * theirs / ours
        );
    }
    if let (Some(ours), Some(theirs)) = (med[2], med[3]) {
        println!(
            "SGEMM {n} TF32 vs cuBLAS TF32: nas tf32 at {:.0}% of cuBLAS tf32's throughput",
            100.0 * theirs / ours
        );
    }
    if let (Some(f), Some(t)) = (med[0], med[2]) {
        println!("SGEMM {n} nas tf32 / nas f32 speed-up: {:.2}x", f / t);
    }
    if !have_tf32 {
        println!(
            "TF32: {} has no TF32 tensor cores (compute capability < 8.0): not timed",
            ours.name()
        );
    }
    Ok(())
}
