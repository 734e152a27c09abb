//! nas-search: search strategies, evaluators, networks built from genotypes, data sets and
//! resumable search state.

pub mod data;
