//! Run-time device choice.

use std::fmt;
use std::str::FromStr;

use crate::error::KernelError;

/// Where tensors live and kernels run, chosen at run time (`--device cpu`, `--device cuda:0`).
///
/// Parsing accepts `cpu`, `cuda` (meaning `cuda:0`) and `cuda:N`, case-insensitively, and
/// rejects anything else with [`KernelError::UnknownDevice`]. [`Display`](fmt::Display) prints
/// the canonical form (`cpu`, `cuda:0`), which parses back to the same value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Device {
    /// The host CPU (the [`Cpu`](crate::Cpu) backend).
    #[default]
    Cpu,
    /// A CUDA GPU by ordinal.
    Cuda(usize),
    /// The test-only [`TestBackend`](crate::TestBackend) (host memory behind opaque
    /// buffers, host transfers counted). Not parsed from strings: tests pick it in code.
    Test,
    /// The CUDA backend's kernels compiled as C++ and run on host threads (tests only: the
    /// `cuda-emu` feature; see `Cuda::emulated`). Not parsed from strings.
    CudaEmu,
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => write!(f, "cpu"),
            Device::Cuda(i) => write!(f, "cuda:{i}"),
            Device::Test => write!(f, "test"),
            Device::CudaEmu => write!(f, "cuda-emu"),
        }
    }
}

impl Device {
    /// Checks that the device can be used by this build on this machine, opening it if it is
    /// a GPU: the CPU and the test devices always can; `cuda:N` needs the `cuda` feature, a
    /// driver and the device, and is otherwise a [`KernelError::DeviceUnavailable`] saying
    /// which is missing (never a panic).
    pub fn open(self) -> Result<Device, KernelError> {
        match self {
            Device::Cpu | Device::Test | Device::CudaEmu => Ok(self),
            #[cfg(feature = "cuda")]
            Device::Cuda(_) => crate::Cuda::new(self).map(|_| self),
            #[cfg(not(feature = "cuda"))]
            Device::Cuda(_) => Err(KernelError::DeviceUnavailable {
                device: self.to_string(),
                reason: "CUDA support is not built in (build with `--features cuda`); use \
                         --device cpu"
                    .into(),
            }),
        }
    }
}

impl FromStr for Device {
    type Err = KernelError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim().to_ascii_lowercase();
        if t == "cpu" {
            return Ok(Device::Cpu);
        }
        if t == "cuda" {
            return Ok(Device::Cuda(0));
        }
        if let Some(rest) = t.strip_prefix("cuda:")
            && !rest.is_empty()
            && rest.bytes().all(|b| b.is_ascii_digit())
            && let Ok(i) = rest.parse::<usize>()
        {
            return Ok(Device::Cuda(i));
        }
        Err(KernelError::UnknownDevice(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opening_cuda_without_it_is_a_clear_error() {
        assert_eq!(Device::Cpu.open().unwrap(), Device::Cpu);
        #[cfg(feature = "cuda")]
        if crate::cuda::driver_present() {
            return;
        }
        let e = Device::Cuda(0).open().unwrap_err();
        assert!(matches!(e, KernelError::DeviceUnavailable { .. }), "{e}");
        assert!(e.to_string().contains("use --device cpu"), "{e}");
    }

    #[test]
    fn parses_and_prints() {
        assert_eq!("cpu".parse::<Device>().unwrap(), Device::Cpu);
        assert_eq!(" CPU ".parse::<Device>().unwrap(), Device::Cpu);
        assert_eq!("cuda".parse::<Device>().unwrap(), Device::Cuda(0));
        assert_eq!("cuda:3".parse::<Device>().unwrap(), Device::Cuda(3));
        for d in [Device::Cpu, Device::Cuda(0), Device::Cuda(12)] {
            assert_eq!(d.to_string().parse::<Device>().unwrap(), d);
        }
    }

    #[test]
    fn rejects_unknown() {
        for s in [
            "", "gpu", "cuda:", "cuda:-1", "cuda:x", "cuda:1:2", "tpu:0", "cuda0",
        ] {
            let e = s.parse::<Device>().unwrap_err();
            assert_eq!(e, KernelError::UnknownDevice(s.to_string()), "{s}");
            assert!(e.to_string().contains("expected `cpu`"));
        }
    }
}
