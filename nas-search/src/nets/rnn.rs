//! Character (or word) language models with a recurrent core: a DARTS recurrent cell from a
//! genotype, or an LSTM baseline.
//!
//! [`RnnLm`]: embedding (`[V, d]`, embedding dropout drops whole rows), variational dropout
//! on the inputs, the recurrent core over the window's `T` steps, variational dropout on the
//! outputs, and a decoder **tied** to the embedding (`logits = y E^T + b`, so the hidden size
//! equals the embedding size).
//!
//! The DARTS cell (Liu et al. 2019, the original code's `rnn/model.py`), for inputs
//! `x_t: [n, d]` and state `h: [n, d]`, with `m_h` a variational dropout mask of the state
//! (one per window, training only):
//!
//! ```text
//! [c0 | g0] = x_t W_x^T + (h * m_h) W_h^T         (node 0: a highway layer)
//! s_0 = h + sigmoid(c0) * (tanh(g0) - h)
//! [c | g]   = (s_j * m_h) W_i^T                    (node i reads node j = input(i))
//! s_i = s_j + sigmoid(c) * (act_i(g) - s_j)
//! h_t = mean(s_1, ..., s_8)
//! ```
//!
//! The input projection `x_t W_x^T` of every step is one GEMM over the window.

use nas_space::rnn::{NUM_NODES, RnnActivation, RnnGenotype};
use nas_tensor::nn::{BatchNorm2d, LstmLayer, Mode, Module, TensorKind, Window, lookup_in};
use nas_tensor::{Device, Result, Tensor, TensorError};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// The recurrent core of a language model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CellKind {
    /// A DARTS recurrent cell.
    Darts(RnnGenotype),
    /// One fused LSTM layer (the baseline).
    Lstm,
}

/// Dropout probabilities of [`RnnLm`] (training only).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RnnDropout {
    /// Embedding dropout: whole rows (characters) of the table.
    pub embedding: f32,
    /// Variational dropout of the core's inputs (one mask per window, all steps).
    pub input: f32,
    /// Variational dropout of the DARTS cell's state where it enters a matrix product (one
    /// mask per window); unused by the LSTM core.
    pub hidden: f32,
    /// Variational dropout of the core's outputs before the decoder.
    pub output: f32,
}

impl RnnDropout {
    /// No dropout.
    pub const NONE: RnnDropout = RnnDropout {
        embedding: 0.0,
        input: 0.0,
        hidden: 0.0,
        output: 0.0,
    };

    fn check(&self) -> Result<()> {
        for (name, p) in [
            ("embedding", self.embedding),
            ("input", self.input),
            ("hidden", self.hidden),
            ("output", self.output),
        ] {
            if !(0.0..1.0).contains(&p) {
                return Err(TensorError::InvalidArgument {
                    op: "RnnLm",
                    detail: format!("{name} dropout must be in [0, 1), got {p}"),
                });
            }
        }
        Ok(())
    }
}

impl Default for RnnDropout {
    /// Light dropout for small character models: 0.1 on the inputs, state and outputs.
    fn default() -> Self {
        RnnDropout {
            embedding: 0.0,
            input: 0.1,
            hidden: 0.1,
            output: 0.1,
        }
    }
}

/// The parameters of a DARTS recurrent cell of `d` units.
struct DartsCore {
    genotype: RnnGenotype,
    /// `[2d, d]`: the input half of node 0's highway layer.
    w_x: Tensor,
    /// `[2d, d]`: the state half of node 0's highway layer.
    w_h: Tensor,
    /// `[2d, d]` per node 1..=8.
    w_nodes: Vec<Tensor>,
}

enum Core {
    Darts(DartsCore),
    Lstm(LstmLayer),
}

/// A recurrent language model, see the [module docs](self).
pub struct RnnLm {
    /// The embedding table `[V, d]`, also the decoder's weight.
    pub embedding: Tensor,
    /// The decoder's bias `[V]`.
    pub decoder_bias: Tensor,
    core: Core,
    vocab: usize,
    hidden: usize,
    dropout: RnnDropout,
    training: Mode,
}

/// Half-width of the uniform initialisation of the embedding (the DARTS code's 0.1).
pub const EMBEDDING_INIT: f32 = 0.1;
/// Half-width of the uniform initialisation of the DARTS cell's weights (the DARTS code's
/// `INITRANGE`, 0.04).
pub const CELL_INIT: f32 = 0.04;

fn act(a: RnnActivation, x: &Tensor) -> Tensor {
    match a {
        RnnActivation::Tanh => x.tanh(),
        RnnActivation::Relu => x.relu(),
        RnnActivation::Sigmoid => x.sigmoid(),
        RnnActivation::Identity => x.clone(),
    }
}

/// `s + sigmoid(c) * (act(g) - s)` for `cg = [c | g]` (`[n, 2d]`): the highway step.
fn highway(s: &Tensor, cg: &Tensor, a: RnnActivation, d: usize) -> Result<Tensor> {
    let c = cg.narrow(1, 0, d)?.sigmoid();
    let g = act(a, &cg.narrow(1, d, d)?);
    s.add(&c.mul(&g.sub(s)?)?)
}

/// Mixed edges of the recurrent supernet: node `i` (`1..=8`) has the `i` predecessors
/// `0..i`, so `1 + 2 + ... + 8 = 36`; rows of the architecture weights are ordered by node,
/// then predecessor (the original code's `offset`).
pub const RNN_EDGES: usize = NUM_NODES * (NUM_NODES + 1) / 2;

/// The first architecture-weight row of node `i` (`1..=8`): its predecessor `j` is row
/// `rnn_edge_offset(i) + j`.
pub fn rnn_edge_offset(i: usize) -> usize {
    (i - 1) * i / 2
}

/// Node `i` of the mixed cell (the DARTS code's search cell): for every predecessor `j < i`,
/// `[c | g] = (s_j * m_h) W_i^T` and, for every activation `k`, the highway step
/// `s_j + sigmoid(c) * (act_k(g) - s_j)`; the node is the sum of all `4 i` of them weighted by
/// `mix[offset + j, k]` (`none`, column 0, adds nothing but its weight stays in the softmax).
fn mixed_node(
    states: &[Tensor],
    w: &Tensor,
    mix: &Tensor,
    i: usize,
    d: usize,
    masked: &dyn Fn(&Tensor) -> Result<Tensor>,
) -> Result<Tensor> {
    let mut terms = Vec::with_capacity(4 * i);
    for s in &states[..i] {
        let cg = masked(s)?.linear(w, None)?;
        let c = cg.narrow(1, 0, d)?.sigmoid();
        let g = cg.narrow(1, d, d)?;
        for a in RnnActivation::ALL {
            terms.push(s.add(&c.mul(&act(a, &g).sub(s)?)?)?);
        }
    }
    // rows offset..offset+i, activation columns 1..5, flattened predecessor-major as `terms`
    let weights = mix
        .narrow(0, rnn_edge_offset(i), i)?
        .narrow(1, 1, RnnActivation::ALL.len())?
        .reshape(&[4 * i])?;
    Tensor::weighted_sum(&terms, &weights)
}

impl RnnLm {
    /// A model of `vocab` symbols and `hidden` units with `cell` as its core, initialised
    /// from `seed`.
    pub fn new(
        cell: &CellKind,
        vocab: usize,
        hidden: usize,
        dropout: RnnDropout,
        seed: u64,
    ) -> Result<RnnLm> {
        if vocab == 0 || hidden == 0 {
            return Err(TensorError::InvalidArgument {
                op: "RnnLm",
                detail: format!("vocab ({vocab}) and hidden ({hidden}) must be positive"),
            });
        }
        dropout.check()?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let d = hidden;
        let embedding =
            Tensor::uniform_with(&[vocab, d], -EMBEDDING_INIT, EMBEDDING_INIT, &mut rng)?.param();
        let core = match cell {
            CellKind::Darts(g) => {
                g.validate().map_err(|e| TensorError::InvalidArgument {
                    op: "RnnLm",
                    detail: e.to_string(),
                })?;
                let mut w = || {
                    Ok::<_, TensorError>(
                        Tensor::uniform_with(&[2 * d, d], -CELL_INIT, CELL_INIT, &mut rng)?.param(),
                    )
                };
                Core::Darts(DartsCore {
                    genotype: *g,
                    w_x: w()?,
                    w_h: w()?,
                    w_nodes: (0..NUM_NODES).map(|_| w()).collect::<Result<_>>()?,
                })
            }
            CellKind::Lstm => Core::Lstm(LstmLayer::new(d, d, &mut rng)?),
        };
        Ok(RnnLm {
            embedding,
            decoder_bias: Tensor::zeros(&[vocab]).param(),
            core,
            vocab,
            hidden,
            dropout,
            training: Mode::default(),
        })
    }

    /// Vocabulary size.
    pub fn vocab(&self) -> usize {
        self.vocab
    }

    /// Hidden (and embedding) size.
    pub fn hidden(&self) -> usize {
        self.hidden
    }

    /// The shapes of the recurrent state for `n` sequences (`[h]` for the DARTS cell,
    /// `[h, c]` for the LSTM).
    pub fn state_shapes(&self, n: usize) -> Vec<Vec<usize>> {
        match self.core {
            Core::Darts(_) => vec![vec![n, self.hidden]],
            Core::Lstm(_) => vec![vec![n, self.hidden]; 2],
        }
    }

    fn device(&self) -> Device {
        self.embedding.device()
    }

    /// The logits `[T * n, V]` of one window (time-major rows) from the recurrent `state`,
    /// and the state at the window's end (still attached to the graph; carry it detached).
    /// Dropout masks are drawn from `rng` in training mode.
    pub fn forward_window(
        &self,
        window: &Window,
        state: &[Tensor],
        rng: &mut ChaCha8Rng,
    ) -> Result<(Tensor, Vec<Tensor>)> {
        self.forward_window_with(window, state, rng, None, None)
    }

    /// [`RnnLm::forward_window`]; with `mix` (`[RNN_EDGES, 5]`, a row per (node, predecessor)
    /// pair, columns in [`nas_space::rnn::RNN_PRIMITIVES`] order) the DARTS core runs as the
    /// supernet's mixed cell (see [`RnnSupernet`]) instead of its genotype, with `bn` (if
    /// any) normalising node 0 and every mixed node.
    fn forward_window_with(
        &self,
        window: &Window,
        state: &[Tensor],
        rng: &mut ChaCha8Rng,
        mix: Option<&Tensor>,
        bn: Option<&BatchNorm2d>,
    ) -> Result<(Tensor, Vec<Tensor>)> {
        let (t, n, d) = (window.steps, window.batch, self.hidden);
        let p = self.dropout;
        let train = self.training.get();
        let table = self
            .embedding
            .dropout_shared(p.embedding, train, &[self.vocab, 1], rng)?;
        let x = lookup_in(&table, &window.inputs, &[t, n])?.dropout_shared(
            p.input,
            train,
            &[1, n, d],
            rng,
        )?;
        let (y, new_state) = match &self.core {
            Core::Lstm(layer) => {
                let out = layer.forward_from(&x, &state[0], &state[1])?;
                (out.output, vec![out.h, out.c])
            }
            Core::Darts(core) => {
                let mask = if train && p.hidden > 0.0 {
                    Some(Tensor::dropout_mask(&[n, d], p.hidden, rng, self.device())?)
                } else {
                    None
                };
                let masked = |s: &Tensor| match &mask {
                    Some(m) => s.mul(m),
                    None => Ok(s.clone()),
                };
                // Every step's input projection in one GEMM.
                let xg = x.reshape(&[t * n, d])?.linear(&core.w_x, None)?;
                let mut h = state[0].clone();
                let mut outs = Vec::with_capacity(t);
                for step in 0..t {
                    let cg0 = xg
                        .narrow(0, step * n, n)?
                        .add(&masked(&h)?.linear(&core.w_h, None)?)?;
                    let c0 = cg0.narrow(1, 0, d)?.sigmoid();
                    let g0 = cg0.narrow(1, d, d)?.tanh();
                    let s0 = h.add(&c0.mul(&g0.sub(&h)?)?)?;
                    let norm = |s: Tensor| -> Result<Tensor> {
                        match bn {
                            Some(bn) => bn.forward(&s.reshape(&[n, d, 1, 1])?)?.reshape(&[n, d]),
                            None => Ok(s),
                        }
                    };
                    let mut states = vec![norm(s0)?];
                    for (k, w) in core.w_nodes.iter().enumerate() {
                        let next = match mix {
                            None => {
                                let (a, j) = core.genotype.nodes[k];
                                let s = &states[j];
                                let cg = masked(s)?.linear(w, None)?;
                                highway(s, &cg, a, d)?
                            }
                            Some(m) => norm(mixed_node(&states, w, m, k + 1, d, &masked)?)?,
                        };
                        states.push(next);
                    }
                    let mut sum = states[1].clone();
                    for s in &states[2..] {
                        sum = sum.add(s)?;
                    }
                    h = sum.scale(1.0 / NUM_NODES as f32);
                    outs.push(h.reshape(&[1, n, d])?);
                }
                (Tensor::concat(&outs, 0)?, vec![h])
            }
        };
        let y = y.dropout_shared(p.output, train, &[1, n, d], rng)?;
        let logits = y
            .reshape(&[t * n, d])?
            .linear(&self.embedding, Some(&self.decoder_bias))?;
        Ok((logits, new_state))
    }

    /// The mean cross-entropy (nats per character) of one window's targets, and the state at
    /// its end.
    pub fn window_loss(
        &self,
        window: &Window,
        state: &[Tensor],
        rng: &mut ChaCha8Rng,
    ) -> Result<(Tensor, Vec<Tensor>)> {
        let (logits, state) = self.forward_window(window, state, rng)?;
        Ok((logits.cross_entropy(&window.targets)?, state))
    }
}

impl Module for RnnLm {
    /// Logits `[T * n, V]` of ids `x: [T, n]` (given as floats, read to the host) from a zero
    /// state, without dropout masks drawn (in training mode they are drawn from a fixed seed).
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if x.ndim() != 2 {
            return Err(TensorError::Shape {
                op: "RnnLm::forward",
                detail: format!("ids must be [T, n], got {:?}", x.shape()),
            });
        }
        let (t, n) = (x.shape()[0], x.shape()[1]);
        let inputs: Vec<usize> = x.to_vec()?.iter().map(|&v| v as usize).collect();
        let window = Window {
            steps: t,
            batch: n,
            targets: inputs.clone(),
            inputs,
        };
        let state = self
            .state_shapes(n)
            .iter()
            .map(|s| Tensor::zeros_on(s, self.device()))
            .collect::<Result<Vec<_>>>()?;
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        Ok(self.forward_window(&window, &state, &mut rng)?.0)
    }

    fn own_tensors(&self, f: &mut dyn FnMut(&str, &Tensor, TensorKind)) {
        let p = TensorKind::Parameter;
        f("embedding.weight", &self.embedding, p);
        if let Core::Darts(c) = &self.core {
            f("cell.w_x", &c.w_x, p);
            f("cell.w_h", &c.w_h, p);
            for (i, w) in c.w_nodes.iter().enumerate() {
                f(&format!("cell.nodes.{}", i + 1), w, p);
            }
        }
        f("decoder.bias", &self.decoder_bias, p);
    }

    fn children(&self, f: &mut dyn FnMut(&str, &dyn Module)) {
        if let Core::Lstm(l) = &self.core {
            f("lstm", l);
        }
    }

    fn own_mode(&self) -> Option<&Mode> {
        Some(&self.training)
    }
}

/// Parameters of a language model of `vocab` symbols and `hidden` units with `cell` as its
/// core, in closed form (embedding and tied decoder `V d + V`; DARTS cell `2 d^2 (2 + 8)`;
/// LSTM `4 d (2 d + 1)`).
pub fn rnn_lm_params(cell: &CellKind, vocab: usize, hidden: usize) -> usize {
    let (v, d) = (vocab, hidden);
    let core = match cell {
        CellKind::Darts(_) => 2 * d * d * (2 + NUM_NODES),
        CellKind::Lstm => 4 * d * (2 * d + 1),
    };
    v * d + v + core
}

/// The DARTS recurrent supernet (Liu et al. 2019, the original code's `rnn/model_search.py`):
/// the language model of [`RnnLm`] whose cell mixes, at every node `i`, all `i` earlier nodes
/// and all 4 activations, weighted by the softmax of the architecture weights (`[RNN_EDGES, 5]`
/// rows, `none` included; see [`RnnSupernet::forward_window`]). Each node keeps one `W_i`
/// shared by its predecessors, as in the original, so its parameters are exactly those of
/// any [`RnnLm`] of the same size: [`RnnSupernet::standalone`] gives the network of one
/// genotype with the supernet's weights, and one-hot architecture weights compute that network.
///
/// With `node_bn` (what the search uses), node 0 and every mixed node go through one shared
/// non-affine batch normalisation, as in the original search model (`self.bn`): a node sums
/// `i` rows of weights that each add up to one, so without it node 8 is about 6 times its
/// inputs' size and the state explodes over the steps of a window (a search without it
/// diverges within a few steps). Without `node_bn` a one-hot supernet is exactly its derived
/// cell (tested); with it, the derived cell is the one-hot supernet without the
/// normalisation, as in the original.
pub struct RnnSupernet {
    lm: RnnLm,
    bn: Option<BatchNorm2d>,
}

impl RnnSupernet {
    /// A supernet of `vocab` symbols and `hidden` units, initialised from `seed` exactly as
    /// [`RnnLm::new`] initialises a DARTS cell, with or without the nodes' batch normalisation.
    pub fn new(
        vocab: usize,
        hidden: usize,
        dropout: RnnDropout,
        seed: u64,
        node_bn: bool,
    ) -> Result<Self> {
        let any = nas_space::rnn::DARTS_V2_RNN;
        Ok(RnnSupernet {
            lm: RnnLm::new(&CellKind::Darts(any), vocab, hidden, dropout, seed)?,
            bn: node_bn.then(|| BatchNorm2d::new(hidden, false)),
        })
    }

    /// The underlying model (its parameters are the supernet's).
    pub fn lm(&self) -> &RnnLm {
        &self.lm
    }

    /// The shapes of the recurrent state for `n` sequences (`[[n, hidden]]`).
    pub fn state_shapes(&self, n: usize) -> Vec<Vec<usize>> {
        self.lm.state_shapes(n)
    }

    /// The logits `[T * n, V]` of one window from `state` under the mixing weights `mix`
    /// (`[RNN_EDGES, 5]`, rows summing to one: the softmax of the architecture weights, recorded
    /// when their gradient is wanted), and the state at the window's end. Dropout as
    /// [`RnnLm::forward_window`].
    pub fn forward_window(
        &self,
        window: &Window,
        state: &[Tensor],
        rng: &mut ChaCha8Rng,
        mix: &Tensor,
    ) -> Result<(Tensor, Vec<Tensor>)> {
        let k = nas_space::rnn::RNN_PRIMITIVES.len();
        if mix.shape() != [RNN_EDGES, k] {
            return Err(TensorError::Shape {
                op: "RnnSupernet::forward_window",
                detail: format!(
                    "mixing weights must be [{RNN_EDGES}, {k}], got {:?}",
                    mix.shape()
                ),
            });
        }
        self.lm
            .forward_window_with(window, state, rng, Some(mix), self.bn.as_ref())
    }

    /// The mean cross-entropy (nats per character) of one window under `mix`, and the state
    /// at its end.
    pub fn window_loss(
        &self,
        window: &Window,
        state: &[Tensor],
        rng: &mut ChaCha8Rng,
        mix: &Tensor,
    ) -> Result<(Tensor, Vec<Tensor>)> {
        let (logits, state) = self.forward_window(window, state, rng, mix)?;
        Ok((logits.cross_entropy(&window.targets)?, state))
    }

    /// The standalone network of `genotype` holding copies of the supernet's weights (same
    /// names, same values, same dropout) on the supernet's device.
    pub fn standalone(&self, genotype: &RnnGenotype) -> Result<RnnLm> {
        let lm = RnnLm::new(
            &CellKind::Darts(*genotype),
            self.lm.vocab,
            self.lm.hidden,
            self.lm.dropout,
            0,
        )?;
        lm.to_device(self.lm.device())?;
        let mine = self.lm.state_dict();
        for (name, t) in lm.state_dict() {
            let src = mine
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, s)| s)
                .ok_or_else(|| TensorError::InvalidArgument {
                    op: "RnnSupernet::standalone",
                    detail: format!("no tensor {name} in the supernet"),
                })?;
            t.copy_from(src)?;
        }
        lm.set_training(self.lm.is_training());
        Ok(lm)
    }
}

impl Module for RnnSupernet {
    /// The logits of [`Module::forward`] of [`RnnLm`] under uniform mixing weights.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let k = nas_space::rnn::RNN_PRIMITIVES.len();
        let uniform = Tensor::full_on(&[RNN_EDGES, k], 1.0 / k as f32, self.lm.device())?;
        if x.ndim() != 2 {
            return Err(TensorError::Shape {
                op: "RnnSupernet::forward",
                detail: format!("ids must be [T, n], got {:?}", x.shape()),
            });
        }
        let (t, n) = (x.shape()[0], x.shape()[1]);
        let inputs: Vec<usize> = x.to_vec()?.iter().map(|&v| v as usize).collect();
        let window = Window {
            steps: t,
            batch: n,
            targets: inputs.clone(),
            inputs,
        };
        let state = self
            .state_shapes(n)
            .iter()
            .map(|s| Tensor::zeros_on(s, self.lm.device()))
            .collect::<Result<Vec<_>>>()?;
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        Ok(self.forward_window(&window, &state, &mut rng, &uniform)?.0)
    }

    fn own_tensors(&self, f: &mut dyn FnMut(&str, &Tensor, TensorKind)) {
        self.lm.own_tensors(f)
    }

    fn children(&self, f: &mut dyn FnMut(&str, &dyn Module)) {
        self.lm.children(f);
        if let Some(bn) = &self.bn {
            f("bn", bn);
        }
    }

    fn own_mode(&self) -> Option<&Mode> {
        self.lm.own_mode()
    }
}
