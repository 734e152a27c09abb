//! The tree-structured Parzen estimator (Bergstra et al. 2011) over a space's categorical
//! decisions, with Optuna's defaults for its independent sampler.
//!
//! After `n_startup` random architectures, each ask splits the finished trials by
//! search-visible accuracy: the best `min(ceil(gamma * n), gamma_cap)` are "good", the rest
//! "bad". For every decision ([`SearchSpace::decisions`]) it fits a categorical Parzen
//! estimator on each group, `l` (good) and `g` (bad): one kernel per observation that puts
//! weight 1 on the observed choice plus `prior_weight / (n + 1)` on every choice (normalised),
//! and one uniform prior kernel; the kernels are mixed with weights 1 each, except that with 25
//! or more observations the older ones ramp linearly from `1/n` up (Optuna's
//! `default_weights`), and the prior kernel weighs `prior_weight`. It then draws
//! `n_ei_candidates` choices from `l` and keeps the one with the largest `l(c) / g(c)` (the
//! expected-improvement criterion), decision by decision. A combination that does not decode
//! to a valid architecture is replaced by a random sample. Failed trials are ignored.

use super::{Ask, Candidate, Strategy};
use crate::error::{Result, SearchError};
use crate::history::Trial;
use nas_space::SearchSpace;
use rand::{Rng, RngCore};
use serde::{Deserialize, Serialize};

/// Settings of [`Tpe`] (Optuna's `TPESampler` defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TpeConfig {
    /// Random architectures before the model is used (default 10).
    pub n_startup: usize,
    /// Fraction of the finished trials that are "good" (default 0.1) ...
    pub gamma: f64,
    /// ... at most this many (default 25).
    pub gamma_cap: usize,
    /// Candidates drawn from `l` per decision (default 24).
    pub n_ei_candidates: usize,
    /// Weight of the uniform prior (default 1).
    pub prior_weight: f64,
    /// Fidelity of every evaluation (default 12).
    pub fidelity: u32,
}

impl Default for TpeConfig {
    fn default() -> Self {
        TpeConfig {
            n_startup: 10,
            gamma: 0.1,
            gamma_cap: 25,
            n_ei_candidates: 24,
            prior_weight: 1.0,
            fidelity: 12,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct TpeState {
    /// Finished trials in the order told: decision choices and search-visible accuracy.
    observations: Vec<(Vec<usize>, f64)>,
    asked: u64,
    told: u64,
}

/// TPE over the categorical decisions of any space; see [`TpeConfig`].
#[derive(Debug, Clone)]
pub struct Tpe {
    config: TpeConfig,
    state: TpeState,
}

impl Tpe {
    /// A new TPE; errors on `gamma` outside `(0, 1]`, a zero cap or candidate count, or a
    /// non-positive prior weight.
    pub fn new(config: TpeConfig) -> Result<Self> {
        if !(config.gamma > 0.0 && config.gamma <= 1.0)
            || config.gamma_cap == 0
            || config.n_ei_candidates == 0
            || !(config.prior_weight > 0.0 && config.prior_weight.is_finite())
        {
            return Err(SearchError::Config(format!(
                "tpe: need 0 < gamma <= 1, gamma_cap >= 1, n_ei_candidates >= 1 and \
                 prior_weight > 0, got {config:?}"
            )));
        }
        Ok(Tpe {
            config,
            state: TpeState::default(),
        })
    }

    /// The good/bad split of `obs`: indices (in told order) of each group.
    fn split(&self, obs: &[(Vec<usize>, f64)]) -> (Vec<usize>, Vec<usize>) {
        let n = obs.len();
        let n_below = ((self.config.gamma * n as f64).ceil() as usize)
            .min(self.config.gamma_cap)
            .clamp(1, n.max(1));
        let mut order: Vec<usize> = (0..n).collect();
        // Best first; ties keep the earlier trial first.
        order.sort_by(|&a, &b| obs[b].1.total_cmp(&obs[a].1).then(a.cmp(&b)));
        let mut below = order[..n_below.min(n)].to_vec();
        let mut above = order[n_below.min(n)..].to_vec();
        below.sort_unstable();
        above.sort_unstable();
        (below, above)
    }

    /// One architecture proposed by the estimators fitted on `obs` (decision choices and
    /// scores, oldest first; not empty); a combination that does not decode is replaced by a
    /// random sample. BOHB ([`super::Hyperband`]) calls this with one rung's observations.
    pub(super) fn propose<S: SearchSpace>(
        &self,
        obs: &[(Vec<usize>, f64)],
        space: &S,
        rng: &mut dyn RngCore,
    ) -> S::Arch {
        let (below, above) = self.split(obs);
        let sizes = space.decisions();
        let mut choice = Vec::with_capacity(sizes.len());
        for (d, &k) in sizes.iter().enumerate() {
            let pick = |idx: &[usize]| -> Vec<usize> { idx.iter().map(|&i| obs[i].0[d]).collect() };
            let l = parzen_categorical(&pick(&below), k, self.config.prior_weight);
            let g = parzen_categorical(&pick(&above), k, self.config.prior_weight);
            let mut best: Option<(usize, f64)> = None;
            for _ in 0..self.config.n_ei_candidates {
                let c = draw(&l, rng);
                let score = l[c].ln() - g[c].ln();
                if best.is_none_or(|(_, s)| score > s) {
                    best = Some((c, score));
                }
            }
            choice.push(best.map_or(0, |b| b.0));
        }
        match space.decode_decisions(&choice) {
            Ok(a) => a,
            Err(_) => space.sample(rng),
        }
    }
}

/// Optuna's `default_weights`: 1 each for fewer than 25 observations, otherwise a linear ramp
/// from `1/n` for the oldest `n - 25` and 1 for the newest 25.
pub fn default_weights(n: usize) -> Vec<f64> {
    if n < 25 {
        return vec![1.0; n];
    }
    let ramp = n - 25;
    let mut w: Vec<f64> = (0..ramp)
        .map(|i| {
            if ramp == 1 {
                1.0 / n as f64
            } else {
                1.0 / n as f64 + (1.0 - 1.0 / n as f64) * i as f64 / (ramp - 1) as f64
            }
        })
        .collect();
    w.extend(std::iter::repeat_n(1.0, 25));
    w
}

/// The categorical Parzen estimator's probabilities over `k` choices given the observed
/// `choices` (oldest first).
pub fn parzen_categorical(choices: &[usize], k: usize, prior_weight: f64) -> Vec<f64> {
    let n = choices.len();
    if n == 0 {
        return vec![1.0 / k as f64; k];
    }
    let n_kernels = n + 1;
    let mut mix = default_weights(n);
    mix.push(prior_weight);
    let total: f64 = mix.iter().sum();
    let fill = prior_weight / n_kernels as f64;
    let row_sum = 1.0 + fill * k as f64;
    let mut p = vec![0.0; k];
    for (&c, w) in choices.iter().zip(&mix) {
        for (j, pj) in p.iter_mut().enumerate() {
            let kernel = (fill + if j == c { 1.0 } else { 0.0 }) / row_sum;
            *pj += w / total * kernel;
        }
    }
    for pj in p.iter_mut() {
        *pj += mix[n] / total / k as f64;
    }
    p
}

fn draw(p: &[f64], rng: &mut dyn RngCore) -> usize {
    let u: f64 = rng.random::<f64>() * p.iter().sum::<f64>();
    let mut acc = 0.0;
    for (i, x) in p.iter().enumerate() {
        acc += x;
        if u < acc {
            return i;
        }
    }
    p.len() - 1
}

impl<S: SearchSpace> Strategy<S> for Tpe {
    fn name(&self) -> &'static str {
        "tpe"
    }
    fn config(&self) -> serde_json::Value {
        serde_json::to_value(&self.config).unwrap_or(serde_json::Value::Null)
    }
    fn ask(&mut self, space: &S, rng: &mut dyn RngCore) -> Result<Ask<S::Arch>> {
        let startup = self.state.asked < self.config.n_startup as u64;
        let arch = if startup || self.state.observations.is_empty() {
            space.sample(rng)
        } else {
            self.propose(&self.state.observations, space, rng)
        };
        self.state.asked += 1;
        Ok(Ask::Evaluate(Candidate {
            arch,
            fidelity: self.config.fidelity,
        }))
    }
    fn tell(&mut self, space: &S, trial: &Trial<S::Arch>) -> Result<()> {
        let st = &mut self.state;
        if st.told >= st.asked {
            return Err(SearchError::strategy("tpe", "told more results than asked"));
        }
        st.told += 1;
        if let Some(score) = trial.score() {
            st.observations
                .push((space.encode_decisions(&trial.arch), score));
        }
        Ok(())
    }
    fn save_state(&self) -> Result<serde_json::Value> {
        super::state_to_json(&self.state)
    }
    fn load_state(&mut self, state: serde_json::Value) -> Result<()> {
        self.state = super::state_from_json("tpe", state)?;
        Ok(())
    }
}

impl super::StrategyConfig for TpeConfig {
    const NAME: &'static str = "tpe";
    const ALIASES: &'static [&'static str] = &[];
    const ABOUT: &'static str =
        "TPE: Parzen estimators of the good and the other trials per decision (Optuna's defaults)";
    fn build<S: SearchSpace>(&self, _space: &S) -> Result<Box<dyn Strategy<S>>> {
        Ok(Box::new(Tpe::new(self.clone())?))
    }
    fn set_fidelity(&mut self, fidelity: u32, _any_fidelity: bool) -> Result<()> {
        self.fidelity = fidelity;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_and_parzen_estimator_by_hand() {
        assert_eq!(default_weights(3), vec![1.0; 3]);
        let w = default_weights(27);
        assert_eq!(w.len(), 27);
        assert!((w[0] - 1.0 / 27.0).abs() < 1e-12 && (w[1] - 1.0).abs() < 1e-12);
        assert!(w[2..].iter().all(|x| *x == 1.0));
        // Two observations of choice 0 out of 3, prior weight 1: three kernels; each data
        // kernel is (1 + 1/3, 1/3, 1/3) / 2, the prior (1/3, 1/3, 1/3); mixed 1:1:1.
        let p = parzen_categorical(&[0, 0], 3, 1.0);
        let want0 = (2.0 * (4.0 / 3.0) / 2.0 + 1.0 / 3.0) / 3.0;
        let want1 = (2.0 * (1.0 / 3.0) / 2.0 + 1.0 / 3.0) / 3.0;
        assert!((p[0] - want0).abs() < 1e-12, "{p:?}");
        assert!((p[1] - want1).abs() < 1e-12 && (p[2] - want1).abs() < 1e-12);
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert_eq!(parzen_categorical(&[], 4, 1.0), vec![0.25; 4]);
        assert!(
            Tpe::new(TpeConfig {
                gamma: 0.0,
                ..TpeConfig::default()
            })
            .is_err()
        );
    }

    #[test]
    fn split_takes_the_best_tenth() {
        let mut t = Tpe::new(TpeConfig::default()).unwrap();
        t.state.observations = (0..30).map(|i| (vec![0], (i * 7 % 30) as f64)).collect();
        let (below, above) = t.split(&t.state.observations);
        // ceil(0.1 * 30) = 3 best: scores 29, 28, 27 (trials 17, 4, 21).
        assert_eq!(below, vec![4, 17, 21]);
        assert_eq!(above.len(), 27);
    }
}
