//! `nas eval`: one trial of a search, run on its own from its spec file (what every remote
//! executor runs on the nodes); `nas_search::executor::eval_spec_file` does the work.

use crate::error::{CliError, Result};
use crate::output::Out;
use clap::Args;
use nas_search::spaces::Registry;
use std::path::PathBuf;

/// Arguments of `nas eval`.
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  nas eval --spec runs/s1/trials/3/spec.json --out runs/s1/trials/3\n      \
    trains trial 3 of the search in runs/s1 as its search would and writes \
    runs/s1/trials/3/result.json"
)]
pub struct EvalArgs {
    /// The trial spec (written by `nas search --executor slurm|ray` into DIR/trials/ID/spec.json).
    #[arg(long)]
    pub spec: PathBuf,
    /// Directory for result.json (written atomically; created if needed).
    #[arg(long)]
    pub out: PathBuf,
}

/// Runs `nas eval`.
pub fn run(a: &EvalArgs, out: &Out) -> Result<()> {
    let r = nas_search::executor::eval_spec_file(&Registry::builtin(), &a.spec, &a.out)?;
    let value = serde_json::to_value(&r).map_err(|e| CliError::Usage(e.to_string()))?;
    out.result(&r.line(), &value).map_err(CliError::Output)
}
