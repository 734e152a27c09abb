//! What `nas data info` shows of a data set: sizes, image shape, classes, class counts and
//! pixel statistics ([`DataInfo`]).

use serde::Serialize;
use serde_json::{Value, json};

use super::{DataSpec, Dataset, Normalization, Result};

/// A loaded data set described: what [`DataInfo::of`] measures.
#[derive(Debug, Clone, Serialize)]
pub struct DataInfo {
    /// The data set's name.
    pub name: String,
    /// The spec it was loaded from.
    pub spec: String,
    /// Compiled into the library (no file read).
    pub embedded: bool,
    /// Examples in all parts.
    pub examples: usize,
    /// `[channels, height, width]`.
    pub shape: [usize; 3],
    /// Number of classes.
    pub num_classes: usize,
    /// Class names, where the format has them.
    pub class_names: Vec<String>,
    /// Examples and per-class counts of the training part.
    pub train: Value,
    /// The same of the validation part, if one was held out.
    pub valid: Option<Value>,
    /// The same of the test part.
    pub test: Value,
    /// Per-channel pixel mean and standard deviation of the training part.
    pub normalization: Normalization,
}

fn part(d: &Dataset) -> Value {
    json!({"examples": d.len(), "class_counts": d.class_counts()})
}

impl DataInfo {
    /// Loads `spec`, holds out `valid` of the training part (seeded by `seed`) and measures it.
    pub fn of(spec: &DataSpec, valid: f64, seed: u64) -> Result<DataInfo> {
        let splits = spec.load()?.with_validation(valid, seed)?;
        let train = &splits.train;
        let (c, h, w) = train.shape();
        let n_valid = splits.valid.as_ref().map_or(0, Dataset::len);
        Ok(DataInfo {
            name: train.name().into(),
            spec: spec.to_string(),
            embedded: spec.is_embedded(),
            examples: train.len() + n_valid + splits.test.len(),
            shape: [c, h, w],
            num_classes: train.num_classes(),
            class_names: train.class_names().to_vec(),
            train: part(train),
            valid: splits.valid.as_ref().map(part),
            test: part(&splits.test),
            normalization: Normalization::fit(train)?,
        })
    }
}

impl std::fmt::Display for DataInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let source = if self.embedded {
            "embedded"
        } else {
            "from disk"
        };
        writeln!(f, "data set:  {} ({}, {source})", self.name, self.spec)?;
        let n = |v: &Value| v["examples"].as_u64().unwrap_or(0);
        let valid = match &self.valid {
            Some(v) if n(v) > 0 => format!("valid {}, ", n(v)),
            _ => String::new(),
        };
        writeln!(
            f,
            "examples:  {} (train {}, {valid}test {})",
            self.examples,
            n(&self.train),
            n(&self.test)
        )?;
        let [c, h, w] = self.shape;
        writeln!(f, "image:     {c}x{h}x{w} (channels x height x width)")?;
        let names = if self.class_names.is_empty() {
            String::new()
        } else {
            format!(": {}", self.class_names.join(", "))
        };
        writeln!(f, "classes:   {}{names}", self.num_classes)?;
        let counts: Vec<String> = self.train["class_counts"]
            .as_array()
            .map(|a| a.iter().map(|n| n.to_string()).collect())
            .unwrap_or_default();
        writeln!(f, "train per class: {}", counts.join(" "))?;
        let norm = &self.normalization;
        let stats: Vec<String> = norm
            .mean
            .iter()
            .zip(&norm.std)
            .map(|(m, s)| format!("{m:.4}/{s:.4}"))
            .collect();
        writeln!(
            f,
            "pixel mean/std per channel (train, scaled to [0,1]): {}",
            stats.join(" ")
        )
    }
}
