//! Fused optimizer updates (SGD with momentum, dampening, Nesterov and weight decay; Adam)
//! and the global gradient-norm clip, as PyTorch defines them.

#[cfg(feature = "cuda")]
pub(crate) mod cuda_kernel;

/// One SGD update (PyTorch's `torch.optim.SGD`): `d = g + weight_decay * w`; with momentum,
/// `buf = d` on the first step (`first`) else `buf = momentum * buf + (1 - dampening) * d`,
/// then `d = d + momentum * buf` (Nesterov) or `d = buf`; finally `w -= lr * d`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SgdStep {
    /// Learning rate.
    pub lr: f32,
    /// Momentum factor (0: no momentum buffer).
    pub momentum: f32,
    /// Dampening of the momentum.
    pub dampening: f32,
    /// Nesterov momentum.
    pub nesterov: bool,
    /// L2 penalty added to the gradient.
    pub weight_decay: f32,
    /// Is this the first step with this momentum buffer (which it then initialises)?
    pub first: bool,
}

/// One Adam update (PyTorch's `torch.optim.Adam`, L2 weight decay, no AMSGrad) at step
/// `step` (1 for the first update): `d = g + weight_decay * w`, `m = beta1 m + (1 - beta1)
/// d`, `v = beta2 v + (1 - beta2) d^2`, `w -= lr / (1 - beta1^step) * m / (sqrt(v) /
/// sqrt(1 - beta2^step) + eps)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamStep {
    /// Learning rate.
    pub lr: f32,
    /// First-moment decay.
    pub beta1: f32,
    /// Second-moment decay.
    pub beta2: f32,
    /// Denominator term.
    pub eps: f32,
    /// L2 penalty added to the gradient.
    pub weight_decay: f32,
    /// The step number, from 1.
    pub step: u64,
}

pub(crate) fn sgd(p: &SgdStep, w: &mut [f32], g: &[f32], mut buf: Option<&mut [f32]>) {
    for i in 0..w.len() {
        let mut d = if p.weight_decay != 0.0 {
            g[i] + p.weight_decay * w[i]
        } else {
            g[i]
        };
        if let Some(b) = buf.as_deref_mut() {
            b[i] = if p.first {
                d
            } else {
                p.momentum * b[i] + (1.0 - p.dampening) * d
            };
            d = if p.nesterov {
                d + p.momentum * b[i]
            } else {
                b[i]
            };
        }
        w[i] -= p.lr * d;
    }
}

pub(crate) fn adam(p: &AdamStep, w: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
    let bc1 = 1.0 - p.beta1.powi(p.step as i32);
    let bc2 = 1.0 - p.beta2.powi(p.step as i32);
    let step_size = p.lr / bc1;
    let bc2_sqrt = bc2.sqrt();
    for i in 0..w.len() {
        let d = if p.weight_decay != 0.0 {
            g[i] + p.weight_decay * w[i]
        } else {
            g[i]
        };
        m[i] = p.beta1 * m[i] + (1.0 - p.beta1) * d;
        v[i] = p.beta2 * v[i] + (1.0 - p.beta2) * d * d;
        let denom = v[i].sqrt() / bc2_sqrt + p.eps;
        w[i] -= step_size * m[i] / denom;
    }
}

/// Returns the total norm; scales in place when it exceeds `max_norm`.
pub(crate) fn clip(grads: &mut [&mut [f32]], max_norm: f32) -> f32 {
    let sq: f64 = grads
        .iter()
        .map(|g| g.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>())
        .sum();
    let total = sq.sqrt() as f32;
    let coef = (max_norm / (total + 1e-6)).min(1.0);
    if coef < 1.0 {
        for g in grads.iter_mut() {
            g.iter_mut().for_each(|x| *x *= coef);
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sgd_matches_hand_computed_steps() {
        let p = SgdStep {
            lr: 0.1,
            momentum: 0.9,
            dampening: 0.0,
            nesterov: false,
            weight_decay: 0.5,
            first: true,
        };
        let (mut w, mut b) = (vec![1.0f32, -2.0], vec![0.0f32; 2]);
        sgd(&p, &mut w, &[0.5, 1.0], Some(&mut b));
        // d = g + 0.5 w = [1.0, 0.0]; buf = d; w -= 0.1 d
        assert_eq!(b, vec![1.0, 0.0]);
        assert_eq!(w, vec![0.9, -2.0]);
        let p2 = SgdStep {
            first: false,
            nesterov: true,
            ..p
        };
        sgd(&p2, &mut w, &[0.0, 0.0], Some(&mut b));
        // d = 0.5 w = [0.45, -1.0]; buf = 0.9 buf + d = [1.35, -1.0]; d += 0.9 buf
        let d0 = 0.45f32 + 0.9 * 1.35;
        let d1 = -1.0f32 + -0.9;
        assert_eq!(w, vec![0.9 - 0.1 * d0, -2.0 - 0.1 * d1]);
    }

    #[test]
    fn adam_first_step_moves_each_weight_by_about_lr() {
        let p = AdamStep {
            lr: 0.01,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            step: 1,
        };
        let (mut w, mut m, mut v) = (vec![1.0f32, 1.0], vec![0.0; 2], vec![0.0; 2]);
        adam(&p, &mut w, &[3.0, -0.001], &mut m, &mut v);
        assert!(
            (w[0] - 0.99).abs() < 1e-6 && (w[1] - 1.01).abs() < 1e-4,
            "{w:?}"
        );
    }

    #[test]
    fn clip_scales_to_the_max_norm() {
        let (mut a, mut b) = (vec![3.0f32], vec![4.0f32]);
        let total = clip(&mut [&mut a, &mut b], 1.0);
        assert_eq!(total, 5.0);
        assert!((a[0] - 0.6).abs() < 1e-6 && (b[0] - 0.8).abs() < 1e-6);
        let total = clip(&mut [&mut a, &mut b], 10.0);
        assert!(
            (total - 1.0).abs() < 1e-5 && (a[0] - 0.6).abs() < 1e-6,
            "unchanged"
        );
    }
}
