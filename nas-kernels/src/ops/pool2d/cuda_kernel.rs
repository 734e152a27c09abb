//! Launches of `kernel.cu` (pooling) on the CUDA backend.

use super::{Pool2dParams, PoolKind};
use crate::cuda::{Cuda, CudaBuf, Launch, Module, THREADS};
use crate::error::Result;

const M: Module = Module::Pool2d;

/// `NasPool` of `kernel.cu`.
#[repr(C)]
#[derive(Clone, Copy)]
struct Geo([i32; 12]);

fn geo(p: &Pool2dParams) -> Geo {
    let kind = match p.kind {
        PoolKind::Max => 0,
        PoolKind::Avg {
            count_include_pad: false,
        } => 1,
        PoolKind::Avg {
            count_include_pad: true,
        } => 2,
    };
    let v = [
        p.n * p.c,
        p.h,
        p.w,
        p.kernel.0,
        p.kernel.1,
        p.stride.0,
        p.stride.1,
        p.padding.0,
        p.padding.1,
        p.out_h(),
        p.out_w(),
        kind,
    ];
    Geo(v.map(|x| x as i32))
}

pub(crate) fn forward(c: &Cuda, p: &Pool2dParams, x: &CudaBuf, y: &CudaBuf) -> Result<()> {
    crate::cuda::fits_int("pool2d", p.x_len().max(p.y_len()))?;
    Launch::new(M, "pl_forward")
        .over(p.y_len())
        .buf(x)
        .buf(y)
        .val(geo(p))
        .run(c)
}

/// `x` is only read by max pooling (average pooling's callers may pass an empty buffer).
pub(crate) fn backward(
    c: &Cuda,
    p: &Pool2dParams,
    x: &CudaBuf,
    dy: &CudaBuf,
    dx: &CudaBuf,
) -> Result<()> {
    crate::cuda::fits_int("pool2d_backward", p.x_len().max(p.y_len()))?;
    Launch::new(M, "pl_backward")
        .over(p.x_len())
        .buf(x)
        .buf(dy)
        .buf(dx)
        .val(geo(p))
        .run(c)
}

pub(crate) fn global_avg(
    c: &Cuda,
    planes: usize,
    hw: usize,
    x: &CudaBuf,
    y: &CudaBuf,
) -> Result<()> {
    if planes == 0 {
        return Ok(());
    }
    Launch::new(M, "pl_global_avg")
        .grid(planes.div_ceil(THREADS as usize / 32), 1, 1)
        .buf(x)
        .buf(y)
        .int(planes)
        .int(hw)
        .run(c)
}

pub(crate) fn global_avg_backward(c: &Cuda, hw: usize, dy: &CudaBuf, dx: &CudaBuf) -> Result<()> {
    if dx.is_empty() {
        return Ok(());
    }
    Launch::new(M, "pl_global_avg_backward")
        .over(dx.len())
        .buf(dy)
        .buf(dx)
        .int(hw)
        .int(dx.len())
        .run(c)
}
