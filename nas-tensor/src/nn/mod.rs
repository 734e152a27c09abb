//! Layers with named parameters and buffers, PyTorch-style.
//!
//! A [`Module`] maps a tensor to a tensor and lists its parameters and buffers by dotted
//! name (`stem.0.weight`, `cells.3.edges.2.op.1.running_mean`) through [`Module::visit`].
//! Containers prefix their children's names ([`Sequential`] uses the child's index, as
//! PyTorch). Training/evaluation mode is set with [`Module::set_training`].

mod layers;
mod recurrent;

pub use layers::{
    AvgPool2d, BatchNorm2d, Conv2d, Dropout, Flatten, GlobalAvgPool, Identity, Linear, MaxPool2d,
    ReLU, Sequential, kaiming_uniform_bound,
};
pub use recurrent::{CarriedState, Embedding, LstmLayer, TokenWindows, Window, lookup_in};

use crate::error::Result;
use crate::tensor::Tensor;

/// Whether a named tensor is a trainable parameter or a buffer (running statistics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TensorKind {
    /// Trainable: receives gradients, optimizers update it.
    Parameter,
    /// Not trainable: state saved with the module (e.g. `running_mean`).
    Buffer,
}

/// Joins a prefix and a name with a dot (no dot when the prefix is empty).
pub fn join_name(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

/// A layer or a network.
pub trait Module: Send + Sync {
    /// Applies the module.
    fn forward(&self, x: &Tensor) -> Result<Tensor>;

    /// Calls `f(full_name, tensor, kind)` for every parameter and buffer, names prefixed by
    /// `prefix`, in a fixed order.
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor, TensorKind));

    /// Sets training (`true`) or evaluation (`false`) mode, recursively.
    fn set_training(&mut self, training: bool);

    /// Is the module in training mode?
    fn is_training(&self) -> bool;

    /// Parameters with their names.
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        self.visit("", &mut |n, t, k| {
            if k == TensorKind::Parameter {
                out.push((n.to_string(), t.clone()));
            }
        });
        out
    }

    /// Parameter handles (for optimizers).
    fn parameters(&self) -> Vec<Tensor> {
        self.named_parameters()
            .into_iter()
            .map(|(_, t)| t)
            .collect()
    }

    /// Buffers with their names.
    fn named_buffers(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        self.visit("", &mut |n, t, k| {
            if k == TensorKind::Buffer {
                out.push((n.to_string(), t.clone()));
            }
        });
        out
    }

    /// Parameters and buffers with their names (what is saved and loaded).
    fn state_dict(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        self.visit("", &mut |n, t, _| out.push((n.to_string(), t.clone())));
        out
    }

    /// Total number of trainable scalars.
    fn num_parameters(&self) -> usize {
        self.parameters().iter().map(|t| t.numel()).sum()
    }

    /// Clears the gradients of all parameters.
    fn zero_grad(&self) {
        for p in self.parameters() {
            p.zero_grad();
        }
    }

    /// Moves every parameter and buffer to `device` in place ([`Tensor::move_to`]): handles
    /// held elsewhere (an optimizer's) see the move. Move a network before creating its
    /// optimizer, whose state lives on the parameters' device.
    fn to_device(&self, device: crate::Device) -> Result<()> {
        let mut result = Ok(());
        self.visit("", &mut |_, t, _| {
            if result.is_ok() {
                result = t.move_to(device);
            }
        });
        result
    }

    /// The device of the first parameter or buffer (`None` for a module without any).
    fn device(&self) -> Option<crate::Device> {
        let mut device = None;
        self.visit("", &mut |_, t, _| {
            device.get_or_insert(t.device());
        });
        device
    }
}

impl<M: Module + ?Sized> Module for Box<M> {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        (**self).forward(x)
    }
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor, TensorKind)) {
        (**self).visit(prefix, f)
    }
    fn set_training(&mut self, training: bool) {
        (**self).set_training(training)
    }
    fn is_training(&self) -> bool {
        (**self).is_training()
    }
}
