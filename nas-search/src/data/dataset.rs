//! The in-memory data set type, train/validation/test splits and per-channel normalisation.

use super::error::{DataError, Result};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// A labelled image data set held in memory.
///
/// Images are `f32`, stored example after example in NCHW order (`len() * C * H * W` values);
/// loaders scale raw pixels to `[0, 1]`, and [`Splits::normalize`] then standardises each channel.
/// Labels are class indices in `0..num_classes`. The fields are private so that these invariants
/// always hold; [`Dataset::new`] checks them.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    name: String,
    shape: (usize, usize, usize),
    num_classes: usize,
    images: Vec<f32>,
    labels: Vec<usize>,
    class_names: Vec<String>,
}

impl Dataset {
    /// Builds a data set, checking that `images` holds exactly `labels.len()` images of
    /// `shape = (C, H, W)`, that every label is below `num_classes`, and that no dimension is zero.
    pub fn new(
        name: impl Into<String>,
        shape: (usize, usize, usize),
        num_classes: usize,
        images: Vec<f32>,
        labels: Vec<usize>,
    ) -> Result<Self> {
        let name = name.into();
        let (c, h, w) = shape;
        if c == 0 || h == 0 || w == 0 {
            return Err(DataError::InvalidArgument(format!(
                "{name}: image shape {c}x{h}x{w} has a zero dimension"
            )));
        }
        if num_classes == 0 {
            return Err(DataError::InvalidArgument(format!(
                "{name}: a data set needs at least one class"
            )));
        }
        let total = c
            .checked_mul(h)
            .and_then(|x| x.checked_mul(w))
            .and_then(|per| per.checked_mul(labels.len()));
        if total != Some(images.len()) {
            return Err(DataError::InvalidArgument(format!(
                "{name}: {} image values do not make {} images of {c}x{h}x{w}",
                images.len(),
                labels.len()
            )));
        }
        if let Some((index, &label)) = labels.iter().enumerate().find(|(_, l)| **l >= num_classes) {
            return Err(DataError::LabelOutOfRange {
                file: name,
                index,
                label,
                num_classes,
            });
        }
        Ok(Self {
            name,
            shape,
            num_classes,
            images,
            labels,
            class_names: Vec::new(),
        })
    }

    /// Attaches human-readable class names (ignored unless there is one per class).
    pub fn with_class_names<S: AsRef<str>>(mut self, names: &[S]) -> Self {
        if names.len() == self.num_classes {
            self.class_names = names.iter().map(|s| s.as_ref().to_string()).collect();
        }
        self
    }

    /// The data set's name (e.g. `"fashion-mnist"`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Image shape `(C, H, W)`.
    pub fn shape(&self) -> (usize, usize, usize) {
        self.shape
    }

    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    /// Class names, one per class, or empty when unknown.
    pub fn class_names(&self) -> &[String] {
        &self.class_names
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when the data set holds no example.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Number of `f32` values per image (`C * H * W`).
    pub fn example_len(&self) -> usize {
        self.shape.0 * self.shape.1 * self.shape.2
    }

    /// All images, NCHW, example after example.
    pub fn images(&self) -> &[f32] {
        &self.images
    }

    /// All labels.
    pub fn labels(&self) -> &[usize] {
        &self.labels
    }

    /// The image of example `i` (`C * H * W` values); `None` when out of range.
    pub fn image(&self, i: usize) -> Option<&[f32]> {
        let n = self.example_len();
        self.images.get(i * n..(i + 1) * n)
    }

    /// The label of example `i`; `None` when out of range.
    pub fn label(&self, i: usize) -> Option<usize> {
        self.labels.get(i).copied()
    }

    /// Number of examples of each class.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.num_classes];
        for &l in &self.labels {
            counts[l] += 1;
        }
        counts
    }

    /// A new data set made of the examples at `indices` (in that order; repeats allowed).
    pub fn subset(&self, indices: &[usize]) -> Result<Dataset> {
        let n = self.example_len();
        let mut images = Vec::with_capacity(indices.len() * n);
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            let img = self.image(i).ok_or_else(|| {
                DataError::InvalidArgument(format!(
                    "{}: index {i} out of range (the data set has {} examples)",
                    self.name,
                    self.len()
                ))
            })?;
            images.extend_from_slice(img);
            labels.push(self.labels[i]);
        }
        Ok(Dataset {
            name: self.name.clone(),
            shape: self.shape,
            num_classes: self.num_classes,
            images,
            labels,
            class_names: self.class_names.clone(),
        })
    }

    /// Splits off `n_valid` examples chosen uniformly at random with `seed`: returns
    /// `(rest, valid)`. Both parts keep the original order of their examples. Needs
    /// `0 < n_valid < len()`.
    pub fn split(&self, n_valid: usize, seed: u64) -> Result<(Dataset, Dataset)> {
        if n_valid == 0 || n_valid >= self.len() {
            return Err(DataError::InvalidArgument(format!(
                "{}: cannot take {n_valid} validation examples from {} (need 0 < n < {})",
                self.name,
                self.len(),
                self.len()
            )));
        }
        let mut order: Vec<usize> = (0..self.len()).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
        let (valid, rest) = order.split_at_mut(n_valid);
        valid.sort_unstable();
        rest.sort_unstable();
        Ok((self.subset(rest)?, self.subset(valid)?))
    }

    /// Mutable access to the image values for transforms in this module.
    pub(crate) fn images_mut(&mut self) -> &mut [f32] {
        &mut self.images
    }
}

/// Per-channel mean and standard deviation, fitted on a training set and applied to any set of the
/// same channel count: `x <- (x - mean[c]) / std[c]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Normalization {
    /// Mean of each channel.
    pub mean: Vec<f32>,
    /// Standard deviation of each channel (population; a constant channel gets 1 so that applying
    /// never divides by zero).
    pub std: Vec<f32>,
}

impl Normalization {
    /// Computes per-channel mean and (population) standard deviation over all pixels of `data`.
    pub fn fit(data: &Dataset) -> Result<Self> {
        if data.is_empty() {
            return Err(DataError::InvalidArgument(format!(
                "{}: cannot fit a normalisation on an empty data set",
                data.name
            )));
        }
        let (c, h, w) = data.shape;
        let plane = h * w;
        let mut sum = vec![0f64; c];
        let mut sum_sq = vec![0f64; c];
        for img in data.images.chunks_exact(c * plane) {
            for ch in 0..c {
                let (mut s, mut s2) = (0f64, 0f64);
                for &v in &img[ch * plane..(ch + 1) * plane] {
                    let v = v as f64;
                    s += v;
                    s2 += v * v;
                }
                sum[ch] += s;
                sum_sq[ch] += s2;
            }
        }
        let count = (data.len() * plane) as f64;
        let mut mean = Vec::with_capacity(c);
        let mut std = Vec::with_capacity(c);
        for ch in 0..c {
            let m = sum[ch] / count;
            let var = (sum_sq[ch] / count - m * m).max(0.0);
            let s = var.sqrt();
            mean.push(m as f32);
            std.push(if s > 1e-12 { s as f32 } else { 1.0 });
        }
        Ok(Self { mean, std })
    }

    /// Standardises every image of `data` in place; an error if the channel counts differ.
    pub fn apply(&self, data: &mut Dataset) -> Result<()> {
        let (c, h, w) = data.shape;
        if c != self.mean.len() || c != self.std.len() {
            return Err(DataError::InvalidArgument(format!(
                "{}: normalisation has {} channels, data set has {c}",
                data.name,
                self.mean.len()
            )));
        }
        self.apply_to_slice(data.images_mut(), h * w);
        Ok(())
    }

    /// Standardises NCHW images in `images` (planes of `plane = H * W` values, channels cycling).
    pub fn apply_to_slice(&self, images: &mut [f32], plane: usize) {
        let c = self.mean.len();
        for (k, chunk) in images.chunks_mut(plane).enumerate() {
            let ch = k % c;
            let (m, inv) = (self.mean[ch], 1.0 / self.std[ch]);
            for v in chunk {
                *v = (*v - m) * inv;
            }
        }
    }
}

/// A data set's training, optional validation and test parts, plus the normalisation applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Splits {
    /// Examples to train on.
    pub train: Dataset,
    /// Examples held out of the training set for model selection (`None` until split).
    pub valid: Option<Dataset>,
    /// The data set's own test set.
    pub test: Dataset,
    /// The normalisation applied to all parts (`None` while pixels are still raw in `[0, 1]`).
    pub normalization: Option<Normalization>,
}

impl Splits {
    /// Wraps a training and a test set (raw, no validation part yet); they must agree on shape
    /// and number of classes.
    pub fn new(train: Dataset, test: Dataset) -> Result<Self> {
        if train.shape != test.shape || train.num_classes != test.num_classes {
            return Err(DataError::InvalidArgument(format!(
                "{}: training set ({:?}, {} classes) and test set ({:?}, {} classes) disagree",
                train.name, train.shape, train.num_classes, test.shape, test.num_classes
            )));
        }
        Ok(Self {
            train,
            valid: None,
            test,
            normalization: None,
        })
    }

    /// Moves `round(fraction * train.len())` training examples, chosen with `seed`, into a
    /// validation set. `fraction` must lie in `[0, 1)`; 0 leaves the splits unchanged. An error if
    /// a validation set already exists or if either part would be empty.
    pub fn with_validation(mut self, fraction: f64, seed: u64) -> Result<Self> {
        if !(0.0..1.0).contains(&fraction) {
            return Err(DataError::InvalidArgument(format!(
                "validation fraction {fraction} is not in [0, 1)"
            )));
        }
        if self.valid.is_some() {
            return Err(DataError::InvalidArgument(
                "the splits already have a validation set".into(),
            ));
        }
        if self.normalization.is_some() {
            return Err(DataError::InvalidArgument(
                "split off the validation set before normalising (statistics come from the training part)"
                    .into(),
            ));
        }
        if fraction == 0.0 {
            return Ok(self);
        }
        let n_valid = (fraction * self.train.len() as f64).round() as usize;
        let (train, valid) = self.train.split(n_valid, seed)?;
        self.train = train;
        self.valid = Some(valid);
        Ok(self)
    }

    /// Fits a per-channel [`Normalization`] on the training part and applies it to every part.
    /// An error if the splits are already normalised.
    pub fn normalize(mut self) -> Result<Self> {
        if self.normalization.is_some() {
            return Err(DataError::InvalidArgument(
                "the splits are already normalised".into(),
            ));
        }
        let norm = Normalization::fit(&self.train)?;
        norm.apply(&mut self.train)?;
        if let Some(v) = self.valid.as_mut() {
            norm.apply(v)?;
        }
        norm.apply(&mut self.test)?;
        self.normalization = Some(norm);
        Ok(self)
    }

    /// The usual preparation: a seeded validation split of `valid_fraction`, then normalisation
    /// fitted on what remains of the training set.
    pub fn prepare(self, valid_fraction: f64, seed: u64) -> Result<Self> {
        self.with_validation(valid_fraction, seed)?.normalize()
    }
}
