//! One module per subcommand, and the `--device` flag several share.

pub mod bench;
pub mod data;
pub mod export;
pub mod search;
pub mod space;
pub mod train;

use crate::error::{CliError, Result};
use nas_kernels::Device;

/// Parses `--device`: `cpu` is accepted; `cuda[:N]` is accepted when this `nas` was built
/// with the `cuda` feature and the device opens (driver loaded, device present), and refused
/// with a clear message otherwise (exit code 1); anything else is a usage error (exit code 2).
pub fn check_device(text: &str) -> Result<Device> {
    let device: Device = text
        .parse()
        .map_err(|e| CliError::Usage(format!("--device: {e}")))?;
    match device {
        // `test` and `cuda-emu` are not parsed from text, so only `cpu` gets here
        Device::Cpu | Device::Test | Device::CudaEmu => Ok(device),
        Device::Cuda(_) => open_cuda(device),
    }
}

#[cfg(feature = "cuda")]
fn open_cuda(device: Device) -> Result<Device> {
    nas_kernels::Cuda::new(device)
        .map(|_| device)
        .map_err(|e| CliError::Unsupported(format!("--device {device}: {e}")))
}

#[cfg(not(feature = "cuda"))]
fn open_cuda(device: Device) -> Result<Device> {
    Err(CliError::Unsupported(format!(
        "--device {device}: CUDA support is not built into this `nas` (build it with \
         `--features cuda`); use --device cpu"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_accepted_cuda_refused_garbage_usage() {
        assert_eq!(check_device("cpu").unwrap(), Device::Cpu);
        assert_eq!(check_device("tpu").unwrap_err().exit_code(), 2);
        // without the feature, or without a driver, CUDA is refused with exit code 1
        if cfg!(feature = "cuda") && nas_kernels_driver_present() {
            return;
        }
        let e = check_device("cuda:0").unwrap_err();
        assert!(e.to_string().contains("use --device cpu"), "{e}");
        assert_eq!(e.exit_code(), 1);
    }

    fn nas_kernels_driver_present() -> bool {
        #[cfg(feature = "cuda")]
        return nas_kernels::cuda::driver_present();
        #[cfg(not(feature = "cuda"))]
        false
    }
}
