//! Benchmark multi-trial strategies on the NAS-Bench-201 table.
//!
//! ```sh
//! cargo run --release -p nas-search --example nb201_benchmark -- \
//!     --runs 500 --budget 100 --dataset cifar10 --out results/nb201
//! ```
//!
//! Options: `--runs N` (default 500), `--budget EVALS` (100), `--dataset cifar10|cifar100|
//! imagenet16-120` (cifar10), `--strategies random,rea,reinforce,local` (these four),
//! `--threads T` (all cores), `--seed S` (0), `--skip-equivalent`, `--cost-budget EPOCHS`
//! (also stop at this many simulated training epochs; for hyperband), `--out DIR` (write
//! summary.md, report.json, anytime.csv, anytime.svg there), `--scatter` (also write
//! params_vs_accuracy.svg: every cell's parameters against its test accuracy). With two
//! strategies or more, Welch's one-sided t-test of the first against each other one is printed,
//! or with `--baseline LABEL` of each other one against that one (runs `i` of every strategy
//! share seed `--seed + i`). `--objectives acc,params` (or `acc,flops`) also scores each run by
//! the hypervolume of its front (reference: 0 % and the table's largest cost) and tests every
//! strategy's against `--baseline` (default `random`).
//!
//! Protocols: by default a run searches on `--dataset` (its 12-epoch validation accuracy) and
//! reports that data set's 200-epoch test accuracy (per-data-set search). The NAS-Bench-201
//! paper's protocol searches on CIFAR-10 and reports the choice on all three data sets:
//! `--search-dataset cifar10 --report all` (`--search-dataset` is `--dataset` under the
//! paper's name; giving both with different values is refused). `--report` also takes one data
//! set or a comma-separated list.

use nas_search::benchmark::{BenchmarkConfig, params_accuracy_plot, run_nb201_benchmark};
use nas_search::stats::welch;
use nas_search::strategy::StrategyKind;
use nas_search::tabular::{Dataset, Nb201Table};
use std::path::PathBuf;

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut cfg = BenchmarkConfig::new(500, 100, Dataset::Cifar10);
    let mut out: Option<PathBuf> = None;
    let mut scatter = false;
    let mut baseline: Option<String> = None;
    let mut dataset_flags: Vec<(&str, nas_search::tabular::Dataset)> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--runs" => cfg.runs = val()?.parse().map_err(|e| format!("--runs: {e}"))?,
            "--budget" => cfg.budget = val()?.parse().map_err(|e| format!("--budget: {e}"))?,
            "--dataset" | "--search-dataset" => {
                let flag = if a == "--dataset" {
                    "--dataset"
                } else {
                    "--search-dataset"
                };
                let d = Dataset::parse_option(flag, &val()?)?;
                if let Some((other, prev)) = dataset_flags.iter().find(|(_, p)| *p != d) {
                    return Err(format!(
                        "{flag} {} and {other} {} disagree (--dataset is --search-dataset; give one)",
                        d.name(),
                        prev.name()
                    )
                    .into());
                }
                dataset_flags.push((flag, d));
                cfg.dataset = d;
            }
            "--report" => cfg.report = nas_search::tabular::parse_report(&val()?)?,
            "--threads" => cfg.threads = val()?.parse().map_err(|e| format!("--threads: {e}"))?,
            "--seed" => cfg.base_seed = val()?.parse().map_err(|e| format!("--seed: {e}"))?,
            "--strategies" => {
                cfg.strategies = val()?
                    .split(',')
                    .map(StrategyKind::parse)
                    .collect::<Result<Vec<_>, _>>()?
            }
            "--skip-equivalent" => cfg.skip_equivalent = true,
            "--scatter" => scatter = true,
            "--baseline" => baseline = Some(val()?),
            "--cost-budget" => {
                cfg.cost_budget = Some(val()?.parse().map_err(|e| format!("--cost-budget: {e}"))?)
            }
            "--objectives" => {
                cfg.objectives = Some(nas_search::pareto::Objectives::parse(&val()?)?)
            }
            "--out" => out = Some(PathBuf::from(val()?)),
            "-h" | "--help" => {
                println!(
                    "nb201_benchmark [--runs N] [--budget EVALS] [--dataset|--search-dataset cifar10|cifar100|imagenet16-120] \
                     [--report DATASET[,DATASET]|all] \
                     [--strategies random,rea,reinforce,local,hyperband] [--threads T] [--seed S] \
                     [--skip-equivalent] [--cost-budget EPOCHS] [--out DIR] [--scatter] [--baseline LABEL] \
                     [--objectives acc,params|acc,flops]"
                );
                return Ok(());
            }
            other => return Err(format!("unknown argument {other:?} (try --help)").into()),
        }
    }
    let table = Nb201Table::embedded()?;
    let report = run_nb201_benchmark(table, &cfg)?;
    println!(
        "NAS-Bench-201 {}: {} runs x {} evaluations, {} threads, {:.2} s",
        cfg.dataset.name(),
        cfg.runs,
        cfg.budget,
        cfg.threads,
        report.wall_time_s
    );
    print!("{}", report.markdown());
    if let Some(md) = report.report_markdown() {
        print!("{md}");
    }
    if let (None, Some((first, others))) = (&baseline, report.strategies.split_first()) {
        for other in others {
            let w = welch(&first.final_test, &other.final_test);
            println!(
                "{} > {}: Welch t = {:.2}, one-sided p = {:.2e}",
                first.name, other.name, w.t, w.p_greater
            );
        }
    }
    let marks: Vec<usize> = [10usize, 20, 50, 100, 200, 500, 1000, 2000, 5000]
        .into_iter()
        .filter(|&m| m <= cfg.budget as usize)
        .collect();
    for (name, w) in baseline
        .as_ref()
        .map_or_else(Vec::new, |b| report.welch_against(b))
    {
        let baseline = baseline.as_deref().unwrap_or_default();
        println!(
            "{name} > {baseline}: Welch t = {:.2}, df = {:.0}, one-sided p = {:.2e}",
            w.t, w.df, w.p_greater
        );
    }
    if let Some(md) = report.hypervolume_markdown() {
        print!("{md}");
        let base = baseline.clone().unwrap_or_else(|| "random".into());
        for (name, w) in report.hypervolume_welch_against(&base) {
            println!(
                "hypervolume {name} > {base}: Welch t = {:.2}, df = {:.0}, one-sided p = {:.2e}",
                w.t, w.df, w.p_greater
            );
        }
        println!("mean hypervolume at {marks:?} evaluations:");
        for r in &report.strategies {
            let v: Vec<String> = marks
                .iter()
                .map(|&m| format!("{:.4}", r.hypervolume_anytime[m - 1]))
                .collect();
            println!("  {:<10} {}", r.name, v.join("  "));
        }
    }
    println!("anytime mean reported accuracy at {marks:?} evaluations:");
    for r in &report.strategies {
        let v: Vec<String> = marks
            .iter()
            .map(|&m| format!("{:.2}", r.anytime_mean[m - 1]))
            .collect();
        println!("  {:<10} {}", r.name, v.join("  "));
    }
    if let Some(dir) = out {
        report.write(&dir)?;
        if scatter {
            let table = Nb201Table::embedded()?;
            params_accuracy_plot(&table, cfg.dataset).save(dir.join("params_vs_accuracy.svg"))?;
            println!("wrote {}/params_vs_accuracy.svg", dir.display());
        }
        println!(
            "wrote {}/{{summary.md,report.json,anytime.csv,anytime.svg}}",
            dir.display()
        );
    }
    Ok(())
}
