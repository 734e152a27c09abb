//! CPU pooling kernels (direct loops over each window). Shapes validated by [`crate::Cpu`].

use super::{Pool2d, PoolKind};
use crate::threads::parallel_for;
use crate::workspace::SyncPtr;

/// Index range `[lo, hi)` of in-bounds window taps for output position `o`.
#[inline(always)]
fn taps(o: usize, stride: usize, pad: usize, k: usize, size: usize) -> (usize, usize) {
    let start = (o * stride) as isize - pad as isize;
    let lo = start.max(0) as usize;
    let hi = ((start + k as isize).min(size as isize)).max(0) as usize;
    (lo, hi)
}

/// Runs `f(image)` for every image, over threads when the input is large.
fn per_image(p: &Pool2d, f: &(dyn Fn(usize) + Sync)) {
    if p.x_len() >= 1 << 16 {
        parallel_for(p.n, f);
    } else {
        (0..p.n).for_each(f);
    }
}

/// Forward pooling.
pub(crate) fn forward(p: &Pool2d, x: &[f32], y: &mut [f32]) {
    let yl = p.c * p.out_h() * p.out_w();
    let xl = p.c * p.h * p.w;
    let yp = SyncPtr(y.as_mut_ptr());
    per_image(p, &|b| {
        // SAFETY: task b writes only image b of y.
        forward_planes(p, p.c, &x[b * xl..(b + 1) * xl], unsafe {
            yp.slice(b * yl, yl)
        })
    });
}

/// Backward pooling: `dx` (overwritten) from `dy`; max recomputes the arg-max from `x`.
pub(crate) fn backward(p: &Pool2d, x: &[f32], dy: &[f32], dx: &mut [f32]) {
    let yl = p.c * p.out_h() * p.out_w();
    let xl = p.c * p.h * p.w;
    let dxp = SyncPtr(dx.as_mut_ptr());
    per_image(p, &|b| {
        let (xb, gb) = (&x[b * xl..(b + 1) * xl], &dy[b * yl..(b + 1) * yl]);
        // SAFETY: task b writes only image b of dx.
        backward_planes(p, p.c, xb, gb, unsafe { dxp.slice(b * xl, xl) })
    });
}

/// Forward pooling of `planes` consecutive channel planes.
fn forward_planes(p: &Pool2d, planes: usize, x: &[f32], y: &mut [f32]) {
    let (oh, ow) = (p.out_h(), p.out_w());
    let (kh, kw) = p.kernel;
    for bc in 0..planes {
        let xp = &x[bc * p.h * p.w..(bc + 1) * p.h * p.w];
        let yp = &mut y[bc * oh * ow..(bc + 1) * oh * ow];
        for oy in 0..oh {
            let (y0, y1) = taps(oy, p.stride.0, p.padding.0, kh, p.h);
            for ox in 0..ow {
                let (x0, x1) = taps(ox, p.stride.1, p.padding.1, kw, p.w);
                yp[oy * ow + ox] = match p.kind {
                    PoolKind::Max => {
                        let mut m = f32::NEG_INFINITY;
                        for iy in y0..y1 {
                            for &v in &xp[iy * p.w + x0..iy * p.w + x1] {
                                m = m.max(v);
                            }
                        }
                        m
                    }
                    PoolKind::Avg { count_include_pad } => {
                        let mut s = 0.0f32;
                        for iy in y0..y1 {
                            for &v in &xp[iy * p.w + x0..iy * p.w + x1] {
                                s += v;
                            }
                        }
                        let cnt = if count_include_pad {
                            kh * kw
                        } else {
                            (y1 - y0) * (x1 - x0)
                        };
                        s / cnt as f32
                    }
                };
            }
        }
    }
}

/// Backward pooling of `planes` consecutive channel planes.
fn backward_planes(p: &Pool2d, planes: usize, x: &[f32], dy: &[f32], dx: &mut [f32]) {
    let (oh, ow) = (p.out_h(), p.out_w());
    let (kh, kw) = p.kernel;
    dx.fill(0.0);
    for bc in 0..planes {
        let xp = &x[bc * p.h * p.w..(bc + 1) * p.h * p.w];
        let dxp = &mut dx[bc * p.h * p.w..(bc + 1) * p.h * p.w];
        let gp = &dy[bc * oh * ow..(bc + 1) * oh * ow];
        for oy in 0..oh {
            let (y0, y1) = taps(oy, p.stride.0, p.padding.0, kh, p.h);
            for ox in 0..ow {
                let (x0, x1) = taps(ox, p.stride.1, p.padding.1, kw, p.w);
                let g = gp[oy * ow + ox];
                match p.kind {
                    PoolKind::Max => {
                        let mut m = f32::NEG_INFINITY;
                        let mut at = y0 * p.w + x0;
                        for iy in y0..y1 {
                            for ix in x0..x1 {
                                let v = xp[iy * p.w + ix];
                                if v > m {
                                    m = v;
                                    at = iy * p.w + ix;
                                }
                            }
                        }
                        dxp[at] += g;
                    }
                    PoolKind::Avg { count_include_pad } => {
                        let cnt = if count_include_pad {
                            kh * kw
                        } else {
                            (y1 - y0) * (x1 - x0)
                        };
                        let g = g / cnt as f32;
                        for iy in y0..y1 {
                            for d in &mut dxp[iy * p.w + x0..iy * p.w + x1] {
                                *d += g;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Global average pooling: `y[b, c] = mean(x[b, c, :])`.
pub(crate) fn global_avg(hw: usize, x: &[f32], y: &mut [f32]) {
    for (i, v) in y.iter_mut().enumerate() {
        let s: f64 = x[i * hw..(i + 1) * hw].iter().map(|&v| v as f64).sum();
        *v = (s / hw as f64) as f32;
    }
}

/// Backward of global average pooling.
pub(crate) fn global_avg_backward(hw: usize, dy: &[f32], dx: &mut [f32]) {
    for (i, &g) in dy.iter().enumerate() {
        dx[i * hw..(i + 1) * hw].fill(g / hw as f32);
    }
}
