//! Layers with named parameters and buffers, PyTorch-style.
//!
//! A [`Module`] maps a tensor to a tensor and lists its parameters and buffers by dotted
//! name (`stem.0.weight`, `cells.3.edges.2.op.1.running_mean`) through [`Module::visit`].
//! Containers prefix their children's names ([`Sequential`] uses the child's index, as
//! PyTorch). Training/evaluation mode is set with [`Module::set_training`].
//!
//! A layer writes its `forward` and says what it holds: its own parameters and buffers
//! ([`Module::own_tensors`]) and its child modules with their names ([`Module::children`]).
//! Every walk — names, parameters, buffers, devices, modes — follows from those two, so a
//! new layer made of existing ones writes `forward` and `children` only. A layer whose
//! forward depends on the mode (batch norm, dropout, drop-path) keeps a [`Mode`] and reports
//! it ([`Module::own_mode`]).

mod layers;
mod recurrent;

pub use layers::{
    AvgPool2d, BatchNorm2d, Conv2d, Dropout, Flatten, GlobalAvgPool, Identity, Linear, MaxPool2d,
    ReLU, Sequential, kaiming_uniform_bound,
};
pub use recurrent::{CarriedState, Embedding, LstmLayer, TokenWindows, Window, lookup_in};

use std::sync::atomic::{AtomicBool, Ordering};

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

/// Joins a prefix and a name with a dot (no dot when either is empty).
pub fn join_name(prefix: &str, name: &str) -> String {
    if name.is_empty() {
        prefix.to_string()
    } else if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

/// Training (`true`) or evaluation (`false`) mode of a layer whose forward depends on it,
/// settable through a shared reference (so that a whole network's mode is set by walking its
/// children). Starts in training mode.
#[derive(Debug)]
pub struct Mode(AtomicBool);

impl Mode {
    /// A mode flag, training when `training`.
    pub fn new(training: bool) -> Mode {
        Mode(AtomicBool::new(training))
    }
    /// Training?
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
    /// Sets it.
    pub fn set(&self, training: bool) {
        self.0.store(training, Ordering::Relaxed)
    }
}

impl Default for Mode {
    fn default() -> Self {
        Mode::new(true)
    }
}

impl Clone for Mode {
    fn clone(&self) -> Self {
        Mode::new(self.get())
    }
}

/// A module's buffers and copies of their values ([`Module::buffer_snapshot`]).
pub struct BufferSnapshot(Vec<(Tensor, Tensor)>);

impl BufferSnapshot {
    /// Writes the saved values back into the buffers.
    pub fn restore(&self) -> Result<()> {
        for (t, saved) in &self.0 {
            t.copy_from(saved)?;
        }
        Ok(())
    }
}

/// A layer or a network (see the [module docs](self) for what a layer writes).
pub trait Module: Send + Sync {
    /// Applies the module.
    fn forward(&self, x: &Tensor) -> Result<Tensor>;

    /// Calls `f(name, child)` for every child module, in a fixed order; `name` is the
    /// child's part of its tensors' names (`"stem"`, `"cells.3"`; empty for a wrapper that
    /// adds none). Default: none (a leaf).
    fn children(&self, f: &mut dyn FnMut(&str, &dyn Module)) {
        let _ = f;
    }

    /// Calls `f(name, tensor, kind)` for the module's own parameters and buffers (not its
    /// children's), in a fixed order. Default: none.
    fn own_tensors(&self, f: &mut dyn FnMut(&str, &Tensor, TensorKind)) {
        let _ = f;
    }

    /// The mode flag of a layer whose forward depends on it. Default: none.
    fn own_mode(&self) -> Option<&Mode> {
        None
    }

    /// Calls `f(full_name, tensor, kind)` for every parameter and buffer, names prefixed by
    /// `prefix`, in a fixed order: the module's own, then each child's.
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor, TensorKind)) {
        self.own_tensors(&mut |n, t, k| f(&join_name(prefix, n), t, k));
        self.children(&mut |n, c| c.visit(&join_name(prefix, n), f));
    }

    /// Sets training (`true`) or evaluation (`false`) mode, recursively.
    fn set_training(&self, training: bool) {
        if let Some(m) = self.own_mode() {
            m.set(training);
        }
        self.children(&mut |_, c| c.set_training(training));
    }

    /// Is the module in training mode? Its own mode, or else that of the first module below
    /// it that has one (`false` when none has: nothing it computes depends on the mode).
    fn is_training(&self) -> bool {
        if let Some(m) = self.own_mode() {
            return m.get();
        }
        let mut found = None;
        self.children(&mut |_, c| {
            if found.is_none() && c.has_mode() {
                found = Some(c.is_training());
            }
        });
        found.unwrap_or(false)
    }

    /// Does the module, or a module below it, have a mode?
    fn has_mode(&self) -> bool {
        let mut any = self.own_mode().is_some();
        self.children(&mut |_, c| any = any || c.has_mode());
        any
    }

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

    /// The buffers (running statistics) as they are now, to put back with
    /// [`BufferSnapshot::restore`] after passes whose statistics must not count.
    fn buffer_snapshot(&self) -> BufferSnapshot {
        BufferSnapshot(
            self.named_buffers()
                .into_iter()
                .map(|(_, t)| {
                    let saved = t.detach();
                    (t, saved)
                })
                .collect(),
        )
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
    fn children(&self, f: &mut dyn FnMut(&str, &dyn Module)) {
        (**self).children(f)
    }
    fn own_tensors(&self, f: &mut dyn FnMut(&str, &Tensor, TensorKind)) {
        (**self).own_tensors(f)
    }
    fn own_mode(&self) -> Option<&Mode> {
        (**self).own_mode()
    }
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor, TensorKind)) {
        (**self).visit(prefix, f)
    }
    fn set_training(&self, training: bool) {
        (**self).set_training(training)
    }
    fn is_training(&self) -> bool {
        (**self).is_training()
    }
}
