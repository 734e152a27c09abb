//! Optimizers with PyTorch's update rules, the cosine-annealing schedule and gradient clipping.
//!
//! Optimizers hold parameter handles ([`Tensor`] clones share data and gradient with the
//! module's parameters), so two optimizers over disjoint sets (network weights and architecture
//! weights in DARTS) step independently. Parameters whose gradient is `None` are skipped, as in
//! PyTorch. States serialise with serde for checkpoints.
//!
//! Updates run on the parameters' device as fused backend calls ([`nas_kernels::SgdStep`],
//! [`nas_kernels::AdamStep`], the clip's reduction): the momentum and moment buffers live
//! there too, and only [`Sgd::state`] / [`Adam::state`] copy them to the host.

use serde::{Deserialize, Serialize};

use nas_kernels::{AdamStep, SgdStep};

use crate::error::{Result, TensorError, arg_err};
use crate::storage::{self, Storage};
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
    bufs: Vec<Option<Storage>>,
}

/// Host copies of device buffers (for a serialisable state).
fn to_host(bufs: &[Option<Storage>]) -> Result<Vec<Option<Vec<f32>>>> {
    bufs.iter()
        .map(|b| b.as_ref().map(Storage::to_vec).transpose())
        .collect()
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
            bufs: (0..n).map(|_| None).collect(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> SgdConfig {
        self.config
    }

    /// A snapshot of the state, for checkpoints (the momentum buffers copied to the host).
    pub fn state(&self) -> Result<SgdState> {
        Ok(SgdState {
            config: self.config,
            momentum_buffers: to_host(&self.bufs)?,
        })
    }

    /// Restores a state saved by [`Sgd::state`] for the same parameter list.
    pub fn load_state(&mut self, state: SgdState) -> Result<()> {
        check_state_len("sgd", state.momentum_buffers.len(), self.params.len())?;
        for (i, (b, p)) in state.momentum_buffers.iter().zip(&self.params).enumerate() {
            check_buf("sgd", i, b, p)?;
        }
        let bufs = state
            .momentum_buffers
            .into_iter()
            .zip(&self.params)
            .map(|(b, p)| b.map(|b| Storage::from_vec(p.device(), b)).transpose())
            .collect::<Result<_>>()?;
        self.config = state.config;
        self.bufs = bufs;
        Ok(())
    }

    /// The momentum buffer of parameter `i` as a tensor on its device (a copy), if it has
    /// one (DARTS' unrolled step reads it).
    pub fn momentum_buffer(&self, i: usize) -> Result<Option<Tensor>> {
        match (self.bufs.get(i), self.params.get(i)) {
            (Some(Some(b)), Some(p)) => Ok(Some(Tensor::from_storage(p.shape(), b.try_clone()?))),
            _ => Ok(None),
        }
    }
}

impl Optimizer for Sgd {
    fn step(&mut self) -> Result<()> {
        let c = self.config;
        for (p, buf) in self.params.iter().zip(self.bufs.iter_mut()) {
            let g = p.grad_slot();
            let Some(g) = g.as_ref() else { continue };
            let first = buf.is_none();
            if c.momentum != 0.0 && first {
                *buf = Some(Storage::zeros(g.device(), g.len())?);
            }
            let step = SgdStep {
                lr: c.lr,
                momentum: c.momentum,
                dampening: c.dampening,
                nesterov: c.nesterov,
                weight_decay: c.weight_decay,
                first,
            };
            storage::sgd_step(&step, &mut p.write(), g, buf.as_mut())?;
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
    state: Vec<Option<AdamMoments>>,
}

/// One parameter's Adam moments on its device.
struct AdamMoments {
    step: u64,
    exp_avg: Storage,
    exp_avg_sq: Storage,
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
            state: (0..n).map(|_| None).collect(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> AdamConfig {
        self.config
    }

    /// A snapshot of the state, for checkpoints (the moments copied to the host).
    pub fn state(&self) -> Result<AdamState> {
        let params = self
            .state
            .iter()
            .map(|m| {
                m.as_ref()
                    .map(|m| {
                        Ok(AdamParamState {
                            step: m.step,
                            exp_avg: m.exp_avg.to_vec()?,
                            exp_avg_sq: m.exp_avg_sq.to_vec()?,
                        })
                    })
                    .transpose()
            })
            .collect::<Result<_>>()?;
        Ok(AdamState {
            config: self.config,
            params,
        })
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
        let moments = state
            .params
            .into_iter()
            .zip(&self.params)
            .map(|(s, p)| {
                s.map(|s| {
                    Ok(AdamMoments {
                        step: s.step,
                        exp_avg: Storage::from_vec(p.device(), s.exp_avg)?,
                        exp_avg_sq: Storage::from_vec(p.device(), s.exp_avg_sq)?,
                    })
                })
                .transpose()
            })
            .collect::<Result<_>>()?;
        self.config = state.config;
        self.state = moments;
        Ok(())
    }
}

impl Optimizer for Adam {
    fn step(&mut self) -> Result<()> {
        let c = self.config;
        for (p, st) in self.params.iter().zip(self.state.iter_mut()) {
            let g = p.grad_slot();
            let Some(g) = g.as_ref() else { continue };
            if st.is_none() {
                *st = Some(AdamMoments {
                    step: 0,
                    exp_avg: Storage::zeros(g.device(), g.len())?,
                    exp_avg_sq: Storage::zeros(g.device(), g.len())?,
                });
            }
            let Some(m) = st.as_mut() else { continue };
            m.step += 1;
            let step = AdamStep {
                lr: c.lr,
                beta1: c.beta1,
                beta2: c.beta2,
                eps: c.eps,
                weight_decay: c.weight_decay,
                step: m.step,
            };
            storage::adam_step(&step, &mut p.write(), g, &mut m.exp_avg, &mut m.exp_avg_sq)?;
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
/// `min(1, max_norm / (total + 1e-6))`, on the parameters' device. Returns `total` (before
/// clipping) as a scalar tensor on that device (read it with [`Tensor::item`]).
pub fn clip_grad_norm(params: &[Tensor], max_norm: f32) -> Result<Tensor> {
    if !(max_norm >= 0.0) {
        return arg_err(
            "clip_grad_norm",
            format!("max_norm must be >= 0, got {max_norm}"),
        );
    }
    let device = params.first().map_or(crate::Device::Cpu, Tensor::device);
    let mut slots: Vec<_> = params.iter().map(|p| p.grad_slot()).collect();
    let mut grads: Vec<&mut Storage> = slots.iter_mut().filter_map(|s| s.as_mut()).collect();
    let mut total = Storage::zeros(device, 1)?;
    storage::clip_grad_norm(&mut grads, max_norm, &mut total)?;
    Ok(Tensor::from_storage(&[], total))
}
