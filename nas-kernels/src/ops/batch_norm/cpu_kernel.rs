//! CPU batch-norm kernels. Shapes validated by [`crate::Cpu`].

use super::BatchNorm2d;
use crate::threads::parallel_for;
use crate::workspace::SyncPtr;

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

/// Runs `f(ch)` for every channel, over threads when the tensor is large enough for that to pay.
fn per_channel(p: &BatchNorm2d, f: &(dyn Fn(usize) + Sync)) {
    if p.x_len() >= 1 << 15 {
        parallel_for(p.c, f);
    } else {
        (0..p.c).for_each(f);
    }
}

/// Forward; see [`crate::Backend::batch_norm`].
pub(crate) fn forward(
    p: &BatchNorm2d,
    x: &[f32],
    gamma: Option<&[f32]>,
    beta: Option<&[f32]>,
    running_mean: Option<&mut [f32]>,
    running_var: Option<&mut [f32]>,
    y: &mut [f32],
    save_mean: &mut [f32],
    save_invstd: &mut [f32],
) {
    let m = (p.n * p.hw) as f64;
    let rm = running_mean.map(|r| SyncPtr(r.as_mut_ptr()));
    let rv = running_var.map(|r| SyncPtr(r.as_mut_ptr()));
    let (yp, smp, sip) = (
        SyncPtr(y.as_mut_ptr()),
        SyncPtr(save_mean.as_mut_ptr()),
        SyncPtr(save_invstd.as_mut_ptr()),
    );
    per_channel(p, &|ch| {
        // SAFETY: task `ch` touches only element `ch` of the per-channel arrays and the
        // `ch` planes of y; all lengths were validated.
        let (rm, rv) = unsafe {
            (
                rm.as_ref().map(|r| &mut r.slice(ch, 1)[0]),
                rv.as_ref().map(|r| &mut r.slice(ch, 1)[0]),
            )
        };
        let (mean, var) = if p.training {
            let (mean, var) = channel_stats(p, x, ch);
            let mo = p.momentum as f64;
            if let Some(rm) = rm {
                *rm = ((1.0 - mo) * *rm as f64 + mo * mean) as f32;
            }
            if let Some(rv) = rv {
                *rv = ((1.0 - mo) * *rv as f64 + mo * var * m / (m - 1.0)) as f32;
            }
            (mean, var)
        } else {
            // validated: present in evaluation
            (rm.map_or(0.0, |r| *r) as f64, rv.map_or(1.0, |r| *r) as f64)
        };
        let inv = 1.0 / (var + p.eps as f64).sqrt();
        unsafe {
            smp.slice(ch, 1)[0] = mean as f32;
            sip.slice(ch, 1)[0] = inv as f32;
        }
        let g = gamma.map_or(1.0, |g| g[ch]);
        let b = beta.map_or(0.0, |b| b[ch]);
        let scale = g * inv as f32;
        let shift = b - mean as f32 * scale;
        for bi in 0..p.n {
            let o = (bi * p.c + ch) * p.hw;
            // SAFETY: the (bi, ch) plane belongs to this task.
            let yr = unsafe { yp.slice(o, p.hw) };
            for (yv, &xv) in yr.iter_mut().zip(&x[o..o + p.hw]) {
                *yv = xv * scale + shift;
            }
        }
    });
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
    dgamma: Option<&mut [f32]>,
    dbeta: Option<&mut [f32]>,
) {
    let m = (p.n * p.hw) as f64;
    let dgp = dgamma.map(|r| SyncPtr(r.as_mut_ptr()));
    let dbp = dbeta.map(|r| SyncPtr(r.as_mut_ptr()));
    let dxp = SyncPtr(dx.as_mut_ptr());
    per_channel(p, &|ch| {
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
        // SAFETY: task `ch` writes only element `ch` of dgamma/dbeta and the `ch` planes of dx.
        unsafe {
            if let Some(db) = dbp {
                db.slice(ch, 1)[0] = sg as f32;
            }
            if let Some(dg) = dgp {
                dg.slice(ch, 1)[0] = (sgx * inv as f64) as f32;
            }
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
            // SAFETY: as above.
            let dr = unsafe { dxp.slice(o, p.hw) };
            for ((d, &xv), &gv) in dr.iter_mut().zip(&x[o..o + p.hw]).zip(&dy[o..o + p.hw]) {
                *d = k * (gv - c0 - (xv - mean) * c1);
            }
        }
    });
}
