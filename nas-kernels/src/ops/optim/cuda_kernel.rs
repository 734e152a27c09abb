//! Launches of `kernel.cu` (optimizer steps, gradient clipping) on the CUDA backend.

use super::{AdamStep, SgdStep};
use crate::cuda::{Cuda, CudaBuf, Launch, Module};
use crate::error::Result;
use crate::ops::elementwise::cuda_kernel::{MAX_PTRS, Ptrs};

const M: Module = Module::Optim;
/// Blocks per buffer of the clipping kernels.
const CLIP_BLOCKS: usize = 32;

pub(crate) fn sgd(
    c: &Cuda,
    p: &SgdStep,
    w: &CudaBuf,
    g: &CudaBuf,
    buf: Option<&CudaBuf>,
) -> Result<()> {
    let n = w.len();
    if n == 0 {
        return Ok(());
    }
    Launch::new(M, "opt_sgd")
        .over(n)
        .buf(w)
        .buf(g)
        .opt(buf)
        .f32(p.lr)
        .f32(p.momentum)
        .f32(p.dampening)
        .i32(p.nesterov as i32)
        .f32(p.weight_decay)
        .i32(p.first as i32)
        .int(n)
        .run(c)
}

pub(crate) fn adam(
    c: &Cuda,
    p: &AdamStep,
    w: &CudaBuf,
    g: &CudaBuf,
    m: &CudaBuf,
    v: &CudaBuf,
) -> Result<()> {
    let n = w.len();
    if n == 0 {
        return Ok(());
    }
    // the bias corrections as the CPU computes them (f32)
    let bc1 = 1.0 - p.beta1.powi(p.step as i32);
    let bc2 = 1.0 - p.beta2.powi(p.step as i32);
    Launch::new(M, "opt_adam")
        .over(n)
        .buf(w)
        .buf(g)
        .buf(m)
        .buf(v)
        .f32(p.beta1)
        .f32(p.beta2)
        .f32(p.eps)
        .f32(p.weight_decay)
        .f32(p.lr / bc1)
        .f32(bc2.sqrt())
        .int(n)
        .run(c)
}

pub(crate) fn clip(c: &Cuda, grads: &[&CudaBuf], max_norm: f32, total: &CudaBuf) -> Result<()> {
    let slots = grads.len().max(1) * CLIP_BLOCKS;
    // one double per slot: two floats each
    let partial = c.buffer(2 * slots)?;
    crate::ops::elementwise::cuda_kernel::fill(c, 0.0, &partial)?;
    for (chunk, part) in grads.chunks(MAX_PTRS).enumerate() {
        Launch::new(M, "opt_sumsq_partial")
            .grid(CLIP_BLOCKS, part.len(), 1)
            .val(Ptrs::of(part.iter().copied()))
            .buf(&partial)
            .int(chunk * MAX_PTRS)
            .int(CLIP_BLOCKS)
            .run(c)?;
    }
    Launch::new(M, "opt_norm_total")
        .grid(1, 1, 1)
        .buf(&partial)
        .int(slots)
        .buf(total)
        .run(c)?;
    for part in grads.chunks(MAX_PTRS) {
        Launch::new(M, "opt_clip_scale")
            .grid(CLIP_BLOCKS, part.len(), 1)
            .val(Ptrs::of(part.iter().copied()))
            .buf(total)
            .f32(max_norm)
            .run(c)?;
    }
    Ok(())
}
