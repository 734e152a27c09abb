//! `nas export`: an architecture to JSON, its space's text form (NAS-Bench-201 string, DARTS
//! genotype), or a Graphviz DOT drawing.

use crate::error::{CliError, Result};
use crate::output::Out;
use crate::spaces::{CliSpace, SpaceName, arch_argument, parse_arch, resolve_space, with_space};
use clap::{Args, ValueEnum};
use serde_json::json;
use std::path::PathBuf;

const EXAMPLES: &str = "\
Examples:
  nas export '|nor_conv_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|avg_pool_3x3~0|none~1|nor_conv_3x3~2|'
  nas export --format dot -o cell.dot @cell.txt      (then: dot -Tsvg cell.dot > cell.svg)
  nas export --space nb201 --format nb201 @cell.json
  nas space sample --format json | nas export --format dot -
  nas export --format dot @genotype.txt     (a DARTS Genotype(normal=[...], ...) in a file)

The space is guessed from the architecture when --space is not given.";

/// Output formats of `nas export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// The architecture as JSON (the serde form that `nas` reads back).
    Json,
    /// The space's own text form.
    Text,
    /// The NAS-Bench-201 string `|op~0|+|op~0|op~1|+|op~0|op~1|op~2|` (nb201 only).
    Nb201,
    /// The DARTS `Genotype(normal=[...], ...)` text (darts only).
    Darts,
    /// A Graphviz DOT digraph of the cell.
    Dot,
}

impl ExportFormat {
    fn as_str(self) -> &'static str {
        match self {
            ExportFormat::Json => "json",
            ExportFormat::Text => "text",
            ExportFormat::Nb201 => "nb201",
            ExportFormat::Darts => "darts",
            ExportFormat::Dot => "dot",
        }
    }
}

/// Arguments of `nas export`.
#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub struct ExportArgs {
    /// The architecture: text form, JSON, @FILE, or - for stdin.
    pub arch: String,
    /// Its search space (guessed when not given).
    #[arg(long, short, value_enum)]
    pub space: Option<SpaceName>,
    /// Output format.
    #[arg(long, short, value_enum, default_value = "json")]
    pub format: ExportFormat,
    /// Write to this file instead of stdout.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

/// Runs `nas export`.
pub fn run(args: &ExportArgs, out: &Out) -> Result<()> {
    let text = arch_argument(&args.arch)?;
    let space = resolve_space(args.space, &text)?;
    let content = with_space!(space, |s| render(s, &text, args.format))?;
    if let Some(path) = &args.output {
        std::fs::write(path, &content).map_err(|source| CliError::Io {
            path: path.clone(),
            source,
        })?;
        out.note(&format!("wrote {}", path.display()));
        let value =
            json!({"space": space.as_str(), "format": args.format.as_str(), "output": path});
        if out.json {
            out.result("", &value).map_err(CliError::Output)?;
        }
        return Ok(());
    }
    let value =
        json!({"space": space.as_str(), "format": args.format.as_str(), "content": content});
    out.result(&content, &value).map_err(CliError::Output)
}

fn render<S: CliSpace>(space: &S, text: &str, format: ExportFormat) -> Result<String> {
    let arch = parse_arch(space, text)?;
    Ok(match format {
        ExportFormat::Json => {
            let mut s = serde_json::to_string_pretty(&arch)
                .map_err(|e| CliError::Unsupported(format!("cannot write JSON: {e}")))?;
            s.push('\n');
            s
        }
        ExportFormat::Text => space.to_text(&arch) + "\n",
        ExportFormat::Dot => space.dot(&arch),
        ExportFormat::Nb201 | ExportFormat::Darts => {
            if S::NATIVE_FORMAT == Some(format.as_str()) {
                space.to_text(&arch) + "\n"
            } else {
                return Err(CliError::Unsupported(format!(
                    "the {} format cannot hold a {} (space {}); use --format json, text or dot",
                    format.as_str(),
                    S::LABEL,
                    space.name()
                )));
            }
        }
    })
}
