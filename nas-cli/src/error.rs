//! The CLI's error type: every failure becomes one clear line on stderr and an exit code.

use nas_search::data::DataError;
use nas_space::SpaceError;
use std::path::PathBuf;
use thiserror::Error;

/// Exit code for a failure caused by the input (bad file, bad architecture, ...).
pub const EXIT_FAILURE: i32 = 1;
/// Exit code for a malformed command line (also what clap uses).
pub const EXIT_USAGE: i32 = 2;

/// What can make a `nas` command fail.
#[derive(Debug, Error)]
pub enum CliError {
    /// A data set that cannot be loaded.
    #[error(transparent)]
    Data(#[from] DataError),
    /// A search that cannot start or continue (bad settings, a checkpoint of another search, ...).
    #[error(transparent)]
    Search(#[from] nas_search::SearchError),
    /// A one-shot search (DARTS, GDAS) that cannot start or continue.
    #[error(transparent)]
    OneShot(#[from] nas_search::oneshot::OneShotError),
    /// Training failed (diverged, bad settings).
    #[error("training failed: {0}")]
    Train(#[from] nas_search::train::TrainError),
    /// A tensor operation or file failed (saving weights, ...).
    #[error(transparent)]
    Tensor(#[from] nas_tensor::TensorError),
    /// A kernel call failed.
    #[error(transparent)]
    Kernel(#[from] nas_kernels::KernelError),
    /// An architecture that does not parse or is not in the space.
    #[error("bad {space} architecture {input}: {source}")]
    Arch {
        /// The space's name.
        space: String,
        /// The input, quoted and shortened.
        input: String,
        /// What the space says is wrong.
        #[source]
        source: SpaceError,
    },
    /// A JSON architecture that does not deserialise.
    #[error("bad {space} architecture JSON {input}: {message}")]
    ArchJson {
        /// The space's name.
        space: String,
        /// The input, quoted and shortened.
        input: String,
        /// serde_json's message.
        message: String,
    },
    /// A file that cannot be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// An input (file, stdin) that is unusable as given.
    #[error("{path}: {problem}")]
    Input {
        /// The file, or `<stdin>`.
        path: String,
        /// What is wrong with it.
        problem: String,
    },
    /// Writing the result to stdout failed (a closed pipe is not reported).
    #[error("cannot write the output: {0}")]
    Output(#[source] std::io::Error),
    /// Arguments that parse but do not make sense together.
    #[error("{0}")]
    Usage(String),
    /// A request the chosen space or format cannot honour.
    #[error("{0}")]
    Unsupported(String),
}

impl CliError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Usage(_) => EXIT_USAGE,
            _ => EXIT_FAILURE,
        }
    }
}

/// Result alias of the CLI.
pub type Result<T> = std::result::Result<T, CliError>;

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
