//! Raw compute for nas-rs: kernels on slices with explicit shapes.
//!
//! - [`gemm`]: single-precision GEMM (row-major, optional transposes, alpha/beta).
//! - [`threads`]: thread-count setting (`NAS_THREADS`) and `parallel_for`.

pub mod gemm;
pub mod threads;
