//! Launches of `kernel.cu` (batch norm) on the CUDA backend.

use super::BatchNormParams;
use crate::cuda::{Cuda, CudaBuf, Launch, Module};
use crate::error::Result;

const M: Module = Module::BatchNorm;

pub(crate) fn forward(
    c: &Cuda,
    p: &BatchNormParams,
    x: &CudaBuf,
    gamma: Option<&CudaBuf>,
    beta: Option<&CudaBuf>,
    running_mean: Option<&CudaBuf>,
    running_var: Option<&CudaBuf>,
    y: &CudaBuf,
    save_mean: &CudaBuf,
    save_invstd: &CudaBuf,
) -> Result<()> {
    let total = p.x_len();
    if p.training {
        Launch::new(M, "bn_stats")
            .grid(p.c, 1, 1)
            .buf(x)
            .buf(save_mean)
            .buf(save_invstd)
            .opt(running_mean)
            .opt(running_var)
            .int(p.n)
            .int(p.c)
            .int(p.hw)
            .f32(p.eps)
            .f32(p.momentum)
            .run(c)?;
    } else {
        let (Some(rm), Some(rv)) = (running_mean, running_var) else {
            return Err(crate::KernelError::param(
                "batch_norm",
                "evaluation mode needs running_mean and running_var",
            ));
        };
        Launch::new(M, "bn_eval_stats")
            .over(p.c)
            .buf(rm)
            .buf(rv)
            .buf(save_mean)
            .buf(save_invstd)
            .int(p.c)
            .f32(p.eps)
            .run(c)?;
    }
    Launch::new(M, "bn_normalize")
        .over(total)
        .buf(x)
        .opt(gamma)
        .opt(beta)
        .buf(save_mean)
        .buf(save_invstd)
        .buf(y)
        .int(p.c)
        .int(p.hw)
        .int(total)
        .run(c)
}

pub(crate) fn backward(
    c: &Cuda,
    p: &BatchNormParams,
    x: &CudaBuf,
    gamma: Option<&CudaBuf>,
    save_mean: &CudaBuf,
    save_invstd: &CudaBuf,
    dy: &CudaBuf,
    dx: &CudaBuf,
    dgamma: Option<&CudaBuf>,
    dbeta: Option<&CudaBuf>,
) -> Result<()> {
    let total = p.x_len();
    let coef = c.buffer(3 * p.c)?;
    Launch::new(M, "bn_backward_stats")
        .grid(p.c, 1, 1)
        .buf(x)
        .buf(dy)
        .opt(gamma)
        .buf(save_mean)
        .buf(save_invstd)
        .opt(dgamma)
        .opt(dbeta)
        .buf(&coef)
        .int(p.n)
        .int(p.c)
        .int(p.hw)
        .i32(p.training as i32)
        .run(c)?;
    Launch::new(M, "bn_backward_dx")
        .over(total)
        .buf(x)
        .buf(dy)
        .buf(save_mean)
        .buf(&coef)
        .buf(dx)
        .int(p.c)
        .int(p.hw)
        .int(total)
        .run(c)
}
