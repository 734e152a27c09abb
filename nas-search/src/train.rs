//! Training networks from scratch: a recipe, a training loop, and [`TrainEvaluator`], the
//! [`Evaluator`] that trains each architecture for `fidelity` epochs.
//!
//! The recipe is NAS-Bench-201's: SGD with Nesterov momentum 0.9, weight decay 5e-4, learning
//! rate 0.1 annealed to 0 with a cosine schedule updated every step, cross-entropy loss,
//! optional random-crop (pad 4) + horizontal-flip augmentation. All randomness (weights,
//! batch order, augmentation) comes from the seed, so a run is reproducible.
//!
//! A run whose loss becomes NaN or infinite, or exceeds [`TrainRecipe::divergence_loss`], is
//! stopped: [`train_network`] returns [`TrainError::Diverged`], and the evaluator turns it into
//! a failed trial ([`EvalError::Failed`]) with the reason, so the search goes on.
//!
//! ```no_run
//! use nas_search::data::fashion_mnist_embedded;
//! use nas_search::nets::nb201::Nb201Family;
//! use nas_search::train::{TrainRecipe, train_architecture};
//! use nas_space::nb201::Nb201Cell;
//! let splits = fashion_mnist_embedded()?.prepare(0.1, 0)?;
//! let cell: Nb201Cell = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|".parse()?;
//! let family = Nb201Family { channels: 8, cells_per_stage: 1 };
//! let trained = train_architecture(&family, &cell, &splits, &TrainRecipe::default(), 3, 0)?;
//! println!("test accuracy {:.2}%", trained.test_accuracy);
//! nas_tensor::io::save_module(trained.module.as_ref(), "weights.safetensors")?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::sync::Arc;
use std::time::Instant;

use nas_tensor::nn::Module;
use nas_tensor::optim::{CosineAnnealingLr, Optimizer, Sgd, SgdConfig, clip_grad_norm};
use nas_tensor::{Device, Tensor, TensorError, no_grad};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::data::{Augment, BatchOptions, DataError, Dataset, Splits};
use crate::evaluator::{EvalError, EvalRequest, Evaluator, Metrics};
use crate::nets::{NetworkCost, NetworkFamily};

/// What can go wrong while training.
#[derive(Debug, Error)]
pub enum TrainError {
    /// The loss became NaN/infinite or exceeded the recipe's divergence threshold.
    #[error("diverged at epoch {epoch}, step {step}: loss {loss}")]
    Diverged {
        /// Epoch (from 0).
        epoch: usize,
        /// Step within the run (from 0).
        step: usize,
        /// The offending loss value.
        loss: f32,
    },
    /// The run passed its deadline (a search's `--max-time`) and was stopped part-way.
    #[error("cut by the time limit at epoch {epoch}, step {step}")]
    Cut {
        /// Epoch (from 0).
        epoch: usize,
        /// Step within the run (from 0).
        step: usize,
    },
    /// A tensor operation failed (bad shapes for this input size, ...).
    #[error(transparent)]
    Tensor(#[from] TensorError),
    /// Data could not be batched.
    #[error(transparent)]
    Data(#[from] DataError),
    /// An invalid recipe or setting.
    #[error("invalid training setting: {0}")]
    Config(String),
}

/// Hyper-parameters of a training run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TrainRecipe {
    /// Initial learning rate (cosine-annealed to 0 over the run, per step).
    pub lr: f32,
    /// SGD momentum.
    pub momentum: f32,
    /// Nesterov momentum.
    pub nesterov: bool,
    /// L2 weight decay (on every parameter, as NAS-Bench-201).
    pub weight_decay: f32,
    /// Mini-batch size for training.
    pub batch_size: usize,
    /// Mini-batch size for evaluation.
    pub eval_batch_size: usize,
    /// Random crop (pad 4) and horizontal flip.
    pub augment: bool,
    /// Clip the global gradient norm to this value (DARTS uses 5); `None` = no clipping.
    pub grad_clip: Option<f32>,
    /// Train on at most this many training examples (the first ones); `None` = all.
    pub train_examples: Option<usize>,
    /// A loss above this (or NaN/inf) stops the run as diverged.
    pub divergence_loss: f32,
    /// Where the network is trained and evaluated (a run setting, not saved with the recipe:
    /// a checkpoint resumes on whatever device the resuming command names).
    #[serde(skip)]
    pub device: Device,
}

impl Default for TrainRecipe {
    /// NAS-Bench-201's recipe with batch size 64 (lr 0.1, momentum 0.9 Nesterov, wd 5e-4,
    /// cosine), augmentation off (the small grey-scale default data sets gain little from it in a
    /// few epochs), no clipping, all training examples, divergence at loss 1e3.
    fn default() -> Self {
        TrainRecipe {
            lr: 0.1,
            momentum: 0.9,
            nesterov: true,
            weight_decay: 5e-4,
            batch_size: 64,
            eval_batch_size: 250,
            augment: false,
            grad_clip: None,
            train_examples: None,
            divergence_loss: 1e3,
            device: Device::Cpu,
        }
    }
}

impl TrainRecipe {
    pub(crate) fn validate(&self) -> Result<(), TrainError> {
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(TrainError::Config(format!(
                "learning rate must be positive, got {}",
                self.lr
            )));
        }
        if self.batch_size == 0 || self.eval_batch_size == 0 {
            return Err(TrainError::Config("batch sizes must be positive".into()));
        }
        if !(0.0..1.0).contains(&self.momentum) || self.weight_decay < 0.0 {
            return Err(TrainError::Config(format!(
                "momentum must be in [0, 1) and weight decay non-negative, got {} and {}",
                self.momentum, self.weight_decay
            )));
        }
        if self.train_examples == Some(0) {
            return Err(TrainError::Config("train_examples must be positive".into()));
        }
        Ok(())
    }
}

/// Loss, accuracy and learning rate of one training epoch.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EpochStats {
    /// Epoch (from 0).
    pub epoch: usize,
    /// Mean training loss over the epoch's examples.
    pub train_loss: f64,
    /// Training accuracy (%), measured on the fly in training mode.
    pub train_accuracy: f64,
    /// Learning rate at the end of the epoch.
    pub lr: f32,
}

impl EpochStats {
    /// One line for a progress log (epochs counted from 1).
    pub fn line(&self) -> String {
        format!(
            "epoch {:>3}  loss {:.4}  train acc {:6.2}%  lr {:.4}",
            self.epoch + 1,
            self.train_loss,
            self.train_accuracy,
            self.lr
        )
    }
}

/// A batch of images as a tensor on `device` (one host-to-device transfer).
fn to_tensor(
    images: &[f32],
    n: usize,
    shape: (usize, usize, usize),
    device: Device,
) -> Result<Tensor, TensorError> {
    Tensor::from_slice_on(images, &[n, shape.0, shape.1, shape.2], device)
}

fn training_set(splits: &Splits, recipe: &TrainRecipe) -> Result<Dataset, TrainError> {
    match recipe.train_examples {
        Some(n) if n < splits.train.len() => {
            Ok(splits.train.subset(&(0..n).collect::<Vec<_>>())?)
        }
        _ => Ok(splits.train.clone()),
    }
}

/// Trains `net` on `train` for `epochs` epochs with `recipe`, batches and augmentation seeded
/// by `seed`; `on_epoch` sees each epoch's statistics. Leaves the network in training mode.
pub fn train_network(
    net: &mut dyn Module,
    train: &Dataset,
    recipe: &TrainRecipe,
    epochs: usize,
    seed: u64,
    on_epoch: &mut dyn FnMut(&EpochStats),
) -> Result<Vec<EpochStats>, TrainError> {
    train_network_until(net, train, recipe, epochs, seed, on_epoch, None)
}

/// [`train_network`] that stops with [`TrainError::Cut`] at the first step after `deadline`.
pub fn train_network_until(
    net: &mut dyn Module,
    train: &Dataset,
    recipe: &TrainRecipe,
    epochs: usize,
    seed: u64,
    on_epoch: &mut dyn FnMut(&EpochStats),
    deadline: Option<Instant>,
) -> Result<Vec<EpochStats>, TrainError> {
    recipe.validate()?;
    if epochs == 0 {
        return Err(TrainError::Config("epochs must be positive".into()));
    }
    net.set_training(true);
    let shape = train.shape();
    let device = net.device().unwrap_or_default();
    let config = SgdConfig::new(recipe.lr)
        .momentum(recipe.momentum)
        .nesterov(recipe.nesterov)
        .weight_decay(recipe.weight_decay);
    let params = net.parameters();
    let mut opt = Sgd::new(params.clone(), config)?;
    let augment = recipe.augment.then(Augment::cifar);
    let options = BatchOptions::new(recipe.batch_size)
        .seed(seed)
        .augment(augment);
    let mut batches = train.batches(&options)?;
    let per_epoch = batches.num_batches();
    let schedule = CosineAnnealingLr::new(recipe.lr, epochs * per_epoch, 0.0)?;
    let mut stats = Vec::with_capacity(epochs);
    let mut step = 0;
    for epoch in 0..epochs {
        if epoch > 0 {
            batches.next_epoch();
        }
        let mut tally = Tally::default();
        while let Some(batch) = batches.next_batch() {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(TrainError::Cut { epoch, step });
            }
            let (loss, l) = tally.add(net, &batch, shape, device)?;
            if !l.is_finite() || l > recipe.divergence_loss {
                return Err(TrainError::Diverged {
                    epoch,
                    step,
                    loss: l,
                });
            }
            opt.zero_grad();
            loss.backward()?;
            if let Some(c) = recipe.grad_clip {
                clip_grad_norm(&params, c)?;
            }
            schedule.apply(&mut opt, step);
            opt.step()?;
            step += 1;
        }
        let s = EpochStats {
            epoch,
            train_loss: tally.mean_loss(),
            train_accuracy: tally.accuracy(),
            lr: schedule.lr_at(step),
        };
        on_epoch(&s);
        stats.push(s);
    }
    Ok(stats)
}

/// Accuracy (%) and mean cross-entropy of `net` on `data`, in evaluation mode without a
/// graph; the network's mode is restored afterwards.
pub fn evaluate_network(
    net: &mut dyn Module,
    data: &Dataset,
    batch_size: usize,
) -> Result<(f64, f64), TrainError> {
    if data.is_empty() {
        return Err(TrainError::Config(format!(
            "data set {} is empty",
            data.name()
        )));
    }
    let was = net.is_training();
    net.set_training(false);
    let shape = data.shape();
    let device = net.device().unwrap_or_default();
    let options = BatchOptions::new(batch_size.max(1)).shuffle(false);
    let mut batches = data.batches(&options)?;
    let mut tally = Tally::default();
    let result = no_grad(|| -> Result<(), TrainError> {
        while let Some(batch) = batches.next_batch() {
            tally.add(net, &batch, shape, device)?;
        }
        Ok(())
    });
    net.set_training(was);
    result?;
    Ok((tally.accuracy(), tally.mean_loss()))
}

/// Loss and accuracy summed over the batches of a training epoch or an evaluation.
#[derive(Default)]
struct Tally {
    loss_sum: f64,
    correct: usize,
    seen: usize,
}

impl Tally {
    /// Runs `net` on `batch` (one upload to `device`) and counts its mean cross-entropy and
    /// correct predictions; returns the loss tensor (for backward) and its value.
    fn add(
        &mut self,
        net: &dyn Module,
        batch: &crate::data::Batch<'_>,
        shape: (usize, usize, usize),
        device: Device,
    ) -> Result<(Tensor, f32), TrainError> {
        let n = batch.labels.len();
        let logits = net.forward(&to_tensor(batch.images, n, shape, device)?)?;
        let loss = logits.cross_entropy(batch.labels)?;
        let l = loss.item()?;
        let pred = logits.argmax_rows()?;
        self.correct += pred
            .iter()
            .zip(batch.labels)
            .filter(|(p, y)| p == y)
            .count();
        self.loss_sum += l as f64 * n as f64;
        self.seen += n;
        Ok((loss, l))
    }

    /// Accuracy (%).
    fn accuracy(&self) -> f64 {
        100.0 * self.correct as f64 / self.seen.max(1) as f64
    }

    /// Mean loss per example.
    fn mean_loss(&self) -> f64 {
        self.loss_sum / self.seen.max(1) as f64
    }
}

/// A network trained by [`train_architecture`], with its scores.
pub struct TrainedArchitecture {
    /// The trained network (in evaluation mode); save it with
    /// [`nas_tensor::io::save_module`].
    pub module: Box<dyn Module>,
    /// Per-epoch training statistics.
    pub epochs: Vec<EpochStats>,
    /// Validation accuracy (%), if the splits have a validation part.
    pub valid_accuracy: Option<f64>,
    /// Validation loss, if the splits have a validation part.
    pub valid_loss: Option<f64>,
    /// Test accuracy (%).
    pub test_accuracy: f64,
    /// Test loss.
    pub test_loss: f64,
    /// Parameters and FLOPs.
    pub cost: NetworkCost,
    /// Wall-clock seconds spent training and evaluating.
    pub wall_time_s: f64,
}

/// Builds the network of `arch` (weights from `seed`), trains it for `epochs` epochs with
/// `recipe` on `splits.train`, and scores it on the validation and test parts.
pub fn train_architecture<A, F: NetworkFamily<A> + ?Sized>(
    family: &F,
    arch: &A,
    splits: &Splits,
    recipe: &TrainRecipe,
    epochs: usize,
    seed: u64,
) -> Result<TrainedArchitecture, TrainError> {
    train_architecture_observed(family, arch, splits, recipe, epochs, seed, &mut |_| {})
}

/// [`train_architecture`] calling `on_epoch` after every epoch (for progress output).
pub fn train_architecture_observed<A, F: NetworkFamily<A> + ?Sized>(
    family: &F,
    arch: &A,
    splits: &Splits,
    recipe: &TrainRecipe,
    epochs: usize,
    seed: u64,
    on_epoch: &mut dyn FnMut(&EpochStats),
) -> Result<TrainedArchitecture, TrainError> {
    train_architecture_until(family, arch, splits, recipe, epochs, seed, on_epoch, None)
}

/// [`train_architecture_observed`] whose training stops with [`TrainError::Cut`] at the first
/// step after `deadline`.
pub fn train_architecture_until<A, F: NetworkFamily<A> + ?Sized>(
    family: &F,
    arch: &A,
    splits: &Splits,
    recipe: &TrainRecipe,
    epochs: usize,
    seed: u64,
    on_epoch: &mut dyn FnMut(&EpochStats),
    deadline: Option<Instant>,
) -> Result<TrainedArchitecture, TrainError> {
    let start = Instant::now();
    let shape = splits.train.shape();
    let classes = splits.train.num_classes();
    let mut module = family.build(arch, shape, classes, seed)?;
    module.to_device(recipe.device)?;
    let train = training_set(splits, recipe)?;
    let epochs_stats = train_network_until(
        module.as_mut(),
        &train,
        recipe,
        epochs,
        seed,
        on_epoch,
        deadline,
    )?;
    let valid = match &splits.valid {
        Some(v) => Some(evaluate_network(
            module.as_mut(),
            v,
            recipe.eval_batch_size,
        )?),
        None => None,
    };
    let (test_accuracy, test_loss) =
        evaluate_network(module.as_mut(), &splits.test, recipe.eval_batch_size)?;
    module.set_training(false);
    Ok(TrainedArchitecture {
        cost: family.cost(arch, shape, classes),
        module,
        epochs: epochs_stats,
        valid_accuracy: valid.map(|v| v.0),
        valid_loss: valid.map(|v| v.1),
        test_accuracy,
        test_loss,
        wall_time_s: start.elapsed().as_secs_f64(),
    })
}

/// The train-from-scratch [`Evaluator`]: for each request, builds the network inside the call
/// (so worker threads never share one), trains it for `fidelity` epochs with the request's
/// seed, and reports validation accuracy (what the search optimises), test accuracy, the
/// validation loss, parameters and FLOPs; the cost is the number of epochs.
pub struct TrainEvaluator<F> {
    family: F,
    splits: Arc<Splits>,
    recipe: TrainRecipe,
    data_name: String,
    on_epoch: Option<EpochHook>,
}

/// Called after every training epoch of a trial (with the trial id), from the worker thread
/// that trains it: the builder's observer hook for progress bars.
pub type EpochHook = Arc<dyn Fn(u64, &EpochStats) + Send + Sync>;

impl<F> TrainEvaluator<F> {
    /// An evaluator training `family` networks on `splits`, which must have a validation part
    /// (see [`Splits::prepare`]).
    pub fn new(family: F, splits: Arc<Splits>, recipe: TrainRecipe) -> Result<Self, TrainError> {
        recipe.validate()?;
        if splits.valid.as_ref().is_none_or(|v| v.is_empty()) {
            return Err(TrainError::Config(
                "the training evaluator needs a validation split (Splits::prepare)".into(),
            ));
        }
        let data_name = format!(
            "{}[{}]",
            splits.train.name(),
            training_set(&splits, &recipe)?.len()
        );
        Ok(TrainEvaluator {
            family,
            splits,
            recipe,
            data_name,
            on_epoch: None,
        })
    }

    /// This evaluator calling `hook` after every epoch of every trial.
    pub fn observed(mut self, hook: Option<EpochHook>) -> Self {
        self.on_epoch = hook;
        self
    }

    /// The recipe.
    pub fn recipe(&self) -> &TrainRecipe {
        &self.recipe
    }

    /// The data.
    pub fn splits(&self) -> &Splits {
        &self.splits
    }
}

impl<F> TrainEvaluator<F> {
    /// [`Evaluator::evaluate`] with `on_epoch` called after every epoch (progress bars, logs).
    /// A trial that fails part-way reports the epochs it ran as its cost.
    pub fn evaluate_observed<A>(
        &self,
        request: &EvalRequest<'_, A>,
        on_epoch: &mut dyn FnMut(&EpochStats),
    ) -> Result<Metrics, EvalError>
    where
        F: NetworkFamily<A>,
    {
        let epochs = request.fidelity as usize;
        if epochs == 0 {
            return Err(EvalError::Fatal(
                "fidelity (training epochs) must be positive".into(),
            ));
        }
        let mut done = 0usize;
        let result = train_architecture_until(
            &self.family,
            request.arch,
            &self.splits,
            &self.recipe,
            epochs,
            request.seed,
            &mut |s| {
                done = s.epoch + 1;
                on_epoch(s);
                if let Some(hook) = &self.on_epoch {
                    hook(request.trial_id, s);
                }
            },
            request.deadline,
        );
        match result {
            Ok(t) => Ok(Metrics {
                valid_accuracy: t.valid_accuracy.unwrap_or(f64::NAN),
                test_accuracy: Some(t.test_accuracy),
                loss: t.valid_loss,
                params: Some(t.cost.params),
                flops: Some(t.cost.flops),
                latency_ms: None,
                cost: epochs as f64,
            }),
            Err(TrainError::Config(m)) => Err(EvalError::Fatal(m)),
            Err(TrainError::Data(e)) => Err(EvalError::Fatal(e.to_string())),
            Err(e @ TrainError::Cut { .. }) => Err(EvalError::Cut {
                reason: e.to_string(),
            }),
            Err(e) => Err(EvalError::Failed {
                reason: e.to_string(),
                cost: done as f64,
            }),
        }
    }
}

impl<A, F: NetworkFamily<A>> Evaluator<A> for TrainEvaluator<F> {
    fn name(&self) -> String {
        format!(
            "train/{}/{}/lr={},bs={},aug={}",
            self.family.name(),
            self.data_name,
            self.recipe.lr,
            self.recipe.batch_size,
            self.recipe.augment
        )
    }

    fn evaluate(&self, request: &EvalRequest<'_, A>) -> Result<Metrics, EvalError> {
        self.evaluate_observed(request, &mut |_| {})
    }

    fn network_cost(&self, arch: &A) -> Option<NetworkCost> {
        Some(self.family.cost(
            arch,
            self.splits.train.shape(),
            self.splits.train.num_classes(),
        ))
    }

    fn network_ops(&self, arch: &A) -> Option<Vec<crate::latency::LatOp>> {
        self.family.ops(
            arch,
            self.splits.train.shape(),
            self.splits.train.num_classes(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{digits_embedded, fashion_mnist_embedded};
    use crate::nets::nb201::Nb201Family;
    use nas_space::nb201::Nb201Cell;

    fn cell(s: &str) -> Nb201Cell {
        s.parse().unwrap()
    }

    const GOOD: &str = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|";

    #[test]
    fn a_tiny_nb201_network_learns_fashion_mnist() {
        let splits = fashion_mnist_embedded().unwrap().prepare(0.1, 0).unwrap();
        let recipe = TrainRecipe {
            train_examples: Some(1200),
            batch_size: 32,
            lr: 0.05,
            ..TrainRecipe::default()
        };
        let family = Nb201Family {
            channels: 4,
            cells_per_stage: 1,
        };
        let mut first_losses = Vec::new();
        let t =
            train_architecture_observed(&family, &cell(GOOD), &splits, &recipe, 2, 1, &mut |s| {
                first_losses.push(s.train_loss)
            })
            .unwrap();
        assert_eq!(t.epochs.len(), 2);
        // Chance is 10% and ln(10) = 2.30 nats.
        assert!(
            t.epochs[1].train_loss < t.epochs[0].train_loss,
            "{:?}",
            t.epochs
        );
        assert!(t.epochs[1].train_loss < 1.5, "{:?}", t.epochs);
        assert!(t.test_accuracy > 45.0, "test accuracy {}", t.test_accuracy);
        assert!(t.valid_accuracy.unwrap() > 45.0);
        assert_eq!(first_losses.len(), 2);
        assert_eq!(t.cost.params as usize, t.module.num_parameters());
        assert!(!t.module.is_training());
    }

    #[test]
    fn evaluator_is_deterministic_and_reports_costs() {
        let splits = Arc::new(digits_embedded().unwrap().prepare(0.2, 0).unwrap());
        let family = Nb201Family {
            channels: 4,
            cells_per_stage: 1,
        };
        let ev = TrainEvaluator::new(family, splits, TrainRecipe::default()).unwrap();
        let c = cell(GOOD);
        let req = EvalRequest {
            arch: &c,
            fidelity: 2,
            trial_id: 0,
            seed: 11,
            deadline: None,
        };
        let a = ev.evaluate(&req).unwrap();
        let b = ev.evaluate(&req).unwrap();
        assert_eq!(a, b);
        assert!(a.valid_accuracy > 30.0, "{a:?}");
        assert_eq!(a.cost, 2.0);
        assert_eq!(a.params, Some(family.cost(&c, (1, 8, 8), 10).params));
        let other = ev.evaluate(&EvalRequest { seed: 12, ..req }).unwrap();
        assert_ne!(a, other, "another seed trains another network");
        assert!(Evaluator::<Nb201Cell>::name(&ev).starts_with("train/nb201(C=4,N=1)/"));
        let zero = ev.evaluate(&EvalRequest { fidelity: 0, ..req });
        assert!(matches!(zero, Err(EvalError::Fatal(_))));
    }

    #[test]
    fn divergence_is_a_failed_trial_not_a_panic() {
        let splits = Arc::new(digits_embedded().unwrap().prepare(0.2, 0).unwrap());
        let family = Nb201Family {
            channels: 4,
            cells_per_stage: 1,
        };
        let recipe = TrainRecipe {
            lr: 1e9,
            ..TrainRecipe::default()
        };
        let ev = TrainEvaluator::new(family, splits.clone(), recipe).unwrap();
        let c = cell(GOOD);
        let r = ev.evaluate(&EvalRequest {
            arch: &c,
            fidelity: 3,
            trial_id: 0,
            seed: 1,
            deadline: None,
        });
        match r {
            Err(EvalError::Failed { reason, cost }) => {
                assert!(reason.contains("diverged"), "{reason}");
                assert!(cost < 3.0);
            }
            other => panic!("expected a failed trial, got {other:?}"),
        }
        // Settings errors are reported, not panics.
        let bad = TrainRecipe {
            batch_size: 0,
            ..TrainRecipe::default()
        };
        assert!(TrainEvaluator::new(family, splits, bad).is_err());
        let no_valid = Arc::new(digits_embedded().unwrap());
        assert!(TrainEvaluator::new(family, no_valid, TrainRecipe::default()).is_err());
    }
}
