//! Raw compute for nas-rs: kernels on slices with explicit shapes.
//!
//! - [`gemm`]: single-precision GEMM (row-major, optional transposes, alpha/beta).

pub mod gemm;
