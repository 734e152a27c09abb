//! The integration tests of nas-tensor in one test binary (one link of the crate graph instead of one
//! per file); each module was a file of its own under `tests/`.

/// Helpers shared by several test modules (`digits` also by `examples/digits.rs`).
mod common {
    pub mod digits;
    pub mod spaced;
}

mod autograd;
mod backends;
mod checkpoint;
mod grad_ops;
mod learning;
mod nn;
mod optim;
mod pool;
mod recurrent;
mod reference;
mod sync_bn;
mod torch_export;
