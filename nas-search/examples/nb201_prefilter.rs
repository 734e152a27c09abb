//! `--prefilter` on the NAS-Bench-201 table: each strategy with and without its first `keep`
//! proposals taken from the best of `samples` random cells by a zero-cost proxy (the registry's
//! scorer, `SpaceDef::proxy`: synflow of the CIFAR-10 network with weights from seed 0, as
//! `nas search --prefilter` computes it). Reported: the 200-epoch test accuracy of each run's
//! final choice (best 12-epoch validation accuracy), mean ± std, and Welch's one-sided t-test of
//! "with" against "without". The proxy is computed once for every cell (15,625; several
//! minutes for synflow on 2 cores) and looked up in the runs.
//!
//! ```sh
//! cargo run --release -p nas-search --example nb201_prefilter -- --runs 200 --budget 100 --proxy synflow --samples 1000 --strategies random,rea,bananas --datasets cifar10,cifar100,imagenet16-120
//! ```
//!
//! Options: `--runs N` (200; run `i` seeded `i`), `--budget EVALS` (100), `--datasets
//! cifar10,cifar100,imagenet16-120` (cifar10), `--proxy synflow|params|flops`, `--samples N` (1000),
//! `--keep K` (10), `--strategies a,b` (random,rea), `--threads T` (2).

use nas_search::prefilter::{PrefilterSpec, WarmStarted, rank};
use nas_search::spaces::SpaceDef;
use nas_search::spaces::nb201::Nb201;
use nas_search::stats::{mean, std_dev, welch};
use nas_search::strategy::StrategyKind;
use nas_search::tabular::{Dataset, Nb201Evaluator, Nb201Table};
use nas_search::{Budget, SearchConfig, Strategy, run_search};
use nas_space::nb201::{Nb201Cell, Nb201Space};
use std::sync::atomic::{AtomicUsize, Ordering};

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let (mut runs, mut budget, mut threads) = (200u64, 100u64, 2);
    let mut datasets = vec![Dataset::Cifar10];
    let (mut proxy, mut samples, mut keep) = ("synflow".to_string(), 1000usize, 10usize);
    let mut strategies = "random,rea".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--runs" => runs = val()?.parse().map_err(|e| format!("--runs: {e}"))?,
            "--budget" => budget = val()?.parse().map_err(|e| format!("--budget: {e}"))?,
            "--datasets" => {
                datasets = val()?
                    .split(',')
                    .map(Dataset::parse)
                    .collect::<Result<_, _>>()?
            }
            "--proxy" => proxy = val()?,
            "--samples" => samples = val()?.parse().map_err(|e| format!("--samples: {e}"))?,
            "--keep" => keep = val()?.parse().map_err(|e| format!("--keep: {e}"))?,
            "--strategies" => strategies = val()?,
            "--threads" => threads = val()?.parse().map_err(|e| format!("--threads: {e}"))?,
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    let spec = PrefilterSpec::parse(&format!("{proxy}:{samples}:{keep}"))?;
    let kinds: Vec<StrategyKind> = strategies
        .split(',')
        .map(StrategyKind::parse)
        .collect::<Result<_, _>>()?;
    if runs < 2 || budget == 0 || threads == 0 {
        return Err("--runs must be at least 2, --budget and --threads positive".into());
    }
    // The proxy of every cell, computed once (index = Nb201Cell::index).
    let t0 = std::time::Instant::now();
    let cells: Vec<Nb201Cell> = Nb201Cell::all().collect();
    let next = AtomicUsize::new(0);
    let mut scores = vec![f64::NAN; cells.len()];
    let parts: Vec<Vec<(usize, f64)>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut out = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= cells.len() {
                            return Ok::<_, String>(out);
                        }
                        let v = Nb201
                            .proxy(spec.proxy, &cells[i])
                            .map_err(|e| e.to_string())?;
                        out.push((cells[i].index(), v));
                    }
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| "a scoring thread panicked".to_string())?
            })
            .collect::<Result<_, String>>()
    })?;
    for (i, v) in parts.into_iter().flatten() {
        scores[i] = v;
    }
    let scoring_s = t0.elapsed().as_secs_f64();
    let table = Nb201Table::embedded()?;
    for dataset in datasets {
        let ev = Nb201Evaluator::new(table.clone(), dataset);
        compare(
            &kinds,
            &spec,
            &scores,
            &ev,
            (runs, budget),
            scoring_s,
            threads,
        )?;
    }
    Ok(())
}

fn compare(
    kinds: &[StrategyKind],
    spec: &PrefilterSpec,
    scores: &[f64],
    ev: &Nb201Evaluator,
    (runs, budget): (u64, u64),
    scoring_s: f64,
    threads: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let dataset = ev.dataset();
    println!(
        "NAS-Bench-201 {}: {runs} runs x {budget} evaluations, --prefilter {spec}; proxy of all \
         15,625 cells in {scoring_s:.1} s ({:.1} ms a cell, {threads} threads)",
        dataset.name(),
        scoring_s * 1000.0 * threads as f64 / scores.len() as f64
    );
    println!("| strategy | without | with --prefilter {spec} | Welch, with > without |");
    println!("| --- | --- | --- | --- |");
    for kind in kinds {
        let mut finals: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
        for r in 0..runs {
            let cfg = SearchConfig::new(r, Budget::evaluations(budget));
            let warm = rank(&Nb201Space, spec, r, &mut |c: &Nb201Cell| {
                Ok(scores[c.index()])
            })?;
            let plain = kind.build(&Nb201Space)?;
            let mut arms: [Box<dyn Strategy<Nb201Space>>; 2] = [
                plain,
                Box::new(WarmStarted::new(kind.build(&Nb201Space)?, warm)),
            ];
            for (s, f) in arms.iter_mut().zip(finals.iter_mut()) {
                let out = run_search(&Nb201Space, s.as_mut(), ev, &cfg)?;
                let best = out.best().ok_or("a run with no successful trial")?;
                f.push(
                    best.metrics()
                        .and_then(|m| m.test_accuracy)
                        .unwrap_or(f64::NAN),
                );
            }
        }
        let w = welch(&finals[1], &finals[0]);
        println!(
            "| {} | {:.2} ± {:.2} | {:.2} ± {:.2} | t = {:.2}, p = {:.2e} |",
            kind.label(),
            mean(&finals[0]),
            std_dev(&finals[0]),
            mean(&finals[1]),
            std_dev(&finals[1]),
            w.t,
            w.p_greater
        );
    }
    Ok(())
}
