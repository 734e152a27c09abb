//! One module per subcommand, and the `--device` flag several share.

pub mod bench;
pub mod data;
pub mod export;
pub mod search;
pub mod space;
pub mod train;

use crate::error::{CliError, Result};
use nas_kernels::Device;

/// Parses `--device`: `cpu` is accepted; `cuda[:N]` is refused with a clear message, since this
/// build has no CUDA backend to run on; anything else is a usage error.
pub fn check_device(text: &str) -> Result<Device> {
    let device: Device = text
        .parse()
        .map_err(|e| CliError::Usage(format!("--device: {e}")))?;
    match device {
        // `test` is not parsed from text, so only `cpu` gets here
        Device::Cpu | Device::Test => Ok(device),
        Device::Cuda(_) => Err(CliError::Unsupported(format!(
            "--device {device}: CUDA support is not built into this `nas` (no CUDA backend is \
             available yet); use --device cpu"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_accepted_cuda_refused_garbage_usage() {
        assert_eq!(check_device("cpu").unwrap(), Device::Cpu);
        let e = check_device("cuda:0").unwrap_err();
        assert!(e.to_string().contains("use --device cpu"), "{e}");
        assert_eq!(e.exit_code(), 1);
        assert_eq!(check_device("tpu").unwrap_err().exit_code(), 2);
    }
}
