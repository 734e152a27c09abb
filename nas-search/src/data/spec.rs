//! Data-set specifications as the command line takes them: `KIND` or `KIND:PATH`.

use super::cifar::{CifarKind, load_cifar_dir};
use super::dataset::Splits;
use super::digits::{digits_splits, load_digits_csv};
use super::embedded::{
    CIFAR10_CLASSES, DIGIT_CLASSES, FASHION_MNIST_CLASSES, digits_embedded, fashion_mnist_embedded,
};
use super::error::{DataError, Result};
use super::idx::{load_idx_dir, load_idx_files};
use super::text::TextSpec;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// Which data set to load.
///
/// Text forms (see [`DataSpec::HELP`]): `fashion` or `fashion-embedded` (the default),
/// `digits`, `mnist:DIR`, `fashion:DIR`, `cifar10:DIR`, `cifar100:DIR`, `digits:FILE`, and
/// for language models `shakespeare` and `text:FILE` ([`DataSpec::Text`]). A path
/// starting with `~/` is taken relative to `$HOME`, since shells leave `kind:~/...` unexpanded.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum DataSpec {
    /// The Fashion-MNIST subset compiled into the library.
    #[default]
    FashionEmbedded,
    /// The UCI digits compiled into the library.
    DigitsEmbedded,
    /// An MNIST directory (IDX files).
    Mnist(PathBuf),
    /// A Fashion-MNIST directory (IDX files).
    Fashion(PathBuf),
    /// A CIFAR-10 binary directory.
    Cifar10(PathBuf),
    /// A CIFAR-100 binary directory.
    Cifar100(PathBuf),
    /// A digits CSV file.
    Digits(PathBuf),
    /// IDX files named explicitly: training images and labels, and optionally test images and
    /// labels (without them the last sixth of the training images is the test set).
    IdxFiles(Vec<PathBuf>),
    /// A text corpus (`shakespeare`, `text:FILE`), for spaces that train language models.
    Text(TextSpec),
}

/// What a data set holds, and so which spaces can train on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DataKind {
    /// Labelled images ([`Splits`]).
    Images,
    /// A character-level text corpus ([`super::text::TextCorpus`]).
    Text,
}

impl DataKind {
    /// The data set of this kind used when none is given: the embedded Fashion-MNIST subset,
    /// or the embedded Shakespeare corpus.
    pub fn default_spec(self) -> DataSpec {
        match self {
            DataKind::Images => DataSpec::FashionEmbedded,
            DataKind::Text => DataSpec::Text(TextSpec::Shakespeare),
        }
    }

    /// The accepted `--data` forms of this kind.
    pub fn help(self) -> &'static str {
        match self {
            DataKind::Images => DataSpec::HELP,
            DataKind::Text => TextSpec::HELP,
        }
    }

    /// `"images"` or `"text"`.
    pub fn as_str(self) -> &'static str {
        match self {
            DataKind::Images => "images",
            DataKind::Text => "text",
        }
    }
}

impl DataSpec {
    /// One-paragraph description of the accepted forms, for `--help` texts and errors.
    pub const HELP: &'static str = "fashion | fashion-embedded (embedded Fashion-MNIST subset, the default), \
digits (embedded UCI digits), mnist:DIR, fashion:DIR (IDX files, optionally .gz; a directory \
with training files only gets its last sixth held out as the test set), \
cifar10:DIR (data_batch_1..5.bin, test_batch.bin), cifar100:DIR (train.bin, test.bin), \
digits:FILE (CSV, optionally .gz), idx:TRAIN_IMAGES,TRAIN_LABELS[,TEST_IMAGES,TEST_LABELS] \
(IDX files by name, 10 classes)";

    /// Loads the training and test parts (pixels in `[0, 1]`, no validation split yet).
    pub fn load(&self) -> Result<Splits> {
        match self {
            DataSpec::FashionEmbedded => fashion_mnist_embedded(),
            DataSpec::DigitsEmbedded => digits_embedded(),
            DataSpec::Mnist(p) => load_idx_dir(p, "mnist").map(|s| names(s, &DIGIT_CLASSES)),
            DataSpec::Fashion(p) => {
                load_idx_dir(p, "fashion-mnist").map(|s| names(s, &FASHION_MNIST_CLASSES))
            }
            DataSpec::Cifar10(p) => {
                load_cifar_dir(p, CifarKind::Cifar10).map(|s| names(s, &CIFAR10_CLASSES))
            }
            DataSpec::Cifar100(p) => load_cifar_dir(p, CifarKind::Cifar100),
            DataSpec::Digits(p) => {
                digits_splits(load_digits_csv(p)?.with_class_names(&DIGIT_CLASSES))
            }
            DataSpec::IdxFiles(files) => load_idx_files(files),
            DataSpec::Text(t) => Err(DataError::Spec {
                spec: t.to_string(),
                message: "a text corpus, not images: it is for a space of recurrent cells \
                          (language models)"
                    .into(),
            }),
        }
    }

    /// True for the data sets compiled into the library.
    pub fn is_embedded(&self) -> bool {
        matches!(
            self,
            DataSpec::FashionEmbedded
                | DataSpec::DigitsEmbedded
                | DataSpec::Text(TextSpec::Shakespeare)
        )
    }

    /// Images or text.
    pub fn kind(&self) -> DataKind {
        match self {
            DataSpec::Text(_) => DataKind::Text,
            _ => DataKind::Images,
        }
    }
}

fn names(mut s: Splits, class_names: &[&str]) -> Splits {
    s.train = s.train.with_class_names(class_names);
    s.test = s.test.with_class_names(class_names);
    if let Some(v) = s.valid.take() {
        s.valid = Some(v.with_class_names(class_names));
    }
    s
}

impl FromStr for DataSpec {
    type Err = DataError;

    fn from_str(s: &str) -> Result<Self> {
        let err = |message: String| DataError::Spec {
            spec: s.to_string(),
            message,
        };
        let (kind, path) = match s.split_once(':') {
            Some((k, p)) => (k.trim(), Some(p)),
            None => (s.trim(), None),
        };
        let kind_lc = kind.to_ascii_lowercase();
        if matches!(
            kind_lc.as_str(),
            "text" | "shakespeare" | "shakespeare-embedded"
        ) {
            return s.parse().map(DataSpec::Text);
        }
        let path = match path {
            Some("") => {
                return Err(err(format!("empty path after \"{kind}:\"")));
            }
            Some(p) => Some(expand_home(p)),
            None => None,
        };
        match (kind_lc.as_str(), path) {
            ("fashion" | "fashion-mnist" | "fashion-embedded", None) => {
                Ok(DataSpec::FashionEmbedded)
            }
            ("fashion-embedded", Some(_)) => Err(err(
                "fashion-embedded takes no path (use fashion:DIR for a directory)".into(),
            )),
            ("digits" | "digits-embedded", None) => Ok(DataSpec::DigitsEmbedded),
            ("digits-embedded", Some(_)) => Err(err(
                "digits-embedded takes no path (use digits:FILE for a CSV file)".into(),
            )),
            ("fashion" | "fashion-mnist", Some(p)) => Ok(DataSpec::Fashion(p)),
            ("mnist", Some(p)) => Ok(DataSpec::Mnist(p)),
            ("cifar10" | "cifar-10", Some(p)) => Ok(DataSpec::Cifar10(p)),
            ("cifar100" | "cifar-100", Some(p)) => Ok(DataSpec::Cifar100(p)),
            ("digits", Some(p)) => Ok(DataSpec::Digits(p)),
            ("idx", None) => Err(err(
                "idx takes files: idx:TRAIN_IMAGES,TRAIN_LABELS[,TEST_IMAGES,TEST_LABELS]".into(),
            )),
            ("idx", Some(_)) => {
                let rest = s.split_once(':').map_or("", |(_, r)| r);
                let files: Vec<PathBuf> = rest.split(',').map(expand_home).collect();
                if (files.len() == 2 || files.len() == 4)
                    && files.iter().all(|f| !f.as_os_str().is_empty())
                {
                    Ok(DataSpec::IdxFiles(files))
                } else {
                    Err(err(format!(
                        "idx: takes 2 or 4 comma-separated files (TRAIN_IMAGES,TRAIN_LABELS\
                         [,TEST_IMAGES,TEST_LABELS]), got {}",
                        files.len()
                    )))
                }
            }
            ("mnist" | "cifar10" | "cifar-10" | "cifar100" | "cifar-100", None) => Err(err(
                format!("{kind} is not embedded; give its directory as {kind}:DIR"),
            )),
            _ => Err(err(format!(
                "unknown data set kind {kind:?}; expected one of: {}; or, for language models: {}",
                DataSpec::HELP,
                TextSpec::HELP
            ))),
        }
    }
}

/// Replaces a leading `~/` by `$HOME/` (shells do not expand `~` after `kind:`).
fn expand_home(p: &str) -> PathBuf {
    match (p.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(p),
    }
}

impl fmt::Display for DataSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataSpec::FashionEmbedded => write!(f, "fashion-embedded"),
            DataSpec::DigitsEmbedded => write!(f, "digits"),
            DataSpec::Mnist(p) => write!(f, "mnist:{}", p.display()),
            DataSpec::Fashion(p) => write!(f, "fashion:{}", p.display()),
            DataSpec::Cifar10(p) => write!(f, "cifar10:{}", p.display()),
            DataSpec::Cifar100(p) => write!(f, "cifar100:{}", p.display()),
            DataSpec::Digits(p) => write!(f, "digits:{}", p.display()),
            DataSpec::IdxFiles(files) => write!(
                f,
                "idx:{}",
                files
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            DataSpec::Text(t) => write!(f, "{t}"),
        }
    }
}
