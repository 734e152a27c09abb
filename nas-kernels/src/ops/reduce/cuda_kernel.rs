//! Launches of `kernel.cu` (reductions, softmax, cross-entropy, arg-max) on the CUDA backend.

use super::{ReduceOp, SoftmaxOp};
use crate::cuda::{Cuda, CudaBuf, Launch, Module, THREADS};
use crate::error::{KernelError, Result};

const M: Module = Module::Reduce;
/// Rows per block of the warp-per-row kernels.
const ROWS_PER_BLOCK: usize = THREADS as usize / 32;

fn code(op: ReduceOp) -> i32 {
    match op {
        ReduceOp::Sum => 0,
        ReduceOp::Mean => 1,
        ReduceOp::Max => 2,
    }
}

pub(crate) fn reduce(
    c: &Cuda,
    op: ReduceOp,
    x: &CudaBuf,
    (outer, len, inner): (usize, usize, usize),
    out: &CudaBuf,
) -> Result<()> {
    if outer * inner == 0 {
        return Ok(());
    }
    if inner == 1 {
        Launch::new(M, "rd_rows")
            .grid(outer, 1, 1)
            .i32(code(op))
            .buf(x)
            .buf(out)
            .int(len)
            .run(c)
    } else {
        Launch::new(M, "rd_cols")
            .over(outer * inner)
            .i32(code(op))
            .buf(x)
            .buf(out)
            .int(outer)
            .int(len)
            .int(inner)
            .run(c)
    }
}

pub(crate) fn reduce_backward(
    c: &Cuda,
    op: ReduceOp,
    x: &CudaBuf,
    y: &CudaBuf,
    (outer, len, inner): (usize, usize, usize),
    dy: &CudaBuf,
    dx: &CudaBuf,
) -> Result<()> {
    let n = dx.len();
    if n == 0 {
        return Ok(());
    }
    match op {
        ReduceOp::Sum | ReduceOp::Mean => {
            let scale = if op == ReduceOp::Mean {
                1.0 / len as f32
            } else {
                1.0
            };
            Launch::new(M, "rd_spread")
                .over(n)
                .buf(dy)
                .buf(dx)
                .int(len)
                .int(inner)
                .f32(scale)
                .int(n)
                .run(c)
        }
        ReduceOp::Max => Launch::new(M, "rd_max_backward")
            .over(outer * inner)
            .buf(x)
            .buf(y)
            .buf(dy)
            .buf(dx)
            .int(outer)
            .int(len)
            .int(inner)
            .run(c),
    }
}

fn rows_grid(rows: usize) -> usize {
    rows.div_ceil(ROWS_PER_BLOCK)
}

pub(crate) fn softmax(
    c: &Cuda,
    op: SoftmaxOp,
    x: &CudaBuf,
    rows: usize,
    cols: usize,
    y: &CudaBuf,
) -> Result<()> {
    if rows * cols == 0 {
        return Ok(());
    }
    Launch::new(M, "rd_softmax")
        .grid(rows_grid(rows), 1, 1)
        .i32((op == SoftmaxOp::LogSoftmax) as i32)
        .buf(x)
        .buf(y)
        .int(rows)
        .int(cols)
        .run(c)
}

pub(crate) fn softmax_backward(
    c: &Cuda,
    op: SoftmaxOp,
    y: &CudaBuf,
    dy: &CudaBuf,
    rows: usize,
    cols: usize,
    dx: &CudaBuf,
) -> Result<()> {
    if rows * cols == 0 {
        return Ok(());
    }
    Launch::new(M, "rd_softmax_backward")
        .grid(rows_grid(rows), 1, 1)
        .i32((op == SoftmaxOp::LogSoftmax) as i32)
        .buf(y)
        .buf(dy)
        .buf(dx)
        .int(rows)
        .int(cols)
        .run(c)
}

/// Labels checked (each `< cols`: the kernels index rows with them) and uploaded.
fn labels_on_device(c: &Cuda, op: &'static str, labels: &[usize], cols: usize) -> Result<CudaBuf> {
    if let Some((i, &l)) = labels.iter().enumerate().find(|(_, l)| **l >= cols) {
        return Err(KernelError::param(
            op,
            format!("label {l} at row {i} is out of range for {cols} classes"),
        ));
    }
    let l: Vec<u32> = labels.iter().map(|&v| v as u32).collect();
    c.upload_u32(&l)
}

pub(crate) fn cross_entropy(
    c: &Cuda,
    logits: &CudaBuf,
    labels: &[usize],
    rows: usize,
    cols: usize,
    loss: &CudaBuf,
) -> Result<()> {
    let l = labels_on_device(c, "cross_entropy", labels, cols)?;
    Launch::new(M, "rd_cross_entropy")
        .grid(1, 1, 1)
        .buf(logits)
        .buf(&l)
        .buf(loss)
        .int(rows)
        .int(cols)
        .run(c)
}

pub(crate) fn cross_entropy_backward(
    c: &Cuda,
    logits: &CudaBuf,
    labels: &[usize],
    rows: usize,
    cols: usize,
    dloss: &CudaBuf,
    dlogits: &CudaBuf,
) -> Result<()> {
    let l = labels_on_device(c, "cross_entropy_backward", labels, cols)?;
    if rows * cols == 0 {
        return Ok(());
    }
    Launch::new(M, "rd_cross_entropy_backward")
        .grid(rows_grid(rows), 1, 1)
        .buf(logits)
        .buf(&l)
        .buf(dloss)
        .buf(dlogits)
        .int(rows)
        .int(cols)
        .run(c)
}

pub(crate) fn argmax_rows(
    c: &Cuda,
    x: &CudaBuf,
    rows: usize,
    cols: usize,
    out: &CudaBuf,
) -> Result<()> {
    if rows == 0 {
        return Ok(());
    }
    Launch::new(M, "rd_argmax_rows")
        .over(rows)
        .buf(x)
        .buf(out)
        .int(rows)
        .int(cols)
        .run(c)
}
