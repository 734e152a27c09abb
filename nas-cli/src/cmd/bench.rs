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
use nas_kernels::gemm::Kernel;
use nas_kernels::threads;
use nas_kernels::workloads::quick_suite;
use nas_search::StrategyKind;
use nas_search::benchmark::{BenchmarkConfig, run_nb201_benchmark};
use nas_search::tabular::{Dataset as TableDataset, Nb201Table};
use serde_json::json;
use std::fmt::Write as _;
use std::path::PathBuf;

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
    let bar = progress.bar("shapes", 7);
    let rows = quick_suite(kernel, n_threads, secs, &mut |name| {
        bar.inc(1);
        bar.set_message(name.to_string());
    });
    bar.finish_and_clear();
    let mut text = format!(
        "GEMM micro-kernel {kernel}, {n_threads} thread(s); median of repetitions over {secs} s per shape\n{:<40} {:>10} {:>10} {:>10}\n",
        "shape", "ms", "GFLOP/s", "best"
    );
    let mut values = Vec::new();
    for r in rows? {
        let (ms, g, best) = (r.median_s * 1e3, r.gflops(), r.best_gflops());
        let _ = writeln!(text, "{:<40} {ms:>10.3} {g:>10.1} {best:>10.1}", r.name);
        values.push(json!({"name": r.name, "kind": r.kind, "ms": ms, "gflops": g, "best_gflops": best, "reps": r.reps}));
    }
    let value = json!({
        "kernel": kernel.name(),
        "threads": n_threads,
        "time_per_shape_s": secs,
        "results": values,
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
    let text = report.summary(dir.map(PathBuf::as_path));
    out.result(&text, &report.brief_json())
        .map_err(CliError::Output)
}
