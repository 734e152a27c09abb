//! Networks built from genotypes, and their building blocks.
//!
//! * [`ops`]: the candidate operations of NAS-Bench-201 and DARTS as [`nas_tensor::nn::Module`]s,
//!   built by name ([`ops::build_op`]), with parameter and FLOP counts.
//! * [`nb201`]: the NAS-Bench-201 macro network of a cell ([`nb201::Nb201Network`]) and its
//!   closed-form cost ([`nb201::nb201_cost`]).
//! * [`darts`]: the DARTS evaluation network of a genotype ([`darts::DartsNetwork`]: reduction
//!   cells at 1/3 and 2/3 of depth, drop-path, auxiliary head) and [`darts::darts_cost`].
//! * [`nb101`]: the NAS-Bench-101 network of a cell graph ([`nb101::Nb101Network`]) and
//!   [`nb101::nb101_cost`].
//! * [`chain`]: the network of a chain (macro) architecture ([`chain::ChainNetwork`]) and
//!   [`chain::chain_cost`].
//! * [`rnn`]: the recurrent language model of a DARTS recurrent cell or an LSTM
//!   ([`rnn::RnnLm`]: embedding, the cell, a decoder tied to the embedding).
//! * [`flops`]: FLOP counting in the forward pass, the independent check of the closed forms.

pub mod chain;
pub mod darts;
pub mod flops;
pub mod nb101;
pub mod nb201;
pub mod ops;
pub mod rnn;
