//! The CUDA backend (feature `cuda`): device buffers, a caching allocator, one stream per
//! device, kernels written in CUDA C++ and compiled by NVRTC at first use.
//!
//! # Layout
//! - Kernels: `src/ops/<op>/kernel.cu`, next to the Rust that launches them
//!   (`src/ops/<op>/cuda_kernel.rs`); [`prelude.cuh`](self) holds the helpers every module
//!   shares (warp and block reductions, the small by-value argument structs). Each `.cu` file
//!   is one NVRTC program ([`Module`]), compiled for the device's compute capability the first
//!   time one of its kernels is launched, then cached for the process.
//! - Engines: the real device goes through cudarc's driver API (dynamically loaded: nothing
//!   is linked at build time, and a machine without a driver gets
//!   [`KernelError::DeviceUnavailable`], never a panic). With the `cuda-emu` feature (tests
//!   only) the same `.cu` sources are compiled as C++ by `build.rs` and run on the CPU by the
//!   emulator in `src/cuda/emu/` ([`Device::CudaEmu`], see [`Cuda::emulated`]): the launch
//!   code, grid sizes, argument lists and every kernel's indexing are then exercised by the
//!   backend-generic tests on machines with no GPU.
//! - Memory: [`CudaBuf`] owns a block of device memory from the device's caching allocator:
//!   freed blocks go back to a free list per size class and are reused, so a training step
//!   after the first allocates nothing from the driver ([`Cuda::alloc_stats`] counts).
//!   All work is queued on one stream per device, in order, so a block freed by the host and
//!   reused by a later kernel is never overwritten while an earlier kernel still reads it.
//! - Synchronisation happens only where the host reads values ([`Backend::to_vec`]).
//!   Errors a kernel raises asynchronously surface there as [`KernelError::Cuda`], naming the
//!   kernels launched since the previous synchronisation (`NAS_CUDA_SYNC=1` synchronises
//!   after every launch, so the error names the one kernel).
//! - `NAS_CUDA_POISON=1` (always on for the emulated device) fills every buffer from
//!   [`Backend::alloc`] with NaN, so an output element a kernel forgets to write shows.
//! - TF32 tensor cores, off by default ([`Cuda::set_tf32`], or `NAS_CUDA_TF32=1` when the
//!   device is first opened): the SGEMM and the implicit-GEMM convolutions (forward and
//!   weight gradient) then run `mma.sync` m16n8k8 TF32 kernels, their operands rounded to a
//!   10-bit mantissa (`cvt.rna.tf32.f32`), products summed in f32: a relative error of about
//!   1e-3 instead of f32's 1e-6, as PyTorch's `allow_tf32`. On compute capability below 8.0
//!   the setting has no effect ([`Cuda::tf32`] says whether it is in effect).

mod alloc;
mod backend;
mod driver;
#[cfg(feature = "cuda-emu")]
mod emu;

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

pub use alloc::AllocStats;
pub use driver::{compile_to_ptx, driver_present, nvrtc_present};

use crate::device::Device;
use crate::error::{KernelError, Result};

/// One `.cu` file: an NVRTC program.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Module {
    /// `ops/elementwise/kernel.cu`.
    Elementwise,
    /// `ops/copy/kernel.cu`.
    Copy,
    /// `ops/reduce/kernel.cu`.
    Reduce,
    /// `ops/matmul/kernel.cu`.
    Matmul,
    /// `ops/conv2d/kernel.cu`.
    Conv2d,
    /// `ops/pool2d/kernel.cu`.
    Pool2d,
    /// `ops/batch_norm/kernel.cu`.
    BatchNorm,
    /// `ops/optim/kernel.cu`.
    Optim,
    /// `ops/random/kernel.cu`.
    Random,
    /// `ops/recurrent/kernel.cu`.
    Recurrent,
}

/// The helpers every module shares, prepended to each module's source.
pub const PRELUDE: &str = include_str!("prelude.cuh");

impl Module {
    /// Every module.
    pub const ALL: [Module; 10] = [
        Module::Elementwise,
        Module::Copy,
        Module::Reduce,
        Module::Matmul,
        Module::Conv2d,
        Module::Pool2d,
        Module::BatchNorm,
        Module::Optim,
        Module::Random,
        Module::Recurrent,
    ];

    /// The module's `.cu` source (without the prelude).
    pub fn source(self) -> &'static str {
        match self {
            Module::Elementwise => include_str!("../ops/elementwise/kernel.cu"),
            Module::Copy => include_str!("../ops/copy/kernel.cu"),
            Module::Reduce => include_str!("../ops/reduce/kernel.cu"),
            Module::Matmul => include_str!("../ops/matmul/kernel.cu"),
            Module::Conv2d => include_str!("../ops/conv2d/kernel.cu"),
            Module::Pool2d => include_str!("../ops/pool2d/kernel.cu"),
            Module::BatchNorm => include_str!("../ops/batch_norm/kernel.cu"),
            Module::Optim => include_str!("../ops/optim/kernel.cu"),
            Module::Random => include_str!("../ops/random/kernel.cu"),
            Module::Recurrent => include_str!("../ops/recurrent/kernel.cu"),
        }
    }

    /// The program NVRTC compiles: the prelude, then the module.
    pub fn program(self) -> String {
        format!("{PRELUDE}\n#line 1 \"{}\"\n{}", self.name(), self.source())
    }

    /// The module's name (its folder under `src/ops/`).
    pub fn name(self) -> &'static str {
        match self {
            Module::Elementwise => "elementwise",
            Module::Copy => "copy",
            Module::Reduce => "reduce",
            Module::Matmul => "matmul",
            Module::Conv2d => "conv2d",
            Module::Pool2d => "pool2d",
            Module::BatchNorm => "batch_norm",
            Module::Optim => "optim",
            Module::Random => "random",
            Module::Recurrent => "recurrent",
        }
    }

    /// Names of the kernels (`extern "C" __global__` functions) the module defines.
    pub fn kernels(self) -> Vec<&'static str> {
        let src = self.source();
        let mut out = Vec::new();
        let mut rest = src;
        while let Some(i) = rest.find("__global__ void ") {
            rest = &rest[i + "__global__ void ".len()..];
            let end = rest.find('(').unwrap_or(0);
            out.push(rest[..end].trim());
        }
        out
    }
}

/// A kernel: its module and its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Kernel {
    pub module: Module,
    pub name: &'static str,
}

/// Where kernels run.
enum Engine {
    Driver(driver::Driver),
    #[cfg(feature = "cuda-emu")]
    Emu,
}

/// A device: its engine, its allocator, its settings.
struct Ctx {
    device: Device,
    engine: Engine,
    pool: Mutex<alloc::Pool>,
    poison: bool,
    sync_each: bool,
    /// The device-wide TF32 setting ([`Cuda::set_tf32`]).
    tf32: AtomicBool,
    /// Whether the device has TF32 tensor cores (compute capability >= 8.0; the emulator
    /// models them).
    tf32_capable: bool,
}

/// The CUDA backend for one device; cheap to copy (a reference to the device's state, which
/// lives for the rest of the process, and this handle's TF32 override). Get one with
/// [`Cuda::new`].
#[derive(Clone, Copy)]
pub struct Cuda {
    ctx: &'static Ctx,
    /// [`Cuda::with_tf32`]: this handle's own TF32 choice, else the device's.
    tf32: Option<bool>,
}

impl std::fmt::Debug for Cuda {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cuda({})", self.ctx.device)
    }
}

fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v == "1")
}

static DEVICES: OnceLock<Mutex<HashMap<Device, &'static Ctx>>> = OnceLock::new();

/// `NAS_CUDA_TF32`: unset, empty or `0` is off, `1` is on; anything else is refused.
pub fn parse_tf32_env(v: Option<&str>) -> std::result::Result<bool, String> {
    match v.map(str::trim) {
        None | Some("") | Some("0") => Ok(false),
        Some("1") => Ok(true),
        Some(other) => Err(format!("NAS_CUDA_TF32 must be 0 or 1, not `{other}`")),
    }
}

impl Cuda {
    /// The backend of `device` (`Device::Cuda(n)`, or `Device::CudaEmu` with the `cuda-emu`
    /// feature), initialised on first use: the driver is loaded, the device opened and its
    /// stream created. No driver, no such device, or a device that fails to start is a
    /// [`KernelError::DeviceUnavailable`] that says why.
    pub fn new(device: Device) -> Result<Cuda> {
        let map = DEVICES.get_or_init(|| Mutex::new(HashMap::new()));
        let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(ctx) = map.get(&device) {
            return Ok(Cuda { ctx, tf32: None });
        }
        let tf32 =
            parse_tf32_env(std::env::var("NAS_CUDA_TF32").ok().as_deref()).map_err(|reason| {
                KernelError::DeviceUnavailable {
                    device: device.to_string(),
                    reason,
                }
            })?;
        let engine = match device {
            Device::Cuda(ordinal) => Engine::Driver(driver::Driver::open(ordinal)?),
            #[cfg(feature = "cuda-emu")]
            Device::CudaEmu => Engine::Emu,
            other => {
                return Err(KernelError::DeviceUnavailable {
                    device: other.to_string(),
                    reason: "not a CUDA device in this build".into(),
                });
            }
        };
        let emulated = !matches!(engine, Engine::Driver(_));
        let tf32_capable = match &engine {
            Engine::Driver(d) => d.compute_capability() >= (8, 0),
            #[cfg(feature = "cuda-emu")]
            Engine::Emu => true,
        };
        let ctx: &'static Ctx = Box::leak(Box::new(Ctx {
            device,
            engine,
            pool: Mutex::new(alloc::Pool::new(emulated)),
            poison: emulated || env_flag("NAS_CUDA_POISON"),
            sync_each: env_flag("NAS_CUDA_SYNC"),
            tf32: AtomicBool::new(tf32),
            tf32_capable,
        }));
        map.insert(device, ctx);
        Ok(Cuda { ctx, tf32: None })
    }

    /// Lets the GEMMs of this device (SGEMM, and the implicit-GEMM convolutions' forward and
    /// weight gradient) run on TF32 tensor cores, or back to exact f32 (the default; also set
    /// by `NAS_CUDA_TF32=1` when the device is first opened). Device-wide, like PyTorch's
    /// `torch.backends.cuda.matmul.allow_tf32`: every handle and tensor on the device follows
    /// it, except handles from [`Cuda::with_tf32`]. TF32 keeps 10 of f32's 23 mantissa bits
    /// of each operand (round to nearest, ties away), so results differ from f32 by about
    /// 1e-3 relative to the sum of the magnitudes of the products; accumulation stays in f32.
    /// A device below compute capability 8.0 has no TF32 tensor cores: the setting is kept
    /// but has no effect there ([`Cuda::tf32`] is then false).
    pub fn set_tf32(&self, on: bool) {
        self.ctx.tf32.store(on, Ordering::Relaxed);
    }

    /// A handle of the same device that uses TF32 tensor cores (`on`) or exact f32 whatever
    /// the device-wide setting ([`Cuda::set_tf32`]) is; tensors keep using the device's
    /// setting. For comparing both on one device in one process.
    pub fn with_tf32(&self, on: bool) -> Cuda {
        Cuda {
            ctx: self.ctx,
            tf32: Some(on),
        }
    }

    /// Whether this handle's GEMMs run on TF32 tensor cores: TF32 is on (the handle's choice,
    /// else the device's) and the device has them (compute capability >= 8.0).
    pub fn tf32(&self) -> bool {
        self.ctx.tf32_capable
            && self
                .tf32
                .unwrap_or_else(|| self.ctx.tf32.load(Ordering::Relaxed))
    }

    /// Whether the device has TF32 tensor cores (compute capability >= 8.0; the emulated
    /// device models them).
    pub fn tf32_supported(&self) -> bool {
        self.ctx.tf32_capable
    }

    /// The emulated device (feature `cuda-emu`): the CUDA kernels compiled as C++ and run on
    /// the CPU, with guard pages around every buffer and outputs poisoned with NaN.
    #[cfg(feature = "cuda-emu")]
    pub fn emulated() -> Cuda {
        Cuda::new(Device::CudaEmu).expect("the emulated device always opens")
    }

    /// The emulated device's `cvt.rna.tf32.f32` (feature `cuda-emu`) on the bits of an f32:
    /// what the TF32 kernels round each operand to on the emulated device (tests compare it
    /// with a reference, bit for bit).
    #[cfg(feature = "cuda-emu")]
    pub fn emulated_tf32_round(bits: u32) -> u32 {
        emu::tf32_round(bits)
    }

    /// Counts of the device's allocator (driver allocations, reuses, bytes).
    pub fn alloc_stats(&self) -> AllocStats {
        self.ctx
            .pool
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .stats()
    }

    /// Returns every cached free block to the driver.
    pub fn release_cached(&self) -> Result<()> {
        let blocks = self
            .ctx
            .pool
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain();
        for (ptr, bytes) in blocks {
            self.raw_free(ptr, bytes);
        }
        Ok(())
    }

    /// Waits for every queued kernel and copy of the device's stream; an error a kernel
    /// raised comes back here (naming the kernels launched since the last synchronisation).
    pub fn synchronize(&self) -> Result<()> {
        match &self.ctx.engine {
            Engine::Driver(d) => d.synchronize(),
            #[cfg(feature = "cuda-emu")]
            Engine::Emu => Ok(()),
        }
    }

    /// The device's name (from the driver), e.g. `NVIDIA H100 80GB HBM3`.
    pub fn name(&self) -> String {
        match &self.ctx.engine {
            Engine::Driver(d) => d.name(),
            #[cfg(feature = "cuda-emu")]
            Engine::Emu => "emulated (C++ on the CPU)".into(),
        }
    }

    /// The device's handle, without this handle's TF32 override.
    fn device_handle(&self) -> Cuda {
        Cuda {
            ctx: self.ctx,
            tf32: None,
        }
    }

    // ------------------------------------------------------------ memory

    fn raw_malloc(&self, bytes: usize) -> Result<u64> {
        match &self.ctx.engine {
            Engine::Driver(d) => d.malloc(bytes),
            #[cfg(feature = "cuda-emu")]
            Engine::Emu => emu::malloc(bytes),
        }
    }

    fn raw_free(&self, ptr: u64, bytes: usize) {
        match &self.ctx.engine {
            Engine::Driver(d) => d.free(ptr),
            #[cfg(feature = "cuda-emu")]
            Engine::Emu => emu::free(ptr, bytes),
        }
        let _ = bytes;
    }

    /// A buffer of `len` floats with unspecified contents (NaN when poisoning).
    pub(crate) fn buffer(&self, len: usize) -> Result<CudaBuf> {
        let bytes = len.checked_mul(4).ok_or(KernelError::OutOfMemory {
            floats: len,
            bytes: usize::MAX,
        })?;
        if len == 0 {
            return Ok(CudaBuf {
                ptr: 0,
                len: 0,
                block: 0,
                cuda: self.device_handle(),
            });
        }
        let (ptr, block) = {
            let mut pool = self.ctx.pool.lock().unwrap_or_else(|e| e.into_inner());
            let class = pool.class(bytes);
            match pool.take(class) {
                Some(p) => (p, class),
                None => {
                    drop(pool);
                    let p = match self.raw_malloc(class) {
                        Ok(p) => p,
                        Err(_) => {
                            // give the cached blocks back and try once more
                            self.release_cached()?;
                            self.raw_malloc(class)
                                .map_err(|_| KernelError::OutOfMemory { floats: len, bytes })?
                        }
                    };
                    self.ctx
                        .pool
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .note_malloc(class);
                    (p, class)
                }
            }
        };
        Ok(CudaBuf {
            ptr,
            len,
            block,
            cuda: self.device_handle(),
        })
    }

    fn give_back(&self, ptr: u64, block: usize) {
        self.ctx
            .pool
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .put(ptr, block);
    }

    pub(crate) fn upload(&self, data: &[f32]) -> Result<CudaBuf> {
        let b = self.buffer(data.len())?;
        if !data.is_empty() {
            match &self.ctx.engine {
                Engine::Driver(d) => d.htod(b.ptr, data)?,
                #[cfg(feature = "cuda-emu")]
                Engine::Emu => emu::htod(b.ptr, data),
            }
        }
        Ok(b)
    }

    /// Uploads `u32`s (labels, indices) into a buffer of the same number of 4-byte slots.
    pub(crate) fn upload_u32(&self, data: &[u32]) -> Result<CudaBuf> {
        let bits: Vec<f32> = data.iter().map(|&v| f32::from_bits(v)).collect();
        self.upload(&bits)
    }

    pub(crate) fn download(&self, b: &CudaBuf) -> Result<Vec<f32>> {
        let mut out = vec![0.0f32; b.len];
        if b.len > 0 {
            match &self.ctx.engine {
                Engine::Driver(d) => d.dtoh(b.ptr, &mut out)?,
                #[cfg(feature = "cuda-emu")]
                Engine::Emu => emu::dtoh(b.ptr, &mut out),
            }
        }
        Ok(out)
    }

    pub(crate) fn poisons(&self) -> bool {
        self.ctx.poison
    }

    // ------------------------------------------------------------ launches

    fn launch_raw(
        &self,
        k: Kernel,
        grid: [u32; 3],
        block: [u32; 3],
        args: &mut [*mut c_void],
    ) -> Result<()> {
        match &self.ctx.engine {
            Engine::Driver(d) => {
                d.launch(k, grid, block, args)?;
                if self.ctx.sync_each {
                    d.synchronize()?;
                }
                Ok(())
            }
            #[cfg(feature = "cuda-emu")]
            Engine::Emu => emu::launch(k, grid, block, args),
        }
    }
}

/// Refuses sizes the kernels' `int` indices cannot hold.
pub(crate) fn fits_int(op: &'static str, v: usize) -> Result<()> {
    if v > i32::MAX as usize {
        return Err(KernelError::param(
            op,
            format!("{v} elements exceed the CUDA kernels' 2^31 - 1"),
        ));
    }
    Ok(())
}

/// A buffer of `f32`s in device memory, owned (returned to the device's allocator on drop).
pub struct CudaBuf {
    ptr: u64,
    len: usize,
    block: usize,
    cuda: Cuda,
}

impl CudaBuf {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }
    /// Whether it holds no element.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// The device it lives on.
    pub fn device(&self) -> Device {
        self.cuda.ctx.device
    }
    pub(crate) fn ptr(&self) -> u64 {
        self.ptr
    }
}

impl std::fmt::Debug for CudaBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CudaBuf({} floats on {})",
            self.len, self.cuda.ctx.device
        )
    }
}

impl Drop for CudaBuf {
    fn drop(&mut self) {
        if self.len > 0 {
            self.cuda.give_back(self.ptr, self.block);
        }
    }
}

/// A kernel launch: grid, block and the argument list, laid out as `cuLaunchKernel` takes it
/// (a pointer to each argument's bytes).
pub(crate) struct Launch {
    kernel: Kernel,
    grid: [u32; 3],
    block: [u32; 3],
    args: Vec<Box<[u64]>>,
    overflow: Option<&'static str>,
}

/// Threads per block of the one-dimensional kernels.
pub(crate) const THREADS: u32 = 256;

impl Launch {
    /// A launch of `module`'s kernel `name`.
    pub fn new(module: Module, name: &'static str) -> Launch {
        Launch {
            kernel: Kernel { module, name },
            grid: [1, 1, 1],
            block: [THREADS, 1, 1],
            args: Vec::new(),
            overflow: None,
        }
    }
    /// Enough blocks of [`THREADS`] threads for one thread per element of `n`.
    pub fn over(mut self, n: usize) -> Launch {
        self.grid = [n.div_ceil(THREADS as usize).max(1) as u32, 1, 1];
        self.block = [THREADS, 1, 1];
        if n.div_ceil(THREADS as usize) > u32::MAX as usize {
            self.overflow = Some("too many elements for one launch");
        }
        self
    }
    /// Sets the grid.
    pub fn grid(mut self, x: usize, y: usize, z: usize) -> Launch {
        if x > u32::MAX as usize || y > 65535 || z > 65535 {
            self.overflow = Some("grid too large");
        }
        self.grid = [x.max(1) as u32, y.max(1) as u32, z.max(1) as u32];
        self
    }
    fn push<T: Copy>(mut self, v: T) -> Launch {
        let words = std::mem::size_of::<T>().div_ceil(8).max(1);
        let mut slot = vec![0u64; words].into_boxed_slice();
        debug_assert!(std::mem::align_of::<T>() <= 8);
        // SAFETY: the slot has at least size_of::<T>() bytes and 8-byte alignment, and T is
        // Copy (plain data).
        unsafe { std::ptr::write(slot.as_mut_ptr() as *mut T, v) };
        self.args.push(slot);
        self
    }
    /// A buffer's device address (`const float*` or `float*` in the kernel).
    pub fn buf(self, b: &CudaBuf) -> Launch {
        self.push(b.ptr)
    }
    /// An optional buffer: a null pointer when absent.
    pub fn opt(self, b: Option<&CudaBuf>) -> Launch {
        self.push(b.map_or(0u64, |b| b.ptr))
    }
    /// A size or index (`int` in the kernel); over `i32::MAX` fails the launch.
    pub fn int(mut self, v: usize) -> Launch {
        if v > i32::MAX as usize {
            self.overflow = Some("a size exceeds 2^31 - 1");
        }
        self.push(v as i32)
    }
    /// A signed `int`.
    pub fn i32(self, v: i32) -> Launch {
        self.push(v)
    }
    /// A `float`.
    pub fn f32(self, v: f32) -> Launch {
        self.push(v)
    }
    /// An `unsigned int`.
    #[allow(dead_code)] // the seeded fills (ops/random) use it
    pub fn u32(self, v: u32) -> Launch {
        self.push(v)
    }
    /// A by-value struct (`#[repr(C)]`, mirrored in `prelude.cuh`).
    pub fn val<T: Copy>(self, v: T) -> Launch {
        self.push(v)
    }
    /// Queues the launch on `cuda`'s stream.
    pub fn run(mut self, cuda: &Cuda) -> Result<()> {
        if let Some(why) = self.overflow {
            return Err(KernelError::param(self.kernel.name, why));
        }
        let mut ptrs: Vec<*mut c_void> = self
            .args
            .iter_mut()
            .map(|s| s.as_mut_ptr() as *mut c_void)
            .collect();
        cuda.launch_raw(self.kernel, self.grid, self.block, &mut ptrs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tf32_env_is_0_or_1() {
        assert_eq!(parse_tf32_env(None), Ok(false));
        assert_eq!(parse_tf32_env(Some("")), Ok(false));
        assert_eq!(parse_tf32_env(Some("0")), Ok(false));
        assert_eq!(parse_tf32_env(Some("1")), Ok(true));
        assert_eq!(parse_tf32_env(Some(" 1 ")), Ok(true));
        let e = parse_tf32_env(Some("yes")).unwrap_err();
        assert!(e.contains("NAS_CUDA_TF32") && e.contains("`yes`"), "{e}");
    }

    /// `set_tf32` switches every handle of the device (and so tensors) to the TF32 kernels,
    /// `with_tf32` overrides it for one handle. The data sit on TF32 ties, so the TF32 and
    /// f32 results differ.
    #[cfg(feature = "cuda-emu")]
    #[test]
    fn tf32_setting_is_device_wide_and_reaches_the_launches() {
        use crate::{Backend, Conv2dParams, Matmul};
        let c = Cuda::emulated();
        assert!(c.tf32_supported());
        assert!(!c.tf32(), "TF32 is off by default");
        let vals = |n: usize| -> Vec<f32> {
            (0..n)
                .map(|i| f32::from_bits((1.0f32 + i as f32 / 7.0).to_bits() & !0x1fff | 0x1000))
                .collect()
        };
        let p = Matmul {
            batch: 1,
            m: 5,
            n: 6,
            k: 7,
            trans_a: false,
            trans_b: false,
            b_shared: false,
            alpha: 1.0,
            beta: 0.0,
        };
        let cv = Conv2dParams::new(1, 2, 5, 5, 3, 3)
            .padding(1)
            .check()
            .unwrap();
        let run = |h: Cuda| -> (Vec<f32>, Vec<f32>) {
            let (a, b) = (h.from_vec(vals(35)).unwrap(), h.from_vec(vals(42)).unwrap());
            let mut out = h.alloc(30).unwrap();
            h.matmul(&p, &a, &b, &mut out).unwrap();
            let (x, w) = (h.from_vec(vals(50)).unwrap(), h.from_vec(vals(54)).unwrap());
            let mut y = h.alloc(75).unwrap();
            h.conv2d(&cv, &x, &w, None, &mut y).unwrap();
            (h.to_vec(&out).unwrap(), h.to_vec(&y).unwrap())
        };
        let (f32_path, tf32_path) = (run(c.with_tf32(false)), run(c.with_tf32(true)));
        assert_ne!(f32_path.0, tf32_path.0);
        assert_ne!(f32_path.1, tf32_path.1);
        assert_eq!(run(c), f32_path);
        c.set_tf32(true);
        let fresh = Cuda::emulated();
        let on = (fresh.tf32(), fresh.with_tf32(false).tf32(), run(fresh));
        c.set_tf32(false);
        assert!(on.0 && !on.1);
        assert_eq!(on.2, tf32_path);
        assert_eq!(run(Cuda::emulated()), f32_path);
    }
}
