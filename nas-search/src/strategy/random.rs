//! Random search: independent uniform samples from the space.

use super::{Ask, Candidate, Strategy};
use crate::error::{Result, SearchError};
use crate::history::Trial;
use nas_space::SearchSpace;
use rand::RngCore;
use serde::{Deserialize, Serialize};

/// Settings of [`RandomSearch`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RandomConfig {
    /// Fidelity of every evaluation. Default 12 epochs: NAS-Bench-201's search protocol scores
    /// candidates by their 12-epoch validation accuracy.
    pub fidelity: u32,
}

impl Default for RandomConfig {
    fn default() -> Self {
        RandomConfig { fidelity: 12 }
    }
}

/// Samples architectures uniformly (with replacement) with [`SearchSpace::sample`].
#[derive(Debug, Clone)]
pub struct RandomSearch {
    config: RandomConfig,
}

impl RandomSearch {
    /// A random search with the given settings.
    pub fn new(config: RandomConfig) -> Self {
        RandomSearch { config }
    }
}

impl<S: SearchSpace> Strategy<S> for RandomSearch {
    fn name(&self) -> &'static str {
        "random"
    }
    fn config(&self) -> serde_json::Value {
        serde_json::to_value(&self.config).unwrap_or(serde_json::Value::Null)
    }
    fn ask(&mut self, space: &S, rng: &mut dyn RngCore) -> Result<Ask<S::Arch>> {
        Ok(Ask::Evaluate(Candidate {
            arch: space.sample(rng),
            fidelity: self.config.fidelity,
        }))
    }
    fn tell(&mut self, _space: &S, _trial: &Trial<S::Arch>) -> Result<()> {
        Ok(())
    }
    fn save_state(&self) -> Result<serde_json::Value> {
        Ok(serde_json::Value::Null)
    }
    fn load_state(&mut self, state: serde_json::Value) -> Result<()> {
        if state.is_null() {
            Ok(())
        } else {
            Err(SearchError::strategy(
                "random",
                "random search has no state, found some",
            ))
        }
    }
}

impl super::StrategyConfig for RandomConfig {
    const NAME: &'static str = "random";
    const ALIASES: &'static [&'static str] = &["rs"];
    const ABOUT: &'static str = "random search: candidates sampled uniformly";
    fn build<S: SearchSpace>(&self, _space: &S) -> Result<Box<dyn Strategy<S>>> {
        Ok(Box::new(RandomSearch::new(self.clone())))
    }
    fn set_fidelity(&mut self, fidelity: u32, _any_fidelity: bool) -> Result<()> {
        self.fidelity = fidelity;
        Ok(())
    }
}
