//! Multi-objective strategies: NSGA-II (Deb et al. 2002) and Archai-style Pareto evolution.
//!
//! Both minimise `[-validation accuracy, cost]` ([`Objectives`]: parameters or FLOPs, read from
//! each trial's metrics) and keep the Pareto front; neither reads test accuracy.

use super::{Ask, Candidate, Strategy};
use crate::error::{Result, SearchError};
use crate::history::Trial;
use crate::pareto::{Objectives, crowding_distance, non_dominated_sort};
use nas_space::SearchSpace;
use rand::{Rng, RngCore};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// Tries to draw a child not proposed before before accepting a repeat.
const FRESH_TRIES: usize = 20;

/// An evaluated member: architecture and minimised objectives.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(bound = "A: Serialize + DeserializeOwned")]
struct Member<A> {
    arch: A,
    obj: [f64; 2],
}

/// The objective vector of a told trial (`None`: failed); an error when the evaluator does not
/// report the cost.
fn objectives_of<A: PartialEq>(
    name: &str,
    objectives: Objectives,
    trial: &Trial<A>,
) -> Result<Option<[f64; 2]>> {
    match (trial.metrics(), objectives.of_trial(trial)) {
        (None, _) => Ok(None),
        (Some(_), Some(v)) => Ok(Some(v)),
        (Some(_), None) => Err(SearchError::strategy(
            name,
            format!(
                "the evaluator reports no {} for trial {}, so --objectives {} cannot be used with it",
                objectives.cost.name(),
                trial.id,
                objectives.label()
            ),
        )),
    }
}

/// Draws with `draw` until it gives an architecture whose canonical form is not in `seen`
/// (at most [`FRESH_TRIES`] times), records it and returns it.
fn fresh<S: SearchSpace>(
    space: &S,
    seen: &mut BTreeSet<String>,
    rng: &mut dyn RngCore,
    draw: &mut dyn FnMut(&mut dyn RngCore) -> S::Arch,
) -> S::Arch {
    let mut arch = draw(rng);
    for _ in 1..FRESH_TRIES {
        if !seen.contains(&space.canonical(&arch)) {
            break;
        }
        arch = draw(rng);
    }
    seen.insert(space.canonical(&arch));
    arch
}

/// Settings of [`Nsga2`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Nsga2Config {
    /// Population size N: each generation asks N children (default 20).
    pub population_size: usize,
    /// Probability that a child is the space's crossover of its two parents before it is
    /// mutated (default 0.9, pymoo's and Deb's usual value); otherwise a copy of the first.
    pub crossover_prob: f64,
    /// The objectives (default `acc,params`; `--objectives` sets them).
    pub objectives: Objectives,
    /// Fidelity of every evaluation (default 12).
    pub fidelity: u32,
}

impl Default for Nsga2Config {
    fn default() -> Self {
        Nsga2Config {
            population_size: 20,
            crossover_prob: 0.9,
            objectives: Objectives::default(),
            fidelity: 12,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(bound = "A: Serialize + DeserializeOwned")]
struct Nsga2State<A> {
    /// The parents of the current generation (empty during generation 0).
    parents: Vec<Member<A>>,
    /// Successful children of the current generation told so far.
    children: Vec<Member<A>>,
    /// Children of the current generation asked / told.
    asked: usize,
    told: usize,
    generation: u64,
    /// Canonical forms of every architecture proposed (duplicates are redrawn, as pymoo's
    /// `eliminate_duplicates`).
    seen: BTreeSet<String>,
}

/// NSGA-II, generational: generation 0 is N random architectures; afterwards each of the N
/// children of a generation has two parents picked by binary tournaments on the parents
/// (lower non-domination rank wins, then larger crowding distance, then the first drawn), is
/// their crossover ([`SearchSpace::crossover`]) with probability `crossover_prob`, else a copy
/// of the first, and is then mutated ([`SearchSpace::mutate`]); a child equal to one proposed
/// before is redrawn (up to 20 times). When all N children are told, parents and successful
/// children are sorted into non-dominated fronts and the next N parents are the best fronts,
/// the last one cut by crowding distance. Failed trials take no part.
#[derive(Debug, Clone)]
pub struct Nsga2<A> {
    config: Nsga2Config,
    state: Nsga2State<A>,
}

impl<A> Nsga2<A> {
    /// A new NSGA-II; errors on a population under 2 or a probability outside [0, 1].
    pub fn new(config: Nsga2Config) -> Result<Self> {
        if config.population_size < 2 || !(0.0..=1.0).contains(&config.crossover_prob) {
            return Err(SearchError::Config(format!(
                "nsga2: population_size ({}) must be at least 2 and crossover_prob ({}) in [0, 1]",
                config.population_size, config.crossover_prob
            )));
        }
        Ok(Nsga2 {
            config,
            state: Nsga2State {
                parents: Vec::new(),
                children: Vec::new(),
                asked: 0,
                told: 0,
                generation: 0,
                seen: BTreeSet::new(),
            },
        })
    }
}

/// Survivor selection: the best `n` of `members` by fronts, the last front by crowding
/// distance (larger first, ties by position).
fn select<A: Clone>(members: Vec<Member<A>>, n: usize) -> Vec<Member<A>> {
    let pts: Vec<Vec<f64>> = members.iter().map(|m| m.obj.to_vec()).collect();
    let mut out = Vec::with_capacity(n);
    for front in non_dominated_sort(&pts) {
        if out.len() + front.len() <= n {
            out.extend(front.iter().map(|&i| members[i].clone()));
        } else {
            let d = crowding_distance(&pts, &front);
            let mut order: Vec<usize> = (0..front.len()).collect();
            order.sort_by(|&a, &b| d[b].total_cmp(&d[a]).then(a.cmp(&b)));
            for &k in order.iter().take(n - out.len()) {
                out.push(members[front[k]].clone());
            }
        }
        if out.len() >= n {
            break;
        }
    }
    out
}

/// Rank and crowding distance of every member (for tournaments).
fn rank_and_crowding<A>(members: &[Member<A>]) -> (Vec<usize>, Vec<f64>) {
    let pts: Vec<Vec<f64>> = members.iter().map(|m| m.obj.to_vec()).collect();
    let mut rank = vec![0; members.len()];
    let mut crowd = vec![0.0; members.len()];
    for (r, front) in non_dominated_sort(&pts).into_iter().enumerate() {
        let d = crowding_distance(&pts, &front);
        for (k, &i) in front.iter().enumerate() {
            rank[i] = r;
            crowd[i] = d[k];
        }
    }
    (rank, crowd)
}

impl<S: SearchSpace> Strategy<S> for Nsga2<S::Arch> {
    fn name(&self) -> &'static str {
        "nsga2"
    }
    fn config(&self) -> serde_json::Value {
        serde_json::to_value(&self.config).unwrap_or(serde_json::Value::Null)
    }
    fn ask(&mut self, space: &S, rng: &mut dyn RngCore) -> Result<Ask<S::Arch>> {
        let n = self.config.population_size;
        let st = &mut self.state;
        if st.asked >= n {
            return Ok(Ask::Wait);
        }
        let arch = if st.parents.is_empty() {
            fresh(space, &mut st.seen, rng, &mut |r| space.sample(r))
        } else {
            let (rank, crowd) = rank_and_crowding(&st.parents);
            let parents = &st.parents;
            let cx = self.config.crossover_prob;
            let mut draw = |r: &mut dyn RngCore| {
                let tournament = |r: &mut dyn RngCore| {
                    let a = r.random_range(0..parents.len());
                    let b = r.random_range(0..parents.len());
                    if rank[b] < rank[a] || (rank[b] == rank[a] && crowd[b] > crowd[a]) {
                        b
                    } else {
                        a
                    }
                };
                let p1 = tournament(r);
                let p2 = tournament(r);
                let child = if r.random::<f64>() < cx {
                    space.crossover(&parents[p1].arch, &parents[p2].arch, r)
                } else {
                    parents[p1].arch.clone()
                };
                space.mutate(&child, r)
            };
            fresh(space, &mut st.seen, rng, &mut draw)
        };
        st.asked += 1;
        Ok(Ask::Evaluate(Candidate {
            arch,
            fidelity: self.config.fidelity,
        }))
    }
    fn tell(&mut self, _space: &S, trial: &Trial<S::Arch>) -> Result<()> {
        let n = self.config.population_size;
        let obj = objectives_of("nsga2", self.config.objectives, trial)?;
        let st = &mut self.state;
        if st.told >= st.asked {
            return Err(SearchError::strategy(
                "nsga2",
                "told more results than asked",
            ));
        }
        st.told += 1;
        if let Some(obj) = obj {
            st.children.push(Member {
                arch: trial.arch.clone(),
                obj,
            });
        }
        if st.told == n {
            let mut all = std::mem::take(&mut st.parents);
            all.append(&mut st.children);
            st.parents = select(all, n);
            st.asked = 0;
            st.told = 0;
            st.generation += 1;
        }
        Ok(())
    }
    fn save_state(&self) -> Result<serde_json::Value> {
        super::state_to_json(&self.state)
    }
    fn load_state(&mut self, state: serde_json::Value) -> Result<()> {
        self.state = super::state_from_json("nsga2", state)?;
        Ok(())
    }
}

impl super::StrategyConfig for Nsga2Config {
    const NAME: &'static str = "nsga2";
    const ALIASES: &'static [&'static str] = &["nsga-ii"];
    const ABOUT: &'static str = "NSGA-II (Deb et al. 2002): multi-objective, non-dominated sorting and crowding, --objectives";
    fn build<S: SearchSpace>(&self, _space: &S) -> Result<Box<dyn Strategy<S>>> {
        Ok(Box::new(Nsga2::new(self.clone())?))
    }
    fn set_fidelity(&mut self, fidelity: u32, _any_fidelity: bool) -> Result<()> {
        self.fidelity = fidelity;
        Ok(())
    }
    fn objectives(&self) -> Option<Objectives> {
        Some(self.objectives)
    }
    fn set_objectives(&mut self, objectives: Objectives) {
        self.objectives = objectives;
    }
}

/// Settings of [`ParetoEvolution`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParetoConfig {
    /// Random architectures evaluated first (default 10).
    pub initial_size: usize,
    /// Front members mutated per round, drawn without replacement (all of the front when it
    /// is smaller; default 5).
    pub parents_per_round: usize,
    /// Mutations of each chosen parent per round (default 2).
    pub mutations_per_parent: usize,
    /// The objectives (default `acc,params`; `--objectives` sets them).
    pub objectives: Objectives,
    /// Fidelity of every evaluation (default 12).
    pub fidelity: u32,
}

impl Default for ParetoConfig {
    fn default() -> Self {
        ParetoConfig {
            initial_size: 10,
            parents_per_round: 5,
            mutations_per_parent: 2,
            objectives: Objectives::default(),
            fidelity: 12,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(bound = "A: Serialize + DeserializeOwned")]
struct ParetoState<A> {
    /// Every successful trial so far (the archive whose front is mutated).
    archive: Vec<Member<A>>,
    /// The children of the current round, not yet asked.
    queue: Vec<A>,
    /// Asked / told in the current round (round 0: the random start).
    asked: usize,
    told: usize,
    round_size: usize,
    round: u64,
    seen: BTreeSet<String>,
}

/// Pareto-front evolution in the style of Archai's evolutionary Pareto search: start from
/// `initial_size` random architectures; then, in rounds, take the Pareto front of everything
/// evaluated so far, pick `parents_per_round` of its members at random, and evaluate
/// `mutations_per_parent` mutations of each (redrawn up to 20 times when equal to an
/// architecture proposed before); a round's children are all told before the next round
/// reads the front. Failed trials take no part; if none succeeded, a round is random again.
#[derive(Debug, Clone)]
pub struct ParetoEvolution<A> {
    config: ParetoConfig,
    state: ParetoState<A>,
}

impl<A> ParetoEvolution<A> {
    /// A new Pareto evolution; errors when a size is 0.
    pub fn new(config: ParetoConfig) -> Result<Self> {
        if config.initial_size == 0
            || config.parents_per_round == 0
            || config.mutations_per_parent == 0
        {
            return Err(SearchError::Config(format!(
                "pareto: initial_size ({}), parents_per_round ({}) and mutations_per_parent ({}) must be at least 1",
                config.initial_size, config.parents_per_round, config.mutations_per_parent
            )));
        }
        Ok(ParetoEvolution {
            state: ParetoState {
                archive: Vec::new(),
                queue: Vec::new(),
                asked: 0,
                told: 0,
                round_size: config.initial_size,
                round: 0,
                seen: BTreeSet::new(),
            },
            config,
        })
    }
}

impl<S: SearchSpace> Strategy<S> for ParetoEvolution<S::Arch> {
    fn name(&self) -> &'static str {
        "pareto"
    }
    fn config(&self) -> serde_json::Value {
        serde_json::to_value(&self.config).unwrap_or(serde_json::Value::Null)
    }
    fn ask(&mut self, space: &S, rng: &mut dyn RngCore) -> Result<Ask<S::Arch>> {
        let st = &mut self.state;
        if st.asked >= st.round_size {
            return Ok(Ask::Wait);
        }
        if st.asked == 0 && st.round > 0 {
            // A new round: mutate members of the front of everything evaluated.
            let pts: Vec<Vec<f64>> = st.archive.iter().map(|m| m.obj.to_vec()).collect();
            let mut front = non_dominated_sort(&pts)
                .into_iter()
                .next()
                .unwrap_or_default();
            st.queue.clear();
            if front.is_empty() {
                st.round_size = self.config.initial_size;
            } else {
                let k = self.config.parents_per_round.min(front.len());
                // Partial Fisher-Yates: the first k of a random permutation.
                for i in 0..k {
                    let j = rng.random_range(i..front.len());
                    front.swap(i, j);
                }
                for &p in &front[..k] {
                    for _ in 0..self.config.mutations_per_parent {
                        let parent = st.archive[p].arch.clone();
                        let child =
                            fresh(space, &mut st.seen, rng, &mut |r| space.mutate(&parent, r));
                        st.queue.push(child);
                    }
                }
                st.queue.reverse();
                st.round_size = st.queue.len();
            }
        }
        let arch = match st.queue.pop() {
            Some(a) => a,
            None => fresh(space, &mut st.seen, rng, &mut |r| space.sample(r)),
        };
        st.asked += 1;
        Ok(Ask::Evaluate(Candidate {
            arch,
            fidelity: self.config.fidelity,
        }))
    }
    fn tell(&mut self, _space: &S, trial: &Trial<S::Arch>) -> Result<()> {
        let obj = objectives_of("pareto", self.config.objectives, trial)?;
        let st = &mut self.state;
        if st.told >= st.asked {
            return Err(SearchError::strategy(
                "pareto",
                "told more results than asked",
            ));
        }
        st.told += 1;
        if let Some(obj) = obj {
            st.archive.push(Member {
                arch: trial.arch.clone(),
                obj,
            });
        }
        if st.told == st.round_size {
            st.asked = 0;
            st.told = 0;
            st.round += 1;
        }
        Ok(())
    }
    fn save_state(&self) -> Result<serde_json::Value> {
        super::state_to_json(&self.state)
    }
    fn load_state(&mut self, state: serde_json::Value) -> Result<()> {
        self.state = super::state_from_json("pareto", state)?;
        Ok(())
    }
}

impl super::StrategyConfig for ParetoConfig {
    const NAME: &'static str = "pareto";
    const ALIASES: &'static [&'static str] = &["pareto-evolution", "archai"];
    const ABOUT: &'static str =
        "Pareto evolution (Archai style): mutate members of the current front, --objectives";
    fn build<S: SearchSpace>(&self, _space: &S) -> Result<Box<dyn Strategy<S>>> {
        Ok(Box::new(ParetoEvolution::new(self.clone())?))
    }
    fn set_fidelity(&mut self, fidelity: u32, _any_fidelity: bool) -> Result<()> {
        self.fidelity = fidelity;
        Ok(())
    }
    fn objectives(&self) -> Option<Objectives> {
        Some(self.objectives)
    }
    fn set_objectives(&mut self, objectives: Objectives) {
        self.objectives = objectives;
    }
}
