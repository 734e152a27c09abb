//! One folder per op family: `mod.rs` holds the op's enums/parameter structs, documentation and
//! tests; `cpu_kernel.rs` its CPU kernels.

pub mod batch_norm;
pub mod conv2d;
pub mod copy;
pub mod elementwise;
pub mod matmul;
pub mod optim;
pub mod pool2d;
pub mod random;
pub mod recurrent;
pub mod reduce;
