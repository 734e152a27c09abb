//! `nas data`: inspect a data set through the same loaders that searches use.

use crate::error::{CliError, Result};
use crate::output::Out;
use clap::{Args, Subcommand};
use nas_search::data::{DataSpec, Dataset, Normalization};
use serde_json::{Value, json};
use std::fmt::Write as _;

const EXAMPLES: &str = "\
Examples:
  nas data info                      (the embedded Fashion-MNIST subset)
  nas data info digits
  nas data info mnist:~/data/mnist   (train-images-idx3-ubyte[.gz], ..., t10k-labels-idx1-ubyte[.gz])
  nas data info cifar10:~/data/cifar-10-batches-bin --valid 0.1 --seed 1
  nas --json data info fashion:/data/fashion-mnist

SPEC is one of: fashion | fashion-embedded (default), digits, mnist:DIR, fashion:DIR,
cifar10:DIR, cifar100:DIR, digits:FILE, idx:TRAIN_IMAGES,TRAIN_LABELS[,TEST_IMAGES,TEST_LABELS].
A set with training files only (an IDX directory without test files, or idx: with two files)
has its last sixth held out as the test set.";

/// Arguments of `nas data`.
#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub struct DataArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: DataAction,
}

/// The `nas data` actions.
#[derive(Debug, Subcommand)]
pub enum DataAction {
    /// Load a data set and print its size, image shape, classes and pixel statistics.
    Info {
        /// The data set (see below).
        #[arg(default_value = "fashion")]
        spec: DataSpec,
        /// Fraction of the training set to hold out for validation (as a search would).
        #[arg(long, default_value_t = 0.0)]
        valid: f64,
        /// Seed of the validation split.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
}

/// Runs `nas data`.
pub fn run(args: &DataArgs, out: &Out) -> Result<()> {
    match &args.action {
        DataAction::Info { spec, valid, seed } => info(spec, *valid, *seed, out),
    }
}

fn part(d: &Dataset) -> Value {
    json!({"examples": d.len(), "class_counts": d.class_counts()})
}

fn info(spec: &DataSpec, valid: f64, seed: u64, out: &Out) -> Result<()> {
    if !(0.0..1.0).contains(&valid) {
        return Err(CliError::Usage(format!(
            "--valid {valid}: the validation fraction must be in [0, 1)"
        )));
    }
    let splits = spec.load()?.with_validation(valid, seed)?;
    let norm = Normalization::fit(&splits.train)?;
    let train = &splits.train;
    let (c, h, w) = train.shape();
    let n_valid = splits.valid.as_ref().map_or(0, Dataset::len);
    let total = train.len() + n_valid + splits.test.len();

    let mut text = String::new();
    let source = if spec.is_embedded() {
        "embedded"
    } else {
        "from disk"
    };
    let _ = writeln!(text, "data set:  {} ({spec}, {source})", train.name());
    let valid_part = if n_valid > 0 {
        format!("valid {n_valid}, ")
    } else {
        String::new()
    };
    let _ = writeln!(
        text,
        "examples:  {total} (train {}, {valid_part}test {})",
        train.len(),
        splits.test.len()
    );
    let _ = writeln!(text, "image:     {c}x{h}x{w} (channels x height x width)");
    let names = if train.class_names().is_empty() {
        String::new()
    } else {
        format!(": {}", train.class_names().join(", "))
    };
    let _ = writeln!(text, "classes:   {}{names}", train.num_classes());
    let counts: Vec<String> = train.class_counts().iter().map(|n| n.to_string()).collect();
    let _ = writeln!(text, "train per class: {}", counts.join(" "));
    let stats: Vec<String> = norm
        .mean
        .iter()
        .zip(&norm.std)
        .map(|(m, s)| format!("{m:.4}/{s:.4}"))
        .collect();
    let _ = writeln!(
        text,
        "pixel mean/std per channel (train, scaled to [0,1]): {}",
        stats.join(" ")
    );

    let value = json!({
        "name": train.name(),
        "spec": spec.to_string(),
        "embedded": spec.is_embedded(),
        "examples": total,
        "shape": [c, h, w],
        "num_classes": train.num_classes(),
        "class_names": train.class_names(),
        "train": part(train),
        "valid": splits.valid.as_ref().map(part),
        "test": part(&splits.test),
        "normalization": norm,
    });
    out.result(&text, &value).map_err(CliError::Output)
}
