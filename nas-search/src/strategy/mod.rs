//! Multi-trial search strategies behind one ask/tell interface.
//!
//! A [`Strategy`] proposes architectures ([`Strategy::ask`]) and learns from their results
//! ([`Strategy::tell`]). The search loop ([`crate::search`]) guarantees that results are told in
//! exactly the order the candidates were asked, whatever order the workers finish in, so a
//! strategy may keep a plain FIFO of what it asked. All randomness comes from the generator passed
//! to `ask` (owned and checkpointed by the search loop), and the whole state is serialisable
//! ([`Strategy::save_state`] / [`Strategy::load_state`]), which makes searches resumable.

use crate::error::{Result, SearchError};
use crate::history::Trial;
use nas_space::SearchSpace;
use rand::RngCore;
use serde::{Deserialize, Serialize};

mod controller;
mod evolution;
mod hyperband;
mod local;
mod random;
mod reinforce;
mod tpe;

pub use controller::{ControllerConfig, LstmController};
pub use evolution::{ReaConfig, RegularizedEvolution};
pub use hyperband::{Hyperband, HyperbandConfig};
pub use local::{LocalSearch, LocalSearchConfig};
pub use random::{RandomConfig, RandomSearch};
pub use reinforce::{Reinforce, ReinforceConfig};
pub use tpe::{Tpe, TpeConfig};

/// A proposal: evaluate `arch` at `fidelity` epochs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate<A> {
    /// The architecture.
    pub arch: A,
    /// Training epochs (the table knows 12 and 200).
    pub fidelity: u32,
}

/// The answer of [`Strategy::ask`].
#[derive(Debug, Clone, PartialEq)]
pub enum Ask<A> {
    /// Evaluate this candidate next.
    Evaluate(Candidate<A>),
    /// Nothing to propose until more results are told (for example a successive-halving rung
    /// waiting for all its members). If nothing is in flight, the search ends.
    Wait,
    /// The strategy has finished.
    Done,
}

/// A multi-trial search strategy over the space `S` (object safe: `Box<dyn Strategy<S>>`).
pub trait Strategy<S: SearchSpace>: Send {
    /// Stable name (`"random"`, `"rea"`, `"reinforce"`, `"local"`, `"hyperband"`), checked on
    /// resume.
    fn name(&self) -> &'static str;

    /// The hyper-parameters as JSON, checked on resume (a checkpoint of a differently configured
    /// strategy is refused).
    fn config(&self) -> serde_json::Value;

    /// The next candidate, drawing any randomness from `rng`.
    fn ask(&mut self, space: &S, rng: &mut dyn RngCore) -> Result<Ask<S::Arch>>;

    /// The result of the oldest candidate not yet told.
    fn tell(&mut self, space: &S, trial: &Trial<S::Arch>) -> Result<()>;

    /// The whole mutable state (not the configuration) as JSON.
    fn save_state(&self) -> Result<serde_json::Value>;

    /// Restores a state written by [`Strategy::save_state`] of the same strategy and config.
    fn load_state(&mut self, state: serde_json::Value) -> Result<()>;
}

/// The strategies by name, with their documented defaults; builds boxed strategies for any space.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum StrategyKind {
    /// [`RandomSearch`].
    Random(RandomConfig),
    /// [`RegularizedEvolution`].
    Rea(ReaConfig),
    /// [`Reinforce`].
    Reinforce(ReinforceConfig),
    /// [`LocalSearch`].
    Local(LocalSearchConfig),
    /// [`Hyperband`] (successive halving when it has one bracket).
    Hyperband(HyperbandConfig),
}

impl StrategyKind {
    /// Parses `random`, `rea`, `reinforce`, `local` or `hyperband`, optionally followed by
    /// `:key=value` settings (JSON values), e.g. `reinforce:learning_rate=0.01` or
    /// `rea:population_size=20:sample_size=5` or `hyperband:fidelities=[12,200]:eta=4`.
    pub fn parse(spec: &str) -> Result<Self> {
        let mut parts = spec.split(':');
        let name = parts.next().unwrap_or("").trim();
        let mut kind = match name {
            "random" | "rs" => StrategyKind::Random(RandomConfig::default()),
            "rea" | "evolution" => StrategyKind::Rea(ReaConfig::default()),
            "reinforce" | "rl" => StrategyKind::Reinforce(ReinforceConfig::default()),
            "local" | "ls" => StrategyKind::Local(LocalSearchConfig::default()),
            "hyperband" | "hb" => StrategyKind::Hyperband(HyperbandConfig::default()),
            other => {
                return Err(SearchError::Config(format!(
                    "unknown strategy {other:?} (expected random, rea, reinforce, local or hyperband)"
                )));
            }
        };
        for kv in parts {
            let (k, v) = kv.split_once('=').ok_or_else(|| {
                SearchError::Config(format!(
                    "strategy setting {kv:?} in {spec:?} is not key=value"
                ))
            })?;
            kind = kind
                .with_setting(k.trim(), v.trim())
                .map_err(|e| SearchError::Config(format!("strategy {spec:?}: {e}")))?;
        }
        Ok(kind)
    }

    fn with_setting(self, key: &str, value: &str) -> std::result::Result<Self, String> {
        fn set<C: Serialize + serde::de::DeserializeOwned>(
            c: &C,
            key: &str,
            value: &str,
        ) -> std::result::Result<C, String> {
            let mut obj = serde_json::to_value(c).map_err(|e| e.to_string())?;
            let map = obj.as_object_mut().ok_or("settings are not an object")?;
            if !map.contains_key(key) {
                let keys: Vec<&String> = map.keys().collect();
                return Err(format!("unknown setting {key:?} (settings: {keys:?})"));
            }
            let v: serde_json::Value = serde_json::from_str(value)
                .unwrap_or_else(|_| serde_json::Value::String(value.to_string()));
            map.insert(key.to_string(), v);
            serde_json::from_value(obj).map_err(|e| format!("bad value {value:?} for {key}: {e}"))
        }
        Ok(match self {
            StrategyKind::Random(c) => StrategyKind::Random(set(&c, key, value)?),
            StrategyKind::Rea(c) => StrategyKind::Rea(set(&c, key, value)?),
            StrategyKind::Reinforce(c) => StrategyKind::Reinforce(set(&c, key, value)?),
            StrategyKind::Local(c) => StrategyKind::Local(set(&c, key, value)?),
            StrategyKind::Hyperband(c) => StrategyKind::Hyperband(set(&c, key, value)?),
        })
    }

    /// The name followed by the settings that differ from the defaults, in the syntax
    /// [`StrategyKind::parse`] reads (`"reinforce:learning_rate=0.5"`).
    pub fn label(&self) -> String {
        fn diff<C: Serialize + Default>(c: &C) -> String {
            let (a, d) = (
                serde_json::to_value(c).ok(),
                serde_json::to_value(C::default()).ok(),
            );
            let mut out = String::new();
            if let (Some(serde_json::Value::Object(a)), Some(serde_json::Value::Object(d))) = (a, d)
            {
                for (k, v) in &a {
                    if d.get(k) != Some(v) {
                        out.push_str(&format!(":{k}={v}"));
                    }
                }
            }
            out
        }
        let settings = match self {
            StrategyKind::Random(c) => diff(c),
            StrategyKind::Rea(c) => diff(c),
            StrategyKind::Reinforce(c) => diff(c),
            StrategyKind::Local(c) => diff(c),
            StrategyKind::Hyperband(c) => diff(c),
        };
        format!("{}{settings}", self.name())
    }

    /// The strategy's short name.
    pub fn name(&self) -> &'static str {
        match self {
            StrategyKind::Random(_) => "random",
            StrategyKind::Rea(_) => "rea",
            StrategyKind::Reinforce(_) => "reinforce",
            StrategyKind::Local(_) => "local",
            StrategyKind::Hyperband(_) => "hyperband",
        }
    }

    /// Sets the fidelity that single-fidelity strategies evaluate at (Hyperband keeps its
    /// ladder).
    pub fn with_fidelity(mut self, fidelity: u32) -> Self {
        match &mut self {
            StrategyKind::Random(c) => c.fidelity = fidelity,
            StrategyKind::Rea(c) => c.fidelity = fidelity,
            StrategyKind::Reinforce(c) => c.fidelity = fidelity,
            StrategyKind::Local(c) => c.fidelity = fidelity,
            StrategyKind::Hyperband(_) => {}
        }
        self
    }

    /// Builds the strategy for `space` (REINFORCE sizes its policy from `space.decisions()`).
    pub fn build<S: SearchSpace>(&self, space: &S) -> Result<Box<dyn Strategy<S>>> {
        Ok(match self {
            StrategyKind::Random(c) => Box::new(RandomSearch::new(c.clone())),
            StrategyKind::Rea(c) => Box::new(RegularizedEvolution::new(c.clone())?),
            StrategyKind::Reinforce(c) => Box::new(Reinforce::new(c.clone(), &space.decisions())?),
            StrategyKind::Local(c) => Box::new(LocalSearch::new(c.clone())),
            StrategyKind::Hyperband(c) => Box::new(Hyperband::new(c.clone())?),
        })
    }
}
