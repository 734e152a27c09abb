//! ENAS (Pham et al. 2018) on the shared one-shot code: the [`Supernet`](super::Supernet) of
//! the space trained one sampled path at a time, alternating with REINFORCE training of the
//! LSTM controller of [`crate::strategy::LstmController`].
//!
//! One step ([`super::OneShotSearch::step`] with [`Method::Enas`]):
//!
//! 1. **Shared weights**: the controller samples an architecture (its decisions are the
//!    space's `SearchSpace::decisions`, so every sample is a valid genotype); one SGD step of
//!    the weights on the step's weight-half batch through that path alone
//!    ([`super::spos::path_mixing`], the same step SPOS takes).
//! 2. **Controller**: [`OneShotConfig::ctrl_samples`] fresh samples, each rewarded with its
//!    accuracy on the step's architecture-half batch through the shared weights (training-mode
//!    BN and no gradient, as ENAS' `valid_shuffle` reward), plus
//!    [`OneShotConfig::ctrl_entropy_weight`] times ENAS' entropy term of the sample
//!    ([`LstmController::sample_entropy`]); the moving-average baseline (decay
//!    [`OneShotConfig::ctrl_baseline_decay`]) is updated by each reward before its advantage
//!    is taken, then one Adam step on the mean REINFORCE loss
//!    ([`LstmController::reinforce_step`]).
//!
//! The step's "search" numbers (the record's `search_loss` / `search_acc`) are those of the
//! first controller sample on the architecture batch.
//!
//! **Derivation** ([`super::OneShotSearch::enas_derive`], at the end of every epoch and after
//! the last): `candidates` architectures sampled from the controller (with a generator drawn
//! from the seed alone, so it is a pure function of the trained state), each scored by its
//! accuracy on one fixed architecture-half batch with the shared weights, as ENAS picks its
//! final cell; the best (first on ties) is the epoch's genotype, and the record's validation
//! numbers are that cell's on the whole architecture half with BN statistics recalibrated as
//! SPOS does. The supernet's BN statistics are restored after the derivation. The samples go
//! to `candidates.json` like SPOS' path search.
//!
//! Differences from ENAS, deliberate: the controller and the shared weights alternate every
//! step (ENAS: an epoch of weight steps, then 30 controller steps of 10 aggregated samples);
//! the baseline is bias-corrected (ENAS starts it at 0); the controller is the project's
//! LSTM controller (one LSTM layer, one softmax head per decision, the same `tanh` bound on
//! every decision, no separate bound for the ops); the architecture weights are not used.

use nas_space::SearchSpace;
use nas_space::darts::DartsSpace;
use nas_space::nb201::Nb201Space;
use nas_tensor::nn::Module;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::error::{OneShotError, Result};
use super::search::{
    Genotype, Method, OneShotConfig, OneShotSearch, SearchBatch, epoch_order, gather,
};
use super::spos::{PathCandidate, PathSearch, path_mixing, table_accuracy, table_spearman};
use super::supernet::SpaceKind;
use crate::strategy::{ControllerConfig, LstmController};

/// Salt of the derivation's generator.
const DERIVE_SALT: u64 = 0xe4a5_0000_0000_0001;
/// Salt of the derivation batch's order.
const DERIVE_BATCH_SALT: u64 = 4;

/// The controller of an ENAS search with `config`'s settings over its space's decisions.
pub(crate) fn controller_for(config: &OneShotConfig, init_seed: u64) -> Result<LstmController> {
    let cc = ControllerConfig {
        hidden: config.ctrl_hidden,
        learning_rate: config.ctrl_lr as f64,
        baseline_momentum: config.ctrl_baseline_decay,
        fidelity: 0,
        init_seed,
        tanh_constant: config.ctrl_tanh_constant,
        temperature: config.ctrl_temperature,
    };
    let decisions = match config.space {
        SpaceKind::Nb201 => Nb201Space.decisions(),
        SpaceKind::Darts => DartsSpace.decisions(),
        SpaceKind::Rnn => return Err(enas_not_on_rnn()),
    };
    Ok(LstmController::new(cc, &decisions)?)
}

/// ENAS runs on the image spaces only.
fn enas_not_on_rnn() -> OneShotError {
    OneShotError::Config(
        "enas is not available on the recurrent space (darts and darts2 are)".into(),
    )
}

/// One architecture from the controller: its choices, genotype, and the probability of each
/// choice.
pub fn draw(
    controller: &LstmController,
    space: SpaceKind,
    rng: &mut dyn RngCore,
) -> Result<(Vec<usize>, Genotype, Vec<f64>)> {
    let (choices, probs) = controller.sample_with_probs(rng)?;
    let g = match space {
        SpaceKind::Nb201 => Genotype::Nb201(Nb201Space.decode_decisions(&choices)?),
        SpaceKind::Darts => Genotype::Darts(DartsSpace.decode_decisions(&choices)?),
        SpaceKind::Rnn => return Err(enas_not_on_rnn()),
    };
    Ok((choices, g, probs))
}

impl OneShotSearch {
    /// ENAS: the controller (`None` for the other methods).
    pub fn controller(&self) -> Option<&LstmController> {
        self.controller.as_ref()
    }

    fn controller_or_err(&self) -> Result<&LstmController> {
        self.controller.as_ref().ok_or_else(|| {
            OneShotError::Config(format!(
                "{} has no controller (only enas does)",
                self.config.method.name()
            ))
        })
    }

    /// One ENAS step (see the module docs): the weight step on the path the controller
    /// samples, then the controller's REINFORCE step. Returns (training loss, training correct,
    /// architecture-batch loss, architecture-batch correct).
    pub(crate) fn enas_step(
        &mut self,
        tb: &SearchBatch,
        vb: &SearchBatch,
    ) -> Result<(f32, u64, f32, u64)> {
        let space = self.config.space;
        self.controller_or_err()?;
        let ctrl = self.controller.as_ref().expect("checked above");
        let (_, g, _) = draw(ctrl, space, &mut self.rng)?;
        let mix = path_mixing(&g, self.config.device)?;
        let (tl, tc) = self.weight_step_on(tb, &mix)?;
        drop(mix);
        let w = self.config.ctrl_entropy_weight as f64;
        let mut samples = Vec::with_capacity(self.config.ctrl_samples);
        let mut first = None;
        for _ in 0..self.config.ctrl_samples {
            let ctrl = self.controller.as_ref().expect("checked above");
            let (choices, g, probs) = draw(ctrl, space, &mut self.rng)?;
            let mix = path_mixing(&g, self.config.device)?;
            let (l, c) = self.batch_loss(vb, &mix)?;
            let acc = c as f64 / vb.y.len() as f64;
            let reward = acc + w * LstmController::sample_entropy(&probs);
            first.get_or_insert((l, c));
            samples.push((choices, reward));
        }
        let (sl, sc) = first.expect("at least one controller sample");
        if !sl.is_finite() {
            return Err(OneShotError::NonFinite {
                what: "architecture-half loss".into(),
                epoch: self.epoch,
                step: self.step_in_epoch,
            });
        }
        self.controller
            .as_mut()
            .expect("checked above")
            .reinforce_step(&samples)?;
        Ok((tl, tc, sl, sc))
    }

    /// The fixed architecture-half batch that scores the derivation's samples (the first
    /// `batch_size` examples of a permutation drawn from the seed).
    pub fn enas_derive_batch(&self) -> Result<SearchBatch> {
        let n = self.data.valid.len();
        let order = epoch_order(n, self.config.seed, DERIVE_BATCH_SALT, 0);
        let b = self.config.batch_size.min(n);
        gather(&self.data.valid, &order[..b], self.config.device)
    }

    /// ENAS' derivation (see the module docs): `candidates` samples of the controller, each
    /// scored on [`OneShotSearch::enas_derive_batch`] with the shared weights; the best is
    /// [`PathSearch::best_genotype`]. The supernet's BN statistics are left as they were.
    pub fn enas_derive(&mut self) -> Result<PathSearch> {
        let ctrl = self.controller_or_err()?;
        let space = self.config.space;
        let mut rng = ChaCha8Rng::seed_from_u64(self.config.seed ^ DERIVE_SALT);
        let mut drawn = Vec::with_capacity(self.config.candidates);
        for _ in 0..self.config.candidates {
            drawn.push(draw(ctrl, space, &mut rng)?.1);
        }
        let batch = self.enas_derive_batch()?;
        let saved = self.net.buffer_snapshot();
        let scored = (|| -> Result<Vec<PathCandidate>> {
            let mut seen: std::collections::HashMap<String, usize> = Default::default();
            let mut out: Vec<PathCandidate> = Vec::with_capacity(drawn.len());
            for (id, g) in drawn.into_iter().enumerate() {
                let key = g.to_string();
                let (valid_loss, valid_acc, same_as) = match seen.get(&key) {
                    Some(&j) => (out[j].valid_loss, out[j].valid_acc, Some(j)),
                    None => {
                        let mix = path_mixing(&g, self.config.device)?;
                        let (l, c) = self.batch_loss(&batch, &mix)?;
                        seen.insert(key, id);
                        (l as f64, c as f64 / batch.y.len() as f64, None)
                    }
                };
                out.push(PathCandidate {
                    id,
                    genotype: g,
                    valid_loss,
                    valid_acc,
                    nb201_cifar10_test: table_accuracy(&g),
                    same_as,
                });
            }
            Ok(out)
        })();
        saved.restore()?;
        let candidates = scored?;
        let mut best = 0;
        for (i, c) in candidates.iter().enumerate() {
            if c.valid_acc > candidates[best].valid_acc {
                best = i;
            }
        }
        Ok(PathSearch {
            method: Method::Enas.name().into(),
            strategy: "lstm-controller".into(),
            spearman_vs_table: table_spearman(space, &candidates),
            candidates,
            best,
        })
    }
}
