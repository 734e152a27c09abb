//! Launches of `kernel.cu` (strided copies) on the CUDA backend.

use super::StridedCopy;
use crate::cuda::{Cuda, CudaBuf, Launch, Module};
use crate::error::{KernelError, Result};
use crate::ops::elementwise::cuda_kernel::{Geo, MAX_RANK};

pub(crate) fn copy_strided(c: &Cuda, p: &StridedCopy, src: &CudaBuf, dst: &CudaBuf) -> Result<()> {
    let n = p.numel();
    if n == 0 {
        return Ok(());
    }
    if p.dims.len() > MAX_RANK {
        return Err(KernelError::param(
            "copy_strided",
            format!("rank {} exceeds the CUDA kernels' {MAX_RANK}", p.dims.len()),
        ));
    }
    let g = Geo::new(&p.dims, &p.src_strides, &p.dst_strides);
    Launch::new(Module::Copy, "cp_strided")
        .over(n)
        .buf(src)
        .int(p.src_offset)
        .buf(dst)
        .int(p.dst_offset)
        .val(g)
        .int(n)
        .run(c)
}
