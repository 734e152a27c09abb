//! The crate's error type.

use thiserror::Error;

/// Everything that can go wrong in nas-tensor. Messages name the op and the shapes involved.
#[derive(Debug, Error)]
pub enum TensorError {
    /// Operand shapes do not fit the op.
    #[error("{op}: shape mismatch: {detail}")]
    Shape {
        /// The op that rejected its operands.
        op: &'static str,
        /// What was expected and what was given.
        detail: String,
    },
    /// Operands live on different devices.
    #[error("{op}: device mismatch: {a} vs {b}")]
    DeviceMismatch {
        /// The op that rejected its operands.
        op: &'static str,
        /// Device of the first operand.
        a: String,
        /// Device of the other operand.
        b: String,
    },
    /// The requested device is not available in this build / on this machine.
    #[error("device {0} is not available (this build computes on the CPU; use --device cpu)")]
    DeviceUnavailable(String),
    /// `backward()` called on a tensor that is not a scalar.
    #[error("backward: the loss must be a scalar (one element), got shape {0:?}")]
    NonScalarBackward(Vec<usize>),
    /// An argument is out of its valid range (a probability, an index, a size...).
    #[error("{op}: invalid argument: {detail}")]
    InvalidArgument {
        /// The op that rejected the argument.
        op: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// Loading a parameter file failed: missing/unexpected names, wrong shapes or dtypes.
    #[error("load: {0}")]
    Load(String),
    /// Serialisation or deserialisation of an optimizer state failed.
    #[error("serialisation: {0}")]
    Serde(String),
    /// A collective operation across processes (a synchronised batch norm's reduction) failed.
    #[error("collective: {0}")]
    Collective(String),
    /// File system error.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// An error from a nas-kernels backend.
    #[error(transparent)]
    Kernel(#[from] nas_kernels::KernelError),
}

/// `Result` with [`TensorError`].
pub type Result<T> = std::result::Result<T, TensorError>;

pub(crate) fn shape_err<T>(op: &'static str, detail: impl Into<String>) -> Result<T> {
    Err(TensorError::Shape {
        op,
        detail: detail.into(),
    })
}

pub(crate) fn arg_err<T>(op: &'static str, detail: impl Into<String>) -> Result<T> {
    Err(TensorError::InvalidArgument {
        op,
        detail: detail.into(),
    })
}
