//! The UCI optical-recognition digits as CSV (scikit-learn's `digits.csv`): one example per line,
//! 64 pixel values in `0..=16` (an 8x8 image, row-major) then the label `0..=9`.

use super::dataset::{Dataset, Splits};
use super::error::{DataError, Result};
use super::io::{maybe_gunzip, read_file};
use std::path::Path;

/// Pixels per digits image (8 x 8).
pub const DIGITS_PIXELS: usize = 64;
/// Largest pixel value of the digits data.
pub const DIGITS_MAX_VALUE: f32 = 16.0;

/// Parses digits CSV bytes (gzip-compressed or not) into one data set named `digits`, pixels
/// scaled to `[0, 1]`. Blank lines are skipped; every other line must have the same number of
/// fields, 65, all numbers, pixels in `0..=16` and an integer label in `0..=9`.
pub fn parse_digits_csv(bytes: &[u8], file: &str) -> Result<Dataset> {
    let bytes = maybe_gunzip(bytes, file)?;
    let text = std::str::from_utf8(&bytes).map_err(|e| DataError::Format {
        file: file.to_string(),
        message: format!("not UTF-8 text: {e}"),
    })?;
    let mut images = Vec::new();
    let mut labels = Vec::new();
    let mut first_len: Option<(usize, usize)> = None;
    let err = |line: usize, message: String| DataError::Format {
        file: file.to_string(),
        message: format!("line {line}: {message}"),
    };
    for (k, line) in text.lines().enumerate() {
        let lineno = k + 1;
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        match first_len {
            None => {
                if fields.len() != DIGITS_PIXELS + 1 {
                    return Err(err(
                        lineno,
                        format!(
                            "{} values; a digits row has {} pixels and a label",
                            fields.len(),
                            DIGITS_PIXELS
                        ),
                    ));
                }
                first_len = Some((lineno, fields.len()));
            }
            Some((l0, n0)) if fields.len() != n0 => {
                return Err(err(
                    lineno,
                    format!("{} values, but line {l0} has {n0}", fields.len()),
                ));
            }
            Some(_) => {}
        }
        for (col, f) in fields[..DIGITS_PIXELS].iter().enumerate() {
            let v: f32 = f
                .parse()
                .map_err(|_| err(lineno, format!("column {}: {f:?} is not a number", col + 1)))?;
            if !(0.0..=DIGITS_MAX_VALUE).contains(&v) {
                return Err(err(
                    lineno,
                    format!("column {}: pixel value {v} is outside 0..=16", col + 1),
                ));
            }
            images.push(v / DIGITS_MAX_VALUE);
        }
        let lf = fields[DIGITS_PIXELS];
        let label: f64 = lf
            .parse()
            .map_err(|_| err(lineno, format!("label {lf:?} is not a number")))?;
        if label.fract() != 0.0 || !(0.0..10.0).contains(&label) {
            return Err(DataError::Format {
                file: file.to_string(),
                message: format!(
                    "line {lineno}: label {lf} of example {} is not a class in 0..=9",
                    labels.len()
                ),
            });
        }
        labels.push(label as usize);
    }
    if labels.is_empty() {
        return Err(DataError::Format {
            file: file.to_string(),
            message: "no data rows".into(),
        });
    }
    Dataset::new("digits", (1, 8, 8), 10, images, labels)
}

/// Reads a digits CSV file (gzip-compressed or not).
pub fn load_digits_csv(path: &Path) -> Result<Dataset> {
    let raw = read_file(path)?;
    parse_digits_csv(&raw, &path.display().to_string())
}

/// Splits the digits (which come without a test set) into training and test parts: the last
/// fifth of the rows (rounded down) is the test set. A fixed, documented cut, so results are
/// comparable between runs.
pub fn digits_splits(all: Dataset) -> Result<Splits> {
    let n = all.len();
    let n_test = n / 5;
    if n_test == 0 {
        return Err(DataError::InvalidArgument(format!(
            "digits: {n} rows are too few to hold out a test set"
        )));
    }
    let train_idx: Vec<usize> = (0..n - n_test).collect();
    let test_idx: Vec<usize> = (n - n_test..n).collect();
    Splits::new(all.subset(&train_idx)?, all.subset(&test_idx)?)
}
