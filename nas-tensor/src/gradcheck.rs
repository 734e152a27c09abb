//! Finite-difference gradient checking, reusable by any crate that defines differentiable code.
//!
//! [`gradcheck`] projects the output of `f` onto a fixed random direction `r` (so every output
//! element matters and errors cannot cancel by symmetry), computes the analytic gradient of
//! `sum(f(x) * r)` by [`Tensor::backward`], and compares it element by element with central
//! differences `(L(x + eps) - L(x - eps)) / (2 eps)` evaluated without recording a graph.
//!
//! `f` must be deterministic (re-seed any dropout inside `f`), and inputs should stay more than
//! `eps` away from kinks (ReLU at 0, ties in max pooling).

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::error::Result;
use crate::tensor::{Tensor, no_grad};

/// Step and tolerances of [`gradcheck`]. An element passes when
/// `|analytic - numeric| <= atol + rtol * |numeric|`.
#[derive(Debug, Clone, Copy)]
pub struct GradcheckOptions {
    /// Finite-difference step.
    pub eps: f32,
    /// Absolute tolerance.
    pub atol: f64,
    /// Relative tolerance.
    pub rtol: f64,
    /// Seed of the random projection direction.
    pub seed: u64,
    /// Detect points next to a kink (ReLU at 0, a near-tie in max pooling) and skip them:
    /// the central difference is also taken with step `eps / 10`, and when the two estimates
    /// disagree by more than half the tolerance the function is not smooth there. Skipped
    /// elements are counted in [`GradcheckReport::skipped`]; a wrong gradient still fails,
    /// since both estimates then agree with each other and not with it.
    pub skip_kinks: bool,
}

impl Default for GradcheckOptions {
    fn default() -> Self {
        GradcheckOptions {
            eps: 1e-2,
            atol: 5e-3,
            rtol: 2e-2,
            seed: 0x9e37,
            skip_kinks: false,
        }
    }
}

/// What [`gradcheck`] found.
#[derive(Debug, Clone)]
pub struct GradcheckReport {
    /// Number of input elements checked.
    pub checked: usize,
    /// Elements skipped as lying next to a kink (only with `skip_kinks`).
    pub skipped: usize,
    /// Largest `|analytic - numeric|`.
    pub max_abs_err: f64,
    /// Largest absolute value of a numeric gradient (for scale).
    pub max_abs_grad: f64,
    /// Descriptions of the elements that failed (input index, element index, both values).
    pub failures: Vec<String>,
}

impl GradcheckReport {
    /// Did every element pass?
    pub fn ok(&self) -> bool {
        self.failures.is_empty()
    }

    /// Panics with the failures listed (for tests).
    #[track_caller]
    pub fn assert_ok(&self, what: &str) {
        assert!(
            self.ok(),
            "gradcheck of {what} failed on {} of {} elements (max abs err {:.3e}, max |grad| {:.3e}):\n{}",
            self.failures.len(),
            self.checked,
            self.max_abs_err,
            self.max_abs_grad,
            self.failures
                .iter()
                .take(12)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        );
        assert!(self.checked > 0, "gradcheck of {what} checked nothing");
        assert!(
            self.skipped * 20 <= self.checked + self.skipped,
            "gradcheck of {what} skipped {} of {} elements as non-smooth (more than 5%)",
            self.skipped,
            self.checked + self.skipped
        );
    }
}

fn projected(y: &Tensor, r: &[f32]) -> Result<f64> {
    Ok(y.to_vec()?
        .iter()
        .zip(r)
        .map(|(&a, &b)| a as f64 * b as f64)
        .sum())
}

/// Compares the gradient of `f` with central differences for every input that requires a
/// gradient (inputs that don't are treated as constants). The inputs' `.grad` is overwritten.
pub fn gradcheck(
    f: impl Fn(&[Tensor]) -> Result<Tensor>,
    inputs: &[Tensor],
    opts: GradcheckOptions,
) -> Result<GradcheckReport> {
    for x in inputs {
        x.zero_grad();
    }
    let y = f(inputs)?;
    // The projection is drawn on the output's device (the same values on every device).
    let r = Tensor::random_on(
        y.shape(),
        nas_kernels::RandomDist::Normal {
            mean: 0.0,
            std: 1.0,
        },
        &mut ChaCha8Rng::seed_from_u64(opts.seed),
        y.device(),
    )?;
    let rv = r.to_vec()?;
    let loss = y.mul(&r)?.sum();
    loss.backward()?;
    let mut report = GradcheckReport {
        checked: 0,
        skipped: 0,
        max_abs_err: 0.0,
        max_abs_grad: 0.0,
        failures: Vec::new(),
    };
    for (xi, x) in inputs.iter().enumerate() {
        if !x.requires_grad() {
            continue;
        }
        let analytic = x.grad_vec()?.unwrap_or_else(|| vec![0.0; x.numel()]);
        // Perturbations go through explicit host copies of the input's values.
        let values = x.to_vec()?;
        for e in 0..x.numel() {
            let central = |eps: f32| -> Result<f64> {
                let mut v = values.clone();
                v[e] = values[e] + eps;
                x.set_data(&v)?;
                let lp = no_grad(|| f(inputs)).and_then(|y| projected(&y, &rv));
                v[e] = values[e] - eps;
                x.set_data(&v)?;
                let lm = no_grad(|| f(inputs)).and_then(|y| projected(&y, &rv));
                x.set_data(&values)?;
                Ok((lp? - lm?) / (2.0 * eps as f64))
            };
            let numeric = central(opts.eps)?;
            if opts.skip_kinks {
                let fine = central(opts.eps / 10.0)?;
                if (fine - numeric).abs() > 0.5 * (opts.atol + opts.rtol * numeric.abs()) {
                    report.skipped += 1;
                    continue;
                }
            }
            let a = analytic[e] as f64;
            let err = (a - numeric).abs();
            report.checked += 1;
            report.max_abs_err = report.max_abs_err.max(err);
            report.max_abs_grad = report.max_abs_grad.max(numeric.abs());
            if !(err <= opts.atol + opts.rtol * numeric.abs()) {
                report.failures.push(format!(
                    "input {xi} {:?} element {e}: analytic {a:.6e}, numeric {numeric:.6e}",
                    x.shape()
                ));
            }
        }
        x.zero_grad();
    }
    Ok(report)
}
