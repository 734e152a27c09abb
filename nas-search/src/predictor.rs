//! Performance predictors: an ensemble of small multi-layer perceptrons (on nas-tensor) that
//! maps an architecture's features ([`nas_space::SearchSpace::features`]: the path encoding on
//! NAS-Bench-201 and NAS-Bench-101) to its accuracy, as BANANAS does (White et al., AAAI 2021).
//!
//! Each member is a ReLU MLP with its own random initialisation, trained full batch with Adam
//! on the mean squared error of standardised targets. The members' spread is the predictor's
//! uncertainty: [`MlpEnsemble::predict`] returns the mean and the standard deviation of the
//! members' predictions. [`predictor_quality`] measures a predictor on its own: Kendall's tau
//! and Spearman's rho of its predictions on held-out architectures.

use crate::error::{Result, SearchError};
use crate::stats::{kendall_tau, spearman};
use nas_tensor::Tensor;
use nas_tensor::nn::{Linear, Module};
use nas_tensor::optim::{Adam, AdamConfig, Optimizer};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Settings of [`MlpEnsemble`] (BANANAS' are 5 members, 10 layers of 20 units, 200 epochs,
/// Adam with learning rate 0.01; ours are shallower and wider, trained full batch).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnsembleConfig {
    /// Independently initialised members (default 5).
    pub members: usize,
    /// Hidden layers per member (default 2).
    pub layers: usize,
    /// Units per hidden layer (default 32).
    pub hidden: usize,
    /// Full-batch Adam steps per member (default 200).
    pub steps: usize,
    /// Adam's learning rate (default 0.01).
    pub learning_rate: f64,
}

impl Default for EnsembleConfig {
    fn default() -> Self {
        EnsembleConfig {
            members: 5,
            layers: 2,
            hidden: 32,
            steps: 200,
            learning_rate: 0.01,
        }
    }
}

impl EnsembleConfig {
    /// `Ok` when every setting is usable, otherwise an error naming the bad ones.
    pub fn check(&self) -> Result<()> {
        if self.members == 0
            || self.hidden == 0
            || self.steps == 0
            || !(self.learning_rate > 0.0 && self.learning_rate.is_finite())
        {
            return Err(SearchError::Config(format!(
                "predictor: need members, hidden and steps >= 1 and a finite learning_rate > 0, \
                 got {self:?}"
            )));
        }
        Ok(())
    }
}

/// A prediction: the members' mean and standard deviation (population), in target units.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prediction {
    /// Mean of the members' predictions.
    pub mean: f64,
    /// Their standard deviation.
    pub std: f64,
}

/// A trained ensemble; see the [module docs](self).
pub struct MlpEnsemble {
    members: Vec<Vec<Linear>>,
    inputs: usize,
    y_mean: f64,
    y_scale: f64,
}

fn tensor_err(e: nas_tensor::TensorError) -> SearchError {
    SearchError::Config(format!("predictor: {e}"))
}

fn forward(layers: &[Linear], x: &Tensor) -> Result<Tensor> {
    let mut h = x.clone();
    for (i, l) in layers.iter().enumerate() {
        h = l.forward(&h).map_err(tensor_err)?;
        if i + 1 < layers.len() {
            h = h.relu();
        }
    }
    Ok(h)
}

/// The rows of `x` as one `[n, d]` tensor, checking that every row has `d` features.
fn matrix(x: &[Vec<f32>], d: usize) -> Result<Tensor> {
    let mut flat = Vec::with_capacity(x.len() * d);
    for (i, row) in x.iter().enumerate() {
        if row.len() != d {
            return Err(SearchError::Config(format!(
                "predictor: row {i} has {} features, expected {d}",
                row.len()
            )));
        }
        flat.extend_from_slice(row);
    }
    Tensor::from_vec(flat, &[x.len(), d]).map_err(tensor_err)
}

impl MlpEnsemble {
    /// Trains an ensemble on the feature rows `x` and targets `y`; member `m` is initialised
    /// from `seed + m`. Errors on no rows, rows of different lengths, a length mismatch or a
    /// non-finite target.
    pub fn fit(config: &EnsembleConfig, x: &[Vec<f32>], y: &[f64], seed: u64) -> Result<Self> {
        config.check()?;
        if x.is_empty() || x.len() != y.len() {
            return Err(SearchError::Config(format!(
                "predictor: need as many targets as rows (at least one), got {} rows and {} \
                 targets",
                x.len(),
                y.len()
            )));
        }
        if let Some(i) = y.iter().position(|v| !v.is_finite()) {
            return Err(SearchError::Config(format!(
                "predictor: target {i} is {}",
                y[i]
            )));
        }
        let d = x[0].len();
        if d == 0 {
            return Err(SearchError::Config(
                "predictor: rows have no features".into(),
            ));
        }
        let xs = matrix(x, d)?;
        let y_mean = crate::stats::mean(y);
        let sd = crate::stats::std_dev(y);
        let y_scale = if sd > 0.0 { sd } else { 1.0 };
        let yt: Vec<f32> = y.iter().map(|v| ((v - y_mean) / y_scale) as f32).collect();
        let yt = Tensor::from_vec(yt, &[y.len(), 1]).map_err(tensor_err)?;
        let mut members = Vec::with_capacity(config.members);
        for m in 0..config.members {
            let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_add(m as u64));
            let mut layers = Vec::with_capacity(config.layers + 1);
            let mut fan_in = d;
            for _ in 0..config.layers {
                layers
                    .push(Linear::new(fan_in, config.hidden, true, &mut rng).map_err(tensor_err)?);
                fan_in = config.hidden;
            }
            layers.push(Linear::new(fan_in, 1, true, &mut rng).map_err(tensor_err)?);
            let params: Vec<Tensor> = layers
                .iter()
                .flat_map(|l| std::iter::once(l.weight.clone()).chain(l.bias.clone()))
                .collect();
            let mut opt = Adam::new(params, AdamConfig::new(config.learning_rate as f32))
                .map_err(tensor_err)?;
            for _ in 0..config.steps {
                opt.zero_grad();
                let out = forward(&layers, &xs)?;
                let loss = out.sub(&yt).map_err(tensor_err)?.square().mean();
                loss.map_err(tensor_err)?.backward().map_err(tensor_err)?;
                opt.step().map_err(tensor_err)?;
            }
            members.push(layers);
        }
        Ok(MlpEnsemble {
            members,
            inputs: d,
            y_mean,
            y_scale,
        })
    }

    /// Every member's predictions for the rows of `x`: `[member][row]`, in target units.
    pub fn member_predictions(&self, x: &[Vec<f32>]) -> Result<Vec<Vec<f64>>> {
        if x.is_empty() {
            return Ok(vec![Vec::new(); self.members.len()]);
        }
        let xs = matrix(x, self.inputs)?;
        nas_tensor::no_grad(|| {
            self.members
                .iter()
                .map(|layers| {
                    let out = forward(layers, &xs)?.to_vec().map_err(tensor_err)?;
                    Ok(out
                        .iter()
                        .map(|&v| v as f64 * self.y_scale + self.y_mean)
                        .collect())
                })
                .collect()
        })
    }

    /// The mean and spread of the members' predictions for each row of `x`.
    pub fn predict(&self, x: &[Vec<f32>]) -> Result<Vec<Prediction>> {
        let per = self.member_predictions(x)?;
        let k = per.len() as f64;
        Ok((0..x.len())
            .map(|i| {
                let mean = per.iter().map(|p| p[i]).sum::<f64>() / k;
                let var = per.iter().map(|p| (p[i] - mean).powi(2)).sum::<f64>() / k;
                Prediction {
                    mean,
                    std: var.sqrt(),
                }
            })
            .collect())
    }
}

/// How well a predictor ranks architectures it was not trained on.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PredictorQuality {
    /// Kendall's tau-b of the predicted means against the held-out targets.
    pub kendall_tau: f64,
    /// Spearman's rho of the same.
    pub spearman: f64,
    /// Held-out architectures scored.
    pub n: usize,
}

/// Trains an ensemble on (`train_x`, `train_y`) and ranks `test_x` against `test_y`.
pub fn predictor_quality(
    config: &EnsembleConfig,
    (train_x, train_y): (&[Vec<f32>], &[f64]),
    (test_x, test_y): (&[Vec<f32>], &[f64]),
    seed: u64,
) -> Result<PredictorQuality> {
    if test_x.len() != test_y.len() {
        return Err(SearchError::Config(format!(
            "predictor: {} held-out rows but {} targets",
            test_x.len(),
            test_y.len()
        )));
    }
    let model = MlpEnsemble::fit(config, train_x, train_y, seed)?;
    let pred: Vec<f64> = model.predict(test_x)?.iter().map(|p| p.mean).collect();
    let (tau, n) = kendall_tau(&pred, test_y);
    Ok(PredictorQuality {
        kendall_tau: tau,
        spearman: spearman(&pred, test_y).0,
        n,
    })
}

/// Which column of the NAS-Bench-201 table a predictor is trained on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TrainTarget {
    /// The 12-epoch validation accuracy: what a search sees (and what BANANAS trains on).
    Valid12,
    /// The table's column in a random order: a control that must rank nothing.
    Shuffled,
}

/// A predictor's quality on the NAS-Bench-201 table: `n_train` cells drawn at random (seeded)
/// train it on `target` of `dataset`; `n_test` other cells are ranked against their 200-epoch
/// test accuracy on `dataset`. Features: the path encoding.
pub fn nb201_predictor_quality(
    table: &crate::tabular::Nb201Table,
    dataset: crate::tabular::Dataset,
    config: &EnsembleConfig,
    (n_train, n_test): (usize, usize),
    target: TrainTarget,
    seed: u64,
) -> Result<PredictorQuality> {
    use rand::seq::SliceRandom;
    let rows = table.rows();
    if n_train == 0 || n_test < 2 || n_train + n_test > rows.len() {
        return Err(SearchError::Config(format!(
            "predictor quality: need n_train >= 1, n_test >= 2 and n_train + n_test <= {}, got \
             {n_train} + {n_test}",
            rows.len()
        )));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.shuffle(&mut rng);
    let c = dataset.column();
    let feats = |idx: &[usize]| -> Vec<Vec<f32>> {
        idx.iter().map(|&i| rows[i].cell.path_encoding()).collect()
    };
    let (train, test) = (&order[..n_train], &order[n_train..n_train + n_test]);
    let mut y: Vec<f64> = train.iter().map(|&i| rows[i].valid_12[c]).collect();
    if target == TrainTarget::Shuffled {
        y.shuffle(&mut rng);
    }
    let test_y: Vec<f64> = test.iter().map(|&i| rows[i].test_200[c]).collect();
    predictor_quality(config, (&feats(train), &y), (&feats(test), &test_y), seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fits_a_linear_function_and_rejects_bad_input() {
        // y = 3 x0 - 2 x1 + 1 on 40 points of a grid; held-out points ranked nearly perfectly.
        let pts: Vec<Vec<f32>> = (0..60)
            .map(|i| vec![(i % 8) as f32 / 8.0, (i / 8) as f32 / 8.0])
            .collect();
        let f = |p: &[f32]| 3.0 * p[0] as f64 - 2.0 * p[1] as f64 + 1.0;
        let ys: Vec<f64> = pts.iter().map(|p| f(p)).collect();
        let cfg = EnsembleConfig::default();
        let q =
            predictor_quality(&cfg, (&pts[..40], &ys[..40]), (&pts[40..], &ys[40..]), 3).unwrap();
        assert!(q.spearman > 0.95 && q.kendall_tau > 0.85, "{q:?}");
        let m = MlpEnsemble::fit(&cfg, &pts[..40], &ys[..40], 3).unwrap();
        let p = m.predict(&pts[..4]).unwrap();
        for (row, pr) in pts[..4].iter().zip(&p) {
            assert!((pr.mean - f(row)).abs() < 0.2, "{pr:?} vs {}", f(row));
            assert!(pr.std >= 0.0 && pr.std < 0.5);
        }
        assert!(MlpEnsemble::fit(&cfg, &[], &[], 0).is_err());
        assert!(MlpEnsemble::fit(&cfg, &pts[..2], &[1.0], 0).is_err());
        assert!(MlpEnsemble::fit(&cfg, &pts[..2], &[1.0, f64::NAN], 0).is_err());
        let ragged = vec![vec![1.0, 2.0], vec![1.0]];
        assert!(MlpEnsemble::fit(&cfg, &ragged, &[1.0, 2.0], 0).is_err());
        assert!(m.predict(&[vec![1.0]]).is_err());
        let bad = EnsembleConfig { members: 0, ..cfg };
        assert!(MlpEnsemble::fit(&bad, &pts[..2], &[1.0, 2.0], 0).is_err());
    }
}
