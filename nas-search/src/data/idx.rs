//! The IDX format of MNIST and Fashion-MNIST (optionally gzipped).
//!
//! An IDX file is a 4-byte magic `00 00 TT ND` (TT = element type, 0x08 for unsigned bytes;
//! ND = number of dimensions), ND big-endian `u32` sizes, then the elements in row-major order.

use super::dataset::{Dataset, Splits};
use super::error::{DataError, Result};
use super::io::{maybe_gunzip, read_file};
use std::path::{Path, PathBuf};

/// An n-dimensional array of unsigned bytes read from an IDX file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxArray {
    /// Sizes of the dimensions, outermost first.
    pub dims: Vec<usize>,
    /// The elements, row-major.
    pub data: Vec<u8>,
}

/// Parses IDX bytes (gzip-compressed or not) of element type unsigned byte. `file` names the
/// source in errors.
pub fn parse_idx(bytes: &[u8], file: &str) -> Result<IdxArray> {
    let bytes = maybe_gunzip(bytes, file)?;
    let bytes: &[u8] = &bytes;
    if bytes.len() < 4 {
        return Err(DataError::Truncated {
            file: file.to_string(),
            expected: 4,
            actual: bytes.len(),
        });
    }
    let magic = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    if bytes[0] != 0 || bytes[1] != 0 || bytes[3] == 0 {
        return Err(DataError::BadMagic {
            file: file.to_string(),
            found: magic,
            expected: "0x000008NN (IDX file of unsigned bytes with NN dimensions)".into(),
        });
    }
    if bytes[2] != 0x08 {
        return Err(DataError::Format {
            file: file.to_string(),
            message: format!(
                "IDX element type 0x{:02x} is not supported (only 0x08, unsigned bytes)",
                bytes[2]
            ),
        });
    }
    let nd = bytes[3] as usize;
    let header = 4 + 4 * nd;
    if bytes.len() < header {
        return Err(DataError::Truncated {
            file: file.to_string(),
            expected: header,
            actual: bytes.len(),
        });
    }
    let dims: Vec<usize> = (0..nd)
        .map(|k| {
            let o = 4 + 4 * k;
            u32::from_be_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]) as usize
        })
        .collect();
    let count = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .and_then(|c| c.checked_add(header))
        .ok_or_else(|| DataError::Format {
            file: file.to_string(),
            message: format!("IDX dimensions {dims:?} are too large"),
        })?;
    if bytes.len() < count {
        return Err(DataError::Truncated {
            file: file.to_string(),
            expected: count,
            actual: bytes.len(),
        });
    }
    if bytes.len() > count {
        return Err(DataError::Format {
            file: file.to_string(),
            message: format!(
                "{} bytes after the {} the header {dims:?} accounts for",
                bytes.len() - count,
                count
            ),
        });
    }
    Ok(IdxArray {
        dims,
        data: bytes[header..].to_vec(),
    })
}

/// Reads an IDX file (gzip-compressed or not).
pub fn read_idx(path: &Path) -> Result<IdxArray> {
    let raw = read_file(path)?;
    parse_idx(&raw, &path.display().to_string())
}

/// Builds a data set from an IDX images array (`N x H x W`, or `N x C x H x W`) and an IDX labels
/// array (`N`), checking counts and label range. Pixels are scaled to `[0, 1]`.
pub fn idx_to_dataset(
    name: &str,
    images: &IdxArray,
    images_file: &str,
    labels: &IdxArray,
    labels_file: &str,
    num_classes: usize,
) -> Result<Dataset> {
    let shape = match images.dims[..] {
        [_, h, w] => (1, h, w),
        [_, c, h, w] => (c, h, w),
        _ => {
            return Err(DataError::Format {
                file: images_file.to_string(),
                message: format!(
                    "an images file needs 3 (N, H, W) or 4 (N, C, H, W) dimensions, found {:?}",
                    images.dims
                ),
            });
        }
    };
    if shape.0 == 0 || shape.1 == 0 || shape.2 == 0 {
        return Err(DataError::Format {
            file: images_file.to_string(),
            message: format!("image dimensions {:?} contain a zero", images.dims),
        });
    }
    if labels.dims.len() != 1 {
        return Err(DataError::Format {
            file: labels_file.to_string(),
            message: format!(
                "a labels file needs 1 dimension (N), found {:?}",
                labels.dims
            ),
        });
    }
    let (n_img, n_lab) = (images.dims[0], labels.dims[0]);
    if n_img != n_lab {
        return Err(DataError::CountMismatch {
            images_file: images_file.to_string(),
            images: n_img,
            labels_file: labels_file.to_string(),
            labels: n_lab,
        });
    }
    if let Some((index, &label)) = labels
        .data
        .iter()
        .enumerate()
        .find(|(_, l)| **l as usize >= num_classes)
    {
        return Err(DataError::LabelOutOfRange {
            file: labels_file.to_string(),
            index,
            label: label as usize,
            num_classes,
        });
    }
    let pixels: Vec<f32> = images.data.iter().map(|&p| p as f32 / 255.0).collect();
    let labels: Vec<usize> = labels.data.iter().map(|&l| l as usize).collect();
    Dataset::new(name, shape, num_classes, pixels, labels)
}

/// Reads an images file and a labels file in IDX format into a data set.
pub fn load_idx_pair(
    name: &str,
    images_path: &Path,
    labels_path: &Path,
    num_classes: usize,
) -> Result<Dataset> {
    let images = read_idx(images_path)?;
    let labels = read_idx(labels_path)?;
    idx_to_dataset(
        name,
        &images,
        &images_path.display().to_string(),
        &labels,
        &labels_path.display().to_string(),
        num_classes,
    )
}

/// Finds the file of one role in an MNIST-style directory: the standard name
/// (`{prefix}-{kind}-idx{d}-ubyte`, with or without `.gz`) if present, otherwise the only file whose
/// name starts with `prefix` and contains `kind` and `idx{d}` (e.g. `train-4k-images-idx3-ubyte.gz`,
/// `train-images.idx3-ubyte`).
fn find_role(dir: &Path, prefixes: &[&str], kind: &str, d: u8, what: &str) -> Result<PathBuf> {
    let mut looked_for = Vec::new();
    for p in prefixes {
        for ext in ["", ".gz"] {
            let name = format!("{p}-{kind}-idx{d}-ubyte{ext}");
            let path = dir.join(&name);
            if path.is_file() {
                return Ok(path);
            }
            looked_for.push(name);
        }
    }
    let entries = std::fs::read_dir(dir).map_err(|source| DataError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let idx = format!("idx{d}");
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                    // The role is a word of the name: `train-...`, but also
                    // `mnist-train-first10k-images-idx3-ubyte.gz`.
                    let words: Vec<&str> = n.split(['-', '_', '.']).collect();
                    prefixes.iter().any(|pre| words.contains(pre))
                        && n.contains(kind)
                        && n.contains(&idx)
                })
        })
        .collect();
    found.sort();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(DataError::MissingFile {
            dir: dir.to_path_buf(),
            what: what.to_string(),
            looked_for: format!(
                "{} or {}*{kind}*{idx}*",
                looked_for.join(", "),
                prefixes.join("|")
            ),
        }),
        _ => Err(DataError::Format {
            file: dir.display().to_string(),
            message: format!(
                "several candidate {what} files: {}",
                found
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }),
    }
}

/// Loads IDX files named explicitly (`[train images, train labels]` or with test images and
/// labels after them), 10 classes; with training files only, the last sixth of the training
/// images is the test set.
pub fn load_idx_files(files: &[PathBuf]) -> Result<Splits> {
    match files {
        [ti, tl] => hold_out_test(load_idx_pair("idx", ti, tl, 10)?, ti),
        [ti, tl, si, sl] => Splits::new(
            load_idx_pair("idx", ti, tl, 10)?,
            load_idx_pair("idx", si, sl, 10)?,
        ),
        _ => Err(DataError::InvalidArgument(format!(
            "idx: expected 2 or 4 files, got {}",
            files.len()
        ))),
    }
}

/// Splits a training-only set: its last sixth becomes the test set.
fn hold_out_test(train: Dataset, source: &Path) -> Result<Splits> {
    let n = train.len();
    let n_test = n / 6;
    if n_test == 0 {
        return Err(DataError::InvalidArgument(format!(
            "{}: {n} training images and no test files: too few to hold out a test set",
            source.display()
        )));
    }
    let train_idx: Vec<usize> = (0..n - n_test).collect();
    let test_idx: Vec<usize> = (n - n_test..n).collect();
    Splits::new(train.subset(&train_idx)?, train.subset(&test_idx)?)
}

/// Loads an MNIST-style directory (MNIST, Fashion-MNIST, KMNIST...): training and test images and
/// labels in IDX format, 10 classes. `name` becomes the data set's name.
pub fn load_idx_dir(dir: &Path, name: &str) -> Result<Splits> {
    if !dir.exists() {
        return Err(DataError::NotFound {
            path: dir.to_path_buf(),
        });
    }
    if !dir.is_dir() {
        return Err(DataError::Format {
            file: dir.display().to_string(),
            message: "expected a directory holding train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte (optionally .gz)".into(),
        });
    }
    let train_images = find_role(dir, &["train"], "images", 3, "training images")?;
    let train_labels = find_role(dir, &["train"], "labels", 1, "training labels")?;
    let test_images = find_role(dir, &["t10k", "test"], "images", 3, "test images");
    let test_labels = find_role(dir, &["t10k", "test"], "labels", 1, "test labels");
    let train = load_idx_pair(name, &train_images, &train_labels, 10)?;
    match (test_images, test_labels) {
        (Ok(ti), Ok(tl)) => Splits::new(train, load_idx_pair(name, &ti, &tl, 10)?),
        // A training-only directory (such as a first-10k subset): its last sixth is held out
        // as the test set (MNIST's own proportion, 10,000 of 70,000 is one seventh of all).
        (Err(DataError::MissingFile { .. }), Err(DataError::MissingFile { .. })) => {
            hold_out_test(train, dir)
        }
        (Err(e), _) | (_, Err(e)) => Err(e),
    }
}
