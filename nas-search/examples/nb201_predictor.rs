//! The BANANAS predictor on its own: an ensemble of MLPs on the NAS-Bench-201 path encoding,
//! trained on the 12-epoch validation accuracy of `n` random cells, ranking 1,000 other cells
//! against their 200-epoch test accuracy (Kendall's tau and Spearman's rho, mean ± std over
//! seeds).
//!
//! ```sh
//! cargo run --release -p nas-search --example nb201_predictor -- --dataset cifar10 --seeds 20
//! ```
//!
//! Options: `--dataset cifar10|cifar100|imagenet16-120`, `--seeds K` (20; seed `i` draws the
//! cells and the initial weights of repetition `i`), `--sizes 20,50,100,200`, `--test N` (1000).

use nas_search::predictor::{EnsembleConfig, TrainTarget, nb201_predictor_quality};
use nas_search::stats::{mean, std_dev};
use nas_search::tabular::{Dataset, Nb201Table};

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let (mut dataset, mut seeds, mut n_test) = (Dataset::Cifar10, 20u64, 1000usize);
    let mut sizes = vec![20usize, 50, 100, 200];
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--dataset" => dataset = Dataset::parse(&val()?)?,
            "--seeds" => seeds = val()?.parse().map_err(|e| format!("--seeds: {e}"))?,
            "--test" => n_test = val()?.parse().map_err(|e| format!("--test: {e}"))?,
            "--sizes" => {
                sizes = val()?
                    .split(',')
                    .map(|s| s.trim().parse().map_err(|e| format!("--sizes {s:?}: {e}")))
                    .collect::<Result<_, _>>()?
            }
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    if seeds < 2 {
        return Err("--seeds must be at least 2".into());
    }
    let table = Nb201Table::embedded()?;
    let cfg = EnsembleConfig::default();
    println!(
        "NAS-Bench-201 {}: trained on the 12-epoch validation accuracy, ranked against the \
         200-epoch test accuracy of {n_test} other cells, {seeds} seeds",
        dataset.name()
    );
    println!("| training cells | Kendall tau | Spearman | fit + predict per seed |");
    println!("| --- | --- | --- | --- |");
    for &n in &sizes {
        let t0 = std::time::Instant::now();
        let (mut taus, mut rhos) = (Vec::new(), Vec::new());
        for s in 0..seeds {
            let q = nb201_predictor_quality(
                &table,
                dataset,
                &cfg,
                (n, n_test),
                TrainTarget::Valid12,
                s,
            )?;
            taus.push(q.kendall_tau);
            rhos.push(q.spearman);
        }
        println!(
            "| {n} | {:.3} ± {:.3} | {:.3} ± {:.3} | {:.2} s |",
            mean(&taus),
            std_dev(&taus),
            mean(&rhos),
            std_dev(&rhos),
            t0.elapsed().as_secs_f64() / seeds as f64
        );
    }
    Ok(())
}
