//! Training language models on text: the train evaluator of the recurrent-cell space.
//!
//! [`train_lm`] trains an [`RnnLm`] with truncated BPTT ([`TokenWindows`] over the training
//! stream, the state carried across windows detached by [`CarriedState`]), Adam and gradient
//! clipping, then measures **bits per character** on the validation and test streams
//! ([`evaluate_bpc`]: the mean cross-entropy of every next-character prediction of the stream,
//! in bits, the state carried through the whole stream). [`TextEvaluator`] is the
//! [`Evaluator`] of [`RnnGenotype`]s: searches read the validation bpc only.
//!
//! ```no_run
//! use nas_search::data::text::TextSpec;
//! use nas_search::nets::rnn::CellKind;
//! use nas_search::rnn::{TextRecipe, train_lm};
//! use nas_space::rnn::DARTS_V2_RNN;
//! let corpus = TextSpec::Shakespeare.load(64)?;
//! let r = train_lm(&CellKind::Darts(DARTS_V2_RNN), &corpus, &TextRecipe::default(), 0, None)?;
//! println!("validation {:.3} bpc, test {:.3} bpc", r.valid_bpc, r.test_bpc);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::sync::Arc;
use std::time::Instant;

use nas_space::rnn::RnnGenotype;
use nas_tensor::nn::{CarriedState, Module, TokenWindows};
use nas_tensor::optim::{Adam, AdamConfig, Optimizer, clip_grad_norm};
use nas_tensor::{Device, Tensor, no_grad};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::data::text::TextCorpus;
use crate::evaluator::{EvalError, EvalRequest, Evaluator, Metrics};
use crate::nets::rnn::{CellKind, RnnDropout, RnnLm};
use crate::train::{EpochHook, EpochStats, TrainError, TrainRecipe};

/// Hyper-parameters of a language-model training run.
#[derive(Debug, Clone, PartialEq)]
pub struct TextRecipe {
    /// Hidden units (also the embedding size: the decoder is tied to the embedding).
    pub hidden: usize,
    /// Steps per truncated-BPTT window.
    pub bptt: usize,
    /// Columns (sequences) trained in parallel.
    pub batch_size: usize,
    /// Columns when measuring bpc.
    pub eval_batch_size: usize,
    /// Passes over the training stream.
    pub epochs: u32,
    /// At most this many windows per epoch (`None`: the whole stream).
    pub max_windows: Option<usize>,
    /// Adam's learning rate.
    pub lr: f32,
    /// Global gradient-norm clip.
    pub clip: f32,
    /// Dropout probabilities.
    pub dropout: RnnDropout,
    /// Where the model trains.
    pub device: Device,
}

impl Default for TextRecipe {
    /// A small character model: 128 units, windows of 64 steps, 32 columns, one epoch, Adam
    /// at 3e-3, clip 0.5, [`RnnDropout::default`].
    fn default() -> Self {
        TextRecipe {
            hidden: 128,
            bptt: 64,
            batch_size: 32,
            eval_batch_size: 16,
            epochs: 1,
            max_windows: None,
            lr: 3e-3,
            clip: 0.5,
            dropout: RnnDropout::default(),
            device: Device::Cpu,
        }
    }
}

impl TextRecipe {
    fn validate(&self) -> Result<(), TrainError> {
        if self.hidden == 0 || self.bptt == 0 || self.batch_size == 0 || self.eval_batch_size == 0 {
            return Err(TrainError::Config(
                "hidden, bptt and batch sizes must be positive".into(),
            ));
        }
        if !(self.lr > 0.0 && self.lr.is_finite() && self.clip > 0.0) {
            return Err(TrainError::Config(format!(
                "lr ({}) and clip ({}) must be positive",
                self.lr, self.clip
            )));
        }
        Ok(())
    }
}

/// What [`train_lm`] measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LmResult {
    /// The training loss of every window, in nats per character (with dropout).
    pub train_losses: Vec<f64>,
    /// Bits per character on the validation stream.
    pub valid_bpc: f64,
    /// Bits per character on the test stream (reported, never optimised).
    pub test_bpc: f64,
    /// Trainable parameters.
    pub params: usize,
}

/// Bits per character of `model` on `stream`: the stream is cut into `batch` columns read in
/// windows of `bptt` steps, the state carried (without gradients) from window to window;
/// every next-character prediction counts once. Runs in evaluation mode (no dropout) and
/// restores the model's mode.
pub fn evaluate_bpc(
    model: &mut RnnLm,
    stream: &[u32],
    batch: usize,
    bptt: usize,
) -> Result<f64, TrainError> {
    let was_training = model.is_training();
    model.set_training(false);
    let result = no_grad(|| -> Result<f64, TrainError> {
        let windows = TokenWindows::new(stream, batch, bptt)?;
        let dev = model.embedding.device();
        let shapes = model.state_shapes(batch);
        let shape_refs: Vec<&[usize]> = shapes.iter().map(|s| s.as_slice()).collect();
        let mut state = CarriedState::zeros(&shape_refs, dev)?;
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let (mut nats, mut count) = (0.0f64, 0usize);
        for w in windows {
            let (loss, next) = model.window_loss(&w, state.get(), &mut rng)?;
            let n = w.steps * w.batch;
            nats += loss.item()? as f64 * n as f64;
            count += n;
            state.carry(&next)?;
        }
        Ok(nats / count as f64 / std::f64::consts::LN_2)
    });
    model.set_training(was_training);
    result
}

/// Trains a language model with `cell` as its core on `corpus` (see the [module docs](self));
/// all randomness (initialisation, dropout) comes from `seed`. A non-finite loss is
/// [`TrainError::Diverged`]; passing `deadline` is [`TrainError::Cut`].
pub fn train_lm(
    cell: &CellKind,
    corpus: &TextCorpus,
    recipe: &TextRecipe,
    seed: u64,
    deadline: Option<Instant>,
) -> Result<LmResult, TrainError> {
    train_lm_observed(cell, corpus, recipe, seed, deadline, &mut |_| {}).map(|(r, _)| r)
}

/// [`train_lm`], calling `on_epoch` after every epoch (the mean training loss of its windows,
/// in nats per character; `train_accuracy` is `100 * 2^-bpc` of that loss) and returning the
/// trained model too (in evaluation mode).
pub fn train_lm_observed(
    cell: &CellKind,
    corpus: &TextCorpus,
    recipe: &TextRecipe,
    seed: u64,
    deadline: Option<Instant>,
    on_epoch: &mut dyn FnMut(&EpochStats),
) -> Result<(LmResult, RnnLm), TrainError> {
    recipe.validate()?;
    let mut model = RnnLm::new(
        cell,
        corpus.vocab.len(),
        recipe.hidden,
        recipe.dropout,
        seed,
    )?;
    model.to_device(recipe.device)?;
    let mut opt = Adam::new(model.parameters(), AdamConfig::new(recipe.lr))?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_d80b);
    let shapes = model.state_shapes(recipe.batch_size);
    let shape_refs: Vec<&[usize]> = shapes.iter().map(|s| s.as_slice()).collect();
    let mut losses = Vec::new();
    let mut step = 0;
    for epoch in 0..recipe.epochs as usize {
        let mut state = CarriedState::zeros(&shape_refs, recipe.device)?;
        let windows = TokenWindows::new(&corpus.train, recipe.batch_size, recipe.bptt)?;
        let limit = recipe.max_windows.unwrap_or(usize::MAX);
        let first = losses.len();
        for w in windows.take(limit) {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(TrainError::Cut { epoch, step });
            }
            model.zero_grad();
            let (loss, next) = model.window_loss(&w, state.get(), &mut rng)?;
            let value = loss.item()?;
            if !value.is_finite() {
                return Err(TrainError::Diverged {
                    epoch,
                    step,
                    loss: value,
                });
            }
            loss.backward()?;
            clip_grad_norm(&model.parameters(), recipe.clip)?;
            opt.step()?;
            state.carry(&next)?;
            losses.push(value as f64);
            step += 1;
        }
        let part = &losses[first..];
        let mean = part.iter().sum::<f64>() / part.len().max(1) as f64;
        on_epoch(&EpochStats {
            epoch,
            train_loss: mean,
            train_accuracy: bpc_to_percent(mean / std::f64::consts::LN_2),
            lr: recipe.lr,
        });
    }
    let (b, t) = (recipe.eval_batch_size, recipe.bptt);
    let valid_bpc = evaluate_bpc(&mut model, &corpus.valid, b, t)?;
    let test_bpc = evaluate_bpc(&mut model, &corpus.test, b, t)?;
    model.set_training(false);
    let result = LmResult {
        train_losses: losses,
        valid_bpc,
        test_bpc,
        params: model.num_parameters(),
    };
    Ok((result, model))
}

/// Steps per truncated-BPTT window of a language model trained through the registry (and the
/// shortest part a corpus may have, plus one).
pub const TEXT_BPTT: usize = 64;

/// The [`TextRecipe`] of a space's [`TrainRecipe`] and network size, as the registry trains
/// language models: `hidden` = the shape's channels, the recipe's learning rate, batch sizes,
/// gradient clip (0.5 without one) and device; `train_examples` counts training
/// **sequences** of [`TEXT_BPTT`] characters (so at most `ceil(n / batch_size)` windows per
/// epoch); windows of [`TEXT_BPTT`] steps, [`RnnDropout::default`].
pub fn text_recipe(hidden: usize, recipe: &TrainRecipe, epochs: u32) -> TextRecipe {
    TextRecipe {
        hidden,
        bptt: TEXT_BPTT,
        batch_size: recipe.batch_size,
        eval_batch_size: recipe.eval_batch_size,
        epochs,
        max_windows: recipe
            .train_examples
            .map(|n| n.div_ceil(recipe.batch_size.max(1))),
        lr: recipe.lr,
        clip: recipe.grad_clip.unwrap_or(0.5),
        dropout: RnnDropout::default(),
        device: recipe.device,
    }
}

/// The train-from-scratch evaluator of the recurrent-cell space: trains the cell's language
/// model for `fidelity` epochs (at least 1) of the recipe and reports
/// - `loss`: the validation bpc;
/// - `valid_accuracy`: `100 * 2^-bpc` on validation, the geometric-mean probability (in
///   percent) the model gives each next character: higher is better, as searches expect,
///   and a monotone function of the bpc, so rankings are the bpc's;
/// - `test_accuracy`: the same on the test stream (reported, never optimised).
#[derive(Clone)]
pub struct TextEvaluator<A = RnnGenotype> {
    /// The corpus (shared between workers).
    pub corpus: Arc<TextCorpus>,
    /// The training recipe (`epochs` is replaced by the request's fidelity).
    pub recipe: TextRecipe,
    /// The recurrent core an architecture is (`None`: it is not one, a fatal error).
    pub core: fn(&A) -> Option<CellKind>,
    /// Called after every training epoch with the trial id.
    pub on_epoch: Option<EpochHook>,
}

impl TextEvaluator<RnnGenotype> {
    /// The evaluator of DARTS recurrent cells on `corpus`.
    pub fn new(corpus: Arc<TextCorpus>, recipe: TextRecipe) -> Self {
        TextEvaluator {
            corpus,
            recipe,
            core: |g| Some(CellKind::Darts(*g)),
            on_epoch: None,
        }
    }
}

/// `100 * 2^-bpc`: the geometric-mean probability of the next character, in percent.
pub fn bpc_to_percent(bpc: f64) -> f64 {
    100.0 * (-bpc).exp2()
}

impl<A: Send + Sync> Evaluator<A> for TextEvaluator<A> {
    fn name(&self) -> String {
        format!("text-lm/{}", self.corpus.name)
    }

    fn evaluate(&self, request: &EvalRequest<'_, A>) -> Result<Metrics, EvalError> {
        let mut recipe = self.recipe.clone();
        recipe.epochs = request.fidelity.max(1);
        let cell = (self.core)(request.arch)
            .ok_or_else(|| EvalError::Fatal("not a recurrent cell".into()))?;
        let mut on_epoch = |s: &EpochStats| {
            if let Some(hook) = &self.on_epoch {
                hook(request.trial_id, s);
            }
        };
        let (corpus, seed) = (&self.corpus, request.seed);
        match train_lm_observed(
            &cell,
            corpus,
            &recipe,
            seed,
            request.deadline,
            &mut on_epoch,
        ) {
            Ok((r, _)) => Ok(Metrics {
                valid_accuracy: bpc_to_percent(r.valid_bpc),
                test_accuracy: Some(bpc_to_percent(r.test_bpc)),
                loss: Some(r.valid_bpc),
                params: Some(r.params as u64),
                flops: None,
                latency_ms: None,
                cost: recipe.epochs as f64,
            }),
            Err(e @ TrainError::Cut { .. }) => Err(EvalError::Cut {
                reason: e.to_string(),
            }),
            Err(e @ TrainError::Diverged { .. }) => Err(EvalError::Failed {
                reason: e.to_string(),
                cost: recipe.epochs as f64,
            }),
            Err(e) => Err(EvalError::Fatal(e.to_string())),
        }
    }
}

/// A tensor of ids for [`Module::forward`] of an [`RnnLm`] (`[T, n]`, time-major).
pub fn ids_tensor(ids: &[u32], steps: usize, batch: usize) -> nas_tensor::Result<Tensor> {
    Tensor::from_vec(ids.iter().map(|&i| i as f32).collect(), &[steps, batch])
}
