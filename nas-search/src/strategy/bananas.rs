//! BANANAS (White, Neiswanger and Savani, AAAI 2021): Bayesian optimisation with an ensemble
//! of neural predictors over the path encoding, acquisition by independent Thompson sampling
//! over mutations of the best architectures.
//!
//! After `n_startup` random architectures, whenever its queue of proposals is empty it trains
//! an [`MlpEnsemble`] on every architecture told so far (features:
//! [`SearchSpace::features`], the path encoding on NAS-Bench-201/101; target: the
//! search-visible validation accuracy), draws `candidates` distinct architectures not yet
//! evaluated or in flight by one random mutation ([`SearchSpace::mutate`]) of each of the
//! `parents` best architectures in turn, gives each candidate one independent draw from the
//! normal distribution with the ensemble's mean and spread for it (independent Thompson
//! sampling), and queues the `batch` candidates with the highest draws. Failed trials are not
//! trained on. The ensemble is refitted from scratch with a seed drawn from the search's
//! generator, so the saved state (observations and queue) is all a resumed search needs.

use super::{Ask, Candidate, Strategy};
use crate::error::{Result, SearchError};
use crate::history::Trial;
use crate::predictor::{EnsembleConfig, MlpEnsemble};
use nas_space::SearchSpace;
use rand::{Rng, RngCore};
use rand_distr::StandardNormal;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::{HashSet, VecDeque};
use std::hash::Hash;

/// Settings of [`Bananas`] (the paper's defaults, except the predictor's shape: see
/// [`EnsembleConfig`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BananasConfig {
    /// Random architectures before the predictor is used (default 10).
    pub n_startup: usize,
    /// Proposals queued per predictor fit (default 10, the paper's `k`).
    pub batch: usize,
    /// Candidates scored per fit (default 100).
    pub candidates: usize,
    /// Best architectures mutated into candidates (default 10).
    pub parents: usize,
    /// The predictor.
    #[serde(flatten)]
    pub predictor: EnsembleConfig,
    /// Fidelity of every evaluation (default 12).
    pub fidelity: u32,
}

impl Default for BananasConfig {
    fn default() -> Self {
        BananasConfig {
            n_startup: 10,
            batch: 10,
            candidates: 100,
            parents: 10,
            predictor: EnsembleConfig::default(),
            fidelity: 12,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(bound = "A: Serialize + DeserializeOwned")]
struct BananasState<A> {
    /// Successful trials in the order told, with their search-visible score.
    observations: Vec<(A, f64)>,
    /// Failed trials.
    failed: Vec<A>,
    /// Asked, not yet told, oldest first.
    in_flight: VecDeque<A>,
    /// Proposals of the last fit not yet asked.
    queue: VecDeque<A>,
    /// Predictor fits so far.
    fits: u64,
}

/// BANANAS over any space; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct Bananas<A: Eq + Hash> {
    config: BananasConfig,
    state: BananasState<A>,
    /// Every architecture evaluated, failed or in flight.
    seen: HashSet<A>,
}

impl<A: Clone + Eq + Hash> Bananas<A> {
    /// A new BANANAS; errors on a zero batch, candidate or parent count or a bad predictor.
    pub fn new(config: BananasConfig) -> Result<Self> {
        config.predictor.check()?;
        if config.batch == 0 || config.candidates == 0 || config.parents == 0 {
            return Err(SearchError::Config(format!(
                "bananas: need batch, candidates and parents >= 1, got {config:?}"
            )));
        }
        Ok(Bananas {
            config,
            state: BananasState {
                observations: Vec::new(),
                failed: Vec::new(),
                in_flight: VecDeque::new(),
                queue: VecDeque::new(),
                fits: 0,
            },
            seen: HashSet::new(),
        })
    }

    /// Predictor fits so far.
    pub fn fits(&self) -> u64 {
        self.state.fits
    }

    /// Fits the predictor and queues the `batch` candidates with the highest Thompson draws.
    fn refill<S: SearchSpace<Arch = A>>(&mut self, space: &S, rng: &mut dyn RngCore) -> Result<()> {
        let obs = &self.state.observations;
        let x: Vec<Vec<f32>> = obs.iter().map(|(a, _)| space.features(a)).collect();
        let y: Vec<f64> = obs.iter().map(|(_, s)| *s).collect();
        let model = MlpEnsemble::fit(&self.config.predictor, &x, &y, rng.next_u64())
            .map_err(|e| SearchError::strategy("bananas", e.to_string()))?;
        self.state.fits += 1;
        let mut order: Vec<usize> = (0..obs.len()).collect();
        order.sort_by(|&a, &b| obs[b].1.total_cmp(&obs[a].1).then(a.cmp(&b)));
        order.truncate(self.config.parents);
        let mut pool: Vec<A> = Vec::with_capacity(self.config.candidates);
        let mut in_pool: HashSet<A> = HashSet::new();
        for attempt in 0..self.config.candidates * 10 {
            if pool.len() == self.config.candidates {
                break;
            }
            let parent = &obs[order[attempt % order.len()]].0;
            let child = space.mutate(parent, rng);
            if !self.seen.contains(&child) && in_pool.insert(child.clone()) {
                pool.push(child);
            }
        }
        if pool.is_empty() {
            return Ok(());
        }
        let feats: Vec<Vec<f32>> = pool.iter().map(|a| space.features(a)).collect();
        let pred = model
            .predict(&feats)
            .map_err(|e| SearchError::strategy("bananas", e.to_string()))?;
        let mut draws: Vec<(f64, usize)> = pred
            .iter()
            .enumerate()
            .map(|(i, p)| (p.mean + p.std * rng.sample::<f64, _>(StandardNormal), i))
            .collect();
        draws.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        for &(_, i) in draws.iter().take(self.config.batch) {
            self.state.queue.push_back(pool[i].clone());
        }
        Ok(())
    }
}

impl<S: SearchSpace> Strategy<S> for Bananas<S::Arch> {
    fn name(&self) -> &'static str {
        "bananas"
    }
    fn config(&self) -> serde_json::Value {
        serde_json::to_value(&self.config).unwrap_or(serde_json::Value::Null)
    }
    fn ask(&mut self, space: &S, rng: &mut dyn RngCore) -> Result<Ask<S::Arch>> {
        let asked =
            self.state.observations.len() + self.state.failed.len() + self.state.in_flight.len();
        let startup = asked < self.config.n_startup || self.state.observations.is_empty();
        // A queued proposal that became known meanwhile is dropped.
        while let Some(a) = self.state.queue.front() {
            if self.seen.contains(a) {
                self.state.queue.pop_front();
            } else {
                break;
            }
        }
        if !startup && self.state.queue.is_empty() {
            self.refill(space, rng)?;
        }
        let arch = match (startup, self.state.queue.pop_front()) {
            (false, Some(a)) => a,
            _ => space.sample(rng),
        };
        self.seen.insert(arch.clone());
        self.state.in_flight.push_back(arch.clone());
        Ok(Ask::Evaluate(Candidate {
            arch,
            fidelity: self.config.fidelity,
        }))
    }
    fn tell(&mut self, _space: &S, trial: &Trial<S::Arch>) -> Result<()> {
        if self.state.in_flight.pop_front().is_none() {
            return Err(SearchError::strategy(
                "bananas",
                "told more results than asked",
            ));
        }
        self.seen.insert(trial.arch.clone());
        match trial.score() {
            Some(s) if s.is_finite() => self.state.observations.push((trial.arch.clone(), s)),
            _ => self.state.failed.push(trial.arch.clone()),
        }
        Ok(())
    }
    fn save_state(&self) -> Result<serde_json::Value> {
        super::state_to_json(&self.state)
    }
    fn load_state(&mut self, state: serde_json::Value) -> Result<()> {
        let st: BananasState<S::Arch> = super::state_from_json("bananas", state)?;
        self.seen = st
            .observations
            .iter()
            .map(|(a, _)| a.clone())
            .chain(st.failed.iter().cloned())
            .chain(st.in_flight.iter().cloned())
            .collect();
        self.state = st;
        Ok(())
    }
}

impl super::StrategyConfig for BananasConfig {
    const NAME: &'static str = "bananas";
    const ALIASES: &'static [&'static str] = &[];
    const ABOUT: &'static str = "BANANAS: an MLP ensemble on the path encoding predicts accuracy; \
         Thompson sampling over mutations of the best";
    fn build<S: SearchSpace>(&self, _space: &S) -> Result<Box<dyn Strategy<S>>> {
        Ok(Box::new(Bananas::<S::Arch>::new(self.clone())?))
    }
    fn set_fidelity(&mut self, fidelity: u32, _any_fidelity: bool) -> Result<()> {
        self.fidelity = fidelity;
        Ok(())
    }
}
