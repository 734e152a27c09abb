//! The integration tests of nas-search in one test binary (one link of the crate graph instead of one
//! per file); each module was a file of its own under `tests/`.

mod backends;
mod bananas;
mod bohb;
mod executor;
mod hp;
mod inference;
mod nb201_strategies;
mod nb201_tpe;
mod no_test_leak;
mod oneshot_dist;
mod oneshot_enas;
mod oneshot_grad;
mod oneshot_pcdarts;
mod oneshot_regularised;
mod oneshot_rnn;
mod oneshot_search;
mod oneshot_spos;
mod pareto;
mod prefilter;
mod protocol;
mod registry;
mod resume;
mod rnn_lm;
mod search_loop;
