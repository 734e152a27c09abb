//! Networks built from genotypes, and their building blocks.
//!
//! * [`ops`]: the candidate operations of NAS-Bench-201 and DARTS as [`nas_tensor::nn::Module`]s,
//!   built by name ([`ops::build_op`]), with parameter and FLOP counts.

pub mod ops;
