//! nas-tensor: a float32 [`Tensor`] with define-by-run reverse-mode autograd, `nn` layers with
//! PyTorch-style names and initialisations, optimizers (SGD, Adam, cosine schedule, gradient
//! clipping) and safetensors save/load.
//!
//! ```
//! use nas_tensor::{Tensor, no_grad};
//! let w = Tensor::from_vec(vec![1.0, -2.0], &[2, 1]).unwrap().param();
//! let x = Tensor::from_vec(vec![3.0, 4.0], &[1, 2]).unwrap();
//! let loss = x.matmul(&w).unwrap().sum();
//! loss.backward().unwrap();
//! assert_eq!(w.grad_vec().unwrap(), vec![3.0, 4.0]);
//! let y = no_grad(|| x.matmul(&w).unwrap());
//! assert!(!y.requires_grad());
//! ```

#![allow(clippy::neg_cmp_op_on_partial_ord)] // `!(x >= 0.0)` deliberately rejects NaN

pub mod autograd;
pub mod buf;
pub mod error;
pub mod gradcheck;
pub mod io;
pub mod nn;
pub mod ops;
pub mod optim;
pub mod tensor;

pub use error::{Result, TensorError};
pub use gradcheck::{GradcheckOptions, GradcheckReport, gradcheck};
pub use nas_kernels::Device;
pub use ops::conv::ConvOptions;
pub use tensor::{
    NoGradGuard, Tensor, WeakTensor, graph_nodes_recorded, is_grad_enabled, live_graph_nodes,
    no_grad,
};
