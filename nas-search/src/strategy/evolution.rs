//! Regularized evolution (aging evolution), Real et al., AAAI 2019.

use super::{Ask, Candidate, Strategy};
use crate::error::{Result, SearchError};
use crate::history::Trial;
use nas_space::SearchSpace;
use rand::{Rng, RngCore};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// Settings of [`RegularizedEvolution`].
///
/// Defaults follow NAS-Bench-201's REA experiments (its `R-EA.sh` script: `--ea_population 10`,
/// sample size 3 in the documented invocation `R-EA.sh cifar10 3 -1`), scoring by 12-epoch
/// validation accuracy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReaConfig {
    /// Population size P (default 10).
    pub population_size: usize,
    /// Tournament sample size S, drawn with replacement from the population (default 3).
    pub sample_size: usize,
    /// Fidelity of every evaluation (default 12).
    pub fidelity: u32,
}

impl Default for ReaConfig {
    fn default() -> Self {
        ReaConfig {
            population_size: 10,
            sample_size: 3,
            fidelity: 12,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(bound = "A: Serialize + DeserializeOwned")]
struct ReaState<A> {
    /// Living members, oldest first, with their search-visible accuracy.
    population: VecDeque<(A, f64)>,
    /// Candidates asked so far.
    asked: u64,
    /// Results told so far.
    told: u64,
}

/// Regularized evolution: the first P candidates are random; afterwards each child is a
/// mutation ([`SearchSpace::mutate`]) of the best of S members sampled with replacement, and
/// each new result joins the population while the oldest member dies (aging). Failed trials do
/// not join the population.
#[derive(Debug, Clone)]
pub struct RegularizedEvolution<A> {
    config: ReaConfig,
    state: ReaState<A>,
}

impl<A> RegularizedEvolution<A> {
    /// A new evolution; errors if the population or sample size is 0.
    pub fn new(config: ReaConfig) -> Result<Self> {
        if config.population_size == 0 || config.sample_size == 0 {
            return Err(SearchError::Config(format!(
                "rea: population_size ({}) and sample_size ({}) must be at least 1",
                config.population_size, config.sample_size
            )));
        }
        Ok(RegularizedEvolution {
            config,
            state: ReaState {
                population: VecDeque::new(),
                asked: 0,
                told: 0,
            },
        })
    }
}

impl<S: SearchSpace> Strategy<S> for RegularizedEvolution<S::Arch> {
    fn name(&self) -> &'static str {
        "rea"
    }
    fn config(&self) -> serde_json::Value {
        serde_json::to_value(&self.config).unwrap_or(serde_json::Value::Null)
    }
    fn ask(&mut self, space: &S, rng: &mut dyn RngCore) -> Result<Ask<S::Arch>> {
        let st = &mut self.state;
        let arch = if st.asked < self.config.population_size as u64 {
            space.sample(rng)
        } else if st.population.is_empty() {
            if st.asked > st.told {
                return Ok(Ask::Wait);
            }
            // Every earlier trial failed: start again from random samples.
            space.sample(rng)
        } else {
            let n = st.population.len();
            let mut parent = rng.random_range(0..n);
            for _ in 1..self.config.sample_size {
                let j = rng.random_range(0..n);
                if st.population[j].1 > st.population[parent].1 {
                    parent = j;
                }
            }
            space.mutate(&st.population[parent].0, rng)
        };
        st.asked += 1;
        Ok(Ask::Evaluate(Candidate {
            arch,
            fidelity: self.config.fidelity,
        }))
    }
    fn tell(&mut self, _space: &S, trial: &Trial<S::Arch>) -> Result<()> {
        let st = &mut self.state;
        if st.told >= st.asked {
            return Err(SearchError::strategy("rea", "told more results than asked"));
        }
        st.told += 1;
        if let Some(score) = trial.score() {
            st.population.push_back((trial.arch.clone(), score));
            if st.population.len() > self.config.population_size {
                st.population.pop_front();
            }
        }
        Ok(())
    }
    fn save_state(&self) -> Result<serde_json::Value> {
        super::state_to_json(&self.state)
    }
    fn load_state(&mut self, state: serde_json::Value) -> Result<()> {
        self.state = super::state_from_json("rea", state)?;
        Ok(())
    }
}

impl super::StrategyConfig for ReaConfig {
    const NAME: &'static str = "rea";
    const ALIASES: &'static [&'static str] = &["evolution"];
    const ABOUT: &'static str =
        "regularized evolution (Real et al. 2019): tournament, mutate, age out the oldest";
    fn build<S: SearchSpace>(&self, _space: &S) -> Result<Box<dyn Strategy<S>>> {
        Ok(Box::new(RegularizedEvolution::new(self.clone())?))
    }
    fn set_fidelity(&mut self, fidelity: u32, _any_fidelity: bool) -> Result<()> {
        self.fidelity = fidelity;
        Ok(())
    }
}
