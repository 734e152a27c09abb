//! One module per subcommand.

pub mod bench;
pub mod data;
pub mod device;
pub mod export;
pub mod search;
pub mod space;
pub mod train;

use crate::error::{CliError, Result};

/// Values of the training options that no run can use: usage errors (exit 2), like every
/// other malformed value on the command line, checked before anything is loaded or written.
pub(crate) fn check_training_values(
    lr: Option<f32>,
    batch_size: Option<usize>,
    channels: Option<usize>,
    cells: Option<usize>,
) -> Result<()> {
    if let Some(lr) = lr
        && !(lr.is_finite() && lr > 0.0)
    {
        return Err(CliError::Usage(format!(
            "--lr must be a positive number, got {lr}"
        )));
    }
    for (name, v) in [
        ("--batch-size", batch_size),
        ("--channels", channels),
        ("--cells", cells),
    ] {
        if v == Some(0) {
            return Err(CliError::Usage(format!("{name} must be at least 1")));
        }
    }
    Ok(())
}
