//! `nas search`: flags handed to `nas_search::builder::Search` (which owns every default,
//! check, output file and the one-shot dispatch), progress bars from its observer hooks, and
//! `settings.json`, the flags a `--resume` continues with.

use crate::cmd::check_device;
use crate::error::{CliError, Result};
use crate::output::Out;
use crate::progress::{Mode, Progress};
use clap::{Args, Parser as _};
use indicatif::ProgressBar;
use nas_search::builder::{self as b, Finished, Observer, Search, Started, TrialRecord};
use nas_search::data::DataSpec;
use nas_search::executor::{ExecutorSettings, ray::RaySettings, slurm::SlurmSettings};
use nas_search::memory::parse_size;
use nas_search::oneshot::Event;
use nas_search::outdir::{SETTINGS_FILE, resume_settings, write_settings};
use nas_search::spaces::NetSettings;
use nas_search::train::EpochStats;
use serde_json::json;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

const EXAMPLES: &str = "\
Examples:
  nas search
      the default: regularized evolution over NAS-Bench-201 cells, 16 candidates each trained
      from scratch (defaults of --epochs and --limit-train below) on the embedded Fashion-MNIST
      subset, 10% of its training images held out for validation, scored on its 1,000 test images
  nas search --evaluator nb201-table --strategy reinforce --evaluations 100 --seed 3
      a search on the NAS-Bench-201 table (sees 12-epoch validation accuracy, reports 200-epoch
      CIFAR-10 test accuracy): no training, seconds
  nas search --evaluator nb201-table --strategy rea --search-dataset cifar10 --report all
      the NAS-Bench-201 paper's protocol: search on CIFAR-10 validation accuracy, report the
      chosen cell's CIFAR-10, CIFAR-100 and ImageNet16-120 test accuracies
  nas search --strategy random --evaluations 8 --epochs 2 --limit-train 1000 --workers 2 --out runs/r1
  nas search --resume --out runs/r1 --evaluations 12
      continues runs/r1 with the settings saved in runs/r1/settings.json (a larger --evaluations
      or --max-time extends it; other options that differ are refused)
  nas search --data mnist:~/data/mnist --epochs 3 --limit-train 0
  nas search --space rnn --strategy local -n 8 --epochs 1 --limit-train 1000 --data text:book.txt
      recurrent cells as character language models (default data: the embedded Shakespeare;
      --limit-train counts sequences of 64 characters); the search sees 100 * 2^-bpc
  nas search --strategy 'evolution:population_size=20:sample_size=5' --evaluator nb201-table -n 200
  nas search --strategy hyperband --epochs 4      (successive halving from 1 to 4 epochs)
  nas search --hp 'lr=log:0.01..0.2,batch=32|64|128' -n 12 --epochs 1 --limit-train 1000
      hyperparameters searched jointly with the cell (any multi-trial strategy); each trial's
      values are recorded next to its architecture, the best ones printed as nas train flags
  nas search --evaluator nb201-table --strategy nsga2 --objectives acc,params --max-params 1e6 -n 100
      multi-objective: NSGA-II (or pareto: Archai-style Pareto evolution) for validation
      accuracy against parameters, never evaluating a cell over 1e6 parameters; prints the
      Pareto front, writes front.json and front.svg (dominated points grey)
  nas search --evaluator nb201-table --strategy nsga2 --objectives acc,latency --max-latency-ms 4 -n 100
      accuracy against CPU latency measured here (a per-op table, summed per network)
  nas search --strategy darts --epochs 2 --limit-train 1000 --out runs/d1
      one-shot: DARTS (darts, darts2 = second order), GDAS (gdas), PC-DARTS (pcdarts, K = 4
      partial channels; --channels a multiple of 4), beta-DARTS (beta-darts, logsumexp
      regulariser, lambda 0 -> 50), DARTS+ (darts-plus, stops at 2 skip connections in the
      DARTS normal cell or 3 parameter-free NB201 ops), or single-path weight
      sharing (spos: evolution, rsws: random search over the trained supernet) on a supernet
      of --space; writes genotype.txt, result.json, history.json, alphas.svg (spos/rsws:
      candidates.json), checkpoint.bin

Outputs (in --out, default runs/search-<date>-<time>): summary.json, best.txt (the best
architecture: nas train @DIR/best.txt), events.jsonl (one JSON object per line), progress.svg
and progress_time.svg (best-so-far accuracy vs evaluations and wall time),
params_accuracy.svg, checkpoint.json + checkpoint.journal (the state, saved after every
evaluation: an interrupted search loses nothing finished; rerun with --resume --out DIR to
continue). While a search runs, its directory is locked (.nas.lock): a second search there
is refused.";

/// Arguments of `nas search` (the spaces, strategies and evaluators, and the defaults of the
/// network sizes, are listed in `--help` from the library's registries).
#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub struct SearchArgs {
    /// Search space.
    #[arg(long, default_value = b::DEFAULT_SPACE)]
    pub space: String,
    /// Strategy.
    #[arg(long, default_value = b::DEFAULT_STRATEGY)]
    pub strategy: String,
    /// How candidates are evaluated.
    #[arg(long, default_value = b::DEFAULT_EVALUATOR)]
    pub evaluator: String,
    /// Data set to train on: fashion (embedded), digits, mnist:DIR, fashion:DIR,
    /// cifar10:DIR, cifar100:DIR, digits:FILE, idx:TRAIN_IMAGES,TRAIN_LABELS[,TEST_IMAGES,
    /// TEST_LABELS] (training files only: the last sixth is the test set); for recurrent
    /// cells: shakespeare (embedded), text:FILE [default: the embedded set of the space's kind]
    #[arg(long)]
    pub data: Option<DataSpec>,
    /// Data set of the NAS-Bench-201 table: cifar10, cifar100 or ImageNet16-120.
    #[arg(long, default_value = b::DEFAULT_TABLE_DATASET)]
    pub table_dataset: String,
    /// The NAS-Bench-201 data set whose validation accuracy the search sees (the same names;
    /// --table-dataset is the shorthand that also sets it: giving both with different values
    /// is refused) [default: --table-dataset].
    #[arg(long)]
    pub search_dataset: Option<String>,
    /// NAS-Bench-201 data sets whose 200-epoch test accuracy of the chosen cell is reported
    /// (in summary.json's best.reported_test): one, a comma-separated list, or all; the
    /// NAS-Bench-201 paper's protocol is --search-dataset cifar10 --report all [default:
    /// only the searched one's, as the test accuracy].
    #[arg(long)]
    pub report: Option<String>,
    /// The table fidelity, 12 or 200 epochs. The search always sees the 12-epoch validation
    /// accuracy (the table has no 200-epoch validation column; 200 only changes the cost
    /// charged); the reported test accuracy is always the 200-epoch one.
    #[arg(long, default_value_t = b::DEFAULT_TABLE_EPOCHS)]
    pub table_epochs: u32,
    /// Budget: number of evaluations.
    #[arg(long, short = 'n', default_value_t = b::DEFAULT_EVALUATIONS)]
    pub evaluations: u64,
    /// Also stop after this many seconds of wall time (summed over resumed sessions); a trial
    /// still training then is cut within a step and not recorded (--resume runs it again).
    #[arg(long)]
    pub max_time: Option<f64>,
    /// Training epochs per candidate (train evaluator; one-shot: epochs of the search).
    #[arg(long, default_value_t = b::DEFAULT_EPOCHS)]
    pub epochs: u32,
    /// Train each candidate on at most this many training images (0 = all).
    #[arg(long, default_value_t = b::DEFAULT_TRAIN_EXAMPLES)]
    pub limit_train: usize,
    /// Channels C of the trained networks.
    #[arg(long)]
    pub channels: Option<usize>,
    /// Cells of the trained networks (per stage, in all or per stack, as the space says).
    #[arg(long)]
    pub cells: Option<usize>,
    /// Learning rate (cosine-annealed) [default: the space's recipe].
    #[arg(long)]
    pub lr: Option<f32>,
    /// Training mini-batch size [default: the space's recipe].
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Hyperparameters searched with the architecture (train evaluator, multi-trial
    /// strategies): NAME=DOMAIN,... with names lr, batch, width (as --channels), depth (as
    /// --cells); domains log:A..B (8 log-spaced values), A..B (8 evenly spaced values; an
    /// integer range of at most 8: all of them) or a|b|c, e.g. lr=log:0.01..0.2,batch=32|64|128.
    /// Records show each trial's values; the best ones are printed as nas train flags.
    #[arg(long)]
    pub hp: Option<String>,
    /// PROXY:SAMPLES[:KEEP]: score SAMPLES random architectures with a zero-cost proxy
    /// (synflow on nb201; params, flops) and make the best KEEP (default 10) the strategy's
    /// first proposals, e.g. synflow:1000.
    #[arg(long)]
    pub prefilter: Option<String>,
    /// Objectives of a multi-objective search: acc,params, acc,flops or acc,latency
    /// (validation accuracy against the network's parameters, multiply-accumulates, or CPU
    /// inference latency measured here with nas-rs's kernels: a per-op latency table, batch 1,
    /// 1 thread, min of 20, summed per network and kept in DIR/latency_table.json; with
    /// nb201-table, the benchmark's C=16, N=5 network at the data set's input size). Sets the objectives of
    /// nsga2 and pareto (default acc,params); with any other strategy, the Pareto front of
    /// what it evaluated is reported. Writes front.json and front.svg.
    #[arg(long)]
    pub objectives: Option<String>,
    /// Hard limit on parameters (1e6, 250000, 1.5M): a candidate over it is never evaluated;
    /// the strategy is told it failed and asked for another.
    #[arg(long)]
    pub max_params: Option<String>,
    /// Hard limit on multiply-accumulates of one forward pass (2e8, 150M), as --max-params.
    #[arg(long)]
    pub max_flops: Option<String>,
    /// Hard limit on the network's measured CPU latency in milliseconds (2.5), as
    /// --max-params; latency as in --objectives acc,latency.
    #[arg(long)]
    pub max_latency_ms: Option<String>,
    /// Fraction of the training set held out for validation (what the search optimises).
    #[arg(long, default_value_t = b::DEFAULT_VALID_FRACTION)]
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
    /// Where trials run: local (this process), slurm (job arrays) or ray (a Ray job per trial,
    /// through the head's jobs API); for slurm and ray the output directory must be on a file
    /// system the nodes share (see docs/SCALING.md).
    #[arg(long, default_value = "local")]
    pub executor: String,
    /// Slurm partition of the trials' jobs [default: the cluster's].
    #[arg(long)]
    pub slurm_partition: Option<String>,
    /// Slurm time limit of each trial (sbatch --time) [default: the partition's].
    #[arg(long)]
    pub slurm_time: Option<String>,
    /// More sbatch arguments, separated by spaces (e.g. "--gres=gpu:1 --mem=8G").
    #[arg(long)]
    pub slurm_args: Option<String>,
    /// The Ray head's dashboard address, where its jobs API answers [default: $RAY_ADDRESS
    /// when it is an http:// address, else http://127.0.0.1:8265].
    #[arg(long)]
    pub ray_address: Option<String>,
    /// CPUs of each trial's Ray task (also its NAS_THREADS) [default: 1].
    #[arg(long)]
    pub ray_cpus: Option<f64>,
    /// GPUs of each trial's Ray task [default: 0].
    #[arg(long)]
    pub ray_gpus: Option<f64>,
    /// The Python on the Ray head that runs the trial driver (it must import ray)
    /// [default: python].
    #[arg(long)]
    pub ray_python: Option<String>,
    /// Data-parallel one-shot searches (started by mpirun -np N or srun --mpi=pmix; a build
    /// with the mpi feature): batch-norm statistics over the whole batch across the ranks
    /// (PyTorch's SyncBatchNorm) instead of each rank's shard (DDP's default).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value_t = false,
          action = clap::ArgAction::Set)]
    pub sync_bn: bool,
}

/// The settings of a search as option id -> command-line value (what `settings.json` holds).
fn settings_of(a: &SearchArgs) -> BTreeMap<String, String> {
    [
        ("space", Some(a.space.clone())),
        ("strategy", Some(a.strategy.clone())),
        ("evaluator", Some(a.evaluator.clone())),
        ("data", a.data.as_ref().map(|d| d.to_string())),
        ("table_dataset", Some(a.table_dataset.clone())),
        ("search_dataset", a.search_dataset.clone()),
        ("report", a.report.clone()),
        ("table_epochs", Some(a.table_epochs.to_string())),
        ("evaluations", Some(a.evaluations.to_string())),
        ("epochs", Some(a.epochs.to_string())),
        ("limit_train", Some(a.limit_train.to_string())),
        ("valid_fraction", Some(a.valid_fraction.to_string())),
        ("seed", Some(a.seed.to_string())),
        ("workers", Some(a.workers.to_string())),
        ("max_time", a.max_time.map(|v| v.to_string())),
        ("channels", a.channels.map(|v| v.to_string())),
        ("cells", a.cells.map(|v| v.to_string())),
        ("lr", a.lr.map(|v| v.to_string())),
        ("batch_size", a.batch_size.map(|v| v.to_string())),
        ("executor", Some(a.executor.clone())),
        ("slurm_partition", a.slurm_partition.clone()),
        ("slurm_time", a.slurm_time.clone()),
        ("slurm_args", a.slurm_args.clone()),
        ("ray_address", a.ray_address.clone()),
        ("ray_cpus", a.ray_cpus.map(|v| v.to_string())),
        ("ray_gpus", a.ray_gpus.map(|v| v.to_string())),
        ("ray_python", a.ray_python.clone()),
        ("prefilter", a.prefilter.clone()),
        ("hp", a.hp.clone()),
        ("objectives", a.objectives.clone()),
        ("max_params", a.max_params.clone()),
        ("max_flops", a.max_flops.clone()),
        ("max_latency_ms", a.max_latency_ms.clone()),
        ("sync_bn", a.sync_bn.then(|| "true".to_string())),
    ]
    .into_iter()
    .filter_map(|(k, v)| Some((k.to_string(), v?)))
    .collect()
}

/// `--resume --out DIR`: the options not given on the command line are taken from
/// `DIR/settings.json` (`nas_search::outdir::resume_settings`, which refuses given ones that
/// differ), by parsing the command line again with them added.
fn resume_args(args: &SearchArgs, given: &HashSet<String>) -> Result<Option<SearchArgs>> {
    let (true, Some(dir)) = (args.resume, &args.out) else {
        return Ok(None);
    };
    let Some(taken) = resume_settings(dir, &settings_of(args), given)? else {
        return Ok(None);
    };
    let extra = taken
        .into_iter()
        .flat_map(|(id, v)| [format!("--{}", id.replace('_', "-")), v]);
    let argv: Vec<String> = std::env::args().chain(extra).collect();
    match crate::Cli::try_parse_from(&argv) {
        Ok(crate::Cli {
            command: crate::Command::Search(a),
            ..
        }) => Ok(Some(*a)),
        Ok(_) => Ok(None),
        Err(e) => Err(CliError::Search(nas_search::SearchError::Input {
            path: dir.join(SETTINGS_FILE),
            problem: format!("its settings do not parse: {e}"),
        })),
    }
}

/// `--table-dataset` is the shorthand for `--search-dataset`: both given with different data
/// sets is a usage error naming both (the names are checked by the library).
fn check_search_dataset(a: &SearchArgs, given: &HashSet<String>) -> Result<()> {
    use nas_search::tabular::Dataset;
    let Some(s) = &a.search_dataset else {
        return Ok(());
    };
    let t = &a.table_dataset;
    let same = match (Dataset::parse(s), Dataset::parse(t)) {
        (Ok(x), Ok(y)) => x == y,
        _ => s.eq_ignore_ascii_case(t),
    };
    if given.contains("table_dataset") && !same {
        return Err(CliError::Usage(format!(
            "--search-dataset {s} and --table-dataset {t} disagree (--table-dataset is the \
             shorthand for --search-dataset; give one of them)"
        )));
    }
    Ok(())
}

/// Progress bars and lines drawn from the builder's observer hooks; `started` also writes
/// `settings.json` and installs the signal handlers.
struct Bars {
    progress: Progress,
    settings: BTreeMap<String, String>,
    trials: OnceLock<ProgressBar>,
    epochs: OnceLock<ProgressBar>,
    /// Epochs each running trial has reported (a failed trial's remaining ones are added to
    /// the bar when it ends).
    trial_epochs: Mutex<HashMap<u64, u64>>,
    best_valid: Mutex<f64>,
}

impl Observer for Bars {
    fn started(&self, s: &Started<'_>) {
        if let Some(dir) = s.dir {
            if let Err(e) = write_settings(dir, &self.settings) {
                self.progress.line(&format!("nas: {e}"));
            }
            self.progress.line(s.header);
            if let Err(e) = crate::signals::install(dir) {
                let e = format!("nas: cannot handle SIGINT/SIGTERM: {e}");
                self.progress.line(&e);
            }
        }
        let n = s.evaluations;
        let bar = self.trials.get_or_init(|| match n {
            0 => self.progress.bar("steps", 0),
            n => self.progress.bar("trials", n),
        });
        bar.set_position(s.already.min(n));
        if let Some(total) = s.epochs {
            let bar = self
                .epochs
                .get_or_init(|| self.progress.bar("epochs", total));
            bar.set_position(s.already.saturating_mul(total / n.max(1)));
        }
    }

    fn trial(&self, r: &TrialRecord) {
        let Some(bar) = self.trials.get() else { return };
        bar.inc(1);
        let seen = self
            .trial_epochs
            .lock()
            .map_or(0, |mut m| m.remove(&r.id).unwrap_or(0));
        if let Some(e) = self.epochs.get() {
            e.inc(u64::from(r.fidelity).saturating_sub(seen));
        }
        if let (Some(v), Ok(mut best)) = (r.valid_accuracy, self.best_valid.lock()) {
            *best = best.max(v);
            bar.set_message(format!("best valid {:.2}%", *best));
        }
        self.progress.line(&r.line());
    }

    fn epoch(&self, trial: u64, s: &EpochStats) {
        if let Ok(mut m) = self.trial_epochs.lock() {
            *m.entry(trial).or_default() += 1;
        }
        if let Some(bar) = self.epochs.get() {
            bar.inc(1);
            bar.set_message(format!(
                "trial {trial} ep {} loss {:.3}",
                s.epoch + 1,
                s.train_loss
            ));
        }
    }

    fn oneshot(&self, e: &Event<'_>) {
        let Some(bar) = self.trials.get() else { return };
        match e {
            Event::Step {
                epoch,
                step,
                steps_per_epoch,
            } => {
                let spe = *steps_per_epoch as u64;
                bar.set_length(self.settings["epochs"].parse::<u64>().unwrap_or(1) * spe);
                bar.set_position(*epoch as u64 * spe + *step as u64);
            }
            Event::Epoch(r) => {
                bar.set_message(format!("epoch {} done", r.epoch + 1));
                self.progress.line(&r.line());
            }
        }
    }
}

/// Runs `nas search`.
pub fn run(args: &SearchArgs, out: &Out, given: &HashSet<String>) -> Result<()> {
    // One of several MPI ranks? (MPI's world with the mpi feature; an error when a launcher
    // started several copies of a build without it.)
    let comm =
        nas_search::dist::from_environment().map_err(|e| CliError::Unsupported(e.to_string()))?;
    if comm.size() == 1 {
        return run_rank(args, out, given, None);
    }
    let rank = comm.rank();
    match run_rank(args, out, given, Some(comm.clone())) {
        // the result is printed once, by rank 0
        Ok(()) => Ok(()),
        Err(e) => {
            // the other ranks may be waiting in a collective this rank will never join: end
            // the whole run (MPI_Abort) after saying why
            eprintln!("nas: error (rank {rank} of {}): {e}", comm.size());
            comm.abort(e.exit_code());
            Err(e)
        }
    }
}

fn run_rank(
    args: &SearchArgs,
    out: &Out,
    given: &HashSet<String>,
    comm: Option<Arc<dyn nas_search::dist::Communicator>>,
) -> Result<()> {
    let rank = comm.as_ref().map_or(0, |c| c.rank());
    let merged = resume_args(args, given)?;
    let a = merged.as_ref().unwrap_or(args);
    check_search_dataset(a, given)?;
    let bars = Arc::new(Bars {
        progress: Progress::new(Mode::for_output(out)),
        settings: settings_of(a),
        trials: OnceLock::new(),
        epochs: OnceLock::new(),
        trial_epochs: Mutex::new(HashMap::new()),
        best_valid: Mutex::new(f64::NEG_INFINITY),
    });
    let mut search = Search::new()
        .space(&a.space)
        .strategy_spec(&a.strategy)
        .evaluator(&a.evaluator)
        .table_dataset(&a.table_dataset)
        .search_dataset(a.search_dataset.as_deref())
        .report(a.report.as_deref())
        .table_epochs(a.table_epochs)
        .evaluations(a.evaluations)
        .max_time(a.max_time)
        .epochs(a.epochs)
        .train_examples((a.limit_train > 0).then_some(a.limit_train))
        .net(NetSettings {
            channels: a.channels,
            cells: a.cells,
        })
        .lr(a.lr)
        .batch_size(a.batch_size)
        .prefilter(a.prefilter.as_deref())
        .hp(a.hp.as_deref())
        .objectives(a.objectives.as_deref())
        .max_params(a.max_params.as_deref())
        .max_flops(a.max_flops.as_deref())
        .max_latency_ms(a.max_latency_ms.as_deref())
        .valid_fraction(a.valid_fraction)
        .seed(a.seed)
        .workers(a.workers)
        .device(check_device(&a.device)?)
        .resume(Some(a.resume))
        .check_memory(a.max_memory)
        .executor(ExecutorSettings {
            kind: a.executor.clone(),
            program: None,
            slurm: SlurmSettings {
                partition: a.slurm_partition.clone(),
                time: a.slurm_time.clone(),
                args: a
                    .slurm_args
                    .iter()
                    .flat_map(|s| s.split_whitespace())
                    .map(String::from)
                    .collect(),
                ..SlurmSettings::default()
            },
            ray: {
                let d = RaySettings::default();
                RaySettings {
                    address: a.ray_address.clone(),
                    cpus: a.ray_cpus.unwrap_or(d.cpus),
                    gpus: a.ray_gpus.unwrap_or(d.gpus),
                    python: a.ray_python.clone().unwrap_or(d.python.clone()),
                    ..d
                }
            },
        })
        .sync_bn(a.sync_bn);
    // data-parallel: rank 0 alone reports progress and writes settings.json
    if rank == 0 {
        search = search.observer(bars.clone());
    }
    if let Some(c) = comm {
        search = search.communicator(c);
    }
    if let Some(d) = &a.data {
        search = search.data(d.clone());
    }
    search = match &a.out {
        Some(d) => search.output_dir(d),
        None => search.output_under("runs"),
    };
    let finished = search.run_any();
    for bar in [bars.trials.get(), bars.epochs.get()].into_iter().flatten() {
        bar.finish_and_clear();
    }
    let finished = finished?;
    if rank != 0 {
        return Ok(());
    }
    match finished {
        Finished::Search(report) => {
            let dir = report.output_dir.clone().unwrap_or_default();
            let mut value =
                serde_json::to_value(&report).map_err(|e| CliError::Usage(e.to_string()))?;
            value["output_dir"] = json!(dir.display().to_string());
            out.result(&report.summary(Some(Path::new(&dir))), &value)
        }
        Finished::OneShot(r) => {
            let value = serde_json::to_value(&r).map_err(|e| CliError::Usage(e.to_string()))?;
            out.result(&r.to_string(), &value)
        }
    }
    .map_err(CliError::Output)
}
