//! Raw compute for nas-rs: kernels on slices with explicit shapes, behind a small
//! [`Backend`] trait.
//!
//! - [`Backend`] (module [`backend`]): the interface the tensor crate programs against — a
//!   buffer type plus op-enum-driven kernels (elementwise, reductions, softmax/cross-entropy,
//!   matmul, conv2d, pooling, batch norm, embedding rows, LSTM steps, random fills), forward
//!   and backward.
//! - [`Cpu`]: the CPU implementation (kernels on `[f32]` slices, buffers from a per-thread
//!   pool: [`buf`]).
//! - [`TestBackend`]: a test-only backend with opaque buffers that computes with the CPU
//!   kernels and counts every host transfer (how the tensor crate proves that nothing
//!   bypasses the [`Backend`] seam).
//! - `Cuda` (feature `cuda`, module `cuda`): the CUDA backend — device buffers from a caching
//!   allocator, one stream per device, kernels in `src/ops/<op>/kernel.cu` compiled by NVRTC
//!   at first use; with the test-only `cuda-emu` feature the same kernels run on the CPU as
//!   the emulated device `Device::CudaEmu`.
//! - [`Device`]: run-time device choice (`"cpu"`, `"cuda:0"`).
//! - [`KernelError`]: every shape or parameter error.
//! - [`ops`]: per-op folders (parameter structs, scalar reference definitions, CPU kernels).
//! - [`gemm`]: single-precision GEMM (row-major, optional transposes, alpha/beta).
//! - [`threads`]: thread-count setting (`NAS_THREADS`), `parallel_for` and its slice-splitting
//!   forms (`parallel_chunks_mut`, `parallel_split_mut`).
//! - [`workloads`]: fixed conv / sep-conv / batch-norm benchmark workloads (forward + backward).
//!
//! ```
//! use nas_kernels::{Backend, Conv2dParams, Cpu};
//! // checked once into the description every backend computes from
//! let p = Conv2dParams::new(1, 1, 3, 3, 1, 3).padding(1).check()?;
//! let x = Cpu.from_slice(&[1.0; 9])?;
//! let w = Cpu.from_slice(&[1.0; 9])?;
//! let mut y = Cpu.zeros(p.y_len())?;
//! Cpu.conv2d(&p, &x, &w, None, &mut y)?;
//! assert_eq!(y[4], 9.0); // the centre sees all nine ones
//! assert_eq!(y[0], 4.0); // a corner sees four
//! # Ok::<(), nas_kernels::KernelError>(())
//! ```

#![warn(missing_docs)]
// Every `unsafe` block and `unsafe impl` states why it is sound (checked by clippy).
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod backend;
pub mod buf;
pub mod checked;
pub mod cpu;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod device;
pub mod error;
pub mod gemm;
pub mod math;
pub mod ops;
mod simd;
pub mod test_backend;
pub mod threads;
pub mod workloads;
mod workspace;

pub use backend::{
    AdamStep, Backend, BatchNormParams, BinaryOp, Conv2dParams, Lstm, LstmCell, Matmul,
    Pool2dParams, PoolKind, RandomDist, ReduceOp, Rows, SgdStep, SoftmaxOp, StridedCopy, UnaryOp,
    broadcast_shape,
};
pub use buf::Buf;
pub use checked::Checked;
pub use cpu::Cpu;
#[cfg(feature = "cuda")]
pub use cuda::{Cuda, CudaBuf};
pub use device::Device;
pub use error::{KernelError, Result};
pub use test_backend::{TestBackend, TestBuf};
