//! The error type of the data module.

use std::path::PathBuf;
use thiserror::Error;

/// What can go wrong while reading, checking or preparing a data set.
///
/// Every variant that concerns a file names it (`file`): a path, or `embedded:<name>` for the
/// data compiled into the library.
#[derive(Debug, Error)]
pub enum DataError {
    /// A path that does not exist.
    #[error("{path}: no such file or directory")]
    NotFound {
        /// The missing path.
        path: PathBuf,
    },
    /// An I/O error other than a missing file.
    #[error("{path}: {source}")]
    Io {
        /// The file being read.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A gzip stream that cannot be decompressed (corrupt or cut short).
    #[error("{file}: bad gzip data: {source}")]
    Gzip {
        /// The file.
        file: String,
        /// The decompression error.
        #[source]
        source: std::io::Error,
    },
    /// A file whose leading magic number is not the one its format requires.
    #[error("{file}: wrong magic number 0x{found:08x} (expected {expected})")]
    BadMagic {
        /// The file.
        file: String,
        /// The first four bytes, big-endian.
        found: u32,
        /// What was expected, in words.
        expected: String,
    },
    /// A file shorter than its header (or record size) says.
    #[error("{file}: truncated: expected {expected} bytes, found {actual}")]
    Truncated {
        /// The file.
        file: String,
        /// Bytes required.
        expected: usize,
        /// Bytes present.
        actual: usize,
    },
    /// A label outside `0..num_classes`.
    #[error(
        "{file}: label {label} of example {index} is out of range (the data set has {num_classes} classes)"
    )]
    LabelOutOfRange {
        /// The file.
        file: String,
        /// Index of the example in the file.
        index: usize,
        /// The offending label.
        label: usize,
        /// Number of classes.
        num_classes: usize,
    },
    /// An images file and a labels file with different numbers of examples.
    #[error("{images_file} holds {images} images but {labels_file} holds {labels} labels")]
    CountMismatch {
        /// The images file.
        images_file: String,
        /// Number of images.
        images: usize,
        /// The labels file.
        labels_file: String,
        /// Number of labels.
        labels: usize,
    },
    /// Any other malformed content (bad header, unequal CSV rows, values out of range, ...).
    #[error("{file}: {message}")]
    Format {
        /// The file.
        file: String,
        /// What is wrong, and where.
        message: String,
    },
    /// A directory that lacks a file the format needs.
    #[error("{dir}: no {what} file found (looked for {looked_for})")]
    MissingFile {
        /// The directory searched.
        dir: PathBuf,
        /// What was missing (e.g. "training images").
        what: String,
        /// The names that would have been accepted.
        looked_for: String,
    },
    /// A data-set specification that does not parse (`nas ... --data SPEC`).
    #[error("bad data set {spec:?}: {message}")]
    Spec {
        /// The specification as given.
        spec: String,
        /// What is wrong with it.
        message: String,
    },
    /// A bad argument to a data-set operation (batch size 0, validation fraction out of range, ...).
    #[error("{0}")]
    InvalidArgument(String),
}

/// Result alias of the data module.
pub type Result<T> = std::result::Result<T, DataError>;
