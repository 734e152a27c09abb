//! nas-tensor: a float32 [`Tensor`] with define-by-run reverse-mode autograd, `nn` layers with
//! PyTorch-style names and initialisations, optimizers (SGD, Adam, cosine schedule, gradient
//! clipping) and safetensors save/load. Compute goes through the `nas_kernels` [`Backend`]
//! of the device its values live on; a tensor knows its [`Device`].
//!
//! # Devices
//! A tensor's values are a [`storage::Storage`]: a buffer owned by one backend (the CPU's
//! pooled host memory, or the test-only backend's opaque buffers; CUDA joins behind its
//! feature). Every op, gradient accumulation, optimizer update and clip is a backend call
//! on that device; host access is explicit: [`Tensor::from_vec_on`], [`Tensor::to_vec`],
//! [`Tensor::set_data`], [`Tensor::to_device`], and [`nn::Module::to_device`] moves a
//! network. An op on tensors of two devices is an error naming both.
//!
//! # Tour
//! - Create: [`Tensor::from_vec`], [`Tensor::zeros`], [`Tensor::ones`], [`Tensor::randn`] /
//!   [`Tensor::uniform`] / [`Tensor::random_on`] (one seed drawn from a host ChaCha8
//!   generator, the values computed on the device by the counter-based Philox generator of
//!   `nas_kernels::ops::random`: the same on every device), [`Tensor::from_ndarray`]; read with
//!   [`Tensor::to_vec`], [`Tensor::item`], [`Tensor::to_ndarray`].
//! - Parameters are leaves that require gradients: `Tensor::randn(..).param()`, or the
//!   layers in [`nn`]. Any op on them records a graph node (unless inside [`no_grad`]).
//! - `loss.backward()` (scalar loss) adds into every such leaf's gradient, read per handle with
//!   [`Tensor::grad`] (a tensor on the device) / [`Tensor::grad_vec`] (host copy);
//!   [`Tensor::zero_grad`] clears it. The graph is
//!   released as backward walks it. [`Tensor::detach`] cuts a value out of the graph.
//! - Memory: a graph node links to its inputs' graph identities, not to their values; a
//!   value stays alive only while a handle or a gradient rule that reads it holds it (ReLU and
//!   non-affine batch norm keep their outputs, additions, scaling and average pooling keep
//!   nothing), so an intermediate no rule needs is freed as soon as its last user is.
//! - Ops: `add/sub/mul/div/maximum/minimum` (broadcasting), `scale`, `add_scalar`, `relu`,
//!   `exp`, `log`, `sigmoid`, `tanh`, `sqrt`, `square`, `abs`, `recip`, `matmul`, `linear`,
//!   `conv2d` ([`ConvOptions`]: stride, padding, dilation, groups), `max_pool2d`,
//!   `avg_pool2d` (padding excluded from the mean), `global_avg_pool`, `batch_norm`,
//!   `sum/mean`, `sum_dim/mean_dim/max_dim`, `softmax/log_softmax` (any dim),
//!   `cross_entropy`, `reshape/flatten/permute`, `narrow`, [`Tensor::concat`],
//!   [`Tensor::split`], [`Tensor::weighted_sum`] (DARTS mixed op), `dropout`, and
//!   [`Tensor::relu_conv2d`] and [`Tensor::relu_conv_conv`] (ReLU, conv (, conv) as one op
//!   that keeps only its input: NB201's `nor_conv` and the block of DARTS' separable and
//!   dilated convolutions), [`Tensor::pool_batch_norm`] (pool, then non-affine batch norm, as
//!   one op whose output is recomputed in backward rather than kept: DARTS' pooling
//!   candidates); recurrent models:
//!   [`Tensor::embedding`] (gather rows; scatter-add backward), [`Tensor::lstm_cell`],
//!   [`Tensor::lstm`] (a fused multi-step LSTM layer: one GEMM for the input projection of
//!   all steps, one backend call for the recurrence and one for its backward through time),
//!   [`Tensor::dropout_shared`] / [`Tensor::dropout_mask`] (embedding and variational
//!   dropout).
//! - [`nn::Module`]: `forward`, named parameters and buffers (`stem.0.weight`,
//!   `cells.3.op.1.running_mean`), `set_training`; layers `Conv2d`, `BatchNorm2d`, `Linear`,
//!   `ReLU`, `MaxPool2d`, `AvgPool2d`, `GlobalAvgPool`, `Flatten`, `Dropout`, `Identity`,
//!   `Sequential`, `Embedding`, `LstmLayer`; truncated BPTT with [`nn::TokenWindows`] and
//!   [`nn::CarriedState`] (the state carried across windows, detached).
//! - [`optim`]: [`optim::Sgd`], [`optim::Adam`] (take a `Vec` of parameter handles; states
//!   serialise with serde), [`optim::CosineAnnealingLr`], [`optim::clip_grad_norm`].
//! - [`io`]: [`io::save_module`] / [`io::load_module`] (strict names and shapes) and raw
//!   [`io::save_safetensors`] / [`io::load_safetensors`].
//! - [`checkpoint()`]: gradient checkpointing — a segment keeps its inputs, not its
//!   intermediates, and is recomputed during backward (the DARTS supernet's `recompute_cells`).
//! - [`gradcheck()`]: central-difference gradient checking for any function of tensors.
//! - [`buf`]: the CPU backend's buffers return to a per-thread free list when dropped, so
//!   training steps reuse their buffers.
//!
//! ```
//! use nas_tensor::{Tensor, no_grad};
//! let w = Tensor::from_vec(vec![1.0, -2.0], &[2, 1]).unwrap().param();
//! let x = Tensor::from_vec(vec![3.0, 4.0], &[1, 2]).unwrap();
//! let loss = x.matmul(&w).unwrap().sum();
//! loss.backward().unwrap();
//! assert_eq!(w.grad_vec().unwrap(), Some(vec![3.0, 4.0]));
//! let y = no_grad(|| x.matmul(&w).unwrap());
//! assert!(!y.requires_grad());
//! ```
//!
//! Threading: tensors are `Send + Sync` handles; the no-grad flag, the graph-node counters
//! and the buffer pool are per thread.

#![warn(missing_docs)]
#![allow(clippy::neg_cmp_op_on_partial_ord)] // `!(x >= 0.0)` deliberately rejects NaN

pub mod autograd;
pub mod checkpoint;
/// The CPU backend's buffer pool (re-exported from `nas_kernels`).
pub use nas_kernels::buf;
pub mod error;
pub mod gradcheck;
pub mod io;
pub mod nn;
pub mod ops;
pub mod optim;
pub mod storage;
pub mod sync_bn;
pub mod tensor;

pub use checkpoint::checkpoint;
pub use error::{Result, TensorError};
pub use gradcheck::{GradcheckOptions, GradcheckReport, gradcheck};
/// Kernel threads: the process-wide count and per-thread budgets (re-exported from
/// `nas_kernels`).
pub use nas_kernels::threads;
pub use nas_kernels::{Backend, Device, RandomDist};
pub use ops::conv::ConvOptions;
pub use ops::recurrent::LstmOutput;
pub use tensor::{
    NoGradGuard, Tensor, WeakTensor, graph_nodes_recorded, is_grad_enabled, live_graph_nodes,
    no_grad,
};
