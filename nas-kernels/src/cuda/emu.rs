//! The emulated device's engine: the kernels of every `.cu` module compiled as C++ by
//! `build.rs` (feature `cuda-emu`) and run on the CPU by `emu/emu_runtime.cpp`.

use std::ffi::{CString, c_char, c_void};

use super::Kernel;
use crate::error::{KernelError, Result};

unsafe extern "C" {
    fn nas_emu_launch(
        name: *const c_char,
        grid: *const u32,
        block: *const u32,
        args: *mut *mut c_void,
        err: *mut c_char,
        err_len: usize,
    ) -> i32;
    fn nas_emu_malloc(bytes: usize) -> u64;
    fn nas_emu_free(ptr: u64, bytes: usize);
    fn nas_emu_tf32_round(bits: u32) -> u32;
}

/// The emulated device's `cvt.rna.tf32.f32` on raw bits.
pub(super) fn tf32_round(bits: u32) -> u32 {
    // SAFETY: a pure function of its argument.
    unsafe { nas_emu_tf32_round(bits) }
}

pub(super) fn malloc(bytes: usize) -> Result<u64> {
    // SAFETY: maps fresh memory; returns 0 on failure.
    let p = unsafe { nas_emu_malloc(bytes) };
    if p == 0 {
        return Err(KernelError::OutOfMemory {
            floats: bytes / 4,
            bytes,
        });
    }
    Ok(p)
}

pub(super) fn free(ptr: u64, bytes: usize) {
    // SAFETY: `ptr` and `bytes` are those of an earlier `malloc`, no longer referenced.
    unsafe { nas_emu_free(ptr, bytes) }
}

pub(super) fn htod(dst: u64, src: &[f32]) {
    // SAFETY: `dst` is an emulated allocation of at least `src.len()` floats.
    unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst as *mut f32, src.len()) }
}

pub(super) fn dtoh(src: u64, dst: &mut [f32]) {
    // SAFETY: `src` is an emulated allocation of at least `dst.len()` floats.
    unsafe { std::ptr::copy_nonoverlapping(src as *const f32, dst.as_mut_ptr(), dst.len()) }
}

pub(super) fn launch(
    k: Kernel,
    grid: [u32; 3],
    block: [u32; 3],
    args: &mut [*mut c_void],
) -> Result<()> {
    let name = CString::new(k.name).expect("kernel names have no NUL");
    let mut err = vec![0u8; 512];
    // SAFETY: `args` points at one live argument slot per kernel parameter, laid out as
    // cuLaunchKernel takes them; the emulator reads them during the call only.
    let rc = unsafe {
        nas_emu_launch(
            name.as_ptr(),
            grid.as_ptr(),
            block.as_ptr(),
            args.as_mut_ptr(),
            err.as_mut_ptr() as *mut c_char,
            err.len(),
        )
    };
    if rc != 0 {
        let end = err.iter().position(|&b| b == 0).unwrap_or(err.len());
        return Err(KernelError::Cuda {
            kernel: k.name.to_string(),
            msg: String::from_utf8_lossy(&err[..end]).into_owned(),
        });
    }
    Ok(())
}
