//! The integration tests of nas-cli in one test binary (one link of the crate graph instead of one
//! per file); each module was a file of its own under `tests/`.

mod bohb_train;
mod cli;
mod common;
mod faults;
mod hp;
mod moo;
mod mpi;
mod protocol;
mod ray;
mod rnn;
mod search;
mod slurm;
