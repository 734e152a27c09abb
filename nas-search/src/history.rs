//! Trials and the search history.

use crate::evaluator::Metrics;
use serde::{Deserialize, Serialize};

/// How a trial ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Outcome {
    /// The evaluator returned metrics.
    Ok(Metrics),
    /// The evaluation failed; the search went on.
    Failed {
        /// The evaluator's reason.
        reason: String,
    },
}

/// One evaluated (or skipped-as-equivalent) architecture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trial<A> {
    /// Position in the history; trials are numbered in the order they were asked.
    pub id: u64,
    /// The architecture.
    pub arch: A,
    /// The fidelity it was evaluated at (epochs).
    pub fidelity: u32,
    /// Metrics or the failure reason.
    pub outcome: Outcome,
    /// Simulated cost charged to the budget (0 for a trial reusing an equivalent's result).
    pub cost: f64,
    /// When the search skips equivalent architectures: the id of the earlier trial whose result
    /// this one reuses (no evaluation happened, nothing charged).
    pub cached_from: Option<u64>,
    /// Unix time in milliseconds when the evaluation started (timing field).
    pub started_unix_ms: u64,
    /// Unix time in milliseconds when it finished (timing field).
    pub finished_unix_ms: u64,
    /// Measured wall time of the evaluation in seconds (timing field).
    pub wall_time_s: f64,
}

impl<A: PartialEq> Trial<A> {
    /// The search-visible score: validation accuracy, `None` for a failed trial.
    pub fn score(&self) -> Option<f64> {
        match &self.outcome {
            Outcome::Ok(m) => Some(m.valid_accuracy),
            Outcome::Failed { .. } => None,
        }
    }

    /// The metrics, if the trial succeeded.
    pub fn metrics(&self) -> Option<&Metrics> {
        match &self.outcome {
            Outcome::Ok(m) => Some(m),
            Outcome::Failed { .. } => None,
        }
    }

    /// Equality of everything except the timing fields (timestamps and wall time).
    pub fn same_except_timing(&self, other: &Self) -> bool {
        self.id == other.id
            && self.arch == other.arch
            && self.fidelity == other.fidelity
            && self.outcome == other.outcome
            && self.cost.to_bits() == other.cost.to_bits()
            && self.cached_from == other.cached_from
    }
}

/// The trials of a search in the order they were asked (and told).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct History<A> {
    /// All trials; `trials[i].id == i`.
    pub trials: Vec<Trial<A>>,
}

impl<A> Default for History<A> {
    fn default() -> Self {
        History { trials: Vec::new() }
    }
}

/// Whether `a` beats the incumbent `b` by the final-choice rule: higher fidelity first, then
/// higher search-visible accuracy; ties keep the earlier trial.
fn better(a: (u32, f64), b: (u32, f64)) -> bool {
    a.0 > b.0 || (a.0 == b.0 && a.1 > b.1)
}

impl<A: PartialEq> History<A> {
    /// Number of trials.
    pub fn len(&self) -> usize {
        self.trials.len()
    }

    /// Whether there are no trials.
    pub fn is_empty(&self) -> bool {
        self.trials.is_empty()
    }

    /// The final choice: the successful trial with the best search-visible accuracy at the
    /// highest fidelity evaluated (earliest on ties).
    pub fn best(&self) -> Option<&Trial<A>> {
        let mut best: Option<&Trial<A>> = None;
        for t in &self.trials {
            if let Some(s) = t.score() {
                match best {
                    Some(b)
                        if !better(
                            (t.fidelity, s),
                            (b.fidelity, b.score().unwrap_or(f64::MIN)),
                        ) => {}
                    _ => best = Some(t),
                }
            }
        }
        best
    }

    /// Anytime curve: after each evaluation (trials reusing a cached result are not counted),
    /// the reported (test) accuracy of the incumbent chosen by [`History::best`]'s rule, or
    /// `None` while no trial has succeeded or the incumbent has no test accuracy.
    pub fn anytime_reported(&self) -> Vec<Option<f64>> {
        let mut out = Vec::with_capacity(self.trials.len());
        let mut inc: Option<(u32, f64, Option<f64>)> = None;
        for t in &self.trials {
            if let Some(m) = t.metrics() {
                let cand = (t.fidelity, m.valid_accuracy);
                if inc.is_none_or(|(f, v, _)| better(cand, (f, v))) {
                    inc = Some((t.fidelity, m.valid_accuracy, m.test_accuracy));
                }
            }
            if t.cached_from.is_none() {
                out.push(inc.and_then(|(_, _, r)| r));
            }
        }
        out
    }

    /// Number of real evaluations (trials not reusing a cached result).
    pub fn evaluations(&self) -> usize {
        self.trials
            .iter()
            .filter(|t| t.cached_from.is_none())
            .count()
    }

    /// Equality of the two histories except timing fields.
    pub fn same_except_timing(&self, other: &Self) -> bool {
        self.trials.len() == other.trials.len()
            && self
                .trials
                .iter()
                .zip(&other.trials)
                .all(|(a, b)| a.same_except_timing(b))
    }
}
