//! The NAS-Bench-101 network (Ying et al., ICML 2019) built from a cell graph, following the
//! benchmark's model builder:
//!
//! * stem: 3x3 conv `in -> stem_channels` (128), BN, ReLU;
//! * `stacks` (3) stacks of `cells_per_stack` (3) cells; before every stack but the first a
//!   2x2 max pool with stride 2, and the channel count doubles at that stack's first cell;
//! * global average pooling, dense classifier (with bias).
//!
//! A cell (the graph pruned first) with `C_out` output channels: every interior vertex that
//! feeds the output gets `C_out / k` channels (`k` such vertices; the remainder goes one each
//! to the first ones), every other interior vertex the maximum of its successors'. The input
//! of vertex `t` is the sum of its interior predecessors truncated to its channel count (the
//! first channels) and, with an edge from the cell input, a projection of the input (conv1x1,
//! BN, ReLU). Vertex ops: `conv3x3-bn-relu`, `conv1x1-bn-relu` (convolutions without bias),
//! `maxpool3x3` (stride 1, padding 1). The output concatenates the vertices feeding it and adds
//! the projected input if the input feeds the output directly (just the projection when no
//! interior vertex feeds it).

use nas_space::nb101::{Nb101Arch, Nb101Op};
use nas_tensor::nn::{BatchNorm2d, Conv2d, Linear, MaxPool2d, Module, ReLU, Sequential};
use nas_tensor::{ConvOptions, Result, Tensor, TensorError};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::NetworkCost;
use super::NetworkFamily;
use super::flops::{CountedConv2d, CountedLinear};

/// Shape of a NAS-Bench-101 network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nb101Config {
    /// Channels after the stem (128 in the benchmark).
    pub stem_channels: usize,
    /// Number of stacks (3).
    pub stacks: usize,
    /// Cells per stack (3).
    pub cells_per_stack: usize,
    /// Input image channels.
    pub in_channels: usize,
    /// Output classes.
    pub classes: usize,
}

impl Default for Nb101Config {
    /// The benchmark's CIFAR-10 network.
    fn default() -> Self {
        Nb101Config {
            stem_channels: 128,
            stacks: 3,
            cells_per_stack: 3,
            in_channels: 3,
            classes: 10,
        }
    }
}

fn invalid(detail: String) -> TensorError {
    TensorError::InvalidArgument {
        op: "Nb101Network",
        detail,
    }
}

/// The channel count of every vertex of the (pruned) graph for a cell `c_in -> c_out`.
pub fn vertex_channels(arch: &Nb101Arch, c_in: usize, c_out: usize) -> Vec<usize> {
    let m = &arch.matrix;
    let n = m.len();
    let mut ch = vec![0usize; n];
    ch[0] = c_in;
    ch[n - 1] = c_out;
    if n == 2 {
        return ch;
    }
    let k = (1..n - 1).filter(|&v| m[v][n - 1]).count();
    if k == 0 {
        return ch;
    }
    let (base, mut extra) = (c_out / k, c_out % k);
    for (v, c) in ch.iter_mut().enumerate().take(n - 1).skip(1) {
        if m[v][n - 1] {
            *c = base + usize::from(extra > 0);
            extra = extra.saturating_sub(1);
        }
    }
    for v in (1..n - 1).rev() {
        if !m[v][n - 1] {
            for dst in v + 1..n - 1 {
                if m[v][dst] {
                    ch[v] = ch[v].max(ch[dst]);
                }
            }
        }
    }
    ch
}

fn conv_bn_relu(c_in: usize, c_out: usize, k: usize, rng: &mut ChaCha8Rng) -> Result<Sequential> {
    Ok(Sequential::new()
        .push(CountedConv2d(Conv2d::new(
            c_in,
            c_out,
            k,
            ConvOptions::default().padding(k / 2),
            false,
            rng,
        )?))
        .push(BatchNorm2d::new(c_out, true))
        .push(ReLU::new()))
}

/// One NAS-Bench-101 cell.
pub struct Nb101CellModule {
    /// The pruned graph.
    pub arch: Nb101Arch,
    /// Channels per vertex.
    pub channels: Vec<usize>,
    /// Input projections, per vertex (`None` where the input does not feed it).
    projections: Vec<Option<Sequential>>,
    /// Vertex ops, per interior vertex (index `v - 1`).
    ops: Vec<Box<dyn Module>>,
}

impl Nb101CellModule {
    /// The cell of `arch` from `c_in` to `c_out` channels.
    pub fn new(arch: &Nb101Arch, c_in: usize, c_out: usize, rng: &mut ChaCha8Rng) -> Result<Self> {
        let arch = arch.prune().map_err(|e| invalid(e.to_string()))?;
        arch.validate().map_err(|e| invalid(e.to_string()))?;
        let n = arch.num_vertices();
        let channels = vertex_channels(&arch, c_in, c_out);
        let mut projections = Vec::with_capacity(n);
        for (v, &c) in channels.iter().enumerate() {
            projections.push(if v > 0 && arch.matrix[0][v] {
                Some(conv_bn_relu(c_in, c, 1, rng)?)
            } else {
                None
            });
        }
        let mut ops: Vec<Box<dyn Module>> = Vec::with_capacity(n.saturating_sub(2));
        for v in 1..n - 1 {
            let c = channels[v];
            ops.push(match arch.ops[v - 1] {
                Nb101Op::Conv3x3BnRelu => Box::new(conv_bn_relu(c, c, 3, rng)?),
                Nb101Op::Conv1x1BnRelu => Box::new(conv_bn_relu(c, c, 1, rng)?),
                Nb101Op::MaxPool3x3 => Box::new(MaxPool2d::new(3, 1, 1)),
            });
        }
        Ok(Nb101CellModule {
            arch,
            channels,
            projections,
            ops,
        })
    }
}

impl Module for Nb101CellModule {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let m = &self.arch.matrix;
        let n = m.len();
        let mut values: Vec<Tensor> = vec![x.clone()];
        let mut concat = Vec::new();
        for t in 1..n - 1 {
            let mut sum: Option<Tensor> = None;
            for src in 1..t {
                if m[src][t] {
                    let v = &values[src];
                    let v = if v.shape()[1] > self.channels[t] {
                        v.narrow(1, 0, self.channels[t])?
                    } else {
                        v.clone()
                    };
                    sum = Some(match sum {
                        None => v,
                        Some(a) => a.add(&v)?,
                    });
                }
            }
            if let Some(p) = &self.projections[t] {
                let v = p.forward(x)?;
                sum = Some(match sum {
                    None => v,
                    Some(a) => a.add(&v)?,
                });
            }
            let input = sum.ok_or_else(|| invalid(format!("vertex {t} has no input")))?;
            let out = self.ops[t - 1].forward(&input)?;
            if m[t][n - 1] {
                concat.push(out.clone());
            }
            values.push(out);
        }
        let proj = match &self.projections[n - 1] {
            Some(p) => Some(p.forward(x)?),
            None => None,
        };
        match (concat.len(), proj) {
            (0, Some(p)) => Ok(p),
            (0, None) => Err(invalid("output unreachable".into())),
            (_, p) => {
                let out = if concat.len() == 1 {
                    concat.pop().expect("one")
                } else {
                    Tensor::concat(&concat, 1)?
                };
                match p {
                    Some(p) => out.add(&p),
                    None => Ok(out),
                }
            }
        }
    }
    fn children(&self, f: &mut dyn FnMut(&str, &dyn Module)) {
        for (v, p) in self.projections.iter().enumerate() {
            if let Some(p) = p {
                f(&format!("input_op.{v}"), p);
            }
        }
        for (i, op) in self.ops.iter().enumerate() {
            f(&format!("vertex_op.{}", i + 1), op);
        }
    }
}

/// The NAS-Bench-101 network of one cell graph.
pub struct Nb101Network {
    /// Its shape.
    pub config: Nb101Config,
    /// `Sequential(conv 3x3, BN, ReLU)`.
    pub stem: Sequential,
    /// The cells, stack by stack.
    pub cells: Vec<Nb101CellModule>,
    /// The classifier.
    pub classifier: CountedLinear,
    pool: MaxPool2d,
}

impl Nb101Network {
    /// Builds the network of `arch` (pruned first; an invalid graph is an error), weights from
    /// `seed`.
    pub fn new(arch: &Nb101Arch, config: Nb101Config, seed: u64) -> Result<Self> {
        if config.stem_channels == 0
            || config.stacks == 0
            || config.cells_per_stack == 0
            || config.in_channels == 0
            || config.classes == 0
        {
            return Err(invalid(format!(
                "every size must be positive, got {config:?}"
            )));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let stem = conv_bn_relu(config.in_channels, config.stem_channels, 3, &mut rng)?;
        let mut cells = Vec::new();
        let (mut c_in, mut c) = (config.stem_channels, config.stem_channels);
        for stack in 0..config.stacks {
            if stack > 0 {
                c *= 2;
            }
            for _ in 0..config.cells_per_stack {
                cells.push(Nb101CellModule::new(arch, c_in, c, &mut rng)?);
                c_in = c;
            }
        }
        let classifier = CountedLinear(Linear::new(c, config.classes, true, &mut rng)?);
        Ok(Nb101Network {
            config,
            stem,
            cells,
            classifier,
            pool: MaxPool2d::new(2, 2, 0),
        })
    }
}

impl Module for Nb101Network {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = self.stem.forward(x)?;
        for (i, cell) in self.cells.iter().enumerate() {
            if i > 0 && i % self.config.cells_per_stack == 0 {
                h = self.pool.forward(&h)?;
            }
            h = cell.forward(&h)?;
        }
        self.classifier.forward(&h.global_avg_pool()?)
    }
    fn children(&self, f: &mut dyn FnMut(&str, &dyn Module)) {
        f("stem", &self.stem);
        for (i, c) in self.cells.iter().enumerate() {
            f(&format!("cells.{i}"), c);
        }
        f("classifier", &self.classifier);
    }
}

/// Parameters and FLOPs (convolutions and the classifier) of [`Nb101Network::new`] on
/// `h x w` inputs; an error for an invalid graph.
pub fn nb101_cost(
    arch: &Nb101Arch,
    config: &Nb101Config,
    h: usize,
    w: usize,
) -> std::result::Result<NetworkCost, nas_space::SpaceError> {
    let arch = arch.prune()?;
    arch.validate()?;
    let m = &arch.matrix;
    let n = m.len();
    let cbr = |ci: usize, co: usize, k: usize, px: usize| NetworkCost {
        params: (k * k * ci * co + 2 * co) as u64,
        flops: (k * k * ci * co * px) as u64,
    };
    let mut t = cbr(config.in_channels, config.stem_channels, 3, h * w);
    let (mut hh, mut ww) = (h, w);
    let (mut c_in, mut c) = (config.stem_channels, config.stem_channels);
    for stack in 0..config.stacks {
        if stack > 0 {
            c *= 2;
            (hh, ww) = (hh / 2, ww / 2);
        }
        for _ in 0..config.cells_per_stack {
            let ch = vertex_channels(&arch, c_in, c);
            let px = hh * ww;
            for v in 1..n {
                let mut add = |a: NetworkCost| {
                    t.params += a.params;
                    t.flops += a.flops;
                };
                if m[0][v] {
                    add(cbr(c_in, ch[v], 1, px));
                }
                if v < n - 1 {
                    match arch.ops[v - 1] {
                        Nb101Op::Conv3x3BnRelu => add(cbr(ch[v], ch[v], 3, px)),
                        Nb101Op::Conv1x1BnRelu => add(cbr(ch[v], ch[v], 1, px)),
                        Nb101Op::MaxPool3x3 => {}
                    }
                }
            }
            c_in = c;
        }
    }
    let classes = config.classes as u64;
    t.params += c as u64 * classes + classes;
    t.flops += c as u64 * classes + classes;
    Ok(t)
}

/// NAS-Bench-101 networks with `stem_channels`, `stacks` and `cells_per_stack`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nb101Family {
    /// Channels after the stem (128 in the benchmark).
    pub stem_channels: usize,
    /// Stacks (3).
    pub stacks: usize,
    /// Cells per stack (3).
    pub cells_per_stack: usize,
}

impl Nb101Family {
    fn config(&self, input: (usize, usize, usize), classes: usize) -> Nb101Config {
        Nb101Config {
            stem_channels: self.stem_channels,
            stacks: self.stacks,
            cells_per_stack: self.cells_per_stack,
            in_channels: input.0,
            classes,
        }
    }
}

impl NetworkFamily<Nb101Arch> for Nb101Family {
    fn name(&self) -> String {
        format!(
            "nb101(C={},S={},N={})",
            self.stem_channels, self.stacks, self.cells_per_stack
        )
    }
    fn build(
        &self,
        arch: &Nb101Arch,
        input: (usize, usize, usize),
        classes: usize,
        seed: u64,
    ) -> Result<Box<dyn Module>> {
        Ok(Box::new(Nb101Network::new(
            arch,
            self.config(input, classes),
            seed,
        )?))
    }
    fn cost(&self, arch: &Nb101Arch, input: (usize, usize, usize), classes: usize) -> NetworkCost {
        nb101_cost(arch, &self.config(input, classes), input.1, input.2).unwrap_or(NetworkCost {
            params: 0,
            flops: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nets::flops::count_forward_flops;

    fn arch(s: &str) -> Nb101Arch {
        Nb101Arch::parse(s).unwrap()
    }

    const SPECS: [&str; 4] = [
        "ModelSpec(matrix=[[0, 1, 1, 0], [0, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 0]], ops=['input', 'conv3x3-bn-relu', 'maxpool3x3', 'output'])",
        "ModelSpec(matrix=[[0, 1], [0, 0]], ops=['input', 'output'])",
        "ModelSpec(matrix=[[0, 1, 1, 1, 0, 1, 0], [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 1, 0, 0], [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 0]], ops=['input', 'conv1x1-bn-relu', 'conv3x3-bn-relu', 'conv3x3-bn-relu', 'conv3x3-bn-relu', 'maxpool3x3', 'output'])",
        "ModelSpec(matrix=[[0, 1, 0, 0, 1], [0, 0, 1, 0, 0], [0, 0, 0, 1, 0], [0, 0, 0, 0, 1], [0, 0, 0, 0, 0]], ops=['input', 'conv3x3-bn-relu', 'conv1x1-bn-relu', 'maxpool3x3', 'output'])",
    ];

    #[test]
    fn vertex_channels_follow_the_benchmark_rule() {
        // Two vertices feed the output: 11 channels split 6 + 5.
        assert_eq!(vertex_channels(&arch(SPECS[0]), 8, 11), vec![8, 6, 5, 11]);
        // A chain: only vertex 3 feeds the output; 1 and 2 take their successor's width.
        assert_eq!(
            vertex_channels(&arch(SPECS[3]), 8, 16),
            vec![8, 16, 16, 16, 16]
        );
    }

    #[test]
    fn built_network_matches_closed_form() {
        for s in SPECS {
            let a = arch(s);
            for config in [
                Nb101Config {
                    stem_channels: 8,
                    stacks: 3,
                    cells_per_stack: 1,
                    in_channels: 3,
                    classes: 10,
                },
                Nb101Config {
                    stem_channels: 5,
                    stacks: 2,
                    cells_per_stack: 2,
                    in_channels: 1,
                    classes: 4,
                },
            ] {
                let mut net = Nb101Network::new(&a, config, 0).unwrap();
                let side = if config.in_channels == 1 { 28 } else { 32 };
                let cost = nb101_cost(&a, &config, side, side).unwrap();
                assert_eq!(net.num_parameters() as u64, cost.params, "{s} {config:?}");
                let counted =
                    count_forward_flops(&mut net, config.in_channels, side, side).unwrap();
                assert_eq!(counted, cost.flops, "{s} {config:?}");
                let y = net
                    .forward(&Tensor::randn(&[2, config.in_channels, side, side], 1))
                    .unwrap();
                assert_eq!(y.shape(), &[2, config.classes]);
            }
        }
        // The skeleton of the benchmark (input -> output only): stem 3*128*9 + 256, then per
        // cell a projection conv1x1 + BN, classifier 512*10 + 10.
        let cost = nb101_cost(&arch(SPECS[1]), &Nb101Config::default(), 32, 32).unwrap();
        let expected = 3 * 128 * 9
            + 256
            + 3 * (128 * 128 + 256)
            + (128 * 256 + 512)
            + 2 * (256 * 256 + 512)
            + (256 * 512 + 1024)
            + 2 * (512 * 512 + 1024)
            + 512 * 10
            + 10;
        assert_eq!(cost.params, expected as u64);
    }
}
