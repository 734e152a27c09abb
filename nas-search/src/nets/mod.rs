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

use nas_tensor::TensorError;
use nas_tensor::nn::Module;

/// A family of networks: how to build the network of an architecture for an input shape and a
/// number of classes, and its cost without building it.
pub trait NetworkFamily<A>: Send + Sync {
    /// A short description (`"nb201(C=8,N=1)"`), part of the evaluator's name.
    fn name(&self) -> String;
    /// Builds the network of `arch` for `[c, h, w]` inputs, weights drawn from `seed`.
    fn build(
        &self,
        arch: &A,
        input: (usize, usize, usize),
        classes: usize,
        seed: u64,
    ) -> Result<Box<dyn Module>, TensorError>;
    /// Parameters and FLOPs of that network.
    fn cost(&self, arch: &A, input: (usize, usize, usize), classes: usize) -> NetworkCost;
    /// The ops of that network's forward pass with their shapes, for the latency table
    /// ([`crate::latency`]); `None`: this family does not list them.
    fn ops(
        &self,
        arch: &A,
        input: (usize, usize, usize),
        classes: usize,
    ) -> Option<Vec<crate::latency::LatOp>> {
        let _ = (arch, input, classes);
        None
    }
}

impl<A, F: NetworkFamily<A> + ?Sized> NetworkFamily<A> for Box<F> {
    fn name(&self) -> String {
        (**self).name()
    }
    fn build(
        &self,
        arch: &A,
        input: (usize, usize, usize),
        classes: usize,
        seed: u64,
    ) -> Result<Box<dyn Module>, TensorError> {
        (**self).build(arch, input, classes, seed)
    }
    fn cost(&self, arch: &A, input: (usize, usize, usize), classes: usize) -> NetworkCost {
        (**self).cost(arch, input, classes)
    }
    fn ops(
        &self,
        arch: &A,
        input: (usize, usize, usize),
        classes: usize,
    ) -> Option<Vec<crate::latency::LatOp>> {
        (**self).ops(arch, input, classes)
    }
}

/// Parameters and FLOPs of one network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetworkCost {
    /// Learnable parameters.
    pub params: u64,
    /// Multiply-adds of one forward pass of one image (see the module docs).
    pub flops: u64,
}

impl NetworkCost {
    /// Parameters in millions (NAS-Bench-201's "MB").
    pub fn params_m(&self) -> f64 {
        self.params as f64 / 1e6
    }
    /// FLOPs in millions (NAS-Bench-201's "MFLOPs").
    pub fn mflops(&self) -> f64 {
        self.flops as f64 / 1e6
    }
}
