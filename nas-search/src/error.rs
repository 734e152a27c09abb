//! The error type of nas-search.

use std::path::PathBuf;
use thiserror::Error;

/// Errors of the search crate: bad tables, bad checkpoints, failing evaluators, bad settings.
#[derive(Debug, Error)]
pub enum SearchError {
    /// A data file (for example the NAS-Bench-201 table) that cannot be read or parsed.
    #[error("{path}: line {line}: {problem}")]
    DataFile {
        /// The file (or `<embedded>` for the table built into the crate).
        path: String,
        /// 1-based line number (0 when the problem is not tied to a line).
        line: usize,
        /// What is wrong there.
        problem: String,
    },
    /// A checkpoint that cannot be used: corrupt, truncated, or written by another search.
    #[error("checkpoint {path}: {problem}")]
    Checkpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// An evaluator reported an error that ends the search (not a failed trial).
    #[error("evaluator failed fatally on trial {trial}: {reason}")]
    EvaluatorFatal {
        /// The trial being evaluated.
        trial: u64,
        /// Why.
        reason: String,
    },
    /// A strategy misbehaved (proposed an invalid architecture, lost track of its state, ...).
    #[error("strategy {strategy}: {problem}")]
    Strategy {
        /// The strategy's name.
        strategy: String,
        /// What went wrong.
        problem: String,
    },
    /// An invalid setting (budget, number of workers, hyper-parameter, name).
    #[error("invalid setting: {0}")]
    Config(String),
    /// A run refused because it would not fit in memory (see [`crate::memory`]).
    #[error("{0}")]
    TooLarge(String),
    /// A search that ended (time limit) before any trial finished: no result to report.
    #[error("{0}")]
    NoResult(String),
    /// An error from the search space.
    #[error(transparent)]
    Space(#[from] nas_space::SpaceError),
    /// An I/O error with the file it concerns.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// An output directory that another process is using (see [`crate::outdir::DirLock`]).
    #[error(
        "{dir} is in use by another search ({}); wait for it to end or choose another output directory",
        holder.map_or("pid unknown".to_string(), |p| format!("pid {p}"))
    )]
    Locked {
        /// The directory.
        dir: PathBuf,
        /// The process holding its lock, when it could be read.
        holder: Option<u32>,
    },
    /// An input or output file that is unusable as given (a `settings.json` that does not fit
    /// the command, an architecture file too large, an output path that cannot be written).
    #[error("{path}: {problem}")]
    Input {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// A setting no run can use (`--epochs 0`, an unknown space or strategy, an evaluator
    /// that cannot evaluate the space): the command line's usage errors. The message names
    /// the setting as `nas` spells it.
    #[error("{0}")]
    Setting(String),
    /// An architecture that does not parse or is not in its space.
    #[error("bad {space} architecture{json} {input}: {problem}")]
    Arch {
        /// The space's name.
        space: String,
        /// `" JSON"` when the input was JSON, else empty.
        json: &'static str,
        /// The input, quoted and shortened ([`quote`]).
        input: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A data set that cannot be loaded.
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    /// Training failed (diverged, bad settings).
    #[error("training failed: {0}")]
    Train(#[from] crate::train::TrainError),
    /// A one-shot search (DARTS, GDAS) that cannot start or continue.
    #[error(transparent)]
    OneShot(Box<crate::oneshot::OneShotError>),
    /// A (de)serialisation error outside checkpoints (JSON output, strategy state).
    #[error("serialisation: {0}")]
    Serde(String),
    /// A trial executor (Slurm, ...) that cannot run trials: a missing command, a refused
    /// submission, a scheduler that stopped answering. The message names the executor.
    #[error("{0}")]
    Executor(String),
}

impl From<crate::oneshot::OneShotError> for SearchError {
    fn from(e: crate::oneshot::OneShotError) -> Self {
        SearchError::OneShot(Box::new(e))
    }
}

/// Quotes `s` for an error message, cut to 120 characters.
pub fn quote(s: &str) -> String {
    let t = s.trim();
    if t.chars().count() > 120 {
        let cut: String = t.chars().take(117).collect();
        format!("{:?}", cut + "...")
    } else {
        format!("{t:?}")
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = SearchError> = std::result::Result<T, E>;

impl SearchError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        SearchError::Io {
            path: path.into(),
            source,
        }
    }
    pub(crate) fn strategy(name: &str, problem: impl Into<String>) -> Self {
        SearchError::Strategy {
            strategy: name.to_string(),
            problem: problem.into(),
        }
    }
}
