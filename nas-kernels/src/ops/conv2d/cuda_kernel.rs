//! Launches of `kernel.cu` (convolutions) on the CUDA backend.

use super::Conv2dParams;
use crate::cuda::{Cuda, CudaBuf, Launch, Module};
use crate::error::Result;
use crate::ops::matmul::cuda_kernel::TILE;

const M: Module = Module::Conv2d;

/// `NasConv` of `kernel.cu`.
#[repr(C)]
#[derive(Clone, Copy)]
struct Geo([i32; 16]);

fn geo(p: &Conv2dParams) -> Geo {
    let v = [
        p.n,
        p.c_in,
        p.h,
        p.w,
        p.c_out,
        p.kh,
        p.kw,
        p.stride.0,
        p.stride.1,
        p.padding.0,
        p.padding.1,
        p.dilation.0,
        p.dilation.1,
        p.groups,
        p.out_h(),
        p.out_w(),
    ];
    Geo(v.map(|x| x as i32))
}

/// Checks that every index the kernels compute fits an `int`.
fn fits(p: &Conv2dParams) -> Result<()> {
    let big = p.x_len().max(p.y_len()).max(p.w_len());
    crate::cuda::fits_int("conv2d", big)
}

/// `y = conv(x or relu(x), w) + bias`.
pub(crate) fn forward(
    c: &Cuda,
    p: &Conv2dParams,
    x: &CudaBuf,
    w: &CudaBuf,
    bias: Option<&CudaBuf>,
    y: &CudaBuf,
    relu: bool,
) -> Result<()> {
    fits(p)?;
    if p.is_depthwise() {
        return Launch::new(M, "cv_dw_forward")
            .over(p.y_len())
            .buf(x)
            .buf(w)
            .opt(bias)
            .buf(y)
            .val(geo(p))
            .i32(relu as i32)
            .run(c);
    }
    let cog = p.c_out / p.groups;
    let k = (p.c_in / p.groups) * p.kh * p.kw;
    let cols = p.n * p.out_h() * p.out_w();
    let kernel = if c.tf32() {
        "cv_forward_tf32"
    } else {
        "cv_forward"
    };
    Launch::new(M, kernel)
        .grid(cols.div_ceil(TILE), cog.div_ceil(TILE), p.groups)
        .buf(x)
        .buf(w)
        .opt(bias)
        .buf(y)
        .val(geo(p))
        .i32(relu as i32)
        .i32(k.is_multiple_of(4) as i32)
        .run(c)
}

/// `dx = conv_backward_input(w, dy)`, times `(mask > 0)` when a mask is given.
pub(crate) fn backward_input(
    c: &Cuda,
    p: &Conv2dParams,
    w: &CudaBuf,
    dy: &CudaBuf,
    mask: Option<&CudaBuf>,
    dx: &CudaBuf,
) -> Result<()> {
    fits(p)?;
    Launch::new(M, "cv_backward_input")
        .over(p.x_len())
        .buf(w)
        .buf(dy)
        .opt(mask)
        .buf(dx)
        .val(geo(p))
        .run(c)
}

/// Columns of the weight-gradient reduction one block takes on (more: split over blocks).
const SPLIT_CHUNK: usize = 4096;

/// `dw` (and `dbias`) from `x` (read through ReLU when `relu`) and `dy`.
pub(crate) fn backward_weight(
    c: &Cuda,
    p: &Conv2dParams,
    x: &CudaBuf,
    dy: &CudaBuf,
    dw: &CudaBuf,
    dbias: Option<&CudaBuf>,
    relu: bool,
) -> Result<()> {
    fits(p)?;
    let ohw = p.out_h() * p.out_w();
    if let Some(db) = dbias {
        Launch::new(M, "cv_bias_grad")
            .grid(p.c_out, 1, 1)
            .buf(dy)
            .buf(db)
            .int(p.n)
            .int(p.c_out)
            .int(ohw)
            .run(c)?;
    }
    if p.is_depthwise() {
        return Launch::new(M, "cv_dw_backward_weight")
            .grid(p.c_out * p.kh * p.kw, 1, 1)
            .buf(x)
            .buf(dy)
            .buf(dw)
            .val(geo(p))
            .i32(relu as i32)
            .run(c);
    }
    let cog = p.c_out / p.groups;
    let kw = (p.c_in / p.groups) * p.kh * p.kw;
    let cols = p.n * ohw;
    let splits = cols
        .div_ceil(SPLIT_CHUNK)
        .clamp(1, (65535 / p.groups).max(1));
    let chunk = cols.div_ceil(splits);
    let kernel = if c.tf32() {
        "cv_backward_weight_tf32"
    } else {
        "cv_backward_weight"
    };
    let launch = |dst: &CudaBuf| {
        Launch::new(M, kernel)
            .grid(kw.div_ceil(TILE), cog.div_ceil(TILE), p.groups * splits)
            .buf(x)
            .buf(dy)
            .buf(dst)
            .val(geo(p))
            .i32(relu as i32)
            .int(splits)
            .int(chunk)
            .run(c)
    };
    if splits == 1 {
        return launch(dw);
    }
    let parts = c.buffer(splits * dw.len())?;
    launch(&parts)?;
    Launch::new(M, "cv_sum_splits")
        .over(dw.len())
        .buf(&parts)
        .buf(dw)
        .int(splits)
        .int(dw.len())
        .run(c)
}
