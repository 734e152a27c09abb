//! The input gradient of strided convolutions (the [`Path::Strided`](super::Path::Strided)
//! path) as stride-1 direct convolutions, without im2col.
//!
//! Split the zero-padded input into its phases modulo the stride (as the forward in
//! `strided.rs` does): phase `(qy, qx)` holds the padded positions `(r * sh + qy, j * sw + qx)`.
//! A kernel tap `(ky, kx)` reads only the phase `((ky dh) % sh, (kx dw) % sw)`, at offset
//! `((ky dh) / sh, (kx dw) / sw)` from the output position. The taps of one phase are evenly
//! spaced, so each phase sees an ordinary stride-1 convolution with a sub-kernel of those taps
//! (dilation `dh / gcd(sh, dh)`) over a window of the phase plane. Its input gradient is that
//! window's part of the input gradient: every padded position belongs to exactly one phase, so
//! the pieces are copied into place, never added. The sub-problems run on the register-blocked
//! stride-1 kernels ([`super::direct`]), which spread images over threads.
//!
//! The weight gradient splits the same way (each tap belongs to one phase), but per-phase
//! sub-kernels of 1 or 2 taps a side ran slower than im2col's GEMM on NB201's and the main
//! job's reduction shapes (`conv_stages`, 3x3s2 rows, 1 thread, under load: 38-57 GFLOP/s
//! against im2col's 38-108), so it stays on im2col.

use super::Conv2dParams;
use super::direct;
use crate::workspace::with_scratch;

/// One phase's sub-problem along one axis: the taps that read it and where its window starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Axis {
    /// The phase (padded coordinate modulo the stride).
    q: usize,
    /// First kernel index of the phase's taps, and the step between them.
    k0: usize,
    kstep: usize,
    /// Number of taps (0: the phase is read by none).
    k: usize,
    /// Window start in phase coordinates (offset of the first tap).
    o0: usize,
    /// Dilation of the sub-kernel in phase coordinates.
    d: usize,
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// The sub-problem of phase `q` along an axis with kernel size `k`, stride `s`, dilation `d`.
fn axis(q: usize, k: usize, s: usize, d: usize) -> Axis {
    let kstep = s / gcd(s, d);
    match (0..k.min(kstep)).find(|&i| (i * d) % s == q) {
        Some(k0) => {
            let n = (k - k0).div_ceil(kstep);
            Axis {
                q,
                k0,
                kstep,
                k: n,
                o0: k0 * d / s,
                d: kstep * d / s,
            }
        }
        None => Axis {
            q,
            k0: 0,
            kstep,
            k: 0,
            o0: 0,
            d: 1,
        },
    }
}

/// The stride-1 convolution of one phase: `(oh + (k - 1) d)`-row windows, no padding, the
/// same output size and groups as `p`.
fn sub_params(p: &Conv2dParams, ay: &Axis, ax: &Axis) -> Conv2dParams {
    Conv2dParams {
        n: p.n,
        c_in: p.c_in,
        h: p.out_h() + (ay.k - 1) * ay.d,
        w: p.out_w() + (ax.k - 1) * ax.d,
        c_out: p.c_out,
        kh: ay.k,
        kw: ax.k,
        stride: (1, 1),
        padding: (0, 0),
        dilation: (ay.d, ax.d),
        groups: p.groups,
    }
}

/// Calls `f(sub, ay, ax)` for every phase that some tap reads.
fn phases(p: &Conv2dParams, mut f: impl FnMut(&Conv2dParams, &Axis, &Axis)) {
    for qy in 0..p.stride.0 {
        let ay = axis(qy, p.kh, p.stride.0, p.dilation.0);
        if ay.k == 0 {
            continue;
        }
        for qx in 0..p.stride.1 {
            let ax = axis(qx, p.kw, p.stride.1, p.dilation.1);
            if ax.k == 0 {
                continue;
            }
            f(&sub_params(p, &ay, &ax), &ay, &ax);
        }
    }
}

/// Input coordinate of window position `r` along an axis (`None` in the padding).
#[inline]
fn input_at(a: &Axis, r: usize, stride: usize, pad: usize, size: usize) -> Option<usize> {
    ((r + a.o0) * stride + a.q)
        .checked_sub(pad)
        .filter(|&i| i < size)
}

/// Visits, for every window position `(r, j)` of a phase that lies inside the input, the
/// flat offset of that position in one window plane and in one input plane.
fn window_map(
    p: &Conv2dParams,
    sub: &Conv2dParams,
    ay: &Axis,
    ax: &Axis,
    mut f: impl FnMut(usize, usize),
) {
    for r in 0..sub.h {
        let Some(iy) = input_at(ay, r, p.stride.0, p.padding.0, p.h) else {
            continue;
        };
        for j in 0..sub.w {
            if let Some(ix) = input_at(ax, j, p.stride.1, p.padding.1, p.w) {
                f(r * sub.w + j, iy * p.w + ix);
            }
        }
    }
}

/// The phase's taps of `w` (`[c_out, c_in / groups, kh, kw]`) as a `[c_out, c_in / groups,
/// ay.k, ax.k]` kernel.
fn gather_taps(p: &Conv2dParams, ay: &Axis, ax: &Axis, w: &[f32], sub: &mut [f32]) {
    let outer = p.c_out * (p.c_in / p.groups);
    for o in 0..outer {
        for a in 0..ay.k {
            for b in 0..ax.k {
                let (ky, kx) = (ay.k0 + a * ay.kstep, ax.k0 + b * ax.kstep);
                sub[(o * ay.k + a) * ax.k + b] = w[(o * p.kh + ky) * p.kw + kx];
            }
        }
    }
}

/// Input gradient of a strided convolution; `mask`: ReLU's backward as well (`dx = 0` where
/// `mask <= 0`, for a convolution of `relu(mask)`).
pub(super) fn backward_input(
    p: &Conv2dParams,
    w: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    mask: Option<&[f32]>,
) {
    let plane = p.h * p.w;
    dx.fill(0.0);
    phases(p, |sub, ay, ax| {
        with_scratch(sub.w_len() + sub.x_len(), |buf| {
            let (ws, win) = buf.split_at_mut(sub.w_len());
            gather_taps(p, ay, ax, w, ws);
            direct::backward_input(sub, ws, dy, win);
            let wplane = sub.h * sub.w;
            for (dxp, wp) in dx.chunks_exact_mut(plane).zip(win.chunks_exact(wplane)) {
                window_map(p, sub, ay, ax, |from, to| dxp[to] = wp[from]);
            }
        });
    });
    if let Some(m) = mask {
        for (d, &v) in dx.iter_mut().zip(m) {
            *d = if v > 0.0 { *d } else { 0.0 };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tap_belongs_to_exactly_one_phase() {
        for (k, s, d) in [
            (3, 2, 1),
            (5, 2, 1),
            (3, 2, 2),
            (3, 3, 1),
            (1, 2, 1),
            (2, 3, 2),
            (7, 4, 3),
        ] {
            let mut seen = vec![0; k];
            for q in 0..s {
                let a = axis(q, k, s, d);
                for i in 0..a.k {
                    let kk = a.k0 + i * a.kstep;
                    assert_eq!(
                        (kk * d) % s,
                        q,
                        "tap {kk} in phase {q} (k {k}, s {s}, d {d})"
                    );
                    assert_eq!(kk * d / s, a.o0 + i * a.d, "offset of tap {kk}");
                    seen[kk] += 1;
                }
            }
            assert!(
                seen.iter().all(|&c| c == 1),
                "k {k}, s {s}, d {d}: {seen:?}"
            );
        }
    }
}
