//! Local search: best-improvement hill climbing over neighbours, restarting when stuck.

use super::{Ask, Candidate, Strategy};
use crate::error::{Result, SearchError};
use crate::history::Trial;
use nas_space::SearchSpace;
use rand::RngCore;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

/// Settings of [`LocalSearch`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LocalSearchConfig {
    /// Fidelity of every evaluation (default 12, as for the other strategies).
    pub fidelity: u32,
}

impl Default for LocalSearchConfig {
    fn default() -> Self {
        LocalSearchConfig { fidelity: 12 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Role {
    Start,
    Neighbour,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(bound = "A: Serialize + DeserializeOwned")]
struct LsState<A> {
    /// The point being improved and its score.
    current: Option<(A, f64)>,
    /// Neighbours of `current` still to ask.
    queue: VecDeque<A>,
    /// Scores of the neighbours of `current` known so far, in neighbour order.
    scanned: Vec<(A, f64)>,
    /// Every architecture evaluated, with its score (`None`: failed), in evaluation order.
    known: Vec<(A, Option<f64>)>,
    /// Roles of the candidates asked and not yet told, oldest first.
    outstanding: VecDeque<Role>,
    /// Number of restarts from a random architecture.
    restarts: u64,
}

/// Local search as in White et al. (2021), "Local search is state of the art for NAS
/// benchmarks": start at a random architecture, evaluate all its neighbours
/// ([`SearchSpace::neighbours`]; architectures already evaluated are not evaluated again), move
/// to the best neighbour if it beats the current point, otherwise restart from a new random
/// architecture.
#[derive(Debug, Clone)]
pub struct LocalSearch<A: Eq + Hash> {
    config: LocalSearchConfig,
    state: LsState<A>,
    index: HashMap<A, Option<f64>>,
}

impl<A: Clone + Eq + Hash> LocalSearch<A> {
    /// A new local search.
    pub fn new(config: LocalSearchConfig) -> Self {
        LocalSearch {
            config,
            state: LsState {
                current: None,
                queue: VecDeque::new(),
                scanned: Vec::new(),
                known: Vec::new(),
                outstanding: VecDeque::new(),
                restarts: 0,
            },
            index: HashMap::new(),
        }
    }

    /// Number of restarts so far.
    pub fn restarts(&self) -> u64 {
        self.state.restarts
    }

    fn centre_on(&mut self, arch: A, score: f64, neighbours: Vec<A>) {
        self.state.queue.clear();
        self.state.scanned.clear();
        for n in neighbours {
            match self.index.get(&n) {
                Some(Some(s)) => self.state.scanned.push((n, *s)),
                Some(None) => {}
                None => self.state.queue.push_back(n),
            }
        }
        self.state.current = Some((arch, score));
    }
}

impl<S: SearchSpace> Strategy<S> for LocalSearch<S::Arch> {
    fn name(&self) -> &'static str {
        "local"
    }
    fn config(&self) -> serde_json::Value {
        serde_json::to_value(&self.config).unwrap_or(serde_json::Value::Null)
    }
    fn ask(&mut self, space: &S, rng: &mut dyn RngCore) -> Result<Ask<S::Arch>> {
        let fidelity = self.config.fidelity;
        loop {
            if self.state.current.is_none() {
                if !self.state.outstanding.is_empty() {
                    return Ok(Ask::Wait);
                }
                self.state.outstanding.push_back(Role::Start);
                return Ok(Ask::Evaluate(Candidate {
                    arch: space.sample(rng),
                    fidelity,
                }));
            }
            if let Some(arch) = self.state.queue.pop_front() {
                self.state.outstanding.push_back(Role::Neighbour);
                return Ok(Ask::Evaluate(Candidate { arch, fidelity }));
            }
            if !self.state.outstanding.is_empty() {
                return Ok(Ask::Wait);
            }
            // The neighbourhood is complete: move to the best neighbour or restart.
            let cur = self.state.current.as_ref().map(|c| c.1).unwrap_or(f64::MIN);
            let mut best: Option<(S::Arch, f64)> = None;
            for (a, s) in &self.state.scanned {
                if best.as_ref().is_none_or(|b| *s > b.1) {
                    best = Some((a.clone(), *s));
                }
            }
            match best {
                Some((a, s)) if s > cur => {
                    let n = space.neighbours(&a);
                    self.centre_on(a, s, n);
                }
                _ => {
                    self.state.current = None;
                    self.state.scanned.clear();
                    self.state.restarts += 1;
                }
            }
        }
    }
    fn tell(&mut self, space: &S, trial: &Trial<S::Arch>) -> Result<()> {
        let role = self
            .state
            .outstanding
            .pop_front()
            .ok_or_else(|| SearchError::strategy("local", "told more results than asked"))?;
        let score = trial.score();
        if !self.index.contains_key(&trial.arch) {
            self.index.insert(trial.arch.clone(), score);
            self.state.known.push((trial.arch.clone(), score));
        }
        match (role, score) {
            (Role::Start, Some(s)) => {
                let n = space.neighbours(&trial.arch);
                self.centre_on(trial.arch.clone(), s, n);
            }
            (Role::Start, None) => self.state.current = None,
            (Role::Neighbour, Some(s)) => self.state.scanned.push((trial.arch.clone(), s)),
            (Role::Neighbour, None) => {}
        }
        Ok(())
    }
    fn save_state(&self) -> Result<serde_json::Value> {
        super::state_to_json(&self.state)
    }
    fn load_state(&mut self, state: serde_json::Value) -> Result<()> {
        let st: LsState<S::Arch> = super::state_from_json("local", state)?;
        self.index = st.known.iter().cloned().collect();
        self.state = st;
        Ok(())
    }
}

impl super::StrategyConfig for LocalSearchConfig {
    const NAME: &'static str = "local";
    const ALIASES: &'static [&'static str] = &["ls"];
    const ABOUT: &'static str =
        "local search: best-improvement steps over neighbours, restarts from random samples";
    fn build<S: SearchSpace>(&self, _space: &S) -> Result<Box<dyn Strategy<S>>> {
        Ok(Box::new(LocalSearch::new(self.clone())))
    }
    fn set_fidelity(&mut self, fidelity: u32, _any_fidelity: bool) -> Result<()> {
        self.fidelity = fidelity;
        Ok(())
    }
}
