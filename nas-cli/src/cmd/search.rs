//! `nas search`: run an architecture search (training candidates from scratch, or looking them up
//! in the NAS-Bench-201 table) and write its summary, events log, plots and checkpoint.
//!
//! The search loop, strategies, evaluators and output files are those of
//! `nas_search::builder::Search` (same defaults, same `summary.json`, `events.jsonl` and SVG
//! plots); this command only adds progress bars (trials and training epochs) around them.

use crate::cmd::device::check_device;
use crate::error::{CliError, Result};
use crate::limits::check_memory;
use crate::output::Out;
use crate::progress::{Mode, Progress};
use clap::Parser as _;
use clap::{Args, ValueEnum};
use indicatif::ProgressBar;
use nas_kernels::Device;
use nas_search::builder::{
    DEFAULT_EPOCHS, DEFAULT_EVALUATIONS, DEFAULT_TRAIN_EXAMPLES, SearchReport, run_recorded,
};
use nas_search::data::{DataSpec, Splits};
use nas_search::memory::{NetSize, parse_size};
use nas_search::nb201::{Dataset as TableDataset, Nb201Evaluator, Nb201Table};
use nas_search::oneshot::{
    CHECKPOINT_FILE, Event, Method, OneShotConfig, OneShotSearch, SpaceKind, run_oneshot_observed,
};
use nas_search::outdir::{DirLock, LOCK_FILE, create_unique_dir};
use nas_search::strategy::{ReaConfig, StrategyKind};
use nas_search::train::{
    ChainFamily, DartsFamily, EpochStats, Nb101Family, Nb201Family, NetworkFamily, TrainEvaluator,
    TrainRecipe,
};
use nas_search::{Budget, EvalError, EvalRequest, Evaluator, Metrics, SearchConfig};
use nas_space::SearchSpace;
use nas_space::chain::ChainSpace;
use nas_space::darts::DartsSpace;
use nas_space::nb101::Nb101Space;
use nas_space::nb201::Nb201Space;
use serde_json::json;
use std::cell::{Cell, OnceCell};
use std::collections::{BTreeMap, HashSet};
use std::fmt::Display;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

const EXAMPLES: &str = "\
Examples:
  nas search
      the default: regularized evolution over NAS-Bench-201 cells, 16 candidates each trained
      from scratch (defaults of --epochs and --limit-train below) on the embedded Fashion-MNIST
      subset, 10% of its training images held out for validation, scored on its 1,000 test images
  nas search --evaluator nb201-table --strategy reinforce --evaluations 100 --seed 3
      a search on the NAS-Bench-201 table (sees 12-epoch validation accuracy, reports 200-epoch
      CIFAR-10 test accuracy): no training, seconds
  nas search --strategy random --evaluations 8 --epochs 2 --limit-train 1000 --workers 2 --out runs/r1
  nas search --resume --out runs/r1 --evaluations 12
      continues runs/r1 with the settings saved in runs/r1/settings.json (a larger --evaluations
      or --max-time extends it; other options that differ are refused)
  nas search --data mnist:~/data/mnist --epochs 3 --limit-train 0
  nas search --strategy 'evolution:population_size=20:sample_size=5' --evaluator nb201-table -n 200
  nas search --strategy hyperband --epochs 4      (successive halving from 1 to 4 epochs)
  nas search --strategy darts --epochs 2 --limit-train 1000 --out runs/d1
      one-shot: DARTS (darts, darts2 = second order) or GDAS (gdas) on a supernet of --space;
      writes genotype.txt, result.json, history.json, alphas.svg, checkpoint.bin

Outputs (in --out, default runs/search-<date>-<time>): summary.json, best.txt (the best
architecture: nas train @DIR/best.txt), events.jsonl (one JSON
object per line), progress.svg and progress_time.svg (best-so-far accuracy vs evaluations and
wall time), params_accuracy.svg, checkpoint.json + checkpoint.journal (the state, saved after
every evaluation: an interrupted search loses nothing finished; rerun with --resume --out DIR to
continue). While a search runs, its directory is locked (.nas.lock): a second search there is
refused.";

/// A one-shot search writes its checkpoint every this many steps (and after every epoch), so a
/// kill loses at most this many steps.
const ONESHOT_CHECKPOINT_EVERY: usize = 20;

/// Spaces `nas search` can search.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SearchSpaceName {
    /// NAS-Bench-201 cells (trained in the NAS-Bench-201 macro network, or looked up).
    Nb201,
    /// DARTS genotypes (trained in the DARTS evaluation network).
    Darts,
    /// NAS-Bench-101 graphs (trained in the NAS-Bench-101 network: --channels stem channels,
    /// 3 stacks of --cells cells).
    Nb101,
    /// Chains of conv layers (the CNN preset; --channels and --cells unused).
    Chain,
}

/// How candidates are evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EvaluatorName {
    /// Train each candidate from scratch on --data.
    Train,
    /// Look it up in the embedded NAS-Bench-201 table (nb201 space only).
    #[value(name = "nb201-table")]
    Nb201Table,
}

/// Arguments of `nas search`.
#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub struct SearchArgs {
    /// Search space (the table evaluator: nb201 only; one-shot strategies: nb201 or darts).
    #[arg(long, value_enum, default_value = "nb201")]
    pub space: SearchSpaceName,
    /// Strategy: random, evolution (alias rea), reinforce, local or hyperband, optionally with
    /// `:key=value` settings; or a one-shot strategy: darts, darts2 or gdas.
    #[arg(long, default_value = "evolution")]
    pub strategy: String,
    /// How candidates are evaluated.
    #[arg(long, value_enum, default_value = "train")]
    pub evaluator: EvaluatorName,
    /// Data set to train on: fashion (embedded, default), digits, mnist:DIR, fashion:DIR,
    /// cifar10:DIR, cifar100:DIR, digits:FILE, idx:TRAIN_IMAGES,TRAIN_LABELS[,TEST_IMAGES,
    /// TEST_LABELS] (training files only: the last sixth is the test set).
    #[arg(long, default_value = "fashion")]
    pub data: DataSpec,
    /// Data set of the NAS-Bench-201 table: cifar10, cifar100 or ImageNet16-120.
    #[arg(long, default_value = "cifar10")]
    pub table_dataset: String,
    /// Which table accuracy the search sees: 12 (12-epoch validation accuracy, NAS-Bench-201's
    /// protocol) or 200 (the 200-epoch test accuracy itself: an oracle). The reported test
    /// accuracy is always the 200-epoch one.
    #[arg(long, default_value_t = 12)]
    pub table_epochs: u32,
    /// Budget: number of evaluations.
    #[arg(long, short = 'n', default_value_t = DEFAULT_EVALUATIONS)]
    pub evaluations: u64,
    /// Also stop after this many seconds of wall time (summed over resumed sessions); a trial
    /// still training then is cut within a step and not recorded (--resume runs it again).
    #[arg(long)]
    pub max_time: Option<f64>,
    /// Training epochs per candidate (train evaluator).
    #[arg(long, default_value_t = DEFAULT_EPOCHS)]
    pub epochs: u32,
    /// Train each candidate on at most this many training images (0 = all).
    #[arg(long, default_value_t = DEFAULT_TRAIN_EXAMPLES)]
    pub limit_train: usize,
    /// Channels C of the trained networks [default: 8].
    #[arg(long)]
    pub channels: Option<usize>,
    /// Cells per stage (nb201, default 1), cells in all (darts, default 3) or cells per stack
    /// (nb101, default 1).
    #[arg(long)]
    pub cells: Option<usize>,
    /// Learning rate (cosine-annealed) [default: 0.1].
    #[arg(long)]
    pub lr: Option<f32>,
    /// Training mini-batch size [default: 64].
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Fraction of the training set held out for validation (what the search optimises).
    #[arg(long, default_value_t = 0.1)]
    pub valid_fraction: f64,
    /// Seed of the whole search (strategy, split, every trial's training).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Candidates evaluated in parallel.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Output directory [default: runs/search-<date>-<time>].
    #[arg(long, short = 'o')]
    pub out: Option<PathBuf>,
    /// Continue the search whose checkpoint is in --out, with the settings saved there
    /// (settings.json); only --evaluations and --max-time may be given to extend it.
    #[arg(long)]
    pub resume: bool,
    /// Where to train: cpu (cuda:N is not available in this build).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Refuse a training search whose networks (times --workers) would need more memory than
    /// this (512M, 8G, ...) by the closed-form estimate [default: the available memory].
    #[arg(long, value_parser = parse_size)]
    pub max_memory: Option<u64>,
}

/// The settings file of a search's output directory: the options it was started with.
pub const SETTINGS_FILE: &str = "settings.json";

/// Options a resume may change (a larger budget; the library refuses other worker counts).
const RESUME_MAY_CHANGE: [&str; 3] = ["evaluations", "max_time", "workers"];

/// The settings of a search as option id -> command-line value (what `settings.json` holds).
fn settings_of(args: &SearchArgs) -> BTreeMap<String, String> {
    let name = |v: Option<clap::builder::PossibleValue>| {
        v.map(|p| p.get_name().to_string()).unwrap_or_default()
    };
    let mut m = BTreeMap::new();
    let mut put = |k: &str, v: String| {
        m.insert(k.to_string(), v);
    };
    put("space", name(args.space.to_possible_value()));
    put("strategy", args.strategy.clone());
    put("evaluator", name(args.evaluator.to_possible_value()));
    put("data", args.data.to_string());
    put("table_dataset", args.table_dataset.clone());
    put("table_epochs", args.table_epochs.to_string());
    put("evaluations", args.evaluations.to_string());
    put("epochs", args.epochs.to_string());
    put("limit_train", args.limit_train.to_string());
    put("valid_fraction", args.valid_fraction.to_string());
    put("seed", args.seed.to_string());
    put("workers", args.workers.to_string());
    if let Some(v) = args.max_time {
        put("max_time", v.to_string());
    }
    if let Some(v) = args.channels {
        put("channels", v.to_string());
    }
    if let Some(v) = args.cells {
        put("cells", v.to_string());
    }
    if let Some(v) = args.lr {
        put("lr", v.to_string());
    }
    if let Some(v) = args.batch_size {
        put("batch_size", v.to_string());
    }
    m
}

/// Writes `DIR/settings.json` (once the search has passed its checks).
fn write_settings(dir: &Path, args: &SearchArgs) -> Result<()> {
    let text = serde_json::to_string_pretty(&settings_of(args))
        .map_err(|e| CliError::Usage(e.to_string()))?;
    nas_search::builder::write_file_atomic(&dir.join(SETTINGS_FILE), (text + "\n").as_bytes())?;
    Ok(())
}

/// `--resume --out DIR`: the options not given on the command line are taken from
/// `DIR/settings.json`; options given there that differ from it are refused (except a new
/// budget: -n, --max-time, --workers). Without a settings file (a search from an older
/// version) the arguments stay as given.
fn resume_args(args: &SearchArgs, given: &HashSet<String>) -> Result<Option<SearchArgs>> {
    let (true, Some(dir)) = (args.resume, &args.out) else {
        return Ok(None);
    };
    let path = dir.join(SETTINGS_FILE);
    let Ok(text) = fs::read_to_string(&path) else {
        return Ok(None);
    };
    let saved: BTreeMap<String, String> =
        serde_json::from_str(&text).map_err(|e| CliError::Input {
            path: path.display().to_string(),
            problem: format!("not a settings file: {e}"),
        })?;
    let now = settings_of(args);
    // A one-shot search may also be extended by epochs.
    let oneshot = saved
        .get("strategy")
        .is_some_and(|s| Method::parse(s.split(':').next().unwrap_or("")).is_ok());
    let may_change = |id: &str| RESUME_MAY_CHANGE.contains(&id) || (oneshot && id == "epochs");
    let flag = |id: &str| format!("--{}", id.replace('_', "-"));
    let mut extra: Vec<String> = Vec::new();
    for (id, value) in &saved {
        if given.contains(id) {
            if !may_change(id) && now.get(id) != Some(value) {
                return Err(CliError::Input {
                    path: path.display().to_string(),
                    problem: format!(
                        "this search was started with {} {value}; --resume continues it with its \
                         own settings (drop {} {}, or start a new search with another --out)",
                        flag(id),
                        flag(id),
                        now.get(id).map_or("", String::as_str)
                    ),
                });
            }
        } else {
            extra.push(flag(id));
            extra.push(value.clone());
        }
    }
    let argv: Vec<String> = std::env::args().chain(extra).collect();
    match crate::Cli::try_parse_from(&argv) {
        Ok(crate::Cli {
            command: crate::Command::Search(a),
            ..
        }) => Ok(Some(a)),
        Ok(_) => Ok(None),
        Err(e) => Err(CliError::Input {
            path: path.display().to_string(),
            problem: format!("its settings do not parse: {e}"),
        }),
    }
}

/// Runs `nas search`.
pub fn run(args: &SearchArgs, out: &Out, given: &HashSet<String>) -> Result<()> {
    let merged = resume_args(args, given)?;
    let args = merged.as_ref().unwrap_or(args);
    let device = check_device(&args.device)?;
    super::check_training_values(args.lr, args.batch_size, args.channels, args.cells)?;
    if let Some(method) = oneshot_method(args) {
        return oneshot(method, args, device, out);
    }
    let strategy = parse_strategy(args)?;
    if args.evaluations == 0 {
        return Err(CliError::Usage("--evaluations must be at least 1".into()));
    }
    if args.workers == 0 {
        return Err(CliError::Usage("--workers must be at least 1".into()));
    }
    if args.max_time.is_some_and(|t| t.is_nan() || t <= 0.0) {
        return Err(CliError::Usage(
            "--max-time must be a positive number of seconds".into(),
        ));
    }
    let progress = Progress::new(Mode::for_output(out));
    let (report, outdir) = match args.evaluator {
        EvaluatorName::Nb201Table => {
            if args.space != SearchSpaceName::Nb201 {
                return Err(CliError::Usage(
                    "--evaluator nb201-table evaluates only --space nb201".into(),
                ));
            }
            if args.table_epochs != 12 && args.table_epochs != 200 {
                return Err(CliError::Usage(format!(
                    "--table-epochs must be 12 or 200, got {}",
                    args.table_epochs
                )));
            }
            let ds = TableDataset::parse(&args.table_dataset)?;
            let ev = Nb201Evaluator::new(Nb201Table::embedded()?, ds);
            let outdir = output_dir(args, "checkpoint.json")?;
            let dir = outdir.path.clone();
            let header = format!(
                "searching NAS-Bench-201 cells with {} on the table ({}, sees {}-epoch accuracy), {} evaluations; outputs in {}",
                strategy.name(),
                ds.name(),
                args.table_epochs,
                args.evaluations,
                dir.display()
            );
            let report = run_with(
                &Nb201Space,
                &ev,
                strategy,
                args.table_epochs,
                args,
                &outdir,
                &header,
                &progress,
                None,
            )?;
            (report, outdir)
        }
        EvaluatorName::Train => {
            if args.epochs == 0 {
                return Err(CliError::Usage("--epochs must be at least 1".into()));
            }
            if !(args.valid_fraction > 0.0 && args.valid_fraction < 1.0) {
                return Err(CliError::Usage(format!(
                    "--valid-fraction must be in (0, 1), got {}",
                    args.valid_fraction
                )));
            }
            let splits = Arc::new(
                args.data
                    .load()
                    .and_then(|s| s.prepare(args.valid_fraction, args.seed))?,
            );
            let recipe = TrainRecipe {
                train_examples: (args.limit_train > 0).then_some(args.limit_train),
                lr: args.lr.unwrap_or(TrainRecipe::default().lr),
                batch_size: args.batch_size.unwrap_or(TrainRecipe::default().batch_size),
                device,
                ..TrainRecipe::default()
            };
            let channels = args.channels.unwrap_or(8);
            let size = match args.space {
                SearchSpaceName::Nb201 => NetSize::Nb201 {
                    channels,
                    cells: args.cells.unwrap_or(1),
                },
                SearchSpaceName::Darts => NetSize::Darts {
                    channels,
                    cells: args.cells.unwrap_or(3),
                },
                SearchSpaceName::Nb101 => NetSize::Nb101 {
                    channels,
                    cells: args.cells.unwrap_or(1),
                },
                SearchSpaceName::Chain => NetSize::Chain,
            };
            check_memory(
                size,
                &splits.train,
                recipe.train_examples,
                recipe.batch_size,
                args.workers,
                args.max_memory,
                "training these candidates",
            )?;
            let outdir = output_dir(args, "checkpoint.json")?;
            let dir = outdir.path.clone();
            let total_epochs = epoch_budget(&strategy, args);
            let epochs_bar = progress.bar("epochs", total_epochs);
            let n_train = match args.limit_train {
                0 => splits.train.len(),
                n => n.min(splits.train.len()),
            };
            // Hyperband trains its candidates for 1 to --epochs epochs (its ladder), not all
            // for --epochs.
            let per_trial = match &strategy {
                StrategyKind::Hyperband(c) => format!(
                    "trained {} epoch(s) by Hyperband's rungs",
                    c.fidelities
                        .iter()
                        .map(u32::to_string)
                        .collect::<Vec<_>>()
                        .join("/")
                ),
                _ => format!("each trained {} epoch(s)", args.epochs),
            };
            let header = format!(
                "searching {} with {}: {} candidates, {} on {} images of {} (C={}); outputs in {}",
                match args.space {
                    SearchSpaceName::Nb201 => "NAS-Bench-201 cells",
                    SearchSpaceName::Darts => "DARTS genotypes",
                    SearchSpaceName::Nb101 => "NAS-Bench-101 graphs",
                    SearchSpaceName::Chain => "conv chains",
                },
                strategy.name(),
                args.evaluations,
                per_trial,
                n_train,
                args.data,
                channels,
                dir.display()
            );
            let report = match args.space {
                SearchSpaceName::Nb201 => {
                    let family = Nb201Family {
                        channels,
                        cells_per_stage: args.cells.unwrap_or(1),
                    };
                    let ev = ObservedTrain::new(family, splits, recipe, epochs_bar.clone())?;
                    run_with(
                        &Nb201Space,
                        &ev,
                        strategy,
                        args.epochs,
                        args,
                        &outdir,
                        &header,
                        &progress,
                        Some(&epochs_bar),
                    )?
                }
                SearchSpaceName::Nb101 => {
                    let family = Nb101Family {
                        stem_channels: channels,
                        stacks: 3,
                        cells_per_stack: args.cells.unwrap_or(1),
                    };
                    let ev = ObservedTrain::new(family, splits, recipe, epochs_bar.clone())?;
                    run_with(
                        &Nb101Space,
                        &ev,
                        strategy,
                        args.epochs,
                        args,
                        &outdir,
                        &header,
                        &progress,
                        Some(&epochs_bar),
                    )?
                }
                SearchSpaceName::Chain => {
                    let ev = ObservedTrain::new(ChainFamily, splits, recipe, epochs_bar.clone())?;
                    run_with(
                        &ChainSpace::cnn(),
                        &ev,
                        strategy,
                        args.epochs,
                        args,
                        &outdir,
                        &header,
                        &progress,
                        Some(&epochs_bar),
                    )?
                }
                SearchSpaceName::Darts => {
                    let family = DartsFamily {
                        channels,
                        layers: args.cells.unwrap_or(3),
                    };
                    let ev = ObservedTrain::new(family, splits, recipe, epochs_bar.clone())?;
                    run_with(
                        &DartsSpace,
                        &ev,
                        strategy,
                        args.epochs,
                        args,
                        &outdir,
                        &header,
                        &progress,
                        Some(&epochs_bar),
                    )?
                }
            };
            epochs_bar.finish_and_clear();
            (report, outdir)
        }
    };
    print_report(&report, &outdir.path, out)
}

/// The one-shot method named by `--strategy`, if it names one.
fn oneshot_method(args: &SearchArgs) -> Option<Method> {
    let name = args.strategy.split(':').next().unwrap_or("").trim();
    Method::parse(name).ok()
}

fn parse_strategy(args: &SearchArgs) -> Result<StrategyKind> {
    let mut kind = StrategyKind::parse(&args.strategy)
        .map_err(|e| CliError::Usage(format!("--strategy: {e}")))?;
    if let StrategyKind::Hyperband(c) = &mut kind
        && args.evaluator == EvaluatorName::Train
        && !args.strategy.contains("fidelities")
    {
        // The default ladder (12 and 200 epochs) is the table's; training climbs from 1 epoch
        // to --epochs.
        if args.epochs < 2 {
            return Err(CliError::Usage(
                "--strategy hyperband with the train evaluator needs --epochs 2 or more (its \
                 ladder runs from 1 epoch to --epochs), or hyperband:fidelities=[...]"
                    .into(),
            ));
        }
        c.fidelities = vec![1, args.epochs];
    }
    if let StrategyKind::Rea(c) = &mut kind
        && !args.strategy.contains(':')
    {
        // Same population as the builder's default search, so that a 16-evaluation search
        // still evolves (the library default population of 100 would only sample).
        *c = ReaConfig {
            population_size: 8,
            sample_size: 3,
            fidelity: c.fidelity,
        };
    }
    Ok(kind)
}

/// Upper bound of the training epochs the search will run (for the epochs bar).
fn epoch_budget(strategy: &StrategyKind, args: &SearchArgs) -> u64 {
    let per = match strategy {
        StrategyKind::Hyperband(c) => c.fidelities.iter().copied().max().unwrap_or(args.epochs),
        _ => args.epochs,
    };
    args.evaluations.saturating_mul(u64::from(per))
}

/// The output directory of a search, locked for this process (see `nas_search::outdir`).
/// A directory this run created is removed again when the run ends before its search started
/// writing (a refused or failed start leaves nothing behind).
pub(crate) struct OutDir {
    pub path: PathBuf,
    lock: Option<DirLock>,
    created: bool,
    pub started: Cell<bool>,
}

impl Drop for OutDir {
    fn drop(&mut self) {
        if self.created && !self.started.get() {
            let _ = fs::remove_file(self.path.join(LOCK_FILE));
            self.lock.take();
            let _ = fs::remove_dir(&self.path);
        }
    }
}

/// Creates (if needed) and locks the output directory, then checks, under the lock, that it
/// holds a search to continue (`--resume`) or none (a new search). Nothing else is written.
fn output_dir(args: &SearchArgs, checkpoint_file: &str) -> Result<OutDir> {
    let (dir, created) = match &args.out {
        Some(d) => {
            if args.resume && !d.join(checkpoint_file).exists() {
                return Err(CliError::Usage(format!(
                    "--resume: {} holds no search to continue (no {})",
                    d.display(),
                    d.join(checkpoint_file).display()
                )));
            }
            let created = !d.exists();
            fs::create_dir_all(d).map_err(|source| CliError::Io {
                path: d.clone(),
                source,
            })?;
            (d.clone(), created)
        }
        None if args.resume => {
            return Err(CliError::Usage(
                "--resume needs --out DIR (the directory of the search to continue)".into(),
            ));
        }
        None => (
            create_unique_dir(Path::new("runs"), &format!("search-{}", timestamp()))?,
            true,
        ),
    };
    let mut outdir = OutDir {
        path: dir,
        lock: None,
        created,
        started: Cell::new(false),
    };
    outdir.lock = Some(DirLock::acquire(&outdir.path)?);
    let checkpoint = outdir.path.join(checkpoint_file);
    if args.resume && !checkpoint.exists() {
        return Err(CliError::Usage(format!(
            "--resume: {} holds no search to continue (no {})",
            outdir.path.display(),
            checkpoint.display()
        )));
    }
    if !args.resume && checkpoint.exists() {
        return Err(CliError::Usage(format!(
            "{} already holds a search ({}); pass --resume to continue it, or choose another --out",
            outdir.path.display(),
            checkpoint.display()
        )));
    }
    Ok(outdir)
}

/// `YYYYmmdd-HHMMSS` (UTC) of now.
fn timestamp() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The train-from-scratch evaluator of `nas_search::train::TrainEvaluator`, reporting each
/// finished epoch to a progress bar. Its name is the library evaluator's, so checkpoints of the
/// two are interchangeable.
struct ObservedTrain<F> {
    inner: TrainEvaluator<F>,
    epochs_bar: ProgressBar,
}

impl<F> ObservedTrain<F> {
    fn new(
        family: F,
        splits: Arc<Splits>,
        recipe: TrainRecipe,
        epochs_bar: ProgressBar,
    ) -> Result<Self> {
        let inner = TrainEvaluator::new(family, splits, recipe)?;
        Ok(ObservedTrain { inner, epochs_bar })
    }
}

impl<A, F: NetworkFamily<A>> Evaluator<A> for ObservedTrain<F>
where
    TrainEvaluator<F>: Evaluator<A>,
{
    fn name(&self) -> String {
        self.inner.name()
    }

    fn evaluate(&self, request: &EvalRequest<'_, A>) -> std::result::Result<Metrics, EvalError> {
        let bar = &self.epochs_bar;
        let mut done = 0usize;
        let result = self
            .inner
            .evaluate_observed(request, &mut |s: &EpochStats| {
                done = s.epoch + 1;
                bar.inc(1);
                bar.set_message(format!(
                    "trial {} ep {} loss {:.3}",
                    request.trial_id, done, s.train_loss
                ));
            });
        if let Err(EvalError::Failed { .. }) = result {
            // The epochs this trial will not run still count as done for the bar.
            let epochs = request.fidelity as usize;
            bar.inc((epochs - done.min(epochs)) as u64);
        }
        result
    }
}

/// The builder's recorded search (`nas_search::builder::run_recorded`) with progress output: a
/// bar of trials (continuing from the trials an earlier session logged) and one line per trial.
#[allow(clippy::too_many_arguments)]
fn run_with<S, E>(
    space: &S,
    evaluator: &E,
    strategy: StrategyKind,
    fidelity: u32,
    args: &SearchArgs,
    outdir: &OutDir,
    header: &str,
    progress: &Progress,
    epochs_bar: Option<&ProgressBar>,
) -> Result<SearchReport>
where
    S: SearchSpace,
    S::Arch: Display,
    E: Evaluator<S::Arch>,
{
    let dir = outdir.path.as_path();
    let strategy = strategy.with_fidelity(fidelity);
    let config = SearchConfig {
        seed: args.seed,
        workers: args.workers,
        budget: Budget {
            max_evaluations: Some(args.evaluations),
            max_cost: None,
            max_wall_time_s: args.max_time,
        },
        checkpoint: Some(dir.join("checkpoint.json")),
        skip_equivalent: false,
        // `--resume --workers N` may add workers (see SearchConfig::more_workers_on_resume).
        more_workers_on_resume: args.resume,
    };
    // The header and the trials bar appear once the checks of run_recorded have passed.
    let trials_bar = OnceCell::new();
    let mut best_valid = f64::NEG_INFINITY;
    let report = run_recorded(
        space,
        &strategy,
        evaluator,
        &config,
        Some(dir),
        json!({ "resume": args.resume }),
        &mut |already| {
            outdir.started.set(true);
            if let Err(e) = write_settings(dir, args) {
                progress.line(&format!("nas: {e}"));
            }
            progress.line(header);
            if let Err(e) = crate::signals::install(dir) {
                progress.line(&format!("nas: cannot handle SIGINT/SIGTERM: {e}"));
            }
            let bar = trials_bar.get_or_init(|| progress.bar("trials", args.evaluations));
            bar.set_position(already.min(args.evaluations));
            if let Some(b) = epochs_bar {
                b.set_position(already.saturating_mul(u64::from(fidelity)));
            }
        },
        &mut |r| {
            let Some(trials_bar) = trials_bar.get() else {
                return;
            };
            trials_bar.inc(1);
            match &r.failure {
                None => {
                    let v = r.valid_accuracy.unwrap_or(f64::NAN);
                    if v > best_valid {
                        best_valid = v;
                    }
                    trials_bar.set_message(format!("best valid {best_valid:.2}%"));
                    progress.line(&format!(
                        "trial {:>3}  valid {:6.2}%  test {:6.2}%  {:>9} params  {:7.2}s  {}",
                        r.id,
                        v,
                        r.test_accuracy.unwrap_or(f64::NAN),
                        r.params.unwrap_or(0),
                        r.wall_time_s,
                        r.arch
                    ));
                }
                Some(f) => progress.line(&format!("trial {:>3}  FAILED ({f})  {}", r.id, r.arch)),
            }
        },
    );
    if let Some(b) = trials_bar.get() {
        b.finish_and_clear();
    }
    Ok(report?)
}

fn pct(x: Option<f64>) -> String {
    x.map_or("n/a".into(), |v| format!("{v:.2}%"))
}

fn print_report(report: &SearchReport, dir: &Path, out: &Out) -> Result<()> {
    let b = &report.best;
    let mut text = format!(
        "best architecture: {}  (trial {})\n  validation accuracy {:.2}%, test accuracy {}",
        b.arch,
        b.trial,
        b.valid_accuracy,
        pct(b.test_accuracy)
    );
    if let Some(p) = b.params {
        text += &format!(", {p} parameters");
    }
    if let Some(f) = b.flops {
        text += &format!(", {:.2} MFLOPs", f as f64 / 1e6);
    }
    text += &format!(
        "\nmedian test accuracy of the {} trials: {}",
        report.trials.len(),
        pct(report.median_test_accuracy)
    );
    if let (Some(t), Some(m)) = (b.test_accuracy, report.median_test_accuracy) {
        text += &format!(" (the search's pick: {:+.2} points)", t - m);
    }
    for id in &report.cut {
        text += &format!(
            "\ntrial {id} was cut by --max-time part-way: not recorded (--resume with a larger \
             --max-time runs it again)"
        );
    }
    text += &format!(
        "\n{} evaluations{}, {} failed, stopped: {:?}; this session {:.1} s\noutputs: {}/{{summary.json, best.txt, events.jsonl, progress.svg, progress_time.svg, params_accuracy.svg, checkpoint.json, checkpoint.journal}}\n",
        report.evaluations,
        if report.resumed { " (resumed)" } else { "" },
        report.failed,
        report.stop,
        report.wall_time_s,
        dir.display()
    );
    let mut value = serde_json::to_value(report).map_err(|e| CliError::Usage(e.to_string()))?;
    value["output_dir"] = json!(dir.display().to_string());
    out.result(&text, &value).map_err(CliError::Output)
}

/// `nas search --strategy darts|darts2|gdas`: a one-shot search (`nas_search::oneshot`) of
/// `--epochs` epochs over a supernet of the space, on the training part of `--data`.
fn oneshot(method: Method, args: &SearchArgs, device: Device, out: &Out) -> Result<()> {
    if args.evaluator != EvaluatorName::Train {
        return Err(CliError::Usage(format!(
            "--strategy {}: one-shot strategies train a supernet; --evaluator nb201-table does not apply",
            method.name()
        )));
    }
    if args.strategy.contains(':') {
        return Err(CliError::Usage(format!(
            "--strategy {}: one-shot strategies take no :key=value settings; use --epochs, \
             --channels, --cells, --batch-size, --lr, --limit-train",
            method.name()
        )));
    }
    if args.epochs == 0 {
        return Err(CliError::Usage("--epochs must be at least 1".into()));
    }
    let space = match args.space {
        SearchSpaceName::Nb201 => SpaceKind::Nb201,
        SearchSpaceName::Darts => SpaceKind::Darts,
        other => {
            return Err(CliError::Usage(format!(
                "--strategy {}: one-shot supernets exist for --space nb201 and darts, not {other:?}",
                method.name()
            )));
        }
    };
    let mut config = OneShotConfig::new(method, space);
    config.device = device;
    config.epochs = args.epochs as usize;
    config.seed = args.seed;
    config.c = args.channels.unwrap_or(8);
    if let Some(cells) = args.cells {
        config.layers = cells;
    } else if space == SpaceKind::Nb201 {
        config.layers = 1;
    } else {
        config.layers = 5;
    }
    if let Some(b) = args.batch_size {
        config.batch_size = b;
    }
    if let Some(lr) = args.lr {
        config.w_lr = lr;
    }
    let splits = args.data.load().and_then(|s| s.prepare(0.0, args.seed))?;
    let train = match args.limit_train {
        0 => splits.train,
        n if n < splits.train.len() => {
            let idx: Vec<usize> = (0..n).collect();
            splits.train.subset(&idx)?
        }
        _ => splits.train,
    };
    config.checkpoint_every = ONESHOT_CHECKPOINT_EVERY;
    // a supernet that cannot fit is refused before anything is built or written
    crate::limits::check_memory(
        NetSize::Supernet {
            darts: space == SpaceKind::Darts,
            channels: config.c,
            cells: config.layers,
        },
        &train,
        None,
        config.batch_size,
        1,
        args.max_memory,
        "this one-shot search's supernet",
    )?;
    let outdir = output_dir(args, CHECKPOINT_FILE)?;
    outdir.started.set(true);
    let dir = outdir.path.clone();
    // Check, then write: a checkpoint this search cannot continue (other settings, corrupt) is
    // refused before the settings, the header or anything else is written.
    let ck = dir.join(CHECKPOINT_FILE);
    if args.resume && ck.exists() {
        drop(OneShotSearch::load_checkpoint(&ck, &config, &train)?);
    }
    write_settings(&dir, args)?;
    if let Err(e) = crate::signals::install(&dir) {
        eprintln!("nas: cannot handle SIGINT/SIGTERM: {e}");
    }
    let progress = Progress::new(Mode::for_output(out));
    progress.line(&format!(
        "{} on the {} supernet (C={}, {} cells): {} epoch(s) on {} images of {} (half trains the \
         weights, half the architecture); outputs in {}",
        method.name(),
        space.name(),
        config.c,
        config.layers,
        config.epochs,
        train.len(),
        args.data,
        dir.display()
    ));
    let start = Instant::now();
    let bar = progress.bar("steps", 0);
    let epochs = config.epochs as u64;
    let outcome = run_oneshot_observed(&config, &train, &dir, args.resume, &mut |e| match e {
        Event::Step {
            epoch,
            step,
            steps_per_epoch,
        } => {
            let spe = *steps_per_epoch as u64;
            bar.set_length(epochs * spe);
            bar.set_position(*epoch as u64 * spe + *step as u64);
        }
        Event::Epoch(r) => {
            let line = format!(
                "epoch {:>3}  train loss {:.4} acc {:5.1}%  arch-half acc {}  {}",
                r.epoch + 1,
                r.train_loss,
                r.train_acc * 100.0,
                r.valid_acc
                    .map_or("n/a".into(), |a| format!("{:5.1}%", a * 100.0)),
                r.genotype
            );
            bar.set_message(format!("epoch {} done", r.epoch + 1));
            progress.line(&line);
        }
    });
    bar.finish_and_clear();
    let outcome = outcome?;
    let last = outcome.history.last();
    let mut text = format!(
        "derived architecture ({} on {}): {}",
        method.name(),
        space.name(),
        outcome.genotype
    );
    if let Some(r) = last {
        if let Some(a) = r.valid_acc {
            text += &format!(
                "\n  supernet accuracy on the architecture half after {} epoch(s): {:.2}%",
                r.epoch + 1,
                a * 100.0
            );
        }
        if let Some(t) = r.nb201_cifar10_test {
            text += &format!(
                "\n  NAS-Bench-201 table: this cell's 200-epoch CIFAR-10 test accuracy is {t:.2}%"
            );
        }
    }
    text += &format!(
        "\n{} step(s) this session{} in {:.1} s\noutputs: {}/{{genotype.txt, result.json, history.json, alphas.svg, epochs/, checkpoint.bin}}\ntrain it: nas train \"$(cat {}/genotype.txt)\" --space {}\n",
        outcome.steps_run,
        if outcome.resumed_from_step.is_some() {
            " (resumed)"
        } else {
            ""
        },
        start.elapsed().as_secs_f64(),
        dir.display(),
        dir.display(),
        space.name()
    );
    let value = json!({
        "method": method.name(),
        "space": space.name(),
        "genotype": outcome.genotype.to_string(),
        "history": outcome.history,
        "resumed_from_step": outcome.resumed_from_step,
        "steps_run": outcome.steps_run,
        "wall_time_s": start.elapsed().as_secs_f64(),
        "output_dir": dir.display().to_string(),
    });
    out.result(&text, &value).map_err(CliError::Output)
}
