//! Launches of `kernel.cu` (embedding rows and the LSTM) on the CUDA backend.

use super::{Lstm, LstmCell, Rows};
use crate::cuda::{Cuda, CudaBuf, Launch, Module};
use crate::error::Result;

const M: Module = Module::Recurrent;

fn indices(c: &Cuda, indices: &[usize]) -> Result<CudaBuf> {
    let v: Vec<u32> = indices.iter().map(|&i| i as u32).collect();
    c.upload_u32(&v)
}

pub(crate) fn gather_rows(
    c: &Cuda,
    p: &Rows,
    table: &CudaBuf,
    idx: &[usize],
    out: &CudaBuf,
) -> Result<()> {
    if idx.is_empty() || p.cols == 0 {
        return Ok(());
    }
    let ib = indices(c, idx)?;
    Launch::new(M, "rc_gather")
        .over(idx.len() * p.cols)
        .buf(table)
        .buf(&ib)
        .buf(out)
        .int(idx.len())
        .int(p.cols)
        .run(c)
}

pub(crate) fn scatter_add_rows(
    c: &Cuda,
    p: &Rows,
    src: &CudaBuf,
    idx: &[usize],
    table: &CudaBuf,
) -> Result<()> {
    if idx.is_empty() || p.cols == 0 {
        return Ok(());
    }
    let ib = indices(c, idx)?;
    Launch::new(M, "rc_scatter_add")
        .over(p.cols)
        .buf(src)
        .buf(&ib)
        .buf(table)
        .int(idx.len())
        .int(p.cols)
        .run(c)
}

pub(crate) fn cell_forward(
    c: &Cuda,
    p: &LstmCell,
    gates: &CudaBuf,
    c_prev: &CudaBuf,
    act: &CudaBuf,
    hc: &CudaBuf,
) -> Result<()> {
    if p.batch * p.hidden == 0 {
        return Ok(());
    }
    Launch::new(M, "rc_cell_fwd")
        .over(p.batch * p.hidden)
        .buf(gates)
        .buf(c_prev)
        .buf(act)
        .buf(hc)
        .int(p.batch)
        .int(p.hidden)
        .run(c)
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn cell_backward(
    c: &Cuda,
    p: &LstmCell,
    act: &CudaBuf,
    c_prev: &CudaBuf,
    hc: &CudaBuf,
    dhc: &CudaBuf,
    dgates: &CudaBuf,
    dc_prev: &CudaBuf,
) -> Result<()> {
    if p.batch * p.hidden == 0 {
        return Ok(());
    }
    Launch::new(M, "rc_cell_bwd")
        .over(p.batch * p.hidden)
        .buf(act)
        .buf(c_prev)
        .buf(hc)
        .buf(dhc)
        .buf(dgates)
        .buf(dc_prev)
        .int(p.batch)
        .int(p.hidden)
        .run(c)
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn sequence_forward(
    c: &Cuda,
    p: &Lstm,
    xg: &CudaBuf,
    w_hh: &CudaBuf,
    h0: &CudaBuf,
    c0: &CudaBuf,
    act: &CudaBuf,
    hs: &CudaBuf,
    cs: &CudaBuf,
) -> Result<()> {
    let (n, h) = (p.batch, p.hidden);
    if n * h == 0 {
        return Ok(());
    }
    for t in 0..p.steps {
        Launch::new(M, "rc_seq_gates")
            .over(n * 4 * h)
            .buf(xg)
            .buf(w_hh)
            .buf(h0)
            .buf(hs)
            .buf(act)
            .int(t)
            .int(n)
            .int(h)
            .run(c)?;
        Launch::new(M, "rc_seq_point")
            .over(n * h)
            .buf(act)
            .buf(c0)
            .buf(hs)
            .buf(cs)
            .int(t)
            .int(n)
            .int(h)
            .run(c)?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn sequence_backward(
    c: &Cuda,
    p: &Lstm,
    w_hh: &CudaBuf,
    c0: &CudaBuf,
    act: &CudaBuf,
    cs: &CudaBuf,
    dhs: &CudaBuf,
    dxg: &CudaBuf,
    dh0: &CudaBuf,
    dc0: &CudaBuf,
) -> Result<()> {
    let (n, h) = (p.batch, p.hidden);
    if n * h == 0 {
        return Ok(());
    }
    // The gradients carried from step t + 1 into step t: none into the last step. They live
    // in dh0 and dc0, which hold the initial state's gradients when the loop ends.
    crate::ops::elementwise::cuda_kernel::fill(c, 0.0, dh0)?;
    crate::ops::elementwise::cuda_kernel::fill(c, 0.0, dc0)?;
    for t in (0..p.steps).rev() {
        Launch::new(M, "rc_seq_bwd_point")
            .over(n * h)
            .buf(act)
            .buf(c0)
            .buf(cs)
            .buf(dhs)
            .buf(dh0)
            .buf(dc0)
            .buf(dxg)
            .int(t)
            .int(n)
            .int(h)
            .run(c)?;
        Launch::new(M, "rc_seq_bwd_dh")
            .over(n * h)
            .buf(dxg)
            .buf(w_hh)
            .buf(dh0)
            .int(t)
            .int(n)
            .int(h)
            .run(c)?;
    }
    Ok(())
}
