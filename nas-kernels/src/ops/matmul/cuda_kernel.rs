//! Launches of `kernel.cu` (SGEMM) on the CUDA backend.

use super::Matmul;
use crate::cuda::{Cuda, CudaBuf, Launch, Module};
use crate::error::Result;

/// Tile of C per block (`TBM`, `TBN` in the prelude).
pub(crate) const TILE: usize = 64;

pub(crate) fn matmul(c: &Cuda, p: &Matmul, a: &CudaBuf, b: &CudaBuf, out: &CudaBuf) -> Result<()> {
    let (m, n, k) = (p.m, p.n, p.k);
    if p.batch * m * n == 0 {
        return Ok(());
    }
    // float4 loads: rows contiguous along K (A) / N (B), the row length a multiple of 4 (so
    // every row, and each batch element, starts 16-byte aligned: buffers are 256-aligned)
    let vec_a = !p.trans_a && k.is_multiple_of(4);
    let vec_b = !p.trans_b && n.is_multiple_of(4);
    let flags = p.trans_a as i32
        | (p.trans_b as i32) << 1
        | (vec_a as i32) << 2
        | (vec_b as i32) << 3
        | (p.b_shared as i32) << 4;
    // TF32 tensor cores when on (Cuda::set_tf32): same grid, arguments and tiles
    let kernel = if c.tf32() {
        "mm_sgemm_tf32"
    } else {
        "mm_sgemm"
    };
    let mut z0 = 0;
    while z0 < p.batch {
        let zs = (p.batch - z0).min(65535);
        Launch::new(Module::Matmul, kernel)
            .grid(n.div_ceil(TILE), m.div_ceil(TILE), zs)
            .buf(a)
            .buf(b)
            .buf(out)
            .int(m)
            .int(n)
            .int(k)
            .f32(p.alpha)
            .f32(p.beta)
            .i32(flags)
            .int(z0)
            .run(c)?;
        z0 += zs;
    }
    Ok(())
}
