//! Multi-objective search: objectives, Pareto dominance, NSGA-II's non-dominated sorting and
//! crowding distance, the exact two-objective hypervolume, and hard cost limits.
//!
//! Every objective vector here is *minimised*: accuracy enters as `-accuracy`, costs as they
//! are. [`Objectives`] is what `--objectives acc,params` parses to (validation accuracy, the
//! one the search sees, against one cost: parameters or FLOPs of the network the evaluator
//! reports). [`Limits`] are `--max-params`, `--max-flops`; [`Constrained`] wraps any strategy
//! so that no candidate over a limit is ever evaluated (see its docs for how such candidates
//! are rejected and replaced).

use crate::error::{Result, SearchError};
use crate::history::{Outcome, Trial};
use crate::nets::NetworkCost;
use crate::strategy::{Ask, Strategy};
use nas_space::SearchSpace;
use rand::RngCore;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::Arc;

/// The cost objective minimised next to validation accuracy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CostKind {
    /// Parameters of the network ([`crate::Metrics::params`]).
    Params,
    /// Multiply-accumulates of one forward pass ([`crate::Metrics::flops`]).
    Flops,
    /// Measured CPU inference latency in milliseconds ([`crate::Metrics::latency_ms`], from
    /// the latency table of [`crate::latency`]).
    Latency,
}

impl CostKind {
    /// The name `--objectives` takes.
    pub fn name(self) -> &'static str {
        match self {
            CostKind::Params => "params",
            CostKind::Flops => "flops",
            CostKind::Latency => "latency",
        }
    }

    /// This cost of a trial's metrics (`None`: the evaluator did not report it).
    pub fn of_metrics(self, m: &crate::Metrics) -> Option<f64> {
        match self {
            CostKind::Params => m.params.map(|p| p as f64),
            CostKind::Flops => m.flops.map(|f| f as f64),
            CostKind::Latency => m.latency_ms,
        }
    }

    /// This cost of a closed-form network cost (`None` for latency, which is measured).
    pub fn of_cost(self, c: &NetworkCost) -> Option<f64> {
        match self {
            CostKind::Params => Some(c.params as f64),
            CostKind::Flops => Some(c.flops as f64),
            CostKind::Latency => None,
        }
    }

    /// The axis label of this cost in plots and summaries.
    pub fn axis_label(self) -> &'static str {
        match self {
            CostKind::Params => "params",
            CostKind::Flops => "flops",
            CostKind::Latency => "latency (ms, measured CPU)",
        }
    }
}

/// The objectives of a multi-objective search: validation accuracy (maximised) and one cost
/// (minimised). Parsed from `acc,params`, `acc,flops` or `acc,latency`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Objectives {
    /// The cost objective.
    pub cost: CostKind,
}

impl Default for Objectives {
    fn default() -> Self {
        Objectives {
            cost: CostKind::Params,
        }
    }
}

impl Objectives {
    /// Parses `--objectives`: `acc` (or `accuracy`) and one of `params`, `flops`, `latency`,
    /// separated by a comma, in either order. Errors name `--objectives` and what is wrong.
    pub fn parse(spec: &str) -> Result<Objectives> {
        let bad = |why: String| {
            SearchError::Setting(format!(
                "--objectives {spec:?}: {why} (expected acc,params, acc,flops or acc,latency)"
            ))
        };
        let parts: Vec<&str> = spec.split(',').map(str::trim).collect();
        if parts.len() != 2 {
            return Err(bad(format!(
                "{} objective(s) given; multi-objective search takes two",
                parts.len()
            )));
        }
        let mut acc = false;
        let mut cost = None;
        for p in parts {
            match p {
                "acc" | "accuracy" if !acc => acc = true,
                "params" | "flops" | "latency" if cost.is_none() => {
                    cost = Some(match p {
                        "params" => CostKind::Params,
                        "flops" => CostKind::Flops,
                        _ => CostKind::Latency,
                    })
                }
                "acc" | "accuracy" | "params" | "flops" | "latency" => {
                    return Err(bad(format!(
                        "{p} is given twice, or with another cost (one cost objective)"
                    )));
                }
                other => return Err(bad(format!("unknown objective {other:?}"))),
            }
        }
        match (acc, cost) {
            (true, Some(cost)) => Ok(Objectives { cost }),
            _ => Err(bad("accuracy and one cost are needed".into())),
        }
    }

    /// The name, as `--objectives` reads it (`acc,params`).
    pub fn label(&self) -> String {
        format!("acc,{}", self.cost.name())
    }

    /// The minimised objective vector `[-valid accuracy, cost]` of a trial; `None` for a failed
    /// trial or one whose metrics lack the cost.
    pub fn of_trial<A: PartialEq>(&self, t: &Trial<A>) -> Option<[f64; 2]> {
        let m = t.metrics()?;
        Some([-m.valid_accuracy, self.cost.of_metrics(m)?])
    }
}

/// Whether `a` Pareto-dominates `b` (all objectives minimised): no worse in every objective and
/// better in at least one. Equal vectors do not dominate each other.
pub fn dominates(a: &[f64], b: &[f64]) -> bool {
    let mut better = false;
    for (x, y) in a.iter().zip(b) {
        if x > y {
            return false;
        }
        if x < y {
            better = true;
        }
    }
    better
}

/// Deb et al.'s fast non-dominated sort (NSGA-II, 2002): the indices of `points` split into
/// fronts, front 0 first (the points no other point dominates), each front in increasing index
/// order. Duplicates land in the same front.
pub fn non_dominated_sort(points: &[Vec<f64>]) -> Vec<Vec<usize>> {
    let n = points.len();
    let mut dominated_by = vec![0usize; n];
    let mut dominates_list: Vec<Vec<usize>> = vec![Vec::new(); n];
    for i in 0..n {
        for j in (i + 1)..n {
            if dominates(&points[i], &points[j]) {
                dominates_list[i].push(j);
                dominated_by[j] += 1;
            } else if dominates(&points[j], &points[i]) {
                dominates_list[j].push(i);
                dominated_by[i] += 1;
            }
        }
    }
    let mut fronts = Vec::new();
    let mut current: Vec<usize> = (0..n).filter(|&i| dominated_by[i] == 0).collect();
    while !current.is_empty() {
        let mut next = Vec::new();
        for &i in &current {
            for &j in &dominates_list[i] {
                dominated_by[j] -= 1;
                if dominated_by[j] == 0 {
                    next.push(j);
                }
            }
        }
        next.sort_unstable();
        fronts.push(current);
        current = next;
    }
    fronts
}

/// NSGA-II's crowding distance of each member of `front` (indices into `points`), in the order
/// of `front`. Per objective the members are sorted by value (ties by their position in
/// `front`), the two ends get infinity, and every other member adds the gap between its two
/// neighbours divided by the objective's range; an objective whose values are all equal adds
/// nothing. So of two duplicates at an end one is infinite and the other gets the gap to its
/// neighbours (as in Deb et al. and pymoo's reference sort).
pub fn crowding_distance(points: &[Vec<f64>], front: &[usize]) -> Vec<f64> {
    let k = front.len();
    let mut dist = vec![0.0; k];
    if k <= 2 {
        return vec![f64::INFINITY; k];
    }
    let m = points[front[0]].len();
    for obj in 0..m {
        let mut order: Vec<usize> = (0..k).collect();
        order.sort_by(|&a, &b| {
            points[front[a]][obj]
                .total_cmp(&points[front[b]][obj])
                .then(a.cmp(&b))
        });
        let lo = points[front[order[0]]][obj];
        let hi = points[front[order[k - 1]]][obj];
        let range = hi - lo;
        if range <= 0.0 {
            continue;
        }
        dist[order[0]] = f64::INFINITY;
        dist[order[k - 1]] = f64::INFINITY;
        for w in 1..k - 1 {
            let gap = points[front[order[w + 1]]][obj] - points[front[order[w - 1]]][obj];
            dist[order[w]] += gap / range;
        }
    }
    dist
}

/// The exact hypervolume of a set of two-objective points (both minimised) with respect to
/// `reference`: the area of the region that some point dominates and that dominates the
/// reference point. Points not strictly better than the reference in both objectives add
/// nothing; dominated points and duplicates add nothing.
pub fn hypervolume_2d(points: &[[f64; 2]], reference: [f64; 2]) -> f64 {
    let mut pts: Vec<[f64; 2]> = points
        .iter()
        .copied()
        .filter(|p| p[0] < reference[0] && p[1] < reference[1])
        .collect();
    pts.sort_by(|a, b| a[0].total_cmp(&b[0]).then(a[1].total_cmp(&b[1])));
    // Sweep along the first objective: each point that lowers the best second objective seen
    // so far adds the strip between it and the next better-in-first point.
    let mut area = 0.0;
    let mut best_y = reference[1];
    for p in &pts {
        if p[1] >= best_y {
            continue;
        }
        // The slab from p[0] to the reference in x, between p[1] and best_y in y.
        area += (reference[0] - p[0]) * (best_y - p[1]);
        best_y = p[1];
    }
    area
}

/// The hypervolume of (accuracy %, cost) points, accuracy maximised and cost minimised: the
/// area that the points dominate and that dominates the reference point (`ref_accuracy` %,
/// `ref_cost`), in % x cost units (not normalised).
pub fn accuracy_cost_hypervolume(points: &[(f64, f64)], ref_accuracy: f64, ref_cost: f64) -> f64 {
    let pts: Vec<[f64; 2]> = points.iter().map(|&(a, c)| [-a, c]).collect();
    hypervolume_2d(&pts, [-ref_accuracy, ref_cost])
}

/// One member of a found front.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrontMember {
    /// The trial id.
    pub trial: u64,
    /// The architecture as text.
    pub arch: String,
    /// Validation accuracy (what the search saw), percent.
    pub valid_accuracy: f64,
    /// Reported (test) accuracy, percent, where the evaluator has one.
    pub test_accuracy: Option<f64>,
    /// The cost objective's value.
    pub cost: f64,
}

/// The Pareto front of a search: the successful trials no other trial dominates in (validation
/// accuracy, cost), sorted by cost, with every evaluated point for plotting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParetoFront {
    /// The objectives.
    pub objectives: String,
    /// The front, by increasing cost (duplicated architectures appear once per trial).
    pub front: Vec<FrontMember>,
    /// Every successful trial as (validation accuracy, cost), in trial order.
    pub points: Vec<(f64, f64)>,
    /// The reference point of [`ParetoFront::hypervolume`]: (accuracy %, cost).
    pub reference: (f64, f64),
    /// Hypervolume of the front in (validation accuracy %, cost) with respect to `reference`,
    /// as a fraction of the box from `reference` to (100 %, cost 0): in [0, 1].
    pub hypervolume: f64,
}

impl ParetoFront {
    /// The front of `trials` under `objectives`, its hypervolume with respect to accuracy 0 %
    /// and `ref_cost` (`None`: the largest cost evaluated), normalised by the box up to
    /// (100 %, 0). Trials without the cost, and trials reusing another's result, are skipped.
    pub fn of_trials<A: PartialEq + std::fmt::Display>(
        trials: &[Trial<A>],
        objectives: Objectives,
        ref_cost: Option<f64>,
    ) -> ParetoFront {
        let mut ids = Vec::new();
        let mut vecs = Vec::new();
        for (i, t) in trials.iter().enumerate() {
            if t.cached_from.is_some() {
                continue;
            }
            if let Some(v) = objectives.of_trial(t) {
                ids.push(i);
                vecs.push(v.to_vec());
            }
        }
        let first = non_dominated_sort(&vecs)
            .into_iter()
            .next()
            .unwrap_or_default();
        let mut front: Vec<FrontMember> = first
            .iter()
            .map(|&k| {
                let t = &trials[ids[k]];
                FrontMember {
                    trial: t.id,
                    arch: t.arch.to_string(),
                    valid_accuracy: -vecs[k][0],
                    test_accuracy: t.metrics().and_then(|m| m.test_accuracy),
                    cost: vecs[k][1],
                }
            })
            .collect();
        front.sort_by(|a, b| a.cost.total_cmp(&b.cost).then(a.trial.cmp(&b.trial)));
        let points: Vec<(f64, f64)> = vecs.iter().map(|v| (-v[0], v[1])).collect();
        let ref_cost = ref_cost.unwrap_or_else(|| points.iter().map(|p| p.1).fold(0.0, f64::max));
        let hv = accuracy_cost_hypervolume(
            &front
                .iter()
                .map(|m| (m.valid_accuracy, m.cost))
                .collect::<Vec<_>>(),
            0.0,
            ref_cost,
        ) / (100.0 * ref_cost);
        ParetoFront {
            objectives: objectives.label(),
            front,
            points,
            reference: (0.0, ref_cost),
            hypervolume: hv,
        }
    }

    /// Accuracy against cost: dominated points grey, the front in colour joined by a step line.
    pub fn plot(&self, title: &str) -> crate::plot::Plot {
        use crate::plot::{Plot, Style};
        let cost = self.objectives.split(',').nth(1).unwrap_or("cost");
        let axis = if cost == "latency" {
            CostKind::Latency.axis_label()
        } else {
            cost
        };
        let mut p = Plot::new(title, axis, "validation accuracy (%)");
        let on_front = |a: f64, c: f64| {
            self.front
                .iter()
                .any(|m| m.valid_accuracy == a && m.cost == c)
        };
        let dominated: Vec<(f64, f64)> = self
            .points
            .iter()
            .filter(|&&(a, c)| !on_front(a, c))
            .map(|&(a, c)| (c, a))
            .collect();
        p.add("dominated", dominated, Style::Points);
        if let Some(s) = p.series.last_mut() {
            s.colour = Some("#b0b0b0".into());
        }
        let front: Vec<(f64, f64)> = self
            .front
            .iter()
            .map(|m| (m.cost, m.valid_accuracy))
            .collect();
        let mut steps = Vec::new();
        for (i, &(c, a)) in front.iter().enumerate() {
            if i > 0 {
                steps.push((c, front[i - 1].1));
            }
            steps.push((c, a));
        }
        p.add("Pareto front", front, Style::Points);
        p.add("front (steps)", steps, Style::Line);
        if let Some(s) = p.series.last_mut() {
            s.colour = Some("#1f77b4".into());
        }
        p
    }

    /// The front as lines for a summary: cost, validation and test accuracy, architecture.
    pub fn lines(&self) -> String {
        let cost = self.objectives.split(',').nth(1).unwrap_or("cost");
        let mut s = format!(
            "Pareto front ({}; {} of {} evaluated; hypervolume {:.4} of the box from (accuracy {} %, {cost} {}) to (100 %, 0)):\n",
            self.objectives,
            self.front.len(),
            self.points.len(),
            self.hypervolume,
            self.reference.0,
            self.reference.1
        );
        for m in &self.front {
            s.push_str(&format!(
                "  trial {:>4}  {cost} {:>12}  valid {:6.2}%  test {}  {}\n",
                m.trial,
                m.cost,
                m.valid_accuracy,
                m.test_accuracy
                    .map_or("   n/a ".to_string(), |t| format!("{t:6.2}%")),
                m.arch
            ));
        }
        s
    }
}

/// Hard limits on a candidate's cost (`--max-params`, `--max-flops`, `--max-latency-ms`): a
/// candidate over any of them is never evaluated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    /// Most parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_params: Option<f64>,
    /// Most multiply-accumulates of one forward pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_flops: Option<f64>,
    /// Most measured CPU latency, milliseconds ([`crate::latency`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_latency_ms: Option<f64>,
}

impl Limits {
    /// Whether no limit is set.
    pub fn is_empty(&self) -> bool {
        self.max_params.is_none() && self.max_flops.is_none() && self.max_latency_ms.is_none()
    }

    /// Whether a limit on the closed-form cost (parameters or FLOPs) is set.
    pub fn has_network_limit(&self) -> bool {
        self.max_params.is_some() || self.max_flops.is_some()
    }

    /// Parses one limit's value (`1e6`, `250000`, `1.5M`, `2G`): a finite positive number;
    /// errors name `flag`.
    pub fn parse_value(flag: &str, text: &str) -> Result<f64> {
        let t = text.trim();
        let (num, mult) = match t.chars().last() {
            Some('k' | 'K') => (&t[..t.len() - 1], 1e3),
            Some('m' | 'M') => (&t[..t.len() - 1], 1e6),
            Some('g' | 'G') => (&t[..t.len() - 1], 1e9),
            _ => (t, 1.0),
        };
        match num.parse::<f64>() {
            Ok(v) if v.is_finite() && v > 0.0 => Ok(v * mult),
            _ => Err(SearchError::Setting(format!(
                "{flag} {text:?}: expected a positive number (1e6, 250000, 1.5M)"
            ))),
        }
    }

    /// Checks the limits (finite and positive), naming the flag of a bad one.
    pub fn check(&self) -> Result<()> {
        for (flag, v) in [
            ("--max-params", self.max_params),
            ("--max-flops", self.max_flops),
            ("--max-latency-ms", self.max_latency_ms),
        ] {
            if let Some(v) = v
                && !(v.is_finite() && v > 0.0)
            {
                return Err(SearchError::Setting(format!(
                    "{flag} {v}: expected a positive number"
                )));
            }
        }
        Ok(())
    }

    /// The limits as flags (`--max-params 1000000 --max-flops 2e8`).
    pub fn flags(&self) -> String {
        let mut out = Vec::new();
        if let Some(v) = self.max_params {
            out.push(format!("--max-params {v}"));
        }
        if let Some(v) = self.max_flops {
            out.push(format!("--max-flops {v}"));
        }
        if let Some(v) = self.max_latency_ms {
            out.push(format!("--max-latency-ms {v}"));
        }
        out.join(" ")
    }

    /// Why `cost` breaks a limit (`None`: within every limit).
    pub fn violation(&self, cost: &NetworkCost) -> Option<String> {
        if let Some(m) = self.max_params
            && cost.params as f64 > m
        {
            return Some(format!("{} params over --max-params {m}", cost.params));
        }
        if let Some(m) = self.max_flops
            && cost.flops as f64 > m
        {
            return Some(format!("{} FLOPs over --max-flops {m}", cost.flops));
        }
        None
    }

    /// Why a measured latency of `ms` milliseconds breaks `--max-latency-ms` (`None`: within
    /// it, or no such limit).
    pub fn latency_violation(&self, ms: f64) -> Option<String> {
        match self.max_latency_ms {
            Some(m) if ms > m => Some(format!("{ms:.3} ms over --max-latency-ms {m}")),
            _ => None,
        }
    }
}

/// The closed-form cost of an architecture as the evaluator will report it.
pub type CostFn<A> = Arc<dyn Fn(&A) -> Result<NetworkCost> + Send + Sync>;

/// The measured latency of an architecture's network, milliseconds ([`crate::latency`]).
pub type LatencyFn<A> = Arc<dyn Fn(&A) -> Result<f64> + Send + Sync>;

/// Proposals in a row a [`Constrained`] strategy rejects before it replaces the next one.
pub const REPLACE_AFTER: u64 = 100;

/// Random samples a [`Constrained`] strategy draws to find a replacement within the limits
/// before it gives up.
pub const MAX_SAMPLES: u64 = 100_000;

/// Any strategy under hard [`Limits`]: each proposal of the wrapped strategy is costed in
/// closed form (the cost the evaluator would report) before it is evaluated; one over a limit
/// is never evaluated and never enters the history. Instead the wrapped strategy is told it as
/// a failed trial (reason: which limit, cost 0, in the order it was asked, so the strategy's
/// FIFO holds) and asked again, until it proposes one within the limits. So random search
/// samples uniformly from the feasible set (rejection sampling), evolution draws another
/// mutation, and strategies that learn from failures avoid the region. A strategy that ignores
/// failed trials (TPE) could propose the same infeasible region forever: after
/// [`REPLACE_AFTER`] rejections in a row, the next proposal's architecture is replaced by a
/// uniform random sample within the limits (the strategy is then told that architecture's
/// result, as for a `--prefilter` warm start). When [`MAX_SAMPLES`] random samples find none,
/// the search stops with an error naming the limits.
pub struct Constrained<S: SearchSpace> {
    inner: Box<dyn Strategy<S>>,
    limits: Limits,
    cost: CostFn<S::Arch>,
    latency: Option<LatencyFn<S::Arch>>,
    state: ConstrainedState<S::Arch>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(bound = "A: Serialize + DeserializeOwned")]
struct ConstrainedState<A> {
    /// The wrapped strategy's asks not yet told to it, oldest first: `Some` rejected (told at
    /// once when it reaches the front), `None` handed to the search loop.
    queue: VecDeque<Option<(A, u32, String)>>,
    /// Proposals rejected so far.
    rejected: u64,
    inner: serde_json::Value,
}

impl<S: SearchSpace> Constrained<S> {
    /// `inner` under `limits`, costing candidates with `cost`.
    pub fn new(inner: Box<dyn Strategy<S>>, limits: Limits, cost: CostFn<S::Arch>) -> Self {
        Constrained {
            inner,
            limits,
            cost,
            latency: None,
            state: ConstrainedState {
                queue: VecDeque::new(),
                rejected: 0,
                inner: serde_json::Value::Null,
            },
        }
    }

    /// Checks `--max-latency-ms` with `latency` (the closed-form `cost` is then only called
    /// when a parameter or FLOP limit is set).
    pub fn with_latency(mut self, latency: LatencyFn<S::Arch>) -> Self {
        self.latency = Some(latency);
        self
    }

    /// Why `arch` breaks a limit (`None`: within all of them).
    fn violation(&self, arch: &S::Arch) -> Result<Option<String>> {
        if self.limits.has_network_limit()
            && let Some(v) = self.limits.violation(&(self.cost)(arch)?)
        {
            return Ok(Some(v));
        }
        if self.limits.max_latency_ms.is_some() {
            let f = self.latency.as_ref().ok_or_else(|| {
                SearchError::Setting("--max-latency-ms is set but no latency model is known".into())
            })?;
            return Ok(self.limits.latency_violation(f(arch)?));
        }
        Ok(None)
    }

    /// Proposals rejected so far.
    pub fn rejected(&self) -> u64 {
        self.state.rejected
    }

    /// Tells the wrapped strategy the rejected proposals at the front of the queue.
    fn flush(&mut self, space: &S) -> Result<()> {
        while let Some(Some(_)) = self.state.queue.front() {
            if let Some(Some((arch, fidelity, reason))) = self.state.queue.pop_front() {
                let t = Trial {
                    id: self.state.rejected,
                    arch,
                    fidelity,
                    outcome: Outcome::Failed { reason },
                    cost: 0.0,
                    cached_from: None,
                    started_unix_ms: 0,
                    finished_unix_ms: 0,
                    wall_time_s: 0.0,
                };
                self.inner.tell(space, &t)?;
            }
        }
        Ok(())
    }
}

impl<S: SearchSpace> Strategy<S> for Constrained<S> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn config(&self) -> serde_json::Value {
        serde_json::json!({ "inner": self.inner.config(), "limits": self.limits })
    }
    fn ask(&mut self, space: &S, rng: &mut dyn RngCore) -> Result<Ask<S::Arch>> {
        let mut streak = 0;
        loop {
            self.flush(space)?;
            let mut c = match self.inner.ask(space, rng)? {
                Ask::Evaluate(c) => c,
                other => return Ok(other),
            };
            if streak >= REPLACE_AFTER {
                for _ in 0..MAX_SAMPLES {
                    let a = space.sample(rng);
                    if self.violation(&a)?.is_none() {
                        c.arch = a;
                        self.state.queue.push_back(None);
                        return Ok(Ask::Evaluate(c));
                    }
                }
                return Err(SearchError::Setting(format!(
                    "no architecture fits the limits {}: {} proposals and {MAX_SAMPLES} random \
                     samples were all over them",
                    self.limits.flags(),
                    self.inner.name()
                )));
            }
            match self.violation(&c.arch)? {
                None => {
                    self.state.queue.push_back(None);
                    return Ok(Ask::Evaluate(c));
                }
                Some(reason) => {
                    streak += 1;
                    self.state.rejected += 1;
                    self.state
                        .queue
                        .push_back(Some((c.arch, c.fidelity, reason)));
                }
            }
        }
    }
    fn tell(&mut self, space: &S, trial: &Trial<S::Arch>) -> Result<()> {
        self.flush(space)?;
        match self.state.queue.pop_front() {
            Some(None) => {}
            _ => {
                return Err(SearchError::strategy(
                    self.inner.name(),
                    "constrained: told a result it did not hand out",
                ));
            }
        }
        self.inner.tell(space, trial)?;
        self.flush(space)
    }
    fn save_state(&self) -> Result<serde_json::Value> {
        let mut st = self.state.clone();
        st.inner = self.inner.save_state()?;
        serde_json::to_value(st).map_err(|e| SearchError::Serde(e.to_string()))
    }
    fn load_state(&mut self, state: serde_json::Value) -> Result<()> {
        let mut st: ConstrainedState<S::Arch> = serde_json::from_value(state).map_err(|e| {
            SearchError::strategy(self.inner.name(), format!("bad constrained state: {e}"))
        })?;
        self.inner.load_state(std::mem::take(&mut st.inner))?;
        self.state = st;
        Ok(())
    }
}

/// What a search is told of objectives and limits (`--objectives`, `--max-params`,
/// `--max-flops`), before the evaluator is known.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct MooSettings {
    /// The objectives whose front is reported (`None`: single-objective, no front).
    pub objectives: Option<Objectives>,
    /// Hard limits.
    pub limits: Limits,
}

/// [`MooSettings`] with the cost function the limits are checked with.
pub struct MooRun<A> {
    /// The objectives whose front is reported.
    pub objectives: Option<Objectives>,
    /// Hard limits.
    pub limits: Limits,
    /// The closed-form cost of a candidate (needed under `--max-params`/`--max-flops`).
    pub cost: Option<CostFn<A>>,
    /// The measured latency of a candidate (needed under `--max-latency-ms`; the search sets
    /// it, see [`crate::latency::for_search`]).
    pub latency: Option<LatencyFn<A>>,
}

impl<A> Default for MooRun<A> {
    fn default() -> Self {
        MooRun {
            objectives: None,
            limits: Limits::default(),
            cost: None,
            latency: None,
        }
    }
}

impl<A: 'static> MooRun<A> {
    /// The settings with costs from `evaluator` ([`crate::Evaluator::network_cost`]); with
    /// limits, an error naming the flag when the evaluator cannot cost `probe` (a sample of
    /// the space).
    pub fn for_evaluator(
        settings: MooSettings,
        evaluator: Arc<dyn crate::Evaluator<A>>,
        probe: &A,
    ) -> Result<MooRun<A>> {
        if !settings.limits.has_network_limit() {
            return Ok(MooRun {
                objectives: settings.objectives,
                limits: settings.limits,
                cost: None,
                latency: None,
            });
        }
        let flag = if settings.limits.max_params.is_some() {
            "--max-params"
        } else {
            "--max-flops"
        };
        let name = evaluator.name();
        if evaluator.network_cost(probe).is_none() {
            return Err(SearchError::Setting(format!(
                "{flag}: the evaluator {name} has no closed-form cost for these architectures"
            )));
        }
        let flag = flag.to_string();
        Ok(MooRun {
            objectives: settings.objectives,
            limits: settings.limits,
            cost: Some(Arc::new(move |a: &A| {
                evaluator.network_cost(a).ok_or_else(|| {
                    SearchError::Setting(format!(
                        "{flag}: the evaluator {name} has no closed-form cost for a candidate"
                    ))
                })
            })),
            latency: None,
        })
    }

    /// `strategy` under the limits ([`Constrained`]), or as it is when there are none.
    pub fn wrap<S: SearchSpace<Arch = A> + 'static>(
        &self,
        strategy: Box<dyn Strategy<S>>,
    ) -> Result<Box<dyn Strategy<S>>> {
        if self.limits.is_empty() {
            return Ok(strategy);
        }
        let cost = match self.cost.clone() {
            Some(c) => c,
            None if !self.limits.has_network_limit() => Arc::new(|_: &A| -> Result<NetworkCost> {
                Err(SearchError::Setting(
                    "no closed-form cost: no --max-params or --max-flops".into(),
                ))
            }),
            None => {
                return Err(SearchError::Setting(
                    "cost limits are set but no cost function is known".into(),
                ));
            }
        };
        let mut c = Constrained::new(strategy, self.limits, cost);
        if let Some(l) = &self.latency {
            c = c.with_latency(l.clone());
        }
        Ok(Box::new(c))
    }
}
