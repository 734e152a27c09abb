//! The integration tests of nas-space in one test binary (one link of the crate graph instead of one
//! per file); each module was a file of its own under `tests/`.

mod chain;
mod contract;
mod darts;
mod nb101;
mod nb201;
mod rnn;
