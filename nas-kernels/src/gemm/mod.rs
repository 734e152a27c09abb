//! Single-precision matrix multiplication, row-major: `C = alpha * op(A) * op(B) + beta * C`.
//!
//! The implementation follows the BLIS five-loop scheme: `op(A)` and `op(B)` are copied
//! ("packed") block by block into contiguous micro-panels sized from the cache sizes, and a
//! register-blocked micro-kernel multiplies one `MR x kc` panel of A by one `kc x NR` panel of
//! B into an `MR x NR` tile of C. There is one micro-kernel per instruction set:
//!
//! | [`Kernel`]         | tile     | needs            |
//! |--------------------|----------|------------------|
//! | [`Kernel::Scalar`] | 4 x 8    | nothing (portable Rust, the reference the others match) |
//! | [`Kernel::Avx2`]   | 6 x 16   | x86-64 AVX2 + FMA |
//! | [`Kernel::Avx512`] | 8 x 32   | x86-64 AVX-512F   |
//!
//! The best available one is chosen once at run time ([`Kernel::best`]); [`set_kernel`] forces
//! one process-wide and [`sgemm_with`] picks one per call (tests and benchmarks compare them).
//!
//! Loop order (`ic` rows of A by `mb`, `pc` depth by `kc`, `jc` columns of B by `nb`, then the
//! micro-panels): the packed `kc x nb` block of B lives in L2, one `MR x kc` panel of A in L1,
//! and the packed `mb x kc` block of A in L3. Packing buffers are thread-local and reused, so a
//! call allocates nothing once the buffers have grown to the problem's size.
//!
//! `A * B^T` with a small output and a long depth (the weight gradient of a convolution) takes
//! a different route with the AVX-512 kernel: both operands are contiguous along the depth, so
//! 4 x 6 tiles of 16-lane dot products read them unpacked (no transposing copies), keeping lane
//! sums in an L2-resident scratch that is reduced once at the end.
//!
//! Threads ([`crate::threads`]): problems above a few MFLOP are split over up to
//! [`crate::threads::num_threads`] threads by columns of C (the usual case, no work duplicated),
//! by rows, or, for small outputs with a long contraction (the weight gradient of a convolution),
//! by the depth `k` with private partial results summed at the end.

pub mod reference;

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod pack;
mod scalar;
#[cfg(test)]
mod tests;

use std::cell::RefCell;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, Ordering};

use crate::threads;

/// Errors of the checked GEMM entry points ([`try_sgemm`], [`sgemm_with`], [`set_kernel`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GemmError {
    /// A leading dimension is smaller than the row length of its matrix.
    #[error(
        "sgemm: leading dimension {what} = {ld} is smaller than the {cols} columns of the stored matrix"
    )]
    LeadingDim {
        /// `"lda"`, `"ldb"` or `"ldc"`.
        what: &'static str,
        /// The leading dimension passed.
        ld: usize,
        /// The number of columns of the stored (not transposed) matrix.
        cols: usize,
    },
    /// A slice is shorter than its shape and leading dimension require.
    #[error(
        "sgemm: `{what}` has {got} elements, a {rows} x {cols} matrix with leading dimension {ld} needs {needed}"
    )]
    TooShort {
        /// `"a"`, `"b"` or `"c"`.
        what: &'static str,
        /// Rows of the stored matrix.
        rows: usize,
        /// Columns of the stored matrix.
        cols: usize,
        /// Leading dimension.
        ld: usize,
        /// Elements needed.
        needed: usize,
        /// Elements given.
        got: usize,
    },
    /// The sizes overflow `usize`.
    #[error("sgemm: sizes overflow")]
    Overflow,
    /// The requested micro-kernel cannot run on this CPU.
    #[error("sgemm: the {0} kernel is not supported by this CPU")]
    KernelUnavailable(Kernel),
}

/// A micro-kernel (instruction set) for [`sgemm_with`] / [`set_kernel`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// Portable Rust, 4 x 8 tile. Always available; the reference the SIMD kernels match.
    Scalar,
    /// AVX2 + FMA, 6 x 16 tile (x86-64 only).
    Avx2,
    /// AVX-512F, 8 x 32 tile (x86-64 only).
    Avx512,
}

impl std::fmt::Display for Kernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Kernel {
    /// All kernels, slowest first.
    pub const ALL: [Kernel; 3] = [Kernel::Scalar, Kernel::Avx2, Kernel::Avx512];

    /// Lower-case name: `"scalar"`, `"avx2"`, `"avx512"`.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Scalar => "scalar",
            Kernel::Avx2 => "avx2",
            Kernel::Avx512 => "avx512",
        }
    }

    /// Whether this CPU can run the kernel (detected at run time).
    pub fn is_available(self) -> bool {
        match self {
            Kernel::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
            }
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// The kernels this CPU can run, slowest first.
    pub fn available() -> Vec<Kernel> {
        Kernel::ALL
            .into_iter()
            .filter(|k| k.is_available())
            .collect()
    }

    /// The fastest kernel this CPU can run (detected once).
    pub fn best() -> Kernel {
        static BEST: OnceLock<Kernel> = OnceLock::new();
        *BEST.get_or_init(|| {
            *Kernel::available()
                .last()
                .expect("the scalar kernel is always available")
        })
    }

    fn code(self) -> u8 {
        match self {
            Kernel::Scalar => 1,
            Kernel::Avx2 => 2,
            Kernel::Avx512 => 3,
        }
    }
}

/// 0: no override (use [`Kernel::best`]); otherwise [`Kernel::code`].
static KERNEL_OVERRIDE: AtomicU8 = AtomicU8::new(0);

/// Forces the kernel [`sgemm`] and [`try_sgemm`] use, process-wide.
///
/// # Errors
/// [`GemmError::KernelUnavailable`] if this CPU cannot run it (the setting is unchanged).
pub fn set_kernel(kernel: Kernel) -> Result<(), GemmError> {
    if !kernel.is_available() {
        return Err(GemmError::KernelUnavailable(kernel));
    }
    KERNEL_OVERRIDE.store(kernel.code(), Ordering::Relaxed);
    Ok(())
}

/// Returns to the automatic choice ([`Kernel::best`]).
pub fn reset_kernel() {
    KERNEL_OVERRIDE.store(0, Ordering::Relaxed);
}

/// The kernel [`sgemm`] uses now: the one set by [`set_kernel`], else [`Kernel::best`].
pub fn active_kernel() -> Kernel {
    match KERNEL_OVERRIDE.load(Ordering::Relaxed) {
        1 => Kernel::Scalar,
        2 => Kernel::Avx2,
        3 => Kernel::Avx512,
        _ => Kernel::best(),
    }
}

/// `C = alpha * op(A) * op(B) + beta * C`, all matrices row-major.
///
/// `op(A)` is `m x k` (`A` is `m x k` with leading dimension `lda`, or `k x m` when `trans_a`),
/// `op(B)` is `k x n` (`B` is `k x n` with `ldb`, or `n x k` when `trans_b`), `C` is `m x n` with
/// `ldc`. When `beta == 0`, `C` is not read (NaNs in it do not propagate), as in BLAS.
///
/// Uses [`active_kernel`] and [`crate::threads::num_threads`] threads.
///
/// # Panics
/// If a slice is too short for its shape and leading dimension, or a leading dimension is
/// smaller than its row length (see [`try_sgemm`] for the non-panicking version).
#[allow(clippy::too_many_arguments)]
pub fn sgemm(
    trans_a: bool,
    trans_b: bool,
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: &[f32],
    lda: usize,
    b: &[f32],
    ldb: usize,
    beta: f32,
    c: &mut [f32],
    ldc: usize,
) {
    if let Err(e) = try_sgemm(
        trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc,
    ) {
        panic!("{e}");
    }
}

/// [`sgemm`] returning an error instead of panicking on bad shapes.
///
/// # Errors
/// [`GemmError::LeadingDim`], [`GemmError::TooShort`] or [`GemmError::Overflow`].
#[allow(clippy::too_many_arguments)]
pub fn try_sgemm(
    trans_a: bool,
    trans_b: bool,
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: &[f32],
    lda: usize,
    b: &[f32],
    ldb: usize,
    beta: f32,
    c: &mut [f32],
    ldc: usize,
) -> Result<(), GemmError> {
    sgemm_with(
        active_kernel(),
        threads::num_threads(),
        trans_a,
        trans_b,
        m,
        n,
        k,
        alpha,
        a,
        lda,
        b,
        ldb,
        beta,
        c,
        ldc,
    )
}

/// [`sgemm`] with an explicit micro-kernel and thread count (`threads` is an upper bound: small
/// problems use fewer; `0` counts as `1`).
///
/// # Errors
/// [`GemmError::KernelUnavailable`] if the CPU cannot run `kernel`, or a shape error as in
/// [`try_sgemm`].
#[allow(clippy::too_many_arguments)]
pub fn sgemm_with(
    kernel: Kernel,
    threads: usize,
    trans_a: bool,
    trans_b: bool,
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: &[f32],
    lda: usize,
    b: &[f32],
    ldb: usize,
    beta: f32,
    c: &mut [f32],
    ldc: usize,
) -> Result<(), GemmError> {
    let cfg = Config {
        kernel,
        threads,
        blocks: None,
        min_flops_per_thread: MIN_FLOPS_PER_THREAD,
        dot: DotPath::Auto,
    };
    sgemm_config(
        &cfg, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc,
    )
}

/// When `A * B^T` with both operands contiguous along the depth takes the dot-product path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) enum DotPath {
    /// Where it is faster than packing ([`prefers_dot`]).
    Auto,
    /// Whenever the operands allow (tests).
    Always,
    /// Never (tests).
    Never,
}

/// Whether the dot-product path beats the packed kernel for an `m x n x k` job. Measured
/// single-threaded on Zen 4 (`m x n x k`: dot vs packed GFLOP/s, same run): it wins where the
/// packed 8 x 32 tile wastes lanes (`n < 32`: 16x16x256 158 vs 81, 64x16x256 136 vs 96;
/// `m <= 8`: 8x72x256 146 vs 102) and at long depths with a narrow side (16x144x1024 178 vs
/// 137, 48x48x1024 174 vs 143), and loses once both sides are 32 or more at depth 256
/// (64x1024x256 116 vs 219, 32x32x256 134 vs 178) or 64 or more at depth 1024 (64x64x1024
/// 170 vs 194).
fn prefers_dot(m: usize, n: usize, k: usize) -> bool {
    k >= 256 && (m + n) * 64 > m * n && (n < 32 || m <= 8 || (k >= 768 && (m <= 48 || n <= 32)))
}

/// Below this many flops per extra thread a problem stays on fewer threads.
const MIN_FLOPS_PER_THREAD: usize = 8_000_000;

/// Everything that selects a code path (tests use tiny blocks and force threading).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Config {
    pub(crate) kernel: Kernel,
    pub(crate) threads: usize,
    /// Block sizes; `None` derives them from the cache sizes.
    pub(crate) blocks: Option<Blocks>,
    pub(crate) min_flops_per_thread: usize,
    /// When `A * B^T` takes the dot-product path (AVX-512 only).
    pub(crate) dot: DotPath,
}

/// Elements a `rows x cols` matrix with leading dimension `ld` spans.
fn span(
    ld_name: &'static str,
    what: &'static str,
    rows: usize,
    cols: usize,
    ld: usize,
    got: usize,
) -> Result<(), GemmError> {
    if ld < cols {
        return Err(GemmError::LeadingDim {
            what: ld_name,
            ld,
            cols,
        });
    }
    let needed = if rows == 0 || cols == 0 {
        0
    } else {
        (rows - 1)
            .checked_mul(ld)
            .and_then(|x| x.checked_add(cols))
            .ok_or(GemmError::Overflow)?
    };
    if got < needed {
        return Err(GemmError::TooShort {
            what,
            rows,
            cols,
            ld,
            needed,
            got,
        });
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn sgemm_config(
    cfg: &Config,
    trans_a: bool,
    trans_b: bool,
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: &[f32],
    lda: usize,
    b: &[f32],
    ldb: usize,
    beta: f32,
    c: &mut [f32],
    ldc: usize,
) -> Result<(), GemmError> {
    if !cfg.kernel.is_available() {
        return Err(GemmError::KernelUnavailable(cfg.kernel));
    }
    let (ra, ca) = if trans_a { (k, m) } else { (m, k) };
    let (rb, cb) = if trans_b { (n, k) } else { (k, n) };
    span("lda", "a", ra, ca, lda, a.len())?;
    span("ldb", "b", rb, cb, ldb, b.len())?;
    span("ldc", "c", m, n, ldc, c.len())?;
    m.checked_mul(n)
        .and_then(|x| x.checked_mul(k))
        .and_then(|x| x.checked_mul(2))
        .ok_or(GemmError::Overflow)?;
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 || alpha == 0.0 {
        scale_c(m, n, beta, c, ldc);
        return Ok(());
    }
    let job = Job {
        m,
        n,
        k,
        alpha,
        a: MatPtr {
            ptr: a.as_ptr(),
            rs: if trans_a { 1 } else { lda },
            cs: if trans_a { lda } else { 1 },
        },
        b: MatPtr {
            ptr: b.as_ptr(),
            rs: if trans_b { 1 } else { ldb },
            cs: if trans_b { ldb } else { 1 },
        },
        beta,
        c: c.as_mut_ptr(),
        ldc,
    };
    let uk = micro_kernel(cfg.kernel);
    let blocks = cfg
        .blocks
        .unwrap_or_else(|| Blocks::from_caches(uk.mr, uk.nr));
    // SAFETY: the shapes were checked against the slice lengths above, the kernel is
    // available, and `c` is exclusively borrowed for the duration of the call.
    unsafe { run(uk, &blocks, cfg, &job) };
    Ok(())
}

/// `C = beta * C` (`C` not read when `beta == 0`).
fn scale_c(m: usize, n: usize, beta: f32, c: &mut [f32], ldc: usize) {
    for i in 0..m {
        let row = &mut c[i * ldc..i * ldc + n];
        if beta == 0.0 {
            row.fill(0.0);
        } else if beta != 1.0 {
            row.iter_mut().for_each(|x| *x *= beta);
        }
    }
}

/// Writes an accumulator tile (`tile`, row-major, row length `w`) into the `mr x nr` corner of
/// C: `C = alpha * tile + beta * C`, not reading C when `beta == 0`.
///
/// # Safety
/// `c` addresses an `mr x nr` tile with row stride `ldc`, and `tile` has `mr` rows of `w >= nr`.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn store_tile(
    tile: &[f32],
    w: usize,
    c: *mut f32,
    ldc: usize,
    alpha: f32,
    beta: f32,
    mr: usize,
    nr: usize,
) {
    for i in 0..mr {
        for j in 0..nr {
            // SAFETY: `(i, j)` lies in the tile by the contract.
            unsafe {
                let cp = c.add(i * ldc + j);
                let v = alpha * tile[i * w + j];
                *cp = if beta == 0.0 { v } else { v + beta * *cp };
            }
        }
    }
}

/// A micro-kernel: `C[0..mr, 0..nr] = alpha * Ap * Bp + beta * C` where `Ap` is a packed
/// `kc x MR` panel, `Bp` a packed `kc x NR` panel, and `C` a tile with row stride `ldc`
/// (`mr <= MR`, `nr <= NR`; C not read when `beta == 0`).
type KernelFn = unsafe fn(usize, *const f32, *const f32, *mut f32, usize, f32, f32, usize, usize);
/// A packing routine, see [`pack`].
type PackFn = unsafe fn(usize, usize, *const f32, usize, usize, *mut f32);

/// One instruction set's micro-kernel with its tile size and packing routines.
pub(crate) struct MicroKernel {
    pub(crate) mr: usize,
    pub(crate) nr: usize,
    kernel: KernelFn,
    pack_a: PackFn,
    pack_b: PackFn,
}

static SCALAR: MicroKernel = MicroKernel {
    mr: scalar::MR,
    nr: scalar::NR,
    kernel: scalar::kernel,
    pack_a: pack::pack_a::<{ scalar::MR }>,
    pack_b: pack::pack_b::<{ scalar::NR }>,
};

#[cfg(target_arch = "x86_64")]
static AVX2: MicroKernel = MicroKernel {
    mr: avx2::MR,
    nr: avx2::NR,
    kernel: avx2::kernel,
    pack_a: pack::pack_a::<{ avx2::MR }>,
    pack_b: pack::pack_b::<{ avx2::NR }>,
};

#[cfg(target_arch = "x86_64")]
static AVX512: MicroKernel = MicroKernel {
    mr: avx512::MR,
    nr: avx512::NR,
    kernel: avx512::kernel,
    pack_a: avx512::pack_a,
    pack_b: avx512::pack_b,
};

/// The micro-kernel of `kernel`; callers have checked [`Kernel::is_available`].
fn micro_kernel(kernel: Kernel) -> &'static MicroKernel {
    match kernel {
        Kernel::Scalar => &SCALAR,
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 => &AVX2,
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512 => &AVX512,
        #[cfg(not(target_arch = "x86_64"))]
        _ => &SCALAR,
    }
}

/// Data cache sizes in bytes (per core for L1/L2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheSizes {
    /// Level-1 data cache.
    pub l1d: usize,
    /// Level-2 cache.
    pub l2: usize,
    /// Level-3 cache (shared).
    pub l3: usize,
}

impl CacheSizes {
    /// Sizes used when the system does not report them.
    pub const DEFAULT: CacheSizes = CacheSizes {
        l1d: 32 << 10,
        l2: 512 << 10,
        l3: 8 << 20,
    };

    /// This machine's cache sizes (Linux: from `/sys/devices/system/cpu/cpu0/cache`; elsewhere
    /// or on failure, [`CacheSizes::DEFAULT`]). Detected once.
    pub fn detect() -> CacheSizes {
        static SIZES: OnceLock<CacheSizes> = OnceLock::new();
        *SIZES.get_or_init(|| read_sys_caches().unwrap_or(CacheSizes::DEFAULT))
    }
}

/// Parses a sysfs cache size such as `"32K"` or `"1024K"` or `"32M"`.
fn parse_cache_size(s: &str) -> Option<usize> {
    let s = s.trim();
    let (digits, mult) = match s.chars().last()? {
        'K' => (&s[..s.len() - 1], 1 << 10),
        'M' => (&s[..s.len() - 1], 1 << 20),
        'G' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    digits.parse::<usize>().ok()?.checked_mul(mult)
}

fn read_sys_caches() -> Option<CacheSizes> {
    let mut sizes = CacheSizes::DEFAULT;
    let mut found = false;
    for idx in 0..8 {
        let dir = format!("/sys/devices/system/cpu/cpu0/cache/index{idx}");
        let Ok(level) = std::fs::read_to_string(format!("{dir}/level")) else {
            continue;
        };
        let kind = std::fs::read_to_string(format!("{dir}/type")).unwrap_or_default();
        let Some(size) = std::fs::read_to_string(format!("{dir}/size"))
            .ok()
            .and_then(|s| parse_cache_size(&s))
        else {
            continue;
        };
        match (level.trim(), kind.trim()) {
            ("1", "Data") => sizes.l1d = size,
            ("2", _) => sizes.l2 = size,
            ("3", _) => sizes.l3 = size,
            _ => continue,
        }
        found = true;
    }
    found.then_some(sizes)
}

/// Block sizes of the five loops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Blocks {
    /// Depth of a block (`kc`): one `MR x kc` A panel fills half of L1.
    pub(crate) kc: usize,
    /// Bytes of L2 the packed `kc x nb` block of B may use (`nb` follows from the actual `kc`).
    pub(crate) l2_bytes: usize,
    /// Upper bound on `nb` (columns of a packed B block).
    pub(crate) nb_max: usize,
    /// Rows of a packed A block (`mb`).
    pub(crate) mb: usize,
    /// Multiple `nb` is rounded to.
    pub(crate) nr: usize,
}

impl Blocks {
    /// Block sizes for an `mr x nr` micro-tile on this machine's caches.
    pub(crate) fn from_caches(mr: usize, nr: usize) -> Blocks {
        Blocks::for_caches(CacheSizes::detect(), mr, nr)
    }

    pub(crate) fn for_caches(cs: CacheSizes, mr: usize, nr: usize) -> Blocks {
        let kc = ((cs.l1d / 2) / (mr * 4) / 16 * 16).clamp(128, 1024);
        let mb = ((cs.l3 / 4) / (kc * 4) / mr * mr).clamp(16 * mr, 8192);
        Blocks {
            kc,
            l2_bytes: cs.l2 / 2,
            nb_max: 16384,
            mb,
            nr,
        }
    }

    /// Columns of a packed B block for depth `kc`.
    fn nb(&self, kc: usize) -> usize {
        (self.l2_bytes / (kc * 4) / self.nr * self.nr).clamp(self.nr, self.nb_max.max(self.nr))
    }
}

/// A read-only matrix by pointer and strides: element `(i, j)` at `ptr[i * rs + j * cs]`.
#[derive(Debug, Clone, Copy)]
struct MatPtr {
    ptr: *const f32,
    rs: usize,
    cs: usize,
}

impl MatPtr {
    /// The sub-matrix starting at `(i, j)`.
    ///
    /// # Safety
    /// `(i, j)` lies within the matrix.
    unsafe fn at(self, i: usize, j: usize) -> MatPtr {
        MatPtr {
            // SAFETY: forwarded.
            ptr: unsafe { self.ptr.add(i * self.rs + j * self.cs) },
            ..self
        }
    }
}

/// One (sub-)problem: `C = alpha * op(A) * op(B) + beta * C` with `C` row-major.
#[derive(Debug, Clone, Copy)]
struct Job {
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: MatPtr,
    b: MatPtr,
    beta: f32,
    c: *mut f32,
    ldc: usize,
}

// SAFETY: a `Job` is only shared between threads that write disjoint parts of C (or private
// buffers) and only read A and B, for the duration of one call.
unsafe impl Send for Job {}
// SAFETY: as above.
unsafe impl Sync for Job {}

/// A growable packing buffer whose start is aligned to 64 bytes.
#[derive(Default)]
struct PackBuf {
    v: Vec<f32>,
}

impl PackBuf {
    /// A pointer to at least `len` floats, 64-byte aligned; grows (never shrinks) the buffer.
    fn get(&mut self, len: usize) -> *mut f32 {
        let need = len + 16;
        if self.v.len() < need {
            self.v = vec![0.0; need.next_power_of_two()];
        }
        let p = self.v.as_mut_ptr();
        // SAFETY: `align_offset` of an f32 pointer to 64 bytes is at most 15 elements, and the
        // buffer has 16 spare.
        unsafe { p.add(p.align_offset(64)) }
    }
}

#[derive(Default)]
struct Buffers {
    a: PackBuf,
    b: PackBuf,
}

thread_local! {
    /// Per-thread packing buffers (reused across calls; the pool's workers keep theirs).
    static BUFFERS: RefCell<Buffers> = RefCell::new(Buffers::default());
    /// Per-thread scratch for the partial results of a depth-split product.
    static PARTIALS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    /// Per-thread lane sums of the dot-product path.
    static DOT_ACC: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Runs one job, possibly over several threads.
///
/// # Safety
/// The job's pointers address matrices of its shapes, `C` is not aliased, and `uk` can run.
unsafe fn run(uk: &MicroKernel, blocks: &Blocks, cfg: &Config, job: &Job) {
    let flops = 2 * job.m * job.n * job.k;
    let t = cfg
        .threads
        .max(1)
        .min(1 + flops / cfg.min_flops_per_thread.max(1));
    if t <= 1 || threads::in_parallel() {
        // SAFETY: forwarded.
        unsafe { gemm_job(uk, blocks, cfg, job) };
        return;
    }
    match plan(uk, job, t) {
        Split::Cols(t) => {
            let panels = job.n.div_ceil(uk.nr);
            threads::parallel_for_threads(t, t, &|i| {
                let lo = (i * panels / t * uk.nr).min(job.n);
                let hi = ((i + 1) * panels / t * uk.nr).min(job.n);
                if lo < hi {
                    let sub = Job {
                        n: hi - lo,
                        // SAFETY: column `lo < n` lies in B and C.
                        b: unsafe { job.b.at(0, lo) },
                        // SAFETY: column `lo < n` lies in every row of C.
                        c: unsafe { job.c.add(lo) },
                        ..*job
                    };
                    // SAFETY: threads write disjoint column ranges of C.
                    unsafe { gemm_job(uk, blocks, cfg, &sub) };
                }
            });
        }
        Split::Rows(t) => {
            let panels = job.m.div_ceil(uk.mr);
            threads::parallel_for_threads(t, t, &|i| {
                let lo = (i * panels / t * uk.mr).min(job.m);
                let hi = ((i + 1) * panels / t * uk.mr).min(job.m);
                if lo < hi {
                    let sub = Job {
                        m: hi - lo,
                        // SAFETY: row `lo < m` lies in A and C.
                        a: unsafe { job.a.at(lo, 0) },
                        // SAFETY: row `lo < m` of C starts `lo * ldc` floats in.
                        c: unsafe { job.c.add(lo * job.ldc) },
                        ..*job
                    };
                    // SAFETY: threads write disjoint row ranges of C.
                    unsafe { gemm_job(uk, blocks, cfg, &sub) };
                }
            });
        }
        Split::Depth(t) => {
            let mn = job.m * job.n;
            let mut partials = PARTIALS.with(|p| std::mem::take(&mut *p.borrow_mut()));
            if partials.len() < (t - 1) * mn {
                partials.resize((t - 1) * mn, 0.0);
            }
            let base = SendPtr(partials.as_mut_ptr());
            threads::parallel_for_threads(t, t, &|i| {
                let lo = i * job.k / t;
                let hi = (i + 1) * job.k / t;
                let base = &base;
                let sub = if i == 0 {
                    Job { k: hi - lo, ..*job }
                } else {
                    Job {
                        k: hi - lo,
                        // SAFETY: depth `lo < k` lies in A and B.
                        a: unsafe { job.a.at(0, lo) },
                        // SAFETY: as for A, depth `lo < k` lies in B.
                        b: unsafe { job.b.at(lo, 0) },
                        beta: 0.0,
                        // SAFETY: partial `i - 1` of `t - 1`, each `m x n`.
                        c: unsafe { base.0.add((i - 1) * mn) },
                        ldc: job.n,
                        ..*job
                    }
                };
                if sub.k > 0 {
                    // SAFETY: thread 0 writes C, the others their own partial.
                    unsafe { gemm_job(uk, blocks, cfg, &sub) };
                } else if i == 0 {
                    // SAFETY: C is `m x n` with `ldc`.
                    let c = unsafe {
                        std::slice::from_raw_parts_mut(job.c, (job.m - 1) * job.ldc + job.n)
                    };
                    scale_c(job.m, job.n, job.beta, c, job.ldc);
                }
            });
            for i in 0..job.m {
                // SAFETY: row `i` of C has `n` elements.
                let row = unsafe { std::slice::from_raw_parts_mut(job.c.add(i * job.ldc), job.n) };
                for p in 0..t - 1 {
                    let part = &partials[p * mn + i * job.n..p * mn + (i + 1) * job.n];
                    // Partials of threads with an empty depth range are never written; `t <= k`
                    // guarantees none is empty (see `plan`).
                    row.iter_mut().zip(part).for_each(|(c, x)| *c += x);
                }
            }
            PARTIALS.with(|p| *p.borrow_mut() = partials);
        }
    }
}

/// A raw pointer that may cross threads (the users guarantee disjoint writes).
struct SendPtr(*mut f32);
// SAFETY: see the type's documentation.
unsafe impl Sync for SendPtr {}
// SAFETY: see the type's documentation.
unsafe impl Send for SendPtr {}

/// How a job is split over threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Split {
    Cols(usize),
    Rows(usize),
    Depth(usize),
}

/// Chooses a split over at most `t >= 2` threads.
fn plan(uk: &MicroKernel, job: &Job, t: usize) -> Split {
    let (m, n, k) = (job.m, job.n, job.k);
    // Load balance of a split into `t` contiguous ranges of whole panels: the busiest thread's
    // share against an even share.
    let balance = |len: usize, w: usize| -> f64 {
        let panels = len.div_ceil(w);
        if panels < t {
            return 0.0;
        }
        let busiest = (panels.div_ceil(t) * w).min(len);
        len as f64 / (t * busiest) as f64
    };
    // A long contraction into a small output (weight gradients): split the depth, no packing
    // is duplicated and the reduction is cheap.
    if k >= 1024 && k >= 4 * m.max(n) && k >= t {
        return Split::Depth(t);
    }
    let bn = balance(n, uk.nr);
    if bn >= 0.9 {
        return Split::Cols(t);
    }
    let bm = balance(m, uk.mr);
    if bm > bn {
        Split::Rows(t)
    } else if bn > 0.0 {
        Split::Cols(t)
    } else if k >= t {
        Split::Depth(t)
    } else {
        Split::Cols(t.min(n.div_ceil(uk.nr)).max(1))
    }
}

/// Runs one job on the current thread: the dot-product path for `A * B^T` with a small
/// output and a long depth, else the packed five loops.
///
/// # Safety
/// As for [`run`].
unsafe fn gemm_job(uk: &MicroKernel, blocks: &Blocks, cfg: &Config, job: &Job) {
    #[cfg(target_arch = "x86_64")]
    if cfg.kernel == Kernel::Avx512
        && job.a.cs == 1
        && job.b.rs == 1
        && match cfg.dot {
            DotPath::Auto => prefers_dot(job.m, job.n, job.k),
            DotPath::Always => true,
            DotPath::Never => false,
        }
    {
        let (kc, nb) = match cfg.blocks {
            // Tiny test blocks: several depth blocks and B row blocks.
            Some(b) => (b.kc, 2 * avx512::DOT_C + 1),
            None => dot_blocks(CacheSizes::detect(), job.m, job.n),
        };
        // SAFETY: forwarded; AVX-512F is available (checked by the caller).
        unsafe { gemm_dot(kc, nb, job) };
        return;
    }
    // SAFETY: forwarded.
    unsafe { gemm_serial(uk, blocks, job) }
}

/// Whether the dot-product path issues software prefetches for its next depth block (it does
/// not: its rows are long contiguous runs that the hardware prefetchers follow, and measured
/// on Zen 4 the extra instructions cost more than they saved).
const DOT_PREFETCH: bool = false;

/// Blocking of the dot-product path: depth `kc` such that one tile's `DOT_R + DOT_C` rows fit
/// in 3/4 of L1, and `nb` rows of B such that the A block (`m x kc`), the B block (`nb x kc`)
/// and the lane sums (`m x nb x 16`) each fit in a quarter of L2.
#[cfg(target_arch = "x86_64")]
fn dot_blocks(cs: CacheSizes, m: usize, n: usize) -> (usize, usize) {
    use avx512::{DOT_C, DOT_R};
    let quarter = cs.l2 / 4;
    let kc = (cs.l1d * 3 / 4 / (4 * (DOT_R + DOT_C)))
        .min(quarter / (4 * m))
        .clamp(64, 4096)
        / 16
        * 16;
    let nb = (quarter / (64 * m)).min(quarter / (4 * kc)).max(DOT_C) / DOT_C * DOT_C;
    (kc, nb.min(n.div_ceil(DOT_C) * DOT_C))
}

/// `C = alpha * A * B^T + beta * C` with both operands contiguous along the depth, by
/// `DOT_R x DOT_C` tiles of 16-lane dot products: for each block of `nb` rows of B, for each
/// depth block, every tile adds its partial lane sums into a per-thread scratch
/// (`m x nb x 16`, L2-resident); the lanes are summed into C after the last depth block.
/// Nothing is packed, which is what makes the weight gradient of a convolution (small `m`,
/// `n`, long `k`) fast.
///
/// # Safety
/// As for [`run`], with `job.a.cs == 1`, `job.b.rs == 1`, and AVX-512F available.
#[cfg(target_arch = "x86_64")]
unsafe fn gemm_dot(kc: usize, nb: usize, job: &Job) {
    use avx512::{DOT_C, DOT_R, dot_fn};
    let (m, n, k) = (job.m, job.n, job.k);
    let (lda, ldb) = (job.a.rs, job.b.cs);
    let kc = kc.max(1);
    let nb = nb.max(1);
    let mut scratch = DOT_ACC.with(|p| std::mem::take(&mut *p.borrow_mut()));
    if scratch.len() < m * nb * 16 {
        scratch.resize(m * nb * 16, 0.0);
    }
    let acc = scratch.as_mut_ptr();
    // Depth offset at which B's rows become 64-byte aligned (when they all share one
    // alignment), so that the unaligned loads that split cache lines are only in `head`.
    let b_addr = job.b.ptr as usize;
    let head = if b_addr & 3 == 0 && ldb & 15 == 0 {
        (16 - (b_addr / 4) % 16) % 16
    } else {
        0
    };
    let mut jb = 0;
    while jb < n {
        let nbc = nb.min(n - jb);
        let tiles = m.div_ceil(DOT_R) * nbc.div_ceil(DOT_C);
        let mut pc = 0;
        while pc < k {
            // A first short block (`head`) makes every later block start on a 64-byte boundary
            // of B's rows.
            let kcur = if pc == 0 && head > 0 {
                head.min(k)
            } else {
                kc.min(k - pc)
            };
            let mut pf = if !DOT_PREFETCH {
                Prefetcher::default()
            } else if pc + kcur < k {
                let k2 = kc.min(k - pc - kcur);
                Prefetcher::new([
                    Rect::of_block(job.a, 0, pc + kcur, m, k2),
                    Rect::of_block(job.b, pc + kcur, jb, k2, nbc),
                ])
            } else if jb + nbc < n {
                let (k2, n2) = (kc.min(k), nb.min(n - jb - nbc));
                Prefetcher::new([
                    Rect::of_block(job.a, 0, 0, m, k2),
                    Rect::of_block(job.b, 0, jb + nbc, k2, n2),
                ])
            } else {
                Prefetcher::default()
            };
            // B tiles outer: each tile of B rows streams from memory once per depth block and
            // then serves every A tile from L1, spreading the memory traffic evenly.
            let mut tile = 0;
            let mut j0 = 0;
            while j0 < nbc {
                let c = DOT_C.min(nbc - j0);
                let mut i0 = 0;
                while i0 < m {
                    let r = DOT_R.min(m - i0);
                    tile += 1;
                    pf.advance(tile, tiles);
                    // SAFETY: rows `i0..i0 + r` of A and `jb + j0..jb + j0 + c` of B over
                    // depths `pc..pc + kcur` are in bounds; the tile's lane sums lie in the
                    // scratch (`m x nb x 16`).
                    unsafe {
                        dot_fn(r, c)(
                            kcur,
                            job.a.ptr.add(i0 * lda + pc),
                            lda,
                            job.b.ptr.add((jb + j0) * ldb + pc),
                            ldb,
                            acc.add((i0 * nb + j0) * 16),
                            nb * 16,
                            pc == 0,
                        )
                    };
                    i0 += r;
                }
                j0 += c;
            }
            pc += kcur;
        }
        for i in 0..m {
            // SAFETY: the row's lane sums lie in the scratch and `(i, jb..jb + nbc)` in C;
            // AVX-512F is available (checked by the caller).
            unsafe {
                avx512::sum_lanes_into(
                    acc.add(i * nb * 16),
                    nbc,
                    job.c.add(i * job.ldc + jb),
                    job.alpha,
                    job.beta,
                )
            };
        }
        jb += nbc;
    }
    DOT_ACC.with(|p| *p.borrow_mut() = scratch);
}

/// A piece of source memory a packing step reads: `rows` runs of `len` floats, `stride`
/// floats apart.
#[derive(Debug, Clone, Copy)]
struct Rect {
    addr: usize,
    stride_bytes: usize,
    rows: usize,
    lines_per_row: usize,
}

impl Rect {
    /// The memory packing the `r x c` block at `(i, j)` of `m` reads (`None` for general
    /// strides, which are never produced by [`sgemm`]).
    fn of_block(m: MatPtr, i: usize, j: usize, r: usize, c: usize) -> Option<Rect> {
        let (stride, rows, len) = if m.cs == 1 {
            (m.rs, r, c)
        } else if m.rs == 1 {
            (m.cs, c, r)
        } else {
            return None;
        };
        // Address arithmetic only (never dereferenced): prefetches do not fault.
        let addr = (m.ptr as usize).wrapping_add(4 * (i * m.rs + j * m.cs));
        let start = addr & !63;
        let end = addr + 4 * len;
        Some(Rect {
            addr: start,
            stride_bytes: 4 * stride,
            rows,
            lines_per_row: (end - start).div_ceil(64),
        })
    }

    fn lines(&self) -> usize {
        self.rows * self.lines_per_row
    }
}

/// Spreads software prefetches of the source of the next packing step over the micro-kernel
/// calls of the current block, so that streaming a large operand from memory overlaps with
/// computation instead of stalling the next pack.
#[derive(Debug, Default)]
struct Prefetcher {
    rects: [Option<Rect>; 2],
    total: usize,
    issued: usize,
    // Position of the next line: rectangle, row, line within the row.
    rect: usize,
    row: usize,
    col: usize,
}

impl Prefetcher {
    fn new(rects: [Option<Rect>; 2]) -> Prefetcher {
        let total = rects.iter().flatten().map(Rect::lines).sum();
        Prefetcher {
            rects,
            total,
            ..Prefetcher::default()
        }
    }

    /// Issues prefetches up to fraction `done / of` of the lines.
    #[inline]
    fn advance(&mut self, done: usize, of: usize) {
        let target = self.total * done / of.max(1);
        while self.issued < target && self.rect < self.rects.len() {
            let Some(r) = self.rects[self.rect] else {
                self.rect += 1;
                continue;
            };
            if self.row == r.rows {
                self.rect += 1;
                self.row = 0;
                continue;
            }
            prefetch(r.addr + self.row * r.stride_bytes + 64 * self.col);
            self.col += 1;
            if self.col == r.lines_per_row {
                self.col = 0;
                self.row += 1;
            }
            self.issued += 1;
        }
    }
}

/// Asks the CPU to bring the line at `addr` into L2 (no-op off x86-64; never faults).
#[inline(always)]
fn prefetch(addr: usize) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetch instructions do not access memory architecturally and never fault.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T1 }>(addr as *const i8)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = addr;
}

/// The five loops on one thread.
///
/// # Safety
/// As for [`run`].
unsafe fn gemm_serial(uk: &MicroKernel, blocks: &Blocks, job: &Job) {
    let (mr, nr) = (uk.mr, uk.nr);
    let mut local = None;
    BUFFERS.with(|cell| {
        let mut guard = cell.try_borrow_mut();
        let bufs: &mut Buffers = match guard.as_deref_mut() {
            Ok(b) => b,
            // Unreachable in practice (no re-entry); stay correct with fresh buffers.
            Err(_) => local.insert(Buffers::default()),
        };
        let mb = blocks.mb.max(mr);
        let (m, n, k) = (job.m, job.n, job.k);
        // Software prefetch of the next block's source only pays when B streams from DRAM
        // (measured on Zen 4: +10-15% for a 38 MB B, -3..-15% when B is cache-resident).
        let stream = k.saturating_mul(n).saturating_mul(4) > CacheSizes::detect().l3 / 2;
        let mut ic = 0;
        while ic < m {
            let mc = mb.min(m - ic);
            let mut pc = 0;
            while pc < k {
                let kc = blocks.kc.min(k - pc);
                let beta = if pc == 0 { job.beta } else { 1.0 };
                let nb = blocks.nb(kc);
                let ap = bufs.a.get(mc.div_ceil(mr) * mr * kc);
                // SAFETY: the block `(ic.., pc..)` of size `mc x kc` lies in op(A).
                unsafe { (uk.pack_a)(mc, kc, job.a.at(ic, pc).ptr, job.a.rs, job.a.cs, ap) };
                let mut jc = 0;
                while jc < n {
                    let nc = nb.min(n - jc);
                    let bp = bufs.b.get(nc.div_ceil(nr) * nr * kc);
                    // SAFETY: the block `(pc.., jc..)` of size `kc x nc` lies in op(B).
                    unsafe { (uk.pack_b)(kc, nc, job.b.at(pc, jc).ptr, job.b.rs, job.b.cs, bp) };
                    // What the next packing step reads.
                    let mut pf = if !stream {
                        Prefetcher::default()
                    } else if jc + nc < n {
                        let nc2 = nb.min(n - jc - nc);
                        Prefetcher::new([Rect::of_block(job.b, pc, jc + nc, kc, nc2), None])
                    } else if pc + kc < k {
                        let kc2 = blocks.kc.min(k - pc - kc);
                        let nc2 = blocks.nb(kc2).min(n);
                        Prefetcher::new([
                            Rect::of_block(job.a, ic, pc + kc, mc, kc2),
                            Rect::of_block(job.b, pc + kc, 0, kc2, nc2),
                        ])
                    } else if ic + mc < m {
                        let (mc2, kc2) = (mb.min(m - ic - mc), blocks.kc.min(k));
                        Prefetcher::new([Rect::of_block(job.a, ic + mc, 0, mc2, kc2), None])
                    } else {
                        Prefetcher::default()
                    };
                    let calls = mc.div_ceil(mr) * nc.div_ceil(nr);
                    let mut call = 0;
                    let mut ir = 0;
                    while ir < mc {
                        // SAFETY: panel `ir / mr` of the packed A block.
                        let a_panel = unsafe { ap.add(ir / mr * kc * mr) };
                        let mut jr = 0;
                        while jr < nc {
                            call += 1;
                            pf.advance(call, calls);
                            // SAFETY: panel `jr / nr` of the packed B block, and the tile at
                            // `(ic + ir, jc + jr)` of size `min(mr, ..) x min(nr, ..)` in C.
                            unsafe {
                                (uk.kernel)(
                                    kc,
                                    a_panel,
                                    bp.add(jr / nr * kc * nr),
                                    job.c.add((ic + ir) * job.ldc + jc + jr),
                                    job.ldc,
                                    job.alpha,
                                    beta,
                                    mr.min(mc - ir),
                                    nr.min(nc - jr),
                                )
                            };
                            jr += nr;
                        }
                        ir += mr;
                    }
                    jc += nc;
                }
                pc += kc;
            }
            ic += mc;
        }
    });
}
