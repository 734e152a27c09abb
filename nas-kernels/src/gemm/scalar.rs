//! The portable micro-kernel (plain Rust, no intrinsics): the reference the SIMD kernels match.

/// Rows of the scalar micro-tile.
pub(crate) const MR: usize = 4;
/// Columns of the scalar micro-tile.
pub(crate) const NR: usize = 8;

/// `C[0..mr, 0..nr] = alpha * Ap * Bp + beta * C` for one packed `MR x kc` panel of A and
/// `kc x NR` panel of B (see [`super::MicroKernel`] for the contract).
///
/// # Safety
/// `a` holds `kc * MR` floats, `b` holds `kc * NR`, and `c` addresses an `mr x nr` tile with row
/// stride `ldc` (`mr <= MR`, `nr <= NR`).
pub(crate) unsafe fn kernel(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    alpha: f32,
    beta: f32,
    mr: usize,
    nr: usize,
) {
    // SAFETY: the caller guarantees the panel lengths.
    let (a, b) = unsafe {
        (
            std::slice::from_raw_parts(a, kc * MR),
            std::slice::from_raw_parts(b, kc * NR),
        )
    };
    let mut acc = [[0.0f32; NR]; MR];
    for (ap, bp) in a.chunks_exact(MR).zip(b.chunks_exact(NR)) {
        for i in 0..MR {
            let av = ap[i];
            for j in 0..NR {
                acc[i][j] += av * bp[j];
            }
        }
    }
    // SAFETY: forwarded from the caller.
    unsafe { super::store_tile(acc.as_flattened(), NR, c, ldc, alpha, beta, mr, nr) };
}
