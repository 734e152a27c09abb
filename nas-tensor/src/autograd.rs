//! Reverse-mode autograd: `backward()` walks the recorded graph from a scalar loss.
//!
//! Every op result that needs a gradient holds a [`Node`](crate::tensor) with its inputs and a
//! gradient rule. `backward` orders the nodes reachable from the loss topologically (depth-first,
//! iterative), then visits them from the loss down, handing each node the gradient of its output
//! and accumulating what it returns per input. Leaves that require gradients accumulate into
//! their `.grad`. Every node visited is taken out of its tensor and dropped, so the graph's
//! memory (saved inputs, intermediates) is released by the time `backward` returns.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::error::{Result, TensorError};
use crate::storage::{self, Storage};
use crate::tensor::{Inner, Tensor};

impl Tensor {
    /// Backpropagates from this scalar: adds d(self)/d(leaf) into the `.grad` of every leaf that
    /// requires a gradient, then releases the graph.
    pub fn backward(&self) -> Result<()> {
        if self.numel() != 1 {
            return Err(TensorError::NonScalarBackward(self.shape().to_vec()));
        }
        let seed = Storage::full(self.device(), 1, 1.0)?;
        self.backward_impl(seed, None)
    }

    /// Backpropagates with an explicit output gradient (same number of elements as `self`).
    pub fn backward_with(&self, grad_output: &[f32]) -> Result<()> {
        let seed = self.seed(grad_output)?;
        self.backward_impl(seed, None)
    }

    /// The output gradient on this tensor's device (checked against its size).
    fn seed(&self, grad_output: &[f32]) -> Result<Storage> {
        if grad_output.len() != self.numel() {
            return Err(TensorError::Shape {
                op: "backward",
                detail: format!(
                    "output gradient has {} values, tensor has shape {:?}",
                    grad_output.len(),
                    self.shape()
                ),
            });
        }
        Storage::from_slice(self.device(), grad_output)
    }

    /// Like [`Tensor::backward`], but computes only the gradients that flow into `leaves`
    /// (PyTorch's `torch.autograd.grad(loss, leaves)`, accumulated into their `.grad`): other
    /// leaves' `.grad` are left as they are, and no gradient rule runs for an op none of
    /// whose inputs leads to one of `leaves`, nor for an input that does not (a convolution's
    /// weight gradient, say, when only the architecture weights are wanted). The graph is
    /// released as by `backward`.
    pub fn backward_for(&self, leaves: &[Tensor]) -> Result<()> {
        if self.numel() != 1 {
            return Err(TensorError::NonScalarBackward(self.shape().to_vec()));
        }
        let seed = Storage::full(self.device(), 1, 1.0)?;
        self.backward_impl(seed, Some(leaves))
    }

    /// [`Tensor::backward_with`] with the output gradient given as a tensor on this
    /// tensor's device (no host transfer): gradient checkpointing hands a recomputed
    /// segment the gradient of its output this way.
    pub fn backward_from(&self, grad_output: &Tensor) -> Result<()> {
        let seed = self.seed_from(grad_output)?;
        self.backward_impl(seed, None)
    }

    /// [`Tensor::backward_for`] with the output gradient given as a tensor on this tensor's
    /// device.
    pub fn backward_from_for(&self, grad_output: &Tensor, leaves: &[Tensor]) -> Result<()> {
        let seed = self.seed_from(grad_output)?;
        self.backward_impl(seed, Some(leaves))
    }

    fn seed_from(&self, grad_output: &Tensor) -> Result<Storage> {
        if grad_output.numel() != self.numel() {
            return Err(TensorError::Shape {
                op: "backward",
                detail: format!(
                    "output gradient has shape {:?}, tensor has shape {:?}",
                    grad_output.shape(),
                    self.shape()
                ),
            });
        }
        crate::tensor::check_same_device("backward", self, grad_output)?;
        grad_output.read().try_clone()
    }

    /// [`Tensor::backward_for`] with an explicit output gradient.
    pub fn backward_with_for(&self, grad_output: &[f32], leaves: &[Tensor]) -> Result<()> {
        let seed = self.seed(grad_output)?;
        self.backward_impl(seed, Some(leaves))
    }

    fn backward_impl(&self, grad_output: Storage, leaves: Option<&[Tensor]>) -> Result<()> {
        if !self.requires_grad() {
            return Err(TensorError::InvalidArgument {
                op: "backward",
                detail: "the tensor does not require a gradient (no parameter was involved, or it was computed under no_grad)".into(),
            });
        }
        if !self.is_leaf() && self.grad_fn_name().is_none() {
            return Err(TensorError::InvalidArgument {
                op: "backward",
                detail: "the graph of this tensor was already released by an earlier backward"
                    .into(),
            });
        }
        let order = topo_order(&self.inner);
        // With `leaves`: which tensors lead to one of them (inputs come first in `order`).
        let reach: Option<HashSet<u64>> = leaves.map(|leaves| {
            let mut reach: HashSet<u64> = HashSet::new();
            let wanted: HashSet<u64> = leaves.iter().map(Tensor::id).collect();
            for t in &order {
                let node = t.node.lock().unwrap_or_else(|e| e.into_inner());
                let leads = match node.as_ref() {
                    None => wanted.contains(&t.id),
                    Some(n) => n.parents.iter().any(|p| reach.contains(&p.id)),
                };
                if leads {
                    reach.insert(t.id);
                }
            }
            reach
        });
        let leads = |t: &Inner| reach.as_ref().is_none_or(|r| r.contains(&t.id));
        let mut grads: HashMap<u64, Storage> = HashMap::new();
        grads.insert(self.id(), grad_output);
        for t in order.iter().rev() {
            let node = t.node.lock().unwrap_or_else(|e| e.into_inner()).take();
            let Some(g) = grads.remove(&t.id) else {
                continue;
            };
            if !leads(t) {
                continue;
            }
            match node {
                None => {
                    if t.is_leaf && t.requires_grad {
                        t.accumulate_grad(g)?;
                    }
                }
                Some(node) => {
                    let needs: Vec<bool> = node
                        .parents
                        .iter()
                        .map(|p| p.requires_grad && leads(p))
                        .collect();
                    let crate::tensor::Node {
                        op,
                        parents,
                        backward,
                        _live,
                    } = node;
                    let pgrads = backward(&g, &needs)?;
                    debug_assert_eq!(pgrads.len(), parents.len(), "{op}: one gradient per input");
                    for ((p, pg), need) in parents.iter().zip(pgrads).zip(needs) {
                        let Some(pg) = pg else { continue };
                        if !need {
                            continue;
                        }
                        if pg.len() != p.numel() {
                            return Err(TensorError::Shape {
                                op,
                                detail: format!(
                                    "gradient rule returned {} values for an input of shape {:?}",
                                    pg.len(),
                                    p.shape
                                ),
                            });
                        }
                        match grads.get_mut(&p.id) {
                            Some(acc) => storage::axpy(1.0, &pg, acc)?,
                            None => {
                                grads.insert(p.id, pg);
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// Tensors reachable from `root` through recorded nodes, inputs before the ops that use them.
fn topo_order(root: &Arc<Inner>) -> Vec<Arc<Inner>> {
    let mut order = Vec::new();
    let mut seen = HashSet::new();
    // (tensor, children already pushed?)
    let mut stack = vec![(root.clone(), false)];
    while let Some((t, expanded)) = stack.pop() {
        if expanded {
            order.push(t);
            continue;
        }
        if !seen.insert(t.id) {
            continue;
        }
        let parents: Vec<Arc<Inner>> = t
            .node
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|n| {
                n.parents
                    .iter()
                    .filter(|p| p.requires_grad)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        stack.push((t, true));
        for p in parents {
            if !seen.contains(&p.id) {
                stack.push((p, false));
            }
        }
    }
    order
}
