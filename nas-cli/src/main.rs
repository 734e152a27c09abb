//! `nas`: the command-line tool of nas-rs, a thin layer over the libraries.
//!
//! Exit codes: 0 on success, 1 when the input is bad (a file, an architecture, a data set), 2 for a
//! malformed command line. Errors are one clear message on stderr, never a panic.

mod cmd;
mod error;
mod output;
mod spaces;

use clap::{Parser, Subcommand};
use error::CliError;
use output::Out;
use std::process::ExitCode;

const EXAMPLES: &str = "\
Examples:
  nas space --space nb201 size
  nas space --space nb201 sample -n 3 --seed 7
  nas export --format dot '|nor_conv_3x3~0|+|none~0|skip_connect~1|+|none~0|none~1|skip_connect~2|'
  nas data info digits
  nas --json data info

Run `nas <COMMAND> --help` for the examples of each command.";

/// Neural architecture search from scratch: search spaces, architectures and data sets.
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
    /// Explore a search space: size, samples, canonical forms, neighbours, format conversion.
    Space(cmd::space::SpaceArgs),
    /// Write an architecture as JSON, NAS-Bench-201 string, DARTS genotype or Graphviz DOT.
    Export(cmd::export::ExportArgs),
    /// Inspect data sets (embedded, or MNIST / Fashion-MNIST / CIFAR / digits files).
    Data(cmd::data::DataArgs),
}

fn run(cli: &Cli) -> error::Result<()> {
    let out = Out {
        json: cli.json,
        quiet: cli.quiet,
    };
    match &cli.command {
        Command::Space(a) => cmd::space::run(a, &out),
        Command::Export(a) => cmd::export::run(a, &out),
        Command::Data(a) => cmd::data::run(a, &out),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        // Output cut short by a closed pipe (`nas ... | head`) is not an error.
        Err(CliError::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nas: error: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}
