//! Shuffled, seeded mini-batches over a [`Dataset`], reusing their buffers.

use super::augment::Augment;
use super::dataset::Dataset;
use super::error::{DataError, Result};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// How to cut a data set into mini-batches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchOptions {
    /// Examples per batch (at least 1).
    pub batch_size: usize,
    /// Visit the examples in a fresh random order each epoch (otherwise in stored order).
    pub shuffle: bool,
    /// Skip the last batch of an epoch when it is smaller than `batch_size`.
    pub drop_last: bool,
    /// Augmentation applied to each batch (training only).
    pub augment: Option<Augment>,
    /// Seed of the shuffling and augmentation generator.
    pub seed: u64,
}

impl BatchOptions {
    /// Shuffled batches of `batch_size`, last partial batch kept, no augmentation, seed 0.
    pub fn new(batch_size: usize) -> Self {
        Self {
            batch_size,
            shuffle: true,
            drop_last: false,
            augment: None,
            seed: 0,
        }
    }

    /// Sets the seed.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Sets whether to shuffle.
    pub fn shuffle(mut self, shuffle: bool) -> Self {
        self.shuffle = shuffle;
        self
    }

    /// Sets whether to drop a last partial batch.
    pub fn drop_last(mut self, drop_last: bool) -> Self {
        self.drop_last = drop_last;
        self
    }

    /// Sets the augmentation.
    pub fn augment(mut self, augment: Option<Augment>) -> Self {
        self.augment = augment;
        self
    }
}

/// One mini-batch, borrowed from the [`Batches`] buffers: `images` holds `labels.len()` images in
/// NCHW order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Batch<'a> {
    /// Images, NCHW.
    pub images: &'a [f32],
    /// Labels, one per image.
    pub labels: &'a [usize],
}

impl Batch<'_> {
    /// Number of examples in the batch.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True for an empty batch (never yielded).
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// Mini-batches over a data set, one epoch at a time.
///
/// Two ways to read it:
/// - [`Batches::next_batch`] lends a [`Batch`] that points into buffers owned by the iterator,
///   so no allocation happens after the first batch;
/// - as an [`Iterator`] it yields owned `(images, labels)` pairs; hand a pair back with
///   [`Batches::recycle`] and the next batch is written into those buffers instead of new ones.
///
/// Either way an epoch ends with `None`; [`Batches::next_epoch`] starts the next one with a fresh
/// order drawn from the same generator, so a whole run is determined by [`BatchOptions::seed`].
pub struct Batches<'a> {
    data: &'a Dataset,
    options: BatchOptions,
    rng: ChaCha8Rng,
    order: Vec<usize>,
    pos: usize,
    epoch: usize,
    images: Vec<f32>,
    labels: Vec<usize>,
    spare: Option<(Vec<f32>, Vec<usize>)>,
    scratch: Vec<f32>,
}

impl Dataset {
    /// Mini-batches over one epoch (then more with [`Batches::next_epoch`]); see [`BatchOptions`].
    pub fn batches(&self, options: &BatchOptions) -> Result<Batches<'_>> {
        Batches::new(self, options.clone())
    }
}

impl<'a> Batches<'a> {
    /// Starts epoch 0 over `data`; an error if `batch_size` is 0.
    pub fn new(data: &'a Dataset, options: BatchOptions) -> Result<Self> {
        if options.batch_size == 0 {
            return Err(DataError::InvalidArgument(
                "batch size must be at least 1".into(),
            ));
        }
        let mut b = Self {
            data,
            rng: ChaCha8Rng::seed_from_u64(options.seed),
            options,
            order: (0..data.len()).collect(),
            pos: 0,
            epoch: 0,
            images: Vec::new(),
            labels: Vec::new(),
            spare: None,
            scratch: Vec::new(),
        };
        b.reorder();
        Ok(b)
    }

    fn reorder(&mut self) {
        if self.options.shuffle {
            self.order.shuffle(&mut self.rng);
        }
        self.pos = 0;
    }

    /// Starts the next epoch (a new order if shuffling), whether or not this one was finished.
    pub fn next_epoch(&mut self) {
        self.epoch += 1;
        self.order.sort_unstable();
        self.reorder();
    }

    /// The current epoch, counting from 0.
    pub fn epoch(&self) -> usize {
        self.epoch
    }

    /// Number of batches in one epoch.
    pub fn num_batches(&self) -> usize {
        let (n, b) = (self.data.len(), self.options.batch_size);
        if self.options.drop_last {
            n / b
        } else {
            n.div_ceil(b)
        }
    }

    /// Number of batches left in this epoch.
    pub fn remaining(&self) -> usize {
        let (n, b) = (self.data.len() - self.pos, self.options.batch_size);
        if self.options.drop_last {
            n / b
        } else {
            n.div_ceil(b)
        }
    }

    /// Indices of the next batch's examples, advancing the position; `None` at the end of the epoch.
    fn advance(&mut self) -> Option<std::ops::Range<usize>> {
        let n = self.data.len();
        let b = self.options.batch_size;
        if self.pos >= n || (self.options.drop_last && n - self.pos < b) {
            return None;
        }
        let end = (self.pos + b).min(n);
        let r = self.pos..end;
        self.pos = end;
        Some(r)
    }

    /// Fills `images`/`labels` with the examples of `order[range]` and augments them.
    fn fill(
        &mut self,
        range: std::ops::Range<usize>,
        images: &mut Vec<f32>,
        labels: &mut Vec<usize>,
    ) {
        images.clear();
        labels.clear();
        let n = self.data.example_len();
        let (all_images, all_labels) = (self.data.images(), self.data.labels());
        for &i in &self.order[range] {
            images.extend_from_slice(&all_images[i * n..(i + 1) * n]);
            labels.push(all_labels[i]);
        }
        if let Some(aug) = self.options.augment {
            aug.apply_batch(images, self.data.shape(), &mut self.rng, &mut self.scratch);
        }
    }

    /// The next batch of this epoch, in the iterator's own buffers; `None` at the end of the epoch.
    pub fn next_batch(&mut self) -> Option<Batch<'_>> {
        let range = self.advance()?;
        let mut images = std::mem::take(&mut self.images);
        let mut labels = std::mem::take(&mut self.labels);
        self.fill(range, &mut images, &mut labels);
        self.images = images;
        self.labels = labels;
        Some(Batch {
            images: &self.images,
            labels: &self.labels,
        })
    }

    /// Gives a batch yielded by the [`Iterator`] back so that its buffers are reused.
    pub fn recycle(&mut self, batch: (Vec<f32>, Vec<usize>)) {
        self.spare = Some(batch);
    }
}

impl Iterator for Batches<'_> {
    type Item = (Vec<f32>, Vec<usize>);

    fn next(&mut self) -> Option<Self::Item> {
        let range = self.advance()?;
        let (mut images, mut labels) = self.spare.take().unwrap_or_default();
        self.fill(range, &mut images, &mut labels);
        Some((images, labels))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let r = self.remaining();
        (r, Some(r))
    }
}

impl ExactSizeIterator for Batches<'_> {}
