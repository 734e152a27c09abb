//! Zero-cost proxies on NAS-Bench-201: Spearman correlation of each proxy with the table's
//! 200-epoch test accuracy over a seeded sample of cells, and the time per cell.
//!
//! ```sh
//! cargo run --release -p nas-search --example nb201_proxies -- --cells 1000 --out proxies.csv
//! ```
//!
//! Options: `--cells N` (1000, distinct cells drawn uniformly), `--seed S` (0; cell `i` of the
//! sample gets weights from seed `S + index`), `--synflow-channels C` / `--synflow-depth N`
//! (16 / 5: the benchmark's network on a 3x32x32 all-ones image), `--synflow-net D` (cifar10:
//! 10 classes; cifar100: 100 classes; imagenet16-120: 120 classes on 3x16x16), `--channels C` /
//! `--depth N` (8 / 1: the network of the data-dependent proxies, on 1x28x28 images),
//! `--batch B` (64 images: the first B of the embedded Fashion-MNIST training subset,
//! normalised; `--data digits` uses the embedded UCI digits, 1x8x8, instead), `--no-data`
//! (synflow, params and FLOPs only), `--out FILE` (every cell's scores as CSV).

use nas_search::data::embedded::{digits_embedded, fashion_mnist_embedded};
use nas_search::nets::nb201::Nb201Config;
use nas_search::proxies::{data_proxies, spearman, synflow};
use nas_search::tabular::{Dataset, Nb201Table};
use nas_tensor::Tensor;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use std::fmt::Write as _;
use std::time::Instant;

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let (mut cells, mut seed, mut batch) = (1000usize, 0u64, 64usize);
    let (mut sc, mut sn, mut dc, mut dn) = (16usize, 5usize, 8usize, 1usize);
    let (mut data, mut no_data, mut out) = ("fashion".to_string(), false, None::<String>);
    let mut syn_net = Dataset::Cifar10;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or_else(|| format!("{a} needs a value"));
        let num =
            |v: String, name: &str| v.parse::<usize>().map_err(|e| format!("{name} {v:?}: {e}"));
        match a.as_str() {
            "--cells" => cells = num(val()?, "--cells")?,
            "--seed" => seed = num(val()?, "--seed")? as u64,
            "--batch" => batch = num(val()?, "--batch")?,
            "--synflow-channels" => sc = num(val()?, "--synflow-channels")?,
            "--synflow-depth" => sn = num(val()?, "--synflow-depth")?,
            "--channels" => dc = num(val()?, "--channels")?,
            "--depth" => dn = num(val()?, "--depth")?,
            "--data" => data = val()?,
            "--synflow-net" => syn_net = Dataset::parse(&val()?)?,
            "--no-data" => no_data = true,
            "--out" => out = Some(val()?),
            "-h" | "--help" => {
                println!("see the comment at the top of nas-search/examples/nb201_proxies.rs");
                return Ok(());
            }
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    if !(1..=nas_search::tabular::NUM_CELLS).contains(&cells) || batch < 2 {
        return Err("--cells must be 1..=15625 and --batch at least 2".into());
    }
    let table = Nb201Table::embedded()?;
    let mut order: Vec<usize> = (0..table.rows().len()).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    order.truncate(cells);

    let splits = match data.as_str() {
        "fashion" => fashion_mnist_embedded()?,
        "digits" => digits_embedded()?,
        other => return Err(format!("--data {other:?}: expected fashion or digits").into()),
    }
    .normalize()?;
    let train = &splits.train;
    let (c, h, w) = train.shape();
    if batch > train.len() {
        return Err(format!("--batch {batch} exceeds the {} images", train.len()).into());
    }
    let images = Tensor::from_vec(
        train.images()[..batch * c * h * w].to_vec(),
        &[batch, c, h, w],
    )?;
    let labels = &train.labels()[..batch];
    let syn_cfg = Nb201Config {
        channels: sc,
        cells_per_stage: sn,
        in_channels: 3,
        classes: syn_net.classes() as usize,
    };
    let side = syn_net.input_size() as usize;
    let data_cfg = Nb201Config {
        channels: dc,
        cells_per_stage: dn,
        in_channels: c,
        classes: train.num_classes(),
    };
    eprintln!(
        "{cells} cells; synflow on the {} network, C={sc} N={sn}, 3x{side}x{side}; data proxies on C={dc} N={dn}, {batch} {} images {c}x{h}x{w}",
        syn_net.name(),
        train.name()
    );

    let names = [
        "synflow",
        "grad_norm",
        "snip",
        "jacob_cov",
        "nwot",
        "params",
        "flops",
    ];
    let mut scores: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    let (mut t_syn, mut t_data) = (0.0f64, 0.0f64);
    let mut csv = String::from("index,arch,cifar10_test_200ep,");
    csv.push_str(&names.join(","));
    csv.push('\n');
    let started = Instant::now();
    for (k, &i) in order.iter().enumerate() {
        let r = &table.rows()[i];
        let s = seed + i as u64;
        let t0 = Instant::now();
        let syn = synflow(&r.cell, syn_cfg, s, (side, side))?;
        let t1 = Instant::now();
        let d = if no_data {
            None
        } else {
            Some(data_proxies(&r.cell, data_cfg, s, &images, labels)?)
        };
        let t2 = Instant::now();
        t_syn += (t1 - t0).as_secs_f64();
        t_data += (t2 - t1).as_secs_f64();
        let nan = f64::NAN;
        let row = [
            syn,
            d.map_or(nan, |d| d.grad_norm),
            d.map_or(nan, |d| d.snip),
            d.map_or(nan, |d| d.jacob_cov),
            d.map_or(nan, |d| d.nwot),
            r.cost[0].params as f64,
            r.cost[0].flops as f64,
        ];
        write!(csv, "{},{},{}", r.index, r.cell, r.test_200[0])?;
        for (col, v) in scores.iter_mut().zip(row) {
            col.push(v);
            write!(csv, ",{v}")?;
        }
        csv.push('\n');
        if (k + 1) % 100 == 0 {
            eprintln!("{} cells, {:.0} s", k + 1, started.elapsed().as_secs_f64());
        }
    }
    if let Some(path) = &out {
        std::fs::write(path, &csv).map_err(|e| format!("{path}: {e}"))?;
    }
    let acc = |d: Dataset| -> Vec<f64> {
        order
            .iter()
            .map(|&i| table.rows()[i].test_200[d.column()])
            .collect()
    };
    let (a10, a100, a16) = (
        acc(Dataset::Cifar10),
        acc(Dataset::Cifar100),
        acc(Dataset::ImageNet16_120),
    );
    println!(
        "| proxy | Spearman vs CIFAR-10 test (200 ep) | CIFAR-100 | ImageNet16-120 | cells used | time per cell |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    for (name, col) in names.iter().zip(&scores) {
        let (r10, n) = spearman(col, &a10);
        let (r100, _) = spearman(col, &a100);
        let (r16, _) = spearman(col, &a16);
        let t = match *name {
            "synflow" => format!("{:.1} ms", 1e3 * t_syn / cells as f64),
            "params" | "flops" => "closed form".into(),
            _ => format!("{:.1} ms (all four)", 1e3 * t_data / cells as f64),
        };
        println!("| {name} | {r10:.3} | {r100:.3} | {r16:.3} | {n} | {t} |");
    }
    eprintln!("total {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}
