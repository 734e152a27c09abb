//! 2-D convolution (cross-correlation, as in PyTorch) on NCHW tensors with stride, padding,
//! dilation and groups, and its backward with respect to input, weight and bias.
//!
//! Weight layout: `[c_out, c_in / groups, kh, kw]`. Paths on the CPU (all compared with the
//! direct reference [`reference`] in the tests):
//! - 1x1, stride 1, no padding, groups 1: a GEMM per image (`[c_out, c_in] x [c_in, h*w]`);
//! - depthwise (`groups == c_in == c_out`): direct kernels, forward and backward;
//! - everything else: im2col into a reused per-thread workspace, then GEMM per group.

pub mod cpu_kernel;

use crate::error::{KernelError, Result};

/// Shape and hyper-parameters of a 2-D convolution.
///
/// Input `x: [n, c_in, h, w]`, weight `w: [c_out, c_in / groups, kh, kw]`, optional bias
/// `[c_out]`, output `y: [n, c_out, out_h, out_w]` with
/// `out_h = (h + 2 * pad_h - dil_h * (kh - 1) - 1) / stride_h + 1` (likewise for width).
/// Build with [`Conv2d::new`] and the setters; [`Conv2d::validate`] checks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Conv2d {
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

impl Conv2d {
    /// A `k x k` convolution with stride 1, no padding, dilation 1 and one group.
    pub fn new(n: usize, c_in: usize, h: usize, w: usize, c_out: usize, k: usize) -> Self {
        Conv2d {
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
    /// Output height (assumes a valid configuration; see [`Conv2d::validate`]).
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
        if self.c_in % self.groups != 0 || self.c_out % self.groups != 0 {
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
    use super::Conv2d;

    fn for_each_tap(p: &Conv2d, mut f: impl FnMut(usize, usize, usize, usize)) {
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
    pub fn forward(p: &Conv2d, x: &[f32], w: &[f32], bias: Option<&[f32]>, y: &mut [f32]) {
        let mut acc = vec![0.0f64; y.len()];
        for_each_tap(p, |xi, wi, yi, _| acc[yi] += x[xi] as f64 * w[wi] as f64);
        let hw = p.out_h() * p.out_w();
        for (i, v) in y.iter_mut().enumerate() {
            let oc = (i / hw) % p.c_out;
            *v = (acc[i] + bias.map_or(0.0, |b| b[oc] as f64)) as f32;
        }
    }

    /// `dx = d(sum(y * dy)) / dx`.
    pub fn backward_input(p: &Conv2d, w: &[f32], dy: &[f32], dx: &mut [f32]) {
        let mut acc = vec![0.0f64; dx.len()];
        for_each_tap(p, |xi, wi, yi, _| acc[xi] += dy[yi] as f64 * w[wi] as f64);
        for (d, a) in dx.iter_mut().zip(acc) {
            *d = a as f32;
        }
    }

    /// `dw` and `dbias` of `sum(y * dy)`.
    pub fn backward_weight(
        p: &Conv2d,
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
