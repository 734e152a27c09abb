//! Depthwise (`groups == c_in == c_out`), portable: direct loops per channel plane (forward,
//! input and weight gradient); stride-1 rows are contiguous AXPYs/dots that the compiler
//! vectorises.

use super::Conv2dParams;
use super::shared::{out_range, par_chunks_mut, par_split_mut, threads_for};

#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let mut ia = a.chunks_exact(8);
    let mut ib = b.chunks_exact(8);
    for (x, y) in (&mut ia).zip(&mut ib) {
        for j in 0..8 {
            acc[j] += x[j] * y[j];
        }
    }
    let mut s = 0.0;
    for (x, y) in ia.remainder().iter().zip(ib.remainder()) {
        s += x * y;
    }
    s + acc.iter().sum::<f32>()
}

/// One channel plane: `y = conv(x, w)`.
fn plane_forward(p: &Conv2dParams, x: &[f32], w: &[f32], y: &mut [f32]) {
    let (oh, ow) = (p.out_h(), p.out_w());
    let (sh, sw) = p.stride;
    let (ph, pw) = p.padding;
    let (dh, dw) = p.dilation;
    y.fill(0.0);
    for oy in 0..oh {
        let yr = &mut y[oy * ow..(oy + 1) * ow];
        for ky in 0..p.kh {
            let iy = (oy * sh + ky * dh) as isize - ph as isize;
            if iy < 0 || iy >= p.h as isize {
                continue;
            }
            let xr = &x[iy as usize * p.w..(iy as usize + 1) * p.w];
            for kx in 0..p.kw {
                let wv = w[ky * p.kw + kx];
                let (lo, hi) = out_range(kx * dw, pw, sw, p.w, ow);
                if lo >= hi {
                    continue;
                }
                let start = lo * sw + kx * dw - pw;
                if sw == 1 {
                    for (o, &v) in yr[lo..hi].iter_mut().zip(&xr[start..start + hi - lo]) {
                        *o += wv * v;
                    }
                } else {
                    for (j, o) in yr[lo..hi].iter_mut().enumerate() {
                        *o += wv * xr[start + j * sw];
                    }
                }
            }
        }
    }
}

/// One channel plane: `dx = conv^T(dy, w)`.
fn plane_backward_input(p: &Conv2dParams, w: &[f32], dy: &[f32], dx: &mut [f32]) {
    let (oh, ow) = (p.out_h(), p.out_w());
    let (sh, sw) = p.stride;
    let (ph, pw) = p.padding;
    let (dh, dw) = p.dilation;
    dx.fill(0.0);
    for oy in 0..oh {
        let gr = &dy[oy * ow..(oy + 1) * ow];
        for ky in 0..p.kh {
            let iy = (oy * sh + ky * dh) as isize - ph as isize;
            if iy < 0 || iy >= p.h as isize {
                continue;
            }
            let dr = &mut dx[iy as usize * p.w..(iy as usize + 1) * p.w];
            for kx in 0..p.kw {
                let wv = w[ky * p.kw + kx];
                let (lo, hi) = out_range(kx * dw, pw, sw, p.w, ow);
                if lo >= hi {
                    continue;
                }
                let start = lo * sw + kx * dw - pw;
                if sw == 1 {
                    for (d, &g) in dr[start..start + hi - lo].iter_mut().zip(&gr[lo..hi]) {
                        *d += wv * g;
                    }
                } else {
                    for (j, &g) in gr[lo..hi].iter().enumerate() {
                        dr[start + j * sw] += wv * g;
                    }
                }
            }
        }
    }
}

/// One channel plane: `dw += corr(x, dy)`.
fn plane_backward_weight(p: &Conv2dParams, x: &[f32], dy: &[f32], dw_out: &mut [f32]) {
    let (oh, ow) = (p.out_h(), p.out_w());
    let (sh, sw) = p.stride;
    let (ph, pw) = p.padding;
    let (dh, dw) = p.dilation;
    for ky in 0..p.kh {
        let (ylo, yhi) = out_range(ky * dh, ph, sh, p.h, oh);
        for kx in 0..p.kw {
            let (lo, hi) = out_range(kx * dw, pw, sw, p.w, ow);
            if lo >= hi {
                continue;
            }
            let mut s = 0.0f32;
            for oy in ylo..yhi {
                let iy = oy * sh + ky * dh - ph;
                let start = iy * p.w + lo * sw + kx * dw - pw;
                let gr = &dy[oy * ow + lo..oy * ow + hi];
                if sw == 1 {
                    s += dot(gr, &x[start..start + hi - lo]);
                } else {
                    for (j, &g) in gr.iter().enumerate() {
                        s += g * x[start + j * sw];
                    }
                }
            }
            dw_out[ky * p.kw + kx] += s;
        }
    }
}

pub(super) fn forward(p: &Conv2dParams, x: &[f32], w: &[f32], y: &mut [f32]) {
    let (hw, ohw, kk) = (p.h * p.w, p.out_h() * p.out_w(), p.kh * p.kw);
    par_chunks_mut(p, y, p.c_in * ohw, &|b, yb| {
        for c in 0..p.c_in {
            let i = b * p.c_in + c;
            let yplane = &mut yb[c * ohw..(c + 1) * ohw];
            plane_forward(
                p,
                &x[i * hw..(i + 1) * hw],
                &w[c * kk..(c + 1) * kk],
                yplane,
            );
        }
    });
}

pub(super) fn backward_input(p: &Conv2dParams, w: &[f32], dy: &[f32], dx: &mut [f32]) {
    let (hw, ohw, kk) = (p.h * p.w, p.out_h() * p.out_w(), p.kh * p.kw);
    par_chunks_mut(p, dx, p.c_in * hw, &|b, dxb| {
        for c in 0..p.c_in {
            let i = b * p.c_in + c;
            let dplane = &mut dxb[c * hw..(c + 1) * hw];
            plane_backward_input(
                p,
                &w[c * kk..(c + 1) * kk],
                &dy[i * ohw..(i + 1) * ohw],
                dplane,
            );
        }
    });
}

pub(super) fn backward_weight(p: &Conv2dParams, x: &[f32], dy: &[f32], dw: &mut [f32]) {
    let (hw, ohw, kk) = (p.h * p.w, p.out_h() * p.out_w(), p.kh * p.kw);
    dw.fill(0.0);
    let parts = threads_for(p).min(p.c_in).max(1);
    // each task owns the weights of its channels
    par_split_mut(p, dw, kk, parts, |_, channels, dwt| {
        for c in channels.clone() {
            let dwc = &mut dwt[(c - channels.start) * kk..][..kk];
            for b in 0..p.n {
                let i = b * p.c_in + c;
                plane_backward_weight(
                    p,
                    &x[i * hw..(i + 1) * hw],
                    &dy[i * ohw..(i + 1) * ohw],
                    dwc,
                );
            }
        }
    });
}
