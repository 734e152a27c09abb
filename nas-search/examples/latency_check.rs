//! The latency table checked against whole networks: for a seeded sample of NAS-Bench-201
//! cells, the summed per-op table ([`nas_search::latency`]) against the measured forward pass
//! of the whole network, with Spearman, Kendall and the mean absolute relative error, and the
//! time to build the table.
//!
//! ```sh
//! cargo run --release -p nas-search --example latency_check -- --cells 60
//! ```
//!
//! Options: `--cells N` (60 distinct cells drawn uniformly with `--seed S`, 0), `--channels C`
//! / `--depth N` (16 / 5: the benchmark's network), `--side H` (32), `--in-channels` (3),
//! `--classes` (10), `--batch B` (1), `--threads T` (1), `--repeats R` (20, after 3 warm-up
//! runs; the minimum is taken, for the table and for the whole networks alike), `--table FILE`
//! (keep the table there: loaded when it exists, when its key matches), `--out FILE` (per cell:
//! ops, summed table, whole network, as CSV).
//!
//! It also fits the per-op overhead the table misses: the least-squares line of
//! (whole - sum) against the number of ops, and reports the error after adding it (fitted on
//! the even-indexed cells, evaluated on the odd ones).

use nas_search::latency::{LatencyModel, LatencySettings, measure_network, nb201_ops};
use nas_search::nets::nb201::{Nb201Config, Nb201Network};
use nas_search::stats::{kendall_tau, spearman};
use nas_space::SearchSpace;
use nas_space::nb201::{Nb201Cell, Nb201Space};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
}

fn mare(pred: &[f64], truth: &[f64]) -> f64 {
    pred.iter()
        .zip(truth)
        .map(|(p, t)| ((p - t) / t).abs())
        .sum::<f64>()
        / truth.len() as f64
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let (mut cells, mut seed) = (60usize, 0u64);
    let mut config = Nb201Config::default();
    let mut side = 32usize;
    let mut settings = LatencySettings::default();
    let (mut table, mut out) = (None::<PathBuf>, None::<String>);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or_else(|| format!("{a} needs a value"));
        let num = |v: String, name: &str| match v.parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!("{name} {v:?}: expected a positive integer")),
        };
        match a.as_str() {
            "--cells" => cells = num(val()?, "--cells")?,
            "--seed" => seed = val()?.parse().map_err(|e| format!("--seed: {e}"))?,
            "--channels" => config.channels = num(val()?, "--channels")?,
            "--depth" => config.cells_per_stage = num(val()?, "--depth")?,
            "--side" => side = num(val()?, "--side")?,
            "--in-channels" => config.in_channels = num(val()?, "--in-channels")?,
            "--classes" => config.classes = num(val()?, "--classes")?,
            "--batch" => settings.batch = num(val()?, "--batch")?,
            "--threads" => settings.threads = num(val()?, "--threads")?,
            "--repeats" => settings.repeats = num(val()?, "--repeats")? as u32,
            "--table" => table = Some(PathBuf::from(val()?)),
            "--out" => out = Some(val()?),
            "-h" | "--help" => {
                println!("see the comment at the top of nas-search/examples/latency_check.rs");
                return Ok(());
            }
            other => return Err(format!("unknown option {other:?}").into()),
        }
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut seen = BTreeSet::new();
    let mut sample: Vec<Nb201Cell> = Vec::new();
    while sample.len() < cells {
        let c = Nb201Space.sample(&mut rng);
        if seen.insert(c.to_string()) {
            sample.push(c);
        }
    }
    let model = LatencyModel::new(settings, table.as_deref())?;
    let input = (config.in_channels, side, side);
    let t0 = Instant::now();
    let mut sums = Vec::new();
    let mut n_ops = Vec::new();
    for c in &sample {
        let ops = nb201_ops(c, &config, side, side);
        n_ops.push(ops.len() as f64);
        sums.push(model.latency_ms(&ops)?);
    }
    let table_s = t0.elapsed().as_secs_f64();
    let entries = model.table().entries.len();
    let t1 = Instant::now();
    let mut whole = Vec::new();
    for (i, c) in sample.iter().enumerate() {
        let net = Nb201Network::new(c, config, i as u64)?;
        whole.push(measure_network(&net, input, &settings)?);
    }
    let whole_s = t1.elapsed().as_secs_f64();
    let (rho, _) = spearman(&sums, &whole);
    let (tau, _) = kendall_tau(&sums, &whole);
    // Per-op overhead: least squares of (whole - sum) = a + b * ops on the even cells.
    let fit: Vec<usize> = (0..cells).step_by(2).collect();
    let test: Vec<usize> = (1..cells).step_by(2).collect();
    let (mx, my) = (
        fit.iter().map(|&i| n_ops[i]).sum::<f64>() / fit.len() as f64,
        fit.iter().map(|&i| whole[i] - sums[i]).sum::<f64>() / fit.len() as f64,
    );
    let sxy: f64 = fit
        .iter()
        .map(|&i| (n_ops[i] - mx) * (whole[i] - sums[i] - my))
        .sum();
    let sxx: f64 = fit.iter().map(|&i| (n_ops[i] - mx).powi(2)).sum();
    let b = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    let a = my - b * mx;
    let pick = |v: &[f64], idx: &[usize]| idx.iter().map(|&i| v[i]).collect::<Vec<_>>();
    let corrected: Vec<f64> = (0..cells).map(|i| sums[i] + a + b * n_ops[i]).collect();
    let ratio: Vec<f64> = (0..cells).map(|i| whole[i] / sums[i]).collect();
    let mean_ratio = ratio.iter().sum::<f64>() / cells as f64;
    println!(
        "latency table check: {cells} NB201 cells (seed {seed}), C={} N={} on {}x{side}x{side}, \
         {} classes; batch {}, {} thread(s), min of {} after {} warm-up",
        config.channels,
        config.cells_per_stage,
        config.in_channels,
        config.classes,
        settings.batch,
        settings.threads,
        settings.repeats,
        settings.warmup
    );
    println!(
        "table: {entries} entries measured in {table_s:.2} s ({:.2} s measuring)",
        model.measuring_s()
    );
    println!("whole networks measured in {whole_s:.2} s");
    let (lo, hi) = whole
        .iter()
        .fold((f64::MAX, 0.0f64), |(l, h), &v| (l.min(v), h.max(v)));
    println!("whole-network latency: {lo:.3} .. {hi:.3} ms");
    println!("Spearman {rho:.4}  Kendall {tau:.4}  (summed table vs whole network)");
    println!(
        "mean absolute relative error of the sum: {:.2} %  (mean whole/sum {mean_ratio:.3})",
        100.0 * mare(&sums, &whole)
    );
    println!(
        "per-op overhead fit on {} even cells: whole - sum = {a:.4} ms + {:.2} us x ops",
        fit.len(),
        b * 1e3
    );
    println!(
        "held-out ({} odd cells): error of the sum {:.2} %, of sum + overhead {:.2} %",
        test.len(),
        100.0 * mare(&pick(&sums, &test), &pick(&whole, &test)),
        100.0 * mare(&pick(&corrected, &test), &pick(&whole, &test))
    );
    if let Some(path) = out {
        let mut csv = String::from("cell,ops,sum_ms,whole_ms\n");
        for i in 0..cells {
            writeln!(
                csv,
                "{},{},{:.5},{:.5}",
                sample[i], n_ops[i], sums[i], whole[i]
            )?;
        }
        std::fs::write(&path, csv).map_err(|e| format!("{path}: {e}"))?;
    }
    Ok(())
}
