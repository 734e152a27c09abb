//! CPU batch-norm kernels. Shapes validated by [`crate::Cpu`].

use super::BatchNorm2d;

/// Per-channel sum and sum of squared deviations from `shift` (a first guess of the mean,
/// which keeps the one-pass variance accurate), in f64.
fn channel_stats(p: &BatchNorm2d, x: &[f32], ch: usize) -> (f64, f64) {
    let shift = x[ch * p.hw] as f64;
    let (mut s, mut s2) = (0.0f64, 0.0f64);
    for b in 0..p.n {
        let row = &x[(b * p.c + ch) * p.hw..(b * p.c + ch + 1) * p.hw];
        let (mut a, mut a2) = ([0.0f32; 8], [0.0f32; 8]);
        let sh = shift as f32;
        let mut it = row.chunks_exact(8);
        for c in &mut it {
            for j in 0..8 {
                let d = c[j] - sh;
                a[j] += d;
                a2[j] += d * d;
            }
        }
        for &v in it.remainder() {
            let d = (v - sh) as f64;
            s += d;
            s2 += d * d;
        }
        s += a.iter().map(|&v| v as f64).sum::<f64>();
        s2 += a2.iter().map(|&v| v as f64).sum::<f64>();
    }
    let m = (p.n * p.hw) as f64;
    let mean_d = s / m;
    let var = (s2 / m - mean_d * mean_d).max(0.0);
    (shift + mean_d, var)
}

/// Forward; see [`crate::Backend::batch_norm`].
pub(crate) fn forward(
    p: &BatchNorm2d,
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
    for ch in 0..p.c {
        let (mean, var) = if p.training {
            let (mean, var) = channel_stats(p, x, ch);
            let mo = p.momentum as f64;
            if let Some(rm) = running_mean.as_deref_mut() {
                rm[ch] = ((1.0 - mo) * rm[ch] as f64 + mo * mean) as f32;
            }
            if let Some(rv) = running_var.as_deref_mut() {
                rv[ch] = ((1.0 - mo) * rv[ch] as f64 + mo * var * m / (m - 1.0)) as f32;
            }
            (mean, var)
        } else {
            // validated: present in evaluation
            let rm = running_mean.as_deref().map_or(0.0, |r| r[ch]) as f64;
            let rv = running_var.as_deref().map_or(1.0, |r| r[ch]) as f64;
            (rm, rv)
        };
        let inv = 1.0 / (var + p.eps as f64).sqrt();
        save_mean[ch] = mean as f32;
        save_invstd[ch] = inv as f32;
        let g = gamma.map_or(1.0, |g| g[ch]);
        let b = beta.map_or(0.0, |b| b[ch]);
        let scale = g * inv as f32;
        let shift = b - mean as f32 * scale;
        for bi in 0..p.n {
            let o = (bi * p.c + ch) * p.hw;
            for (yv, &xv) in y[o..o + p.hw].iter_mut().zip(&x[o..o + p.hw]) {
                *yv = xv * scale + shift;
            }
        }
    }
}

/// Backward; see [`crate::Backend::batch_norm_backward`].
pub(crate) fn backward(
    p: &BatchNorm2d,
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
    for ch in 0..p.c {
        let mean = save_mean[ch];
        let inv = save_invstd[ch];
        // sum(dy) and sum(dy * (x - mean))
        let (mut sg, mut sgx) = (0.0f64, 0.0f64);
        for bi in 0..p.n {
            let o = (bi * p.c + ch) * p.hw;
            let (mut a, mut b) = ([0.0f32; 8], [0.0f32; 8]);
            let xr = &x[o..o + p.hw];
            let gr = &dy[o..o + p.hw];
            let mut ix = xr.chunks_exact(8);
            let mut ig = gr.chunks_exact(8);
            for (xc, gc) in (&mut ix).zip(&mut ig) {
                for j in 0..8 {
                    a[j] += gc[j];
                    b[j] += gc[j] * (xc[j] - mean);
                }
            }
            for (&xv, &gv) in ix.remainder().iter().zip(ig.remainder()) {
                sg += gv as f64;
                sgx += gv as f64 * (xv - mean) as f64;
            }
            sg += a.iter().map(|&v| v as f64).sum::<f64>();
            sgx += b.iter().map(|&v| v as f64).sum::<f64>();
        }
        let g = gamma.map_or(1.0, |g| g[ch]);
        if let Some(db) = dbeta.as_deref_mut() {
            db[ch] = sg as f32;
        }
        if let Some(dg) = dgamma.as_deref_mut() {
            dg[ch] = (sgx * inv as f64) as f32;
        }
        // training: dx = g * inv * (dy - mean(dy) - xhat * mean(dy * xhat))
        // evaluation: dx = g * inv * dy
        let k = g * inv;
        let (c0, c1) = if p.training {
            let mdy = (sg / m) as f32;
            let mdyx = (sgx / m) as f32 * inv * inv; // mean(dy * xhat) * inv
            (mdy, mdyx)
        } else {
            (0.0, 0.0)
        };
        for bi in 0..p.n {
            let o = (bi * p.c + ch) * p.hw;
            for ((d, &xv), &gv) in dx[o..o + p.hw]
                .iter_mut()
                .zip(&x[o..o + p.hw])
                .zip(&dy[o..o + p.hw])
            {
                *d = k * (gv - c0 - (xv - mean) * c1);
            }
        }
    }
}
