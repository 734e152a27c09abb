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
use nas_tensor::nn::{LstmLayer, Mode, Module, TensorKind, Window, lookup_in};
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
                    let mut states = vec![s0];
                    for (k, w) in core.w_nodes.iter().enumerate() {
                        let (a, j) = core.genotype.nodes[k];
                        let s = &states[j];
                        let cg = masked(s)?.linear(w, None)?;
                        states.push(highway(s, &cg, a, d)?);
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
