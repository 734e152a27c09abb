//! `nas`: the command-line tool of nas-rs, a thin layer over the libraries.
//!
//! Exit codes: 0 on success, 1 when the input is bad (a file, an architecture, a data set), 2 for a
//! malformed command line. Errors are one clear message on stderr, never a panic.

#![warn(missing_docs)]
mod cmd;
mod error;
mod output;
mod progress;
mod signals;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use error::CliError;
use nas_search::StrategyKind;
use nas_search::spaces::{Purpose, Registry};
use output::Out;
use std::collections::HashSet;
use std::process::ExitCode;

const EXAMPLES: &str = "\
Examples:
  nas search                      (the default: a real training search, about a minute on 2 cores)
  nas search --evaluator nb201-table --strategy reinforce -n 100
  nas train '|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|' --out w.safetensors
  nas bench kernels --threads 2
  nas bench search --runs 100
  nas space --space nb201 size
  nas space --space nb201 sample -n 3 --seed 7
  nas export --format dot '|nor_conv_3x3~0|+|none~0|skip_connect~1|+|none~0|none~1|skip_connect~2|'
  nas data info digits
  nas --json data info

Run `nas <COMMAND> --help` for the examples of each command.";

/// Neural architecture search from scratch: searches, training, benchmarks, search spaces,
/// architectures and data sets.
#[derive(Debug, Parser)]
#[command(name = "nas", version, after_help = EXAMPLES, propagate_version = true)]
struct Cli {
    /// Machine-readable output: one JSON document on stdout.
    #[arg(long, global = true)]
    json: bool,
    /// No notes on stderr (errors are still reported).
    #[arg(long, short, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Search architectures: train candidates from scratch, or look them up in NAS-Bench-201.
    Search(Box<cmd::search::SearchArgs>),
    /// Train one architecture from scratch, report its test accuracy, save its weights.
    Train(cmd::train::TrainArgs),
    /// Measure kernels (GEMM, conv) or search strategies on the NAS-Bench-201 table.
    Bench(cmd::bench::BenchArgs),
    /// Explore a search space: size, samples, canonical forms, neighbours, format conversion.
    Space(cmd::space::SpaceArgs),
    /// Write an architecture as JSON, NAS-Bench-201 string, DARTS genotype or Graphviz DOT.
    Export(cmd::export::ExportArgs),
    /// Inspect data sets (embedded, or MNIST / Fashion-MNIST / CIFAR / digits files).
    Data(cmd::data::DataArgs),
    /// Run one trial of a search from its spec file (what `--executor slurm` and `ray` run on nodes).
    Eval(cmd::eval::EvalArgs),
}

fn run(cli: &Cli, given: &HashSet<String>) -> error::Result<()> {
    let out = Out {
        json: cli.json,
        quiet: cli.quiet,
    };
    match &cli.command {
        Command::Search(a) => cmd::search::run(a, &out, given),
        Command::Train(a) => cmd::train::run(a, &out),
        Command::Bench(a) => cmd::bench::run(a, &out),
        Command::Space(a) => cmd::space::run(a, &out),
        Command::Export(a) => cmd::export::run(a, &out),
        Command::Data(a) => cmd::data::run(a, &out),
        Command::Eval(a) => cmd::eval::run(a, &out),
    }
}

/// The command line with the lists and defaults that live in the library (spaces, strategies,
/// evaluators, network sizes) written into `--help`.
fn command() -> clap::Command {
    let reg = Registry::builtin();
    let spaces = format!("Search space: {}", reg.names().join(", "));
    let strategy = format!(
        "Strategy, optionally with :key=value settings (e.g. rea:population_size=20): {}",
        StrategyKind::describe_all()
    );
    let evaluator = format!(
        "How candidates are evaluated: {}",
        reg.describe_evaluators()
    );
    let sizes = |p| {
        format!(
            "[default, channels/cells per space: {}]",
            reg.describe_shapes(p)
        )
    };
    let (search, train) = (sizes(Purpose::Search), sizes(Purpose::Train));
    let guess = format!("{spaces}; guessed from ARCH when not given");
    Cli::command()
        .mut_subcommand("search", |c| {
            c.mut_arg("space", |a| a.help(spaces))
                .mut_arg("strategy", |a| a.help(strategy))
                .mut_arg("evaluator", |a| a.help(evaluator))
                .mut_arg("channels", |a| a.help(format!("Channels C {search}")))
                .mut_arg("cells", |a| a.help(format!("Cells {search}")))
        })
        .mut_subcommand("train", |c| {
            c.mut_arg("space", |a| a.help(guess))
                .mut_arg("channels", |a| a.help(format!("Channels C {train}")))
                .mut_arg("cells", |a| a.help(format!("Cells {train}")))
        })
}

fn main() -> ExitCode {
    let matches = command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    // The search options given on the command line (a resume takes the others from the
    // search's settings.json).
    let given: HashSet<String> = matches
        .subcommand_matches("search")
        .map(|m| {
            m.ids()
                .filter(|id| m.value_source(id.as_str()) == Some(ValueSource::CommandLine))
                .map(|id| id.to_string())
                .collect()
        })
        .unwrap_or_default();
    match run(&cli, &given) {
        Ok(()) => ExitCode::SUCCESS,
        // Output cut short by a closed pipe (`nas ... | head`) is not an error.
        Err(CliError::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nas: error: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}
