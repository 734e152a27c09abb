//! The seam between the bilevel loop of [`OneShotSearch`] and what it trains.
//!
//! [`OneShotSearch`] owns everything a one-shot search shares across spaces: the architecture
//! weights and their Adam, the SGD on the weights with clipping and its cosine schedule, the
//! first-order and unrolled second-order architecture gradients, beta-DARTS' regulariser, the
//! epoch records, derivation, checkpoints and the per-epoch outputs of
//! [`super::run_oneshot_observed`]. A [`OneShotNet`] says what a step reads and how a loss is
//! computed: the image supernets ([`super::Supernet`]: labelled image batches, BN statistics)
//! and the recurrent supernet ([`crate::nets::rnn::RnnSupernet`]: windows of a text stream
//! whose recurrent state is carried from step to step, truncated BPTT;
//! see [`super::text`]).

use std::sync::Arc;

use nas_tensor::Tensor;
use nas_tensor::nn::Module;

use super::error::Result;
use super::search::{Genotype, OneShotConfig, OneShotSearch};
use super::spos::PathSearch;
use crate::dist::Communicator;

/// A supernet a [`OneShotSearch`] can train, with the data it reads. Implementations are
/// called by the loop only; each function gets the whole search when it needs more than the
/// network (the architecture weights, the noise generator, the position).
pub trait OneShotNet: Module + Sized {
    /// What a search is started on (a training set of images, a text corpus).
    type Input: ?Sized;
    /// The search's weight-training and architecture halves of the input, and its position in
    /// them beyond the step counters (batch orders, carried recurrent states).
    type Data;
    /// One batch of either half.
    type Batch;

    /// The supernet for `config` (its weights drawn from `seed`) and the halves of `input`;
    /// refuses a space it is not the supernet of, and data too small to split or too small
    /// for the network.
    fn build(config: &OneShotConfig, input: &Self::Input, seed: u64) -> Result<(Self, Self::Data)>;

    /// A fingerprint of the data (a checkpoint is resumed only on the same data).
    fn fingerprint(data: &Self::Data) -> String;

    /// Steps per epoch of `config` on `data`.
    fn steps_per_epoch(config: &OneShotConfig, data: &Self::Data) -> usize;

    /// The (weight-training, architecture) batches of step `step` of the current epoch.
    fn batch_pair(s: &mut OneShotSearch<Self>, step: usize) -> Result<(Self::Batch, Self::Batch)>;

    /// What a batch counts in the epoch's means (images; characters).
    fn batch_len(batch: &Self::Batch) -> u64;

    /// The loss of `batch` under the softmax of the architecture weights (recorded, so that
    /// their gradient flows, or detached), back-propagated into the gradients (accumulated;
    /// with `only`, those leaves' alone); returns the loss and the number of correct
    /// predictions. A non-finite loss is an error naming `what`.
    fn loss_backward(
        s: &OneShotSearch<Self>,
        what: &str,
        batch: &Self::Batch,
        recorded: bool,
        only: Option<&[Tensor]>,
    ) -> Result<(f32, u64)>;

    /// One step of a method that samples paths (GDAS, SPOS, random search with weight
    /// sharing): (training loss, correct, architecture-batch loss, correct).
    fn single_path_step(
        s: &mut OneShotSearch<Self>,
        train: &Self::Batch,
        arch: &Self::Batch,
    ) -> Result<(f32, u64, f32, u64)>;

    /// Loss and accuracy on the architecture half in evaluation mode, without gradients.
    fn evaluate_valid(s: &mut OneShotSearch<Self>) -> Result<(f64, f64)>;

    /// SPOS / RSWS: the path search over the trained supernet.
    fn search_paths(s: &mut OneShotSearch<Self>) -> Result<PathSearch>;

    /// Makes `s` data-parallel over `comm`'s ranks (the image supernets:
    /// [`OneShotSearch::with_communicator`]); a supernet without data-parallel support refuses.
    fn with_communicator(
        s: OneShotSearch<Self>,
        comm: Arc<dyn Communicator>,
    ) -> Result<OneShotSearch<Self>> {
        Err(super::error::OneShotError::Config(format!(
            "{} on the {} space does not run data-parallel ({} ranks); data-parallel one-shot \
             search runs on the image spaces (darts, nb201) only",
            s.config().method.name(),
            s.config().space.name(),
            comm.size()
        )))
    }

    /// ENAS: the cell the controller picks at the end of an epoch (the best of its samples),
    /// which then is the epoch's genotype; `None` for the methods without a controller (the
    /// only ones a supernet without one supports).
    fn controller_pick(_s: &mut OneShotSearch<Self>) -> Result<Option<Genotype>> {
        Ok(None)
    }

    /// ENAS: loss and accuracy of the picked cell `g` on the architecture half (evaluation
    /// mode, no gradients).
    fn evaluate_pick(s: &mut OneShotSearch<Self>, _g: &Genotype) -> Result<(f64, f64)> {
        Err(super::error::OneShotError::Config(format!(
            "{} has no controller pick to evaluate on the {} space",
            s.config().method.name(),
            s.config().space.name()
        )))
    }

    /// State of the data position held in tensors (carried recurrent states), by name: saved
    /// in checkpoints and written back on resume (`set_data` on these handles).
    fn carried_state(_data: &Self::Data) -> Vec<(String, Tensor)> {
        Vec::new()
    }
}
