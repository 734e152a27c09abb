//! 1x1, stride 1, no padding: the image *is* the GEMM operand (one [`sgemm`] per image and
//! group, no im2col). With few channels to mix (at most [`MIX_MAX`]) and AVX-512, the forward
//! and the input gradient run a direct channel mix instead ([`mix`]): a GEMM would copy the
//! whole image into its packed panel for a contraction of only 4 to 16.

use super::Conv2dParams;
use super::shared::{par_chunks_mut, partial_weight_grads};
use crate::gemm::sgemm;

/// Most input channels the direct channel mix takes (its input vectors stay in registers).
const MIX_MAX: usize = 16;

/// Whether [`mix`] computes a 1x1 convolution with `k` input channels (of the mix).
fn mix_ok(p: &Conv2dParams, k: usize) -> bool {
    p.groups == 1 && k <= MIX_MAX && cfg!(target_arch = "x86_64") && crate::simd::avx512()
}

/// `y[o][j] = sum_i w(o, i) * x[i][j]` for `outs` planes of `y` and `ins` planes of `x` (each
/// `hw` floats), the weight `w(o, i) = w[o * wo + i * wi]`; the products are added in order
/// of `i`, as the GEMM does, so the result is the same.
#[cfg(target_arch = "x86_64")]
fn mix(
    (ins, outs, hw): (usize, usize, usize),
    w: &[f32],
    (wo, wi): (usize, usize),
    x: &[f32],
    y: &mut [f32],
) {
    assert!(ins <= MIX_MAX && x.len() >= ins * hw && y.len() >= outs * hw);
    assert!(outs == 0 || ins == 0 || w.len() > (outs - 1) * wo + (ins - 1) * wi);
    assert!(crate::simd::avx512());
    // SAFETY: AVX-512F was detected; the asserts bound every index the kernel touches.
    unsafe {
        mix_avx512(
            (ins, outs, hw),
            w.as_ptr(),
            (wo, wi),
            x.as_ptr(),
            y.as_mut_ptr(),
        )
    }
}

/// # Safety
/// AVX-512F; the bounds [`mix`] asserts.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn mix_avx512(
    (ins, outs, hw): (usize, usize, usize),
    w: *const f32,
    (wo, wi): (usize, usize),
    x: *const f32,
    y: *mut f32,
) {
    // blocks of 64 pixels (4 vectors) x 4 output planes in 16 accumulators: each loaded input
    // vector and each broadcast weight feeds 4 multiply-adds
    let mut j = 0;
    while j < hw {
        let n = (hw - j).min(64);
        let mut o = 0;
        // SAFETY: (both calls) the kernel reads planes `< ins` of `x` and writes planes
        // `o..o + OB` (`<= outs`) of `y` at the `n <= hw - j` pixels from `j`.
        unsafe {
            while o + 4 <= outs {
                mix_block::<4>(ins, hw, (j, n), w.add(o * wo), (wo, wi), x, y.add(o * hw));
                o += 4;
            }
            match outs - o {
                1 => mix_block::<1>(ins, hw, (j, n), w.add(o * wo), (wo, wi), x, y.add(o * hw)),
                2 => mix_block::<2>(ins, hw, (j, n), w.add(o * wo), (wo, wi), x, y.add(o * hw)),
                3 => mix_block::<3>(ins, hw, (j, n), w.add(o * wo), (wo, wi), x, y.add(o * hw)),
                _ => {}
            }
        }
        j += 64;
    }
}

/// `OB` output planes x the `n <= 64` pixels from `j`, the sum over the input planes in order.
///
/// # Safety
/// AVX-512F; `x` holds `ins` planes of `hw`, `y` `OB`, `j + n <= hw`; the weights of the `OB`
/// outputs at `w + oo * wo + i * wi`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn mix_block<const OB: usize>(
    ins: usize,
    hw: usize,
    (j, n): (usize, usize),
    w: *const f32,
    (wo, wi): (usize, usize),
    x: *const f32,
    y: *mut f32,
) {
    use std::arch::x86_64::*;
    let mask = |v: usize| -> __mmask16 {
        let left = n.saturating_sub(16 * v);
        if left >= 16 {
            0xffff
        } else {
            ((1u32 << left) - 1) as u16
        }
    };
    let mk = [mask(0), mask(1), mask(2), mask(3)];
    let mut acc = [[_mm512_setzero_ps(); 4]; OB];
    // SAFETY: (whole body) loads and stores are masked to the `n` pixels from `j`.
    unsafe {
        for i in 0..ins {
            let xr = x.add(i * hw + j);
            let xv = [
                _mm512_maskz_loadu_ps(mk[0], xr),
                _mm512_maskz_loadu_ps(mk[1], xr.add(16)),
                _mm512_maskz_loadu_ps(mk[2], xr.add(32)),
                _mm512_maskz_loadu_ps(mk[3], xr.add(48)),
            ];
            for (oo, a) in acc.iter_mut().enumerate() {
                let wv = _mm512_set1_ps(*w.add(oo * wo + i * wi));
                for v in 0..4 {
                    a[v] = _mm512_fmadd_ps(wv, xv[v], a[v]);
                }
            }
        }
        for (oo, a) in acc.iter().enumerate() {
            let yr = y.add(oo * hw + j);
            for v in 0..4 {
                _mm512_mask_storeu_ps(yr.add(16 * v), mk[v], a[v]);
            }
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn mix(_: (usize, usize, usize), _: &[f32], _: (usize, usize), _: &[f32], _: &mut [f32]) {
    unreachable!("mix_ok is false off x86-64")
}

pub(super) fn forward(p: &Conv2dParams, x: &[f32], w: &[f32], y: &mut [f32]) {
    let hw = p.h * p.w;
    if mix_ok(p, p.c_in) && p.c_in > 0 {
        let (ci, co) = (p.c_in, p.c_out);
        return par_chunks_mut(p, y, co * hw, &|b, yb| {
            mix(
                (ci, co, hw),
                w,
                (ci, 1),
                &x[b * ci * hw..(b + 1) * ci * hw],
                yb,
            )
        });
    }
    let (cig, cog) = (p.c_in / p.groups, p.c_out / p.groups);
    par_chunks_mut(p, y, p.c_out * hw, &|b, yb| {
        for g in 0..p.groups {
            let xg = &x[(b * p.c_in + g * cig) * hw..];
            sgemm(
                false,
                false,
                cog,
                hw,
                cig,
                1.0,
                &w[g * cog * cig..],
                cig,
                xg,
                hw,
                0.0,
                &mut yb[g * cog * hw..],
                hw,
            );
        }
    });
}

pub(super) fn backward_input(p: &Conv2dParams, w: &[f32], dy: &[f32], dx: &mut [f32]) {
    let hw = p.h * p.w;
    if mix_ok(p, p.c_out) && p.c_out > 0 {
        // dx[i] = sum_o w[o][i] dy[o]: the mix with the weight transposed
        let (ci, co) = (p.c_in, p.c_out);
        return par_chunks_mut(p, dx, ci * hw, &|b, dxb| {
            mix(
                (co, ci, hw),
                w,
                (1, ci),
                &dy[b * co * hw..(b + 1) * co * hw],
                dxb,
            )
        });
    }
    let (cig, cog) = (p.c_in / p.groups, p.c_out / p.groups);
    par_chunks_mut(p, dx, p.c_in * hw, &|b, dxb| {
        for g in 0..p.groups {
            let dyg = &dy[(b * p.c_out + g * cog) * hw..];
            sgemm(
                true,
                false,
                cig,
                hw,
                cog,
                1.0,
                &w[g * cog * cig..],
                cig,
                dyg,
                hw,
                0.0,
                &mut dxb[g * cig * hw..],
                hw,
            );
        }
    });
}

pub(super) fn backward_weight(p: &Conv2dParams, x: &[f32], dy: &[f32], dw: &mut [f32]) {
    let hw = p.h * p.w;
    let (cig, cog) = (p.c_in / p.groups, p.c_out / p.groups);
    partial_weight_grads(p, dw, &|part, images| {
        for b in images {
            for g in 0..p.groups {
                let dyg = &dy[(b * p.c_out + g * cog) * hw..];
                let xg = &x[(b * p.c_in + g * cig) * hw..];
                sgemm(
                    false,
                    true,
                    cog,
                    cig,
                    hw,
                    1.0,
                    dyg,
                    hw,
                    xg,
                    hw,
                    1.0,
                    &mut part[g * cog * cig..],
                    cig,
                );
            }
        }
    });
}
