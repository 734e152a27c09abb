//! `nas bench`: quick measurements. `kernels` times the GEMM and 3x3-convolution kernels of
//! nas-kernels (GFLOP/s and milliseconds per shape); `search` runs the NAS-Bench-201 benchmark
//! of the search strategies on the embedded table (`nas_search::benchmark`).
//!
//! These are quick checks; the reference measurements are the criterion benchmarks in
//! `benches/` and the tables in docs/PERF.md.

use crate::error::{CliError, Result};
use crate::output::Out;
use crate::progress::{Mode, Progress};
use clap::{Args, Subcommand};
use nas_kernels::gemm::{Kernel, sgemm_with};
use nas_kernels::{Backend, Conv2dParams, Cpu, threads};
use nas_search::StrategyKind;
use nas_search::benchmark::{BenchmarkConfig, run_nb201_benchmark};
use nas_search::nb201::{Dataset as TableDataset, Nb201Table};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::hint::black_box;
use std::path::PathBuf;
use std::time::Instant;

const EXAMPLES: &str = "\
Examples:
  nas bench kernels                     (all cores; GEMM squares, conv-shaped GEMMs, conv 3x3)
  nas bench kernels --threads 1 --time 1
  nas --json bench kernels --threads 2
  nas bench search                      (500 runs x 4 strategies x 100 evaluations, CIFAR-10)
  nas bench search --runs 100 --budget 50 --strategies random,evolution --dataset cifar100 --out runs/bench";

/// Arguments of `nas bench`.
#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub struct BenchArgs {
    /// What to measure.
    #[command(subcommand)]
    pub what: BenchWhat,
}

/// The `nas bench` targets.
#[derive(Debug, Subcommand)]
pub enum BenchWhat {
    /// GEMM and 3x3-convolution GFLOP/s and milliseconds per shape (median over repetitions).
    Kernels {
        /// Threads the kernels may use [default: NAS_THREADS or all cores].
        #[arg(long)]
        threads: Option<usize>,
        /// Seconds of repetitions per shape (at least 3 repetitions).
        #[arg(long, default_value_t = 0.5)]
        time: f64,
    },
    /// Search strategies on the NAS-Bench-201 table: mean final test accuracy over many seeded
    /// runs, and the wall time of the whole benchmark.
    Search {
        /// Independent runs per strategy.
        #[arg(long, default_value_t = 500)]
        runs: usize,
        /// Evaluations per run.
        #[arg(long, default_value_t = 100)]
        budget: u64,
        /// Comma-separated strategies (random, evolution, reinforce, local, hyperband, with
        /// optional :key=value settings).
        #[arg(long, default_value = "random,evolution,reinforce,local")]
        strategies: String,
        /// Table data set: cifar10, cifar100 or ImageNet16-120.
        #[arg(long, default_value = "cifar10")]
        dataset: String,
        /// Threads running independent runs [default: all cores].
        #[arg(long)]
        threads: Option<usize>,
        /// Seed of run 0 (run i uses seed + i).
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Also write summary.md, report.json, anytime.csv and anytime.svg here.
        #[arg(long, short = 'o')]
        out: Option<PathBuf>,
    },
}

/// Runs `nas bench`.
pub fn run(args: &BenchArgs, out: &Out) -> Result<()> {
    match &args.what {
        BenchWhat::Kernels { threads, time } => kernels(*threads, *time, out),
        BenchWhat::Search {
            runs,
            budget,
            strategies,
            dataset,
            threads,
            seed,
            out: dir,
        } => search(
            *runs,
            *budget,
            strategies,
            dataset,
            *threads,
            *seed,
            dir.as_ref(),
            out,
        ),
    }
}

/// Median and best of repeated calls (after one warm-up call), in seconds.
fn time_it(secs: f64, mut f: impl FnMut() -> Result<()>) -> Result<(f64, f64, usize)> {
    f()?;
    let mut times = Vec::new();
    let start = Instant::now();
    while times.len() < 3 || (start.elapsed().as_secs_f64() < secs && times.len() < 10_000) {
        let t = Instant::now();
        f()?;
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok((times[times.len() / 2], times[0], times.len()))
}

fn random_vec(rng: &mut ChaCha8Rng, len: usize) -> Vec<f32> {
    (0..len).map(|_| rng.random_range(-1.0..1.0)).collect()
}

fn kernels(threads_arg: Option<usize>, secs: f64, out: &Out) -> Result<()> {
    if threads_arg == Some(0) {
        return Err(CliError::Usage("--threads must be at least 1".into()));
    }
    if !(secs >= 0.0 && secs.is_finite()) {
        return Err(CliError::Usage(format!(
            "--time must be non-negative, got {secs}"
        )));
    }
    let n_threads = threads_arg.unwrap_or_else(threads::num_threads);
    threads::set_num_threads(n_threads);
    let kernel = Kernel::best();
    let progress = Progress::new(Mode::for_output(out));
    // (name, m, n, k): squares, then the forward GEMMs of 3x3 convolutions at batch 64
    // (M = C_out, K = 9 C_in, N = batch x H x W) in three CIFAR ResNet stages.
    let gemms: Vec<(String, usize, usize, usize)> = [256usize, 512, 1024]
        .iter()
        .map(|&s| (format!("gemm square {s}"), s, s, s))
        .chain(
            [(16usize, 32usize), (32, 16), (64, 8)]
                .iter()
                .map(|&(c, side)| {
                    (
                        format!("gemm conv{c} M{c} K{} N{}", 9 * c, 64 * side * side),
                        c,
                        64 * side * side,
                        9 * c,
                    )
                }),
        )
        .collect();
    let bar = progress.bar("shapes", gemms.len() as u64 + 1);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut rows: Vec<Value> = Vec::new();
    for (name, m, n, k) in &gemms {
        bar.set_message(name.clone());
        let a = random_vec(&mut rng, m * k);
        let b = random_vec(&mut rng, k * n);
        let mut c = vec![0.0f32; m * n];
        let (med, best, reps) = time_it(secs, || {
            sgemm_with(
                kernel, n_threads, false, false, *m, *n, *k, 1.0, &a, *k, &b, *n, 0.0, &mut c, *n,
            )
            .map_err(|e| CliError::Unsupported(format!("{name}: {e}")))
        })?;
        black_box(&c);
        let flop = 2.0 * (m * n * k) as f64;
        rows.push(json!({
            "name": name, "kind": "gemm", "m": m, "n": n, "k": k,
            "ms": med * 1e3, "gflops": flop / med / 1e9, "best_gflops": flop / best / 1e9,
            "reps": reps,
        }));
        bar.inc(1);
    }
    // Conv 3x3, 16 -> 16 channels, batch 64, 32x32, padding 1: forward + both gradients.
    bar.set_message("conv2d 3x3 fwd+bwd (64,16,32,32)");
    let p = Conv2dParams::new(64, 16, 32, 32, 16, 3)
        .padding(1)
        .check()?;
    let x = random_vec(&mut rng, p.x_len());
    let w = random_vec(&mut rng, p.w_len());
    let dy = random_vec(&mut rng, p.y_len());
    let mut y = vec![0.0f32; p.y_len()];
    let mut dx = vec![0.0f32; p.x_len()];
    let mut dw = vec![0.0f32; p.w_len()];
    let (med, best, reps) = time_it(secs, || {
        Cpu.conv2d(&p, &x, &w, None, &mut y)?;
        Cpu.conv2d_backward_input(&p, &w, &dy, &mut dx)?;
        Cpu.conv2d_backward_weight(&p, &x, &dy, &mut dw, None)?;
        Ok(())
    })?;
    black_box((&y, &dx, &dw));
    // Each of the three passes is one GEMM-sized 2 * N * C_out * H * W * C_in * 9 FLOP.
    let flop = 3.0 * 2.0 * (64 * 16 * 32 * 32 * 16 * 9) as f64;
    rows.push(json!({
        "name": "conv2d 3x3 fwd+bwd (64,16,32,32)", "kind": "conv2d",
        "n": 64, "c_in": 16, "h": 32, "w": 32, "c_out": 16, "kernel": 3,
        "ms": med * 1e3, "gflops": flop / med / 1e9, "best_gflops": flop / best / 1e9,
        "reps": reps,
    }));
    bar.finish_and_clear();
    let mut text = format!(
        "GEMM micro-kernel {kernel}, {n_threads} thread(s); median of repetitions over {secs} s per shape\n{:<40} {:>10} {:>10} {:>10}\n",
        "shape", "ms", "GFLOP/s", "best"
    );
    for r in &rows {
        let _ = writeln!(
            text,
            "{:<40} {:>10.3} {:>10.1} {:>10.1}",
            r["name"].as_str().unwrap_or("?"),
            r["ms"].as_f64().unwrap_or(f64::NAN),
            r["gflops"].as_f64().unwrap_or(f64::NAN),
            r["best_gflops"].as_f64().unwrap_or(f64::NAN)
        );
    }
    let value = json!({
        "kernel": kernel.name(),
        "threads": n_threads,
        "time_per_shape_s": secs,
        "results": rows,
    });
    out.result(&text, &value).map_err(CliError::Output)
}

#[allow(clippy::too_many_arguments)]
fn search(
    runs: usize,
    budget: u64,
    strategies: &str,
    dataset: &str,
    threads_arg: Option<usize>,
    seed: u64,
    dir: Option<&PathBuf>,
    out: &Out,
) -> Result<()> {
    let ds = TableDataset::parse(dataset)?;
    let kinds = strategies
        .split(',')
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .map(|s| StrategyKind::parse(s).map_err(|e| CliError::Usage(format!("--strategies: {e}"))))
        .collect::<Result<Vec<_>>>()?;
    let mut cfg = BenchmarkConfig::new(runs, budget, ds);
    cfg.strategies = kinds;
    cfg.base_seed = seed;
    if let Some(t) = threads_arg {
        cfg.threads = t;
    }
    let progress = Progress::new(Mode::for_output(out));
    progress.line(&format!(
        "NAS-Bench-201 {}: {} runs x {} strategies x {} evaluations on {} thread(s)",
        ds.name(),
        cfg.runs,
        cfg.strategies.len(),
        cfg.budget,
        cfg.threads
    ));
    let spinner = progress.spinner("search");
    spinner.set_message("running");
    let table = Nb201Table::embedded()?;
    let report = run_nb201_benchmark(table, &cfg);
    spinner.finish_and_clear();
    let report = report?;
    if let Some(d) = dir {
        report.write(d)?;
    }
    let mut text = report.markdown();
    let _ = writeln!(
        text,
        "\n{} runs x {} strategies x {} evaluations in {:.2} s wall time ({} thread(s))",
        cfg.runs,
        cfg.strategies.len(),
        cfg.budget,
        report.wall_time_s,
        cfg.threads
    );
    if let Some(d) = dir {
        let _ = writeln!(
            text,
            "written: {}/{{summary.md, report.json, anytime.csv, anytime.svg}}",
            d.display()
        );
    }
    let mut value = serde_json::to_value(&report).map_err(|e| CliError::Usage(e.to_string()))?;
    // The anytime curves are long; keep them in report.json (with --out), not on stdout.
    if let Some(list) = value["strategies"].as_array_mut() {
        for s in list {
            if let Some(o) = s.as_object_mut() {
                o.remove("anytime_mean");
                o.remove("anytime_std");
            }
        }
    }
    out.result(&text, &value).map_err(CliError::Output)
}
