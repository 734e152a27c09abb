//! One architecture trained from scratch, described by names and text in one value: what
//! `nas train` runs ([`TrainJob::run`]), with every default here.

use std::path::{Path, PathBuf};

use nas_tensor::Device;
use nas_tensor::nn::Module;
use serde::Serialize;

use crate::data::{DataKind, DataSpec, LoadedData};
use crate::error::{Result, SearchError};
use crate::evaluator::{data_for, load_data};
use crate::memory::check_limit;
use crate::rnn::TEXT_BPTT;
use crate::spaces::{NetSettings, Purpose, Registry};
use crate::train::{EpochStats, TrainRecipe};

/// Default training epochs of one architecture.
pub const DEFAULT_TRAIN_EPOCHS: u32 = 3;

/// One architecture to train: its text (or JSON) form, its space (guessed when `None`), the
/// data, the network size and the recipe's settings; unset ones come from the space.
#[derive(Clone)]
pub struct TrainJob {
    /// Where spaces are looked up.
    pub registry: Registry,
    /// The architecture: text form or JSON.
    pub arch: String,
    /// Its space; guessed from the text when `None`.
    pub space: Option<String>,
    /// The data set (`None`: the embedded one of the kind the space trains on).
    pub data: Option<DataSpec>,
    /// Training epochs.
    pub epochs: u32,
    /// Network sizes set by the user (the others: the space's defaults for training).
    pub net: NetSettings,
    /// Learning rate over the space's recipe.
    pub lr: Option<f32>,
    /// Batch size over the space's recipe.
    pub batch_size: Option<usize>,
    /// Random crop and horizontal flip.
    pub augment: bool,
    /// Train on at most this many training examples (`None`: all).
    pub train_examples: Option<usize>,
    /// Fraction of the training set held out for validation (0: none).
    pub valid_fraction: f64,
    /// Seed of the weights, batches and split.
    pub seed: u64,
    /// Where to train.
    pub device: Device,
    /// Refuse a network whose memory estimate exceeds this (the available memory when
    /// `None`).
    pub max_memory: Option<u64>,
    /// Save the trained weights here (safetensors); checked for writing before training.
    pub weights: Option<PathBuf>,
}

impl TrainJob {
    /// `arch` with the defaults: the embedded Fashion-MNIST subset (the Shakespeare corpus for
    /// a space of recurrent cells), [`DEFAULT_TRAIN_EPOCHS`],
    /// the space's training network and recipe, no validation part, seed 0, on the CPU.
    pub fn new(arch: &str) -> TrainJob {
        TrainJob {
            registry: Registry::builtin(),
            arch: arch.into(),
            space: None,
            data: None,
            epochs: DEFAULT_TRAIN_EPOCHS,
            net: NetSettings::default(),
            lr: None,
            batch_size: None,
            augment: false,
            train_examples: None,
            valid_fraction: 0.0,
            seed: 0,
            device: Device::Cpu,
            max_memory: None,
            weights: None,
        }
    }

    /// Checks the settings, parses the architecture, loads the data, checks the memory
    /// estimate, then calls `ready` with the first line to print (what is trained, on what)
    /// and trains, calling `on_epoch` after every epoch, then saves the weights where asked
    /// (should that fail, in a file of the working directory, named in the error: trained
    /// weights are not lost). Returns the report and the trained network (in evaluation mode).
    pub fn run(
        &self,
        ready: &mut dyn FnMut(&str),
        on_epoch: &mut dyn FnMut(&EpochStats),
    ) -> Result<(TrainReport, Box<dyn Module>)> {
        let setting = |m: String| Err(SearchError::Setting(m));
        if let Some(lr) = self.lr
            && !(lr.is_finite() && lr > 0.0)
        {
            return setting(format!("--lr must be a positive number, got {lr}"));
        }
        for (name, v) in [
            ("--batch-size", self.batch_size),
            ("--channels", self.net.channels),
            ("--cells", self.net.cells),
            ("--epochs", Some(self.epochs as usize)),
        ] {
            if v == Some(0) {
                return setting(format!("{name} must be at least 1"));
            }
        }
        if !(0.0..1.0).contains(&self.valid_fraction) {
            return setting(format!(
                "--valid-fraction must be in [0, 1), got {}",
                self.valid_fraction
            ));
        }
        let (space, arch) = self.registry.resolve(self.space.as_deref(), &self.arch)?;
        let data_spec = data_for(self.data.as_ref(), space)?;
        let data = load_data(&data_spec, self.valid_fraction, self.seed)?;
        let base = space.recipe();
        let recipe = TrainRecipe {
            lr: self.lr.unwrap_or(base.lr),
            batch_size: self.batch_size.unwrap_or(base.batch_size),
            augment: self.augment,
            train_examples: self.train_examples,
            device: self.device,
            ..base
        };
        let shape = space
            .shape(Purpose::Train)
            .map(|d| self.net.over(d))
            .ok_or_else(|| {
                SearchError::Setting(format!("the {} space has no network", space.name()))
            })?;
        if let (Some(size), LoadedData::Images(splits)) = (space.memory(shape), &data) {
            let (n, batch) = (recipe.train_examples, recipe.batch_size);
            let what = "training this network";
            check_limit(size, &splits.train, n, batch, 1, self.max_memory, what)?;
        }
        if let Some(path) = &self.weights {
            check_writable(path)?;
        }
        let text = space.to_text(&arch)?;
        let (network, n_train, unit) = match &data {
            LoadedData::Images(splits) => {
                let all = splits.train.len();
                let network = space.network_name(shape).unwrap_or_default();
                (
                    network,
                    recipe.train_examples.map_or(all, |n| n.min(all)),
                    "images".to_string(),
                )
            }
            LoadedData::Text(corpus) => {
                let all = corpus.train.len() / TEXT_BPTT;
                let network = format!("character LM, {} hidden units", shape.channels);
                let n = recipe.train_examples.map_or(all, |n| n.min(all));
                (network, n, format!("sequences of {TEXT_BPTT} characters"))
            }
        };
        ready(&format!(
            "training {text} for {} epoch(s) on {n_train} {unit} of {data_spec} ({network})",
            self.epochs
        ));
        let epochs = self.epochs as usize;
        let t = space.train(&arch, shape, &data, &recipe, epochs, self.seed, on_epoch)?;
        let text_data = space.data_kind() == DataKind::Text;
        let report = TrainReport {
            arch: text,
            space: space.name().into(),
            network,
            data: data_spec.to_string(),
            train_examples: n_train,
            epochs: t
                .epochs
                .iter()
                .map(|e| EpochStats {
                    epoch: e.epoch + 1,
                    ..*e
                })
                .collect(),
            test_bpc: text_data.then_some(t.test_loss),
            valid_bpc: t.valid_loss.filter(|_| text_data),
            test_accuracy: t.test_accuracy,
            test_loss: t.test_loss,
            valid_accuracy: t.valid_accuracy,
            valid_loss: t.valid_loss,
            params: t.cost.params,
            flops: t.cost.flops,
            wall_time_s: t.wall_time_s,
            weights: self.weights.as_ref().map(|p| p.display().to_string()),
            // where the trained network's tensors live, read from the network itself
            device: t.module.device().map(|d| d.to_string()),
        };
        if let Some(path) = &self.weights {
            save_weights(t.module.as_ref(), path)?;
        }
        Ok((report, t.module))
    }
}

/// Checks, before training, that `path` can be written: opened for writing (created and
/// removed again when it did not exist; an existing file is not changed).
fn check_writable(path: &Path) -> Result<()> {
    let existed = path.exists();
    let opened = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path);
    match opened {
        Ok(_) => {
            if !existed {
                let _ = std::fs::remove_file(path);
            }
            Ok(())
        }
        Err(e) => Err(SearchError::Input {
            path: path.to_path_buf(),
            problem: format!("--out cannot be written ({e}); nothing was trained"),
        }),
    }
}

/// Saves `module` to `path`; if that fails, saves it next to the run and names both paths in
/// the error.
fn save_weights(module: &dyn Module, path: &Path) -> Result<()> {
    let Err(e) = nas_tensor::io::save_module(module, path) else {
        return Ok(());
    };
    let fallback = PathBuf::from(format!(
        "nas-train-{}-{}.safetensors",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    ));
    let problem = match nas_tensor::io::save_module(module, &fallback) {
        Ok(()) => format!(
            "cannot save the weights ({e}); they are saved in {} instead",
            fallback.display()
        ),
        Err(e2) => format!(
            "cannot save the weights ({e}), nor in {} ({e2}); they are lost",
            fallback.display()
        ),
    };
    Err(SearchError::Input {
        path: path.to_path_buf(),
        problem,
    })
}

/// What [`TrainJob::run`] reports (and `nas --json train` prints).
#[derive(Debug, Clone, Serialize)]
pub struct TrainReport {
    /// The architecture (text form).
    pub arch: String,
    /// Its space.
    pub space: String,
    /// The network family it was trained in (`"nb201(C=16,N=5)"`).
    pub network: String,
    /// The data set.
    pub data: String,
    /// Training examples used.
    pub train_examples: usize,
    /// Per-epoch statistics (epochs counted from 1).
    pub epochs: Vec<EpochStats>,
    /// Bits per character on the test part (a language model).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test_bpc: Option<f64>,
    /// Bits per character on the validation part (a language model).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub valid_bpc: Option<f64>,
    /// Test accuracy (%; for a language model `100 * 2^-bpc`).
    pub test_accuracy: f64,
    /// Test loss.
    pub test_loss: f64,
    /// Validation accuracy (%), with a validation part.
    pub valid_accuracy: Option<f64>,
    /// Validation loss, with a validation part.
    pub valid_loss: Option<f64>,
    /// Parameters.
    pub params: u64,
    /// Multiply-accumulates of one forward pass of one example.
    pub flops: u64,
    /// Seconds spent training and evaluating.
    pub wall_time_s: f64,
    /// Where the weights were saved, if they were.
    pub weights: Option<String>,
    /// The device the trained network's tensors live on.
    pub device: Option<String>,
}

impl std::fmt::Display for TrainReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(bpc) = self.test_bpc {
            write!(
                f,
                "{} ({}): test {bpc:.4} bits per character",
                self.arch, self.space
            )?;
            if let Some(v) = self.valid_bpc {
                write!(f, ", validation {v:.4}")?;
            }
        } else {
            write!(
                f,
                "{} ({}): test accuracy {:.2}% (loss {:.4})",
                self.arch, self.space, self.test_accuracy, self.test_loss
            )?;
            if let Some(v) = self.valid_accuracy {
                write!(f, ", validation accuracy {v:.2}%")?;
            }
        }
        write!(f, "\n{} parameters", self.params)?;
        if self.test_bpc.is_none() {
            write!(f, ", {:.2} MFLOPs", self.flops as f64 / 1e6)?;
        }
        write!(
            f,
            "; {} epoch(s) in {:.1} s",
            self.epochs.len(),
            self.wall_time_s
        )?;
        if let Some(w) = &self.weights {
            write!(f, "\nweights: {w}")?;
        }
        Ok(())
    }
}
