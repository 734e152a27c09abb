//! Optimizers with PyTorch's update rules, the cosine-annealing schedule and gradient clipping.
//!
//! Optimizers hold parameter handles ([`Tensor`] clones share data and gradient with the
//! module's parameters), so two optimizers over disjoint sets (network weights and architecture
//! weights in DARTS) step independently. Parameters whose gradient is `None` are skipped, as in
//! PyTorch. States serialise with serde for checkpoints.

use serde::{Deserialize, Serialize};

use crate::error::{Result, TensorError, arg_err};
use crate::tensor::Tensor;

/// What every optimizer offers.
pub trait Optimizer {
    /// Applies one update to every parameter that has a gradient.
    fn step(&mut self) -> Result<()>;
    /// The parameters this optimizer updates.
    fn params(&self) -> &[Tensor];
    /// Clears the gradients of all parameters.
    fn zero_grad(&self) {
        for p in self.params() {
            p.zero_grad();
        }
    }
    /// Current learning rate.
    fn lr(&self) -> f32;
    /// Sets the learning rate (schedules call this each epoch).
    fn set_lr(&mut self, lr: f32);
}

fn check_state_len(what: &str, got: usize, want: usize) -> Result<()> {
    if got != want {
        return Err(TensorError::Serde(format!(
            "{what} state has {got} parameter entries, optimizer has {want}"
        )));
    }
    Ok(())
}

fn check_buf(what: &str, i: usize, buf: &Option<Vec<f32>>, p: &Tensor) -> Result<()> {
    if let Some(b) = buf
        && b.len() != p.numel()
    {
        return Err(TensorError::Serde(format!(
            "{what} state entry {i} has {} values, parameter has shape {:?}",
            b.len(),
            p.shape()
        )));
    }
    Ok(())
}

/// Hyper-parameters of [`Sgd`] (PyTorch's `torch.optim.SGD`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SgdConfig {
    /// Learning rate.
    pub lr: f32,
    /// Momentum factor (0 disables momentum).
    pub momentum: f32,
    /// Dampening of the momentum (PyTorch default 0).
    pub dampening: f32,
    /// L2 penalty added to the gradient.
    pub weight_decay: f32,
    /// Nesterov momentum (needs momentum > 0 and dampening 0).
    pub nesterov: bool,
}

impl SgdConfig {
    /// Plain SGD with learning rate `lr`.
    pub fn new(lr: f32) -> Self {
        SgdConfig {
            lr,
            momentum: 0.0,
            dampening: 0.0,
            weight_decay: 0.0,
            nesterov: false,
        }
    }
    /// Sets the momentum.
    pub fn momentum(mut self, m: f32) -> Self {
        self.momentum = m;
        self
    }
    /// Sets the dampening.
    pub fn dampening(mut self, d: f32) -> Self {
        self.dampening = d;
        self
    }
    /// Sets the weight decay.
    pub fn weight_decay(mut self, wd: f32) -> Self {
        self.weight_decay = wd;
        self
    }
    /// Enables Nesterov momentum.
    pub fn nesterov(mut self, on: bool) -> Self {
        self.nesterov = on;
        self
    }
}

/// Serialisable state of [`Sgd`]: configuration and one momentum buffer per parameter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SgdState {
    /// Hyper-parameters (including the current learning rate).
    pub config: SgdConfig,
    /// Momentum buffer per parameter (`None` before its first step).
    pub momentum_buffers: Vec<Option<Vec<f32>>>,
}

/// Stochastic gradient descent with PyTorch semantics:
/// `g = grad + wd * p`; with momentum `buf = g` on the first step, then
/// `buf = momentum * buf + (1 - dampening) * g`; `g = g + momentum * buf` (Nesterov) or
/// `g = buf`; `p -= lr * g`.
pub struct Sgd {
    params: Vec<Tensor>,
    config: SgdConfig,
    bufs: Vec<Option<Vec<f32>>>,
}

impl Sgd {
    /// An SGD optimizer over `params`.
    pub fn new(params: Vec<Tensor>, config: SgdConfig) -> Result<Sgd> {
        if !(config.lr >= 0.0) || !(config.momentum >= 0.0) || !(config.weight_decay >= 0.0) {
            return arg_err(
                "sgd",
                format!("lr, momentum and weight_decay must be >= 0, got {config:?}"),
            );
        }
        if config.nesterov && (config.momentum <= 0.0 || config.dampening != 0.0) {
            return arg_err(
                "sgd",
                "Nesterov momentum requires momentum > 0 and dampening = 0",
            );
        }
        let n = params.len();
        Ok(Sgd {
            params,
            config,
            bufs: vec![None; n],
        })
    }

    /// The configuration.
    pub fn config(&self) -> SgdConfig {
        self.config
    }

    /// A snapshot of the state, for checkpoints.
    pub fn state(&self) -> SgdState {
        SgdState {
            config: self.config,
            momentum_buffers: self.bufs.clone(),
        }
    }

    /// Restores a state saved by [`Sgd::state`] for the same parameter list.
    pub fn load_state(&mut self, state: SgdState) -> Result<()> {
        check_state_len("sgd", state.momentum_buffers.len(), self.params.len())?;
        for (i, (b, p)) in state.momentum_buffers.iter().zip(&self.params).enumerate() {
            check_buf("sgd", i, b, p)?;
        }
        self.config = state.config;
        self.bufs = state.momentum_buffers;
        Ok(())
    }
}

impl Optimizer for Sgd {
    fn step(&mut self) -> Result<()> {
        let c = self.config;
        for (p, buf) in self.params.iter().zip(self.bufs.iter_mut()) {
            p.with_grad(|g| {
                let Some(g) = g else { return };
                let first = buf.is_none();
                if c.momentum != 0.0 && first {
                    *buf = Some(vec![0.0; g.len()]);
                }
                p.update_data(|w| {
                    for i in 0..w.len() {
                        let mut d = if c.weight_decay != 0.0 {
                            g[i] + c.weight_decay * w[i]
                        } else {
                            g[i]
                        };
                        if let Some(b) = buf.as_mut() {
                            b[i] = if first {
                                d
                            } else {
                                c.momentum * b[i] + (1.0 - c.dampening) * d
                            };
                            d = if c.nesterov {
                                d + c.momentum * b[i]
                            } else {
                                b[i]
                            };
                        }
                        w[i] -= c.lr * d;
                    }
                });
            });
        }
        Ok(())
    }
    fn params(&self) -> &[Tensor] {
        &self.params
    }
    fn lr(&self) -> f32 {
        self.config.lr
    }
    fn set_lr(&mut self, lr: f32) {
        self.config.lr = lr;
    }
}

/// Hyper-parameters of [`Adam`] (PyTorch's `torch.optim.Adam`, L2 weight decay).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdamConfig {
    /// Learning rate.
    pub lr: f32,
    /// Decay of the first-moment estimate.
    pub beta1: f32,
    /// Decay of the second-moment estimate.
    pub beta2: f32,
    /// Added to the denominator.
    pub eps: f32,
    /// L2 penalty added to the gradient (not decoupled: that would be AdamW).
    pub weight_decay: f32,
}

impl AdamConfig {
    /// PyTorch's defaults with learning rate `lr`: betas (0.9, 0.999), eps 1e-8, no decay.
    pub fn new(lr: f32) -> Self {
        AdamConfig {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
    /// Sets the betas.
    pub fn betas(mut self, b1: f32, b2: f32) -> Self {
        self.beta1 = b1;
        self.beta2 = b2;
        self
    }
    /// Sets eps.
    pub fn eps(mut self, eps: f32) -> Self {
        self.eps = eps;
        self
    }
    /// Sets the weight decay.
    pub fn weight_decay(mut self, wd: f32) -> Self {
        self.weight_decay = wd;
        self
    }
}

/// Per-parameter Adam moments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdamParamState {
    /// Steps taken on this parameter.
    pub step: u64,
    /// First moment (`exp_avg`).
    pub exp_avg: Vec<f32>,
    /// Second moment (`exp_avg_sq`).
    pub exp_avg_sq: Vec<f32>,
}

/// Serialisable state of [`Adam`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdamState {
    /// Hyper-parameters (including the current learning rate).
    pub config: AdamConfig,
    /// Moments per parameter (`None` before its first step).
    pub params: Vec<Option<AdamParamState>>,
}

/// Adam with PyTorch semantics: `g = grad + wd * p`, `m = b1 m + (1-b1) g`,
/// `v = b2 v + (1-b2) g^2`, `p -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)`.
pub struct Adam {
    params: Vec<Tensor>,
    config: AdamConfig,
    state: Vec<Option<AdamParamState>>,
}

impl Adam {
    /// An Adam optimizer over `params`.
    pub fn new(params: Vec<Tensor>, config: AdamConfig) -> Result<Adam> {
        let c = config;
        if !(c.lr >= 0.0)
            || !(0.0..1.0).contains(&c.beta1)
            || !(0.0..1.0).contains(&c.beta2)
            || !(c.eps >= 0.0)
            || !(c.weight_decay >= 0.0)
        {
            return arg_err(
                "adam",
                format!("need lr >= 0, betas in [0, 1), eps >= 0, weight_decay >= 0; got {c:?}"),
            );
        }
        let n = params.len();
        Ok(Adam {
            params,
            config,
            state: vec![None; n],
        })
    }

    /// The configuration.
    pub fn config(&self) -> AdamConfig {
        self.config
    }

    /// A snapshot of the state, for checkpoints.
    pub fn state(&self) -> AdamState {
        AdamState {
            config: self.config,
            params: self.state.clone(),
        }
    }

    /// Restores a state saved by [`Adam::state`] for the same parameter list.
    pub fn load_state(&mut self, state: AdamState) -> Result<()> {
        check_state_len("adam", state.params.len(), self.params.len())?;
        for (i, (s, p)) in state.params.iter().zip(&self.params).enumerate() {
            if let Some(s) = s {
                check_buf("adam", i, &Some(s.exp_avg.clone()), p)?;
                check_buf("adam", i, &Some(s.exp_avg_sq.clone()), p)?;
            }
        }
        self.config = state.config;
        self.state = state.params;
        Ok(())
    }
}

impl Optimizer for Adam {
    fn step(&mut self) -> Result<()> {
        let c = self.config;
        for (p, st) in self.params.iter().zip(self.state.iter_mut()) {
            p.with_grad(|g| {
                let Some(g) = g else { return };
                let n = g.len();
                let s = st.get_or_insert_with(|| AdamParamState {
                    step: 0,
                    exp_avg: vec![0.0; n],
                    exp_avg_sq: vec![0.0; n],
                });
                s.step += 1;
                let bc1 = 1.0 - c.beta1.powi(s.step as i32);
                let bc2 = 1.0 - c.beta2.powi(s.step as i32);
                let step_size = c.lr / bc1;
                let bc2_sqrt = bc2.sqrt();
                p.update_data(|w| {
                    for i in 0..n {
                        let d = if c.weight_decay != 0.0 {
                            g[i] + c.weight_decay * w[i]
                        } else {
                            g[i]
                        };
                        s.exp_avg[i] = c.beta1 * s.exp_avg[i] + (1.0 - c.beta1) * d;
                        s.exp_avg_sq[i] = c.beta2 * s.exp_avg_sq[i] + (1.0 - c.beta2) * d * d;
                        let denom = s.exp_avg_sq[i].sqrt() / bc2_sqrt + c.eps;
                        w[i] -= step_size * s.exp_avg[i] / denom;
                    }
                });
            });
        }
        Ok(())
    }
    fn params(&self) -> &[Tensor] {
        &self.params
    }
    fn lr(&self) -> f32 {
        self.config.lr
    }
    fn set_lr(&mut self, lr: f32) {
        self.config.lr = lr;
    }
}

/// PyTorch's `CosineAnnealingLR` in closed form:
/// `lr(t) = eta_min + (base_lr - eta_min) * (1 + cos(pi * t / t_max)) / 2`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CosineAnnealingLr {
    /// Learning rate at `t = 0`.
    pub base_lr: f32,
    /// Half-period (usually the number of epochs).
    pub t_max: usize,
    /// Learning rate at `t = t_max`.
    pub eta_min: f32,
}

impl CosineAnnealingLr {
    /// A schedule from `base_lr` down to `eta_min` over `t_max` steps.
    pub fn new(base_lr: f32, t_max: usize, eta_min: f32) -> Result<Self> {
        if t_max == 0 {
            return arg_err("cosine_annealing", "t_max must be positive");
        }
        Ok(CosineAnnealingLr {
            base_lr,
            t_max,
            eta_min,
        })
    }

    /// The learning rate at epoch `t`.
    pub fn lr_at(&self, t: usize) -> f32 {
        let cos = (std::f64::consts::PI * t as f64 / self.t_max as f64).cos();
        (self.eta_min as f64 + (self.base_lr as f64 - self.eta_min as f64) * (1.0 + cos) / 2.0)
            as f32
    }

    /// Sets `opt`'s learning rate for epoch `t`.
    pub fn apply(&self, opt: &mut dyn Optimizer, t: usize) {
        opt.set_lr(self.lr_at(t));
    }
}

/// Clips gradients by their global L2 norm (PyTorch's `clip_grad_norm_`): with
/// `total = sqrt(sum of squared gradient elements)`, multiplies every gradient by
/// `min(1, max_norm / (total + 1e-6))`. Returns `total` (before clipping).
pub fn clip_grad_norm(params: &[Tensor], max_norm: f32) -> Result<f32> {
    if !(max_norm >= 0.0) {
        return arg_err(
            "clip_grad_norm",
            format!("max_norm must be >= 0, got {max_norm}"),
        );
    }
    let mut sq = 0.0f64;
    for p in params {
        p.with_grad(|g| {
            if let Some(g) = g {
                sq += g.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>();
            }
        });
    }
    let total = sq.sqrt() as f32;
    let coef = (max_norm / (total + 1e-6)).min(1.0);
    if coef < 1.0 {
        for p in params {
            p.update_grad(|g| g.iter_mut().for_each(|x| *x *= coef));
        }
    }
    Ok(total)
}
