//! Max and average pooling on NCHW tensors (any window, stride and padding), global average
//! pooling, and their backward.

pub(crate) mod cpu_kernel;
#[cfg(feature = "cuda")]
pub(crate) mod cuda_kernel;

use crate::checked::Checked;
use crate::error::{KernelError, Result};

/// Which pooling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PoolKind {
    /// Maximum over the window (padding never wins); the gradient goes to the first maximum
    /// in row-major window order.
    Max,
    /// Mean over the window. With `count_include_pad == false` (DARTS, NAS-Bench-201) the
    /// divisor is the number of in-bounds elements; with `true` it is `kh * kw`.
    Avg {
        /// Whether padded zeros count in the divisor.
        count_include_pad: bool,
    },
}

/// Shape and hyper-parameters of a pooling: input `[n, c, h, w]`, output
/// `[n, c, out_h, out_w]` with `out_h = (h + 2 * pad_h - kh) / stride_h + 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pool2dParams {
    /// Max or average.
    pub kind: PoolKind,
    /// Batch size.
    pub n: usize,
    /// Channels.
    pub c: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Window `(kh, kw)`.
    pub kernel: (usize, usize),
    /// Stride `(vertical, horizontal)`.
    pub stride: (usize, usize),
    /// Padding on each side; at most half the window, as in PyTorch.
    pub padding: (usize, usize),
}

impl Pool2dParams {
    /// A square `k x k` window with the given stride and padding.
    pub fn new(
        kind: PoolKind,
        n: usize,
        c: usize,
        h: usize,
        w: usize,
        k: usize,
        stride: usize,
        padding: usize,
    ) -> Self {
        Pool2dParams {
            kind,
            n,
            c,
            h,
            w,
            kernel: (k, k),
            stride: (stride, stride),
            padding: (padding, padding),
        }
    }
    /// Output height.
    pub fn out_h(&self) -> usize {
        (self.h + 2 * self.padding.0 - self.kernel.0) / self.stride.0 + 1
    }
    /// Output width.
    pub fn out_w(&self) -> usize {
        (self.w + 2 * self.padding.1 - self.kernel.1) / self.stride.1 + 1
    }
    /// Elements of the input.
    pub fn x_len(&self) -> usize {
        self.n * self.c * self.h * self.w
    }
    /// Elements of the output.
    pub fn y_len(&self) -> usize {
        self.n * self.c * self.out_h() * self.out_w()
    }
    /// Validates the description once ([`Pool2dParams::validate`]) into the [`Checked`] form the
    /// [`Backend`](crate::Backend) methods take.
    pub fn check(self) -> Result<Checked<Pool2dParams>> {
        self.validate()?;
        Ok(Checked::after_validation(self))
    }

    /// Checks sizes, stride and that padding is at most half the window.
    pub fn validate(&self) -> Result<()> {
        let op = "pool2d";
        for (name, v) in [
            ("n", self.n),
            ("c", self.c),
            ("h", self.h),
            ("w", self.w),
            ("kernel", self.kernel.0.min(self.kernel.1)),
            ("stride", self.stride.0.min(self.stride.1)),
        ] {
            if v == 0 {
                return Err(KernelError::param(op, format!("`{name}` must be positive")));
            }
        }
        if 2 * self.padding.0 > self.kernel.0 || 2 * self.padding.1 > self.kernel.1 {
            return Err(KernelError::param(
                op,
                "padding must be at most half the window",
            ));
        }
        if self.h + 2 * self.padding.0 < self.kernel.0
            || self.w + 2 * self.padding.1 < self.kernel.1
        {
            return Err(KernelError::param(
                op,
                "window larger than the padded input",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Backend, Cpu, KernelError};
    use proptest::prelude::*;

    /// Oracle: pad into an Option grid, then reduce each window.
    fn naive(p: &Pool2dParams, x: &[f32]) -> Vec<f32> {
        let (ph, pw) = p.padding;
        let (hp, wp) = (p.h + 2 * ph, p.w + 2 * pw);
        let mut out = vec![];
        for bc in 0..p.n * p.c {
            let mut grid = vec![None; hp * wp];
            for i in 0..p.h {
                for j in 0..p.w {
                    grid[(i + ph) * wp + j + pw] = Some(x[(bc * p.h + i) * p.w + j]);
                }
            }
            for oy in 0..p.out_h() {
                for ox in 0..p.out_w() {
                    let mut vals = vec![];
                    let mut cells = 0;
                    for ky in 0..p.kernel.0 {
                        for kx in 0..p.kernel.1 {
                            cells += 1;
                            if let Some(v) =
                                grid[(oy * p.stride.0 + ky) * wp + ox * p.stride.1 + kx]
                            {
                                vals.push(v as f64);
                            }
                        }
                    }
                    out.push(match p.kind {
                        PoolKind::Max => vals.iter().cloned().fold(f64::MIN, f64::max) as f32,
                        PoolKind::Avg { count_include_pad } => {
                            let d = if count_include_pad { cells } else { vals.len() };
                            (vals.iter().sum::<f64>() / d as f64) as f32
                        }
                    });
                }
            }
        }
        out
    }

    fn kinds() -> [PoolKind; 3] {
        [
            PoolKind::Max,
            PoolKind::Avg {
                count_include_pad: false,
            },
            PoolKind::Avg {
                count_include_pad: true,
            },
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn pool_matches_naive_and_fd(n in 1usize..3, c in 1usize..4, h in 1usize..9, w in 1usize..9,
                                     k in 1usize..4, s in 1usize..3, kind in 0usize..3, seed in 0u32..1000) {
            let pad = if k >= 2 { (seed as usize) % (k / 2 + 1) } else { 0 };
            let p = Pool2dParams::new(kinds()[kind], n, c, h, w, k, s, pad);
            prop_assume!(p.validate().is_ok());
            // distinct values (a permutation) so that max has no ties and FD is well defined
            let len = p.x_len();
            let x: Vec<f32> = (0..len).map(|i| ((i as u32 * 7919 + seed) % len as u32) as f32 * 0.1).collect();
            let mut xs = x.clone(); xs.sort_by(f32::total_cmp); xs.dedup();
            prop_assume!(xs.len() == len);
            let mut y = vec![0.0; p.y_len()];
            Cpu.pool2d(&p.check().unwrap(), &x, &mut y).unwrap();
            let want = naive(&p, &x);
            for i in 0..y.len() { prop_assert!((y[i] - want[i]).abs() < 1e-5); }
            let dy: Vec<f32> = (0..y.len()).map(|i| 1.0 + (i % 3) as f32).collect();
            let mut dx = vec![0.0; len];
            Cpu.pool2d_backward(&p.check().unwrap(), &x, Some(&y), &dy, &mut dx).unwrap();
            let loss = |x: &Vec<f32>| naive(&p, x).iter().zip(&dy).map(|(a, b)| *a as f64 * *b as f64).sum::<f64>();
            for j in 0..len {
                let h = 0.01f32; // values are >= 0.1 apart
                let mut xp = x.clone(); xp[j] += h;
                let mut xm = x.clone(); xm[j] -= h;
                let fd = (loss(&xp) - loss(&xm)) / (2.0 * h as f64);
                prop_assert!((fd - dx[j] as f64).abs() < 1e-2 * (1.0 + fd.abs()), "j={} fd={} dx={}", j, fd, dx[j]);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]
        /// The row-at-a-time kernels against the window-by-window loops, on inputs full of ties
        /// (a few distinct values, infinities included): max pooling must pick the same input.
        #[test]
        fn row_kernels_match_window_loops(c in 1usize..3, h in 1usize..13, w in 1usize..21,
                                          k in 1usize..5, s in 1usize..3, kind in 0usize..3,
                                          pad_pick in 0usize..3, seed in 0usize..1000) {
            let pad = pad_pick % (k / 2 + 1);
            let p = Pool2dParams::new(kinds()[kind], 1, c, h, w, k, s, pad);
            prop_assume!(p.validate().is_ok());
            let levels = [-1.0f32, 0.0, 0.5, 2.0, f32::NEG_INFINITY];
            let x: Vec<f32> = (0..p.x_len()).map(|i| levels[(i * 7 + seed) % 5 % (2 + seed % 4)]).collect();
            let dy: Vec<f32> = (0..p.y_len()).map(|i| ((i + seed) % 7) as f32 - 3.0).collect();
            let (mut y_fast, mut y_ref) = (vec![f32::NAN; p.y_len()], vec![f32::NAN; p.y_len()]);
            cpu_kernel::rows::forward_planes(&p, c, &x, &mut y_fast);
            cpu_kernel::forward_planes(&p, c, &x, &mut y_ref);
            let (mut d_fast, mut d_ref) = (vec![f32::NAN; p.x_len()], vec![f32::NAN; p.x_len()]);
            cpu_kernel::rows::backward_planes(&p, c, &x, &dy, &mut d_fast);
            cpu_kernel::backward_planes(&p, c, &x, &dy, &mut d_ref);
            let (mut y_port, mut d_port) = (vec![f32::NAN; p.y_len()], vec![f32::NAN; p.x_len()]);
            cpu_kernel::rows::portable_planes(&p, c, &x, &dy, &mut y_port, &mut d_port);
            for (y, d) in [(&y_fast, &d_fast), (&y_port, &d_port)] {
                if matches!(p.kind, PoolKind::Max) {
                    prop_assert_eq!(y, &y_ref);
                    prop_assert_eq!(d, &d_ref);
                } else {
                    for (a, b) in y.iter().zip(&y_ref).chain(d.iter().zip(&d_ref)) {
                        prop_assert!(a == b || (a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{} vs {}", a, b);
                    }
                }
            }
        }
    }

    #[test]
    fn darts_pools_3x3() {
        for s in [1usize, 2] {
            for kind in kinds() {
                let p = Pool2dParams::new(kind, 2, 3, 7, 6, 3, s, 1);
                let x: Vec<f32> = (0..p.x_len())
                    .map(|i| ((i * 37) % 101) as f32 - 50.0)
                    .collect();
                let mut y = vec![0.0; p.y_len()];
                Cpu.pool2d(&p.check().unwrap(), &x, &mut y).unwrap();
                let want = naive(&p, &x);
                for i in 0..y.len() {
                    assert!((y[i] - want[i]).abs() < 1e-4);
                }
            }
        }
    }

    #[test]
    fn threaded_pool_matches_naive_and_per_image() {
        // large enough to be spread over threads; compare with the oracle and, for the
        // backward, with image-by-image (serial) calls
        for s in [1usize, 2] {
            for kind in kinds() {
                let p = Pool2dParams::new(kind, 5, 16, 32, 30, 3, s, 1);
                let x: Vec<f32> = (0..p.x_len())
                    .map(|i| ((i * 7919) % 10007) as f32 * 0.01)
                    .collect();
                let mut y = vec![0.0; p.y_len()];
                Cpu.pool2d(&p.check().unwrap(), &x, &mut y).unwrap();
                let want = naive(&p, &x);
                assert!(
                    (0..y.len()).all(|i| (y[i] - want[i]).abs() < 1e-4),
                    "{kind:?} s={s}"
                );
                let dy: Vec<f32> = (0..p.y_len()).map(|i| (i % 11) as f32 - 5.0).collect();
                let mut dx = vec![0.0; p.x_len()];
                Cpu.pool2d_backward(&p.check().unwrap(), &x, Some(&y), &dy, &mut dx)
                    .unwrap();
                let one = Pool2dParams { n: 1, ..p };
                let (xl, yl) = (one.x_len(), one.y_len());
                for b in 0..p.n {
                    let mut d1 = vec![0.0; xl];
                    let xb = x[b * xl..(b + 1) * xl].to_vec();
                    let gb = dy[b * yl..(b + 1) * yl].to_vec();
                    // without the output: the CPU backend does not need it
                    Cpu.pool2d_backward(&one.check().unwrap(), &xb, None, &gb, &mut d1)
                        .unwrap();
                    assert_eq!(&dx[b * xl..(b + 1) * xl], &d1[..]);
                }
            }
        }
    }

    #[test]
    fn global_avg_pool_and_backward() {
        let (n, c, hw) = (2, 3, 5);
        let x: Vec<f32> = (0..n * c * hw).map(|i| i as f32).collect();
        let mut y = vec![0.0; n * c];
        Cpu.global_avg_pool(n, c, hw, &x, &mut y).unwrap();
        for i in 0..n * c {
            assert_eq!(y[i], (i * hw + 2) as f32);
        }
        let dy: Vec<f32> = (0..n * c).map(|i| i as f32).collect();
        let mut dx = vec![0.0; n * c * hw];
        Cpu.global_avg_pool_backward(n, c, hw, &dy, &mut dx)
            .unwrap();
        for i in 0..n * c * hw {
            assert_eq!(dx[i], (i / hw) as f32 / hw as f32);
        }
        assert!(Cpu.global_avg_pool(n, c, hw + 1, &x, &mut y).is_err());
    }

    #[test]
    fn pool_errors() {
        let bad = Pool2dParams::new(PoolKind::Max, 1, 1, 4, 4, 3, 1, 2);
        assert!(matches!(
            bad.validate(),
            Err(KernelError::InvalidParam { .. })
        ));
        let p = Pool2dParams::new(PoolKind::Max, 1, 1, 4, 4, 3, 1, 1);
        let mut y = vec![0.0; 15];
        assert!(matches!(
            Cpu.pool2d(&p.check().unwrap(), &[0.0; 16], &mut y),
            Err(KernelError::LengthMismatch { what: "y", .. })
        ));
        // stride 0: the description does not pass its check
        assert!(
            Pool2dParams::new(PoolKind::Max, 1, 1, 4, 4, 3, 0, 1)
                .check()
                .is_err()
        );
    }
}
