//! `nas export`: an architecture to JSON, its space's text form (NAS-Bench-201 string, DARTS
//! genotype), or a Graphviz DOT drawing.

use crate::error::{CliError, Result};
use crate::output::Out;
use clap::{Args, ValueEnum};
use nas_search::spaces::read_arch;
use nas_search::spaces::{AnyArch, Registry, Space};
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
    fn as_str(self) -> String {
        self.to_possible_value()
            .map_or(String::new(), |v| v.get_name().to_string())
    }
}

/// Arguments of `nas export`.
#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub struct ExportArgs {
    /// The architecture: text form, JSON, @FILE, or - for stdin.
    pub arch: String,
    /// Its search space (guessed when not given).
    #[arg(long, short)]
    pub space: Option<String>,
    /// Output format.
    #[arg(long, short, value_enum, default_value = "json")]
    pub format: ExportFormat,
    /// Write to this file instead of stdout.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

/// Runs `nas export`.
pub fn run(args: &ExportArgs, out: &Out) -> Result<()> {
    let text = read_arch(&args.arch)?;
    let registry = Registry::builtin();
    let (space, arch) = registry.resolve(args.space.as_deref(), &text)?;
    let content = render(space, &arch, args.format)?;
    if let Some(path) = &args.output {
        std::fs::write(path, &content).map_err(|source| CliError::Io {
            path: path.clone(),
            source,
        })?;
        out.note(&format!("wrote {}", path.display()));
        let value = json!({"space": space.name(), "format": args.format.as_str(), "output": path});
        if out.json {
            out.result("", &value).map_err(CliError::Output)?;
        }
        return Ok(());
    }
    let value = json!({"space": space.name(), "format": args.format.as_str(), "content": content});
    out.result(&content, &value).map_err(CliError::Output)
}

fn render(space: &dyn Space, arch: &AnyArch, format: ExportFormat) -> Result<String> {
    Ok(match format {
        ExportFormat::Json => {
            let mut s = serde_json::to_string_pretty(&space.to_json(arch)?)
                .map_err(|e| CliError::Unsupported(format!("cannot write JSON: {e}")))?;
            s.push('\n');
            s
        }
        ExportFormat::Text => space.to_text(arch)? + "\n",
        ExportFormat::Dot => space.dot(arch)?,
        ExportFormat::Nb201 | ExportFormat::Darts => {
            if space.native_format() != Some(format.as_str().as_str()) {
                return Err(CliError::Unsupported(format!(
                    "the {} format cannot hold a {} (space {}); use --format json, text or dot",
                    format.as_str(),
                    space.label(),
                    space.name()
                )));
            }
            space.to_text(arch)? + "\n"
        }
    })
}
