//! The search spaces the CLI knows, reading architectures from arguments, and what each space adds
//! on top of [`SearchSpace`] for the command line (Graphviz output, native formats).

use crate::error::{CliError, Result, quote};
use crate::limits::MAX_ARCH_BYTES;
use nas_space::SearchSpace;
use nas_space::chain::ChainSpace;
use nas_space::darts::{DartsCell, DartsSpace};
use nas_space::nb101::Nb101Space;
use nas_space::nb201::{EDGES, Nb201Op, Nb201Space};
use std::fmt::Write as _;
use std::io::Read as _;
use std::path::Path;

/// The spaces selectable with `--space`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SpaceName {
    /// NAS-Bench-201 cell: 6 edges, 5 ops each (15,625 cells).
    Nb201,
    /// DARTS genotype: a normal and a reduction cell of 4 nodes, 2 inputs each, 7 ops.
    Darts,
    /// NAS-Bench-101 style DAG: up to 7 vertices, 9 edges, 3 ops (423,624 graphs).
    Nb101,
    /// Chain (macro) space, CNN preset: 1..=6 layers of conv3x3/conv5x5/sep_conv_3x3/sep_conv_5x5,
    /// widths 16/32/64.
    Chain,
    /// Chain (macro) space, MLP preset: 1..=4 dense layers of width 16..256.
    ChainMlp,
}

impl SpaceName {
    /// Every space, in the order used when guessing which one an architecture belongs to.
    pub const ALL: &'static [SpaceName] = &[
        SpaceName::Nb201,
        SpaceName::Darts,
        SpaceName::Nb101,
        SpaceName::Chain,
        SpaceName::ChainMlp,
    ];

    /// The name as `--space` takes it.
    pub fn as_str(self) -> &'static str {
        match self {
            SpaceName::Nb201 => "nb201",
            SpaceName::Darts => "darts",
            SpaceName::Nb101 => "nb101",
            SpaceName::Chain => "chain",
            SpaceName::ChainMlp => "chain-mlp",
        }
    }
}

/// Runs `$body` with `$s` bound to a reference to the space named by `$name`.
macro_rules! with_space {
    ($name:expr, |$s:ident| $body:expr) => {
        match $name {
            $crate::spaces::SpaceName::Nb201 => {
                let $s = &nas_space::nb201::Nb201Space;
                $body
            }
            $crate::spaces::SpaceName::Darts => {
                let $s = &nas_space::darts::DartsSpace;
                $body
            }
            $crate::spaces::SpaceName::Nb101 => {
                let $s = &nas_space::nb101::Nb101Space;
                $body
            }
            $crate::spaces::SpaceName::Chain => {
                let $s = &nas_space::chain::ChainSpace::cnn();
                $body
            }
            $crate::spaces::SpaceName::ChainMlp => {
                let $s = &nas_space::chain::ChainSpace::mlp();
                $body
            }
        }
    };
}
pub(crate) use with_space;

/// What the CLI needs from a space beyond [`SearchSpace`].
pub trait CliSpace: SearchSpace {
    /// A human label of one architecture (`"NAS-Bench-201 cell"`).
    const LABEL: &'static str;

    /// The export format that is this space's own text form (`nas export --format`), if any.
    const NATIVE_FORMAT: Option<&'static str>;

    /// The cell (or network) as a Graphviz DOT digraph.
    fn dot(&self, arch: &Self::Arch) -> String;
}

impl CliSpace for Nb201Space {
    const LABEL: &'static str = "NAS-Bench-201 cell";
    const NATIVE_FORMAT: Option<&'static str> = Some("nb201");

    fn dot(&self, arch: &Self::Arch) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "// {}", self.to_text(arch));
        s.push_str("digraph nb201_cell {\n  rankdir=LR;\n  node [shape=circle];\n");
        s.push_str("  n0 [label=\"in\"];\n  n1 [label=\"1\"];\n  n2 [label=\"2\"];\n  n3 [label=\"out\"];\n");
        for (e, &(from, to)) in EDGES.iter().enumerate() {
            let op = arch.ops[e];
            if op == Nb201Op::None {
                // The zero op: no edge.
                continue;
            }
            let _ = writeln!(s, "  n{from} -> n{to} [label=\"{}\"];", op.as_str());
        }
        s.push_str("}\n");
        s
    }
}

impl CliSpace for DartsSpace {
    const LABEL: &'static str = "DARTS genotype";
    const NATIVE_FORMAT: Option<&'static str> = Some("darts");

    fn dot(&self, arch: &Self::Arch) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "// {}", self.to_text(arch));
        s.push_str("digraph darts_genotype {\n  rankdir=LR;\n  node [shape=circle];\n");
        darts_cell_dot(&mut s, "normal", &arch.normal);
        darts_cell_dot(&mut s, "reduce", &arch.reduce);
        s.push_str("}\n");
        s
    }
}

impl CliSpace for Nb101Space {
    const LABEL: &'static str = "NAS-Bench-101 graph";
    const NATIVE_FORMAT: Option<&'static str> = None;

    fn dot(&self, arch: &Self::Arch) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "// {}", self.to_text(arch));
        s.push_str("digraph nb101_cell {\n  rankdir=LR;\n  node [shape=box];\n");
        let n = arch.matrix.len();
        for v in 0..n {
            let label = if v == 0 {
                "input"
            } else if v + 1 == n {
                "output"
            } else {
                arch.ops.get(v - 1).map_or("?", |op| op.as_str())
            };
            let _ = writeln!(s, "  v{v} [label=\"{label}\"];");
        }
        for (i, row) in arch.matrix.iter().enumerate() {
            for (j, &edge) in row.iter().enumerate() {
                if edge {
                    let _ = writeln!(s, "  v{i} -> v{j};");
                }
            }
        }
        s.push_str("}\n");
        s
    }
}

impl CliSpace for ChainSpace {
    const LABEL: &'static str = "chain of layers";
    const NATIVE_FORMAT: Option<&'static str> = None;

    fn dot(&self, arch: &Self::Arch) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "// {}", self.to_text(arch));
        s.push_str(
            "digraph chain {\n  rankdir=LR;\n  node [shape=box];\n  input [label=\"input\"];\n",
        );
        for (i, layer) in arch.layers.iter().enumerate() {
            let _ = writeln!(s, "  l{i} [label=\"{}\"];", layer);
        }
        s.push_str("  output [label=\"output\"];\n");
        let mut prev = "input".to_string();
        for i in 0..arch.layers.len() {
            let _ = writeln!(s, "  {prev} -> l{i};");
            prev = format!("l{i}");
        }
        let _ = writeln!(s, "  {prev} -> output;");
        s.push_str("}\n");
        s
    }
}

/// One DARTS cell as a DOT cluster: inputs `c_{k-2}`, `c_{k-1}`, intermediate nodes 0..3 (the
/// original code's numbering), and the output `c_{k}` that concatenates them.
fn darts_cell_dot(s: &mut String, name: &str, cell: &DartsCell) {
    let _ = writeln!(
        s,
        "  subgraph cluster_{name} {{\n    label=\"{name} cell\";"
    );
    let _ = writeln!(s, "    {name}_in0 [label=\"c_{{k-2}}\", shape=box];");
    let _ = writeln!(s, "    {name}_in1 [label=\"c_{{k-1}}\", shape=box];");
    for k in 0..cell.nodes.len() {
        let _ = writeln!(s, "    {name}_n{k} [label=\"{k}\"];");
    }
    let _ = writeln!(s, "    {name}_out [label=\"c_{{k}}\", shape=box];");
    let node = |i: usize| match i {
        0 => format!("{name}_in0"),
        1 => format!("{name}_in1"),
        i => format!("{name}_n{}", i - 2),
    };
    for (k, edges) in cell.nodes.iter().enumerate() {
        for &(op, input) in edges {
            let _ = writeln!(
                s,
                "    {} -> {name}_n{k} [label=\"{}\"];",
                node(input),
                op.as_str()
            );
        }
    }
    for k in 0..cell.nodes.len() {
        let _ = writeln!(s, "    {name}_n{k} -> {name}_out;");
    }
    s.push_str("  }\n");
}

/// The text of an architecture argument: `@FILE` reads the file, `-` reads stdin, anything else
/// is the architecture itself. Returns the text, trimmed.
/// Files and stdin are read up to [`crate::limits::MAX_ARCH_BYTES`]; more is an error.
pub fn arch_argument(arg: &str) -> Result<String> {
    let read = |name: &str, r: &mut dyn std::io::Read| -> Result<String> {
        let io = |source| CliError::Io {
            path: name.into(),
            source,
        };
        let mut bytes = Vec::new();
        r.take(MAX_ARCH_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(io)?;
        if bytes.len() as u64 > MAX_ARCH_BYTES {
            return Err(CliError::Input {
                path: name.into(),
                problem: format!(
                    "more than {} MiB: not an architecture (the input is read up to that size)",
                    MAX_ARCH_BYTES >> 20
                ),
            });
        }
        String::from_utf8(bytes).map_err(|e| CliError::Input {
            path: name.into(),
            problem: format!(
                "not UTF-8 text (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            ),
        })
    };
    let text = if let Some(path) = arg.strip_prefix('@') {
        let mut f = std::fs::File::open(path).map_err(|source| CliError::Io {
            path: Path::new(path).to_path_buf(),
            source,
        })?;
        read(path, &mut f)?
    } else if arg == "-" {
        read("<stdin>", &mut std::io::stdin().lock())?
    } else {
        arg.to_string()
    };
    Ok(text.trim().to_string())
}

/// True when `text` looks like JSON (an object, array or string) rather than a space's text form.
pub fn looks_like_json(text: &str) -> bool {
    matches!(text.trim_start().chars().next(), Some('{' | '[' | '"'))
}

/// Parses an architecture of `space` from its text form or JSON, then validates it.
pub fn parse_arch<S: SearchSpace>(space: &S, text: &str) -> Result<S::Arch> {
    let arch = if looks_like_json(text) {
        serde_json::from_str::<S::Arch>(text).map_err(|e| CliError::ArchJson {
            space: space.name().to_string(),
            input: quote(text),
            message: e.to_string(),
        })?
    } else {
        space.parse(text).map_err(|source| CliError::Arch {
            space: space.name().to_string(),
            input: quote(text),
            source,
        })?
    };
    space.validate(&arch).map_err(|source| CliError::Arch {
        space: space.name().to_string(),
        input: quote(text),
        source,
    })?;
    Ok(arch)
}

/// The space an architecture belongs to: `given` if set, otherwise the first space (in
/// [`SpaceName::ALL`] order) that parses `text`; an error listing every space's complaint if none.
pub fn resolve_space(given: Option<SpaceName>, text: &str) -> Result<SpaceName> {
    if let Some(s) = given {
        return Ok(s);
    }
    let mut complaints = Vec::new();
    for &name in SpaceName::ALL {
        match with_space!(name, |s| parse_arch(s, text).map(|_| ())) {
            Ok(()) => return Ok(name),
            Err(e) => complaints.push(format!("  {}: {e}", name.as_str())),
        }
    }
    Err(CliError::Unsupported(format!(
        "{} is not an architecture of any known space (pass --space to choose one):\n{}",
        quote(text),
        complaints.join("\n")
    )))
}
