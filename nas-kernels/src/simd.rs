//! Run-time choice of AVX-512 for plain loops.
//!
//! The crate is compiled for baseline x86-64 (SSE2), so auto-vectorised loops run four
//! floats wide. [`avx512_dispatch!`] defines a function that, on a CPU with AVX-512F, calls
//! its `#[inline(always)]` body from inside a `#[target_feature(enable = "avx512f")]`
//! function, so LLVM compiles the same source loop a second time for 16-float vectors; on
//! other CPUs (and other architectures) it calls the body as compiled for the baseline.
//!
//! Also the small pieces the AVX-512 kernels share: [`lane_sum`], [`first_lanes`] (a row
//! tail's lane mask) and `transpose16` (a 16 x 16 register transpose: GEMM packing, the
//! channels-last staging of the convolution weight gradient).

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

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

/// The sum of `L` f32 lane accumulators in f64, added pairwise (halving the lanes each round).
///
/// Kernels that sum a row keep `L` partial sums in vector lanes; adding those up one after
/// another is `L` dependent f64 additions, which for rows of a few hundred elements cost
/// more than the row itself. The halving rounds are vector additions, and pairwise is at
/// least as accurate as the running sum. `L` is a power of two.
///
/// Rounds above 16 lanes add in f32 (one 16-float vector per add; each such sum rounds once,
/// as the lane accumulators did at every step), the last 16 lanes in f64: converting all `L`
/// lanes to f64 first made the reduction cost as much as summing a 64-float row.
#[inline(always)]
pub(crate) fn lane_sum<const L: usize>(lanes: &[f32; L]) -> f64 {
    debug_assert!(L.is_power_of_two());
    let mut f = *lanes;
    let mut w = L;
    while w > 16 {
        w /= 2;
        for j in 0..w {
            f[j] += f[j + w];
        }
    }
    let mut d = [0.0f64; 16];
    for j in 0..w {
        d[j] = f[j] as f64;
    }
    while w > 1 {
        w /= 2;
        for j in 0..w {
            d[j] += d[j + w];
        }
    }
    d[0]
}

/// The mask of the first `min(n, 16)` lanes of a 16-lane vector (AVX-512's `__mmask16`): the
/// loads and stores of a row's last, partial vector.
#[inline(always)]
pub(crate) fn first_lanes(n: usize) -> u16 {
    if n >= 16 {
        0xffff
    } else {
        ((1u32 << n) - 1) as u16
    }
}

/// Transposes the 16 x 16 block held in `r` (row `i` in `r[i]`) in place: afterwards `r[j]`
/// holds column `j`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub(crate) fn transpose16(r: &mut [__m512; 16]) {
    // Stage 1: interleave pairs of rows (within 128-bit lanes).
    let mut a = [_mm512_setzero_ps(); 16];
    for i in 0..8 {
        a[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        a[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    // Stage 2: interleave 64-bit pairs: `b[4 i + c]` holds, in lane `l`, column `4 l + c` of
    // rows `4 i .. 4 i + 4`.
    let mut b = [_mm512_setzero_ps(); 16];
    for i in 0..4 {
        for h in 0..2 {
            let x = _mm512_castps_pd(a[4 * i + h]);
            let y = _mm512_castps_pd(a[4 * i + 2 + h]);
            b[4 * i + 2 * h] = _mm512_castpd_ps(_mm512_unpacklo_pd(x, y));
            b[4 * i + 2 * h + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(x, y));
        }
    }
    // Stages 3 and 4: a 4 x 4 transpose of 128-bit lanes for each `c`.
    for c in 0..4 {
        let u0 = _mm512_shuffle_f32x4::<0x88>(b[c], b[4 + c]);
        let u1 = _mm512_shuffle_f32x4::<0xDD>(b[c], b[4 + c]);
        let u2 = _mm512_shuffle_f32x4::<0x88>(b[8 + c], b[12 + c]);
        let u3 = _mm512_shuffle_f32x4::<0xDD>(b[8 + c], b[12 + c]);
        r[c] = _mm512_shuffle_f32x4::<0x88>(u0, u2);
        r[4 + c] = _mm512_shuffle_f32x4::<0x88>(u1, u3);
        r[8 + c] = _mm512_shuffle_f32x4::<0xDD>(u0, u2);
        r[12 + c] = _mm512_shuffle_f32x4::<0xDD>(u1, u3);
    }
}

#[cfg(test)]
mod tests {
    use super::lane_sum;

    #[test]
    fn lane_sum_adds_every_lane() {
        // integers and halves: every partial sum is exact, so a lane left out or counted
        // twice changes the result
        let lanes: [f32; 64] = std::array::from_fn(|j| (j * j) as f32 + 0.5);
        let want: f64 = (0..64).map(|j| (j * j) as f64 + 0.5).sum();
        assert_eq!(lane_sum(&lanes), want);
        let small: [f32; 16] = std::array::from_fn(|j| (j * j) as f32 - 3.5);
        assert_eq!(
            lane_sum(&small),
            (0..16).map(|j| (j * j) as f64 - 3.5).sum::<f64>()
        );
        assert_eq!(lane_sum(&[2.5f32]), 2.5);
    }
}
