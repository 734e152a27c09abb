//! The layers: Conv2d, BatchNorm2d, Linear, ReLU, pools, Flatten, Dropout, Identity, Sequential.

use std::sync::Mutex;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::{Mode, Module, TensorKind};
use crate::error::{Result, arg_err};
use crate::ops::conv::ConvOptions;
use crate::tensor::Tensor;

/// Bound of PyTorch's default initialisation of conv/linear weights,
/// `kaiming_uniform_(a = sqrt(5))`: `gain * sqrt(3 / fan_in)` with `gain = sqrt(2 / (1 + a^2))`,
/// which is `1 / sqrt(fan_in)`. The bias uses the same bound.
pub fn kaiming_uniform_bound(fan_in: usize) -> f32 {
    let a2 = 5.0f64;
    let gain = (2.0 / (1.0 + a2)).sqrt();
    (gain * (3.0 / fan_in as f64).sqrt()) as f32
}

fn uniform_param(shape: &[usize], bound: f32, rng: &mut ChaCha8Rng) -> Result<Tensor> {
    Ok(Tensor::uniform_with(shape, -bound, bound, rng)?.param())
}

/// 2-D convolution layer (`weight: [c_out, c_in/groups, k, k]`, optional `bias: [c_out]`).
pub struct Conv2d {
    /// The kernel.
    pub weight: Tensor,
    /// The bias, if any.
    pub bias: Option<Tensor>,
    /// Stride, padding, dilation, groups.
    pub options: ConvOptions,
}

impl Conv2d {
    /// A `k x k` convolution with PyTorch's default initialisation drawn from `rng`.
    pub fn new(
        c_in: usize,
        c_out: usize,
        k: usize,
        options: ConvOptions,
        bias: bool,
        rng: &mut ChaCha8Rng,
    ) -> Result<Conv2d> {
        if options.groups == 0
            || !c_in.is_multiple_of(options.groups)
            || !c_out.is_multiple_of(options.groups)
            || k == 0
        {
            return arg_err(
                "Conv2d",
                format!(
                    "c_in {c_in} and c_out {c_out} must be multiples of groups {}, k > 0",
                    options.groups
                ),
            );
        }
        let fan_in = c_in / options.groups * k * k;
        let bound = kaiming_uniform_bound(fan_in);
        let weight = uniform_param(&[c_out, c_in / options.groups, k, k], bound, rng)?;
        let bias = if bias {
            Some(uniform_param(&[c_out], 1.0 / (fan_in as f32).sqrt(), rng)?)
        } else {
            None
        };
        Ok(Conv2d {
            weight,
            bias,
            options,
        })
    }
}

impl Module for Conv2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.conv2d(&self.weight, self.bias.as_ref(), self.options)
    }
    fn own_tensors(&self, f: &mut dyn FnMut(&str, &Tensor, TensorKind)) {
        f("weight", &self.weight, TensorKind::Parameter);
        if let Some(b) = &self.bias {
            f("bias", b, TensorKind::Parameter);
        }
    }
}

/// Fully connected layer (`weight: [out, in]`, optional `bias: [out]`).
pub struct Linear {
    /// The weight matrix.
    pub weight: Tensor,
    /// The bias, if any.
    pub bias: Option<Tensor>,
}

impl Linear {
    /// A linear layer with PyTorch's default initialisation drawn from `rng`.
    pub fn new(fan_in: usize, fan_out: usize, bias: bool, rng: &mut ChaCha8Rng) -> Result<Linear> {
        if fan_in == 0 {
            return arg_err("Linear", "in_features must be positive");
        }
        let bound = kaiming_uniform_bound(fan_in);
        let weight = uniform_param(&[fan_out, fan_in], bound, rng)?;
        let bias = if bias {
            Some(uniform_param(
                &[fan_out],
                1.0 / (fan_in as f32).sqrt(),
                rng,
            )?)
        } else {
            None
        };
        Ok(Linear { weight, bias })
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.linear(&self.weight, self.bias.as_ref())
    }
    fn own_tensors(&self, f: &mut dyn FnMut(&str, &Tensor, TensorKind)) {
        f("weight", &self.weight, TensorKind::Parameter);
        if let Some(b) = &self.bias {
            f("bias", b, TensorKind::Parameter);
        }
    }
}

/// Batch normalisation over channels (PyTorch's `BatchNorm2d`: eps 1e-5, momentum 0.1,
/// running statistics tracked; affine `weight`/`bias` optional). In training mode with a
/// [`crate::sync_bn::SyncBn`] installed on the thread it normalises by the statistics of the
/// whole batch across data-parallel ranks ([`Tensor::batch_norm_synced`]).
pub struct BatchNorm2d {
    /// Scale (`gamma`), initialised to 1, when affine.
    pub weight: Option<Tensor>,
    /// Shift (`beta`), initialised to 0, when affine.
    pub bias: Option<Tensor>,
    /// Running mean buffer (initialised to 0).
    pub running_mean: Tensor,
    /// Running variance buffer (initialised to 1).
    pub running_var: Tensor,
    /// Running-statistics momentum.
    pub momentum: f32,
    /// Added to the variance.
    pub eps: f32,
    training: Mode,
}

impl BatchNorm2d {
    /// Batch norm over `c` channels.
    pub fn new(c: usize, affine: bool) -> BatchNorm2d {
        BatchNorm2d {
            weight: affine.then(|| Tensor::ones(&[c]).param()),
            bias: affine.then(|| Tensor::zeros(&[c]).param()),
            running_mean: Tensor::zeros(&[c]),
            running_var: Tensor::ones(&[c]),
            momentum: 0.1,
            eps: 1e-5,
            training: Mode::default(),
        }
    }
}

impl Module for BatchNorm2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if self.training.get()
            && let Some(sync) = crate::sync_bn::current()
        {
            return x.batch_norm_synced(
                self.weight.as_ref(),
                self.bias.as_ref(),
                Some(&self.running_mean),
                Some(&self.running_var),
                self.momentum,
                self.eps,
                &sync,
            );
        }
        x.batch_norm(
            self.weight.as_ref(),
            self.bias.as_ref(),
            Some(&self.running_mean),
            Some(&self.running_var),
            self.training.get(),
            self.momentum,
            self.eps,
        )
    }
    fn own_tensors(&self, f: &mut dyn FnMut(&str, &Tensor, TensorKind)) {
        if let (Some(w), Some(b)) = (&self.weight, &self.bias) {
            f("weight", w, TensorKind::Parameter);
            f("bias", b, TensorKind::Parameter);
        }
        f("running_mean", &self.running_mean, TensorKind::Buffer);
        f("running_var", &self.running_var, TensorKind::Buffer);
    }
    fn own_mode(&self) -> Option<&Mode> {
        Some(&self.training)
    }
}

macro_rules! stateless {
    ($(#[$doc:meta])* $name:ident { $($field:ident : $ty:ty),* } |$s:ident, $x:ident| $body:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone)]
        pub struct $name {
            $(
                #[allow(missing_docs)]
                pub $field: $ty,
            )*
        }
        impl Module for $name {
            fn forward(&self, $x: &Tensor) -> Result<Tensor> {
                let $s = self;
                $body
            }
        }
    };
}

stateless!(
    /// Rectified linear unit.
    ReLU {} |_s, x| Ok(x.relu())
);
stateless!(
    /// The identity (DARTS' skip connection).
    Identity {} |_s, x| Ok(x.clone())
);
stateless!(
    /// Max pooling (`kernel`, `stride`, `padding`).
    MaxPool2d { kernel: usize, stride: usize, padding: usize } |s, x| x.max_pool2d(s.kernel, s.stride, s.padding)
);
stateless!(
    /// Average pooling with `count_include_pad = false`.
    AvgPool2d { kernel: usize, stride: usize, padding: usize } |s, x| x.avg_pool2d(s.kernel, s.stride, s.padding)
);
stateless!(
    /// Global average pooling `[n, c, h, w] -> [n, c]` (PyTorch's `AdaptiveAvgPool2d(1)`
    /// followed by a flatten).
    GlobalAvgPool {} |_s, x| x.global_avg_pool()
);
stateless!(
    /// Flattens every dimension after the first.
    Flatten {} |_s, x| x.flatten(1)
);

impl ReLU {
    /// A ReLU.
    pub fn new() -> Self {
        ReLU {}
    }
}
impl Default for ReLU {
    fn default() -> Self {
        Self::new()
    }
}
impl Identity {
    /// The identity.
    pub fn new() -> Self {
        Identity {}
    }
}
impl Default for Identity {
    fn default() -> Self {
        Self::new()
    }
}
impl MaxPool2d {
    /// Max pooling with a `kernel x kernel` window.
    pub fn new(kernel: usize, stride: usize, padding: usize) -> Self {
        MaxPool2d {
            kernel,
            stride,
            padding,
        }
    }
}
impl AvgPool2d {
    /// Average pooling with a `kernel x kernel` window.
    pub fn new(kernel: usize, stride: usize, padding: usize) -> Self {
        AvgPool2d {
            kernel,
            stride,
            padding,
        }
    }
}
impl GlobalAvgPool {
    /// Global average pooling.
    pub fn new() -> Self {
        GlobalAvgPool {}
    }
}
impl Default for GlobalAvgPool {
    fn default() -> Self {
        Self::new()
    }
}
impl Flatten {
    /// Flatten.
    pub fn new() -> Self {
        Flatten {}
    }
}
impl Default for Flatten {
    fn default() -> Self {
        Self::new()
    }
}

/// Inverted dropout with its own seeded generator (identity in evaluation mode).
pub struct Dropout {
    /// Drop probability.
    pub p: f32,
    rng: Mutex<ChaCha8Rng>,
    training: Mode,
}

impl Dropout {
    /// Dropout with probability `p` in `[0, 1)`, masks drawn from a generator seeded by `seed`.
    pub fn new(p: f32, seed: u64) -> Result<Dropout> {
        if !(0.0..1.0).contains(&p) {
            return arg_err("Dropout", format!("probability must be in [0, 1), got {p}"));
        }
        Ok(Dropout {
            p,
            rng: Mutex::new(ChaCha8Rng::seed_from_u64(seed)),
            training: Mode::default(),
        })
    }
}

impl Module for Dropout {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        x.dropout(self.p, self.training.get(), &mut rng)
    }
    fn own_mode(&self) -> Option<&Mode> {
        Some(&self.training)
    }
}

/// Modules applied in order; children are named `0`, `1`, ... as in PyTorch.
pub struct Sequential {
    /// The children.
    pub layers: Vec<Box<dyn Module>>,
}

impl Default for Sequential {
    fn default() -> Self {
        Self::new()
    }
}

impl Sequential {
    /// An empty sequence (training mode).
    pub fn new() -> Self {
        Sequential { layers: Vec::new() }
    }
    /// Appends a layer (builder style).
    pub fn push(mut self, m: impl Module + 'static) -> Self {
        self.layers.push(Box::new(m));
        self
    }
    /// Appends a boxed layer.
    pub fn add(&mut self, m: Box<dyn Module>) {
        self.layers.push(m);
    }
    /// Number of children.
    pub fn len(&self) -> usize {
        self.layers.len()
    }
    /// No children?
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }
}

impl Module for Sequential {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = x.clone();
        for l in &self.layers {
            h = l.forward(&h)?;
        }
        Ok(h)
    }
    fn children(&self, f: &mut dyn FnMut(&str, &dyn Module)) {
        for (i, l) in self.layers.iter().enumerate() {
            f(&i.to_string(), l.as_ref());
        }
    }
}
