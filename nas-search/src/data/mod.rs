//! Data sets: loaders for the formats users have, the embedded default, validation splits,
//! normalisation, augmentation and seeded mini-batches.
//!
//! Everything here works on plain `Vec<f32>` images in NCHW order, with no tensor type, so that
//! the tensor crate and the search code can both build on it.
//!
//! - Formats: IDX ([`idx`], MNIST and Fashion-MNIST), CIFAR-10/100 binary ([`cifar`]), UCI digits
//!   CSV ([`digits`]); gzip is detected by its magic bytes.
//! - Embedded: a real Fashion-MNIST subset and the digits ([`embedded`]).
//! - Text: character-level corpora for language models ([`text`]: the embedded Shakespeare
//!   corpus and `text:FILE`).
//! - [`DataInfo`] describes a loaded set (sizes, classes, pixel statistics).
//! - [`DataSpec`] parses `fashion`, `digits`, `mnist:DIR`, `cifar10:DIR`, ... and loads [`Splits`].
//! - [`Splits::prepare`] takes a seeded validation split and normalises every channel with the
//!   training part's statistics; [`Dataset::batches`] cuts shuffled, optionally augmented
//!   ([`Augment::cifar`]) batches.
//!
//! Malformed files give a [`DataError`] naming the file and the problem, never a panic.
//!
//! ```
//! use nas_search::data::{BatchOptions, DataSpec};
//! let splits = "digits".parse::<DataSpec>()?.load()?.prepare(0.1, 7)?;
//! let mut batches = splits.train.batches(&BatchOptions::new(64).seed(1))?;
//! while let Some(batch) = batches.next_batch() {
//!     assert_eq!(batch.images.len(), batch.labels.len() * 64);
//! }
//! # Ok::<(), nas_search::data::DataError>(())
//! ```

mod augment;
mod batch;
pub mod cifar;
mod dataset;
pub mod digits;
pub mod embedded;
mod error;
pub mod idx;
mod info;
mod io;
mod spec;
pub mod text;

pub use augment::{Augment, hflip, shift};
pub use batch::{Batch, BatchOptions, Batches};
pub use dataset::{Dataset, Normalization, Splits};
pub use embedded::{digits_embedded, fashion_mnist_embedded};
pub use error::{DataError, Result};
pub use info::DataInfo;
pub use spec::{DataKind, DataSpec};

use std::sync::Arc;

/// A loaded data set of either kind, shared between workers.
#[derive(Debug, Clone)]
pub enum LoadedData {
    /// Images with their training, validation and test parts.
    Images(Arc<Splits>),
    /// A text corpus with its training, validation and test streams.
    Text(Arc<text::TextCorpus>),
}

impl LoadedData {
    /// What it holds.
    pub fn kind(&self) -> DataKind {
        match self {
            LoadedData::Images(_) => DataKind::Images,
            LoadedData::Text(_) => DataKind::Text,
        }
    }
}

#[cfg(test)]
mod tests;
