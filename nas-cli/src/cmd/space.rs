//! `nas space`: size, sampling, canonical forms, neighbours, validation and format conversion in a
//! search space.

use crate::error::{CliError, Result};
use crate::output::Out;
use clap::{Args, Subcommand, ValueEnum};
use nas_search::spaces::read_arch;
use nas_search::spaces::{AnyArch, Registry, Space};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::json;
use std::io::Write;

const EXAMPLES: &str = "\
Examples:
  nas space --list
  nas space --space nb201 size
  nas space --space nb201 sample -n 5 --seed 42
  nas space --space nb201 canonical '|nor_conv_3x3~0|+|none~0|skip_connect~1|+|none~0|none~1|skip_connect~2|'
  nas space --space nb201 neighbours '|none~0|+|none~0|none~1|+|none~0|none~1|none~2|'
  nas space --space nb201 convert --to json '|avg_pool_3x3~0|+|none~0|none~1|+|none~0|none~1|skip_connect~2|'
  nas space --space nb201 convert --to text @cell.json
  nas --json space --space nb201 distance ARCH_A ARCH_B
  nas space --space darts size
  nas space --space darts sample -n 2 --seed 1 --format json
  nas space --space nb201 mutate -n 5 --seed 1 '|none~0|+|none~0|none~1|+|none~0|none~1|none~2|'
  nas space --space nb201 encode '|nor_conv_3x3~0|+|none~0|skip_connect~1|+|none~0|none~1|skip_connect~2|'
  nas space --space nb201 decode 3,0,1,0,0,1
  nas space --space chain neighbours 'conv3x3(32) -> sep_conv_5x5(64)'
  nas space --space nb101 canonical \"ModelSpec(matrix=[[0, 1], [0, 0]], ops=['input', 'output'])\"

An ARCH is the space's text form, its JSON form, @FILE (either form in a file) or - (stdin).";

/// Arguments of `nas space`.
#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub struct SpaceArgs {
    /// The search space (`--list` lists them).
    #[arg(long, short, default_value = nas_search::builder::DEFAULT_SPACE, global = true)]
    pub space: String,
    /// List the registered spaces, one per line with what it is, and exit.
    #[arg(long)]
    pub list: bool,
    /// What to do.
    #[command(subcommand)]
    pub action: Option<SpaceAction>,
}

/// How architectures are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ArchFormat {
    /// The space's own text form.
    Text,
    /// JSON (one document per line).
    Json,
}

/// The `nas space` actions.
#[derive(Debug, Subcommand)]
pub enum SpaceAction {
    /// Print the number of architectures (exact, where known) and the categorical decisions.
    Size,
    /// Draw architectures uniformly at random, reproducibly from a seed.
    Sample {
        /// How many.
        #[arg(short = 'n', long, default_value_t = 1)]
        n: usize,
        /// Seed of the random generator (ChaCha8).
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Output form of each architecture.
        #[arg(long, value_enum, default_value = "text")]
        format: ArchFormat,
    },
    /// Print the canonical form (equal for architectures the space considers equivalent).
    Canonical {
        /// The architecture.
        arch: String,
    },
    /// Print every architecture one step away, one per line.
    #[command(alias = "neighbors")]
    Neighbours {
        /// The architecture.
        arch: String,
        /// Output form of each architecture.
        #[arg(long, value_enum, default_value = "text")]
        format: ArchFormat,
    },
    /// Convert an architecture between the text form and JSON.
    Convert {
        /// The architecture (text or JSON).
        arch: String,
        /// The form to print.
        #[arg(long, value_enum)]
        to: ArchFormat,
    },
    /// Check that an architecture parses and belongs to the space (exit code 1 if not).
    Validate {
        /// The architecture.
        arch: String,
    },
    /// Print the number of single-step moves between two architectures.
    Distance {
        /// First architecture.
        a: String,
        /// Second architecture.
        b: String,
    },
    /// Apply N random one-step mutations in turn (a random walk), reproducibly from a seed.
    Mutate {
        /// The starting architecture.
        arch: String,
        /// Number of steps; each prints one architecture.
        #[arg(short = 'n', long, default_value_t = 1)]
        n: usize,
        /// Seed of the random generator (ChaCha8).
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Print the categorical decisions of an architecture (one choice index per decision), the
    /// form policy-based strategies use; `decode` turns them back.
    Encode {
        /// The architecture.
        arch: String,
    },
    /// Build the architecture for one choice index per decision (comma-separated).
    Decode {
        /// Choice indices, e.g. `3,0,1,4,2,2`.
        choices: String,
    },
}

/// Runs `nas space`.
pub fn run(args: &SpaceArgs, out: &Out) -> Result<()> {
    let registry = Registry::builtin();
    let action = match (&args.action, args.list) {
        (_, true) => {
            let list: Vec<_> = registry
                .spaces()
                .map(|s| json!({"name": s.name(), "about": s.about(), "size": s.size_json()}))
                .collect();
            let text = registry.describe_spaces();
            return out
                .result(&text, &json!({"spaces": list}))
                .map_err(CliError::Output);
        }
        (Some(a), false) => a,
        (None, false) => {
            return Err(CliError::Usage(
                "nas space needs an action (size, sample, ...) or --list".into(),
            ));
        }
    };
    run_in(registry.space(&args.space)?, action, out)
}

fn print_form(space: &dyn Space, arch: &AnyArch, format: ArchFormat) -> Result<String> {
    Ok(match format {
        ArchFormat::Text => space.to_text(arch)?,
        ArchFormat::Json => space.to_json(arch)?.to_string(),
    })
}

fn load(space: &dyn Space, arg: &str) -> Result<AnyArch> {
    Ok(space.parse(&read_arch(arg)?)?)
}

fn run_in(space: &dyn Space, action: &SpaceAction, out: &Out) -> Result<()> {
    let name = space.name();
    let (text, value) = match action {
        SpaceAction::Size => {
            let decisions = space.decisions();
            let text = match space.size() {
                Some(n) => n.to_string(),
                None => "unknown (no closed form)".to_string(),
            };
            out.note(&format!(
                "{name}: {} decisions with {:?} choices",
                decisions.len(),
                decisions
            ));
            let value = json!({"space": name, "size": space.size_json(), "decisions": decisions});
            (text, value)
        }
        SpaceAction::Sample { n, seed, format } => {
            let mut rng = ChaCha8Rng::seed_from_u64(*seed);
            if !out.json {
                // Stream: `-n` may be large.
                let stdout = std::io::stdout();
                let mut w = std::io::BufWriter::new(stdout.lock());
                for _ in 0..*n {
                    let a = space.sample(&mut rng);
                    writeln!(w, "{}", print_form(space, &a, *format)?).map_err(CliError::Output)?;
                }
                return w.flush().map_err(CliError::Output);
            }
            let values = (0..*n)
                .map(|_| space.both(&space.sample(&mut rng)))
                .collect::<nas_search::Result<Vec<_>>>()?;
            (
                String::new(),
                json!({"space": name, "seed": seed, "archs": values}),
            )
        }
        SpaceAction::Canonical { arch } => {
            let a = load(space, arch)?;
            let c = space.canonical(&a)?;
            let value = json!({"space": name, "text": space.to_text(&a)?, "canonical": c});
            (c, value)
        }
        SpaceAction::Neighbours { arch, format } => {
            let a = load(space, arch)?;
            let ns = space.neighbours(&a)?;
            let mut text = String::new();
            let mut values = Vec::with_capacity(ns.len());
            for x in &ns {
                text.push_str(&print_form(space, x, *format)?);
                text.push('\n');
                values.push(space.both(x)?);
            }
            out.note(&format!("{} neighbours", ns.len()));
            let value = json!({"space": name, "text": space.to_text(&a)?, "neighbours": values});
            (text, value)
        }
        SpaceAction::Convert { arch, to } => {
            let a = load(space, arch)?;
            let value =
                json!({"space": name, "text": space.to_text(&a)?, "arch": space.to_json(&a)?});
            let text = match to {
                ArchFormat::Text => space.to_text(&a)?,
                ArchFormat::Json => serde_json::to_string_pretty(&space.to_json(&a)?)
                    .map_err(|e| CliError::Unsupported(format!("cannot write JSON: {e}")))?,
            };
            (text, value)
        }
        SpaceAction::Validate { arch } => {
            let a = load(space, arch)?;
            let t = space.to_text(&a)?;
            let value = json!({"space": name, "valid": true, "text": t});
            (format!("valid {}: {t}", space.label()), value)
        }
        SpaceAction::Distance { a, b } => {
            let (x, y) = (load(space, a)?, load(space, b)?);
            let d = space.distance(&x, &y)?;
            let value = json!({"space": name, "a": space.to_text(&x)?, "b": space.to_text(&y)?, "distance": d});
            (d.to_string(), value)
        }
        SpaceAction::Mutate { arch, n, seed } => {
            // Streamed: each step is written as it is made (a walk of 10,000,000 steps never
            // sits in memory); with --json the document is written piece by piece.
            let mut a = load(space, arch)?;
            let mut rng = ChaCha8Rng::seed_from_u64(*seed);
            let stdout = std::io::stdout();
            let mut w = std::io::BufWriter::new(stdout.lock());
            let o = CliError::Output;
            if out.json {
                write!(w, "{{\"space\":{},\"seed\":{seed},\"walk\":[", json!(name)).map_err(o)?;
            }
            for i in 0..*n {
                a = space.mutate(&a, &mut rng)?;
                if out.json {
                    let sep = if i > 0 { "," } else { "" };
                    write!(w, "{sep}{}", space.both(&a)?).map_err(o)?;
                } else {
                    writeln!(w, "{}", space.to_text(&a)?).map_err(o)?;
                }
            }
            if out.json {
                writeln!(w, "]}}").map_err(o)?;
            }
            return w.flush().map_err(o);
        }
        SpaceAction::Encode { arch } => {
            let a = load(space, arch)?;
            let choices = space.encode(&a)?;
            let text = choices
                .iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(",");
            let value = json!({
                "space": name,
                "text": space.to_text(&a)?,
                "decisions": space.decisions(),
                "choices": choices,
            });
            (text, value)
        }
        SpaceAction::Decode { choices } => {
            let parsed: Vec<usize> = choices
                .split(',')
                .map(|c| {
                    c.trim().parse::<usize>().map_err(|_| {
                        CliError::Unsupported(format!(
                            "bad choice {c:?} in {choices:?}: expected comma-separated non-negative integers"
                        ))
                    })
                })
                .collect::<Result<_>>()?;
            let a = space.decode(&parsed)?;
            let value =
                json!({"space": name, "text": space.to_text(&a)?, "arch": space.to_json(&a)?});
            (space.to_text(&a)?, value)
        }
    };
    out.result(&text, &value).map_err(CliError::Output)
}
