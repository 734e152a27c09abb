//! Zero-cost proxies: scores of an untrained network that rank architectures without training.
//!
//! Computed on the real NAS-Bench-201 networks nas-rs builds ([`ProxyNetwork`] has the same
//! layers, names and weights as [`Nb201Network::new`](crate::nets::nb201::Nb201Network::new) for the same seed; it exposes the
//! activations the proxies need):
//!
//! * [`synflow`] (Tanaka et al. 2020, as a NAS proxy by Abdelfattah et al. 2021): no data. All
//!   parameters replaced by their absolute values, an all-ones input of one image, `R` = the
//!   sum of the outputs; the score is `sum |theta * dR/dtheta|` over the weights of every
//!   convolution and linear layer (not biases, not batch-norm parameters). Batch norm as the
//!   reference code does it: the stem's, the cells' and the last one are removed (here: made
//!   the identity), the two ResNet reduction blocks keep theirs in training mode (batch
//!   statistics). The value grows like a product over the depth (beyond `f32`; the reference
//!   uses `f64`), so the forward pass divides the activations by their mean after every cell
//!   and keeps the factors in log space: [`synflow`] returns `ln(score)`, exact up to rounding
//!   (the network is a positive linear map apart from the reduction blocks' batch-norm branch,
//!   which is scale-invariant and is scaled to match; see [`ProxyNetwork`]).
//! * [`DataProxies`] from one mini-batch (labels used by `grad_norm` and `snip` only), the
//!   network in training mode: `grad_norm` = sum over conv/linear layers of the L2 norm of the
//!   cross-entropy gradient of the weights; `snip` = `sum |theta * dL/dtheta|` over the same
//!   weights (Lee et al. 2019); `jacob_cov` = `-sum_i (ln(v_i + k) + 1/(v_i + k))`, `k = 1e-5`,
//!   over the eigenvalues `v_i` of the correlation matrix of the per-image input gradients of
//!   the summed outputs (Mellor et al.'s first version, as Abdelfattah et al. use it); `nwot`
//!   = `ln |det K|` with `K_ij` = the number of ReLUs where images `i` and `j` have the same
//!   sign pattern (input `> 0`), summed over every ReLU (Mellor et al. 2021).
//! * `params` and `flops` ([`crate::nb201_cost`]), the baselines a proxy must beat.
//!
//! [`spearman`] is the rank correlation used to judge them (ties get average ranks). The
//! measured correlations with the table are in `docs/RESULTS.md`
//! (`cargo run --release -p nas-search --example nb201_proxies`).

use crate::nets::nb201::{Nb201CellModule, Nb201Config};
use crate::nets::ops::ResNetBasicBlock;
use nas_space::nb201::{EDGES, Nb201Cell, Nb201Op};
use nas_tensor::nn::{BatchNorm2d, Conv2d, Linear, Module};
use nas_tensor::{ConvOptions, Result, Tensor, TensorError};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

enum Stage {
    Cell(Nb201CellModule),
    /// Boxed: a block holds two ReLU-conv-BN layers inline, several times a cell's size.
    Block(Box<ResNetBasicBlock>),
}

impl Stage {
    fn module(&self) -> &dyn Module {
        match self {
            Stage::Cell(c) => c,
            Stage::Block(b) => b,
        }
    }
}

/// What a forward pass records besides the output.
#[derive(Default)]
struct Trace {
    /// Collect the input of every ReLU (for `nwot`).
    relu_inputs: Option<Vec<Tensor>>,
    /// Divide the activations by their mean after every stage (synflow) and sum the logs here.
    rescale: bool,
    log_scale: f64,
}

/// The NAS-Bench-201 network of a cell with the same construction, parameter names and weights
/// as [`Nb201Network::new`](crate::nets::nb201::Nb201Network::new) (a test checks both), whose forward pass can record the input of
/// every ReLU and rescale activations for [`synflow`].
pub struct ProxyNetwork {
    config: Nb201Config,
    stem_conv: Conv2d,
    stem_bn: BatchNorm2d,
    stages: Vec<Stage>,
    last_bn: BatchNorm2d,
    classifier: Linear,
}

impl ProxyNetwork {
    /// Builds the network of `cell` (weights from `seed`, drawn in [`Nb201Network::new`](crate::nets::nb201::Nb201Network::new)'s
    /// order).
    pub fn new(cell: &Nb201Cell, config: Nb201Config, seed: u64) -> Result<Self> {
        if config.channels == 0
            || config.cells_per_stage == 0
            || config.in_channels == 0
            || config.classes == 0
        {
            return Err(TensorError::InvalidArgument {
                op: "ProxyNetwork",
                detail: format!("every size must be positive, got {config:?}"),
            });
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let c = config.channels;
        let stem_conv = Conv2d::new(
            config.in_channels,
            c,
            3,
            ConvOptions::default().padding(1),
            false,
            &mut rng,
        )?;
        let mut stages = Vec::new();
        let mut c_prev = c;
        for stage in 0..3 {
            let c_stage = c << stage;
            if stage > 0 {
                stages.push(Stage::Block(Box::new(ResNetBasicBlock::new(
                    c_prev, c_stage, 2, &mut rng,
                )?)));
            }
            for _ in 0..config.cells_per_stage {
                stages.push(Stage::Cell(Nb201CellModule::new(cell, c_stage, &mut rng)?));
            }
            c_prev = c_stage;
        }
        let classifier = Linear::new(c_prev, config.classes, true, &mut rng)?;
        Ok(ProxyNetwork {
            config,
            stem_conv,
            stem_bn: BatchNorm2d::new(c, true),
            stages,
            last_bn: BatchNorm2d::new(c_prev, true),
            classifier,
        })
    }

    fn check_input(&self, x: &Tensor) -> Result<()> {
        match x.shape() {
            [_, c, _, _] if *c == self.config.in_channels => Ok(()),
            s => Err(TensorError::Shape {
                op: "ProxyNetwork",
                detail: format!(
                    "need input [n, {}, h, w], got {s:?}",
                    self.config.in_channels
                ),
            }),
        }
    }

    fn rescale(h: Tensor, trace: &mut Trace) -> Result<Tensor> {
        if !trace.rescale {
            return Ok(h);
        }
        let m = h.mean()?.item()? as f64;
        if m > 0.0 && m.is_finite() {
            trace.log_scale += m.ln();
            Ok(h.scale((1.0 / m) as f32))
        } else {
            Ok(h)
        }
    }

    fn cell_forward(cell: &Nb201CellModule, x: &Tensor, trace: &mut Trace) -> Result<Tensor> {
        let mut nodes: Vec<Option<Tensor>> = vec![Some(x.clone())];
        for target in 1..4 {
            let mut sum: Option<Tensor> = None;
            for (e, &(s, t)) in EDGES.iter().enumerate() {
                let op = cell.cell.ops[e];
                if t != target || op == Nb201Op::None {
                    continue;
                }
                let src = match &nodes[s] {
                    Some(t) => t.clone(),
                    None => Tensor::zeros_on(x.shape(), x.device())?,
                };
                if matches!(op, Nb201Op::NorConv1x1 | Nb201Op::NorConv3x3)
                    && let Some(r) = &mut trace.relu_inputs
                {
                    r.push(src.clone());
                }
                let y = cell.layers[e].forward(&src)?;
                sum = Some(match sum {
                    None => y,
                    Some(acc) => acc.add(&y)?,
                });
            }
            nodes.push(sum);
        }
        match nodes.pop().flatten() {
            Some(out) => Ok(out),
            None => Tensor::zeros_on(x.shape(), x.device()),
        }
    }

    fn block_forward(b: &ResNetBasicBlock, x: &Tensor, trace: &mut Trace) -> Result<Tensor> {
        if let Some(r) = &mut trace.relu_inputs {
            r.push(x.clone());
        }
        let a = b.conv_a.forward(x)?;
        if let Some(r) = &mut trace.relu_inputs {
            r.push(a.clone());
        }
        let mut branch = b.conv_b.forward(&a)?;
        if trace.rescale {
            // The batch-norm branch is scale-invariant: at the true scale (the running
            // activations times exp(log_scale)) it is this size relative to the shortcut.
            branch = branch.scale((-trace.log_scale).exp() as f32);
        }
        match &b.downsample {
            Some(d) => d.forward(x)?.add(&branch),
            None => x.add(&branch),
        }
    }

    fn forward_traced(&self, x: &Tensor, trace: &mut Trace) -> Result<Tensor> {
        self.check_input(x)?;
        let h = self.stem_bn.forward(&self.stem_conv.forward(x)?)?;
        let mut h = Self::rescale(h, trace)?;
        for s in &self.stages {
            h = match s {
                Stage::Cell(c) => Self::cell_forward(c, &h, trace)?,
                Stage::Block(b) => Self::block_forward(b, &h, trace)?,
            };
            h = Self::rescale(h, trace)?;
        }
        let h = self.last_bn.forward(&h)?;
        if let Some(r) = &mut trace.relu_inputs {
            r.push(h.clone());
        }
        self.classifier.forward(&h.relu().global_avg_pool()?)
    }

    /// The output and the input of every ReLU, in execution order (cells: one per
    /// convolution edge, whose ReLU reads the edge's source node; reduction blocks: two; the
    /// last one before pooling).
    pub fn forward_with_relu_inputs(&self, x: &Tensor) -> Result<(Tensor, Vec<Tensor>)> {
        let mut trace = Trace {
            relu_inputs: Some(Vec::new()),
            ..Trace::default()
        };
        let y = self.forward_traced(x, &mut trace)?;
        Ok((y, trace.relu_inputs.unwrap_or_default()))
    }

    /// The weights of every convolution and linear layer (the tensors the proxies score).
    pub fn scored_weights(&self) -> Vec<(String, Tensor)> {
        self.named_parameters()
            .into_iter()
            .filter(|(n, t)| n.ends_with("weight") && t.ndim() >= 2)
            .collect()
    }

    /// Prepares synflow's setting: every parameter replaced by its absolute value, batch norms
    /// outside the reduction blocks made the identity (evaluation mode, mean 0, variance
    /// `1 - eps`), the reduction blocks in training mode.
    fn linearize(&mut self) -> Result<()> {
        for (_, t) in self.named_parameters() {
            let v: Vec<f32> = t.to_vec()?.iter().map(|v| v.abs()).collect();
            t.set_data(&v)?;
        }
        self.set_training(false);
        // (running_mean, running_var, eps) of every batch norm outside the reduction blocks.
        let mut bns: Vec<(Tensor, Tensor, f32)> = Vec::new();
        for bn in [&self.stem_bn, &self.last_bn] {
            bns.push((bn.running_mean.clone(), bn.running_var.clone(), bn.eps));
        }
        for s in &self.stages {
            if let Stage::Cell(c) = s {
                let mut mean: Option<Tensor> = None;
                c.visit("", &mut |n, t, _| {
                    if n.ends_with("running_mean") {
                        mean = Some(t.clone());
                    } else if n.ends_with("running_var")
                        && let Some(m) = mean.take()
                    {
                        // NB201's cells use BatchNorm2d's default eps.
                        bns.push((m, t.clone(), 1e-5));
                    }
                });
            }
        }
        for (mean, var, eps) in bns {
            mean.set_data(&vec![0.0; mean.numel()])?;
            var.set_data(&vec![1.0 - eps; var.numel()])?;
        }
        for s in &mut self.stages {
            if let Stage::Block(b) = s {
                b.set_training(true);
            }
        }
        Ok(())
    }
}

impl Module for ProxyNetwork {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_traced(x, &mut Trace::default())
    }
    fn children(&self, f: &mut dyn FnMut(&str, &dyn Module)) {
        f("stem.0", &self.stem_conv);
        f("stem.1", &self.stem_bn);
        for (i, s) in self.stages.iter().enumerate() {
            f(&format!("cells.{i}"), s.module());
        }
        f("lastact.0", &self.last_bn);
        f("classifier", &self.classifier);
    }
}

/// The synflow network and the value of `R` for an `h x w` all-ones input, after a backward
/// pass: returns `(network, ln of the total rescaling)`.
fn synflow_pass(
    cell: &Nb201Cell,
    config: Nb201Config,
    seed: u64,
    (h, w): (usize, usize),
    rescale: bool,
) -> Result<(ProxyNetwork, f64, f64)> {
    let mut net = ProxyNetwork::new(cell, config, seed)?;
    net.linearize()?;
    let x = Tensor::ones(&[1, config.in_channels, h, w]);
    let mut trace = Trace {
        rescale,
        ..Trace::default()
    };
    let y = net.forward_traced(&x, &mut trace)?;
    let r = y.sum();
    let r_value = r.item()? as f64;
    r.backward()?;
    Ok((net, trace.log_scale, r_value))
}

/// `ln` of the synflow score of `cell`'s network (`config`, weights from `seed`) on an
/// `h x w` all-ones image; `-inf` when the score is 0 (a cell whose output is cut off).
pub fn synflow(
    cell: &Nb201Cell,
    config: Nb201Config,
    seed: u64,
    hw: (usize, usize),
) -> Result<f64> {
    synflow_score(cell, config, seed, hw, true)
}

fn synflow_score(
    cell: &Nb201Cell,
    config: Nb201Config,
    seed: u64,
    hw: (usize, usize),
    rescale: bool,
) -> Result<f64> {
    let (net, log_scale, _) = synflow_pass(cell, config, seed, hw, rescale)?;
    let mut total = 0.0f64;
    for (_, w) in net.scored_weights() {
        let g = w.grad_vec()?.unwrap_or_default();
        let v = w.to_vec()?;
        total += v
            .iter()
            .zip(&g)
            .map(|(a, b)| (*a as f64 * *b as f64).abs())
            .sum::<f64>();
    }
    Ok(if total > 0.0 {
        total.ln() + log_scale
    } else {
        f64::NEG_INFINITY
    })
}

/// The data-dependent proxies of one network on one mini-batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DataProxies {
    /// Sum over conv/linear layers of the L2 norm of the loss gradient of the weights.
    pub grad_norm: f64,
    /// `sum |theta * dL/dtheta|` over the conv/linear weights.
    pub snip: f64,
    /// Mellor et al.'s Jacobian-covariance score (NaN when an image's input gradient is
    /// constant, e.g. an output cut off from the input).
    pub jacob_cov: f64,
    /// `ln |det K|` of the ReLU sign-pattern kernel (`-inf` when `K` is singular).
    pub nwot: f64,
}

/// The data-dependent proxies of `cell`'s network (training mode, weights from `seed`) on
/// `images` (`[n, c, h, w]`) with `labels`.
pub fn data_proxies(
    cell: &Nb201Cell,
    config: Nb201Config,
    seed: u64,
    images: &Tensor,
    labels: &[usize],
) -> Result<DataProxies> {
    let n = images.shape().first().copied().unwrap_or(0);
    if labels.len() != n || n < 2 {
        return Err(TensorError::InvalidArgument {
            op: "data_proxies",
            detail: format!(
                "need a batch of at least 2 images with one label each, got {n} images and {} labels",
                labels.len()
            ),
        });
    }
    let net = ProxyNetwork::new(cell, config, seed)?;
    // grad_norm and snip: one backward pass of the cross-entropy loss.
    let loss = net.forward(images)?.cross_entropy(labels)?;
    loss.backward()?;
    let (mut grad_norm, mut snip) = (0.0f64, 0.0f64);
    for (_, w) in net.scored_weights() {
        let g = w.grad_vec()?.unwrap_or_default();
        let v = w.to_vec()?;
        grad_norm += g.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
        snip += v
            .iter()
            .zip(&g)
            .map(|(a, b)| (*a as f64 * *b as f64).abs())
            .sum::<f64>();
    }
    net.zero_grad();
    // jacob_cov and nwot: one forward pass with the input as a leaf.
    let x = images.detach().requires_grad_();
    let (y, relus) = net.forward_with_relu_inputs(&x)?;
    let kernel = nwot_kernel(&relus, n)?;
    y.sum().backward()?;
    let jac = x.grad_vec()?.unwrap_or_else(|| vec![0.0; x.numel()]);
    Ok(DataProxies {
        grad_norm,
        snip,
        jacob_cov: jacob_cov_score(&jac, n),
        nwot: log_abs_det(kernel, n),
    })
}

/// `K_ij` = the number of ReLU units (over all `relu_inputs`, each `[n, ...]`) at which images
/// `i` and `j` are both active or both inactive (input `> 0`).
pub fn nwot_kernel(relu_inputs: &[Tensor], n: usize) -> Result<Vec<f64>> {
    let mut k = vec![0.0f64; n * n];
    for t in relu_inputs {
        let v = t.to_vec()?;
        if v.len() % n != 0 {
            return Err(TensorError::Shape {
                op: "nwot_kernel",
                detail: format!("a ReLU input of {} values is not {n} images", v.len()),
            });
        }
        let d = v.len() / n;
        let words = d.div_ceil(64);
        let codes: Vec<Vec<u64>> = v
            .chunks(d)
            .map(|img| {
                let mut c = vec![0u64; words];
                for (j, x) in img.iter().enumerate() {
                    if *x > 0.0 {
                        c[j / 64] |= 1 << (j % 64);
                    }
                }
                c
            })
            .collect();
        for i in 0..n {
            for j in i..n {
                let hamming: u32 = codes[i]
                    .iter()
                    .zip(&codes[j])
                    .map(|(a, b)| (a ^ b).count_ones())
                    .sum();
                let same = (d as u32 - hamming) as f64;
                k[i * n + j] += same;
                if i != j {
                    k[j * n + i] += same;
                }
            }
        }
    }
    Ok(k)
}

/// `ln |det A|` of an `n x n` row-major matrix (LU with partial pivoting); `-inf` if singular.
pub fn log_abs_det(mut a: Vec<f64>, n: usize) -> f64 {
    let mut log = 0.0;
    for col in 0..n {
        let p = (col..n)
            .max_by(|&x, &y| a[x * n + col].abs().total_cmp(&a[y * n + col].abs()))
            .unwrap_or(col);
        let pivot = a[p * n + col];
        if pivot == 0.0 || !pivot.is_finite() {
            return f64::NEG_INFINITY;
        }
        if p != col {
            for j in 0..n {
                a.swap(p * n + j, col * n + j);
            }
        }
        log += pivot.abs().ln();
        for r in col + 1..n {
            let f = a[r * n + col] / pivot;
            if f != 0.0 {
                for j in col..n {
                    a[r * n + j] -= f * a[col * n + j];
                }
            }
        }
    }
    log
}

/// Mellor et al.'s score of per-image input gradients `jac` (`n` rows): the eigenvalues `v`
/// of the rows' correlation matrix give `-sum (ln(v + k) + 1 / (v + k))`, `k = 1e-5`. NaN when a
/// row is constant (its correlations are undefined).
pub fn jacob_cov_score(jac: &[f32], n: usize) -> f64 {
    let d = jac.len() / n.max(1);
    if n == 0 || d == 0 {
        return f64::NAN;
    }
    let rows: Vec<Vec<f64>> = jac
        .chunks(d)
        .map(|r| {
            let m = r.iter().map(|x| *x as f64).sum::<f64>() / d as f64;
            let c: Vec<f64> = r.iter().map(|x| *x as f64 - m).collect();
            let s = c.iter().map(|x| x * x).sum::<f64>().sqrt();
            c.into_iter().map(|x| x / s).collect()
        })
        .collect();
    if rows.iter().any(|r| r.iter().any(|x| !x.is_finite())) {
        return f64::NAN;
    }
    let mut corr = vec![0.0; n * n];
    for i in 0..n {
        for j in i..n {
            let c: f64 = rows[i].iter().zip(&rows[j]).map(|(a, b)| a * b).sum();
            corr[i * n + j] = c;
            corr[j * n + i] = c;
        }
    }
    let k = 1e-5;
    -symmetric_eigenvalues(corr, n)
        .iter()
        .map(|v| (v + k).ln() + 1.0 / (v + k))
        .sum::<f64>()
}

/// Eigenvalues of a symmetric `n x n` row-major matrix (cyclic Jacobi rotations).
pub fn symmetric_eigenvalues(mut a: Vec<f64>, n: usize) -> Vec<f64> {
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * n + j].powi(2))
            .sum();
        let scale: f64 = a.iter().map(|x| x * x).sum::<f64>();
        if off <= 1e-24 * scale.max(f64::MIN_POSITIVE) {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                if apq == 0.0 {
                    continue;
                }
                let theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let (akp, akq) = (a[k * n + p], a[k * n + q]);
                    a[k * n + p] = c * akp - s * akq;
                    a[k * n + q] = s * akp + c * akq;
                }
                for k in 0..n {
                    let (apk, aqk) = (a[p * n + k], a[q * n + k]);
                    a[p * n + k] = c * apk - s * aqk;
                    a[q * n + k] = s * apk + c * aqk;
                }
            }
        }
    }
    (0..n).map(|i| a[i * n + i]).collect()
}

pub use crate::stats::spearman;

#[cfg(test)]
mod tests;
