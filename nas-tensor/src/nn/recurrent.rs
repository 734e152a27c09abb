//! Recurrent layers and truncated backpropagation through time.
//!
//! - [`Embedding`]: a `[vocab, dim]` table looked up by token ids.
//! - [`LstmLayer`]: one fused LSTM layer ([`Tensor::lstm`]) with PyTorch's parameter names
//!   and initialisation.
//! - [`TokenWindows`] and [`CarriedState`]: truncated BPTT. A token stream is cut into `n`
//!   contiguous columns (one per batch row), which are read in consecutive windows of `T`
//!   steps; the recurrent state at the end of one window starts the next one, **detached**,
//!   so gradients flow through `T` steps while the state carries the whole history.
//!
//! ```
//! use nas_tensor::nn::{CarriedState, TokenWindows};
//! use nas_tensor::{Device, Tensor};
//! let stream: Vec<u32> = (0..23).collect();
//! // 2 columns of 11 tokens: 0..11 and 11..22 (the last token is dropped); windows of 4.
//! let windows: Vec<_> = TokenWindows::new(&stream, 2, 4).unwrap().collect();
//! assert_eq!(windows.len(), 3); // targets need one token more: 4 + 4 + 2 steps
//! assert_eq!(windows[0].inputs[..4], [0, 11, 1, 12]); // time-major: [T, n]
//! assert_eq!(windows[0].targets[..2], [1, 12]);
//! let mut state = CarriedState::zeros(&[&[2, 8], &[2, 8]], Device::Cpu).unwrap();
//! let h = state.get()[0].clone(); // feed to the model ...
//! state.carry(&[h.add_scalar(1.0), h]).unwrap(); // ... keep its final state, detached
//! assert!(!state.get()[0].requires_grad());
//! ```

use rand_chacha::ChaCha8Rng;

use super::{Module, TensorKind};
use crate::error::{Result, arg_err, shape_err};
use crate::ops::recurrent::LstmOutput;
use crate::tensor::Tensor;

/// A lookup table of `vocab` rows of `dim` values (PyTorch's `nn.Embedding`, initialised
/// from the standard normal as PyTorch does).
pub struct Embedding {
    /// The table, `[vocab, dim]`.
    pub weight: Tensor,
}

impl Embedding {
    /// A `[vocab, dim]` table drawn from `N(0, 1)`.
    pub fn new(vocab: usize, dim: usize, rng: &mut ChaCha8Rng) -> Result<Embedding> {
        if vocab == 0 || dim == 0 {
            return arg_err(
                "Embedding",
                format!("vocab ({vocab}) and dim ({dim}) must be positive"),
            );
        }
        Ok(Embedding {
            weight: Tensor::randn_with(&[vocab, dim], rng).param(),
        })
    }

    /// The rows of `ids`, shaped `shape` + `[dim]` (`ids.len()` must be `prod(shape)`).
    pub fn lookup(&self, ids: &[usize], shape: &[usize]) -> Result<Tensor> {
        lookup_in(&self.weight, ids, shape)
    }
}

/// Looks `ids` up in `table` (`[vocab, dim]`), shaped `shape` + `[dim]`: the embedding of
/// [`Embedding::lookup`] on any table (a dropped-out one, say).
pub fn lookup_in(table: &Tensor, ids: &[usize], shape: &[usize]) -> Result<Tensor> {
    if ids.len() != shape.iter().product::<usize>() {
        return shape_err(
            "embedding",
            format!("{} ids for the shape {shape:?}", ids.len()),
        );
    }
    let dim = table.shape().get(1).copied().unwrap_or(0);
    let mut out_shape = shape.to_vec();
    out_shape.push(dim);
    table.embedding(ids)?.reshape(&out_shape)
}

/// One LSTM layer: parameters `weight_ih: [4h, in]`, `weight_hh: [4h, h]`, `bias: [4h]` (one
/// bias, PyTorch's `bias_ih + bias_hh`), all initialised uniformly in `±1/sqrt(h)` as
/// PyTorch does.
pub struct LstmLayer {
    /// Input-to-gates weight.
    pub weight_ih: Tensor,
    /// State-to-gates weight.
    pub weight_hh: Tensor,
    /// Gate bias.
    pub bias: Tensor,
    hidden: usize,
}

impl LstmLayer {
    /// A layer from `input` to `hidden` units.
    pub fn new(input: usize, hidden: usize, rng: &mut ChaCha8Rng) -> Result<LstmLayer> {
        if input == 0 || hidden == 0 {
            return arg_err(
                "LstmLayer",
                format!("input ({input}) and hidden ({hidden}) must be positive"),
            );
        }
        let k = 1.0 / (hidden as f32).sqrt();
        let u = |shape: &[usize], rng: &mut ChaCha8Rng| {
            Ok::<_, crate::TensorError>(Tensor::uniform_with(shape, -k, k, rng)?.param())
        };
        Ok(LstmLayer {
            weight_ih: u(&[4 * hidden, input], rng)?,
            weight_hh: u(&[4 * hidden, hidden], rng)?,
            bias: u(&[4 * hidden], rng)?,
            hidden,
        })
    }

    /// Hidden units.
    pub fn hidden(&self) -> usize {
        self.hidden
    }

    /// Runs the layer over `x: [T, n, in]` from the state `(h0, c0)` (each `[n, h]`).
    pub fn forward_from(&self, x: &Tensor, h0: &Tensor, c0: &Tensor) -> Result<LstmOutput> {
        Tensor::lstm(x, h0, c0, &self.weight_ih, &self.weight_hh, &self.bias)
    }

    /// Zero state for `n` sequences on this layer's device.
    pub fn zero_state(&self, n: usize) -> Result<(Tensor, Tensor)> {
        let dev = self.weight_hh.device();
        Ok((
            Tensor::zeros_on(&[n, self.hidden], dev)?,
            Tensor::zeros_on(&[n, self.hidden], dev)?,
        ))
    }
}

impl Module for LstmLayer {
    /// The outputs `[T, n, h]` from a zero state.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let n = x.shape().get(1).copied().unwrap_or(0);
        let (h0, c0) = self.zero_state(n)?;
        Ok(self.forward_from(x, &h0, &c0)?.output)
    }
    fn own_tensors(&self, f: &mut dyn FnMut(&str, &Tensor, TensorKind)) {
        let p = TensorKind::Parameter;
        f("weight_ih", &self.weight_ih, p);
        f("weight_hh", &self.weight_hh, p);
        f("bias", &self.bias, p);
    }
}

/// One window of truncated BPTT: `steps x batch` input ids and their next-token targets,
/// time-major (`inputs[t * batch + j]` is step `t` of column `j`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// Steps in this window (the last window may be shorter).
    pub steps: usize,
    /// Columns (sequences).
    pub batch: usize,
    /// Input ids, `[steps, batch]`.
    pub inputs: Vec<usize>,
    /// Target ids (each input's next token), `[steps, batch]`.
    pub targets: Vec<usize>,
}

/// The windows of truncated BPTT over a token stream (see the [module docs](self)): the
/// stream's first `batch * L` tokens, `L = len / batch`, form `batch` columns of `L`
/// consecutive tokens, read in windows of at most `bptt` steps; each window's targets are its
/// inputs shifted by one step, so consecutive windows continue each column where the last one
/// stopped (`ceil((L - 1) / bptt)` windows).
#[derive(Debug, Clone)]
pub struct TokenWindows {
    columns: Vec<u32>,
    len: usize,
    batch: usize,
    bptt: usize,
    next: usize,
}

impl TokenWindows {
    /// Windows over `stream` with `batch` columns and windows of `bptt` steps; an error when
    /// a column would hold fewer than two tokens (no input-target pair).
    pub fn new(stream: &[u32], batch: usize, bptt: usize) -> Result<TokenWindows> {
        if batch == 0 || bptt == 0 {
            return arg_err(
                "TokenWindows",
                format!("batch ({batch}) and bptt ({bptt}) must be positive"),
            );
        }
        let len = stream.len() / batch;
        if len < 2 {
            return arg_err(
                "TokenWindows",
                format!(
                    "{} tokens make {batch} columns of {len}; each needs at least 2",
                    stream.len()
                ),
            );
        }
        Ok(TokenWindows {
            columns: stream[..batch * len].to_vec(),
            len,
            batch,
            bptt,
            next: 0,
        })
    }

    /// Number of windows in a pass.
    pub fn num_windows(&self) -> usize {
        (self.len - 1).div_ceil(self.bptt)
    }

    /// Input-target pairs in a pass (`batch * (L - 1)`).
    pub fn num_predictions(&self) -> usize {
        self.batch * (self.len - 1)
    }
}

impl Iterator for TokenWindows {
    type Item = Window;

    fn next(&mut self) -> Option<Window> {
        let start = self.next;
        if start + 1 >= self.len {
            return None;
        }
        let steps = self.bptt.min(self.len - 1 - start);
        self.next = start + steps;
        let (n, l) = (self.batch, self.len);
        let at = |t: usize, j: usize| self.columns[j * l + t] as usize;
        let mut inputs = Vec::with_capacity(steps * n);
        let mut targets = Vec::with_capacity(steps * n);
        for t in start..start + steps {
            for j in 0..n {
                inputs.push(at(t, j));
                targets.push(at(t + 1, j));
            }
        }
        Some(Window {
            steps,
            batch: n,
            inputs,
            targets,
        })
    }
}

/// The recurrent state carried from one BPTT window to the next: values only, detached from
/// the graph of the window that produced them.
#[derive(Debug, Clone)]
pub struct CarriedState {
    tensors: Vec<Tensor>,
}

impl CarriedState {
    /// Zeros of the given shapes on `device` (the state before the first window).
    pub fn zeros(shapes: &[&[usize]], device: crate::Device) -> Result<CarriedState> {
        Ok(CarriedState {
            tensors: shapes
                .iter()
                .map(|s| Tensor::zeros_on(s, device))
                .collect::<Result<_>>()?,
        })
    }

    /// The state to start the next window from (no history, no gradient).
    pub fn get(&self) -> &[Tensor] {
        &self.tensors
    }

    /// Keeps `state` (the end of a window) for the next window, detached: copies of the values
    /// on their device, cut from the graph. Shapes must stay the same.
    pub fn carry(&mut self, state: &[Tensor]) -> Result<()> {
        if state.len() != self.tensors.len()
            || state
                .iter()
                .zip(&self.tensors)
                .any(|(a, b)| a.shape() != b.shape())
        {
            return shape_err(
                "CarriedState::carry",
                format!(
                    "state of shapes {:?}, expected {:?}",
                    state.iter().map(|t| t.shape().to_vec()).collect::<Vec<_>>(),
                    self.tensors
                        .iter()
                        .map(|t| t.shape().to_vec())
                        .collect::<Vec<_>>()
                ),
            );
        }
        self.tensors = state.iter().map(Tensor::detach).collect();
        Ok(())
    }
}
