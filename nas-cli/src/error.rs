//! The CLI's error type: every failure becomes one clear line on stderr and an exit code.

use nas_search::SearchError;
use std::path::PathBuf;
use thiserror::Error;

/// Exit code for a failure caused by the input (bad file, bad architecture, ...).
pub const EXIT_FAILURE: i32 = 1;
/// Exit code for a malformed command line (also what clap uses).
pub const EXIT_USAGE: i32 = 2;

/// What can make a `nas` command fail.
#[derive(Debug, Error)]
pub enum CliError {
    /// A search, training run, architecture or data set that cannot be used (the library's
    /// errors; [`SearchError::Setting`] is a usage error).
    #[error(transparent)]
    Search(#[from] SearchError),
    /// A data set that cannot be loaded.
    #[error(transparent)]
    Data(#[from] nas_search::data::DataError),
    /// A kernel call failed.
    #[error(transparent)]
    Kernel(#[from] nas_kernels::KernelError),
    /// A file that cannot be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
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
            CliError::Usage(_) | CliError::Search(SearchError::Setting(_)) => EXIT_USAGE,
            _ => EXIT_FAILURE,
        }
    }
}

/// Result alias of the CLI.
pub type Result<T> = std::result::Result<T, CliError>;
