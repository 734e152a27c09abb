//! Criterion benchmarks of nas-rs live in benches/benches.

#![warn(missing_docs)]
