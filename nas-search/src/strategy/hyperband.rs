//! Successive halving and Hyperband over a ladder of fidelities (training epochs).

use super::{Ask, Candidate, Strategy, Tpe, TpeConfig};
use crate::error::{Result, SearchError};
use crate::history::Trial;
use nas_space::SearchSpace;
use rand::{Rng, RngCore};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Settings of [`Hyperband`].
///
/// Hyperband (Li et al., JMLR 2018) with the rungs taken from a given ladder of fidelities
/// instead of `R * eta^-s` (a table only knows some epochs: NAS-Bench-201's 12 and 200). With
/// `s_max = fidelities.len() - 1`, bracket `s` (from `s_max` down to 0) starts
/// `ceil((s_max + 1) / (s + 1) * eta^s)` random architectures at rung `s_max - s` and keeps the
/// best `floor(n / eta)` (at least 1) for each next rung. Brackets repeat until the budget ends.
/// `brackets = Some(1)` gives plain successive halving (only the most exploratory bracket).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HyperbandConfig {
    /// Increasing fidelities, one per rung (default `[12, 200]`).
    pub fidelities: Vec<u32>,
    /// Reduction factor (default 3, Li et al.'s recommendation).
    pub eta: usize,
    /// How many of the brackets (most exploratory first) to cycle through; `None` = all.
    pub brackets: Option<usize>,
}

impl Default for HyperbandConfig {
    fn default() -> Self {
        HyperbandConfig {
            fidelities: vec![12, 200],
            eta: 3,
            brackets: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(bound = "A: Serialize + DeserializeOwned")]
struct HbState<A> {
    /// Brackets started so far.
    bracket: u64,
    /// Current rung (index into the ladder).
    rung: usize,
    /// Members of the current rung and their scores once told.
    members: Vec<(A, Option<f64>)>,
    asked: usize,
    told: usize,
    /// BOHB only: every successful result per rung (decision choices, score), oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    observations: Vec<Vec<(Vec<usize>, f64)>>,
}

/// Hyperband / successive halving over fidelities; see [`HyperbandConfig`]. With a model
/// ([`Hyperband::bohb`]) it is BOHB.
#[derive(Debug, Clone)]
pub struct Hyperband<A> {
    config: HyperbandConfig,
    state: HbState<A>,
    bohb: Option<(BohbConfig, Tpe)>,
}

/// Settings of BOHB (Falkner, Klein and Hutter, ICML 2018): Hyperband's brackets (the ladder,
/// `eta` and `brackets` as in [`HyperbandConfig`]) whose new architectures are proposed by TPE
/// ([`Tpe`]'s categorical Parzen estimators, `l/g` over `n_ei_candidates` draws per decision)
/// fitted on the results of the highest rung that has at least `min_points` of them; a
/// fraction `random_fraction` of them, and all of them while no rung has enough results, are
/// random. Every rung's results are search-visible validation accuracies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BohbConfig {
    /// Increasing fidelities, one per rung (default `[12, 200]`).
    pub fidelities: Vec<u32>,
    /// Reduction factor (default 3).
    pub eta: usize,
    /// How many of the brackets to cycle through; `None` = all.
    pub brackets: Option<usize>,
    /// Fraction of new architectures drawn at random (default 1/3, BOHB's).
    pub random_fraction: f64,
    /// Results a rung needs before its model is used; 0 = the number of decisions plus one
    /// (BOHB's `min_points_in_model`). Default 0.
    pub min_points: usize,
    /// Fraction of a rung's results that are "good" (default 0.15, BOHB's `top_n_percent`).
    pub gamma: f64,
    /// Candidates drawn from `l` per decision (default 64, BOHB's `num_samples`).
    pub n_ei_candidates: usize,
    /// Weight of TPE's uniform prior (default 1).
    pub prior_weight: f64,
}

impl Default for BohbConfig {
    fn default() -> Self {
        BohbConfig {
            fidelities: vec![12, 200],
            eta: 3,
            brackets: None,
            random_fraction: 1.0 / 3.0,
            min_points: 0,
            gamma: 0.15,
            n_ei_candidates: 64,
            prior_weight: 1.0,
        }
    }
}

impl BohbConfig {
    fn ladder(&self) -> HyperbandConfig {
        HyperbandConfig {
            fidelities: self.fidelities.clone(),
            eta: self.eta,
            brackets: self.brackets,
        }
    }
}

impl<A> Hyperband<A> {
    /// A new Hyperband; errors on an empty or non-increasing ladder or `eta < 2`.
    pub fn new(config: HyperbandConfig) -> Result<Self> {
        let f = &config.fidelities;
        if f.is_empty() || f.windows(2).any(|w| w[0] >= w[1]) || f[0] == 0 {
            return Err(SearchError::Config(format!(
                "hyperband: fidelities must be positive and strictly increasing, got {f:?}"
            )));
        }
        if config.eta < 2 || config.brackets == Some(0) {
            return Err(SearchError::Config(format!(
                "hyperband: eta must be >= 2 and brackets >= 1, got {} and {:?}",
                config.eta, config.brackets
            )));
        }
        Ok(Hyperband {
            config,
            state: HbState {
                bracket: 0,
                rung: 0,
                members: Vec::new(),
                asked: 0,
                told: 0,
                observations: Vec::new(),
            },
            bohb: None,
        })
    }

    /// BOHB: Hyperband with TPE proposals; errors on a bad ladder or model setting.
    pub fn bohb(config: BohbConfig) -> Result<Self> {
        let mut hb = Hyperband::new(config.ladder())?;
        if !(0.0..=1.0).contains(&config.random_fraction) {
            return Err(SearchError::Config(format!(
                "bohb: random_fraction must be in [0, 1], got {}",
                config.random_fraction
            )));
        }
        let tpe = Tpe::new(TpeConfig {
            n_startup: 0,
            gamma: config.gamma,
            gamma_cap: usize::MAX,
            n_ei_candidates: config.n_ei_candidates,
            prior_weight: config.prior_weight,
            fidelity: 0,
        })
        .map_err(|e| SearchError::Config(e.to_string().replace("tpe:", "bohb:")))?;
        hb.state.observations = vec![Vec::new(); config.fidelities.len()];
        hb.bohb = Some((config, tpe));
        Ok(hb)
    }

    /// A new bracket member: BOHB's model of the highest rung with enough results, or random.
    fn new_member<S: SearchSpace<Arch = A>>(&self, space: &S, rng: &mut dyn RngCore) -> A {
        let Some((cfg, tpe)) = &self.bohb else {
            return space.sample(rng);
        };
        let min = match cfg.min_points {
            0 => space.decisions().len() + 1,
            n => n,
        };
        let rung = self.state.observations.iter().rposition(|o| o.len() >= min);
        match rung {
            Some(r) if rng.random::<f64>() >= cfg.random_fraction => {
                tpe.propose(&self.state.observations[r], space, rng)
            }
            _ => space.sample(rng),
        }
    }

    /// The bracket index `s` and its number of starting configurations for bracket counter `b`.
    pub fn bracket_plan(&self, b: u64) -> (usize, usize) {
        let s_max = self.config.fidelities.len() - 1;
        let nb = self.config.brackets.unwrap_or(s_max + 1).min(s_max + 1);
        let s = s_max - (b % nb as u64) as usize;
        let n = ((s_max + 1) as f64 / (s + 1) as f64 * (self.config.eta as f64).powi(s as i32))
            .ceil() as usize;
        (s, n.max(1))
    }
}

impl<S: SearchSpace> Strategy<S> for Hyperband<S::Arch> {
    fn name(&self) -> &'static str {
        if self.bohb.is_some() {
            "bohb"
        } else {
            "hyperband"
        }
    }
    fn config(&self) -> serde_json::Value {
        match &self.bohb {
            Some((c, _)) => serde_json::to_value(c),
            None => serde_json::to_value(&self.config),
        }
        .unwrap_or(serde_json::Value::Null)
    }
    fn ask(&mut self, space: &S, rng: &mut dyn RngCore) -> Result<Ask<S::Arch>> {
        let s_max = self.config.fidelities.len() - 1;
        loop {
            if self.state.members.is_empty() {
                let (s, n) = self.bracket_plan(self.state.bracket);
                self.state.rung = s_max - s;
                self.state.members = (0..n)
                    .map(|_| (self.new_member(space, rng), None))
                    .collect();
                self.state.asked = 0;
                self.state.told = 0;
            }
            let st = &mut self.state;
            if st.asked < st.members.len() {
                let arch = st.members[st.asked].0.clone();
                st.asked += 1;
                let fidelity = self.config.fidelities[st.rung];
                return Ok(Ask::Evaluate(Candidate { arch, fidelity }));
            }
            if st.told < st.members.len() {
                return Ok(Ask::Wait);
            }
            if st.rung == s_max {
                st.bracket += 1;
                st.members.clear();
                continue;
            }
            let keep = (st.members.len() / self.config.eta).max(1);
            // Stable sort: best first, failed last, ties keep the earlier member.
            st.members.sort_by(|a, b| {
                let (x, y) = (
                    a.1.unwrap_or(f64::NEG_INFINITY),
                    b.1.unwrap_or(f64::NEG_INFINITY),
                );
                y.total_cmp(&x)
            });
            st.members.truncate(keep);
            for m in &mut st.members {
                m.1 = None;
            }
            st.rung += 1;
            st.asked = 0;
            st.told = 0;
        }
    }
    fn tell(&mut self, space: &S, trial: &Trial<S::Arch>) -> Result<()> {
        let st = &mut self.state;
        if st.told >= st.asked {
            return Err(SearchError::strategy(
                "hyperband",
                "told more results than asked",
            ));
        }
        if st.members[st.told].0 != trial.arch {
            return Err(SearchError::strategy(
                "hyperband",
                "result told out of order",
            ));
        }
        st.members[st.told].1 = trial.score();
        st.told += 1;
        if let (Some(obs), Some(score)) = (st.observations.get_mut(st.rung), trial.score()) {
            obs.push((space.encode_decisions(&trial.arch), score));
        }
        Ok(())
    }
    fn save_state(&self) -> Result<serde_json::Value> {
        super::state_to_json(&self.state)
    }
    fn load_state(&mut self, state: serde_json::Value) -> Result<()> {
        let name = Strategy::<S>::name(self);
        let mut st: HbState<S::Arch> = super::state_from_json(name, state)?;
        if self.bohb.is_some() && st.observations.is_empty() {
            // Saved before any result (an empty list is not written).
            st.observations = vec![Vec::new(); self.config.fidelities.len()];
        }
        if st.observations.len()
            != if self.bohb.is_some() {
                self.config.fidelities.len()
            } else {
                0
            }
        {
            return Err(SearchError::strategy(
                name,
                "saved state has observations for another ladder",
            ));
        }
        self.state = st;
        Ok(())
    }
}

impl super::StrategyConfig for HyperbandConfig {
    const NAME: &'static str = "hyperband";
    const ALIASES: &'static [&'static str] = &["hb"];
    const ABOUT: &'static str =
        "Hyperband / successive halving over a ladder of fidelities (epochs)";
    fn build<S: SearchSpace>(&self, _space: &S) -> Result<Box<dyn Strategy<S>>> {
        Ok(Box::new(Hyperband::new(self.clone())?))
    }
    /// The default ladder (12 and 200 epochs) is the NAS-Bench-201 table's; an evaluator that
    /// trains any number of epochs climbs from 1 epoch to `fidelity` instead (a ladder set by
    /// hand is kept).
    fn set_fidelity(&mut self, fidelity: u32, any_fidelity: bool) -> Result<()> {
        adapt_ladder(&mut self.fidelities, "hyperband", fidelity, any_fidelity)
    }
    fn fidelities(&self, _fidelity: u32) -> Vec<u32> {
        self.fidelities.clone()
    }
}

/// The default ladder (12 and 200 epochs) is the NAS-Bench-201 table's; an evaluator that
/// trains any number of epochs climbs from 1 epoch to `fidelity` instead (a ladder set by hand
/// is kept).
fn adapt_ladder(
    fidelities: &mut Vec<u32>,
    name: &str,
    fidelity: u32,
    any_fidelity: bool,
) -> Result<()> {
    if any_fidelity && *fidelities == HyperbandConfig::default().fidelities {
        if fidelity < 2 {
            return Err(SearchError::Setting(format!(
                "--strategy {name} with the train evaluator needs --epochs 2 or more (its \
                 ladder runs from 1 epoch to --epochs), or {name}:fidelities=[...]"
            )));
        }
        *fidelities = vec![1, fidelity];
    }
    Ok(())
}

impl super::StrategyConfig for BohbConfig {
    const NAME: &'static str = "bohb";
    const ALIASES: &'static [&'static str] = &[];
    const ABOUT: &'static str = "BOHB: Hyperband's brackets with TPE proposals fitted on the highest rung with enough results";
    fn build<S: SearchSpace>(&self, _space: &S) -> Result<Box<dyn Strategy<S>>> {
        Ok(Box::new(Hyperband::<S::Arch>::bohb(self.clone())?))
    }
    fn set_fidelity(&mut self, fidelity: u32, any_fidelity: bool) -> Result<()> {
        adapt_ladder(&mut self.fidelities, "bohb", fidelity, any_fidelity)
    }
    fn fidelities(&self, _fidelity: u32) -> Vec<u32> {
        self.fidelities.clone()
    }
}
