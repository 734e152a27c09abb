//! Criterion benchmarks of nas-rs live in benches/benches.
