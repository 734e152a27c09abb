//! The real device through cudarc's driver API (dynamically loaded). Every entry point first
//! checks that the library is there: cudarc panics on a missing library, this backend returns
//! [`KernelError::DeviceUnavailable`] instead.

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::{Arc, Mutex};

use cudarc::driver::{CudaContext, CudaFunction, CudaModule, CudaStream, result, sys};
use cudarc::nvrtc::{CompileOptions, compile_ptx_with_opts};

use super::{Kernel, Module};
use crate::error::{KernelError, Result};

/// How many kernel names an asynchronous error report lists at most.
const PENDING: usize = 16;

pub(super) struct Driver {
    ordinal: usize,
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    arch: &'static str,
    cc: (i32, i32),
    modules: Mutex<HashMap<Module, Arc<CudaModule>>>,
    functions: Mutex<HashMap<&'static str, CudaFunction>>,
    /// Kernels launched since the last synchronisation (the last `PENDING`), and how many.
    pending: Mutex<(Vec<&'static str>, usize)>,
}

fn unavailable(ordinal: usize, reason: impl Into<String>) -> KernelError {
    KernelError::DeviceUnavailable {
        device: format!("cuda:{ordinal}"),
        reason: reason.into(),
    }
}

fn driver_err(what: &str, e: result::DriverError) -> KernelError {
    KernelError::Cuda {
        kernel: what.to_string(),
        msg: e.to_string(),
    }
}

/// Whether the CUDA driver library (`libcuda`) can be loaded.
pub fn driver_present() -> bool {
    // SAFETY: only tries to dlopen the library by its candidate names.
    unsafe { sys::is_culib_present() }
}

/// Whether the NVRTC library can be loaded.
pub fn nvrtc_present() -> bool {
    // SAFETY: only tries to dlopen the library by its candidate names.
    unsafe { cudarc::nvrtc::sys::is_culib_present() }
}

impl Driver {
    pub fn open(ordinal: usize) -> Result<Driver> {
        if !driver_present() {
            return Err(unavailable(
                ordinal,
                "no CUDA driver found (libcuda could not be loaded); use --device cpu",
            ));
        }
        result::init().map_err(|e| unavailable(ordinal, format!("cuInit failed: {e}")))?;
        let count = result::device::get_count()
            .map_err(|e| unavailable(ordinal, format!("cannot count devices: {e}")))?;
        if ordinal >= count.max(0) as usize {
            return Err(unavailable(
                ordinal,
                format!("this machine has {count} CUDA device(s)"),
            ));
        }
        let ctx = CudaContext::new(ordinal)
            .map_err(|e| unavailable(ordinal, format!("cannot create a context: {e}")))?;
        let stream = ctx
            .new_stream()
            .map_err(|e| unavailable(ordinal, format!("cannot create a stream: {e}")))?;
        let (major, minor) = ctx.compute_capability().map_err(|e| {
            unavailable(ordinal, format!("cannot read the compute capability: {e}"))
        })?;
        let arch: &'static str = Box::leak(format!("compute_{major}{minor}").into_boxed_str());
        Ok(Driver {
            ordinal,
            ctx,
            stream,
            arch,
            cc: (major, minor),
            modules: Mutex::new(HashMap::new()),
            functions: Mutex::new(HashMap::new()),
            pending: Mutex::new((Vec::new(), 0)),
        })
    }

    pub fn name(&self) -> String {
        self.ctx
            .name()
            .unwrap_or_else(|_| format!("cuda:{}", self.ordinal))
    }

    /// The device's compute capability (major, minor).
    pub fn compute_capability(&self) -> (i32, i32) {
        self.cc
    }

    fn bind(&self) -> Result<()> {
        self.ctx
            .bind_to_thread()
            .map_err(|e| driver_err("cuCtxSetCurrent", e))
    }

    pub fn malloc(&self, bytes: usize) -> Result<u64> {
        self.bind()?;
        // SAFETY: a plain device allocation of `bytes` bytes.
        unsafe { result::malloc_sync(bytes) }.map_err(|e| driver_err("cuMemAlloc", e))
    }

    pub fn free(&self, ptr: u64) {
        if self.bind().is_ok() {
            // SAFETY: `ptr` came from `malloc` and no buffer refers to it any more; work
            // queued on the stream that used it completes first (cuMemFree synchronises).
            let _ = unsafe { result::free_sync(ptr) };
        }
    }

    pub fn htod(&self, dst: u64, src: &[f32]) -> Result<()> {
        self.bind()?;
        // SAFETY: `dst` holds at least `src.len()` floats; pageable host memory is staged
        // before the call returns, so `src` may be dropped afterwards.
        unsafe { result::memcpy_htod_async(dst, src, self.stream.cu_stream()) }
            .map_err(|e| driver_err("cuMemcpyHtoDAsync", e))
    }

    pub fn dtoh(&self, src: u64, dst: &mut [f32]) -> Result<()> {
        self.bind()?;
        // SAFETY: `src` holds at least `dst.len()` floats; the stream is synchronised before
        // `dst` is read.
        unsafe { result::memcpy_dtoh_async(dst, src, self.stream.cu_stream()) }
            .map_err(|e| driver_err("cuMemcpyDtoHAsync", e))?;
        self.synchronize()
    }

    pub fn synchronize(&self) -> Result<()> {
        self.bind()?;
        // SAFETY: the stream is alive (owned by self).
        let r = unsafe { result::stream::synchronize(self.stream.cu_stream()) };
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let (names, count) = std::mem::take(&mut *pending);
        r.map_err(|e| {
            let more = if count > names.len() {
                format!(" (the last {} of {count})", names.len())
            } else {
                String::new()
            };
            KernelError::Cuda {
                kernel: format!(
                    "one of the kernels launched since the last synchronisation{more}: {} \
                     (NAS_CUDA_SYNC=1 names the one)",
                    names.join(", ")
                ),
                msg: e.to_string(),
            }
        })
    }

    fn function(&self, k: Kernel) -> Result<CudaFunction> {
        if let Some(f) = self
            .functions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(k.name)
        {
            return Ok(f.clone());
        }
        let module = {
            let mut modules = self.modules.lock().unwrap_or_else(|e| e.into_inner());
            match modules.get(&k.module) {
                Some(m) => m.clone(),
                None => {
                    let m = self.compile(k.module)?;
                    modules.insert(k.module, m.clone());
                    m
                }
            }
        };
        let f = module
            .load_function(k.name)
            .map_err(|e| KernelError::Cuda {
                kernel: k.name.to_string(),
                msg: format!("not found in module {}: {e}", k.module.name()),
            })?;
        self.functions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(k.name, f.clone());
        Ok(f)
    }

    fn compile(&self, m: Module) -> Result<Arc<CudaModule>> {
        if !nvrtc_present() {
            return Err(unavailable(
                self.ordinal,
                "NVRTC (libnvrtc) could not be loaded: put CUDA's lib64 folder on \
                 LD_LIBRARY_PATH",
            ));
        }
        let ptx = compile_ptx_with_opts(m.program(), options(self.arch)).map_err(|e| {
            KernelError::Cuda {
                kernel: format!("NVRTC compiling {}", m.name()),
                msg: e.to_string(),
            }
        })?;
        self.ctx.load_module(ptx).map_err(|e| KernelError::Cuda {
            kernel: format!("loading module {}", m.name()),
            msg: e.to_string(),
        })
    }

    pub fn launch(
        &self,
        k: Kernel,
        grid: [u32; 3],
        block: [u32; 3],
        args: &mut [*mut c_void],
    ) -> Result<()> {
        let f = self.function(k)?;
        self.bind()?;
        {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            if pending.0.len() == PENDING {
                pending.0.remove(0);
            }
            pending.0.push(k.name);
            pending.1 += 1;
        }
        // SAFETY: the argument list matches the kernel's parameters (each launch site in
        // ops/*/cuda_kernel.rs mirrors its kernel's signature; the emulated device runs the
        // same launch code against the same signatures in CI), and every buffer address in it
        // belongs to a live buffer of this device that the stream orders the kernel against.
        unsafe {
            result::launch_kernel(
                f.cu_function(),
                (grid[0], grid[1], grid[2]),
                (block[0], block[1], block[2]),
                0,
                self.stream.cu_stream(),
                args,
            )
        }
        .map_err(|e| KernelError::Cuda {
            kernel: k.name.to_string(),
            msg: format!("launch failed: {e}"),
        })
    }
}

/// NVRTC options for `arch` (a virtual architecture such as `compute_90`: PTX, which the
/// driver assembles for the device when the module loads): precise division and square roots, no fast
/// math, so results stay close to the CPU's.
pub fn options(arch: &'static str) -> CompileOptions {
    CompileOptions {
        arch: Some(arch),
        prec_div: Some(true),
        prec_sqrt: Some(true),
        fmad: Some(true),
        ftz: Some(false),
        options: vec!["--std=c++17".into()],
        ..Default::default()
    }
}

/// Compiles one module to PTX for `arch` (`compute_90`, ...): the CI's check that
/// every kernel compiles, on machines with NVRTC but no GPU.
pub fn compile_to_ptx(m: Module, arch: &'static str) -> std::result::Result<String, String> {
    if !nvrtc_present() {
        return Err("NVRTC (libnvrtc) could not be loaded".into());
    }
    compile_ptx_with_opts(m.program(), options(arch))
        .map(|p| p.to_src())
        .map_err(|e| match e {
            cudarc::nvrtc::CompileError::CompileError { log, .. } => {
                log.to_string_lossy().into_owned()
            }
            other => other.to_string(),
        })
}
