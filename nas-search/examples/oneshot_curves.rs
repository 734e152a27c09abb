//! The derived cell's NAS-Bench-201 table accuracy after every epoch of one-shot searches on
//! the NB201 space, one line per method (the mean over its runs), as one SVG; and a summary per
//! run (final cell, its table accuracy) with each method's mean and sample standard deviation.
//!
//! ```sh
//! cargo run --release -p nas-search --example oneshot_curves -- --out docs/curves.svg \
//!     darts=runs/darts-s0,runs/darts-s1,runs/darts-s2 beta-darts=runs/beta-darts-s0,...
//! ```
//!
//! Each directory is the output of `nas search --space nb201 --strategy METHOD`; its
//! `history.json` holds one record per epoch with `nb201_cifar10_test`. A run that stopped
//! early (DARTS+) keeps its last cell for the remaining epochs of the plot.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use nas_search::oneshot::EpochRecord;
use nas_search::plot::{Plot, Style};

struct Method {
    label: String,
    runs: Vec<(PathBuf, Vec<EpochRecord>)>,
}

fn read_history(dir: &Path) -> Result<Vec<EpochRecord>, String> {
    let path = dir.join("history.json");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let h: Vec<EpochRecord> =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    if h.is_empty() {
        return Err(format!("{}: no epoch recorded", path.display()));
    }
    if h.iter().any(|r| r.nb201_cifar10_test.is_none()) {
        return Err(format!(
            "{}: not an NB201 search (no table accuracy per epoch)",
            path.display()
        ));
    }
    Ok(h)
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let s = if v.len() > 1 {
        (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
    } else {
        0.0
    };
    (m, s)
}

fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let mut out: Option<PathBuf> = None;
    let mut methods: Vec<Method> = Vec::new();
    while let Some(a) = args.next() {
        if a == "--out" {
            out = Some(args.next().ok_or("--out needs a file")?.into());
            continue;
        }
        let (label, dirs) = a
            .split_once('=')
            .ok_or_else(|| format!("argument {a:?} is not LABEL=DIR[,DIR...] or --out FILE"))?;
        let mut runs = Vec::new();
        for d in dirs.split(',').filter(|d| !d.is_empty()) {
            let p = PathBuf::from(d);
            let h = read_history(&p)?;
            runs.push((p, h));
        }
        if runs.is_empty() {
            return Err(format!("argument {a:?} names no run directory"));
        }
        methods.push(Method {
            label: label.into(),
            runs,
        });
    }
    let out = out.ok_or("--out FILE is required")?;
    if methods.is_empty() {
        return Err("no LABEL=DIR[,DIR...] given".into());
    }
    let epochs = methods
        .iter()
        .flat_map(|m| m.runs.iter().map(|(_, h)| h.len()))
        .max()
        .unwrap_or(0);
    let mut plot = Plot::new(
        "Derived NB201 cell after every epoch (mean of the runs)",
        "epoch",
        "table CIFAR-10 test accuracy (%)",
    );
    let table = nas_search::tabular::Nb201Table::embedded().map_err(|e| e.to_string())?;
    let d = nas_search::tabular::Dataset::Cifar10;
    let best = table.optimum(d).test_200[d.column()];
    plot.reference = Some((best, format!("table optimum {best:.2}")));
    for m in &methods {
        let acc = |h: &[EpochRecord], e: usize| -> f64 {
            h[e.min(h.len() - 1)].nb201_cifar10_test.expect("checked")
        };
        let points: Vec<(f64, f64)> = (0..epochs)
            .map(|e| {
                let v: Vec<f64> = m.runs.iter().map(|(_, h)| acc(h, e)).collect();
                ((e + 1) as f64, mean_std(&v).0)
            })
            .collect();
        plot.add(
            &format!("{} ({} runs)", m.label, m.runs.len()),
            points,
            Style::Line,
        );
        let finals: Vec<f64> = m
            .runs
            .iter()
            .map(|(_, h)| {
                h.last()
                    .and_then(|r| r.nb201_cifar10_test)
                    .expect("checked")
            })
            .collect();
        for ((dir, h), f) in m.runs.iter().zip(&finals) {
            let last = h.last().expect("checked");
            let per_epoch: Vec<String> = h
                .iter()
                .map(|r| format!("{:.2}", r.nb201_cifar10_test.expect("checked")))
                .collect();
            println!(
                "{} | {} | epochs {} | {} | {f:.2} | per epoch: {}",
                m.label,
                dir.display(),
                h.len(),
                last.genotype,
                per_epoch.join(" ")
            );
        }
        let (mean, std) = mean_std(&finals);
        println!(
            "{}: final table accuracy {mean:.2} ± {std:.2} over {} runs",
            m.label,
            finals.len()
        );
    }
    plot.save(&out)
        .map_err(|e| format!("{}: {e}", out.display()))?;
    println!("wrote {}", out.display());
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("oneshot_curves: {e}");
            ExitCode::FAILURE
        }
    }
}
