//! The crate's error type.

/// Errors returned by kernels and backends: bad shapes, bad parameters, unknown devices.
///
/// Kernels validate every buffer length against the shape they were given and return one of
/// these rather than panicking or reading out of bounds.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum KernelError {
    /// A buffer's length does not match the length its shape implies.
    #[error("{op}: `{what}` has {got} elements, expected {expected}")]
    LengthMismatch {
        /// The operation that checked the buffer (e.g. `"conv2d"`).
        op: &'static str,
        /// Which argument (e.g. `"weight"`).
        what: &'static str,
        /// The length the shape implies.
        expected: usize,
        /// The length that was passed.
        got: usize,
    },
    /// Two shapes cannot be broadcast together (numpy rules), or one cannot be summed to another.
    #[error("{op}: shapes {a:?} and {b:?} are not broadcast-compatible")]
    Broadcast {
        /// The operation.
        op: &'static str,
        /// First shape.
        a: Vec<usize>,
        /// Second shape.
        b: Vec<usize>,
    },
    /// A parameter is out of range or inconsistent (zero stride, channels not divisible by
    /// groups, axis out of range, label out of range, ...).
    #[error("{op}: {msg}")]
    InvalidParam {
        /// The operation.
        op: &'static str,
        /// What is wrong, naming the parameter.
        msg: String,
    },
    /// The device could not allocate a buffer of this size.
    #[error("out of memory: a buffer of {floats} floats ({bytes} bytes) could not be allocated")]
    OutOfMemory {
        /// Elements asked for.
        floats: usize,
        /// Bytes asked for (saturating).
        bytes: usize,
    },
    /// A device string could not be parsed.
    #[error("unknown device `{0}`: expected `cpu`, `cuda` or `cuda:N`")]
    UnknownDevice(String),
    /// The device exists as a name but cannot be used in this build or on this machine.
    #[error("device `{device}` is unavailable: {reason}")]
    DeviceUnavailable {
        /// The device asked for.
        device: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// The CUDA driver, NVRTC or a kernel reported an error (launch failures name the kernel;
    /// errors raised while kernels ran surface at the next synchronisation and name the
    /// kernels launched since the previous one).
    #[error("CUDA: {kernel}: {msg}")]
    Cuda {
        /// The kernel, or the kernels, or the driver call involved.
        kernel: String,
        /// What the driver or NVRTC said.
        msg: String,
    },
}

/// `Result` with [`KernelError`].
pub type Result<T> = std::result::Result<T, KernelError>;

impl KernelError {
    /// Shorthand for [`KernelError::InvalidParam`].
    pub fn param(op: &'static str, msg: impl Into<String>) -> Self {
        KernelError::InvalidParam {
            op,
            msg: msg.into(),
        }
    }
}

/// Returns [`KernelError::LengthMismatch`] unless `got == expected`.
pub(crate) fn check_len(
    op: &'static str,
    what: &'static str,
    got: usize,
    expected: usize,
) -> Result<()> {
    if got == expected {
        Ok(())
    } else {
        Err(KernelError::LengthMismatch {
            op,
            what,
            expected,
            got,
        })
    }
}
