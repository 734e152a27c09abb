//! The error type of search-space operations: malformed text, invalid architectures, bad
//! encodings.

use thiserror::Error;

/// Errors of the search-space crate: malformed text, invalid architectures, bad encodings.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SpaceError {
    /// Text that does not parse: `position` is a byte offset into the input.
    #[error("parse error at byte {position}: {message} (in {input:?})")]
    Parse {
        /// Byte offset of the problem.
        position: usize,
        /// What is wrong there.
        message: String,
        /// The input (shortened if long).
        input: String,
    },
    /// A value that is well-formed but not an architecture of the space.
    #[error("invalid architecture: {0}")]
    Invalid(String),
    /// A bad categorical encoding.
    #[error("bad encoding: {0}")]
    Encoding(String),
}
