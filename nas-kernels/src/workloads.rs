//! Fixed benchmark workloads on the shapes NAS runs, shared by the criterion benches
//! (`benches/benches/conv.rs`), the `conv_speed` example and anyone timing the kernels:
//! a 3x3 convolution, the DARTS separable-conv block and batch norm, each forward + backward
//! on batch 64, 16 channels, 32x32, with every buffer allocated once in `new()` so a timed
//! step allocates nothing.

use std::hint::black_box;

use crate::{Backend, BatchNormParams, Checked, Conv2dParams, Cpu, Result, UnaryOp};

/// The shortest wall time in seconds of `reps` runs of `f`, after one warm-up run: the quick
/// per-kernel timing of the `conv_speed` and `conv_stages` examples (criterion is the reference).
pub fn best_seconds(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut best = f64::MAX;
    for _ in 0..reps {
        let t = std::time::Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64());
    }
    best
}

/// Deterministic pseudo-random values in [-0.5, 0.5) (xorshift), the same for every run.
pub fn data(len: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2654435761).wrapping_add(12345);
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        })
        .collect()
}

/// Conv 3x3, 16 -> 16 channels, batch 64, 32x32, padding 1: forward, input and weight
/// gradients (0.91 GFLOP).
pub struct Conv3x3FwdBwd {
    p: Checked<Conv2dParams>,
    x: Vec<f32>,
    w: Vec<f32>,
    y: Vec<f32>,
    dy: Vec<f32>,
    dx: Vec<f32>,
    dw: Vec<f32>,
}

impl Conv3x3FwdBwd {
    /// Builds the workload with its inputs filled and its outputs allocated once.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        let p = Conv2dParams::new(64, 16, 32, 32, 16, 3)
            .padding(1)
            .check()
            .expect("a valid fixed workload");
        Conv3x3FwdBwd {
            x: data(p.x_len(), 1),
            w: data(p.w_len(), 2),
            y: vec![0.0; p.y_len()],
            dy: data(p.y_len(), 3),
            dx: vec![0.0; p.x_len()],
            dw: vec![0.0; p.w_len()],
            p,
        }
    }
    /// One forward + backward pass.
    pub fn step(&mut self) -> Result<()> {
        Cpu.conv2d(&self.p, &self.x, &self.w, None, &mut self.y)?;
        Cpu.conv2d_backward_input(&self.p, &self.w, &self.dy, &mut self.dx)?;
        Cpu.conv2d_backward_weight(&self.p, &self.x, &self.dy, &mut self.dw, None)?;
        black_box(&self.dx);
        Ok(())
    }
}

/// DARTS `SepConv(C, C, 3, stride 1, padding 1, affine=False)`:
/// ReLU, depthwise 3x3, pointwise 1x1, BN, ReLU, depthwise 3x3, pointwise 1x1, BN;
/// forward, then backward to the input and all weights. C = 16, batch 64, 32x32.
pub struct SepConvBlock {
    dw: Checked<Conv2dParams>,
    pw: Checked<Conv2dParams>,
    bn: Checked<BatchNormParams>,
    x: Vec<f32>,
    wd: [Vec<f32>; 2],
    wp: [Vec<f32>; 2],
    rm: [Vec<f32>; 2],
    rv: [Vec<f32>; 2],
    mean: [Vec<f32>; 2],
    inv: [Vec<f32>; 2],
    // activations: r1, d1, p1, b1, r2, d2, p2, y
    act: Vec<Vec<f32>>,
    dy: Vec<f32>,
    g: [Vec<f32>; 2],
    gwd: [Vec<f32>; 2],
    gwp: [Vec<f32>; 2],
}

impl SepConvBlock {
    /// Builds the workload with its inputs filled and its outputs allocated once.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        let (n, c, h) = (64, 16, 32);
        let valid = "a valid fixed workload";
        let dw = Conv2dParams::new(n, c, h, h, c, 3)
            .padding(1)
            .groups(c)
            .check()
            .expect(valid);
        let pw = Conv2dParams::new(n, c, h, h, c, 1).check().expect(valid);
        let bn = BatchNormParams::new(n, c, h * h).check().expect(valid);
        let len = dw.x_len();
        SepConvBlock {
            x: data(len, 1),
            wd: [data(dw.w_len(), 2), data(dw.w_len(), 3)],
            wp: [data(pw.w_len(), 4), data(pw.w_len(), 5)],
            rm: [vec![0.0; c], vec![0.0; c]],
            rv: [vec![1.0; c], vec![1.0; c]],
            mean: [vec![0.0; c], vec![0.0; c]],
            inv: [vec![0.0; c], vec![0.0; c]],
            act: vec![vec![0.0; len]; 8],
            dy: data(len, 6),
            g: [vec![0.0; len], vec![0.0; len]],
            gwd: [vec![0.0; dw.w_len()], vec![0.0; dw.w_len()]],
            gwp: [vec![0.0; pw.w_len()], vec![0.0; pw.w_len()]],
            dw,
            pw,
            bn,
        }
    }

    /// The forward pass (training-mode batch norm).
    pub fn forward(&mut self) -> Result<()> {
        let s = self;
        for half in 0..2 {
            let (before, rest) = s.act.split_at_mut(4 * half);
            let input = if half == 0 { &s.x } else { &before[3] };
            let [r, d, p, b] = &mut rest[..4] else {
                unreachable!()
            };
            Cpu.unary(UnaryOp::Relu, input, r)?;
            Cpu.conv2d(&s.dw, r, &s.wd[half], None, d)?;
            Cpu.conv2d(&s.pw, d, &s.wp[half], None, p)?;
            Cpu.batch_norm(
                &s.bn,
                p,
                None,
                None,
                Some(&mut s.rm[half]),
                Some(&mut s.rv[half]),
                b,
                &mut s.mean[half],
                &mut s.inv[half],
            )?;
        }
        Ok(())
    }

    /// The backward pass to the input and all weights (after [`Self::forward`]).
    pub fn backward(&mut self) -> Result<()> {
        let s = self;
        // g[0] holds the running gradient, g[1] is scratch
        s.g[0].copy_from_slice(&s.dy);
        for half in (0..2).rev() {
            let a = &s.act[4 * half..4 * half + 4];
            let input = if half == 0 { &s.x } else { &s.act[3] };
            let [g0, g1] = &mut s.g;
            // BN: g0 -> g1
            Cpu.batch_norm_backward(
                &s.bn,
                &a[2],
                None,
                &s.mean[half],
                &s.inv[half],
                g0,
                g1,
                None,
                None,
            )?;
            // pointwise: g1 -> g0, weight grad from d
            Cpu.conv2d_backward_weight(&s.pw, &a[1], g1, &mut s.gwp[half], None)?;
            Cpu.conv2d_backward_input(&s.pw, &s.wp[half], g1, g0)?;
            // depthwise: g0 -> g1, weight grad from r
            Cpu.conv2d_backward_weight(&s.dw, &a[0], g0, &mut s.gwd[half], None)?;
            Cpu.conv2d_backward_input(&s.dw, &s.wd[half], g0, g1)?;
            // ReLU: g1 -> g0
            Cpu.unary_backward(UnaryOp::Relu, input, &a[0], g1, g0)?;
        }
        black_box(&s.g[0]);
        Ok(())
    }
}

/// Batch norm (training, affine) forward + backward on (64, 16, 32, 32).
pub struct BatchNormFwdBwd {
    p: Checked<BatchNormParams>,
    x: Vec<f32>,
    gamma: Vec<f32>,
    beta: Vec<f32>,
    rm: Vec<f32>,
    rv: Vec<f32>,
    y: Vec<f32>,
    mean: Vec<f32>,
    inv: Vec<f32>,
    dy: Vec<f32>,
    dx: Vec<f32>,
    dg: Vec<f32>,
    db: Vec<f32>,
}

impl BatchNormFwdBwd {
    /// Builds the workload with its inputs filled and its outputs allocated once.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        let p = BatchNormParams::new(64, 16, 1024)
            .check()
            .expect("a valid fixed workload");
        let c = 16;
        BatchNormFwdBwd {
            x: data(p.x_len(), 1),
            gamma: data(c, 2),
            beta: data(c, 3),
            rm: vec![0.0; c],
            rv: vec![1.0; c],
            y: vec![0.0; p.x_len()],
            mean: vec![0.0; c],
            inv: vec![0.0; c],
            dy: data(p.x_len(), 4),
            dx: vec![0.0; p.x_len()],
            dg: vec![0.0; c],
            db: vec![0.0; c],
            p,
        }
    }
    /// One forward + backward pass.
    pub fn step(&mut self) -> Result<()> {
        Cpu.batch_norm(
            &self.p,
            &self.x,
            Some(&self.gamma),
            Some(&self.beta),
            Some(&mut self.rm),
            Some(&mut self.rv),
            &mut self.y,
            &mut self.mean,
            &mut self.inv,
        )?;
        Cpu.batch_norm_backward(
            &self.p,
            &self.x,
            Some(&self.gamma),
            &self.mean,
            &self.inv,
            &self.dy,
            &mut self.dx,
            Some(&mut self.dg),
            Some(&mut self.db),
        )?;
        black_box(&self.dx);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finite_nonzero(v: &[f32]) -> bool {
        v.iter().all(|x| x.is_finite()) && v.iter().any(|&x| x != 0.0)
    }

    #[test]
    fn workloads_run_and_write_their_outputs() {
        let mut c = Conv3x3FwdBwd::new();
        c.step().unwrap();
        assert!(finite_nonzero(&c.y) && finite_nonzero(&c.dx) && finite_nonzero(&c.dw));
        let mut s = SepConvBlock::new();
        s.forward().unwrap();
        s.backward().unwrap();
        assert!(finite_nonzero(&s.act[7]) && finite_nonzero(&s.g[0]));
        assert!(s.gwd.iter().chain(&s.gwp).all(|g| finite_nonzero(g)));
        let mut b = BatchNormFwdBwd::new();
        b.step().unwrap();
        assert!(finite_nonzero(&b.dx) && finite_nonzero(&b.dg) && finite_nonzero(&b.db));
        assert_eq!(data(8, 7), data(8, 7));
    }
}

/// One row of [`quick_suite`]: one kernel call on one shape, timed.
#[derive(Debug, Clone, PartialEq)]
pub struct KernelTiming {
    /// What was timed (`"gemm square 256"`).
    pub name: String,
    /// `"gemm"` or `"conv2d"`.
    pub kind: &'static str,
    /// Floating-point operations of one call.
    pub flop: f64,
    /// Median seconds per call.
    pub median_s: f64,
    /// The fastest call (s).
    pub best_s: f64,
    /// Calls timed.
    pub reps: usize,
}

impl KernelTiming {
    /// GFLOP/s of the median call.
    pub fn gflops(&self) -> f64 {
        self.flop / self.median_s / 1e9
    }
    /// GFLOP/s of the fastest call.
    pub fn best_gflops(&self) -> f64 {
        self.flop / self.best_s / 1e9
    }
}

/// Median and fastest wall time (s) and count of calls of `f` after one warm-up call, for
/// `secs` seconds (at least 3 calls, at most 10,000).
pub fn time_repeated(secs: f64, mut f: impl FnMut() -> Result<()>) -> Result<(f64, f64, usize)> {
    f()?;
    let mut times = Vec::new();
    let start = std::time::Instant::now();
    while times.len() < 3 || (start.elapsed().as_secs_f64() < secs && times.len() < 10_000) {
        let t = std::time::Instant::now();
        f()?;
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok((times[times.len() / 2], times[0], times.len()))
}

/// The quick kernel check of `nas bench kernels`: GEMM squares of 256, 512 and 1024, the
/// forward GEMMs of 3x3 convolutions at batch 64 in three CIFAR ResNet stages
/// (M = C_out, K = 9 C_in, N = batch x H x W), and [`Conv3x3FwdBwd`], each timed for `secs`
/// with the GEMM micro-kernel `kernel` on `threads` threads; `on_shape` is told each name
/// before it is timed. Criterion benches are the reference; this is a quick look.
pub fn quick_suite(
    kernel: crate::gemm::Kernel,
    threads: usize,
    secs: f64,
    on_shape: &mut dyn FnMut(&str),
) -> Result<Vec<KernelTiming>> {
    let mut shapes: Vec<(String, usize, usize, usize)> = [256usize, 512, 1024]
        .iter()
        .map(|&s| (format!("gemm square {s}"), s, s, s))
        .collect();
    for (c, side) in [(16usize, 32usize), (32, 16), (64, 8)] {
        let n = 64 * side * side;
        shapes.push((format!("gemm conv{c} M{c} K{} N{n}", 9 * c), c, n, 9 * c));
    }
    let mut rows = Vec::new();
    for (i, (name, m, n, k)) in shapes.into_iter().enumerate() {
        on_shape(&name);
        let (a, b) = (data(m * k, 2 * i as u32 + 1), data(k * n, 2 * i as u32 + 2));
        let mut c = vec![0.0f32; m * n];
        let (median_s, best_s, reps) = time_repeated(secs, || {
            crate::gemm::sgemm_with(
                kernel, threads, false, false, m, n, k, 1.0, &a, k, &b, n, 0.0, &mut c, n,
            )
            .map_err(|e| crate::KernelError::InvalidParam {
                op: "sgemm",
                msg: e.to_string(),
            })
        })?;
        black_box(&c);
        let flop = 2.0 * (m * n * k) as f64;
        rows.push(KernelTiming {
            name,
            kind: "gemm",
            flop,
            median_s,
            best_s,
            reps,
        });
    }
    let name = "conv2d 3x3 fwd+bwd (64,16,32,32)";
    on_shape(name);
    let mut conv = Conv3x3FwdBwd::new();
    let (median_s, best_s, reps) = time_repeated(secs, || conv.step())?;
    rows.push(KernelTiming {
        name: name.into(),
        kind: "conv2d",
        // Each of the three passes is one GEMM-sized 2 * N * C_out * H * W * C_in * 9 FLOP.
        flop: 3.0 * 2.0 * (64 * 16 * 32 * 32 * 16 * 9) as f64,
        median_s,
        best_s,
        reps,
    });
    Ok(rows)
}
