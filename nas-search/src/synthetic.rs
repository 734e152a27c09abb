//! A small synthetic space and objective: tests of strategies that need no table and no tensors.

use crate::evaluator::{EvalError, EvalRequest, Evaluator, Metrics};
use nas_space::{SearchSpace, SpaceError};
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// `dims` categorical decisions with `choices` options each; an architecture is one choice per
/// decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToySpace {
    /// Number of decisions.
    pub dims: usize,
    /// Options per decision (at most 255).
    pub choices: u8,
}

/// An architecture of [`ToySpace`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ToyArch(pub Vec<u8>);

/// The text form: choices joined by commas (`"3,0,2"`).
impl std::fmt::Display for ToyArch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|c| c.to_string()).collect();
        f.write_str(&parts.join(","))
    }
}

impl SearchSpace for ToySpace {
    type Arch = ToyArch;
    fn name(&self) -> &'static str {
        "toy"
    }
    fn sample(&self, rng: &mut dyn RngCore) -> ToyArch {
        ToyArch(
            (0..self.dims)
                .map(|_| rng.random_range(0..self.choices))
                .collect(),
        )
    }
    fn mutate(&self, arch: &ToyArch, rng: &mut dyn RngCore) -> ToyArch {
        let mut a = arch.clone();
        let i = rng.random_range(0..self.dims);
        let shift = rng.random_range(1..self.choices.max(2));
        a.0[i] = ((a.0[i] as u16 + shift as u16) % self.choices as u16) as u8;
        a
    }
    fn crossover(&self, a: &ToyArch, b: &ToyArch, rng: &mut dyn RngCore) -> ToyArch {
        ToyArch(
            a.0.iter()
                .zip(&b.0)
                .map(|(&x, &y)| if rng.random() { x } else { y })
                .collect(),
        )
    }
    fn neighbours(&self, arch: &ToyArch) -> Vec<ToyArch> {
        let mut out = Vec::new();
        for i in 0..self.dims {
            for c in 0..self.choices {
                if c != arch.0[i] {
                    let mut a = arch.clone();
                    a.0[i] = c;
                    out.push(a);
                }
            }
        }
        out
    }
    fn validate(&self, arch: &ToyArch) -> Result<(), SpaceError> {
        if arch.0.len() != self.dims || arch.0.iter().any(|&c| c >= self.choices) {
            return Err(SpaceError::Invalid(format!("{arch:?} is not in {self:?}")));
        }
        Ok(())
    }
    fn canonical(&self, arch: &ToyArch) -> String {
        self.to_text(arch)
    }
    fn size(&self) -> Option<u128> {
        (self.choices as u128).checked_pow(self.dims as u32)
    }
    fn decisions(&self) -> Vec<usize> {
        vec![self.choices as usize; self.dims]
    }
    fn encode_decisions(&self, arch: &ToyArch) -> Vec<usize> {
        arch.0.iter().map(|&c| c as usize).collect()
    }
    fn decode_decisions(&self, choices: &[usize]) -> Result<ToyArch, SpaceError> {
        if choices.len() != self.dims || choices.iter().any(|&c| c >= self.choices as usize) {
            return Err(SpaceError::Encoding(format!(
                "{choices:?} does not fit {self:?}"
            )));
        }
        Ok(ToyArch(choices.iter().map(|&c| c as u8).collect()))
    }
    fn distance(&self, a: &ToyArch, b: &ToyArch) -> usize {
        a.0.iter().zip(&b.0).filter(|(x, y)| x != y).count()
    }
    fn to_text(&self, arch: &ToyArch) -> String {
        arch.0
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }
    fn parse(&self, text: &str) -> Result<ToyArch, SpaceError> {
        let mut v = Vec::new();
        let mut pos = 0;
        for part in text.split(',') {
            let c: u8 = part.trim().parse().map_err(|_| SpaceError::Parse {
                position: pos,
                message: format!("{part:?} is not a choice index"),
                input: text.chars().take(80).collect(),
            })?;
            v.push(c);
            pos += part.len() + 1;
        }
        let a = ToyArch(v);
        self.validate(&a)?;
        Ok(a)
    }
}

/// A deterministic objective on [`ToySpace`]: a random additive score per (decision, choice)
/// plus random pairwise interactions of neighbouring decisions, scaled into 0..100 "accuracy".
/// The fidelity lowers the visible accuracy (`acc * f / (f + 20)`) and adds seeded noise that
/// shrinks with it; `test_accuracy` is the noise-free full score. `fail_every`: trials whose id
/// is a multiple of it fail (0 = never), to exercise failure handling.
#[derive(Debug, Clone)]
pub struct ToyObjective {
    unary: Vec<Vec<f64>>,
    pair: Vec<Vec<Vec<f64>>>,
    scale: f64,
    /// Noise standard deviation at fidelity f is `noise / sqrt(f)`.
    pub noise: f64,
    /// Fail trials whose id is a multiple of this (0: never).
    pub fail_every: u64,
    /// Sleep this long in each evaluation (to test parallel and killed runs).
    pub delay: std::time::Duration,
}

impl ToyObjective {
    /// A random objective for `space` drawn from `seed`.
    pub fn new(space: &ToySpace, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let k = space.choices as usize;
        let unary: Vec<Vec<f64>> = (0..space.dims)
            .map(|_| (0..k).map(|_| rng.random::<f64>()).collect())
            .collect();
        let pair: Vec<Vec<Vec<f64>>> = (0..space.dims.saturating_sub(1))
            .map(|_| {
                (0..k)
                    .map(|_| (0..k).map(|_| 0.5 * rng.random::<f64>()).collect())
                    .collect()
            })
            .collect();
        let scale = 100.0 / (1.5 * space.dims as f64);
        ToyObjective {
            unary,
            pair,
            scale,
            noise: 0.0,
            fail_every: 0,
            delay: Default::default(),
        }
    }

    /// The noise-free score of `arch` in 0..100.
    pub fn score(&self, arch: &ToyArch) -> f64 {
        let a = &arch.0;
        let mut s: f64 = a
            .iter()
            .enumerate()
            .map(|(i, &c)| self.unary[i][c as usize])
            .sum();
        for i in 0..self.pair.len() {
            s += self.pair[i][a[i] as usize][a[i + 1] as usize];
        }
        s * self.scale
    }

    /// The best score over the whole space (exhaustive; small spaces only).
    pub fn optimum(&self, space: &ToySpace) -> f64 {
        // Dynamic programming over the chain of pairwise terms.
        let k = space.choices as usize;
        let mut best: Vec<f64> = (0..k).map(|c| self.unary[0][c]).collect();
        for i in 1..space.dims {
            best = (0..k)
                .map(|c| {
                    (0..k)
                        .map(|p| best[p] + self.pair[i - 1][p][c])
                        .fold(f64::MIN, f64::max)
                        + self.unary[i][c]
                })
                .collect();
        }
        best.into_iter().fold(f64::MIN, f64::max) * self.scale
    }
}

impl Evaluator<ToyArch> for ToyObjective {
    fn name(&self) -> String {
        format!(
            "toy-objective/noise={}/fail_every={}",
            self.noise, self.fail_every
        )
    }
    fn evaluate(&self, req: &EvalRequest<'_, ToyArch>) -> Result<Metrics, EvalError> {
        if !self.delay.is_zero() {
            std::thread::sleep(self.delay);
        }
        if self.fail_every > 0 && req.trial_id.is_multiple_of(self.fail_every) {
            return Err(EvalError::Failed {
                reason: "loss became NaN".into(),
                cost: req.fidelity as f64 / 2.0,
            });
        }
        let s = self.score(req.arch);
        let f = req.fidelity.max(1) as f64;
        let mut rng = ChaCha8Rng::seed_from_u64(req.seed);
        let z: f64 = rng.sample(rand_distr::StandardNormal);
        let visible = s * f / (f + 20.0) + self.noise / f.sqrt() * z;
        Ok(Metrics {
            valid_accuracy: visible,
            test_accuracy: Some(s),
            loss: Some(1.0 - visible / 100.0),
            params: None,
            flops: None,
            latency_ms: None,
            cost: f,
        })
    }
}
