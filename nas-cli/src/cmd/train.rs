//! `nas train`: train one architecture from scratch with the library's recipe
//! (`nas_search::train`), report its accuracy and save its weights as safetensors.

use crate::cmd::check_device;
use crate::error::{CliError, Result};
use crate::output::Out;
use crate::progress::{Mode, Progress};
use clap::Args;
use nas_search::data::DataSpec;
use nas_search::spaces::{NetSettings, read_arch};
use nas_search::train::EpochStats;
use nas_search::trainjob::{DEFAULT_TRAIN_EPOCHS, TrainJob};
use std::path::PathBuf;

const EXAMPLES: &str = "\
Examples:
  nas train '|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|' \\
      --epochs 3 --out best.safetensors
  nas train @runs/r1/best.txt --data digits --epochs 10 --channels 8 --cells 1
  nas train \"$(jq -r .best.arch runs/r1/summary.json)\" --epochs 5
  nas train 'Genotype(normal=[...], normal_concat=[2, 3, 4, 5], reduce=[...], reduce_concat=[2, 3, 4, 5])' \\
      --space darts --channels 16 --cells 8
  nas train --space rnn \"Genotype(recurrent=[('sigmoid', 0), ('relu', 1), ('relu', 1), ('identity', 1), \\
      ('tanh', 2), ('sigmoid', 5), ('tanh', 3), ('relu', 5)], concat=range(1, 9))\" --epochs 1 --limit-train 2000
  nas --json train '|skip_connect~0|+|none~0|nor_conv_1x1~1|+|avg_pool_3x3~0|none~1|nor_conv_3x3~2|' --epochs 1 --limit-train 2000

ARCH is a NAS-Bench-201 cell string, a DARTS genotype or a DARTS recurrent cell (its text form or
JSON), @FILE, or - for stdin. A recurrent cell trains as a character language model (Adam,
windows of 64 characters) and reports bits per character. The recipe is NAS-Bench-201's (SGD, Nesterov momentum 0.9, lr 0.1 cosine-annealed, weight
decay 5e-4, batch 64); the network is the NAS-Bench-201 macro network (C=16, N=5 by default) or
the DARTS evaluation network.";

/// Arguments of `nas train`.
#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub struct TrainArgs {
    /// The architecture: text form, JSON, @FILE or - (stdin).
    pub arch: String,
    /// Its space; guessed from ARCH when not given.
    #[arg(long)]
    pub space: Option<String>,
    /// Data set: fashion (embedded, default), digits, mnist:DIR, fashion:DIR, cifar10:DIR,
    /// cifar100:DIR, digits:FILE, idx:TRAIN_IMAGES,TRAIN_LABELS[,TEST_IMAGES,TEST_LABELS];
    /// for recurrent cells shakespeare (embedded, default) or text:FILE.
    #[arg(long)]
    pub data: Option<DataSpec>,
    /// Training epochs.
    #[arg(long, default_value_t = DEFAULT_TRAIN_EPOCHS)]
    pub epochs: u32,
    /// Channels C.
    #[arg(long)]
    pub channels: Option<usize>,
    /// Cells.
    #[arg(long)]
    pub cells: Option<usize>,
    /// Train on at most this many training images (0 = all).
    #[arg(long, default_value_t = 0)]
    pub limit_train: usize,
    /// Learning rate (cosine-annealed) [default: the space's recipe].
    #[arg(long)]
    pub lr: Option<f32>,
    /// Mini-batch size [default: the space's recipe].
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Random crop and horizontal flip.
    #[arg(long)]
    pub augment: bool,
    /// Fraction of the training set held out for validation (0 = none).
    #[arg(long, default_value_t = 0.0)]
    pub valid_fraction: f64,
    /// Seed of the weights, batches and split.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Save the trained weights here (safetensors).
    #[arg(long, short = 'o')]
    pub out: Option<PathBuf>,
    /// Where to train: cpu (cuda:N is not available in this build).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Refuse a network that would need more memory than this (512M, 8G, ...) by the
    /// closed-form estimate [default: the available memory].
    #[arg(long, value_parser = nas_search::memory::parse_size)]
    pub max_memory: Option<u64>,
}

/// Runs `nas train`.
pub fn run(args: &TrainArgs, out: &Out) -> Result<()> {
    let job = TrainJob {
        space: args.space.clone(),
        data: args.data.clone(),
        epochs: args.epochs,
        net: NetSettings {
            channels: args.channels,
            cells: args.cells,
        },
        lr: args.lr,
        batch_size: args.batch_size,
        augment: args.augment,
        train_examples: (args.limit_train > 0).then_some(args.limit_train),
        valid_fraction: args.valid_fraction,
        seed: args.seed,
        device: check_device(&args.device)?,
        max_memory: args.max_memory,
        weights: args.out.clone(),
        ..TrainJob::new(&read_arch(&args.arch)?)
    };
    let progress = Progress::new(Mode::for_output(out));
    let bar = progress.bar("epochs", u64::from(args.epochs));
    let trained = job.run(
        &mut |header| progress.line(header),
        &mut |s: &EpochStats| {
            bar.inc(1);
            bar.set_message(s.line());
            progress.line(&s.line());
        },
    );
    bar.finish_and_clear();
    let (report, _) = trained?;
    let value = serde_json::to_value(&report).map_err(|e| CliError::Usage(e.to_string()))?;
    out.result(&report.to_string(), &value)
        .map_err(CliError::Output)
}
