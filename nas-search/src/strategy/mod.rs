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

mod bananas;
mod controller;
mod evolution;
mod hyperband;
mod local;
mod nsga2;
mod random;
mod reinforce;
mod tpe;

pub use bananas::{Bananas, BananasConfig};
pub use controller::{ControllerConfig, ControllerState, LstmController};
pub use evolution::{ReaConfig, RegularizedEvolution};
pub use hyperband::{BohbConfig, Hyperband, HyperbandConfig};
pub use local::{LocalSearch, LocalSearchConfig};
pub use nsga2::{Nsga2, Nsga2Config, ParetoConfig, ParetoEvolution};
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

/// A strategy's state as JSON, for [`Strategy::save_state`].
pub(crate) fn state_to_json<T: Serialize>(state: &T) -> Result<serde_json::Value> {
    serde_json::to_value(state).map_err(|e| SearchError::Serde(e.to_string()))
}

/// A state written by [`state_to_json`], for [`Strategy::load_state`]; a state that does not
/// parse is an error naming the strategy.
pub(crate) fn state_from_json<T: serde::de::DeserializeOwned>(
    strategy: &str,
    state: serde_json::Value,
) -> Result<T> {
    serde_json::from_value(state)
        .map_err(|e| SearchError::strategy(strategy, format!("bad saved state: {e}")))
}

/// What a strategy module declares once so that the registry ([`strategies!`] below) can name,
/// configure and build it: its name and aliases, a one-line description, its settings (the
/// `Serialize` form of the config, with `Default` as the documented defaults) and how to build
/// it for a space.
pub trait StrategyConfig:
    Clone + Default + PartialEq + Serialize + serde::de::DeserializeOwned + std::fmt::Debug
{
    /// Stable name (what `--strategy` and checkpoints use).
    const NAME: &'static str;
    /// Other names `--strategy` accepts.
    const ALIASES: &'static [&'static str];
    /// One line for `--help`.
    const ABOUT: &'static str;
    /// Builds the strategy for `space`.
    fn build<S: SearchSpace>(&self, space: &S) -> Result<Box<dyn Strategy<S>>>;
    /// Sets the fidelity every candidate is evaluated at. `any_fidelity` is true when the
    /// evaluator takes any number of epochs (training), false when it knows a few (the table).
    fn set_fidelity(&mut self, fidelity: u32, any_fidelity: bool) -> Result<()>;
    /// The fidelities this strategy evaluates at (one, unless it climbs a ladder).
    fn fidelities(&self, fidelity: u32) -> Vec<u32> {
        vec![fidelity]
    }
    /// The objectives of a multi-objective strategy (`None`: it maximises validation
    /// accuracy alone).
    fn objectives(&self) -> Option<crate::pareto::Objectives> {
        None
    }
    /// Sets the objectives of a multi-objective strategy (`--objectives`); the others ignore
    /// them (the search still reports the front of what they evaluated).
    fn set_objectives(&mut self, objectives: crate::pareto::Objectives) {
        let _ = objectives;
    }
}

/// Declares [`StrategyKind`] from one list of `Variant(Config)`: the only place that lists the
/// strategies. Adding one is a module whose config implements [`StrategyConfig`] plus one line.
macro_rules! strategies {
    ($($(#[$doc:meta])* $variant:ident($config:ty),)+) => {
        /// The multi-trial strategies by name, with their documented defaults; builds boxed
        /// strategies for any space. Generated from the one list in `strategy/mod.rs`.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        pub enum StrategyKind {
            $($(#[$doc])* $variant($config),)+
        }

        impl StrategyKind {
            /// Every strategy with its defaults, in registry order.
            pub fn all() -> Vec<StrategyKind> {
                vec![$(StrategyKind::$variant(<$config>::default()),)+]
            }
            /// The strategy named `name` (or one of its aliases) with its defaults.
            pub fn by_name(name: &str) -> Option<StrategyKind> {
                $(if name == <$config as StrategyConfig>::NAME
                    || <$config as StrategyConfig>::ALIASES.contains(&name)
                {
                    return Some(StrategyKind::$variant(<$config>::default()));
                })+
                None
            }
            /// The strategy's short name.
            pub fn name(&self) -> &'static str {
                match self { $(StrategyKind::$variant(_) => <$config as StrategyConfig>::NAME,)+ }
            }
            /// Its aliases.
            pub fn aliases(&self) -> &'static [&'static str] {
                match self { $(StrategyKind::$variant(_) => <$config as StrategyConfig>::ALIASES,)+ }
            }
            /// One line about it.
            pub fn about(&self) -> &'static str {
                match self { $(StrategyKind::$variant(_) => <$config as StrategyConfig>::ABOUT,)+ }
            }
            /// The settings as JSON.
            pub fn settings(&self) -> serde_json::Value {
                match self { $(StrategyKind::$variant(c) => serde_json::to_value(c).unwrap_or_default(),)+ }
            }
            /// The documented defaults of this strategy's settings, as JSON.
            pub fn default_settings(&self) -> serde_json::Value {
                match self { $(StrategyKind::$variant(_) => serde_json::to_value(<$config>::default()).unwrap_or_default(),)+ }
            }
            /// This strategy with `settings` (a JSON object of all its settings).
            fn with_settings(&self, settings: serde_json::Value) -> std::result::Result<Self, String> {
                Ok(match self {
                    $(StrategyKind::$variant(_) => StrategyKind::$variant(
                        serde_json::from_value(settings).map_err(|e| e.to_string())?),)+
                })
            }
            /// See [`StrategyConfig::set_fidelity`].
            pub fn set_fidelity(&mut self, fidelity: u32, any_fidelity: bool) -> Result<()> {
                match self { $(StrategyKind::$variant(c) => c.set_fidelity(fidelity, any_fidelity),)+ }
            }
            /// See [`StrategyConfig::fidelities`].
            pub fn fidelities(&self, fidelity: u32) -> Vec<u32> {
                match self { $(StrategyKind::$variant(c) => c.fidelities(fidelity),)+ }
            }
            /// See [`StrategyConfig::objectives`].
            pub fn objectives(&self) -> Option<crate::pareto::Objectives> {
                match self { $(StrategyKind::$variant(c) => c.objectives(),)+ }
            }
            /// See [`StrategyConfig::set_objectives`].
            pub fn set_objectives(&mut self, objectives: crate::pareto::Objectives) {
                match self { $(StrategyKind::$variant(c) => c.set_objectives(objectives),)+ }
            }
            /// Builds the strategy for `space`.
            pub fn build<S: SearchSpace>(&self, space: &S) -> Result<Box<dyn Strategy<S>>> {
                match self { $(StrategyKind::$variant(c) => c.build(space),)+ }
            }
        }
    };
}

strategies! {
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
    /// [`Tpe`].
    Tpe(TpeConfig),
    /// [`LstmController`].
    Controller(ControllerConfig),
    /// [`Bananas`].
    Bananas(BananasConfig),
    /// BOHB: [`Hyperband`] with TPE proposals.
    Bohb(BohbConfig),
    /// [`Nsga2`].
    Nsga2(Nsga2Config),
    /// [`ParetoEvolution`].
    Pareto(ParetoConfig),
}

impl StrategyKind {
    /// Parses a strategy name (or alias), optionally followed by `:key=value` settings (JSON
    /// values), e.g. `reinforce:learning_rate=0.01` or `rea:population_size=20:sample_size=5`
    /// or `hyperband:fidelities=[12,200]:eta=4`.
    pub fn parse(spec: &str) -> Result<Self> {
        let mut parts = spec.split(':');
        let name = parts.next().unwrap_or("").trim();
        let mut kind = StrategyKind::by_name(name).ok_or_else(|| {
            let names: Vec<&str> = StrategyKind::all().iter().map(|k| k.name()).collect();
            SearchError::Config(format!(
                "unknown strategy {name:?} (expected one of {})",
                names.join(", ")
            ))
        })?;
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
        let mut obj = self.settings();
        let map = obj.as_object_mut().ok_or("settings are not an object")?;
        if !map.contains_key(key) {
            let keys: Vec<&String> = map.keys().collect();
            return Err(format!("unknown setting {key:?} (settings: {keys:?})"));
        }
        let v: serde_json::Value = serde_json::from_str(value)
            .unwrap_or_else(|_| serde_json::Value::String(value.to_string()));
        map.insert(key.to_string(), v);
        self.with_settings(obj)
            .map_err(|e| format!("bad value {value:?} for {key}: {e}"))
    }

    /// The name followed by the settings that differ from the defaults, in the syntax
    /// [`StrategyKind::parse`] reads (`"reinforce:learning_rate=0.5"`).
    pub fn label(&self) -> String {
        let mut out = self.name().to_string();
        if let (serde_json::Value::Object(a), serde_json::Value::Object(d)) =
            (self.settings(), self.default_settings())
        {
            for (k, v) in &a {
                if d.get(k) != Some(v) {
                    out.push_str(&format!(":{k}={v}"));
                }
            }
        }
        out
    }

    /// Every strategy with what it does, and the one-shot methods, for `--help`.
    pub fn describe_all() -> String {
        let mut list: Vec<String> = StrategyKind::all()
            .iter()
            .map(|k| format!("{} ({})", k.name(), k.about()))
            .collect();
        list.push(
            "one-shot: darts, darts2 (second order), gdas, pcdarts (partial channels), beta-darts, \
             darts-plus (early stop), spos (single path + evolution), rsws (single path + random search), \
             enas (single path from an LSTM controller trained by REINFORCE); settings as \
             name:key=value (pcdarts:k=2, beta-darts:lambda=5, darts-plus:threshold=4, \
             enas:ctrl_lr=0.0035:entropy_weight=0.0001)"
                .into(),
        );
        list.join("; ")
    }

    /// Sets the fidelity that single-fidelity strategies evaluate at (Hyperband keeps its
    /// ladder).
    pub fn with_fidelity(mut self, fidelity: u32) -> Self {
        // Only a ladder adapted to any fidelity can fail; a fixed one is kept.
        let _ = self.set_fidelity(fidelity, false);
        self
    }
}
