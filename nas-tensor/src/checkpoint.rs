//! Gradient checkpointing: keep a segment's inputs, not its intermediates, and recompute the
//! segment during backward.
//!
//! [`checkpoint`] runs a function once without recording a graph and records a single node
//! for it. When backward reaches that node it runs the function again, this time recording,
//! back-propagates the node's output gradient through that short-lived graph, hands the
//! gradients of the segment's inputs on to the outer graph, and drops the segment's graph.
//! Peak memory is then the outer graph plus one segment's graph, for one more forward pass of
//! each checkpointed segment (PyTorch's `torch.utils.checkpoint`).

use crate::error::{Result, TensorError};
use crate::storage::Storage;
use crate::tensor::{Tensor, no_grad, with_grad};

/// Runs `f(inputs)` as one checkpointed segment (see the module docs) and returns its output.
///
/// - `inputs` are the tensors the segment reads that come from the outer computation
///   (activations, and non-leaf tensors such as softmaxed architecture weights). On the
///   recomputation `f` receives fresh leaves holding the same values, and their gradients are
///   returned to the outer graph, so gradients flow on to whatever produced the inputs.
/// - `params` are the leaves `f` uses directly (a module's weights). Their gradients are
///   accumulated into their `.grad` during the recomputation, and only when the outer
///   backward wants them ([`Tensor::backward_for`] with other leaves skips them). A tensor
///   with history in `params` is an error: pass it in `inputs`.
/// - `buffers` are state that a forward pass updates in place (batch-norm running statistics):
///   the first pass updates them; the recomputation's update is undone, so a checkpointed
///   segment changes them exactly as an ordinary forward pass does.
///
/// `f` must compute the same function both times: it may not draw random numbers or depend on
/// state other than its inputs, `params` and `buffers`. Without gradient recording (inside
/// [`no_grad`]), or when nothing needs a gradient, `f` simply runs once.
pub fn checkpoint<F>(
    inputs: &[&Tensor],
    params: &[Tensor],
    buffers: &[Tensor],
    f: F,
) -> Result<Tensor>
where
    F: Fn(&[Tensor]) -> Result<Tensor> + Send + 'static,
{
    let owned: Vec<Tensor> = inputs.iter().map(|&t| t.clone()).collect();
    let records = crate::is_grad_enabled()
        && (inputs.iter().any(|t| t.requires_grad()) || params.iter().any(Tensor::requires_grad));
    if !records {
        return f(&owned);
    }
    if let Some(p) = params.iter().find(|p| !p.is_leaf()) {
        return Err(TensorError::InvalidArgument {
            op: "checkpoint",
            detail: format!(
                "a parameter of shape {:?} has history ({}); pass it in `inputs`",
                p.shape(),
                p.grad_fn_name().unwrap_or("?")
            ),
        });
    }
    let out = no_grad(|| f(&owned))?;
    let n_in = owned.len();
    let mut parents: Vec<&Tensor> = inputs.to_vec();
    parents.extend(params.iter());
    let params = params.to_vec();
    let buffers = buffers.to_vec();
    let shape = out.shape().to_vec();
    let backward = move |g: &Storage, needs: &[bool]| -> Result<Vec<Option<Storage>>> {
        // Undo the recomputation's in-place updates afterwards.
        let saved: Vec<Storage> = buffers
            .iter()
            .map(|b| b.read().try_clone())
            .collect::<Result<_>>()?;
        let leaves: Vec<Tensor> = owned
            .iter()
            .zip(needs)
            .map(|(t, &need)| t.leaf_sharing(need))
            .collect();
        let mut wanted: Vec<Tensor> = leaves
            .iter()
            .zip(needs)
            .filter(|(_, need)| **need)
            .map(|(l, _)| l.clone())
            .collect();
        wanted.extend(
            params
                .iter()
                .zip(&needs[n_in..])
                .filter(|(_, need)| **need)
                .map(|(p, _)| p.clone()),
        );
        let result = (|| -> Result<()> {
            let y = with_grad(|| f(&leaves))?;
            if y.shape() != shape {
                return Err(TensorError::InvalidArgument {
                    op: "checkpoint",
                    detail: format!(
                        "the recomputation returned shape {:?}, the first pass {:?}",
                        y.shape(),
                        shape
                    ),
                });
            }
            if !wanted.is_empty() && y.requires_grad() {
                let gy = Tensor::from_storage(&shape, g.try_clone()?);
                y.backward_from_for(&gy, &wanted)?;
            }
            Ok(())
        })();
        for (b, s) in buffers.iter().zip(&saved) {
            b.write().copy_from(s)?;
        }
        result?;
        let mut grads: Vec<Option<Storage>> = Vec::with_capacity(needs.len());
        for (l, &need) in leaves.iter().zip(needs) {
            grads.push(if need { l.take_grad() } else { None });
        }
        // The parameters' gradients were accumulated by the recomputation's backward.
        grads.resize_with(needs.len(), || None);
        Ok(grads)
    };
    Ok(Tensor::from_op_data(
        "checkpoint",
        out.shape().to_vec(),
        out.data.clone(),
        &parents,
        backward,
    ))
}
