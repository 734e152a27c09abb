//! `nas data`: inspect a data set through the same loaders that searches use.

use crate::error::{CliError, Result};
use crate::output::Out;
use clap::{Args, Subcommand};
use nas_search::data::{DataInfo, DataSpec};

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

fn info(spec: &DataSpec, valid: f64, seed: u64, out: &Out) -> Result<()> {
    if !(0.0..1.0).contains(&valid) {
        return Err(CliError::Usage(format!(
            "--valid {valid}: the validation fraction must be in [0, 1)"
        )));
    }
    let info = DataInfo::of(spec, valid, seed)?;
    let value = serde_json::to_value(&info).map_err(|e| CliError::Usage(e.to_string()))?;
    out.result(&info.to_string(), &value)
        .map_err(CliError::Output)
}
