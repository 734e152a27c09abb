//! One module per subcommand, and the `--device` flag several share.

pub mod bench;
pub mod data;
pub mod eval;
pub mod export;
pub mod search;
pub mod space;
pub mod train;

use crate::error::{CliError, Result};
use nas_kernels::Device;

/// Parses `--device` and checks it can be used ([`Device::open`]): a string that names no
/// device is a usage error (exit code 2); `cuda[:N]` without CUDA built in, without a driver or
/// without that device is refused with the reason (exit code 1).
pub fn check_device(text: &str) -> Result<Device> {
    let device: Device = text
        .parse()
        .map_err(|e| CliError::Usage(format!("--device: {e}")))?;
    device
        .open()
        .map_err(|e| CliError::Unsupported(format!("--device {device}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_accepted_garbage_usage() {
        assert_eq!(check_device("cpu").unwrap(), Device::Cpu);
        assert_eq!(check_device("tpu").unwrap_err().exit_code(), 2);
    }
}
