//! The error type of the one-shot module.

use std::path::PathBuf;
use thiserror::Error;

/// What can go wrong in a one-shot search.
#[derive(Debug, Error)]
pub enum OneShotError {
    /// An invalid setting (size, hyper-parameter, space/strategy combination, weight matrix).
    #[error("one-shot: invalid setting: {0}")]
    Config(String),
    /// The data set does not fit the search (too few examples, wrong shape).
    #[error("one-shot: data: {0}")]
    Data(String),
    /// A tensor operation failed (shape mismatch inside the supernet, ...).
    #[error("one-shot: tensor: {0}")]
    Tensor(#[from] nas_tensor::TensorError),
    /// An error from the search space (an invalid derived genotype).
    #[error(transparent)]
    Space(#[from] nas_space::SpaceError),
    /// An error of the search crate (checkpoint envelope, plots).
    #[error(transparent)]
    Search(#[from] crate::error::SearchError),
    /// A data-set error.
    #[error(transparent)]
    DataSet(#[from] crate::data::DataError),
    /// A collective of a data-parallel run failed (a rank left, MPI error).
    #[error(transparent)]
    Comm(#[from] crate::dist::CommError),
    /// A checkpoint that cannot be used: corrupt, or written by a different search.
    #[error("one-shot checkpoint {path}: {problem}")]
    Checkpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// The loss became NaN or infinite.
    #[error("one-shot: non-finite {what} at epoch {epoch}, step {step}")]
    NonFinite {
        /// Which quantity.
        what: String,
        /// Epoch.
        epoch: usize,
        /// Step within the epoch.
        step: usize,
    },
    /// An I/O error with the file it concerns.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// Shorthand for results of the one-shot module.
pub type Result<T, E = OneShotError> = std::result::Result<T, E>;

impl OneShotError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        OneShotError::Io {
            path: path.into(),
            source,
        }
    }
}
