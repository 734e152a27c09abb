//! TPE against random search on the NAS-Bench-201 table: the reported (200-epoch test)
//! accuracy of each run's final choice (best 12-epoch validation accuracy), mean ± std over
//! seeded runs, and Welch's one-sided t-test.
//!
//! ```sh
//! cargo run --release -p nas-search --example nb201_tpe -- --runs 200 --budget 100 --dataset cifar10
//! ```
//!
//! Options: `--runs N` (200; run `i` seeded `--seed + i` for both), `--budget EVALS` (100),
//! `--dataset cifar10|cifar100|imagenet16-120`, `--seed S` (0).

use nas_search::stats::{mean, std_dev, welch};
use nas_search::strategy::{RandomConfig, RandomSearch, Tpe, TpeConfig};
use nas_search::tabular::{Dataset, Nb201Evaluator, Nb201Table};
use nas_search::{Budget, SearchConfig, Strategy, run_search};
use nas_space::nb201::Nb201Space;

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let (mut runs, mut budget, mut seed, mut dataset) = (200usize, 100u64, 0u64, Dataset::Cifar10);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--runs" => runs = val()?.parse().map_err(|e| format!("--runs: {e}"))?,
            "--budget" => budget = val()?.parse().map_err(|e| format!("--budget: {e}"))?,
            "--seed" => seed = val()?.parse().map_err(|e| format!("--seed: {e}"))?,
            "--dataset" => dataset = Dataset::parse(&val()?)?,
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    if runs < 2 || budget == 0 {
        return Err("--runs must be at least 2 and --budget positive".into());
    }
    let table = Nb201Table::embedded()?;
    let ev = Nb201Evaluator::new(table, dataset);
    let t0 = std::time::Instant::now();
    let mut finals: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for r in 0..runs {
        let cfg = SearchConfig::new(seed + r as u64, Budget::evaluations(budget));
        let mut strategies: [Box<dyn Strategy<Nb201Space>>; 2] = [
            Box::new(Tpe::new(TpeConfig::default())?),
            Box::new(RandomSearch::new(RandomConfig::default())),
        ];
        for (s, f) in strategies.iter_mut().zip(finals.iter_mut()) {
            let out = run_search(&Nb201Space, s.as_mut(), &ev, &cfg)?;
            let best = out.best().ok_or("a run with no successful trial")?;
            f.push(
                best.metrics()
                    .and_then(|m| m.test_accuracy)
                    .unwrap_or(f64::NAN),
            );
        }
    }
    let w = welch(&finals[0], &finals[1]);
    println!(
        "NAS-Bench-201 {}: {runs} runs x {budget} evaluations in {:.1} s",
        dataset.name(),
        t0.elapsed().as_secs_f64()
    );
    println!("| strategy | mean ± std |\n| --- | --- |");
    for (name, f) in ["tpe", "random"].iter().zip(&finals) {
        println!("| {name} | {:.2} ± {:.2} |", mean(f), std_dev(f));
    }
    println!(
        "TPE > random: Welch t = {:.2}, one-sided p = {:.2e}",
        w.t, w.p_greater
    );
    Ok(())
}
