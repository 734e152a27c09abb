//! Pre-filtering by a zero-cost proxy (`--prefilter synflow:1000`): score `samples` random
//! architectures with a proxy, and hand the best `keep` to the strategy as its first
//! proposals.
//!
//! [`rank`] draws and scores the samples (from a generator seeded by the search's seed, so a
//! resumed search ranks the same ones); [`WarmStarted`] wraps any single-fidelity strategy:
//! its first `keep` proposals have their architecture replaced by the ranked ones, best first,
//! and every result is told to the strategy as usual, so a strategy that learns from what it
//! is told (REA's population, TPE's and BANANAS' observations, local search's start point, the
//! controllers' updates) starts from the proxy's choice. Scores come from
//! [`crate::spaces::SpaceDef::proxy`]: `synflow` on NAS-Bench-201 cells ([`crate::proxies`]),
//! `params` and `flops` (closed form) wherever the space has a network.

use crate::error::{Result, SearchError};
use crate::history::Trial;
use crate::strategy::{Ask, Strategy};
use nas_space::SearchSpace;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// A zero-cost proxy that ranks architectures (larger is better).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Proxy {
    /// `ln` synflow of the untrained network ([`crate::proxies::synflow`]).
    Synflow,
    /// Parameters of the search network.
    Params,
    /// Multiply-accumulates of the search network.
    Flops,
}

impl Proxy {
    /// The name `--prefilter` takes.
    pub fn name(self) -> &'static str {
        match self {
            Proxy::Synflow => "synflow",
            Proxy::Params => "params",
            Proxy::Flops => "flops",
        }
    }
}

/// `--prefilter PROXY:SAMPLES[:KEEP]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrefilterSpec {
    /// The proxy.
    pub proxy: Proxy,
    /// Random architectures scored.
    pub samples: usize,
    /// The best of them proposed first (default 10).
    pub keep: usize,
}

/// Most samples a pre-filter scores (synflow takes ~10 ms a cell on 2 cores).
pub const MAX_SAMPLES: usize = 1_000_000;

impl PrefilterSpec {
    /// Parses `synflow:1000`, `params:500:20`, ...; errors name `--prefilter` and what is wrong.
    pub fn parse(spec: &str) -> Result<Self> {
        let bad = |why: String| SearchError::Setting(format!("--prefilter {spec:?}: {why}"));
        let mut parts = spec.split(':');
        let proxy = match parts.next().unwrap_or("").trim() {
            "synflow" => Proxy::Synflow,
            "params" => Proxy::Params,
            "flops" => Proxy::Flops,
            other => {
                return Err(bad(format!(
                    "unknown proxy {other:?} (expected synflow, params or flops)"
                )));
            }
        };
        let mut number = |what: &str| -> Result<Option<usize>> {
            parts
                .next()
                .map(|s| {
                    s.trim()
                        .parse::<usize>()
                        .map_err(|e| bad(format!("{what} {s:?}: {e}")))
                })
                .transpose()
        };
        let samples = number("samples")?
            .ok_or_else(|| bad("expected PROXY:SAMPLES[:KEEP], e.g. synflow:1000".into()))?;
        let keep = number("keep")?.unwrap_or(10.min(samples));
        if parts.next().is_some() {
            return Err(bad("expected PROXY:SAMPLES[:KEEP]".into()));
        }
        if samples == 0 || samples > MAX_SAMPLES || keep == 0 || keep > samples {
            return Err(bad(format!(
                "need 1 <= KEEP <= SAMPLES <= {MAX_SAMPLES}, got {samples} samples, keep {keep}"
            )));
        }
        Ok(PrefilterSpec {
            proxy,
            samples,
            keep,
        })
    }
}

impl std::fmt::Display for PrefilterSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.proxy.name(), self.samples, self.keep)
    }
}

/// Draws `spec.samples` distinct architectures (a generator seeded by `seed`; in a small space
/// fewer when it runs out), scores each with `score` and returns the best `spec.keep`, best
/// first (ties: earlier drawn first; a NaN score ranks last).
pub fn rank<S: SearchSpace>(
    space: &S,
    spec: &PrefilterSpec,
    seed: u64,
    score: &mut dyn FnMut(&S::Arch) -> Result<f64>,
) -> Result<Vec<S::Arch>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5052_4546_494c_5445);
    let mut drawn: Vec<S::Arch> = Vec::with_capacity(spec.samples);
    let mut distinct = HashSet::new();
    for _ in 0..spec.samples.saturating_mul(4) {
        if drawn.len() == spec.samples {
            break;
        }
        let a = space.sample(&mut rng);
        if distinct.insert(a.clone()) {
            drawn.push(a);
        }
    }
    let mut scored: Vec<(f64, usize)> = Vec::with_capacity(drawn.len());
    for (i, a) in drawn.iter().enumerate() {
        let s = score(a)?;
        scored.push((if s.is_nan() { f64::NEG_INFINITY } else { s }, i));
    }
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    Ok(scored
        .iter()
        .take(spec.keep)
        .map(|&(_, i)| drawn[i].clone())
        .collect())
}

/// A strategy whose first proposals are given architectures; see the [module docs](self).
pub struct WarmStarted<S: SearchSpace> {
    inner: Box<dyn Strategy<S>>,
    warm: Vec<S::Arch>,
    /// Warm architectures proposed so far.
    next: usize,
}

impl<S: SearchSpace> WarmStarted<S> {
    /// `inner` with `warm` as its first proposals (best first).
    pub fn new(inner: Box<dyn Strategy<S>>, warm: Vec<S::Arch>) -> Self {
        WarmStarted {
            inner,
            warm,
            next: 0,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct WarmState {
    next: usize,
    inner: serde_json::Value,
}

impl<S: SearchSpace> Strategy<S> for WarmStarted<S> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn config(&self) -> serde_json::Value {
        serde_json::json!({
            "inner": self.inner.config(),
            "warm_start": serde_json::to_value(&self.warm).unwrap_or_default(),
        })
    }
    fn ask(&mut self, space: &S, rng: &mut dyn RngCore) -> Result<Ask<S::Arch>> {
        let mut ask = self.inner.ask(space, rng)?;
        if let Ask::Evaluate(c) = &mut ask
            && let Some(a) = self.warm.get(self.next)
        {
            c.arch = a.clone();
            self.next += 1;
        }
        Ok(ask)
    }
    fn tell(&mut self, space: &S, trial: &Trial<S::Arch>) -> Result<()> {
        self.inner.tell(space, trial)
    }
    fn save_state(&self) -> Result<serde_json::Value> {
        serde_json::to_value(WarmState {
            next: self.next,
            inner: self.inner.save_state()?,
        })
        .map_err(|e| SearchError::Serde(e.to_string()))
    }
    fn load_state(&mut self, state: serde_json::Value) -> Result<()> {
        let st: WarmState = serde_json::from_value(state).map_err(|e| {
            SearchError::strategy(self.inner.name(), format!("bad warm-start state: {e}"))
        })?;
        if st.next > self.warm.len() {
            return Err(SearchError::strategy(
                self.inner.name(),
                format!(
                    "warm-start state has {} proposals made of {}",
                    st.next,
                    self.warm.len()
                ),
            ));
        }
        self.inner.load_state(st.inner)?;
        self.next = st.next;
        Ok(())
    }
}

/// `kind` built for `space`, wrapped in [`WarmStarted`] when `warm` is not empty.
pub fn build_warm<S: SearchSpace + 'static>(
    kind: &crate::strategy::StrategyKind,
    warm: &[S::Arch],
    space: &S,
) -> Result<Box<dyn Strategy<S>>> {
    let inner = kind.build(space)?;
    Ok(if warm.is_empty() {
        inner
    } else {
        Box::new(WarmStarted::new(inner, warm.to_vec()))
    })
}
