//! Every CUDA kernel against the CPU backend, on the emulated device (feature `cuda-emu`: the
//! `.cu` sources compiled as C++ and run on the CPU, every output buffer poisoned with NaN
//! first and guarded by inaccessible pages), over shapes that reach each kernel's paths:
//! vector and scalar loads, transposes, partial tiles, batches, split reductions, groups,
//! depthwise, strides, padding, dilation, more inputs than one launch takes. With
//! `NAS_TEST_DEVICE=cuda:0` (GPU machines, see `scripts/gpu-check.sh`) the same checks run on
//! a real device.
#![cfg(feature = "cuda")]

use nas_kernels::*;

/// `NAS_TEST_DEVICE` (a GPU), else the emulated device; with neither (a `cuda` build without
/// `cuda-emu` and no device named) the tests say they were skipped.
fn device() -> Option<Cuda> {
    if let Ok(d) = std::env::var("NAS_TEST_DEVICE") {
        let d = d.parse().expect("NAS_TEST_DEVICE: cuda or cuda:N");
        return Some(Cuda::new(d).unwrap());
    }
    #[cfg(feature = "cuda-emu")]
    return Some(Cuda::emulated());
    #[cfg(not(feature = "cuda-emu"))]
    {
        eprintln!("SKIPPED: no NAS_TEST_DEVICE and no cuda-emu feature");
        None
    }
}

/// Deterministic values in about [-2, 2], distinct enough for arg-max ties to be rare.
fn data(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
        })
        .collect()
}

fn close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    for (i, (&a, &b)) in got.iter().zip(want).enumerate() {
        assert!(
            (a - b).abs() <= 1e-4 * b.abs() + 1e-5 * scale.max(1e-3),
            "{what}: element {i}: {a} (cuda) vs {b} (cpu)"
        );
    }
}

struct T {
    c: Cuda,
}

impl T {
    fn up(&self, v: &[f32]) -> CudaBuf {
        self.c.from_slice(v).unwrap()
    }
    fn out(&self, n: usize) -> CudaBuf {
        // poisoned with NaN on the emulated device (and with NAS_CUDA_POISON=1 on a GPU)
        self.c.alloc(n).unwrap()
    }
    fn get(&self, b: &CudaBuf) -> Vec<f32> {
        self.c.to_vec(b).unwrap()
    }
}

fn t() -> Option<T> {
    device().map(|c| T { c })
}

#[test]
fn sgemm_all_paths() {
    let Some(t) = t() else { return };
    for &(batch, m, n, k) in &[
        (1, 1, 1, 1),
        (1, 70, 52, 36),
        (2, 65, 67, 33),
        (3, 17, 130, 20),
        (1, 128, 64, 64),
    ] {
        for (ta, tb, shared, beta) in [
            (false, false, false, 0.0),
            (true, false, false, 0.0),
            (false, true, false, 0.5),
            (true, true, true, 0.0),
            (false, false, true, -1.0),
        ] {
            let p = Matmul {
                batch,
                m,
                n,
                k,
                trans_a: ta,
                trans_b: tb,
                b_shared: shared,
                alpha: 0.75,
                beta,
            };
            let (a, b, c0) = (data(p.a_len(), 1), data(p.b_len(), 2), data(p.c_len(), 3));
            let mut want = c0.clone();
            Cpu.matmul(&p, &a, &b, &mut want).unwrap();
            let mut got = if beta != 0.0 {
                t.up(&c0)
            } else {
                t.out(p.c_len())
            };
            t.c.matmul(&p, &t.up(&a), &t.up(&b), &mut got).unwrap();
            close(&t.get(&got), &want, &format!("{p:?}"));
        }
    }
}

fn conv_cases() -> Vec<Conv2dParams> {
    vec![
        Conv2dParams::new(2, 3, 7, 6, 5, 3).padding(1),
        Conv2dParams::new(1, 4, 9, 9, 4, 3)
            .padding(2)
            .dilation(2)
            .groups(4),
        Conv2dParams::new(2, 8, 8, 8, 8, 5)
            .padding(2)
            .stride(2)
            .groups(8),
        Conv2dParams::new(3, 6, 5, 7, 4, 1),
        Conv2dParams::new(2, 6, 6, 6, 9, 3).stride(2).groups(3),
        Conv2dParams::new(1, 70, 4, 4, 66, 1),
        // a long weight-gradient reduction: split over blocks (n * out_h * out_w > 4096)
        Conv2dParams::new(5, 2, 30, 30, 3, 3).padding(1),
    ]
}

#[test]
fn conv2d_forward_and_backward_all_paths() {
    let Some(t) = t() else { return };
    for p in conv_cases() {
        let (x, w, b) = (data(p.x_len(), 4), data(p.w_len(), 5), data(p.c_out, 6));
        let dy = data(p.y_len(), 7);
        let (dx_, w_, x_, dy_) = (t.up(&x), t.up(&w), t.up(&x), t.up(&dy));
        let _ = dx_;
        // forward with bias, and of relu(x)
        let mut want = vec![0.0; p.y_len()];
        Cpu.conv2d(&p.check().unwrap(), &x, &w, Some(&b), &mut want)
            .unwrap();
        let mut got = t.out(p.y_len());
        t.c.conv2d(&p.check().unwrap(), &x_, &w_, Some(&t.up(&b)), &mut got)
            .unwrap();
        close(&t.get(&got), &want, &format!("conv2d {p:?}"));
        Cpu.conv2d_relu_input(&p.check().unwrap(), &x, &w, &mut want)
            .unwrap();
        t.c.conv2d_relu_input(&p.check().unwrap(), &x_, &w_, &mut got)
            .unwrap();
        close(&t.get(&got), &want, &format!("conv2d_relu_input {p:?}"));
        // input gradient, plain and through the ReLU mask
        let mut want = vec![0.0; p.x_len()];
        let mut got = t.out(p.x_len());
        Cpu.conv2d_backward_input(&p.check().unwrap(), &w, &dy, &mut want)
            .unwrap();
        t.c.conv2d_backward_input(&p.check().unwrap(), &w_, &dy_, &mut got)
            .unwrap();
        close(&t.get(&got), &want, &format!("conv2d_backward_input {p:?}"));
        Cpu.conv2d_backward_input_relu_mask(&p.check().unwrap(), &w, &dy, &x, &mut want)
            .unwrap();
        let mut got = t.out(p.x_len());
        t.c.conv2d_backward_input_relu_mask(&p.check().unwrap(), &w_, &dy_, &x_, &mut got)
            .unwrap();
        close(
            &t.get(&got),
            &want,
            &format!("conv2d_backward_input_relu_mask {p:?}"),
        );
        // weight (and bias) gradient, plain and of relu(x)
        let (mut ww, mut wb) = (vec![0.0; p.w_len()], vec![0.0; p.c_out]);
        Cpu.conv2d_backward_weight(&p.check().unwrap(), &x, &dy, &mut ww, Some(&mut wb))
            .unwrap();
        let (mut gw, mut gb) = (t.out(p.w_len()), t.out(p.c_out));
        t.c.conv2d_backward_weight(&p.check().unwrap(), &x_, &dy_, &mut gw, Some(&mut gb))
            .unwrap();
        close(&t.get(&gw), &ww, &format!("conv2d_backward_weight {p:?}"));
        close(
            &t.get(&gb),
            &wb,
            &format!("conv2d_backward_weight (bias) {p:?}"),
        );
        Cpu.conv2d_backward_weight_relu_input(&p.check().unwrap(), &x, &dy, &mut ww)
            .unwrap();
        let mut gw = t.out(p.w_len());
        t.c.conv2d_backward_weight_relu_input(&p.check().unwrap(), &x_, &dy_, &mut gw)
            .unwrap();
        close(
            &t.get(&gw),
            &ww,
            &format!("conv2d_backward_weight_relu_input {p:?}"),
        );
    }
}

// ---------------------------------------------------------------- TF32 tensor cores
//
// Error bound of a TF32 GEMM (`Cuda::with_tf32(true)`), element by element, with
// S = sum_k |a_ik| |b_kj| (times |alpha|): rounding an operand to TF32 (10 mantissa bits,
// nearest) moves it by at most 2^-11 of its magnitude, so a product by at most
// (2 * 2^-11 + 2^-22) of |a b|; adding K products in f32 adds at most about K * 2^-24 of S
// (we allow K * 2^-23, twice that, for the hardware's own adder). Hence
// |tf32 - exact| <= (2^-10 + 2^-21 + (K + 2) * 2^-23) * S: about 1e-3 of S, where f32 alone
// stays near 1e-6 of S. Against the exact product of the *TF32-rounded* operands only the f32
// summation is left, (K + 2) * 2^-23 * S: that checks that every operand was rounded, and
// rounded to nearest with ties away from zero (the data holds exact ties).

/// The TF32 value nearest `x`, ties away from zero, computed in f64 from the definition: a
/// multiple of 2^(e - 10) for x in [2^e, 2^(e+1)) (of 2^-136 for subnormals), overflowing
/// to infinity at 2^128. NaN for NaN.
fn tf32_reference(x: f32) -> f32 {
    if x.is_nan() || x.is_infinite() || x == 0.0 {
        return x;
    }
    let exp_field = (x.to_bits() >> 23) & 0xff;
    let e = if exp_field == 0 {
        -126
    } else {
        exp_field as i32 - 127
    };
    let ulp = 2f64.powi(e - 10);
    let r = (x.abs() as f64 / ulp).round() * ulp; // f64::round: ties away from zero
    let r = if r >= 2f64.powi(128) {
        f64::INFINITY
    } else {
        r
    };
    (r as f32).copysign(x)
}

#[cfg(feature = "cuda-emu")]
fn tf32_round(x: f32) -> f32 {
    f32::from_bits(Cuda::emulated_tf32_round(x.to_bits()))
}

#[cfg(feature = "cuda-emu")]
#[test]
fn tf32_rounding_matches_the_bit_level_reference() {
    // every sign, exponent and kept mantissa (the top 19 bits), each with dropped bits below,
    // at and above the halfway point, and a few more
    let mut s = 0x1234_5678_u32;
    for top in 0u32..1 << 19 {
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        for low in [0, 1, 0x0fff, 0x1000, 0x1001, 0x1fff, s & 0x1fff] {
            let bits = top << 13 | low;
            let x = f32::from_bits(bits);
            let got = f32::from_bits(Cuda::emulated_tf32_round(bits));
            let want = tf32_reference(x);
            if x.is_nan() {
                assert!(got.is_nan(), "{bits:#010x}: NaN rounded to {got}");
            } else {
                assert_eq!(
                    got.to_bits(),
                    want.to_bits(),
                    "{bits:#010x} ({x:e}): {got:e} vs reference {want:e}"
                );
            }
        }
    }
    // the cases by name: ties go away from zero, past the largest TF32 is infinity
    assert_eq!(tf32_round(1.0 + 2f32.powi(-11)), 1.0 + 2f32.powi(-10));
    assert_eq!(tf32_round(-(1.0 + 2f32.powi(-11))), -(1.0 + 2f32.powi(-10)));
    assert_eq!(tf32_round(1.0 + 3.0 * 2f32.powi(-11)), 1.0 + 2f32.powi(-9));
    assert_eq!(tf32_round(1.0 + 2f32.powi(-11) - 2f32.powi(-23)), 1.0);
    assert_eq!(tf32_round(f32::MAX), f32::INFINITY);
    assert_eq!(
        tf32_round(f32::from_bits(0x0000_1000)),
        f32::from_bits(0x0000_2000)
    );
}

/// `data`, with every fifth value moved onto a TF32 tie (dropped bits exactly half a unit).
fn tie_data(n: usize, seed: u64) -> Vec<f32> {
    let mut v = data(n, seed);
    for x in v.iter_mut().step_by(5) {
        *x = f32::from_bits((x.to_bits() & !0x1fff) | 0x1000);
    }
    v
}

/// `op(A) op(B)` of one batch element in f64, and the sum of |products|.
fn gemm_f64(p: &Matmul, a: &[f32], b: &[f32], z: usize, i: usize, j: usize) -> (f64, f64) {
    let (m, n, k) = (p.m, p.n, p.k);
    let a = &a[z * m * k..];
    let b = if p.b_shared { b } else { &b[z * k * n..] };
    let (mut sum, mut abs) = (0.0f64, 0.0f64);
    for l in 0..k {
        let x = if p.trans_a {
            a[l * m + i]
        } else {
            a[i * k + l]
        } as f64;
        let y = if p.trans_b {
            b[j * k + l]
        } else {
            b[l * n + j]
        } as f64;
        sum += x * y;
        abs += (x * y).abs();
    }
    (sum, abs)
}

/// Checks `got` (C after the GEMM) against the f64 GEMM of `a`, `b` with `rel` times
/// |alpha| S allowed, plus f32 rounding of the alpha/beta update.
fn check_gemm(p: &Matmul, a: &[f32], b: &[f32], c0: &[f32], got: &[f32], rel: f64, what: &str) {
    let mut worst = 0.0f64;
    for z in 0..p.batch {
        for i in 0..p.m {
            for j in 0..p.n {
                let idx = (z * p.m + i) * p.n + j;
                let (sum, abs) = gemm_f64(p, a, b, z, i, j);
                let alpha = p.alpha as f64;
                let beta_c = if p.beta != 0.0 {
                    p.beta as f64 * c0[idx] as f64
                } else {
                    0.0
                };
                let want = alpha * sum + beta_c;
                let tol = rel * alpha.abs() * abs
                    + 2f64.powi(-22) * (alpha.abs() * abs + beta_c.abs())
                    + 1e-30;
                let err = (got[idx] as f64 - want).abs();
                assert!(
                    err <= tol,
                    "{what}: {p:?}: C[{z}][{i}][{j}] = {} vs {want} (error {err:e}, bound {tol:e})",
                    got[idx]
                );
                worst = worst.max(err / (alpha.abs() * abs).max(1e-30));
            }
        }
    }
    eprintln!("{what}: {p:?}: worst error / S = {worst:.2e} (allowed {rel:.2e})");
}

fn tf32_gemm_cases() -> Vec<Matmul> {
    let mut out = Vec::new();
    // M, N, K below, at and across the 64 x 64 x 16 tile and the 16 x 8 x 8 mma tile
    for &(batch, m, n, k) in &[
        (1, 1, 1, 1),
        (1, 70, 52, 36),
        (2, 65, 67, 33),
        (3, 17, 130, 20),
        (1, 128, 64, 64),
        (1, 9, 7, 5),
    ] {
        for (ta, tb, shared, beta) in [
            (false, false, false, 0.0),
            (true, false, false, 0.0),
            (false, true, false, 0.5),
            (true, true, true, 0.0),
            (false, false, true, -1.0),
        ] {
            out.push(Matmul {
                batch,
                m,
                n,
                k,
                trans_a: ta,
                trans_b: tb,
                b_shared: shared,
                alpha: 0.75,
                beta,
            });
        }
    }
    out
}

fn run_gemm(c: &Cuda, p: &Matmul, a: &[f32], b: &[f32], c0: &[f32]) -> Vec<f32> {
    let mut out = if p.beta != 0.0 {
        c.from_slice(c0).unwrap()
    } else {
        c.alloc(p.c_len()).unwrap()
    };
    c.matmul(
        p,
        &c.from_slice(a).unwrap(),
        &c.from_slice(b).unwrap(),
        &mut out,
    )
    .unwrap();
    c.to_vec(&out).unwrap()
}

#[test]
fn sgemm_tf32_within_the_tf32_bound() {
    let Some(t) = t() else { return };
    let c = t.c.with_tf32(true);
    if !c.tf32() {
        eprintln!(
            "SKIPPED: {} has no TF32 tensor cores (compute capability < 8.0)",
            c.name()
        );
        return;
    }
    for p in tf32_gemm_cases() {
        let (a, b, c0) = (
            tie_data(p.a_len(), 21),
            tie_data(p.b_len(), 22),
            data(p.c_len(), 23),
        );
        let got = run_gemm(&c, &p, &a, &b, &c0);
        let k = p.k as f64;
        let tf32_bound = 2f64.powi(-10) + 2f64.powi(-21) + (k + 2.0) * 2f64.powi(-23);
        check_gemm(&p, &a, &b, &c0, &got, tf32_bound, "tf32 vs exact");
        let (ar, br): (Vec<f32>, Vec<f32>) = (
            a.iter().map(|&x| tf32_reference(x)).collect(),
            b.iter().map(|&x| tf32_reference(x)).collect(),
        );
        check_gemm(
            &p,
            &ar,
            &br,
            &c0,
            &got,
            (k + 2.0) * 2f64.powi(-23),
            "tf32 vs rounded operands",
        );
    }
}

#[test]
fn sgemm_default_stays_exact_f32() {
    let Some(t) = t() else { return };
    if std::env::var("NAS_CUDA_TF32").is_ok_and(|v| v.trim() == "1") {
        eprintln!("SKIPPED: NAS_CUDA_TF32=1 switches the device's default to TF32");
        return;
    }
    assert!(!t.c.tf32(), "TF32 must be off by default");
    for c in [t.c, t.c.with_tf32(false)] {
        for p in tf32_gemm_cases() {
            let (a, b, c0) = (
                tie_data(p.a_len(), 21),
                tie_data(p.b_len(), 22),
                data(p.c_len(), 23),
            );
            let got = run_gemm(&c, &p, &a, &b, &c0);
            // f32 FMAs: at most about K * 2^-24 of S; allow twice that
            check_gemm(
                &p,
                &a,
                &b,
                &c0,
                &got,
                (p.k as f64 + 2.0) * 2f64.powi(-23),
                "f32",
            );
        }
    }
}

#[test]
fn conv2d_tf32_within_the_tf32_bound() {
    let Some(t) = t() else { return };
    let c = t.c.with_tf32(true);
    if !c.tf32() {
        eprintln!("SKIPPED: no TF32 tensor cores");
        return;
    }
    let abs = |v: &[f32]| v.iter().map(|x| x.abs()).collect::<Vec<_>>();
    let rnd = |v: &[f32]| v.iter().map(|&x| tf32_reference(x)).collect::<Vec<_>>();
    // got vs want, allowed `rel` of S (the same op on |operands|) plus the CPU's own f32 error
    let check = |got: &[f32], want: &[f32], s: &[f32], k: usize, rel: f64, what: &str| {
        for i in 0..want.len() {
            let tol = (rel + (k as f64 + 2.0) * 2f64.powi(-23)) * s[i] as f64 + 1e-30;
            let err = (got[i] as f64 - want[i] as f64).abs();
            assert!(
                err <= tol,
                "{what}: element {i}: {} vs {} (error {err:e}, bound {tol:e})",
                got[i],
                want[i]
            );
        }
    };
    for p in conv_cases().into_iter().filter(|p| !p.is_depthwise()) {
        let cp = p.check().unwrap();
        let (x, w, dy) = (
            tie_data(p.x_len(), 24),
            tie_data(p.w_len(), 25),
            tie_data(p.y_len(), 26),
        );
        let (x_, w_, dy_) = (
            c.from_slice(&x).unwrap(),
            c.from_slice(&w).unwrap(),
            c.from_slice(&dy).unwrap(),
        );
        let kf = (p.c_in / p.groups) * p.kh * p.kw;
        let kw = p.n * p.out_h() * p.out_w();
        let tf32 = 2f64.powi(-10) + 2f64.powi(-21);
        for relu in [false, true] {
            let conv = |x: &[f32], w: &[f32]| {
                let mut y = vec![0.0; p.y_len()];
                if relu {
                    Cpu.conv2d_relu_input(&cp, x, w, &mut y).unwrap();
                } else {
                    Cpu.conv2d(&cp, x, w, None, &mut y).unwrap();
                }
                y
            };
            let mut got = c.alloc(p.y_len()).unwrap();
            if relu {
                c.conv2d_relu_input(&cp, &x_, &w_, &mut got).unwrap();
            } else {
                c.conv2d(&cp, &x_, &w_, None, &mut got).unwrap();
            }
            let got = c.to_vec(&got).unwrap();
            let s = conv(&abs(&x), &abs(&w));
            check(
                &got,
                &conv(&x, &w),
                &s,
                kf,
                tf32,
                &format!("conv2d tf32 relu={relu} {p:?}"),
            );
            check(
                &got,
                &conv(&rnd(&x), &rnd(&w)),
                &s,
                kf,
                (kf as f64 + 2.0) * 2f64.powi(-23),
                &format!("conv2d tf32 vs rounded operands relu={relu} {p:?}"),
            );

            let grad = |x: &[f32], dy: &[f32]| {
                let mut dw = vec![0.0; p.w_len()];
                if relu {
                    Cpu.conv2d_backward_weight_relu_input(&cp, x, dy, &mut dw)
                        .unwrap();
                } else {
                    Cpu.conv2d_backward_weight(&cp, x, dy, &mut dw, None)
                        .unwrap();
                }
                dw
            };
            let mut gw = c.alloc(p.w_len()).unwrap();
            if relu {
                c.conv2d_backward_weight_relu_input(&cp, &x_, &dy_, &mut gw)
                    .unwrap();
            } else {
                c.conv2d_backward_weight(&cp, &x_, &dy_, &mut gw, None)
                    .unwrap();
            }
            let gw = c.to_vec(&gw).unwrap();
            let s = grad(&abs(&x), &abs(&dy));
            check(
                &gw,
                &grad(&x, &dy),
                &s,
                kw,
                tf32,
                &format!("conv2d_backward_weight tf32 relu={relu} {p:?}"),
            );
            check(
                &gw,
                &grad(&rnd(&x), &rnd(&dy)),
                &s,
                kw,
                (kw as f64 + 2.0) * 2f64.powi(-23),
                &format!("conv2d_backward_weight tf32 vs rounded operands relu={relu} {p:?}"),
            );
        }
    }
}

#[test]
fn pooling_all_paths() {
    let Some(t) = t() else { return };
    let kinds = [
        PoolKind::Max,
        PoolKind::Avg {
            count_include_pad: false,
        },
        PoolKind::Avg {
            count_include_pad: true,
        },
    ];
    for kind in kinds {
        for (k, s, pad, h, w) in [
            (3, 1, 1, 5, 6),
            (3, 2, 1, 7, 7),
            (2, 2, 0, 6, 5),
            (1, 1, 0, 3, 3),
        ] {
            let p = Pool2dParams::new(kind, 2, 3, h, w, k, s, pad);
            let (x, dy) = (data(p.x_len(), 8), data(p.y_len(), 9));
            let mut want = vec![0.0; p.y_len()];
            Cpu.pool2d(&p.check().unwrap(), &x, &mut want).unwrap();
            let x_ = t.up(&x);
            let mut got = t.out(p.y_len());
            t.c.pool2d(&p.check().unwrap(), &x_, &mut got).unwrap();
            close(&t.get(&got), &want, &format!("pool2d {p:?}"));
            let mut want = vec![0.0; p.x_len()];
            Cpu.pool2d_backward(&p.check().unwrap(), &x, None, &dy, &mut want)
                .unwrap();
            let mut got = t.out(p.x_len());
            t.c.pool2d_backward(&p.check().unwrap(), &x_, None, &t.up(&dy), &mut got)
                .unwrap();
            close(&t.get(&got), &want, &format!("pool2d_backward {p:?}"));
        }
    }
    for (n, c, hw) in [(2, 3, 1), (3, 5, 49), (1, 2, 300)] {
        let (x, dy) = (data(n * c * hw, 10), data(n * c, 11));
        let mut want = vec![0.0; n * c];
        Cpu.global_avg_pool(n, c, hw, &x, &mut want).unwrap();
        let mut got = t.out(n * c);
        t.c.global_avg_pool(n, c, hw, &t.up(&x), &mut got).unwrap();
        close(&t.get(&got), &want, "global_avg_pool");
        let mut want = vec![0.0; n * c * hw];
        Cpu.global_avg_pool_backward(n, c, hw, &dy, &mut want)
            .unwrap();
        let mut got = t.out(n * c * hw);
        t.c.global_avg_pool_backward(n, c, hw, &t.up(&dy), &mut got)
            .unwrap();
        close(&t.get(&got), &want, "global_avg_pool_backward");
    }
}

#[test]
fn batch_norm_all_paths() {
    let Some(t) = t() else { return };
    for (n, c, hw) in [(2, 3, 5), (4, 1, 1), (3, 2, 700)] {
        for training in [true, false] {
            for affine in [true, false] {
                let p = BatchNormParams::new(n, c, hw).training(training);
                let x: Vec<f32> = data(p.x_len(), 12).iter().map(|v| 3.0 + v).collect();
                let (g, b, dy) = (data(c, 13), data(c, 14), data(p.x_len(), 15));
                let (rm, rv): (Vec<f32>, Vec<f32>) = (
                    (0..c).map(|i| 0.1 * i as f32).collect(),
                    (0..c).map(|i| 1.0 + 0.5 * i as f32).collect(),
                );
                let (mut y, mut sm, mut si) = (vec![0.0; p.x_len()], vec![0.0; c], vec![0.0; c]);
                let (mut crm, mut crv) = (rm.clone(), rv.clone());
                let (gg, bb) = if affine {
                    (Some(&g[..]), Some(&b[..]))
                } else {
                    (None, None)
                };
                Cpu.batch_norm(
                    &p.check().unwrap(),
                    &x,
                    gg,
                    bb,
                    Some(&mut crm),
                    Some(&mut crv),
                    &mut y,
                    &mut sm,
                    &mut si,
                )
                .unwrap();
                let (x_, g_, b_) = (t.up(&x), t.up(&g), t.up(&b));
                let (mut drm, mut drv) = (t.up(&rm), t.up(&rv));
                let (mut dyv, mut dsm, mut dsi) = (t.out(p.x_len()), t.out(c), t.out(c));
                let (dg, db) = if affine {
                    (Some(&g_), Some(&b_))
                } else {
                    (None, None)
                };
                t.c.batch_norm(
                    &p.check().unwrap(),
                    &x_,
                    dg,
                    db,
                    Some(&mut drm),
                    Some(&mut drv),
                    &mut dyv,
                    &mut dsm,
                    &mut dsi,
                )
                .unwrap();
                let what = format!("batch_norm {p:?} affine={affine}");
                close(&t.get(&dyv), &y, &what);
                close(&t.get(&dsm), &sm, &what);
                close(&t.get(&dsi), &si, &what);
                close(&t.get(&drm), &crm, &what);
                close(&t.get(&drv), &crv, &what);
                // backward
                let (mut dx, mut dgm, mut dbt) = (vec![0.0; p.x_len()], vec![0.0; c], vec![0.0; c]);
                Cpu.batch_norm_backward(
                    &p.check().unwrap(),
                    &x,
                    gg,
                    &sm,
                    &si,
                    &dy,
                    &mut dx,
                    Some(&mut dgm),
                    Some(&mut dbt),
                )
                .unwrap();
                let (mut gx, mut ggm, mut gbt) = (t.out(p.x_len()), t.out(c), t.out(c));
                t.c.batch_norm_backward(
                    &p.check().unwrap(),
                    &x_,
                    dg,
                    &dsm,
                    &dsi,
                    &t.up(&dy),
                    &mut gx,
                    Some(&mut ggm),
                    Some(&mut gbt),
                )
                .unwrap();
                close(&t.get(&gx), &dx, &format!("{what} dx"));
                close(&t.get(&ggm), &dgm, &format!("{what} dgamma"));
                close(&t.get(&gbt), &dbt, &format!("{what} dbeta"));
            }
        }
    }
}

#[test]
fn elementwise_all_paths() {
    let Some(t) = t() else { return };
    let x: Vec<f32> = data(300, 16);
    let pos: Vec<f32> = x.iter().map(|v| v.abs() + 0.1).collect();
    let dy = data(300, 17);
    let ops = [
        UnaryOp::Relu,
        UnaryOp::Neg,
        UnaryOp::Exp,
        UnaryOp::Log,
        UnaryOp::Sqrt,
        UnaryOp::Square,
        UnaryOp::Abs,
        UnaryOp::Tanh,
        UnaryOp::Sigmoid,
        UnaryOp::Recip,
        UnaryOp::Scale(-1.5),
        UnaryOp::AddScalar(0.25),
    ];
    for op in ops {
        let input = if matches!(op, UnaryOp::Log | UnaryOp::Sqrt) {
            &pos
        } else {
            &x
        };
        let mut y = vec![0.0; 300];
        Cpu.unary(op, input, &mut y).unwrap();
        let (xi, mut yo) = (t.up(input), t.out(300));
        t.c.unary(op, &xi, &mut yo).unwrap();
        close(&t.get(&yo), &y, &format!("{op:?}"));
        let mut dx = vec![0.0; 300];
        Cpu.unary_backward(op, input, &y, &dy, &mut dx).unwrap();
        let mut dxo = t.out(300);
        t.c.unary_backward(op, &xi, &t.up(&y), &t.up(&dy), &mut dxo)
            .unwrap();
        close(&t.get(&dxo), &dx, &format!("{op:?} backward"));
    }
    let bin = [
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::Div,
        BinaryOp::Maximum,
        BinaryOp::Minimum,
    ];
    let shapes: [(&[usize], &[usize]); 5] = [
        (&[4, 5], &[4, 5]),
        (&[2, 3, 4], &[3, 1]),
        (&[3, 1, 5], &[1, 4, 1]),
        (&[5], &[2, 3, 5]),
        (&[1], &[6]),
    ];
    for op in bin {
        for (sa, sb) in shapes {
            let (na, nb) = (sa.iter().product::<usize>(), sb.iter().product::<usize>());
            let (a, b) = (
                data(na, 18),
                data(nb, 19).iter().map(|v| v + 3.0).collect::<Vec<_>>(),
            );
            let os = broadcast_shape(sa, sb).unwrap();
            let no = os.iter().product();
            let mut want = vec![0.0; no];
            Cpu.binary(op, &a, sa, &b, sb, &mut want).unwrap();
            let mut got = t.out(no);
            t.c.binary(op, &t.up(&a), sa, &t.up(&b), sb, &mut got)
                .unwrap();
            close(&t.get(&got), &want, &format!("{op:?} {sa:?} {sb:?}"));
            // the backward of broadcasting, and broadcasting itself
            for (s, n) in [(sa, na), (sb, nb)] {
                let big = data(no, 20);
                let mut want = vec![0.0; n];
                Cpu.sum_to_shape(&big, &os, s, &mut want).unwrap();
                let mut got = t.out(n);
                t.c.sum_to_shape(&t.up(&big), &os, s, &mut got).unwrap();
                close(
                    &t.get(&got),
                    &want,
                    &format!("sum_to_shape {os:?} -> {s:?}"),
                );
                let small = data(n, 21);
                let mut want = vec![0.0; no];
                Cpu.broadcast_to(&small, s, &os, &mut want).unwrap();
                let mut got = t.out(no);
                t.c.broadcast_to(&t.up(&small), s, &os, &mut got).unwrap();
                close(
                    &t.get(&got),
                    &want,
                    &format!("broadcast_to {s:?} -> {os:?}"),
                );
            }
        }
    }
    // axpy, fill, copy, select_backward
    let (a, y0) = (data(77, 22), data(77, 23));
    let mut want = y0.clone();
    Cpu.axpy(-0.5, &a, &mut want).unwrap();
    let mut got = t.up(&y0);
    t.c.axpy(-0.5, &t.up(&a), &mut got).unwrap();
    close(&t.get(&got), &want, "axpy");
    let mut got = t.out(77);
    t.c.fill(2.5, &mut got).unwrap();
    assert_eq!(t.get(&got), vec![2.5; 77]);
    t.c.copy(&t.up(&a), &mut got).unwrap();
    assert_eq!(t.get(&got), a);
    let yv: Vec<f32> = a.iter().zip(&y0).map(|(p, q)| p.max(*q)).collect();
    let (mut da, mut db) = (vec![0.0; 77], vec![0.0; 77]);
    Cpu.select_backward(&a, &yv, &y0, &mut da, &mut db).unwrap();
    let (mut gda, mut gdb) = (t.out(77), t.out(77));
    t.c.select_backward(&t.up(&a), &t.up(&yv), &t.up(&y0), &mut gda, &mut gdb)
        .unwrap();
    assert_eq!((t.get(&gda), t.get(&gdb)), (da, db));
}

#[test]
fn weighted_sums_concat_split_and_strided_copies() {
    let Some(t) = t() else { return };
    // DARTS' mixed op with more inputs than one launch takes (16)
    for k in [1usize, 3, 8, 17, 35] {
        let n = 130;
        let w = data(k, 24);
        let xs: Vec<Vec<f32>> = (0..k).map(|i| data(n, 100 + i as u64)).collect();
        let dy = data(n, 25);
        let xr: Vec<&[f32]> = xs.iter().map(|v| &v[..]).collect();
        let mut want = vec![0.0; n];
        Cpu.weighted_sum(&w, &xr, &mut want).unwrap();
        let (wd, xd): (CudaBuf, Vec<CudaBuf>) = (t.up(&w), xs.iter().map(|v| t.up(v)).collect());
        let xdr: Vec<&CudaBuf> = xd.iter().collect();
        let mut got = t.out(n);
        t.c.weighted_sum(&wd, &xdr, &mut got).unwrap();
        close(&t.get(&got), &want, &format!("weighted_sum k={k}"));
        let mut dxs: Vec<Vec<f32>> = vec![vec![0.0; n]; k];
        let mut dw = vec![0.0; k];
        {
            let mut dr: Vec<&mut [f32]> = dxs.iter_mut().map(|v| &mut v[..]).collect();
            Cpu.weighted_sum_backward(&w, &xr, &dy, &mut dr, &mut dw)
                .unwrap();
        }
        let mut gdx: Vec<CudaBuf> = (0..k).map(|_| t.out(n)).collect();
        let mut gdw = t.out(k);
        {
            let mut dr: Vec<&mut CudaBuf> = gdx.iter_mut().collect();
            t.c.weighted_sum_backward(&wd, &xdr, &t.up(&dy), &mut dr, &mut gdw)
                .unwrap();
        }
        for i in 0..k {
            close(
                &t.get(&gdx[i]),
                &dxs[i],
                &format!("weighted_sum_backward dx[{i}] k={k}"),
            );
        }
        close(
            &t.get(&gdw),
            &dw,
            &format!("weighted_sum_backward dw k={k}"),
        );
    }
    // concat and split along channels
    let (n, hw, chans) = (2, 5, [3usize, 1, 4]);
    let xs: Vec<Vec<f32>> = chans
        .iter()
        .map(|&c| data(n * c * hw, 30 + c as u64))
        .collect();
    let xr: Vec<&[f32]> = xs.iter().map(|v| &v[..]).collect();
    let total = n * 8 * hw;
    let mut want = vec![0.0; total];
    Cpu.concat_channels(&xr, &chans, n, hw, &mut want).unwrap();
    let xd: Vec<CudaBuf> = xs.iter().map(|v| t.up(v)).collect();
    let xdr: Vec<&CudaBuf> = xd.iter().collect();
    let mut got = t.out(total);
    t.c.concat_channels(&xdr, &chans, n, hw, &mut got).unwrap();
    assert_eq!(t.get(&got), want, "concat_channels");
    let mut outs: Vec<CudaBuf> = chans.iter().map(|&c| t.out(n * c * hw)).collect();
    {
        let mut o: Vec<&mut CudaBuf> = outs.iter_mut().collect();
        t.c.split_channels(&got, &chans, n, hw, &mut o).unwrap();
    }
    for (o, x) in outs.iter().zip(&xs) {
        assert_eq!(&t.get(o), x, "split_channels");
    }
    // strided copies: a permute and a slice written back
    let shape = [2usize, 3, 4];
    let x = data(24, 40);
    for p in [
        StridedCopy::permute(&shape, &[2, 0, 1]),
        StridedCopy::narrow(&shape, 1, 1, 2),
        StridedCopy::unnarrow(&shape, 2, 1, 3),
    ] {
        let src_len = 24.min(x.len());
        let dst_len = 24;
        let mut want = vec![7.0; dst_len];
        Cpu.copy_strided(&p, &x[..src_len], &mut want).unwrap();
        let mut got = t.up(&[7.0; 24]);
        t.c.copy_strided(&p, &t.up(&x[..src_len]), &mut got)
            .unwrap();
        assert_eq!(t.get(&got), want, "{p:?}");
    }
}

#[test]
fn reductions_softmax_cross_entropy_argmax() {
    let Some(t) = t() else { return };
    for shape in [&[3usize, 4, 5][..], &[1, 1000], &[7], &[2, 1, 3]] {
        let n: usize = shape.iter().product();
        let x = data(n, 50);
        let axes: Vec<Option<usize>> = std::iter::once(None)
            .chain((0..shape.len()).map(Some))
            .collect();
        for axis in axes {
            for op in [ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max] {
                let on = match axis {
                    None => 1,
                    Some(a) => n / shape[a],
                };
                let mut want = vec![0.0; on];
                Cpu.reduce(op, &x, shape, axis, &mut want).unwrap();
                let xd = t.up(&x);
                let mut got = t.out(on);
                t.c.reduce(op, &xd, shape, axis, &mut got).unwrap();
                let what = format!("{op:?} {shape:?} axis {axis:?}");
                close(&t.get(&got), &want, &what);
                let dy = data(on, 51);
                let mut dx = vec![0.0; n];
                Cpu.reduce_backward(op, &x, &want, shape, axis, &dy, &mut dx)
                    .unwrap();
                let mut gdx = t.out(n);
                t.c.reduce_backward(op, &xd, &got, shape, axis, &t.up(&dy), &mut gdx)
                    .unwrap();
                close(&t.get(&gdx), &dx, &format!("{what} backward"));
            }
        }
    }
    for (rows, cols) in [(1, 1), (5, 10), (9, 37), (3, 70)] {
        let x = data(rows * cols, 52);
        let dy = data(rows * cols, 53);
        let xd = t.up(&x);
        for op in [SoftmaxOp::Softmax, SoftmaxOp::LogSoftmax] {
            let mut y = vec![0.0; rows * cols];
            Cpu.softmax(op, &x, rows, cols, &mut y).unwrap();
            let mut gy = t.out(rows * cols);
            t.c.softmax(op, &xd, rows, cols, &mut gy).unwrap();
            close(&t.get(&gy), &y, &format!("{op:?} {rows}x{cols}"));
            let mut dx = vec![0.0; rows * cols];
            Cpu.softmax_backward(op, &y, &dy, rows, cols, &mut dx)
                .unwrap();
            let mut gdx = t.out(rows * cols);
            t.c.softmax_backward(op, &gy, &t.up(&dy), rows, cols, &mut gdx)
                .unwrap();
            close(&t.get(&gdx), &dx, &format!("{op:?} backward {rows}x{cols}"));
        }
        let labels: Vec<usize> = (0..rows).map(|r| (r * 7 + 3) % cols).collect();
        let mut loss = [0.0f32];
        Cpu.cross_entropy(&x, &labels, rows, cols, &mut loss)
            .unwrap();
        let mut gl = t.out(1);
        t.c.cross_entropy(&xd, &labels, rows, cols, &mut gl)
            .unwrap();
        close(&t.get(&gl), &loss, "cross_entropy");
        let mut dx = vec![0.0; rows * cols];
        Cpu.cross_entropy_backward(&x, &labels, rows, cols, &[0.7], &mut dx)
            .unwrap();
        let mut gdx = t.out(rows * cols);
        t.c.cross_entropy_backward(&xd, &labels, rows, cols, &t.up(&[0.7]), &mut gdx)
            .unwrap();
        close(&t.get(&gdx), &dx, "cross_entropy_backward");
        let mut am = vec![0.0; rows];
        Cpu.argmax_rows(&x, rows, cols, &mut am).unwrap();
        let mut gam = t.out(rows);
        t.c.argmax_rows(&xd, rows, cols, &mut gam).unwrap();
        assert_eq!(t.get(&gam), am, "argmax_rows");
    }
    // a label out of range is an error, not an out-of-bounds read
    let mut gl = t.out(1);
    let e =
        t.c.cross_entropy(&t.up(&[0.0; 6]), &[0, 3], 2, 3, &mut gl)
            .unwrap_err();
    assert!(e.to_string().contains("label 3"), "{e}");
}

#[test]
fn optimizers_and_clipping() {
    let Some(t) = t() else { return };
    let n = 1000;
    let (w, g, b) = (data(n, 60), data(n, 61), data(n, 62));
    for (first, nesterov, wd, mom) in [
        (true, false, 0.0, 0.9),
        (false, true, 1e-3, 0.9),
        (false, false, 0.0, 0.0),
    ] {
        let p = SgdStep {
            lr: 0.1,
            momentum: mom,
            dampening: 0.1,
            nesterov,
            weight_decay: wd,
            first,
        };
        let (mut cw, mut cb) = (w.clone(), b.clone());
        let has_buf = mom != 0.0;
        Cpu.sgd_step(&p, &mut cw, &g, has_buf.then_some(&mut cb[..]))
            .unwrap();
        let (mut gw, mut gb) = (t.up(&w), t.up(&b));
        t.c.sgd_step(&p, &mut gw, &t.up(&g), has_buf.then_some(&mut gb))
            .unwrap();
        close(&t.get(&gw), &cw, &format!("{p:?}"));
        close(&t.get(&gb), &cb, &format!("{p:?} momentum"));
    }
    let p = AdamStep {
        lr: 0.01,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 1e-4,
        step: 3,
    };
    let v0: Vec<f32> = b.iter().map(|x| x * x).collect();
    let (mut cw, mut cm, mut cv) = (w.clone(), b.clone(), v0.clone());
    Cpu.adam_step(&p, &mut cw, &g, &mut cm, &mut cv).unwrap();
    let (mut gw, mut gm, mut gv) = (t.up(&w), t.up(&b), t.up(&v0));
    t.c.adam_step(&p, &mut gw, &t.up(&g), &mut gm, &mut gv)
        .unwrap();
    close(&t.get(&gw), &cw, "adam w");
    close(&t.get(&gm), &cm, "adam m");
    close(&t.get(&gv), &cv, "adam v");
    // clipping: more buffers than one launch takes, below and above the norm
    for (count, max_norm) in [(3usize, 0.5f32), (20, 1e6), (20, 2.0)] {
        let gs: Vec<Vec<f32>> = (0..count)
            .map(|i| data(10 + 37 * i, 70 + i as u64))
            .collect();
        let mut cg = gs.clone();
        let mut total = [0.0f32];
        {
            let mut r: Vec<&mut [f32]> = cg.iter_mut().map(|v| &mut v[..]).collect();
            Cpu.clip_grad_norm(&mut r, max_norm, &mut total).unwrap();
        }
        let mut dg: Vec<CudaBuf> = gs.iter().map(|v| t.up(v)).collect();
        let mut gt = t.out(1);
        {
            let mut r: Vec<&mut CudaBuf> = dg.iter_mut().collect();
            t.c.clip_grad_norm(&mut r, max_norm, &mut gt).unwrap();
        }
        close(&t.get(&gt), &total, "clip total");
        for (a, b) in dg.iter().zip(&cg) {
            close(
                &t.get(a),
                b,
                &format!("clipped {count} buffers to {max_norm}"),
            );
        }
    }
}

#[test]
fn host_transfers_and_empty_buffers() {
    let Some(t) = t() else { return };
    let x = data(1001, 80);
    assert_eq!(t.get(&t.up(&x)), x);
    let z = t.c.zeros(33).unwrap();
    assert_eq!(t.get(&z), vec![0.0; 33]);
    let e = t.c.zeros(0).unwrap();
    assert!(t.get(&e).is_empty());
    let mut e2 = t.out(0);
    t.c.unary(UnaryOp::Exp, &e, &mut e2).unwrap();
}
