//! Launches of `kernel.cu` (elementwise ops) on the CUDA backend.

use crate::backend::{BinaryOp, UnaryOp};
use crate::cuda::{Cuda, CudaBuf, Launch, Module};
use crate::error::{KernelError, Result};

const M: Module = Module::Elementwise;

/// Largest rank the broadcasting kernels take.
pub(crate) const MAX_RANK: usize = 8;
/// Buffers one launch takes by value (`NAS_MAX_PTRS`).
pub(crate) const MAX_PTRS: usize = 16;

/// `NasBroadcast` of `prelude.cuh`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct Geo {
    rank: i32,
    dims: [i32; MAX_RANK],
    sa: [i32; MAX_RANK],
    sb: [i32; MAX_RANK],
}

/// `NasPtrs` / `NasMutPtrs` of `prelude.cuh`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct Ptrs {
    p: [u64; MAX_PTRS],
    n: [i32; MAX_PTRS],
}

impl Geo {
    /// Rank `dims.len()` (at most [`MAX_RANK`], checked by the caller) with strides `sa`, `sb`.
    pub(crate) fn new(dims: &[usize], sa: &[usize], sb: &[usize]) -> Geo {
        let mut g = Geo {
            rank: dims.len() as i32,
            ..Geo::default()
        };
        for i in 0..dims.len() {
            g.dims[i] = dims[i] as i32;
            g.sa[i] = sa[i] as i32;
            g.sb[i] = sb.get(i).copied().unwrap_or(0) as i32;
        }
        g
    }
}

impl Ptrs {
    pub(crate) fn of<'a>(bufs: impl IntoIterator<Item = &'a CudaBuf>) -> Ptrs {
        let mut p = Ptrs::default();
        for (i, b) in bufs.into_iter().enumerate() {
            p.p[i] = b.ptr();
            p.n[i] = b.len() as i32;
        }
        p
    }
}

fn unary_code(op: UnaryOp) -> (i32, f32) {
    match op {
        UnaryOp::Relu => (0, 0.0),
        UnaryOp::Neg => (1, 0.0),
        UnaryOp::Exp => (2, 0.0),
        UnaryOp::Log => (3, 0.0),
        UnaryOp::Sqrt => (4, 0.0),
        UnaryOp::Square => (5, 0.0),
        UnaryOp::Abs => (6, 0.0),
        UnaryOp::Tanh => (7, 0.0),
        UnaryOp::Sigmoid => (8, 0.0),
        UnaryOp::Recip => (9, 0.0),
        UnaryOp::Scale(a) => (10, a),
        UnaryOp::AddScalar(a) => (11, a),
    }
}

fn binary_code(op: BinaryOp) -> i32 {
    match op {
        BinaryOp::Add => 0,
        BinaryOp::Sub => 1,
        BinaryOp::Mul => 2,
        BinaryOp::Div => 3,
        BinaryOp::Maximum => 4,
        BinaryOp::Minimum => 5,
    }
}

/// Row-major strides of `shape` right-aligned to rank `rank`, 0 along dims of size 1 that
/// `out` broadcasts (and along the dims `shape` lacks).
fn bstrides(shape: &[usize], out: &[usize]) -> Vec<usize> {
    let r = out.len();
    let mut s = vec![0; r];
    let mut acc = 1;
    for i in (0..shape.len()).rev() {
        let d = r - shape.len() + i;
        s[d] = if shape[i] == 1 && out[d] != 1 { 0 } else { acc };
        acc *= shape[i];
    }
    s
}

fn geo(op: &'static str, dims: &[usize], sa: &[usize], sb: &[usize]) -> Result<Geo> {
    if dims.len() > MAX_RANK {
        return Err(KernelError::param(
            op,
            format!("rank {} exceeds the CUDA kernels' {MAX_RANK}", dims.len()),
        ));
    }
    Ok(Geo::new(dims, sa, sb))
}

pub(crate) fn fill(c: &Cuda, v: f32, y: &CudaBuf) -> Result<()> {
    if y.is_empty() {
        return Ok(());
    }
    Launch::new(M, "ew_fill")
        .over(y.len())
        .buf(y)
        .f32(v)
        .int(y.len())
        .run(c)
}

pub(crate) fn copy(c: &Cuda, x: &CudaBuf, y: &CudaBuf) -> Result<()> {
    debug_assert_eq!(x.len(), y.len());
    if y.is_empty() {
        return Ok(());
    }
    Launch::new(M, "ew_copy")
        .over(y.len())
        .buf(x)
        .buf(y)
        .int(y.len())
        .run(c)
}

pub(crate) fn unary(c: &Cuda, op: UnaryOp, x: &CudaBuf, y: &CudaBuf) -> Result<()> {
    debug_assert_eq!(x.len(), y.len());
    if x.is_empty() {
        return Ok(());
    }
    let (code, a) = unary_code(op);
    Launch::new(M, "ew_unary")
        .over(x.len())
        .i32(code)
        .f32(a)
        .buf(x)
        .buf(y)
        .int(x.len())
        .run(c)
}

pub(crate) fn unary_backward(
    c: &Cuda,
    op: UnaryOp,
    x: &CudaBuf,
    y: &CudaBuf,
    dy: &CudaBuf,
    dx: &CudaBuf,
) -> Result<()> {
    let n = dx.len();
    debug_assert!(x.len() == n && y.len() == n && dy.len() == n);
    if n == 0 {
        return Ok(());
    }
    let (code, a) = unary_code(op);
    Launch::new(M, "ew_unary_backward")
        .over(n)
        .i32(code)
        .f32(a)
        .buf(x)
        .buf(y)
        .buf(dy)
        .buf(dx)
        .int(n)
        .run(c)
}

pub(crate) fn binary(
    c: &Cuda,
    op: BinaryOp,
    a: &CudaBuf,
    a_shape: &[usize],
    b: &CudaBuf,
    b_shape: &[usize],
    out: &CudaBuf,
    out_shape: &[usize],
) -> Result<()> {
    let n = out.len();
    if n == 0 {
        return Ok(());
    }
    let code = binary_code(op);
    if a.len() == n && b.len() == n {
        return Launch::new(M, "ew_binary_flat")
            .over(n)
            .i32(code)
            .buf(a)
            .buf(b)
            .buf(out)
            .int(n)
            .run(c);
    }
    let g = geo(
        "binary",
        out_shape,
        &bstrides(a_shape, out_shape),
        &bstrides(b_shape, out_shape),
    )?;
    Launch::new(M, "ew_binary")
        .over(n)
        .i32(code)
        .buf(a)
        .buf(b)
        .buf(out)
        .val(g)
        .int(n)
        .run(c)
}

pub(crate) fn broadcast_to(
    c: &Cuda,
    x: &CudaBuf,
    x_shape: &[usize],
    out: &CudaBuf,
    out_shape: &[usize],
) -> Result<()> {
    let n = out.len();
    if n == 0 {
        return Ok(());
    }
    let g = geo(
        "broadcast_to",
        out_shape,
        &bstrides(x_shape, out_shape),
        &[],
    )?;
    Launch::new(M, "ew_broadcast")
        .over(n)
        .buf(x)
        .buf(out)
        .val(g)
        .int(n)
        .run(c)
}

pub(crate) fn sum_to_shape(
    c: &Cuda,
    x: &CudaBuf,
    x_shape: &[usize],
    out: &CudaBuf,
    out_shape: &[usize],
) -> Result<()> {
    let n_out = out.len();
    if n_out == 0 {
        return Ok(());
    }
    let r = x_shape.len();
    let xs = bstrides(x_shape, x_shape);
    // out's dims right-aligned to x's rank
    let od: Vec<usize> = (0..r)
        .map(|d| {
            if d + out_shape.len() >= r {
                out_shape[d + out_shape.len() - r]
            } else {
                1
            }
        })
        .collect();
    let (mut kd, mut ks, mut rd, mut rs) = (vec![], vec![], vec![], vec![]);
    for d in 0..r {
        if od[d] == x_shape[d] {
            kd.push(od[d]);
            ks.push(xs[d]);
        } else {
            rd.push(x_shape[d]);
            rs.push(xs[d]);
        }
    }
    let n_red: usize = rd.iter().product();
    let kept = geo("sum_to_shape", &kd, &ks, &[])?;
    let red = geo("sum_to_shape", &rd, &rs, &[])?;
    Launch::new(M, "ew_sum_to_shape")
        .over(n_out)
        .buf(x)
        .buf(out)
        .val(kept)
        .val(red)
        .int(n_out)
        .int(n_red)
        .run(c)
}

pub(crate) fn axpy(c: &Cuda, alpha: f32, x: &CudaBuf, y: &CudaBuf) -> Result<()> {
    debug_assert_eq!(x.len(), y.len());
    if y.is_empty() {
        return Ok(());
    }
    Launch::new(M, "ew_axpy")
        .over(y.len())
        .f32(alpha)
        .buf(x)
        .buf(y)
        .int(y.len())
        .run(c)
}

pub(crate) fn weighted_sum(c: &Cuda, w: &CudaBuf, xs: &[&CudaBuf], out: &CudaBuf) -> Result<()> {
    let n = out.len();
    debug_assert_eq!(w.len(), xs.len());
    if n == 0 {
        return Ok(());
    }
    if xs.is_empty() {
        return fill(c, 0.0, out);
    }
    for (chunk, part) in xs.chunks(MAX_PTRS).enumerate() {
        Launch::new(M, "ew_weighted_sum")
            .over(n)
            .buf(w)
            .int(chunk * MAX_PTRS)
            .val(Ptrs::of(part.iter().copied()))
            .int(part.len())
            .buf(out)
            .int(n)
            .i32((chunk > 0) as i32)
            .run(c)?;
    }
    Ok(())
}

pub(crate) fn weighted_sum_backward(
    c: &Cuda,
    w: &CudaBuf,
    xs: &[&CudaBuf],
    dy: &CudaBuf,
    dxs: &[&CudaBuf],
    dw: &CudaBuf,
) -> Result<()> {
    let n = dy.len();
    debug_assert!(xs.len() == dxs.len() && dw.len() == xs.len());
    if xs.is_empty() {
        return Ok(());
    }
    for (chunk, (xpart, dpart)) in xs.chunks(MAX_PTRS).zip(dxs.chunks(MAX_PTRS)).enumerate() {
        let w0 = chunk * MAX_PTRS;
        if n > 0 {
            Launch::new(M, "ew_weighted_sum_dx")
                .over(n)
                .grid(n.div_ceil(crate::cuda::THREADS as usize), dpart.len(), 1)
                .buf(w)
                .int(w0)
                .buf(dy)
                .val(Ptrs::of(dpart.iter().copied()))
                .int(n)
                .run(c)?;
        }
        Launch::new(M, "ew_weighted_sum_dw")
            .grid(xpart.len(), 1, 1)
            .buf(dy)
            .val(Ptrs::of(xpart.iter().copied()))
            .buf(dw)
            .int(w0)
            .int(n)
            .run(c)?;
    }
    Ok(())
}

/// Copies `ch` channels of `src: [n, cs, hw]` from channel `s0` into `dst: [n, cd, hw]` at
/// channel `d0`.
pub(crate) fn channel_copy(
    c: &Cuda,
    src: &CudaBuf,
    cs: usize,
    s0: usize,
    dst: &CudaBuf,
    cd: usize,
    d0: usize,
    n: usize,
    ch: usize,
    hw: usize,
) -> Result<()> {
    let total = n * ch * hw;
    if total == 0 {
        return Ok(());
    }
    Launch::new(M, "ew_channel_copy")
        .over(total)
        .buf(src)
        .int(cs)
        .int(s0)
        .buf(dst)
        .int(cd)
        .int(d0)
        .int(n)
        .int(ch)
        .int(hw)
        .run(c)
}

pub(crate) fn select_backward(
    c: &Cuda,
    a: &CudaBuf,
    y: &CudaBuf,
    dy: &CudaBuf,
    da: &CudaBuf,
    db: &CudaBuf,
) -> Result<()> {
    let n = y.len();
    if n == 0 {
        return Ok(());
    }
    Launch::new(M, "ew_select_backward")
        .over(n)
        .buf(a)
        .buf(y)
        .buf(dy)
        .buf(da)
        .buf(db)
        .int(n)
        .run(c)
}
