//! im2col + GEMM: any configuration. Each image's columns go into a pooled workspace, then
//! one [`sgemm`] per group.

use super::Conv2dParams;
use super::shared::{out_range, par_chunks_mut, partial_weight_grads};
use crate::gemm::sgemm;
use crate::workspace::with_scratch;

/// Columns of group `g` of one image: `col[(icg * kh + ky) * kw + kx][oy * ow + ox]`.
fn im2col(p: &Conv2dParams, xb: &[f32], g: usize, col: &mut [f32]) {
    let (oh, ow) = (p.out_h(), p.out_w());
    let ohw = oh * ow;
    let cig = p.c_in / p.groups;
    let (sh, sw) = p.stride;
    let (ph, pw) = p.padding;
    let (dh, dw) = p.dilation;
    for icg in 0..cig {
        let plane = &xb[(g * cig + icg) * p.h * p.w..(g * cig + icg + 1) * p.h * p.w];
        for ky in 0..p.kh {
            let (ylo, yhi) = out_range(ky * dh, ph, sh, p.h, oh);
            for kx in 0..p.kw {
                let row = (icg * p.kh + ky) * p.kw + kx;
                let dst = &mut col[row * ohw..(row + 1) * ohw];
                let (xlo, xhi) = out_range(kx * dw, pw, sw, p.w, ow);
                dst[..ylo * ow].fill(0.0);
                dst[yhi * ow..].fill(0.0);
                for oy in ylo..yhi {
                    let iy = oy * sh + ky * dh - ph;
                    let d = &mut dst[oy * ow..(oy + 1) * ow];
                    d[..xlo].fill(0.0);
                    d[xhi..].fill(0.0);
                    if xlo < xhi {
                        let start = iy * p.w + xlo * sw + kx * dw - pw;
                        if sw == 1 {
                            d[xlo..xhi].copy_from_slice(&plane[start..start + xhi - xlo]);
                        } else {
                            for (j, v) in d[xlo..xhi].iter_mut().enumerate() {
                                *v = plane[start + j * sw];
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Adds columns back into image gradient `dxb` (the adjoint of [`im2col`]).
fn col2im(p: &Conv2dParams, col: &[f32], g: usize, dxb: &mut [f32]) {
    let (oh, ow) = (p.out_h(), p.out_w());
    let ohw = oh * ow;
    let cig = p.c_in / p.groups;
    let (sh, sw) = p.stride;
    let (ph, pw) = p.padding;
    let (dh, dw) = p.dilation;
    for icg in 0..cig {
        let plane = &mut dxb[(g * cig + icg) * p.h * p.w..(g * cig + icg + 1) * p.h * p.w];
        for ky in 0..p.kh {
            let (ylo, yhi) = out_range(ky * dh, ph, sh, p.h, oh);
            for kx in 0..p.kw {
                let row = (icg * p.kh + ky) * p.kw + kx;
                let src = &col[row * ohw..(row + 1) * ohw];
                let (xlo, xhi) = out_range(kx * dw, pw, sw, p.w, ow);
                if xlo >= xhi {
                    continue;
                }
                for oy in ylo..yhi {
                    let iy = oy * sh + ky * dh - ph;
                    let s = &src[oy * ow + xlo..oy * ow + xhi];
                    let start = iy * p.w + xlo * sw + kx * dw - pw;
                    if sw == 1 {
                        for (d, &v) in plane[start..start + s.len()].iter_mut().zip(s) {
                            *d += v;
                        }
                    } else {
                        for (j, &v) in s.iter().enumerate() {
                            plane[start + j * sw] += v;
                        }
                    }
                }
            }
        }
    }
}

pub(super) fn forward(p: &Conv2dParams, x: &[f32], w: &[f32], y: &mut [f32]) {
    let ohw = p.out_h() * p.out_w();
    let (cig, cog) = (p.c_in / p.groups, p.c_out / p.groups);
    let k = cig * p.kh * p.kw;
    let (xl, yl) = (p.c_in * p.h * p.w, p.c_out * ohw);
    par_chunks_mut(p, y, yl, &|b, yb| {
        let xb = &x[b * xl..(b + 1) * xl];
        with_scratch(k * ohw, |col| {
            for g in 0..p.groups {
                im2col(p, xb, g, col);
                sgemm(
                    false,
                    false,
                    cog,
                    ohw,
                    k,
                    1.0,
                    &w[g * cog * k..],
                    k,
                    col,
                    ohw,
                    0.0,
                    &mut yb[g * cog * ohw..],
                    ohw,
                );
            }
        });
    });
}

pub(super) fn backward_input(p: &Conv2dParams, w: &[f32], dy: &[f32], dx: &mut [f32]) {
    let ohw = p.out_h() * p.out_w();
    let (cig, cog) = (p.c_in / p.groups, p.c_out / p.groups);
    let k = cig * p.kh * p.kw;
    let (xl, yl) = (p.c_in * p.h * p.w, p.c_out * ohw);
    par_chunks_mut(p, dx, xl, &|b, dxb| {
        dxb.fill(0.0);
        let dyb = &dy[b * yl..(b + 1) * yl];
        with_scratch(k * ohw, |col| {
            for g in 0..p.groups {
                sgemm(
                    true,
                    false,
                    k,
                    ohw,
                    cog,
                    1.0,
                    &w[g * cog * k..],
                    k,
                    &dyb[g * cog * ohw..],
                    ohw,
                    0.0,
                    col,
                    ohw,
                );
                col2im(p, col, g, dxb);
            }
        });
    });
}

pub(super) fn backward_weight(p: &Conv2dParams, x: &[f32], dy: &[f32], dw: &mut [f32]) {
    let ohw = p.out_h() * p.out_w();
    let (cig, cog) = (p.c_in / p.groups, p.c_out / p.groups);
    let k = cig * p.kh * p.kw;
    let (xl, yl) = (p.c_in * p.h * p.w, p.c_out * ohw);
    partial_weight_grads(p, dw, &|part, images| {
        with_scratch(k * ohw, |col| {
            for b in images {
                let xb = &x[b * xl..(b + 1) * xl];
                let dyb = &dy[b * yl..(b + 1) * yl];
                for g in 0..p.groups {
                    im2col(p, xb, g, col);
                    sgemm(
                        false,
                        true,
                        cog,
                        k,
                        ohw,
                        1.0,
                        &dyb[g * cog * ohw..],
                        ohw,
                        col,
                        ohw,
                        1.0,
                        &mut part[g * cog * k..],
                        k,
                    );
                }
            }
        });
    });
}
