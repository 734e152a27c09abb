//! CPU batch-norm kernels. Shapes validated by [`crate::Cpu`].
//!
//! Both directions make two passes over the tensor in memory order (image by image), which
//! the hardware prefetchers follow; a per-channel order would jump between `n` separate
//! `h * w` runs. Images are spread over threads; per-channel sums are per-thread partials
//! (f64) added at the end.

use super::BatchNormParams;
use crate::simd::{avx512_dispatch, lane_sum};
use crate::threads::{num_threads, parallel_chunks_mut, parallel_split_mut, split_range};

/// Number of image ranges the passes are split into (1 for small tensors).
fn parts(p: &BatchNormParams) -> usize {
    if p.x_len() >= 1 << 15 {
        num_threads().min(p.n).max(1)
    } else {
        1
    }
}

/// Runs `f(t, images, piece)` for the `parts` image ranges of `out` (images of `image`
/// elements), `piece` being those images' elements; over threads when `parts > 1`.
fn per_range(
    p: &BatchNormParams,
    parts: usize,
    out: &mut [f32],
    f: impl Fn(usize, std::ops::Range<usize>, &mut [f32]) + Sync,
) {
    if parts <= 1 {
        f(0, 0..p.n, out);
    } else {
        parallel_split_mut(out, p.c * p.hw, parts, f);
    }
}

/// Runs `f(t, partial_t)` for each of the `parts` per-task partials of `partial` (`len`
/// elements each); over threads when `parts > 1`.
fn per_partial(
    parts: usize,
    partial: &mut [f64],
    len: usize,
    f: &(dyn Fn(usize, &mut [f64]) + Sync),
) {
    if parts <= 1 {
        f(0, partial);
    } else {
        parallel_chunks_mut(partial, len, f);
    }
}

avx512_dispatch! {
    /// `(sum(a), sum(a * (b - shift)))` of two equal-length rows (AVX-512 when the CPU has it).
    fn sums(a: &[f32], b: &[f32], shift: f32) -> (f64, f64) = sums_body::<16>, sums_body::<64>;
}

/// `(sum(a), sum(a * (b - shift)))`: `L` f32 lanes per sum (the tail padded with `a = 0`),
/// added up in f64.
#[inline(always)]
fn sums_body<const L: usize>(a: &[f32], b: &[f32], shift: f32) -> (f64, f64) {
    let (mut s1, mut s2) = ([0.0f32; L], [0.0f32; L]);
    let mut add = |ac: &[f32; L], bc: &[f32; L]| {
        for j in 0..L {
            s1[j] += ac[j];
            s2[j] += ac[j] * (bc[j] - shift);
        }
    };
    let (ia, ta) = a.as_chunks::<L>();
    let (ib, tb) = b.as_chunks::<L>();
    for (ac, bc) in ia.iter().zip(ib) {
        add(ac, bc);
    }
    if !ta.is_empty() {
        let (mut pa, mut pb) = ([0.0f32; L], [shift; L]);
        pa[..ta.len()].copy_from_slice(ta);
        pb[..ta.len()].copy_from_slice(&tb[..ta.len()]);
        add(&pa, &pb);
    }
    (lane_sum(&s1), lane_sum(&s2))
}

avx512_dispatch! {
    /// `(sum(x - shift), sum((x - shift)^2))` of a row (AVX-512 when the CPU has it).
    fn sums_sq(x: &[f32], shift: f32) -> (f64, f64) = sums_sq_body::<16>, sums_sq_body::<64>;
}

/// `(sum(x - shift), sum((x - shift)^2))`: `L` f32 lanes per sum (the tail padded with
/// `shift`), added up in f64.
#[inline(always)]
fn sums_sq_body<const L: usize>(x: &[f32], shift: f32) -> (f64, f64) {
    let (mut s1, mut s2) = ([0.0f32; L], [0.0f32; L]);
    let mut add = |c: &[f32; L]| {
        for j in 0..L {
            let d = c[j] - shift;
            s1[j] += d;
            s2[j] += d * d;
        }
    };
    let (body, tail) = x.as_chunks::<L>();
    for c in body {
        add(c);
    }
    if !tail.is_empty() {
        let mut pad = [shift; L];
        pad[..tail.len()].copy_from_slice(tail);
        add(&pad);
    }
    (lane_sum(&s1), lane_sum(&s2))
}

/// Per-channel `(sum(a), sum(a * (b - shift[ch])))` over the whole tensor.
fn channel_sums(p: &BatchNormParams, a: &[f32], b: &[f32], shift: &[f32]) -> Vec<(f64, f64)> {
    let np = parts(p);
    let mut partial = vec![0.0f64; np * p.c * 2];
    per_partial(np, &mut partial, p.c * 2, &|t, part| {
        for bi in split_range(p.n, np, t) {
            for ch in 0..p.c {
                let o = (bi * p.c + ch) * p.hw;
                let (s1, s2) = sums(&a[o..o + p.hw], &b[o..o + p.hw], shift[ch]);
                part[ch * 2] += s1;
                part[ch * 2 + 1] += s2;
            }
        }
    });
    (0..p.c)
        .map(|ch| {
            (0..np).fold((0.0, 0.0), |(x, y), t| {
                (
                    x + partial[(t * p.c + ch) * 2],
                    y + partial[(t * p.c + ch) * 2 + 1],
                )
            })
        })
        .collect()
}

/// Forward; see [`crate::Backend::batch_norm`].
pub(crate) fn forward(
    p: &BatchNormParams,
    x: &[f32],
    gamma: Option<&[f32]>,
    beta: Option<&[f32]>,
    mut running_mean: Option<&mut [f32]>,
    mut running_var: Option<&mut [f32]>,
    y: &mut [f32],
    save_mean: &mut [f32],
    save_invstd: &mut [f32],
) {
    let m = (p.n * p.hw) as f64;
    if p.training {
        // sums of (x - shift) and (x - shift)^2 with shift = a first value of the channel,
        // which keeps the one-pass variance accurate
        let shift: Vec<f32> = (0..p.c).map(|ch| x[ch * p.hw]).collect();
        let st = channel_sums_sq(p, x, &shift);
        let mo = p.momentum as f64;
        for ch in 0..p.c {
            let (s, s2) = st[ch];
            let md = s / m;
            let mean = shift[ch] as f64 + md;
            let var = (s2 / m - md * md).max(0.0);
            if let Some(rm) = running_mean.as_deref_mut() {
                rm[ch] = ((1.0 - mo) * rm[ch] as f64 + mo * mean) as f32;
            }
            if let Some(rv) = running_var.as_deref_mut() {
                rv[ch] = ((1.0 - mo) * rv[ch] as f64 + mo * var * m / (m - 1.0)) as f32;
            }
            save_mean[ch] = mean as f32;
            save_invstd[ch] = (1.0 / (var + p.eps as f64).sqrt()) as f32;
        }
    } else {
        // validated: both running statistics are present in evaluation
        for ch in 0..p.c {
            let rm = running_mean.as_deref().map_or(0.0, |r| r[ch]) as f64;
            let rv = running_var.as_deref().map_or(1.0, |r| r[ch]) as f64;
            save_mean[ch] = rm as f32;
            save_invstd[ch] = (1.0 / (rv + p.eps as f64).sqrt()) as f32;
        }
    }
    let coef: Vec<(f32, f32)> = (0..p.c)
        .map(|ch| {
            let scale = gamma.map_or(1.0, |g| g[ch]) * save_invstd[ch];
            (scale, beta.map_or(0.0, |b| b[ch]) - save_mean[ch] * scale)
        })
        .collect();
    let np = parts(p);
    per_range(p, np, y, |_, r, yr| {
        let (lo, len) = (r.start * p.c * p.hw, r.len() * p.c * p.hw);
        normalize(&coef, p.hw, &x[lo..lo + len], yr);
    });
}

/// Per-channel `(sum(x - shift), sum((x - shift)^2))`.
fn channel_sums_sq(p: &BatchNormParams, x: &[f32], shift: &[f32]) -> Vec<(f64, f64)> {
    let np = parts(p);
    let mut partial = vec![0.0f64; np * p.c * 2];
    per_partial(np, &mut partial, p.c * 2, &|t, part| {
        for bi in split_range(p.n, np, t) {
            for ch in 0..p.c {
                let o = (bi * p.c + ch) * p.hw;
                let (s, s2) = sums_sq(&x[o..o + p.hw], shift[ch]);
                part[ch * 2] += s;
                part[ch * 2 + 1] += s2;
            }
        }
    });
    (0..p.c)
        .map(|ch| {
            (0..np).fold((0.0, 0.0), |(u, v), t| {
                (
                    u + partial[(t * p.c + ch) * 2],
                    v + partial[(t * p.c + ch) * 2 + 1],
                )
            })
        })
        .collect()
}

/// Backward; see [`crate::Backend::batch_norm_backward`].
pub(crate) fn backward(
    p: &BatchNormParams,
    x: &[f32],
    gamma: Option<&[f32]>,
    save_mean: &[f32],
    save_invstd: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    mut dgamma: Option<&mut [f32]>,
    mut dbeta: Option<&mut [f32]>,
) {
    let m = (p.n * p.hw) as f64;
    // sum(dy) and sum(dy * (x - mean)) per channel
    let st = channel_sums(p, dy, x, save_mean);
    let mut coef = vec![(0.0f32, 0.0f32, 0.0f32, 0.0f32); p.c];
    for ch in 0..p.c {
        let (sg, sgx) = st[ch];
        let inv = save_invstd[ch];
        if let Some(db) = dbeta.as_deref_mut() {
            db[ch] = sg as f32;
        }
        if let Some(dg) = dgamma.as_deref_mut() {
            dg[ch] = (sgx * inv as f64) as f32;
        }
        // training: dx = g * inv * (dy - mean(dy) - xhat * mean(dy * xhat))
        // evaluation: dx = g * inv * dy
        let k = gamma.map_or(1.0, |g| g[ch]) * inv;
        let (c0, c1) = if p.training {
            ((sg / m) as f32, (sgx / m) as f32 * inv * inv)
        } else {
            (0.0, 0.0)
        };
        coef[ch] = (k, c0, c1, save_mean[ch]);
    }
    let np = parts(p);
    per_range(p, np, dx, |_, r, dr| {
        let (lo, len) = (r.start * p.c * p.hw, r.len() * p.c * p.hw);
        input_grad(&coef, p.hw, &x[lo..lo + len], &dy[lo..lo + len], dr);
    });
}

avx512_dispatch! {
    /// `y = x * scale + shift` over whole images, `coef[ch] = (scale, shift)` (AVX-512 when the
    /// CPU has it).
    fn normalize(coef: &[(f32, f32)], hw: usize, x: &[f32], y: &mut [f32]) = normalize_body;
}

#[inline(always)]
fn normalize_body(coef: &[(f32, f32)], hw: usize, x: &[f32], y: &mut [f32]) {
    for (i, (yc, xc)) in y.chunks_exact_mut(hw).zip(x.chunks_exact(hw)).enumerate() {
        let (scale, shift) = coef[i % coef.len()];
        for (yv, &xv) in yc.iter_mut().zip(xc) {
            *yv = xv * scale + shift;
        }
    }
}

avx512_dispatch! {
    /// `dx = k * (dy - c0 - (x - mean) * c1)` over whole images, `coef[ch] = (k, c0, c1, mean)`
    /// (AVX-512 when the CPU has it).
    fn input_grad(coef: &[(f32, f32, f32, f32)], hw: usize, x: &[f32], dy: &[f32], dx: &mut [f32])
        = input_grad_body;
}

#[inline(always)]
fn input_grad_body(
    coef: &[(f32, f32, f32, f32)],
    hw: usize,
    x: &[f32],
    dy: &[f32],
    dx: &mut [f32],
) {
    let rows = dx
        .chunks_exact_mut(hw)
        .zip(x.chunks_exact(hw))
        .zip(dy.chunks_exact(hw));
    for (i, ((dc, xc), gc)) in rows.enumerate() {
        let (k, c0, c1, mean) = coef[i % coef.len()];
        for ((d, &xv), &gv) in dc.iter_mut().zip(xc).zip(gc) {
            *d = k * (gv - c0 - (xv - mean) * c1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (((i * 37 + seed * 11) % 101) as f32 - 30.0) * 0.041)
            .collect()
    }

    /// The portable bodies (what CPUs without AVX-512 run) against the dispatched kernels (the
    /// AVX-512 build where the CPU has it) and f64 sums, on lengths around the lane counts.
    #[test]
    fn portable_bodies_match_dispatched_kernels() {
        let close = |got: f64, want: f64| (got - want).abs() <= 1e-5 * (1.0 + want.abs());
        for n in [0usize, 1, 15, 16, 17, 49, 64, 65, 127, 1024, 3001] {
            let (a, b) = (data(n, 1), data(n, 2));
            let shift = 0.3f32;
            let w1: f64 = a.iter().map(|&v| v as f64).sum();
            let w2: f64 = a
                .iter()
                .zip(&b)
                .map(|(&u, &v)| u as f64 * (v - shift) as f64)
                .sum();
            for (s1, s2) in [sums_body::<16>(&a, &b, shift), sums(&a, &b, shift)] {
                assert!(close(s1, w1) && close(s2, w2), "sums n={n}");
            }
            let q1: f64 = b.iter().map(|&v| (v - shift) as f64).sum();
            let q2: f64 = b.iter().map(|&v| ((v - shift) as f64).powi(2)).sum();
            for (s1, s2) in [sums_sq_body::<16>(&b, shift), sums_sq(&b, shift)] {
                assert!(close(s1, q1) && close(s2, q2), "sums_sq n={n}");
            }
        }
        let (c, hw) = (3, 37);
        let len = 2 * c * hw;
        let (x, dy) = (data(len, 3), data(len, 4));
        let coef2: Vec<(f32, f32)> = (0..c).map(|i| (0.5 + i as f32, -0.25 * i as f32)).collect();
        let coef4: Vec<(f32, f32, f32, f32)> = (0..c)
            .map(|i| (1.5 - i as f32, 0.1 * i as f32, 0.3, -0.2 * i as f32))
            .collect();
        let (mut p, mut d) = (vec![0.0; len], vec![0.0; len]);
        normalize_body(&coef2, hw, &x, &mut p);
        normalize(&coef2, hw, &x, &mut d);
        assert_eq!(p, d);
        input_grad_body(&coef4, hw, &x, &dy, &mut p);
        input_grad(&coef4, hw, &x, &dy, &mut d);
        assert_eq!(p, d);
    }
}
