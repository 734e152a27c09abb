//! The [`Evaluator`] trait: an architecture at a fidelity in, a measured result out.
//!
//! The same trait serves the tabular NAS-Bench-201 look-up ([`crate::nb201::Nb201Evaluator`]),
//! synthetic objectives ([`crate::synthetic`]) and, later, training from scratch: an evaluator
//! that trains a network for `fidelity` epochs with the trial's `seed`, reports
//! [`EvalError::Failed`] when the loss becomes NaN (the search records a failed trial and goes
//! on), and otherwise returns validation/test accuracy, loss, parameters and FLOPs. Wall time is
//! measured by the search loop around the call, so evaluators need not time themselves.
//! Evaluators are `Send + Sync`: the search calls them from several worker threads at once.

use serde::{Deserialize, Serialize};

/// What to evaluate: one architecture at one fidelity.
#[derive(Debug, Clone, Copy)]
pub struct EvalRequest<'a, A> {
    /// The architecture.
    pub arch: &'a A,
    /// The fidelity: training epochs (for the NAS-Bench-201 table 12 or 200).
    pub fidelity: u32,
    /// The trial's id in the search history (0, 1, 2, ...).
    pub trial_id: u64,
    /// A seed derived from the search seed and the trial id only (never from the worker or the
    /// timing): an evaluator that trains must draw all its randomness from it, so that a resumed
    /// or parallel search repeats the same results.
    pub seed: u64,
    /// When the search's wall-time budget runs out (`None`: no limit). An evaluator that can
    /// stop part-way (training) checks it and returns [`EvalError::Cut`] once it has passed:
    /// the trial is then not recorded as finished, and a resumed search runs it again.
    pub deadline: Option<std::time::Instant>,
}

/// The measurements of one successful evaluation. Accuracies are in percent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// The accuracy the search sees and optimises (validation accuracy at the requested
    /// fidelity).
    pub valid_accuracy: f64,
    /// The accuracy reported for the architecture (for the NAS-Bench-201 table: the 200-epoch
    /// test accuracy, whatever the fidelity searched at). Never shown to strategies.
    pub test_accuracy: Option<f64>,
    /// Final training or validation loss, where the evaluator has one.
    pub loss: Option<f64>,
    /// Number of parameters of the network.
    pub params: Option<u64>,
    /// Multiply-accumulates of one forward pass of one image (see [`crate::nb201_cost`]).
    pub flops: Option<u64>,
    /// Cost of the evaluation in the evaluator's simulated unit (the table: training epochs).
    /// Budgets by cost count this, not wall time.
    pub cost: f64,
}

/// Why an evaluation produced no metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum EvalError {
    /// The trial failed (NaN loss, diverged, out of memory for this architecture...): it is
    /// recorded as failed with the reason and the search goes on. `cost` is what was spent.
    Failed {
        /// Why it failed.
        reason: String,
        /// Simulated cost spent before failing.
        cost: f64,
    },
    /// An error that makes further evaluations pointless (missing data, broken device): the
    /// search stops, keeping its checkpoint, and returns the error.
    Fatal(String),
    /// The evaluation was stopped part-way because [`EvalRequest::deadline`] passed: no result
    /// (never a partial score); the search stops with [`crate::StopReason::WallTime`] and keeps
    /// the trial pending in its checkpoint.
    Cut {
        /// Where it was cut.
        reason: String,
    },
}

/// Architecture + fidelity -> result. Implementations must be deterministic given
/// [`EvalRequest::seed`] for searches to be reproducible and resumable.
pub trait Evaluator<A>: Send + Sync {
    /// A stable name including what it evaluates on (`"nb201-table/cifar10"`), stored in and
    /// checked against checkpoints.
    fn name(&self) -> String;

    /// Evaluates one architecture at one fidelity.
    fn evaluate(&self, request: &EvalRequest<'_, A>) -> Result<Metrics, EvalError>;
}

impl<A, E: Evaluator<A> + ?Sized> Evaluator<A> for &E {
    fn name(&self) -> String {
        (**self).name()
    }
    fn evaluate(&self, request: &EvalRequest<'_, A>) -> Result<Metrics, EvalError> {
        (**self).evaluate(request)
    }
}

/// Derives the per-trial seed from the search seed and the trial id (SplitMix64 finaliser).
pub fn trial_seed(search_seed: u64, trial_id: u64) -> u64 {
    let mut z = search_seed ^ trial_id.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
