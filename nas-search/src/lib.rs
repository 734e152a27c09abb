//! nas-search: search strategies, evaluators, networks built from genotypes, data sets and
//! resumable search state.
//!
//! * [`strategy`]: the ask/tell [`Strategy`] trait and random search, regularized evolution,
//!   REINFORCE, local search and Hyperband / successive halving, and the REINFORCE-trained
//!   LSTM controller ([`strategy::LstmController`]) and TPE ([`strategy::Tpe`]).
//! * [`evaluator`]: the [`Evaluator`] trait (architecture + fidelity -> metrics or failure) and
//!   the evaluator registry entries ([`evaluator::EvaluatorDef`]).
//! * [`search`]: the search loop with parallel workers, budgets and atomic checkpoints
//!   ([`run_search`]); [`checkpoint`] holds the file format.
//! * [`synthetic`]: a small synthetic space and objective for tests.
//! * [`benchmark`]: the NAS-Bench-201 benchmark runner; [`plot`]: dependency-free SVG plots.
//! * [`stats`]: mean, standard deviation and Welch's t-test for comparing strategies.
//! * [`builder`]: a whole search described in one value and run with its outputs.
//! * [`train`]: training networks (the train-from-scratch evaluator, on the recipe's device);
//!   [`nets`]: the networks built from genotypes, with their closed-form costs;
//!   [`data`]: data sets, splits and batches.
//! * [`trainjob`]: one architecture trained by name, what `nas train` runs.
//! * [`oneshot`]: DARTS and GDAS on supernets.
//! * [`proxies`]: zero-cost proxies (synflow, grad_norm, snip, jacob_cov, nwot) of untrained
//!   NAS-Bench-201 networks and Spearman's rank correlation.
//! * [`rnn`]: training recurrent language models on text (bits per character) and the
//!   train evaluator of the recurrent-cell space.
//! * [`spaces`]: the registry of search spaces (one module per space: its network, supernet,
//!   cost, drawing and defaults) and of evaluators, looked up by name.
//! * [`tabular`]: the NAS-Bench-201 table, its closed-form costs and its evaluator.
//! * [`history`], [`error`]: trials and errors.
//! * [`memory`]: closed-form memory estimates checked before anything is built;
//!   [`outdir`]: output directories, created exclusively and locked for the whole run.

#![warn(missing_docs)]

pub mod benchmark;
pub mod builder;
pub mod checkpoint;
pub mod data;
pub mod dist;
pub mod error;
pub mod evaluator;
pub mod executor;
pub mod history;
pub mod hp;
pub mod latency;
pub mod memory;
pub mod nets;
pub mod oneshot;
pub mod outdir;
pub mod pareto;
pub mod plot;
pub mod predictor;
pub mod prefilter;
pub mod proxies;
pub mod rnn;
pub mod search;
pub mod spaces;
pub mod stats;
pub mod strategy;
pub mod synthetic;
pub mod tabular;
pub mod train;
pub mod trainjob;

pub use error::{Result, SearchError};
pub use evaluator::{EvalError, EvalRequest, Evaluator, Metrics};
pub use history::{History, Outcome, Trial};
pub use search::{
    Budget, SearchConfig, SearchOutcome, StopReason, run_search, run_search_observed,
};
pub use strategy::{Ask, Candidate, Strategy, StrategyKind};
