//! `nas train`: train one architecture from scratch with the library's recipe
//! (`nas_search::train`), report its accuracy and save its weights as safetensors.

use crate::cmd::device::check_device;
use crate::error::{CliError, Result};
use crate::output::Out;
use crate::progress::{Mode, Progress};
use crate::spaces::{SpaceName, arch_argument, parse_arch, resolve_space};
use clap::Args;
use nas_search::data::{DataSpec, Splits};
use nas_search::memory::NetSize;
use nas_search::train::{
    ChainFamily, DartsFamily, EpochStats, Nb101Family, Nb201Family, NetworkFamily, TrainRecipe,
    TrainedArchitecture, train_architecture_observed,
};
use nas_space::SearchSpace;
use nas_space::chain::ChainSpace;
use nas_space::darts::DartsSpace;
use nas_space::nb101::Nb101Space;
use nas_space::nb201::Nb201Space;
use nas_tensor::nn::Module as _;
use serde_json::json;
use std::fmt::Display;
use std::path::PathBuf;

const EXAMPLES: &str = "\
Examples:
  nas train '|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|' \\
      --epochs 3 --out best.safetensors
  nas train @runs/r1/best.txt --data digits --epochs 10 --channels 8 --cells 1
  nas train \"$(jq -r .best.arch runs/r1/summary.json)\" --epochs 5
  nas train 'Genotype(normal=[...], normal_concat=[2, 3, 4, 5], reduce=[...], reduce_concat=[2, 3, 4, 5])' \\
      --space darts --channels 16 --cells 8
  nas --json train '|skip_connect~0|+|none~0|nor_conv_1x1~1|+|avg_pool_3x3~0|none~1|nor_conv_3x3~2|' --epochs 1 --limit-train 2000

ARCH is a NAS-Bench-201 cell string or a DARTS genotype (its text form or JSON), @FILE, or - for
stdin. The recipe is NAS-Bench-201's (SGD, Nesterov momentum 0.9, lr 0.1 cosine-annealed, weight
decay 5e-4, batch 64); the network is the NAS-Bench-201 macro network (C=16, N=5 by default) or
the DARTS evaluation network.";

/// Arguments of `nas train`.
#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub struct TrainArgs {
    /// The architecture: text form, JSON, @FILE or - (stdin).
    pub arch: String,
    /// Its space (nb201, darts, nb101, chain, chain-mlp); guessed from ARCH when not given.
    #[arg(long, value_enum)]
    pub space: Option<SpaceName>,
    /// Data set: fashion (embedded, default), digits, mnist:DIR, fashion:DIR, cifar10:DIR,
    /// cifar100:DIR, digits:FILE, idx:TRAIN_IMAGES,TRAIN_LABELS[,TEST_IMAGES,TEST_LABELS].
    #[arg(long, default_value = "fashion")]
    pub data: DataSpec,
    /// Training epochs.
    #[arg(long, default_value_t = 3)]
    pub epochs: u32,
    /// Channels C [default: 16].
    #[arg(long)]
    pub channels: Option<usize>,
    /// Cells per stage (nb201, default 5), cells in all (darts, default 8) or cells per stack
    /// (nb101, default 3; --channels is its stem width).
    #[arg(long)]
    pub cells: Option<usize>,
    /// Train on at most this many training images (0 = all).
    #[arg(long, default_value_t = 0)]
    pub limit_train: usize,
    /// Learning rate (cosine-annealed) [default: 0.1].
    #[arg(long)]
    pub lr: Option<f32>,
    /// Mini-batch size [default: 64].
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
    let device = check_device(&args.device)?;
    super::check_training_values(args.lr, args.batch_size, args.channels, args.cells)?;
    if args.epochs == 0 {
        return Err(CliError::Usage("--epochs must be at least 1".into()));
    }
    if !(0.0..1.0).contains(&args.valid_fraction) {
        return Err(CliError::Usage(format!(
            "--valid-fraction must be in [0, 1), got {}",
            args.valid_fraction
        )));
    }
    let text = arch_argument(&args.arch)?;
    let space = resolve_space(args.space, &text)?;
    let splits = args
        .data
        .load()
        .and_then(|s| s.prepare(args.valid_fraction, args.seed))?;
    let d = TrainRecipe::default();
    let recipe = TrainRecipe {
        lr: args.lr.unwrap_or(d.lr),
        batch_size: args.batch_size.unwrap_or(d.batch_size),
        augment: args.augment,
        train_examples: (args.limit_train > 0).then_some(args.limit_train),
        device,
        ..d
    };
    let channels = args.channels.unwrap_or(16);
    let size = match space {
        SpaceName::Nb201 => NetSize::Nb201 {
            channels,
            cells: args.cells.unwrap_or(5),
        },
        SpaceName::Darts => NetSize::Darts {
            channels,
            cells: args.cells.unwrap_or(8),
        },
        SpaceName::Nb101 => NetSize::Nb101 {
            channels,
            cells: args.cells.unwrap_or(3),
        },
        SpaceName::Chain | SpaceName::ChainMlp => NetSize::Chain,
    };
    crate::limits::check_memory(
        size,
        &splits.train,
        recipe.train_examples,
        recipe.batch_size,
        1,
        args.max_memory,
        "training this network",
    )?;
    if let Some(path) = &args.out {
        check_writable(path)?;
    }
    match space {
        SpaceName::Nb201 => {
            let arch = parse_arch(&Nb201Space, &text)?;
            let family = Nb201Family {
                channels,
                cells_per_stage: args.cells.unwrap_or(5),
            };
            train_and_report(&Nb201Space, &family, &arch, &splits, &recipe, args, out)
        }
        SpaceName::Darts => {
            let arch = parse_arch(&DartsSpace, &text)?;
            let family = DartsFamily {
                channels,
                layers: args.cells.unwrap_or(8),
            };
            train_and_report(&DartsSpace, &family, &arch, &splits, &recipe, args, out)
        }
        SpaceName::Nb101 => {
            let arch = parse_arch(&Nb101Space, &text)?;
            let family = Nb101Family {
                stem_channels: channels,
                stacks: 3,
                cells_per_stack: args.cells.unwrap_or(3),
            };
            train_and_report(&Nb101Space, &family, &arch, &splits, &recipe, args, out)
        }
        SpaceName::Chain => {
            let space = ChainSpace::cnn();
            let arch = parse_arch(&space, &text)?;
            train_and_report(&space, &ChainFamily, &arch, &splits, &recipe, args, out)
        }
        SpaceName::ChainMlp => {
            let space = ChainSpace::mlp();
            let arch = parse_arch(&space, &text)?;
            train_and_report(&space, &ChainFamily, &arch, &splits, &recipe, args, out)
        }
    }
}

/// Checks, before training, that `path` can be written: opened for writing (created and removed
/// again when it did not exist; an existing file is not changed).
fn check_writable(path: &std::path::Path) -> Result<()> {
    let existed = path.exists();
    match std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
    {
        Ok(_) => {
            if !existed {
                let _ = std::fs::remove_file(path);
            }
            Ok(())
        }
        Err(e) => Err(CliError::Input {
            path: path.display().to_string(),
            problem: format!("--out cannot be written ({e}); nothing was trained"),
        }),
    }
}

fn train_and_report<S, F>(
    space: &S,
    family: &F,
    arch: &S::Arch,
    splits: &Splits,
    recipe: &TrainRecipe,
    args: &TrainArgs,
    out: &Out,
) -> Result<()>
where
    S: SearchSpace,
    S::Arch: Display,
    F: NetworkFamily<S::Arch>,
{
    let progress = Progress::new(Mode::for_output(out));
    let n_train = recipe
        .train_examples
        .map_or(splits.train.len(), |n| n.min(splits.train.len()));
    progress.line(&format!(
        "training {} for {} epoch(s) on {} images of {} ({})",
        arch,
        args.epochs,
        n_train,
        args.data,
        family.name()
    ));
    let bar = progress.bar("epochs", u64::from(args.epochs));
    let trained: TrainedArchitecture = train_architecture_observed(
        family,
        arch,
        splits,
        recipe,
        args.epochs as usize,
        args.seed,
        &mut |s: &EpochStats| {
            bar.inc(1);
            let line = format!(
                "epoch {:>3}  loss {:.4}  train acc {:6.2}%  lr {:.4}",
                s.epoch + 1,
                s.train_loss,
                s.train_accuracy,
                s.lr
            );
            bar.set_message(line.clone());
            progress.line(&line);
        },
    )?;
    bar.finish_and_clear();
    if let Some(path) = &args.out
        && let Err(e) = nas_tensor::io::save_module(trained.module.as_ref(), path)
    {
        // Do not lose the trained weights: save them next to the run and name both paths.
        let fallback = PathBuf::from(format!(
            "nas-train-{}-{}.safetensors",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        ));
        return Err(
            match nas_tensor::io::save_module(trained.module.as_ref(), &fallback) {
                Ok(()) => CliError::Input {
                    path: path.display().to_string(),
                    problem: format!(
                        "cannot save the weights ({e}); they are saved in {} instead",
                        fallback.display()
                    ),
                },
                Err(e2) => CliError::Input {
                    path: path.display().to_string(),
                    problem: format!(
                        "cannot save the weights ({e}), nor in {} ({e2}); they are lost",
                        fallback.display()
                    ),
                },
            },
        );
    }
    let mut text = format!(
        "{} ({}): test accuracy {:.2}% (loss {:.4})",
        arch,
        space.name(),
        trained.test_accuracy,
        trained.test_loss
    );
    if let Some(v) = trained.valid_accuracy {
        text += &format!(", validation accuracy {v:.2}%");
    }
    text += &format!(
        "\n{} parameters, {:.2} MFLOPs; {} epoch(s) in {:.1} s",
        trained.cost.params,
        trained.cost.flops as f64 / 1e6,
        args.epochs,
        trained.wall_time_s
    );
    if let Some(path) = &args.out {
        text += &format!("\nweights: {}", path.display());
    }
    let value = json!({
        "arch": arch.to_string(),
        "space": space.name(),
        "network": family.name(),
        "data": args.data.to_string(),
        "train_examples": n_train,
        "epochs": trained.epochs.iter().map(|e| json!({
            "epoch": e.epoch + 1,
            "train_loss": e.train_loss,
            "train_accuracy": e.train_accuracy,
            "lr": e.lr,
        })).collect::<Vec<_>>(),
        "test_accuracy": trained.test_accuracy,
        "test_loss": trained.test_loss,
        "valid_accuracy": trained.valid_accuracy,
        "valid_loss": trained.valid_loss,
        "params": trained.cost.params,
        "flops": trained.cost.flops,
        "wall_time_s": trained.wall_time_s,
        "weights": args.out.as_ref().map(|p| p.display().to_string()),
        // where the trained network's tensors live, read from the network itself
        "device": trained.module.device().map(|d| d.to_string()),
    });
    out.result(&text, &value).map_err(CliError::Output)
}
