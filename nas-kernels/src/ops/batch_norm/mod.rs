//! Batch normalization over the channels of NCHW tensors (PyTorch's `BatchNorm2d`), training and
//! evaluation, affine or not, with backward for input, gamma and beta.
//!
//! Conventions follow PyTorch: training normalises with the biased batch variance and updates
//! `running = (1 - momentum) * running + momentum * batch_stat`, where the running variance
//! takes the *unbiased* batch variance (`var * m / (m - 1)`, `m = n * h * w`); evaluation
//! normalises with the running statistics.

pub(crate) mod cpu_kernel;
#[cfg(feature = "cuda")]
pub(crate) mod cuda_kernel;

use crate::checked::Checked;
use crate::error::{KernelError, Result};

/// Shape and hyper-parameters of a batch norm over `x: [n, c, hw]` (statistics per channel).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchNormParams {
    /// Batch size.
    pub n: usize,
    /// Channels.
    pub c: usize,
    /// Spatial size `h * w`.
    pub hw: usize,
    /// Added to the variance before the square root (PyTorch default `1e-5`).
    pub eps: f32,
    /// Running-statistics momentum (PyTorch default `0.1`).
    pub momentum: f32,
    /// Batch statistics (training) or running statistics (evaluation).
    pub training: bool,
}

impl BatchNormParams {
    /// Training mode with `eps = 1e-5` and `momentum = 0.1`.
    pub fn new(n: usize, c: usize, hw: usize) -> Self {
        BatchNormParams {
            n,
            c,
            hw,
            eps: 1e-5,
            momentum: 0.1,
            training: true,
        }
    }
    /// Sets training (`true`) or evaluation (`false`) mode.
    pub fn training(mut self, training: bool) -> Self {
        self.training = training;
        self
    }
    /// Elements of `x` and `y`.
    pub fn x_len(&self) -> usize {
        self.n * self.c * self.hw
    }
    /// Validates the description once ([`BatchNormParams::validate`]) into the [`Checked`] form the
    /// [`Backend`](crate::Backend) methods take.
    pub fn check(self) -> Result<Checked<BatchNormParams>> {
        self.validate()?;
        Ok(Checked::after_validation(self))
    }

    /// Checks the sizes, `eps > 0`, `momentum` in `[0, 1]`, and that training has more than
    /// one value per channel.
    pub fn validate(&self) -> Result<()> {
        let op = "batch_norm";
        if self.n == 0 || self.c == 0 || self.hw == 0 {
            return Err(KernelError::param(op, "n, c and hw must be positive"));
        }
        if self.eps.is_nan() || self.eps <= 0.0 {
            return Err(KernelError::param(
                op,
                format!("eps must be positive, got {}", self.eps),
            ));
        }
        if !(0.0..=1.0).contains(&self.momentum) {
            return Err(KernelError::param(
                op,
                format!("momentum must be in [0, 1], got {}", self.momentum),
            ));
        }
        if self.training && self.n * self.hw < 2 {
            return Err(KernelError::param(
                op,
                "training needs more than one value per channel",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Backend, Cpu};
    use proptest::prelude::*;

    struct Out {
        y: Vec<f32>,
        rm: Vec<f32>,
        rv: Vec<f32>,
        mean: Vec<f32>,
        invstd: Vec<f32>,
    }

    fn run(p: &BatchNormParams, x: &[f32], gamma: Option<&[f32]>, beta: Option<&[f32]>) -> Out {
        let mut o = Out {
            y: vec![0.0; p.x_len()],
            rm: (0..p.c).map(|i| 0.1 * i as f32).collect(),
            rv: (0..p.c).map(|i| 1.0 + 0.5 * i as f32).collect(),
            mean: vec![0.0; p.c],
            invstd: vec![0.0; p.c],
        };
        Cpu.batch_norm(
            &p.check().unwrap(),
            x,
            gamma,
            beta,
            Some(&mut o.rm),
            Some(&mut o.rv),
            &mut o.y,
            &mut o.mean,
            &mut o.invstd,
        )
        .unwrap();
        o
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn batch_norm_matches_naive_and_fd(n in 1usize..4, c in 1usize..4, hw in 1usize..7, training in any::<bool>(),
                                            affine in any::<bool>(), seed in 0u32..1000) {
            let p = BatchNormParams::new(n, c, hw).training(training);
            prop_assume!(p.validate().is_ok());
            let x: Vec<f32> = (0..p.x_len()).map(|i| (((i as u32 * 2654435761u32) ^ seed) % 997) as f32 / 100.0 - 5.0).collect();
            let gamma: Vec<f32> = (0..c).map(|i| 0.5 + 0.3 * i as f32).collect();
            let beta: Vec<f32> = (0..c).map(|i| -0.2 + 0.1 * i as f32).collect();
            let (g, b) = if affine { (Some(&gamma[..]), Some(&beta[..])) } else { (None, None) };
            let m = (n * hw) as f64;
            // FD needs a smooth neighbourhood: every channel must have a clear spread
            for ch in 0..c {
                let vals: Vec<f32> = (0..n).flat_map(|bi| (0..hw).map(move |s| (bi, s))).map(|(bi, s)| x[(bi * c + ch) * hw + s]).collect();
                let mu = vals.iter().sum::<f32>() / vals.len() as f32;
                prop_assume!(vals.iter().map(|v| (v - mu) * (v - mu)).sum::<f32>() / vals.len() as f32 > 1e-2);
            }
            let o = run(&p, &x, g, b);
            for ch in 0..c {
                let vals: Vec<f64> = (0..n).flat_map(|bi| (0..hw).map(move |s| (bi, s))).map(|(bi, s)| x[(bi * c + ch) * hw + s] as f64).collect();
                let mean = vals.iter().sum::<f64>() / m;
                let var = vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / m;
                let (rm0, rv0) = (0.1 * ch as f64, 1.0 + 0.5 * ch as f64);
                let (um, uv) = if training { (mean, var) } else { (rm0, rv0) };
                let inv = 1.0 / (uv + 1e-5).sqrt();
                for bi in 0..n { for s in 0..hw {
                    let i = (bi * c + ch) * hw + s;
                    let mut want = (x[i] as f64 - um) * inv;
                    if affine { want = want * gamma[ch] as f64 + beta[ch] as f64; }
                    prop_assert!((o.y[i] as f64 - want).abs() < 1e-4 * (1.0 + want.abs()));
                }}
                if training {
                    prop_assert!((o.rm[ch] as f64 - (0.9 * rm0 + 0.1 * mean)).abs() < 1e-5);
                    prop_assert!((o.rv[ch] as f64 - (0.9 * rv0 + 0.1 * var * m / (m - 1.0))).abs() < 1e-4 * (1.0 + var));
                } else {
                    prop_assert_eq!(o.rm[ch] as f64, rm0 as f32 as f64);
                }
            }
            // backward vs central differences of sum(y * dy)
            let dy: Vec<f32> = (0..p.x_len()).map(|i| ((i * 7) % 5) as f32 * 0.3 - 0.6).collect();
            let mut dx = vec![0.0; p.x_len()];
            let mut dg = vec![0.0; c];
            let mut db = vec![0.0; c];
            Cpu.batch_norm_backward(&p.check().unwrap(), &x, g, &o.mean, &o.invstd, &dy, &mut dx,
                if affine { Some(&mut dg[..]) } else { None }, if affine { Some(&mut db[..]) } else { None }).unwrap();
            let loss = |x: &[f32], gm: &Vec<f32>, bt: &Vec<f32>| -> f64 {
                let (g, b) = if affine { (Some(&gm[..]), Some(&bt[..])) } else { (None, None) };
                run(&p, x, g, b).y.iter().zip(&dy).map(|(a, b)| *a as f64 * *b as f64).sum()
            };
            let h = 1e-3f32; // below the 0.01 spacing of the inputs
            for j in 0..p.x_len() {
                let mut xp = x.clone(); xp[j] += h;
                let mut xm = x.clone(); xm[j] -= h;
                let fd = (loss(&xp, &gamma, &beta) - loss(&xm, &gamma, &beta)) / (2.0 * h as f64);
                prop_assert!((fd - dx[j] as f64).abs() < 2e-2 * (1.0 + fd.abs()), "dx j={} fd={} got={}", j, fd, dx[j]);
            }
            if affine {
                for ch in 0..c {
                    let mut gp = gamma.clone(); gp[ch] += h;
                    let mut gm = gamma.clone(); gm[ch] -= h;
                    let fd = (loss(&x, &gp, &beta) - loss(&x, &gm, &beta)) / (2.0 * h as f64);
                    prop_assert!((fd - dg[ch] as f64).abs() < 1e-2 * (1.0 + fd.abs()));
                    let mut bp = beta.clone(); bp[ch] += h;
                    let mut bm = beta.clone(); bm[ch] -= h;
                    let fd = (loss(&x, &gamma, &bp) - loss(&x, &gamma, &bm)) / (2.0 * h as f64);
                    prop_assert!((fd - db[ch] as f64).abs() < 1e-2 * (1.0 + fd.abs()));
                }
            }
        }
    }

    #[test]
    fn large_threaded_batch_norm_matches_f64_formulas() {
        // above the size at which images are spread over threads
        let p = BatchNormParams::new(6, 3, 4099);
        let x: Vec<f32> = (0..p.x_len())
            .map(|i| ((i * 7919) % 1009) as f32 * 0.01 + 3.0)
            .collect();
        let dy: Vec<f32> = (0..p.x_len())
            .map(|i| ((i * 104729) % 997) as f32 * 0.002 - 1.0)
            .collect();
        let gamma = vec![0.5f32, -1.5, 2.0];
        let beta = vec![0.1f32, 0.2, -0.3];
        let before = crate::threads::num_threads();
        crate::threads::set_num_threads(2);
        let o = run(&p, &x, Some(&gamma), Some(&beta));
        let mut dx = vec![0.0; p.x_len()];
        let (mut dg, mut db) = (vec![0.0; 3], vec![0.0; 3]);
        Cpu.batch_norm_backward(
            &p.check().unwrap(),
            &x,
            Some(&gamma),
            &o.mean,
            &o.invstd,
            &dy,
            &mut dx,
            Some(&mut dg),
            Some(&mut db),
        )
        .unwrap();
        crate::threads::set_num_threads(before);
        let m = (p.n * p.hw) as f64;
        for ch in 0..p.c {
            let idx: Vec<usize> = (0..p.n)
                .flat_map(|b| (0..p.hw).map(move |s| (b * p.c + ch) * p.hw + s))
                .collect();
            let mean = idx.iter().map(|&i| x[i] as f64).sum::<f64>() / m;
            let var = idx
                .iter()
                .map(|&i| (x[i] as f64 - mean).powi(2))
                .sum::<f64>()
                / m;
            let inv = 1.0 / (var + 1e-5).sqrt();
            let sg: f64 = idx.iter().map(|&i| dy[i] as f64).sum();
            let sgx: f64 = idx
                .iter()
                .map(|&i| dy[i] as f64 * (x[i] as f64 - mean) * inv)
                .sum();
            assert!((db[ch] as f64 - sg).abs() < 1e-3 * (1.0 + sg.abs()));
            assert!((dg[ch] as f64 - sgx).abs() < 1e-3 * (1.0 + sgx.abs()));
            for &i in &idx {
                let xh = (x[i] as f64 - mean) * inv;
                let want_y = xh * gamma[ch] as f64 + beta[ch] as f64;
                assert!((o.y[i] as f64 - want_y).abs() < 1e-4 * (1.0 + want_y.abs()));
                let want = gamma[ch] as f64 * inv * (dy[i] as f64 - sg / m - xh * sgx / m);
                assert!(
                    (dx[i] as f64 - want).abs() < 1e-3 * (1.0 + want.abs()),
                    "{} {want}",
                    dx[i]
                );
            }
        }
    }

    #[test]
    fn batch_norm_errors() {
        let p = BatchNormParams::new(1, 2, 1);
        assert!(p.validate().is_err()); // one value per channel in training
        assert!(p.training(false).validate().is_ok());
        let p = BatchNormParams::new(2, 2, 3);
        let x = vec![0.0; 12];
        let mut y = vec![0.0; 12];
        let (mut m, mut v) = (vec![0.0; 2], vec![0.0; 2]);
        let g = vec![1.0; 3];
        assert!(
            Cpu.batch_norm(
                &p.check().unwrap(),
                &x,
                Some(&g),
                None,
                None,
                None,
                &mut y,
                &mut m,
                &mut v
            )
            .is_err()
        );
        // evaluation needs running statistics
        assert!(
            Cpu.batch_norm(
                &p.training(false).check().unwrap(),
                &x,
                None,
                None,
                None,
                None,
                &mut y,
                &mut m,
                &mut v
            )
            .is_err()
        );
    }
}
