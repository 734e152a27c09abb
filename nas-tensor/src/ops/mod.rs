//! Differentiable ops, one file per family. Each op computes its output, then records (when
//! gradients are on) a closure that maps the output gradient to the input gradients.

pub mod conv;
pub mod elementwise;
pub mod matmul;
pub mod recurrent;
pub mod reduce;
pub mod shape;
