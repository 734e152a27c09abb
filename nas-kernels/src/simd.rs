//! Run-time choice of AVX-512 for plain loops.
//!
//! The crate is compiled for baseline x86-64 (SSE2), so auto-vectorised loops run four
//! floats wide. [`avx512_dispatch!`] defines a function that, on a CPU with AVX-512F, calls
//! its `#[inline(always)]` body from inside a `#[target_feature(enable = "avx512f")]`
//! function, so LLVM compiles the same source loop a second time for 16-float vectors; on
//! other CPUs (and other architectures) it calls the body as compiled for the baseline.

/// Whether the CPU has AVX-512F (std caches the detection: one load and a bit test).
#[inline]
pub(crate) fn avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `avx512_dispatch!(vis fn name(args) -> ret = portable_body);` or
/// `avx512_dispatch!(vis fn name(args) -> ret = portable_body, avx512_body);`
///
/// Defines `name`, which calls `avx512_body` (by default `portable_body`) compiled with
/// AVX-512F enabled when the CPU has it, and `portable_body` otherwise. The bodies must be
/// `#[inline(always)]` functions (or paths to them, e.g. `sums::<16>`) taking the arguments
/// in order, so that they are compiled into the AVX-512 function rather than called.
macro_rules! avx512_dispatch {
    (
        $(#[$meta:meta])*
        $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)?
            = $portable:expr;
    ) => {
        $crate::simd::avx512_dispatch! {
            $(#[$meta])*
            $vis fn $name($($arg: $ty),*) $(-> $ret)? = $portable, $portable;
        }
    };
    (
        $(#[$meta:meta])*
        $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)?
            = $portable:expr, $wide:expr;
    ) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f")]
            unsafe fn avx512($($arg: $ty),*) $(-> $ret)? {
                $wide($($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            if $crate::simd::avx512() {
                // SAFETY: AVX-512F was detected.
                return unsafe { avx512($($arg),*) };
            }
            $portable($($arg),*)
        }
    };
}

pub(crate) use avx512_dispatch;
