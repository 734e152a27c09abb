//! 1x1, stride 1, no padding: the image *is* the GEMM operand (one [`sgemm`] per image and
//! group, no im2col).

use super::Conv2dParams;
use super::shared::{par_chunks_mut, partial_weight_grads};
use crate::gemm::sgemm;

pub(super) fn forward(p: &Conv2dParams, x: &[f32], w: &[f32], y: &mut [f32]) {
    let hw = p.h * p.w;
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
