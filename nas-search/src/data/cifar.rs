//! The binary format of CIFAR-10 and CIFAR-100.
//!
//! A file is a sequence of fixed-size records: the label byte(s) (CIFAR-10: one label; CIFAR-100:
//! coarse then fine label) followed by 3072 pixel bytes, the red, green and blue 32x32 planes.

use super::dataset::{Dataset, Splits};
use super::error::{DataError, Result};
use super::io::{maybe_gunzip, read_file};
use std::path::{Path, PathBuf};

/// Pixel bytes per CIFAR image (3 x 32 x 32).
pub const CIFAR_IMAGE_BYTES: usize = 3 * 32 * 32;

/// The two variants of the CIFAR binary format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CifarKind {
    /// CIFAR-10: one label byte per record, 10 classes.
    Cifar10,
    /// CIFAR-100: coarse and fine label bytes per record; the fine label (100 classes) is used.
    Cifar100,
}

impl CifarKind {
    /// Label bytes per record.
    pub fn label_bytes(self) -> usize {
        match self {
            CifarKind::Cifar10 => 1,
            CifarKind::Cifar100 => 2,
        }
    }

    /// Bytes per record.
    pub fn record_bytes(self) -> usize {
        self.label_bytes() + CIFAR_IMAGE_BYTES
    }

    /// Number of classes of the label used.
    pub fn num_classes(self) -> usize {
        match self {
            CifarKind::Cifar10 => 10,
            CifarKind::Cifar100 => 100,
        }
    }

    /// The data set's name.
    pub fn name(self) -> &'static str {
        match self {
            CifarKind::Cifar10 => "cifar10",
            CifarKind::Cifar100 => "cifar100",
        }
    }
}

/// Parses the records of one CIFAR binary file (gzip-compressed or not), appending pixels
/// (scaled to `[0, 1]`, CHW) and labels. `file` names the source in errors.
pub fn parse_cifar_records(
    bytes: &[u8],
    file: &str,
    kind: CifarKind,
    images: &mut Vec<f32>,
    labels: &mut Vec<usize>,
) -> Result<()> {
    let bytes = maybe_gunzip(bytes, file)?;
    let rec = kind.record_bytes();
    if bytes.is_empty() {
        return Err(DataError::Format {
            file: file.to_string(),
            message: "empty file (no CIFAR record)".into(),
        });
    }
    if bytes.len() % rec != 0 {
        return Err(DataError::Truncated {
            file: file.to_string(),
            expected: (bytes.len() / rec + 1) * rec,
            actual: bytes.len(),
        });
    }
    let n = bytes.len() / rec;
    images.reserve(n * CIFAR_IMAGE_BYTES);
    labels.reserve(n);
    let first = labels.len();
    for (index, r) in bytes.chunks_exact(rec).enumerate() {
        let (check, label) = match kind {
            CifarKind::Cifar10 => ((r[0] as usize, 10), r[0] as usize),
            CifarKind::Cifar100 => ((r[0] as usize, 20), r[1] as usize),
        };
        if check.0 >= check.1 {
            // CIFAR-100's coarse label (20 super-classes) must be in range too.
            return Err(DataError::LabelOutOfRange {
                file: file.to_string(),
                index,
                label: check.0,
                num_classes: check.1,
            });
        }
        if label >= kind.num_classes() {
            return Err(DataError::LabelOutOfRange {
                file: file.to_string(),
                index,
                label,
                num_classes: kind.num_classes(),
            });
        }
        labels.push(label);
        images.extend(r[kind.label_bytes()..].iter().map(|&p| p as f32 / 255.0));
    }
    debug_assert_eq!(labels.len() - first, n);
    Ok(())
}

/// Reads CIFAR binary files into one data set named after `kind`.
pub fn load_cifar_files(paths: &[PathBuf], kind: CifarKind) -> Result<Dataset> {
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for p in paths {
        let raw = read_file(p)?;
        parse_cifar_records(
            &raw,
            &p.display().to_string(),
            kind,
            &mut images,
            &mut labels,
        )?;
    }
    Dataset::new(kind.name(), (3, 32, 32), kind.num_classes(), images, labels)
}

/// The training and test file names of a CIFAR variant.
pub fn cifar_file_names(kind: CifarKind) -> (Vec<String>, String) {
    match kind {
        CifarKind::Cifar10 => (
            (1..=5).map(|i| format!("data_batch_{i}.bin")).collect(),
            "test_batch.bin".into(),
        ),
        CifarKind::Cifar100 => (vec!["train.bin".into()], "test.bin".into()),
    }
}

/// Loads a CIFAR directory: for CIFAR-10 `data_batch_1.bin` ... `data_batch_5.bin` and
/// `test_batch.bin`, for CIFAR-100 `train.bin` and `test.bin`. The files may also sit in the
/// archive's own sub-directory (`cifar-10-batches-bin`, `cifar-100-binary`).
pub fn load_cifar_dir(dir: &Path, kind: CifarKind) -> Result<Splits> {
    if !dir.exists() {
        return Err(DataError::NotFound {
            path: dir.to_path_buf(),
        });
    }
    let (train_names, test_name) = cifar_file_names(kind);
    let sub = match kind {
        CifarKind::Cifar10 => "cifar-10-batches-bin",
        CifarKind::Cifar100 => "cifar-100-binary",
    };
    let base = if dir.join(&test_name).is_file() || !dir.join(sub).is_dir() {
        dir.to_path_buf()
    } else {
        dir.join(sub)
    };
    let mut all: Vec<String> = train_names.clone();
    all.push(test_name.clone());
    for name in &all {
        if !base.join(name).is_file() {
            return Err(DataError::MissingFile {
                dir: base.clone(),
                what: format!("{} ({name})", kind.name()),
                looked_for: all.join(", "),
            });
        }
    }
    let train_paths: Vec<PathBuf> = train_names.iter().map(|n| base.join(n)).collect();
    let train = load_cifar_files(&train_paths, kind)?;
    let test = load_cifar_files(&[base.join(&test_name)], kind)?;
    Splits::new(train, test)
}
