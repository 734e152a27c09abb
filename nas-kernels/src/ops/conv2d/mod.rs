//! 2-D convolution (cross-correlation, as in PyTorch) on NCHW tensors with stride, padding,
//! dilation and groups, and its backward with respect to input, weight and bias.
//!
//! Weight layout: `[c_out, c_in / groups, kh, kw]`. Paths on the CPU (all compared with the
//! direct reference [`mod@reference`] in the tests):
//! - 1x1, stride 1, no padding, groups 1: a GEMM per image (`[c_out, c_in] x [c_in, h*w]`);
//! - depthwise (`groups == c_in == c_out`): direct kernels, forward and backward;
//! - stride 1 with AVX-512: register-blocked direct kernels on a padded copy of each image;
//! - other strides with AVX-512, kernels larger than 1x1: a direct forward on a phase-split
//!   copy of each image (`strided.rs`), gradients as below;
//! - everything else: im2col into a reused per-thread workspace, then GEMM per group.

pub(crate) mod cpu_kernel;
#[cfg(feature = "cuda")]
pub(crate) mod cuda_kernel;

use crate::checked::Checked;
use crate::error::{KernelError, Result};

/// Shape and hyper-parameters of a 2-D convolution.
///
/// Input `x: [n, c_in, h, w]`, weight `w: [c_out, c_in / groups, kh, kw]`, optional bias
/// `[c_out]`, output `y: [n, c_out, out_h, out_w]` with
/// `out_h = (h + 2 * pad_h - dil_h * (kh - 1) - 1) / stride_h + 1` (likewise for width).
/// Build with [`Conv2dParams::new`] and the setters; [`Conv2dParams::validate`] checks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Conv2dParams {
    /// Batch size.
    pub n: usize,
    /// Input channels.
    pub c_in: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Output channels.
    pub c_out: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Stride `(vertical, horizontal)`.
    pub stride: (usize, usize),
    /// Zero padding on each side `(vertical, horizontal)`.
    pub padding: (usize, usize),
    /// Dilation `(vertical, horizontal)`.
    pub dilation: (usize, usize),
    /// Groups: `c_in` and `c_out` must be multiples; `groups == c_in == c_out` is depthwise.
    pub groups: usize,
}

impl Conv2dParams {
    /// A `k x k` convolution with stride 1, no padding, dilation 1 and one group.
    pub fn new(n: usize, c_in: usize, h: usize, w: usize, c_out: usize, k: usize) -> Self {
        Conv2dParams {
            n,
            c_in,
            h,
            w,
            c_out,
            kh: k,
            kw: k,
            stride: (1, 1),
            padding: (0, 0),
            dilation: (1, 1),
            groups: 1,
        }
    }
    /// Sets the same stride in both directions.
    pub fn stride(mut self, s: usize) -> Self {
        self.stride = (s, s);
        self
    }
    /// Sets the same padding in both directions.
    pub fn padding(mut self, p: usize) -> Self {
        self.padding = (p, p);
        self
    }
    /// Sets the same dilation in both directions.
    pub fn dilation(mut self, d: usize) -> Self {
        self.dilation = (d, d);
        self
    }
    /// Sets the number of groups.
    pub fn groups(mut self, g: usize) -> Self {
        self.groups = g;
        self
    }
    /// Output height (assumes a valid configuration; see [`Conv2dParams::validate`]).
    pub fn out_h(&self) -> usize {
        (self.h + 2 * self.padding.0 - self.dilation.0 * (self.kh - 1) - 1) / self.stride.0 + 1
    }
    /// Output width.
    pub fn out_w(&self) -> usize {
        (self.w + 2 * self.padding.1 - self.dilation.1 * (self.kw - 1) - 1) / self.stride.1 + 1
    }
    /// Elements of `x`.
    pub fn x_len(&self) -> usize {
        self.n * self.c_in * self.h * self.w
    }
    /// Elements of the weight.
    pub fn w_len(&self) -> usize {
        self.c_out * (self.c_in / self.groups.max(1)) * self.kh * self.kw
    }
    /// Elements of `y`.
    pub fn y_len(&self) -> usize {
        self.n * self.c_out * self.out_h() * self.out_w()
    }
    /// Whether this is a depthwise convolution (`groups == c_in == c_out`).
    pub fn is_depthwise(&self) -> bool {
        self.groups == self.c_in && self.c_in == self.c_out
    }
    /// Validates the description once ([`Conv2dParams::validate`]) into the [`Checked`] form the
    /// [`Backend`](crate::Backend) methods take.
    pub fn check(self) -> Result<Checked<Conv2dParams>> {
        self.validate()?;
        Ok(Checked::after_validation(self))
    }

    /// Checks that every size is positive, channels divide by groups and the output is
    /// non-empty.
    pub fn validate(&self) -> Result<()> {
        let op = "conv2d";
        for (name, v) in [
            ("n", self.n),
            ("c_in", self.c_in),
            ("h", self.h),
            ("w", self.w),
            ("c_out", self.c_out),
            ("kh", self.kh),
            ("kw", self.kw),
            ("stride", self.stride.0.min(self.stride.1)),
            ("dilation", self.dilation.0.min(self.dilation.1)),
            ("groups", self.groups),
        ] {
            if v == 0 {
                return Err(KernelError::param(op, format!("`{name}` must be positive")));
            }
        }
        if !self.c_in.is_multiple_of(self.groups) || !self.c_out.is_multiple_of(self.groups) {
            return Err(KernelError::param(
                op,
                format!(
                    "c_in ({}) and c_out ({}) must be multiples of groups ({})",
                    self.c_in, self.c_out, self.groups
                ),
            ));
        }
        let eh = self.dilation.0 * (self.kh - 1) + 1;
        let ew = self.dilation.1 * (self.kw - 1) + 1;
        if self.h + 2 * self.padding.0 < eh || self.w + 2 * self.padding.1 < ew {
            return Err(KernelError::param(
                op,
                format!(
                    "dilated kernel {eh}x{ew} is larger than the padded input {}x{}",
                    self.h + 2 * self.padding.0,
                    self.w + 2 * self.padding.1
                ),
            ));
        }
        Ok(())
    }
}

/// Direct (seven nested loops) convolution: the definition every fast path must match.
/// Accumulates in f64. Slow; used by the tests as the oracle.
pub mod reference {
    use super::Conv2dParams;

    fn for_each_tap(p: &Conv2dParams, mut f: impl FnMut(usize, usize, usize, usize)) {
        // f(x index, w index, y index, _) over all (b, oc, oy, ox, ic, ky, kx) taps in bounds
        let (oh, ow) = (p.out_h(), p.out_w());
        let cig = p.c_in / p.groups;
        let cog = p.c_out / p.groups;
        for b in 0..p.n {
            for oc in 0..p.c_out {
                let g = oc / cog;
                for oy in 0..oh {
                    for ox in 0..ow {
                        let yi = ((b * p.c_out + oc) * oh + oy) * ow + ox;
                        for icg in 0..cig {
                            let ic = g * cig + icg;
                            for ky in 0..p.kh {
                                let iy = (oy * p.stride.0 + ky * p.dilation.0) as isize
                                    - p.padding.0 as isize;
                                if iy < 0 || iy >= p.h as isize {
                                    continue;
                                }
                                for kx in 0..p.kw {
                                    let ix = (ox * p.stride.1 + kx * p.dilation.1) as isize
                                        - p.padding.1 as isize;
                                    if ix < 0 || ix >= p.w as isize {
                                        continue;
                                    }
                                    let xi =
                                        ((b * p.c_in + ic) * p.h + iy as usize) * p.w + ix as usize;
                                    let wi = ((oc * cig + icg) * p.kh + ky) * p.kw + kx;
                                    f(xi, wi, yi, 0);
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// `y = conv(x, w) + bias`.
    pub fn forward(p: &Conv2dParams, x: &[f32], w: &[f32], bias: Option<&[f32]>, y: &mut [f32]) {
        let mut acc = vec![0.0f64; y.len()];
        for_each_tap(p, |xi, wi, yi, _| acc[yi] += x[xi] as f64 * w[wi] as f64);
        let hw = p.out_h() * p.out_w();
        for (i, v) in y.iter_mut().enumerate() {
            let oc = (i / hw) % p.c_out;
            *v = (acc[i] + bias.map_or(0.0, |b| b[oc] as f64)) as f32;
        }
    }

    /// `dx = d(sum(y * dy)) / dx`.
    pub fn backward_input(p: &Conv2dParams, w: &[f32], dy: &[f32], dx: &mut [f32]) {
        let mut acc = vec![0.0f64; dx.len()];
        for_each_tap(p, |xi, wi, yi, _| acc[xi] += dy[yi] as f64 * w[wi] as f64);
        for (d, a) in dx.iter_mut().zip(acc) {
            *d = a as f32;
        }
    }

    /// `dw` and `dbias` of `sum(y * dy)`.
    pub fn backward_weight(
        p: &Conv2dParams,
        x: &[f32],
        dy: &[f32],
        dw: &mut [f32],
        dbias: Option<&mut [f32]>,
    ) {
        let mut acc = vec![0.0f64; dw.len()];
        for_each_tap(p, |xi, wi, yi, _| acc[wi] += dy[yi] as f64 * x[xi] as f64);
        for (d, a) in dw.iter_mut().zip(acc) {
            *d = a as f32;
        }
        if let Some(db) = dbias {
            let hw = p.out_h() * p.out_w();
            db.fill(0.0);
            for (i, &g) in dy.iter().enumerate() {
                db[(i / hw) % p.c_out] += g;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::cpu_kernel::{
        Path, applicable, backward_input_with, backward_weight_with, forward_with,
    };
    use super::*;
    use crate::{Backend, Cpu};
    use proptest::prelude::*;

    fn data(len: usize, seed: u64) -> Vec<f32> {
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..len)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    fn close(a: &[f32], b: &[f32], tol: f32, what: &str) -> std::result::Result<(), TestCaseError> {
        prop_assert_eq!(a.len(), b.len());
        for i in 0..a.len() {
            prop_assert!(
                (a[i] - b[i]).abs() <= tol * (1.0 + b[i].abs()),
                "{} [{}]: {} vs {}",
                what,
                i,
                a[i],
                b[i]
            );
        }
        Ok(())
    }

    /// Every applicable path, forward and both backward, against the direct reference.
    fn check_all_paths(p: &Conv2dParams, seed: u64) -> std::result::Result<(), TestCaseError> {
        let x = data(p.x_len(), seed);
        let w = data(p.w_len(), seed + 1);
        let bias = data(p.c_out, seed + 2);
        let dy = data(p.y_len(), seed + 3);
        let mut y_ref = vec![0.0; p.y_len()];
        reference::forward(p, &x, &w, Some(&bias), &mut y_ref);
        let mut dx_ref = vec![0.0; p.x_len()];
        reference::backward_input(p, &w, &dy, &mut dx_ref);
        let mut dw_ref = vec![0.0; p.w_len()];
        let mut db_ref = vec![0.0; p.c_out];
        reference::backward_weight(p, &x, &dy, &mut dw_ref, Some(&mut db_ref));
        for path in [
            Path::Im2col,
            Path::OneByOne,
            Path::Depthwise,
            Path::Direct,
            Path::DepthwiseDirect,
            Path::Strided,
        ] {
            if !applicable(path, p) {
                continue;
            }
            let mut y = vec![f32::NAN; p.y_len()];
            forward_with(path, p, &x, &w, Some(&bias), &mut y);
            close(&y, &y_ref, 1e-4, &format!("{path:?} forward {p:?}"))?;
            let mut dx = vec![f32::NAN; p.x_len()];
            backward_input_with(path, p, &w, &dy, &mut dx);
            close(&dx, &dx_ref, 1e-4, &format!("{path:?} dx {p:?}"))?;
            let mut dw = vec![f32::NAN; p.w_len()];
            let mut db = vec![f32::NAN; p.c_out];
            backward_weight_with(path, p, &x, &dy, &mut dw, Some(&mut db));
            close(&dw, &dw_ref, 2e-4, &format!("{path:?} dw {p:?}"))?;
            close(&db, &db_ref, 2e-4, &format!("{path:?} db {p:?}"))?;
        }
        // and the public entry point
        let mut y = vec![0.0; p.y_len()];
        Cpu.conv2d(&p.check().unwrap(), &x, &w, Some(&bias), &mut y)
            .unwrap();
        close(&y, &y_ref, 1e-4, "Cpu.conv2d")?;
        // the input's ReLU applied while reading (fused on the depthwise paths)
        let xr: Vec<f32> = x.iter().map(|v| v.max(0.0)).collect();
        reference::forward(p, &xr, &w, None, &mut y_ref);
        Cpu.conv2d_relu_input(&p.check().unwrap(), &x, &w, &mut y)
            .unwrap();
        close(&y, &y_ref, 1e-4, &format!("conv2d_relu_input {p:?}"))?;
        // the input gradient through that ReLU: dx where x > 0, zero elsewhere
        let dx_masked: Vec<f32> = dx_ref
            .iter()
            .zip(&x)
            .map(|(&d, &v)| if v > 0.0 { d } else { 0.0 })
            .collect();
        let mut dx = vec![f32::NAN; p.x_len()];
        Cpu.conv2d_backward_input_relu_mask(&p.check().unwrap(), &w, &dy, &x, &mut dx)
            .unwrap();
        close(
            &dx,
            &dx_masked,
            1e-4,
            &format!("conv2d_backward_input_relu_mask {p:?}"),
        )?;
        reference::backward_weight(p, &xr, &dy, &mut dw_ref, None);
        let mut dw = vec![f32::NAN; p.w_len()];
        Cpu.conv2d_backward_weight_relu_input(&p.check().unwrap(), &x, &dy, &mut dw)
            .unwrap();
        close(
            &dw,
            &dw_ref,
            2e-4,
            &format!("conv2d_backward_weight_relu_input {p:?}"),
        )?;
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(160))]
        #[test]
        fn all_paths_match_reference(n in 1usize..3, cg in 1usize..4, og in 1usize..4, groups in 1usize..4,
                                     h in 1usize..12, w in 1usize..40, kh in 1usize..4, kw in 1usize..5,
                                     s in 1usize..3, pad in 0usize..3, d in 1usize..3, depthwise in any::<bool>(),
                                     seed in 0u64..1_000_000) {
            let (c_in, c_out, groups) = if depthwise { (cg * groups, cg * groups, cg * groups) } else { (cg * groups, og * groups, groups) };
            let mut p = Conv2dParams::new(n, c_in, h, w, c_out, 1).stride(s).padding(pad).dilation(d).groups(groups);
            p.kh = kh;
            p.kw = kw;
            prop_assume!(p.validate().is_ok());
            check_all_paths(&p, seed)?;
        }
    }

    #[test]
    fn fixed_shapes_used_by_nas() {
        // DARTS / NAS-Bench-201 shapes: 3x3 and 5x5 depthwise (stride 1 and 2, dilation 2),
        // 1x1 pointwise, 3x3 dense, 1x1 stride 2 (factorized reduce), widths not multiples of 16.
        let cases = [
            Conv2dParams::new(2, 16, 32, 32, 16, 3).padding(1),
            Conv2dParams::new(2, 8, 17, 33, 8, 3).padding(1).groups(8),
            Conv2dParams::new(2, 8, 16, 16, 8, 5).padding(2).groups(8),
            Conv2dParams::new(2, 8, 16, 16, 8, 3)
                .padding(2)
                .dilation(2)
                .groups(8),
            Conv2dParams::new(2, 8, 16, 16, 8, 5)
                .padding(4)
                .dilation(2)
                .groups(8)
                .stride(2),
            Conv2dParams::new(2, 8, 15, 15, 12, 1),
            Conv2dParams::new(2, 8, 16, 16, 4, 1).stride(2),
            Conv2dParams::new(1, 3, 20, 21, 10, 3).padding(1),
            Conv2dParams::new(3, 20, 9, 7, 9, 3),
            // small planes take the flat form of the direct kernels, with the weight gradient
            // run over blocks of images (batch not a multiple of the block, channel counts not
            // multiples of the register block)
            Conv2dParams::new(19, 13, 8, 8, 11, 3).padding(1),
            Conv2dParams::new(17, 6, 5, 5, 7, 5).padding(2),
            Conv2dParams::new(21, 9, 6, 7, 10, 1),
            // rows of at most 16 outputs take one vector from each of up to three rows (heights
            // leaving tails of 1 and 2 rows, 11 output channels: a register-block remainder);
            // rows of more than 32 three vectors of one row
            Conv2dParams::new(2, 5, 16, 16, 11, 3).padding(1),
            Conv2dParams::new(2, 4, 14, 14, 9, 3).padding(1),
            Conv2dParams::new(2, 3, 15, 16, 5, 3).padding(2).dilation(2),
            Conv2dParams::new(2, 3, 7, 16, 4, 5).padding(2),
            Conv2dParams::new(2, 3, 5, 40, 9, 3).padding(1),
            Conv2dParams::new(2, 3, 5, 62, 9, 3).padding(1),
            Conv2dParams::new(3, 8, 7, 7, 8, 3).padding(1),
            // the main job's reduction convolutions (stride 2 into 14x14 and 7x7)
            Conv2dParams::new(2, 8, 28, 28, 16, 3).padding(1).stride(2),
            Conv2dParams::new(2, 16, 14, 14, 32, 3).padding(1).stride(2),
        ];
        for (i, p) in cases.iter().enumerate() {
            check_all_paths(p, i as u64).unwrap();
        }
    }

    #[test]
    fn depthwise_square_kernels_every_row_tail() {
        // The AVX-512 depthwise kernels share loaded rows between output rows for 3x3 and 5x5
        // (dilation 1 and 2, the latter as two row parities) in blocks of 4 or 8 rows: heights
        // that leave every tail length, widths of one vector, one and a bit, and several, and
        // "same" padding as in DARTS' sep/dil convolutions.
        // Stride 2 (reduction cells) gathers its input gradient from a staged copy of dy.
        let mut seed = 100;
        for stride in [1, 2] {
            for (k, d) in [(3, 1), (5, 1), (3, 2), (5, 2)] {
                for (h, w) in [(2, 5), (9, 16), (11, 17), (12, 33), (13, 40), (6, 7)] {
                    let p = Conv2dParams::new(2, 3, h, w, 3, k)
                        .stride(stride)
                        .padding(d * (k - 1) / 2)
                        .dilation(d)
                        .groups(3);
                    check_all_paths(&p, seed).unwrap();
                    seed += 1;
                }
            }
        }
    }

    #[test]
    fn backward_matches_finite_differences() {
        // Finite differences of the (default-path) forward, in f64 sums of f32 outputs.
        for p in [
            Conv2dParams::new(2, 3, 5, 6, 4, 3).padding(1),
            Conv2dParams::new(1, 4, 6, 5, 4, 3)
                .padding(2)
                .dilation(2)
                .groups(4),
            Conv2dParams::new(2, 4, 5, 5, 6, 1),
            Conv2dParams::new(1, 4, 7, 7, 2, 3)
                .stride(2)
                .padding(1)
                .groups(2),
        ] {
            let x = data(p.x_len(), 5);
            let w = data(p.w_len(), 6);
            let dy = data(p.y_len(), 7);
            let loss = |x: &Vec<f32>, w: &Vec<f32>| {
                let mut y = vec![0.0; p.y_len()];
                Cpu.conv2d(&p.check().unwrap(), x, w, None, &mut y).unwrap();
                y.iter()
                    .zip(&dy)
                    .map(|(a, b)| *a as f64 * *b as f64)
                    .sum::<f64>()
            };
            let mut dx = vec![0.0; p.x_len()];
            Cpu.conv2d_backward_input(&p.check().unwrap(), &w, &dy, &mut dx)
                .unwrap();
            let mut dw = vec![0.0; p.w_len()];
            Cpu.conv2d_backward_weight(&p.check().unwrap(), &x, &dy, &mut dw, None)
                .unwrap();
            let h = 1e-2f32;
            for j in 0..x.len() {
                let (mut xp, mut xm) = (x.clone(), x.clone());
                xp[j] += h;
                xm[j] -= h;
                let fd = (loss(&xp, &w) - loss(&xm, &w)) / (2.0 * h as f64);
                assert!(
                    (fd - dx[j] as f64).abs() < 1e-3 * (1.0 + fd.abs()),
                    "{p:?} dx[{j}] fd={fd} got={}",
                    dx[j]
                );
            }
            for j in 0..w.len() {
                let (mut wp, mut wm) = (w.clone(), w.clone());
                wp[j] += h;
                wm[j] -= h;
                let fd = (loss(&x, &wp) - loss(&x, &wm)) / (2.0 * h as f64);
                assert!(
                    (fd - dw[j] as f64).abs() < 1e-3 * (1.0 + fd.abs()),
                    "{p:?} dw[{j}] fd={fd} got={}",
                    dw[j]
                );
            }
        }
    }

    /// The channels-last weight gradient (`dw_avx512.rs`) on `p`, on blocks of 8 and of 16
    /// input channels, of `relu(x)` when `relu`, against the reference; `p` must be
    /// applicable.
    #[cfg(target_arch = "x86_64")]
    fn check_dw_cl(
        p: &Conv2dParams,
        seed: u64,
        relu: bool,
    ) -> std::result::Result<(), TestCaseError> {
        use super::cpu_kernel::dw_avx512;
        prop_assert!(dw_avx512::applicable(p), "{:?}", p);
        let x = data(p.x_len(), seed);
        let dy = data(p.y_len(), seed + 1);
        let xr: Vec<f32> = x
            .iter()
            .map(|v| if relu { v.max(0.0) } else { *v })
            .collect();
        let mut dw_ref = vec![0.0; p.w_len()];
        reference::backward_weight(p, &xr, &dy, &mut dw_ref, None);
        for lanes in [8, 16] {
            let mut dw = vec![f32::NAN; p.w_len()];
            dw_avx512::backward_weight_lanes(p, lanes, &x, &dy, &mut dw, relu);
            close(
                &dw,
                &dw_ref,
                2e-4,
                &format!("dw_avx512 {lanes} lanes relu={relu} {p:?}"),
            )?;
        }
        Ok(())
    }

    #[cfg(target_arch = "x86_64")]
    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn channels_last_weight_gradient_matches_reference(n in 1usize..4, cig in 1usize..40, cog in 1usize..9,
                                                           groups in 1usize..3, h in 1usize..11, w in 1usize..36,
                                                           pad in 0usize..3, dh in 1usize..3, stride in 1usize..3,
                                                           relu in any::<bool>(), seed in 0u64..1_000_000) {
            prop_assume!(super::cpu_kernel::dw_avx512::applicable(&Conv2dParams::new(1, 1, 3, 3, 1, 3)));
            let mut p = Conv2dParams::new(n, cig * groups, h, w, cog * groups, 3)
                .padding(pad).groups(groups).stride(stride);
            p.dilation = (dh, 1);
            prop_assume!(p.validate().is_ok());
            check_dw_cl(&p, seed, relu)?;
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn channels_last_weight_gradient_blockings() {
        // register tiles of 3, 2 and 1 output channels (every remainder of cout by 3, 2 + 2
        // for 4), input channels in blocks of 8 and 16 (1..3, 8, 9, 16, 17, 24, 33: lanes left
        // idle), rows wider than one staged 16 x 16 transpose (17, 33), rows of odd and even
        // length (the 8-lane kernel's pairs of outputs and masked last output), row dilation
        // 2, groups, padding 0 and 2, runs of several small images (8x8 and 3x3 planes, batch
        // not a multiple of the run), each at stride 1 and 2 (odd and even input sizes: the
        // even and odd columns of the stride-2 copy of unequal length); and the main job's
        // convolutions into each stage
        if !super::cpu_kernel::dw_avx512::applicable(&Conv2dParams::new(1, 1, 3, 3, 1, 3)) {
            return;
        }
        let mut cases = vec![];
        for cout in 1..=8 {
            cases.push(Conv2dParams::new(2, 5, 6, 9, cout, 3).padding(1));
        }
        for cin in [1, 2, 3, 8, 9, 16, 17, 24, 33] {
            cases.push(Conv2dParams::new(2, cin, 7, 17, 4, 3).padding(1));
        }
        cases.push(Conv2dParams::new(2, 8, 5, 6, 5, 3).padding(1));
        cases.push(Conv2dParams::new(2, 18, 9, 33, 6, 3).padding(2));
        cases.push(Conv2dParams::new(3, 16, 6, 5, 16, 3));
        cases.push(Conv2dParams::new(2, 32, 12, 10, 10, 3).padding(1).groups(2));
        cases.push(Conv2dParams::new(2, 16, 12, 11, 10, 3).padding(1).groups(2));
        cases.push(Conv2dParams::new(19, 20, 8, 8, 7, 3).padding(1));
        cases.push(Conv2dParams::new(37, 16, 3, 3, 16, 3).padding(1));
        let mut d2 = Conv2dParams::new(2, 17, 9, 11, 5, 3).padding(2);
        d2.dilation = (2, 1);
        cases.push(d2);
        let strided: Vec<_> = cases.iter().map(|p| p.stride(2)).collect();
        cases.extend(strided);
        for (c, hw) in [(8, 28), (16, 14), (32, 7)] {
            cases.push(Conv2dParams::new(2, c, hw, hw, c, 3).padding(1));
            cases.push(
                Conv2dParams::new(2, c, hw, hw, 2 * c, 3)
                    .padding(1)
                    .stride(2),
            );
        }
        for (i, p) in cases.iter().enumerate() {
            if p.validate().is_err() {
                continue;
            }
            check_dw_cl(p, 40 + i as u64, i % 2 == 1).unwrap();
            check_dw_cl(p, 90 + i as u64, i % 2 == 0).unwrap();
        }
        // not this kernel's: column dilation, 5x5, stride 3, unequal strides
        let mut dw2 = Conv2dParams::new(1, 16, 9, 9, 4, 3).padding(2);
        dw2.dilation = (1, 2);
        let mut s12 = Conv2dParams::new(1, 16, 9, 9, 4, 3);
        s12.stride = (1, 2);
        for p in [
            dw2,
            Conv2dParams::new(1, 16, 9, 9, 4, 5),
            Conv2dParams::new(1, 16, 9, 9, 4, 3).stride(3),
            s12,
        ] {
            assert!(!super::cpu_kernel::dw_avx512::applicable(&p), "{p:?}");
        }
        // the lanes: 8 where a 16-lane block would leave 8 lanes idle
        let lanes: Vec<_> = [1, 8, 9, 16, 17, 24, 25, 32]
            .map(super::cpu_kernel::dw_avx512::lanes_for)
            .into();
        assert_eq!(lanes, [8, 8, 16, 16, 8, 8, 16, 16]);
    }

    #[test]
    fn thread_counts_agree() {
        // large enough to be spread over threads (see `cpu_kernel::threads_for`)
        let p = Conv2dParams::new(6, 16, 24, 40, 16, 3).padding(1);
        let dp = Conv2dParams::new(8, 32, 32, 40, 32, 3)
            .padding(1)
            .groups(32);
        let pw = Conv2dParams::new(8, 32, 32, 40, 24, 1);
        // stride 2: the phase-split direct forward (`Path::Strided`) where AVX-512 runs
        let s2 = Conv2dParams::new(8, 16, 32, 40, 32, 3).padding(1).stride(2);
        let small = Conv2dParams::new(2, 4, 5, 7, 4, 3).padding(1);
        let before = crate::threads::num_threads();
        for q in [p, dp, pw, s2] {
            crate::threads::set_num_threads(2);
            assert_eq!(super::cpu_kernel::threads_for(&q), 2, "{q:?}");
        }
        assert_eq!(super::cpu_kernel::threads_for(&small), 1);
        let run = |p: &Conv2dParams| {
            let x = data(p.x_len(), 1);
            let w = data(p.w_len(), 2);
            let dy = data(p.y_len(), 3);
            let mut y = vec![0.0; p.y_len()];
            let mut dx = vec![0.0; p.x_len()];
            let mut dw = vec![0.0; p.w_len()];
            Cpu.conv2d(&p.check().unwrap(), &x, &w, None, &mut y)
                .unwrap();
            Cpu.conv2d_backward_input(&p.check().unwrap(), &w, &dy, &mut dx)
                .unwrap();
            Cpu.conv2d_backward_weight(&p.check().unwrap(), &x, &dy, &mut dw, None)
                .unwrap();
            (y, dx, dw)
        };
        for p in [p, dp, pw, s2] {
            crate::threads::set_num_threads(1);
            let one = run(&p);
            crate::threads::set_num_threads(3);
            let three = run(&p);
            crate::threads::set_num_threads(before);
            assert_eq!(one.0, three.0);
            assert_eq!(one.1, three.1);
            for (a, b) in one.2.iter().zip(&three.2) {
                assert!((a - b).abs() < 1e-4 * (1.0 + a.abs()));
            }
        }
    }

    #[test]
    fn shape_errors() {
        let p = Conv2dParams::new(1, 4, 5, 5, 6, 3).padding(1);
        let x = vec![0.0; p.x_len()];
        let w = vec![0.0; p.w_len()];
        let mut y = vec![0.0; p.y_len()];
        assert!(matches!(
            Cpu.conv2d(&p.check().unwrap(), &x, &w[..w.len() - 1], None, &mut y),
            Err(KernelError::LengthMismatch { what: "weight", .. })
        ));
        assert!(matches!(
            Cpu.conv2d(&p.check().unwrap(), &x, &w, Some(&[0.0; 5]), &mut y),
            Err(KernelError::LengthMismatch { .. })
        ));
        assert!(matches!(
            p.groups(4).check(),
            Err(KernelError::InvalidParam { .. })
        ));
        assert!(matches!(
            p.stride(0).check(),
            Err(KernelError::InvalidParam { .. })
        ));
        let big = Conv2dParams::new(1, 4, 2, 2, 6, 5);
        assert!(matches!(
            big.validate(),
            Err(KernelError::InvalidParam { .. })
        ));
        let mut dx = vec![0.0; 3];
        assert!(
            Cpu.conv2d_backward_input(&p.check().unwrap(), &w, &y, &mut dx)
                .is_err()
        );
        let mut dw = vec![0.0; 3];
        assert!(
            Cpu.conv2d_backward_weight(&p.check().unwrap(), &x, &y, &mut dw, None)
                .is_err()
        );
    }
}
