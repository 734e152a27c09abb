//! The bilevel search: DARTS (first and second order) and GDAS over a [`Supernet`].

use nas_space::darts::DartsGenotype;
use nas_space::nb201::Nb201Cell;
use nas_space::rnn::RnnGenotype;
use nas_tensor::nn::Module;
use nas_tensor::optim::{
    Adam, AdamConfig, AdamState, CosineAnnealingLr, Optimizer, Sgd, SgdConfig, SgdState,
    clip_grad_norm,
};
use nas_tensor::sync_bn::{SyncBn, with_sync_bn};
use nas_tensor::{Device, Tensor, TensorError, no_grad};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

use super::arch::{ArchParams, ArchSnapshot};
use super::derive::{derive_darts_genotype, derive_nb201_cell, derive_rnn_cell};
use super::error::{OneShotError, Result};
use super::net::OneShotNet;
use super::supernet::{HardWeights, Mixing, SpaceKind, Supernet, SupernetConfig};
use crate::data::Dataset;
use crate::dist::{Communicator, shard_range};

/// The one-shot strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Method {
    /// DARTS, first-order approximation (`darts`).
    Darts1,
    /// DARTS, second order: unrolled weight step and finite-difference Hessian-vector product
    /// (`darts2`).
    Darts2,
    /// GDAS: Gumbel-softmax sampling of one op per edge, straight-through (`gdas`).
    Gdas,
    /// PC-DARTS (Xu et al. 2020): first-order DARTS with partial channel connections (`1/K`
    /// of each edge's channels through its ops, [`OneShotConfig::pc_k`]) and edge
    /// normalisation (`pcdarts`).
    PcDarts,
    /// Single-path one-shot (Guo et al. 2020): the weights are trained on one uniformly
    /// sampled path per step, then regularized evolution searches the paths by their
    /// inherited-weight validation accuracy (`spos`; see [`super::spos`]).
    Spos,
    /// Random search with weight sharing (Li & Talwalkar 2019): the same training, then
    /// uniformly sampled paths ranked the same way (`rsws`, also `random-ws`).
    RandomWs,
    /// beta-DARTS (Ye et al. 2022): first-order DARTS whose architecture loss adds
    /// `lambda * mean over edges of logsumexp(alpha_edge)` per cell type, `lambda` rising
    /// linearly from 0 to [`OneShotConfig::beta_lambda`] over the epochs (`beta-darts`).
    BetaDarts,
    /// DARTS+ (Liang et al. 2019): first-order DARTS stopped at the end of the first epoch whose
    /// derived cell meets [`OneShotConfig::plus_threshold`] (`darts-plus`; see
    /// [`OneShotConfig::plus_count`]).
    DartsPlus,
    /// ENAS (Pham et al. 2018): the weights are trained on one path per step drawn from an
    /// LSTM controller, which is trained by REINFORCE on the validation accuracy of its
    /// samples with the shared weights; derivation keeps the best of `candidates` samples
    /// (`enas`; see [`super::enas`]).
    Enas,
}

impl Method {
    /// Parses `darts`, `darts1`, `darts2` or `gdas`.
    pub fn parse(s: &str) -> Result<Method> {
        match s {
            "darts" | "darts1" => Ok(Method::Darts1),
            "darts2" => Ok(Method::Darts2),
            "gdas" => Ok(Method::Gdas),
            "pcdarts" | "pc-darts" => Ok(Method::PcDarts),
            "spos" => Ok(Method::Spos),
            "rsws" | "random-ws" => Ok(Method::RandomWs),
            "beta-darts" | "betadarts" => Ok(Method::BetaDarts),
            "darts-plus" | "dartsplus" | "darts+" => Ok(Method::DartsPlus),
            "enas" => Ok(Method::Enas),
            _ => Err(OneShotError::Config(format!(
                "unknown one-shot strategy {s:?} (expected darts, darts2, gdas, pcdarts, \
                 beta-darts, darts-plus, spos, rsws or enas)"
            ))),
        }
    }
    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Method::Darts1 => "darts",
            Method::Darts2 => "darts2",
            Method::Gdas => "gdas",
            Method::PcDarts => "pcdarts",
            Method::Spos => "spos",
            Method::RandomWs => "rsws",
            Method::BetaDarts => "beta-darts",
            Method::DartsPlus => "darts-plus",
            Method::Enas => "enas",
        }
    }
    /// Is the method DARTS with softmax mixing (first or second order, PC-DARTS, beta-DARTS,
    /// DARTS+)?
    pub fn is_darts(self) -> bool {
        matches!(
            self,
            Method::Darts1
                | Method::Darts2
                | Method::PcDarts
                | Method::BetaDarts
                | Method::DartsPlus
        )
    }
    /// Does the method train sampled paths and then search them ([`super::spos`],
    /// [`super::enas`]) instead of learning architecture weights?
    pub fn samples_paths(self) -> bool {
        matches!(self, Method::Spos | Method::RandomWs | Method::Enas)
    }
}

/// Settings of a one-shot search; [`OneShotConfig::new`] gives the original defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OneShotConfig {
    /// DARTS first/second order or GDAS.
    pub method: Method,
    /// The space.
    pub space: SpaceKind,
    /// Initial channels (16).
    pub c: usize,
    /// DARTS: cells (8). NB201: cells per stage (5).
    pub layers: usize,
    /// Epochs (50 for DARTS; GDAS used 240 on NB201).
    pub epochs: usize,
    /// Batch size of both the weight and the architecture step (64).
    pub batch_size: usize,
    /// Seed of everything: weights, architecture weights, batch orders, Gumbel noise.
    pub seed: u64,
    /// Fraction of the training set used to train the weights; the rest trains the
    /// architecture (0.5).
    pub train_portion: f64,
    /// Cap on the steps per epoch (`None`: one pass over the weight-training half).
    pub steps_per_epoch: Option<usize>,
    /// Weight SGD: initial learning rate (0.025).
    pub w_lr: f32,
    /// Weight SGD: final learning rate of the cosine schedule (0.001).
    pub w_lr_min: f32,
    /// Weight SGD: momentum (0.9).
    pub w_momentum: f32,
    /// Weight SGD: weight decay (3e-4).
    pub w_weight_decay: f32,
    /// Global gradient-norm clip of the weights (5).
    pub grad_clip: f32,
    /// Architecture Adam: learning rate (3e-4).
    pub a_lr: f32,
    /// Architecture Adam: beta1 (0.5).
    pub a_beta1: f32,
    /// Architecture Adam: beta2 (0.999).
    pub a_beta2: f32,
    /// Architecture Adam: weight decay (1e-3).
    pub a_weight_decay: f32,
    /// GDAS: initial Gumbel temperature (10).
    pub tau_max: f32,
    /// GDAS: final Gumbel temperature (0.1).
    pub tau_min: f32,
    /// DARTS second order: the finite-difference step is `unroll_r / ||v||` (0.01).
    pub unroll_r: f32,
    /// Write a checkpoint every this many steps (0: only at the end of each epoch).
    pub checkpoint_every: usize,
    /// Evaluate the architecture half (evaluation mode, no gradient) at the end of each epoch.
    pub eval_each_epoch: bool,
    /// Save memory by recomputation (DARTS supernet, softmax mixing): the first this many cells
    /// keep only their outputs in the forward pass and rebuild one cell's graph at a time in
    /// the backward pass, at the cost of their forward pass once more (0: none, one graph over
    /// the whole network; `layers` or more: every cell, peak memory of one cell). The first
    /// cells hold the largest activations. Results are the same up to float summation order.
    pub recompute_cells: usize,
    /// PC-DARTS: `1/K` of the channels of every mixed edge go through its ops (4).
    #[serde(default = "default_pc_k")]
    pub pc_k: usize,
    /// SPOS / random search with weight sharing: candidate paths evaluated after training
    /// (100).
    #[serde(default = "default_candidates")]
    pub candidates: usize,
    /// SPOS / random search with weight sharing: weight-half batches that recalibrate the BN
    /// statistics of each candidate path before it is evaluated (8).
    #[serde(default = "default_bn_batches")]
    pub bn_batches: usize,
    /// beta-DARTS: the final weight `lambda_max` of the beta regulariser (50, our choice for
    /// the NB201 space; see docs); the weight of epoch `t` is [`OneShotConfig::beta_lambda_at`].
    #[serde(default = "default_beta_lambda")]
    pub beta_lambda: f32,
    /// DARTS+: stop at the end of the first epoch whose derived cell's
    /// [`OneShotConfig::plus_count`] reaches this (`None`: 2 skip connections in the DARTS
    /// normal cell, 3 parameter-free ops of the 6 NB201 edges).
    #[serde(default)]
    pub plus_threshold: Option<usize>,
    /// Data-parallel runs ([`OneShotSearch::with_communicator`]): batch-norm statistics of the
    /// whole batch across the ranks (`--sync-bn`, PyTorch's `SyncBatchNorm`) instead of each
    /// rank's shard (PyTorch DDP's default). On a single process it only keeps the edges'
    /// parameter-free ops unshared (as several ranks run them), so that one rank does the
    /// arithmetic of several.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sync_bn: bool,
    /// ENAS: the controller's Adam learning rate (0.0035, ENAS' CIFAR-10 cell search).
    #[serde(default = "default_ctrl_lr")]
    pub ctrl_lr: f32,
    /// ENAS: weight of the entropy term added to the reward (1e-4, as ENAS).
    #[serde(default = "default_ctrl_entropy_weight")]
    pub ctrl_entropy_weight: f32,
    /// ENAS: decay of the moving-average baseline (0.99, as ENAS).
    #[serde(default = "default_ctrl_baseline_decay")]
    pub ctrl_baseline_decay: f64,
    /// ENAS: LSTM units of the controller (64, as ENAS).
    #[serde(default = "default_ctrl_hidden")]
    pub ctrl_hidden: usize,
    /// ENAS: the controller's logits are `tanh_constant * tanh(raw / temperature)` (1.1, as
    /// ENAS' cell search).
    #[serde(default = "default_ctrl_tanh_constant")]
    pub ctrl_tanh_constant: f32,
    /// ENAS: the temperature of that bound (5, as ENAS).
    #[serde(default = "default_ctrl_temperature")]
    pub ctrl_temperature: f32,
    /// ENAS: controller samples (rewards) per controller step, one Adam step on their mean (1).
    #[serde(default = "default_ctrl_samples")]
    pub ctrl_samples: usize,
    /// Recurrent space: steps per truncated-BPTT window of both halves (35, the original's).
    #[serde(default = "default_bptt")]
    pub bptt: usize,
    /// Where the supernet, the architecture weights and the batches live (a run setting, not
    /// saved in checkpoints).
    #[serde(skip)]
    pub device: Device,
}

/// Default [`OneShotConfig::recompute_cells`]: none. Since graph nodes keep only the values
/// their gradient rules read, and separable/dilated convolutions keep one activation per block,
/// one graph over the whole C = 16 supernet peaks at about 2.7 GB, already under a third of
/// PyTorch's peak (docs/PERF.md); recomputing cells trades time for memory on larger settings.
pub const RECOMPUTE_CELLS: usize = 0;

fn default_pc_k() -> usize {
    4
}
fn default_candidates() -> usize {
    100
}
fn default_bn_batches() -> usize {
    8
}
fn default_beta_lambda() -> f32 {
    50.0
}
fn default_ctrl_lr() -> f32 {
    0.0035
}
fn default_ctrl_entropy_weight() -> f32 {
    1e-4
}
fn default_ctrl_baseline_decay() -> f64 {
    0.99
}
fn default_ctrl_hidden() -> usize {
    64
}
fn default_ctrl_tanh_constant() -> f32 {
    1.1
}
fn default_ctrl_temperature() -> f32 {
    5.0
}
fn default_ctrl_samples() -> usize {
    1
}
fn default_bptt() -> usize {
    35
}

impl OneShotConfig {
    /// The original hyper-parameters for `method` on `space` (C = 16; 8 DARTS cells or 5 NB201
    /// cells per stage; 50 epochs, batch 64).
    pub fn new(method: Method, space: SpaceKind) -> Self {
        OneShotConfig {
            method,
            space,
            c: 16,
            layers: match space {
                SpaceKind::Darts => 8,
                SpaceKind::Nb201 => 5,
                SpaceKind::Rnn => 1,
            },
            epochs: 50,
            batch_size: 64,
            seed: 2,
            train_portion: 0.5,
            steps_per_epoch: None,
            w_lr: 0.025,
            w_lr_min: 0.001,
            w_momentum: 0.9,
            w_weight_decay: 3e-4,
            grad_clip: 5.0,
            a_lr: 3e-4,
            a_beta1: 0.5,
            a_beta2: 0.999,
            a_weight_decay: 1e-3,
            tau_max: 10.0,
            tau_min: 0.1,
            unroll_r: 0.01,
            checkpoint_every: 0,
            eval_each_epoch: true,
            recompute_cells: RECOMPUTE_CELLS,
            pc_k: default_pc_k(),
            candidates: default_candidates(),
            bn_batches: default_bn_batches(),
            beta_lambda: default_beta_lambda(),
            plus_threshold: None,
            sync_bn: false,
            ctrl_lr: default_ctrl_lr(),
            ctrl_entropy_weight: default_ctrl_entropy_weight(),
            ctrl_baseline_decay: default_ctrl_baseline_decay(),
            ctrl_hidden: default_ctrl_hidden(),
            ctrl_tanh_constant: default_ctrl_tanh_constant(),
            ctrl_temperature: default_ctrl_temperature(),
            ctrl_samples: default_ctrl_samples(),
            bptt: default_bptt(),
            device: Device::Cpu,
        }
        .with_space_defaults()
    }

    /// The original recurrent search's settings where the space is [`SpaceKind::Rnn`]
    /// (`rnn/train_search.py` of the DARTS code; sizes scaled to a character model): plain SGD
    /// at a constant 20 with weight decay 5e-7 and clip 0.25, Adam at 3e-3 with betas
    /// (0.9, 0.999) and weight decay 1e-3, windows of 35 steps, batch 64 (the original's
    /// 256 on words), 128 hidden units (`c`; the original's 300).
    fn with_space_defaults(mut self) -> Self {
        if self.space == SpaceKind::Rnn {
            self.c = 128;
            self.layers = 1;
            self.w_lr = 20.0;
            self.w_lr_min = 20.0;
            self.w_momentum = 0.0;
            self.w_weight_decay = 5e-7;
            self.grad_clip = 0.25;
            self.a_lr = 3e-3;
            self.a_beta1 = 0.9;
            self.a_beta2 = 0.999;
            self.a_weight_decay = 1e-3;
        }
        self
    }

    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(OneShotError::Config(m));
        if self.epochs == 0 || self.batch_size == 0 {
            return bad("epochs and batch size must be positive".into());
        }
        if !(self.train_portion > 0.0 && self.train_portion < 1.0) {
            return bad(format!(
                "train portion must be in (0, 1), got {}",
                self.train_portion
            ));
        }
        if self.steps_per_epoch == Some(0) {
            return bad("steps per epoch must be positive".into());
        }
        let pos = [
            ("w_lr", self.w_lr),
            ("a_lr", self.a_lr),
            ("grad_clip", self.grad_clip),
            ("unroll_r", self.unroll_r),
        ];
        for (n, v) in pos {
            if !(v > 0.0 && v.is_finite()) {
                return bad(format!("{n} must be positive and finite, got {v}"));
            }
        }
        if !(self.w_lr_min >= 0.0 && self.w_lr_min <= self.w_lr) {
            return bad(format!(
                "w_lr_min must be in [0, w_lr], got {}",
                self.w_lr_min
            ));
        }
        if self.method.samples_paths() && (self.candidates == 0 || self.bn_batches == 0) {
            return bad(format!(
                "{} needs at least one candidate and one BN batch, got {} and {}",
                self.method.name(),
                self.candidates,
                self.bn_batches
            ));
        }
        if self.method == Method::PcDarts && (self.pc_k == 0 || !self.c.is_multiple_of(self.pc_k)) {
            return bad(format!(
                "PC-DARTS needs C (--channels) to be a positive multiple of K, got C = {} and \
                 K = {}",
                self.c, self.pc_k
            ));
        }
        if !(self.beta_lambda >= 0.0 && self.beta_lambda.is_finite()) {
            return bad(format!(
                "beta-DARTS' lambda must be non-negative and finite, got {}",
                self.beta_lambda
            ));
        }
        if let Some(t) = self.plus_threshold {
            let most = match self.space {
                SpaceKind::Darts => 8,
                SpaceKind::Nb201 => 6,
                SpaceKind::Rnn => 8,
            };
            if t == 0 || t > most {
                return bad(format!(
                    "DARTS+ threshold must be in 1..={most} on the {} space, got {t}",
                    self.space.name()
                ));
            }
        }
        if self.method == Method::Enas {
            let ok = self.ctrl_lr > 0.0
                && self.ctrl_lr.is_finite()
                && self.ctrl_entropy_weight >= 0.0
                && self.ctrl_entropy_weight.is_finite()
                && (0.0..1.0).contains(&self.ctrl_baseline_decay)
                && self.ctrl_hidden > 0
                && self.ctrl_tanh_constant > 0.0
                && self.ctrl_tanh_constant.is_finite()
                && self.ctrl_temperature > 0.0
                && self.ctrl_temperature.is_finite()
                && self.ctrl_samples > 0;
            if !ok {
                return bad(format!(
                    "ENAS needs ctrl_lr > 0, entropy_weight >= 0, baseline_decay in [0, 1), \
                     hidden > 0, tanh_constant > 0, temperature > 0 and samples > 0, got \
                     ctrl_lr = {}, entropy_weight = {}, baseline_decay = {}, hidden = {}, \
                     tanh_constant = {}, temperature = {}, samples = {}",
                    self.ctrl_lr,
                    self.ctrl_entropy_weight,
                    self.ctrl_baseline_decay,
                    self.ctrl_hidden,
                    self.ctrl_tanh_constant,
                    self.ctrl_temperature,
                    self.ctrl_samples
                ));
            }
        }
        if self.space == SpaceKind::Rnn {
            if !matches!(self.method, Method::Darts1 | Method::Darts2) {
                return bad(format!(
                    "{} is not available on the recurrent space (darts and darts2 are)",
                    self.method.name()
                ));
            }
            if self.c == 0 || self.bptt == 0 {
                return bad("the recurrent supernet needs positive hidden units and bptt".into());
            }
        }
        if self.method == Method::Gdas && !(self.tau_min > 0.0 && self.tau_max >= self.tau_min) {
            return bad(format!(
                "GDAS needs 0 < tau_min <= tau_max, got {} and {}",
                self.tau_min, self.tau_max
            ));
        }
        Ok(())
    }

    /// The settings `method` takes as `--strategy name:key=value`: (key, the
    /// [`OneShotConfig`] field it sets, what it is).
    pub fn settings_of(method: Method) -> &'static [(&'static str, &'static str, &'static str)] {
        const ARCH: [(&str, &str, &str); 2] = [
            (
                "arch_lr",
                "a_lr",
                "Adam learning rate of the architecture weights",
            ),
            ("arch_weight_decay", "a_weight_decay", "their weight decay"),
        ];
        match method {
            Method::Darts1 => &ARCH,
            Method::Darts2 => &[
                ARCH[0],
                ARCH[1],
                ("unroll_r", "unroll_r", "finite-difference step / ||v||"),
            ],
            Method::Gdas => &[
                ARCH[0],
                ARCH[1],
                ("tau_max", "tau_max", "initial Gumbel temperature"),
                ("tau_min", "tau_min", "final Gumbel temperature"),
            ],
            Method::PcDarts => &[
                ARCH[0],
                ARCH[1],
                ("k", "pc_k", "1/K of the channels go through the ops"),
            ],
            Method::BetaDarts => &[
                ARCH[0],
                ARCH[1],
                (
                    "lambda",
                    "beta_lambda",
                    "final weight of the beta regulariser",
                ),
            ],
            Method::DartsPlus => &[
                ARCH[0],
                ARCH[1],
                (
                    "threshold",
                    "plus_threshold",
                    "stop when the derived cell has this many skips (NB201: parameter-free ops)",
                ),
            ],
            Method::Spos | Method::RandomWs => &[(
                "bn_batches",
                "bn_batches",
                "batches that recalibrate BN per candidate",
            )],
            Method::Enas => &[
                ("ctrl_lr", "ctrl_lr", "controller Adam learning rate"),
                (
                    "entropy_weight",
                    "ctrl_entropy_weight",
                    "entropy term in the reward",
                ),
                (
                    "baseline_decay",
                    "ctrl_baseline_decay",
                    "moving-average baseline decay",
                ),
                ("hidden", "ctrl_hidden", "controller LSTM units"),
                ("tanh_constant", "ctrl_tanh_constant", "logit bound"),
                ("temperature", "ctrl_temperature", "logit temperature"),
                (
                    "samples",
                    "ctrl_samples",
                    "controller samples per controller step",
                ),
                (
                    "bn_batches",
                    "bn_batches",
                    "BN recalibration batches of the epoch's cell",
                ),
            ],
        }
    }

    /// Sets the method's setting `key` (see [`OneShotConfig::settings_of`]) from the text
    /// `value` (JSON: a number, or `null` for an optional one). An unknown key or a value of the
    /// wrong type is an error naming the key; ranges are checked by
    /// [`OneShotConfig::validate`].
    pub fn apply_setting(&mut self, key: &str, value: &str) -> Result<()> {
        let list = OneShotConfig::settings_of(self.method);
        let Some(&(_, field, _)) = list.iter().find(|(k, _, _)| *k == key) else {
            let keys: Vec<&str> = list.iter().map(|(k, _, _)| *k).collect();
            return Err(OneShotError::Config(format!(
                "unknown setting {key:?} for {} (its settings: {})",
                self.method.name(),
                keys.join(", ")
            )));
        };
        let bad = |e: String| {
            OneShotError::Config(format!(
                "bad value {value:?} for {} setting {key}: {e}",
                self.method.name()
            ))
        };
        let v: serde_json::Value = serde_json::from_str(value).map_err(|e| bad(e.to_string()))?;
        let mut obj = serde_json::to_value(&*self).map_err(|e| bad(e.to_string()))?;
        obj.as_object_mut()
            .ok_or_else(|| bad("settings are not an object".into()))?
            .insert(field.to_string(), v);
        let device = self.device;
        let mut new: OneShotConfig = serde_json::from_value(obj).map_err(|e| bad(e.to_string()))?;
        new.device = device;
        // a range error after this setting is this setting's (the settings before it passed)
        self.validate()?;
        new.validate().map_err(|e| match e {
            OneShotError::Config(m) => bad(m),
            other => other,
        })?;
        *self = new;
        Ok(())
    }

    /// beta-DARTS: the regulariser weight of `epoch`, linear from 0 at the first epoch to
    /// [`OneShotConfig::beta_lambda`] at the last (a one-epoch search uses the final weight).
    pub fn beta_lambda_at(&self, epoch: usize) -> f32 {
        if self.epochs <= 1 {
            return self.beta_lambda;
        }
        (self.beta_lambda as f64 * epoch.min(self.epochs - 1) as f64 / (self.epochs - 1) as f64)
            as f32
    }

    /// DARTS+: the threshold in force ([`OneShotConfig::plus_threshold`] or the space's default).
    pub fn plus_threshold_or_default(&self) -> usize {
        self.plus_threshold.unwrap_or(match self.space {
            SpaceKind::Darts => 2,
            SpaceKind::Nb201 | SpaceKind::Rnn => 3,
        })
    }

    /// DARTS+: what the stopping rule counts in a derived genotype: the skip connections of
    /// the DARTS normal cell, or the parameter-free ops (`none`, `skip_connect`,
    /// `avg_pool_3x3`) of an NB201 cell.
    pub fn plus_count(genotype: &Genotype) -> usize {
        match genotype {
            Genotype::Darts(g) => g
                .normal
                .nodes
                .iter()
                .flatten()
                .filter(|(op, _)| *op == nas_space::darts::DartsOp::SkipConnect)
                .count(),
            Genotype::Nb201(c) => c
                .ops
                .iter()
                .filter(|op| {
                    use nas_space::nb201::Nb201Op;
                    matches!(
                        op,
                        Nb201Op::None | Nb201Op::SkipConnect | Nb201Op::AvgPool3x3
                    )
                })
                .count(),
            Genotype::Rnn(g) => g
                .nodes
                .iter()
                .filter(|(a, _)| *a == nas_space::rnn::RnnActivation::Identity)
                .count(),
        }
    }

    /// The Gumbel temperature of `epoch` (linear from `tau_max` to `tau_min`).
    pub fn tau_at(&self, epoch: usize) -> f32 {
        if self.epochs <= 1 {
            return self.tau_max;
        }
        let t = epoch as f64 / (self.epochs - 1) as f64;
        (self.tau_max as f64 - (self.tau_max as f64 - self.tau_min as f64) * t) as f32
    }
}

/// A derived architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[allow(clippy::large_enum_variant)] // a few per search, never in a hot path
pub enum Genotype {
    /// DARTS normal and reduction cells.
    Darts(DartsGenotype),
    /// A NAS-Bench-201 cell.
    Nb201(Nb201Cell),
    /// A DARTS recurrent cell.
    Rnn(RnnGenotype),
}

impl std::fmt::Display for Genotype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Genotype::Darts(g) => write!(f, "{g}"),
            Genotype::Nb201(c) => write!(f, "{c}"),
            Genotype::Rnn(g) => write!(f, "{g}"),
        }
    }
}

/// What one epoch did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// Epoch (0-based).
    pub epoch: usize,
    /// Weight learning rate used.
    pub lr: f32,
    /// Gumbel temperature (GDAS).
    pub tau: Option<f32>,
    /// Steps run.
    pub steps: usize,
    /// Mean training loss of the weight steps.
    pub train_loss: f64,
    /// Training accuracy of the weight steps (fraction).
    pub train_acc: f64,
    /// Mean loss of the architecture steps' forward passes (architecture half, training mode).
    pub search_loss: f64,
    /// Accuracy of those passes.
    pub search_acc: f64,
    /// Loss on the whole architecture half at the end of the epoch (evaluation mode), if run.
    pub valid_loss: Option<f64>,
    /// Accuracy on the whole architecture half at the end of the epoch, if run.
    pub valid_acc: Option<f64>,
    /// The genotype derived at the end of the epoch.
    pub genotype: Genotype,
    /// NAS-Bench-201: the derived cell's 200-epoch CIFAR-10 test accuracy (%) from the table.
    pub nb201_cifar10_test: Option<f64>,
    /// Architecture weights at the end of the epoch.
    pub arch: ArchSnapshot,
    /// beta-DARTS: the regulariser weight used in this epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beta_lambda: Option<f32>,
    /// DARTS+: why the search stopped after this epoch (absent: it did not stop early).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_reason: Option<String>,
}

/// Running sums of the current epoch (kept in checkpoints so that a resumed epoch reports the
/// same numbers).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct EpochSums {
    pub train_loss_bits: u64,
    pub train_correct: u64,
    pub train_seen: u64,
    pub search_loss_bits: u64,
    pub search_correct: u64,
    pub search_seen: u64,
}

impl EpochSums {
    fn add(bits: &mut u64, v: f64) {
        *bits = (f64::from_bits(*bits) + v).to_bits();
    }
}

/// A one-shot search in progress: supernet, architecture weights, both optimizers, noise
/// generator and position. Drive it with [`OneShotSearch::step`] /
/// [`OneShotSearch::run_epoch`], or use [`super::run_oneshot`].
///
/// Generic over what it trains ([`OneShotNet`]): the image supernets ([`Supernet`], the
/// default, started by [`OneShotSearch::new`]) and the recurrent supernet
/// ([`crate::nets::rnn::RnnSupernet`], started by [`OneShotSearch::start`] on a text corpus)
/// share every line of the bilevel loop.
pub struct OneShotSearch<N: OneShotNet = Supernet> {
    pub(crate) config: OneShotConfig,
    pub(crate) net: N,
    pub(crate) arch: ArchParams,
    pub(crate) w_params: Vec<Tensor>,
    pub(crate) w_opt: Sgd,
    pub(crate) a_opt: Adam,
    pub(crate) schedule: CosineAnnealingLr,
    pub(crate) rng: ChaCha8Rng,
    pub(crate) data: N::Data,
    pub(crate) epoch: usize,
    pub(crate) step_in_epoch: usize,
    pub(crate) global_step: u64,
    pub(crate) sums: EpochSums,
    pub(crate) history: Vec<EpochRecord>,
    /// ENAS: the controller.
    pub(crate) controller: Option<crate::strategy::LstmController>,
    /// Data-parallel: the ranks this search runs on (`None`: one process, no collectives).
    pub(crate) comm: Option<Arc<dyn Communicator>>,
    /// This rank's share of the current (weight-training, architecture) batch (1 without a
    /// communicator).
    pub(crate) shard_weights: (f32, f32),
}

/// The image search's halves of its training set and their batch orders.
pub struct ImageHalves {
    pub(crate) train: Dataset,
    pub(crate) valid: Dataset,
    train_order: Vec<usize>,
    valid_order: Vec<usize>,
    order_epoch: Option<usize>,
}

/// Where a forward pass takes its mixing from.
#[derive(Clone, Copy)]
enum MixSource<'a> {
    /// Softmax of detached architecture weights (weight steps).
    SoftDetached,
    /// Softmax recorded for the architecture gradient.
    SoftRecorded,
    /// A given mixing (GDAS samples).
    Fixed(&'a Mixing),
}

/// A batch as tensors: images `[n, c, h, w]` and labels.
pub struct SearchBatch {
    /// Images.
    pub x: Tensor,
    /// Labels.
    pub y: Vec<usize>,
}

pub(crate) fn gather(data: &Dataset, idx: &[usize], device: Device) -> Result<SearchBatch> {
    let (c, h, w) = data.shape();
    let per = c * h * w;
    let mut v = Vec::with_capacity(idx.len() * per);
    let mut y = Vec::with_capacity(idx.len());
    let labels = data.labels();
    let images = data.images();
    for &i in idx {
        v.extend_from_slice(&images[i * per..(i + 1) * per]);
        y.push(labels[i]);
    }
    Ok(SearchBatch {
        x: Tensor::from_vec_on(v, &[idx.len(), c, h, w], device)?,
        y,
    })
}

fn correct(logits: &Tensor, y: &[usize]) -> Result<u64> {
    Ok(logits
        .argmax_rows()?
        .iter()
        .zip(y)
        .filter(|(a, b)| a == b)
        .count() as u64)
}

/// A permutation of `0..n` for `epoch`, a pure function of `(seed, salt, epoch)`.
pub(crate) fn epoch_order(n: usize, seed: u64, salt: u64, epoch: usize) -> Vec<usize> {
    let mut v: Vec<usize> = (0..n).collect();
    let s = seed
        ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ^ (epoch as u64 + 1).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    v.shuffle(&mut ChaCha8Rng::seed_from_u64(s));
    v
}

impl<N: OneShotNet> OneShotSearch<N> {
    /// Starts a search of `config` on `input` (the supernet's [`OneShotNet::Input`]).
    pub fn start(config: OneShotConfig, input: &N::Input) -> Result<Self> {
        config.validate()?;
        let mut seeder = ChaCha8Rng::seed_from_u64(config.seed);
        let net_seed: u64 = rand::Rng::random(&mut seeder);
        let (net, data) = N::build(&config, input, net_seed)?;
        let mut arch = ArchParams::new(config.space, &mut seeder);
        if config.method == Method::PcDarts {
            arch = arch.with_edge_betas(&mut seeder);
        }
        // Both move before the optimizers exist, whose state follows the parameters' device.
        net.to_device(config.device)?;
        for a in arch.tensors() {
            a.move_to(config.device)?;
        }
        let noise_seed: u64 = rand::Rng::random(&mut seeder);
        let controller = if config.method == Method::Enas {
            // drawn after every other seed, so the other methods' streams are unchanged
            let init_seed: u64 = rand::Rng::random(&mut seeder);
            Some(super::enas::controller_for(&config, init_seed)?)
        } else {
            None
        };
        let w_params = net.parameters();
        let w_opt = Sgd::new(
            w_params.clone(),
            SgdConfig::new(config.w_lr)
                .momentum(config.w_momentum)
                .weight_decay(config.w_weight_decay),
        )?;
        let a_opt = Adam::new(
            arch.tensors(),
            AdamConfig::new(config.a_lr)
                .betas(config.a_beta1, config.a_beta2)
                .weight_decay(config.a_weight_decay),
        )?;
        let schedule = CosineAnnealingLr::new(config.w_lr, config.epochs, config.w_lr_min)?;
        Ok(OneShotSearch {
            config,
            net,
            arch,
            w_params,
            w_opt,
            a_opt,
            schedule,
            rng: ChaCha8Rng::seed_from_u64(noise_seed),
            data,
            epoch: 0,
            step_in_epoch: 0,
            global_step: 0,
            sums: EpochSums::default(),
            history: Vec::new(),
            controller,
            comm: None,
            shard_weights: (1.0, 1.0),
        })
    }

    /// The communicator of a data-parallel search.
    pub fn communicator(&self) -> Option<&Arc<dyn Communicator>> {
        self.comm.as_ref()
    }

    /// This rank's `[lo, hi)` of a batch of `len` and its share `(hi - lo) / len`.
    fn shard(&self, len: usize) -> ((usize, usize), f32) {
        match &self.comm {
            None => ((0, len), 1.0),
            Some(c) => {
                let (lo, hi) = shard_range(len, c.rank(), c.size());
                ((lo, hi), ((hi - lo) as f64 / len as f64) as f32)
            }
        }
    }

    /// Data-parallel: the batch-norm synchronisation of a pass over a shard of share `weight`.
    fn sync_bn(&self, weight: f32) -> Option<SyncBn> {
        let comm = self.comm.as_ref()?;
        // one rank has nothing to synchronise: plain batch norm (as PyTorch's SyncBatchNorm
        // falls back to it), so one rank is the single-process run bit for bit
        if !self.config.sync_bn || comm.size() == 1 {
            return None;
        }
        let comm = comm.clone();
        Some(SyncBn {
            reduce: Arc::new(move |buf: &mut [f64]| {
                comm.allreduce_sum_f64(buf)
                    .map_err(|e| TensorError::Collective(e.to_string()))
            }),
            weight: weight as f64,
        })
    }

    /// Data-parallel: every rank takes rank 0's batch-norm running statistics (PyTorch DDP's
    /// `broadcast_buffers`). Running statistics are read only in evaluation mode, so doing it
    /// before each evaluation makes every rank evaluate as rank 0, whose statistics (the ones
    /// its checkpoints hold) are never changed by the others: a resumed run, whose ranks all
    /// load rank 0's, evaluates as the uninterrupted one.
    fn broadcast_buffers(&self) -> Result<()> {
        let Some(comm) = &self.comm else {
            return Ok(());
        };
        let bufs = self.net.named_buffers();
        let mut bytes = Vec::new();
        if comm.rank() == 0 {
            for (_, t) in &bufs {
                for v in t.to_vec()? {
                    bytes.extend_from_slice(&v.to_le_bytes());
                }
            }
        }
        comm.broadcast_bytes(&mut bytes, 0).map_err(comm_err)?;
        let mut off = 0;
        for (name, t) in &bufs {
            let end = off + 4 * t.numel();
            let chunk = bytes.get(off..end).ok_or_else(|| {
                OneShotError::Config(format!("rank 0 sent too few buffer values for {name}"))
            })?;
            let v: Vec<f32> = chunk
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            t.set_data(&v)?;
            off = end;
        }
        Ok(())
    }

    /// Data-parallel: sums `weight` times the gradients of `params` over the ranks, in one
    /// flat buffer (tensors without a gradient take no part: the graph, hence which tensors
    /// have one, is the same on every rank).
    fn allreduce_grads(&self, params: &[Tensor], weight: f32) -> Result<()> {
        let Some(comm) = &self.comm else {
            return Ok(());
        };
        let mut flat: Vec<f32> = Vec::new();
        let mut lens = Vec::with_capacity(params.len());
        for p in params {
            match p.grad_vec()? {
                Some(g) => {
                    flat.extend(g.iter().map(|v| v * weight));
                    lens.push(Some(g.len()));
                }
                None => lens.push(None),
            }
        }
        comm.allreduce_sum_f32(&mut flat).map_err(comm_err)?;
        let mut off = 0;
        for (p, len) in params.iter().zip(lens) {
            if let Some(len) = len {
                p.set_grad(Some(&flat[off..off + len]))?;
                off += len;
            }
        }
        Ok(())
    }

    /// The settings.
    pub fn config(&self) -> &OneShotConfig {
        &self.config
    }

    /// The supernet.
    pub fn supernet(&self) -> &N {
        &self.net
    }

    /// The data the search reads and its position in it ([`OneShotNet::Data`]).
    pub fn data(&self) -> &N::Data {
        &self.data
    }
    /// The architecture weights.
    pub fn arch(&self) -> &ArchParams {
        &self.arch
    }

    /// Current epoch (0-based; equals `epochs` when finished).
    pub fn epoch(&self) -> usize {
        self.epoch
    }

    /// Steps done in the current epoch.
    pub fn step_in_epoch(&self) -> usize {
        self.step_in_epoch
    }

    /// Steps done in total.
    pub fn global_step(&self) -> u64 {
        self.global_step
    }

    /// The network weights (what the SGD optimizer updates), in [`Module::parameters`] order.
    pub fn weights(&self) -> &[Tensor] {
        &self.w_params
    }

    /// Records of the finished epochs.
    pub fn history(&self) -> &[EpochRecord] {
        &self.history
    }

    /// Is the search finished (all epochs run, or DARTS+ stopped it early)?
    pub fn is_done(&self) -> bool {
        self.epoch >= self.config.epochs || self.stopped_early()
    }

    /// Did DARTS+ stop the search early (the last epoch record says why)?
    pub fn stopped_early(&self) -> bool {
        self.history.last().is_some_and(|r| r.stop_reason.is_some())
    }

    /// Steps per epoch.
    pub fn steps_per_epoch(&self) -> usize {
        N::steps_per_epoch(&self.config, &self.data)
    }

    /// The genotype the current architecture weights derive.
    pub fn genotype(&self) -> Result<Genotype> {
        let mut s = self.arch.snapshot()?;
        // PC-DARTS: an op's weight is scaled by its edge's normalised weight before deriving
        for (w, e) in [
            (Some(&mut s.weights_normal), &s.edge_weights_normal),
            (s.weights_reduce.as_mut(), &s.edge_weights_reduce),
        ] {
            if let (Some(w), Some(e)) = (w, e) {
                for (row, &b) in w.iter_mut().zip(e) {
                    row.iter_mut().for_each(|v| *v *= b);
                }
            }
        }
        Ok(match self.config.space {
            SpaceKind::Darts => Genotype::Darts(derive_darts_genotype(
                &s.weights_normal,
                s.weights_reduce.as_deref().unwrap_or(&[]),
            )?),
            SpaceKind::Nb201 => Genotype::Nb201(derive_nb201_cell(&s.weights_normal)?),
            SpaceKind::Rnn => Genotype::Rnn(derive_rnn_cell(&s.weights_normal)?),
        })
    }

    pub(crate) fn check_finite(&self, what: &str, v: f32) -> Result<()> {
        if v.is_finite() {
            Ok(())
        } else {
            Err(OneShotError::NonFinite {
                what: what.into(),
                epoch: self.epoch,
                step: self.step_in_epoch,
            })
        }
    }

    /// The current learning rate of the weights.
    pub fn lr(&self) -> f32 {
        self.schedule.lr_at(self.epoch)
    }

    pub(crate) fn zero_all(&self) {
        for p in &self.w_params {
            p.zero_grad();
        }
        for a in self.arch.tensors() {
            a.zero_grad();
        }
    }

    /// One weight step: zeroed gradients, `pass` (a loss and its backward pass), clipping,
    /// SGD; returns what `pass` returned. Data-parallel: the weights' gradients are summed
    /// over the ranks (each weighted by its share of the batch) before clipping.
    pub(crate) fn weight_step_by(
        &mut self,
        pass: impl FnOnce(&Self) -> Result<(f32, u64)>,
    ) -> Result<(f32, u64)> {
        self.zero_all();
        let (lv, corr) = pass(self)?;
        self.allreduce_grads(&self.w_params, self.shard_weights.0)?;
        clip_grad_norm(&self.w_params, self.config.grad_clip)?;
        self.w_opt.step()?;
        Ok((lv, corr))
    }

    /// First-order architecture gradient: d L_valid / d alpha at the current weights, left in
    /// the architecture tensors' `.grad` (the weights' gradients are not computed: see
    /// [`Tensor::backward_for`]). Returns (loss, correct). Data-parallel: the gradient is the
    /// whole batch's (summed over the ranks), the loss and count this rank's shard's.
    pub fn arch_grad_first_order(&mut self, batch: &N::Batch) -> Result<(f32, u64)> {
        self.zero_all();
        let alphas = self.arch.tensors();
        let r = N::loss_backward(self, "architecture loss", batch, true, Some(&alphas))?;
        self.allreduce_grads(&alphas, self.shard_weights.1)?;
        Ok(r)
    }

    /// beta-DARTS: the regulariser `lambda * sum over cell types of the mean over edges of
    /// logsumexp(alpha_edge)` at the current op logits (edge logits, if any, are not
    /// regularised), computed in f64 on the host.
    pub fn beta_regulariser(&self, lambda: f32) -> Result<f64> {
        let mut total = 0.0f64;
        for a in [Some(&self.arch.normal), self.arch.reduce.as_ref()]
            .into_iter()
            .flatten()
        {
            let (e, k) = (a.shape()[0], a.shape()[1]);
            let v = a.to_vec()?;
            let mut sum = 0.0f64;
            for row in v.chunks(k) {
                let mx = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
                let s: f64 = row.iter().map(|&x| (x as f64 - mx).exp()).sum();
                sum += mx + s.ln();
            }
            total += sum / e as f64;
        }
        Ok(lambda as f64 * total)
    }

    /// beta-DARTS: adds the gradient of [`OneShotSearch::beta_regulariser`],
    /// `lambda / edges * softmax(alpha)` per cell type, to the op logits' `.grad` (computed on
    /// their device).
    pub fn add_beta_regulariser_grad(&self, lambda: f32) -> Result<()> {
        for a in [Some(&self.arch.normal), self.arch.reduce.as_ref()]
            .into_iter()
            .flatten()
        {
            let e = a.shape()[0];
            let d = no_grad(|| -> Result<Tensor> {
                let g = grad_or_zeros(a)?;
                let r = a.detach().softmax(1)?.scale(lambda / e as f32);
                Ok(g.add(&r)?)
            })?;
            a.set_grad_from(&d)?;
        }
        Ok(())
    }

    /// Copies of the weights on their device.
    fn weights_data(&self) -> Vec<Tensor> {
        self.w_params.iter().map(Tensor::detach).collect()
    }

    fn set_weights(&self, w: &[Tensor]) -> Result<()> {
        for (p, v) in self.w_params.iter().zip(w) {
            p.copy_from(v)?;
        }
        Ok(())
    }

    /// Gradient of the training loss w.r.t. the architecture weights at the current weights
    /// (used by the Hessian-vector product); one tensor per architecture tensor.
    fn train_arch_grad(&self, batch: &N::Batch) -> Result<Vec<Tensor>> {
        self.zero_all();
        let alphas = self.arch.tensors();
        N::loss_backward(
            self,
            "training loss (Hessian-vector product)",
            batch,
            true,
            Some(&alphas),
        )?;
        self.arch.tensors().iter().map(grad_or_zeros).collect()
    }

    /// The second-order (unrolled) architecture gradient of DARTS, left in the architecture
    /// tensors' `.grad`, with `xi` the virtual step size (the current weight learning rate):
    ///
    /// 1. `w' = w - xi * (momentum * buf + grad_w L_train(w, a) + wd * w)` (the SGD step the
    ///    weight optimizer would take, without clipping, as the original);
    /// 2. `g_a = grad_a L_valid(w', a)`, `v = grad_w' L_valid(w', a)`;
    /// 3. `h = (grad_a L_train(w + R v, a) - grad_a L_train(w - R v, a)) / (2R)`,
    ///    `R = unroll_r / ||v||`;
    /// 4. gradient `g_a - xi * h`.
    ///
    /// Everything is tensor arithmetic on the supernet's device (only `||v||` is read back,
    /// to choose `R`). The weights are restored bit-exactly afterwards; the BN running
    /// statistics touched by the unrolled forward pass are restored too (the original runs it
    /// on a copy of the model). On text, the recurrent state each half carries to the next
    /// step is the one of the last pass over its batch, as in the original: the unrolled
    /// validation pass, and the weight step that follows. Returns the loss and correct count of the unrolled validation
    /// pass.
    pub fn arch_grad_second_order(
        &mut self,
        train: &N::Batch,
        valid: &N::Batch,
        xi: f32,
    ) -> Result<(f32, u64)> {
        let w0 = self.weights_data();
        // 1. Training gradient at w.
        self.zero_all();
        N::loss_backward(self, "training loss (unrolled step)", train, false, None)?;
        let c = self.w_opt.config();
        let (mom, wd) = (c.momentum, c.weight_decay);
        no_grad(|| -> Result<()> {
            for (i, p) in self.w_params.iter().enumerate() {
                let g = grad_or_zeros(p)?;
                // (momentum * buf + g) + wd * w, in the original's order
                let d = match self.w_opt.momentum_buffer(i)? {
                    Some(b) => b.scale(mom).add(&g)?,
                    None => g,
                };
                let d = d.add(&p.scale(wd))?;
                p.copy_from(&p.sub(&d.scale(xi))?)?;
            }
            Ok(())
        })?;
        // 2. Validation gradient at w' (BN statistics of this pass are discarded).
        let buffers = self.net.buffer_snapshot();
        // (the weight gradient v is needed too, so not `arch_grad_first_order`)
        self.zero_all();
        let (lv, corr) =
            N::loss_backward(self, "architecture loss (unrolled step)", valid, true, None)?;
        let g_a: Vec<Tensor> = self
            .arch
            .tensors()
            .iter()
            .map(grad_or_zeros)
            .collect::<Result<_>>()?;
        let v: Vec<Tensor> = self
            .w_params
            .iter()
            .map(grad_or_zeros)
            .collect::<Result<_>>()?;
        buffers.restore()?;
        // 3. Finite-difference Hessian-vector product around w.
        // ||v||: squares summed per tensor and over tensors on the device, read once
        let norm = no_grad(|| -> Result<f64> {
            let mut sq: Option<Tensor> = None;
            for x in &v {
                let s = x.square().sum();
                sq = Some(match sq {
                    Some(acc) => acc.add(&s)?,
                    None => s,
                });
            }
            Ok(sq.map_or(Ok(0.0), |s| s.item())?.max(0.0) as f64)
        })?
        .sqrt();
        let h: Vec<Tensor> = if norm > 0.0 {
            let r = (self.config.unroll_r as f64 / norm) as f32;
            let shifted = |sign: f32| -> Result<Vec<Tensor>> {
                no_grad(|| {
                    w0.iter()
                        .zip(&v)
                        .map(|(w, v)| Ok(w.add(&v.scale(sign * r))?))
                        .collect()
                })
            };
            self.set_weights(&shifted(1.0)?)?;
            let gp = self.train_arch_grad(train)?;
            self.set_weights(&shifted(-1.0)?)?;
            let gn = self.train_arch_grad(train)?;
            no_grad(|| -> Result<Vec<Tensor>> {
                gp.iter()
                    .zip(&gn)
                    .map(|(p, n)| {
                        let two_r = Tensor::full_on(&[], 2.0 * r, p.device())?;
                        Ok(p.sub(n)?.div(&two_r)?)
                    })
                    .collect()
            })?
        } else {
            g_a.iter()
                .map(|g| Ok(Tensor::zeros_on(g.shape(), g.device())?))
                .collect::<Result<_>>()?
        };
        self.set_weights(&w0)?;
        // 4. Combine.
        self.zero_all();
        for ((a, g), h) in self.arch.tensors().iter().zip(&g_a).zip(&h) {
            let d = no_grad(|| g.sub(&h.scale(xi)))?;
            a.set_grad_from(&d)?;
        }
        Ok((lv, corr))
    }

    /// One search step (one architecture step and one weight step; GDAS: weights first, as in
    /// its code; DARTS: architecture first, as in its code).
    pub fn step(&mut self) -> Result<()> {
        if self.is_done() {
            return Err(OneShotError::Config(
                "the search is already finished".into(),
            ));
        }
        let lr = self.lr();
        self.w_opt.set_lr(lr);
        let step = self.step_in_epoch;
        let (tb, vb) = N::batch_pair(self, step)?;
        let (tl, tc, sl, sc) = match self.config.method {
            Method::Darts1
            | Method::Darts2
            | Method::PcDarts
            | Method::BetaDarts
            | Method::DartsPlus => {
                let (sl, sc) = if self.config.method != Method::Darts2 {
                    self.arch_grad_first_order(&vb)?
                } else {
                    self.arch_grad_second_order(&tb, &vb, lr)?
                };
                if self.config.method == Method::BetaDarts {
                    self.add_beta_regulariser_grad(self.config.beta_lambda_at(self.epoch))?;
                }
                self.a_opt.step()?;
                let (tl, tc) = self
                    .weight_step_by(|s| N::loss_backward(s, "training loss", &tb, false, None))?;
                (tl, tc, sl, sc)
            }
            Method::Spos | Method::RandomWs | Method::Gdas | Method::Enas => {
                N::single_path_step(self, &tb, &vb)?
            }
        };
        // losses as sums over the examples; data-parallel: over every rank's shard
        let (tn, vn) = (N::batch_len(&tb) as f64, N::batch_len(&vb) as f64);
        let mut st = [tl as f64 * tn, tc as f64, tn, sl as f64 * vn, sc as f64, vn];
        if let Some(c) = &self.comm {
            c.allreduce_sum_f64(&mut st).map_err(comm_err)?;
        }
        let s = &mut self.sums;
        EpochSums::add(&mut s.train_loss_bits, st[0]);
        s.train_correct += st[1] as u64;
        s.train_seen += st[2] as u64;
        EpochSums::add(&mut s.search_loss_bits, st[3]);
        s.search_correct += st[4] as u64;
        s.search_seen += st[5] as u64;
        self.step_in_epoch += 1;
        self.global_step += 1;
        Ok(())
    }

    /// Loss and accuracy on the whole architecture half in evaluation mode (softmax mixing for
    /// DARTS, the argmax op per edge for GDAS, the reference path with recalibrated BN
    /// statistics for SPOS/RSWS: see [`super::spos`]; on text, the loss in nats and the
    /// accuracy per character), without gradients.
    pub fn evaluate_valid(&mut self) -> Result<(f64, f64)> {
        N::evaluate_valid(self)
    }

    /// Closes the current epoch: evaluation (if configured), derivation, record.
    pub(crate) fn finish_epoch(&mut self) -> Result<EpochRecord> {
        self.broadcast_buffers()?;
        // ENAS: the epoch's cell is the best of the controller's samples
        let enas_pick = N::controller_pick(self)?;
        let (valid_loss, valid_acc) = if self.config.eval_each_epoch {
            let (l, a) = match &enas_pick {
                Some(g) => N::evaluate_pick(self, g)?,
                None => self.evaluate_valid()?,
            };
            (Some(l), Some(a))
        } else {
            (None, None)
        };
        let genotype = if let Some(g) = enas_pick {
            g
        } else if self.config.method.samples_paths() {
            self.reference_path()
        } else {
            self.genotype()?
        };
        let nb201_cifar10_test = match genotype {
            Genotype::Nb201(cell) => crate::tabular::Nb201Table::embedded()
                .ok()
                .map(|t| t.get(&cell).test_200[0]),
            Genotype::Darts(_) | Genotype::Rnn(_) => None,
        };
        let stop_reason = if self.config.method == Method::DartsPlus {
            let n = OneShotConfig::plus_count(&genotype);
            let t = self.config.plus_threshold_or_default();
            (n >= t).then(|| match self.config.space {
                SpaceKind::Darts => format!(
                    "DARTS+ early stop: the derived normal cell has {n} skip connections \
                     (threshold {t})"
                ),
                SpaceKind::Nb201 | SpaceKind::Rnn => format!(
                    "DARTS+ early stop: the derived cell has {n} parameter-free ops \
                     (threshold {t})"
                ),
            })
        } else {
            None
        };
        let s = &self.sums;
        let div = |a: f64, n: u64| if n == 0 { f64::NAN } else { a / n as f64 };
        let rec = EpochRecord {
            epoch: self.epoch,
            lr: self.lr(),
            tau: (self.config.method == Method::Gdas).then(|| self.config.tau_at(self.epoch)),
            steps: self.step_in_epoch,
            train_loss: div(f64::from_bits(s.train_loss_bits), s.train_seen),
            train_acc: div(s.train_correct as f64, s.train_seen),
            search_loss: div(f64::from_bits(s.search_loss_bits), s.search_seen),
            search_acc: div(s.search_correct as f64, s.search_seen),
            valid_loss,
            valid_acc,
            genotype,
            nb201_cifar10_test,
            arch: self.arch.snapshot()?,
            beta_lambda: (self.config.method == Method::BetaDarts)
                .then(|| self.config.beta_lambda_at(self.epoch)),
            stop_reason,
        };
        self.history.push(rec.clone());
        self.epoch += 1;
        self.step_in_epoch = 0;
        self.sums = EpochSums::default();
        Ok(rec)
    }

    /// Runs the rest of the current epoch and closes it.
    pub fn run_epoch(&mut self) -> Result<EpochRecord> {
        while self.step_in_epoch < self.steps_per_epoch() {
            self.step()?;
        }
        self.finish_epoch()
    }

    /// Weight-optimizer state (for checkpoints).
    pub(crate) fn sgd_state(&self) -> Result<SgdState> {
        Ok(self.w_opt.state()?)
    }

    /// Architecture-optimizer state (for checkpoints).
    pub(crate) fn adam_state(&self) -> Result<AdamState> {
        Ok(self.a_opt.state()?)
    }

    pub(crate) fn load_optimizers(&mut self, sgd: SgdState, adam: AdamState) -> Result<()> {
        self.w_opt.load_state(sgd)?;
        self.a_opt.load_state(adam)?;
        Ok(())
    }
}

/// A failed collective as a one-shot error.
fn comm_err(e: crate::dist::CommError) -> OneShotError {
    OneShotError::Comm(e)
}

impl OneShotSearch<Supernet> {
    /// Starts a search on `data` (the training set: its first `train_portion` trains the
    /// weights, the rest the architecture, as the original split).
    pub fn new(config: OneShotConfig, data: &Dataset) -> Result<OneShotSearch> {
        OneShotSearch::start(config, data)
    }

    /// Makes this search data-parallel over `comm`'s ranks (every rank builds the same search,
    /// same settings and data, and calls this): each rank takes its contiguous shard of every
    /// weight-training and architecture batch ([`shard_range`]), and after each backward pass
    /// the gradients of the architecture weights (the architecture step) and of the network
    /// weights (the weight step) are summed over the ranks in one flat buffer each, every
    /// rank's weighted by its share of the batch, so every rank takes the step one process
    /// takes on the whole batch. Batch norm normalises each shard by its own statistics (as
    /// PyTorch's DDP does) unless [`OneShotConfig::sync_bn`]. Only the first-order DARTS
    /// methods run data-parallel (darts, pcdarts, beta-darts, darts-plus).
    ///
    /// Collective: rank 0 broadcasts its settings and data fingerprint, and a rank whose own
    /// differ refuses to start.
    pub fn with_communicator(mut self, comm: Arc<dyn Communicator>) -> Result<OneShotSearch> {
        let m = self.config.method;
        let size = comm.size();
        if !matches!(
            m,
            Method::Darts1 | Method::PcDarts | Method::BetaDarts | Method::DartsPlus
        ) {
            return Err(OneShotError::Config(format!(
                "{} does not run data-parallel ({size} ranks); data-parallel runs support darts, \
                 pcdarts, beta-darts and darts-plus (first order)",
                m.name()
            )));
        }
        if self.config.sync_bn && self.config.recompute_cells > 0 {
            return Err(OneShotError::Config(
                "--sync-bn with recomputed cells is not supported".into(),
            ));
        }
        // every rank needs at least one example of every batch
        let b = self.config.batch_size;
        let n = self.data.train.len();
        let last = self.steps_per_epoch() - 1;
        let smallest_train = (n - last * b).min(b);
        let valid_batch = b.min(self.data.valid.len());
        if smallest_train < size || valid_batch < size {
            return Err(OneShotError::Config(format!(
                "{size} ranks need at least {size} examples in every batch, but a \
                 weight-training batch has {smallest_train} and an architecture batch \
                 {valid_batch} (raise --batch-size or --limit-train, or use fewer ranks)"
            )));
        }
        // the same search on every rank
        let mine = format!(
            "{}\n{}",
            serde_json::to_string(&self.config).map_err(|e| OneShotError::Config(e.to_string()))?,
            self.full_data_fingerprint()
        );
        let mut root = mine.clone().into_bytes();
        comm.broadcast_bytes(&mut root, 0).map_err(comm_err)?;
        if root != mine.as_bytes() {
            return Err(OneShotError::Config(format!(
                "rank {} has other settings or data than rank 0 (every rank must be started \
                 with the same arguments and data): rank 0 {:?}, rank {} {mine:?}",
                comm.rank(),
                String::from_utf8_lossy(&root),
                comm.rank()
            )));
        }
        self.comm = Some(comm);
        Ok(self)
    }

    fn ensure_orders(&mut self) {
        if self.data.order_epoch != Some(self.epoch) {
            let s = self.config.seed;
            self.data.train_order = epoch_order(self.data.train.len(), s, 1, self.epoch);
            self.data.valid_order = epoch_order(self.data.valid.len(), s, 2, self.epoch);
            self.data.order_epoch = Some(self.epoch);
        }
    }

    /// The (weight-training, architecture) batches of step `step` of the current epoch (in a
    /// data-parallel search, this rank's shards of them).
    pub fn batch_pair(&mut self, step: usize) -> Result<(SearchBatch, SearchBatch)> {
        self.ensure_orders();
        let b = self.config.batch_size;
        let n = self.data.train.len();
        let lo = step * b;
        if lo >= n {
            return Err(OneShotError::Config(format!(
                "step {step} is past the end of the epoch ({} steps)",
                n.div_ceil(b)
            )));
        }
        let hi = (lo + b).min(n);
        let nv = self.data.valid.len();
        let vidx: Vec<usize> = (0..b.min(nv))
            .map(|i| self.data.valid_order[(lo + i) % nv])
            .collect();
        // data-parallel: this rank's shard of each
        let ((ta, tb), tw) = self.shard(hi - lo);
        let ((va, vb), vw) = self.shard(vidx.len());
        self.shard_weights = (tw, vw);
        let t = gather(
            &self.data.train,
            &self.data.train_order[lo + ta..lo + tb],
            self.config.device,
        )?;
        let v = gather(&self.data.valid, &vidx[va..vb], self.config.device)?;
        Ok((t, v))
    }

    fn detached_soft(&self) -> Result<Mixing> {
        self.arch.detached().soft()
    }

    /// Loss of `batch` and its gradients (accumulated; with `only`, just those leaves'), under
    /// the mixing `src` describes: returns (loss, correct). Data-parallel with
    /// [`OneShotConfig::sync_bn`]: batch norm over the whole batch, this rank's shard weighted
    /// by its share (of the architecture batch for the recorded softmax, else of the
    /// weight-training batch).
    fn loss_backward(
        &self,
        what: &str,
        batch: &SearchBatch,
        src: MixSource<'_>,
        only: Option<&[Tensor]>,
    ) -> Result<(f32, u64)> {
        let weight = match src {
            MixSource::SoftRecorded => self.shard_weights.1,
            MixSource::SoftDetached | MixSource::Fixed(_) => self.shard_weights.0,
        };
        with_sync_bn(self.sync_bn(weight), || {
            self.loss_backward_inner(what, batch, src, only)
        })
    }

    fn loss_backward_inner(
        &self,
        what: &str,
        batch: &SearchBatch,
        src: MixSource<'_>,
        only: Option<&[Tensor]>,
    ) -> Result<(f32, u64)> {
        let (x, y) = (&batch.x, &batch.y[..]);
        let (lv, pred) = match src {
            MixSource::Fixed(m) => self.net.loss_backward_plain(x, y, m, only)?,
            MixSource::SoftDetached | MixSource::SoftRecorded => {
                let make = || -> Result<Mixing> {
                    if matches!(src, MixSource::SoftDetached) {
                        self.detached_soft()
                    } else {
                        self.arch.soft()
                    }
                };
                if self.config.recompute_cells > 0 {
                    let k = self.config.recompute_cells;
                    self.net.loss_backward_recompute(x, y, &make, k, only)?
                } else {
                    self.net.loss_backward_plain(x, y, &make()?, only)?
                }
            }
        };
        self.check_finite(what, lv)?;
        let corr = pred.iter().zip(y).filter(|(a, b)| a == b).count() as u64;
        Ok((lv, corr))
    }

    /// One weight step on `batch` under `src`: returns (loss, correct).
    fn weight_step(&mut self, batch: &SearchBatch, src: MixSource<'_>) -> Result<(f32, u64)> {
        self.weight_step_by(|s| s.loss_backward("training loss", batch, src, None))
    }

    /// One weight step on `batch` under the path mixing `mix`: returns (loss, correct).
    pub(crate) fn weight_step_on(
        &mut self,
        batch: &SearchBatch,
        mix: &Mixing,
    ) -> Result<(f32, u64)> {
        self.weight_step(batch, MixSource::Fixed(mix))
    }

    /// Loss and correct count of `batch` under `mix` in the supernet's current mode, without
    /// gradients (a training-mode pass updates BN running statistics).
    pub(crate) fn batch_loss(&self, batch: &SearchBatch, mix: &Mixing) -> Result<(f32, u64)> {
        no_grad(|| -> Result<(f32, u64)> {
            let logits = self.net.forward_mix(&batch.x, mix)?;
            Ok((
                logits.cross_entropy(&batch.y)?.item()?,
                correct(&logits, &batch.y)?,
            ))
        })
    }

    /// GDAS, SPOS, RSWS and ENAS: one step on `tb` (weights) and `vb` (architecture).
    fn single_path_step(
        &mut self,
        tb: &SearchBatch,
        vb: &SearchBatch,
    ) -> Result<(f32, u64, f32, u64)> {
        Ok(match self.config.method {
            Method::Enas => self.enas_step(tb, vb)?,
            Method::Spos | Method::RandomWs => {
                // one uniformly sampled path: its weight step, then (no gradient) its loss on
                // the architecture batch, the numbers the other methods report there
                let g = super::spos::sample_path(self.config.space, &mut self.rng);
                let mix = super::spos::path_mixing(&g, self.config.device)?;
                let (tl, tc) = self.weight_step(tb, MixSource::Fixed(&mix))?;
                let (sl, sc) = no_grad(|| -> Result<(f32, u64)> {
                    let logits = self.net.forward_mix(&vb.x, &mix)?;
                    Ok((
                        logits.cross_entropy(&vb.y)?.item()?,
                        correct(&logits, &vb.y)?,
                    ))
                })?;
                self.check_finite("architecture-half loss", sl)?;
                (tl, tc, sl, sc)
            }
            Method::Gdas => {
                let tau = self.config.tau_at(self.epoch);
                let mix = { self.arch.detached().gumbel(tau, &mut self.rng)? };
                let (tl, tc) = self.weight_step(tb, MixSource::Fixed(&mix))?;
                drop(mix);
                self.zero_all();
                let mix = self.arch.gumbel(tau, &mut self.rng)?;
                let logits = self.net.forward_mix(&vb.x, &mix)?;
                let loss = logits.cross_entropy(&vb.y)?;
                let sl = loss.item()?;
                self.check_finite("architecture loss", sl)?;
                let sc = correct(&logits, &vb.y)?;
                drop(logits);
                drop(mix);
                loss.backward_for(&self.arch.tensors())?;
                self.a_opt.step()?;
                (tl, tc, sl, sc)
            }
            _ => {
                return Err(OneShotError::Config(format!(
                    "{} does not sample paths",
                    self.config.method.name()
                )));
            }
        })
    }

    /// Loss and accuracy on the whole architecture half in evaluation mode (softmax mixing for
    /// DARTS, the argmax op per edge for GDAS, the reference path with recalibrated BN
    /// statistics for SPOS/RSWS, the best of the controller's samples with recalibrated BN
    /// statistics for ENAS: see [`super::spos`], [`super::enas`]), without gradients.
    fn evaluate_valid_image(&mut self) -> Result<(f64, f64)> {
        if self.config.method == Method::Enas {
            let g = self.enas_derive()?.best_genotype();
            let batches = self.bn_batches()?;
            return self.path_accuracy(&g, &batches);
        }
        if self.config.method.samples_paths() {
            let batches = self.bn_batches()?;
            return self.path_accuracy(&self.reference_path(), &batches);
        }
        let mix = self.eval_mixing()?;
        self.evaluate_valid_with(&mix)
    }

    /// Loss and accuracy on the whole architecture half in evaluation mode under `mix`,
    /// without gradients.
    pub fn evaluate_valid_with(&mut self, mix: &Mixing) -> Result<(f64, f64)> {
        self.net.set_training(false);
        let result = (|| -> Result<(f64, f64)> {
            let b = self.config.batch_size;
            let n = self.data.valid.len();
            let (mut loss, mut corr) = (0.0f64, 0u64);
            for lo in (0..n).step_by(b) {
                let idx: Vec<usize> = (lo..(lo + b).min(n)).collect();
                let batch = gather(&self.data.valid, &idx, self.config.device)?;
                let (l, c) = no_grad(|| -> Result<(f32, u64)> {
                    let logits = self.net.forward_mix(&batch.x, mix)?;
                    Ok((
                        logits.cross_entropy(&batch.y)?.item()?,
                        correct(&logits, &batch.y)?,
                    ))
                })?;
                loss += l as f64 * idx.len() as f64;
                corr += c;
            }
            Ok((loss / n as f64, corr as f64 / n as f64))
        })();
        self.net.set_training(true);
        result
    }

    fn eval_mixing(&self) -> Result<Mixing> {
        match self.config.method {
            Method::Darts1
            | Method::Darts2
            | Method::PcDarts
            | Method::BetaDarts
            | Method::DartsPlus => self.detached_soft(),
            Method::Spos | Method::RandomWs | Method::Enas => {
                super::spos::path_mixing(&self.reference_path(), self.config.device)
            }
            Method::Gdas => {
                // argmax per edge on the device; the `e` indices come to the host to steer
                // which op runs
                let hard = |a: &Tensor| -> Result<HardWeights> {
                    HardWeights::one_hot(a.argmax_rows()?, a.shape()[1], a.device())
                };
                Ok(Mixing::Hard {
                    normal: hard(&self.arch.normal)?,
                    reduce: match &self.arch.reduce {
                        Some(r) => Some(hard(r)?),
                        None => None,
                    },
                })
            }
        }
    }
}

impl OneShotNet for Supernet {
    type Input = Dataset;
    type Data = ImageHalves;
    type Batch = SearchBatch;

    fn build(config: &OneShotConfig, data: &Dataset, seed: u64) -> Result<(Self, ImageHalves)> {
        let n = data.len();
        let n_train = ((n as f64) * config.train_portion).floor() as usize;
        if n_train == 0 || n_train >= n {
            return Err(OneShotError::Data(format!(
                "{} examples cannot be split {} / {} into weight and architecture parts",
                n,
                config.train_portion,
                1.0 - config.train_portion
            )));
        }
        let train = data.subset(&(0..n_train).collect::<Vec<_>>())?;
        let valid = data.subset(&(n_train..n).collect::<Vec<_>>())?;
        let (c_in, h, w) = data.shape();
        let min_side = 4;
        if h < min_side || w < min_side {
            return Err(OneShotError::Data(format!(
                "images of {h}x{w} are too small for two reductions (need at least {min_side}x{min_side})"
            )));
        }
        let net_config = SupernetConfig {
            space: config.space,
            c: config.c,
            layers: config.layers,
            in_channels: c_in,
            classes: data.num_classes(),
        };
        let k = if config.method == Method::PcDarts {
            config.pc_k
        } else {
            1
        };
        let net = Supernet::new_partial(net_config, seed, k)?;
        // Sharing is off under synchronised batch norm (the statistics it compares are the
        // rank's own), so a --sync-bn search keeps the unshared layout on every rank count:
        // one rank then does the same arithmetic as several, up to the all-reduce's order.
        if config.sync_bn {
            net.set_share_outputs(false);
        }
        let halves = ImageHalves {
            train,
            valid,
            train_order: Vec::new(),
            valid_order: Vec::new(),
            order_epoch: None,
        };
        Ok((net, halves))
    }

    fn fingerprint(d: &ImageHalves) -> String {
        format!(
            "{}-{}",
            super::checkpoint::data_fingerprint(&d.train),
            super::checkpoint::data_fingerprint(&d.valid)
        )
    }

    fn steps_per_epoch(config: &OneShotConfig, d: &ImageHalves) -> usize {
        let full = d.train.len().div_ceil(config.batch_size);
        match config.steps_per_epoch {
            Some(s) => s.min(full),
            None => full,
        }
    }

    fn batch_pair(s: &mut OneShotSearch, step: usize) -> Result<(SearchBatch, SearchBatch)> {
        s.batch_pair(step)
    }

    fn batch_len(b: &SearchBatch) -> u64 {
        b.y.len() as u64
    }

    fn loss_backward(
        s: &OneShotSearch,
        what: &str,
        batch: &SearchBatch,
        recorded: bool,
        only: Option<&[Tensor]>,
    ) -> Result<(f32, u64)> {
        let src = if recorded {
            MixSource::SoftRecorded
        } else {
            MixSource::SoftDetached
        };
        s.loss_backward(what, batch, src, only)
    }

    fn single_path_step(
        s: &mut OneShotSearch,
        tb: &SearchBatch,
        vb: &SearchBatch,
    ) -> Result<(f32, u64, f32, u64)> {
        s.single_path_step(tb, vb)
    }

    fn evaluate_valid(s: &mut OneShotSearch) -> Result<(f64, f64)> {
        s.evaluate_valid_image()
    }

    fn search_paths(s: &mut OneShotSearch) -> Result<super::spos::PathSearch> {
        s.search_paths()
    }

    fn with_communicator(s: OneShotSearch, comm: Arc<dyn Communicator>) -> Result<OneShotSearch> {
        s.with_communicator(comm)
    }

    fn controller_pick(s: &mut OneShotSearch) -> Result<Option<Genotype>> {
        Ok(if s.config.method == Method::Enas {
            Some(s.enas_derive()?.best_genotype())
        } else {
            None
        })
    }

    fn evaluate_pick(s: &mut OneShotSearch, g: &Genotype) -> Result<(f64, f64)> {
        let batches = s.bn_batches()?;
        s.path_accuracy(g, &batches)
    }
}

/// The gradient of `t` as a tensor on its device (zeros when it has none).
fn grad_or_zeros(t: &Tensor) -> Result<Tensor> {
    Ok(match t.grad()? {
        Some(g) => g,
        None => Tensor::zeros_on(t.shape(), t.device())?,
    })
}
