//! Every kernel, thread count and blocking against the naive reference.

use super::reference::sgemm_naive;
use super::*;
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// One test problem with its operands stored with padded leading dimensions.
#[derive(Debug, Clone)]
struct Case {
    ta: bool,
    tb: bool,
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    beta: f32,
    a: Vec<f32>,
    lda: usize,
    b: Vec<f32>,
    ldb: usize,
    c: Vec<f32>,
    ldc: usize,
}

/// Value written into the padding of C (columns `n..ldc`): must survive untouched.
const PAD: f32 = 12345.0;

impl Case {
    #[allow(clippy::too_many_arguments)]
    fn new(
        ta: bool,
        tb: bool,
        m: usize,
        n: usize,
        k: usize,
        alpha: f32,
        beta: f32,
        pads: (usize, usize, usize),
        seed: u64,
    ) -> Case {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (ra, ca) = if ta { (k, m) } else { (m, k) };
        let (rb, cb) = if tb { (n, k) } else { (k, n) };
        let (lda, ldb, ldc) = (ca + pads.0, cb + pads.1, n + pads.2);
        let mut fill = |rows: usize, cols: usize, ld: usize| -> Vec<f32> {
            let mut v = vec![f32::NAN; rows * ld];
            for r in 0..rows {
                for c in 0..cols {
                    v[r * ld + c] = rng.random_range(-1.0f32..1.0);
                }
            }
            v
        };
        let a = fill(ra, ca, lda);
        let b = fill(rb, cb, ldb);
        let mut c = fill(m, n, ldc);
        for r in 0..m {
            for j in 0..ldc {
                if j >= n {
                    c[r * ldc + j] = PAD;
                } else if beta == 0.0 {
                    // beta = 0 must not read C.
                    c[r * ldc + j] = f32::NAN;
                }
            }
        }
        Case {
            ta,
            tb,
            m,
            n,
            k,
            alpha,
            beta,
            a,
            lda,
            b,
            ldb,
            c,
            ldc,
        }
    }

    fn av(&self, i: usize, p: usize) -> f32 {
        if self.ta {
            self.a[p * self.lda + i]
        } else {
            self.a[i * self.lda + p]
        }
    }

    fn bv(&self, p: usize, j: usize) -> f32 {
        if self.tb {
            self.b[j * self.ldb + p]
        } else {
            self.b[p * self.ldb + j]
        }
    }

    fn reference(&self) -> Vec<f32> {
        let mut c = self.c.clone();
        sgemm_naive(
            self.ta, self.tb, self.m, self.n, self.k, self.alpha, &self.a, self.lda, &self.b,
            self.ldb, self.beta, &mut c, self.ldc,
        );
        c
    }

    fn run(&self, cfg: &Config) -> Vec<f32> {
        let mut c = self.c.clone();
        sgemm_config(
            cfg, self.ta, self.tb, self.m, self.n, self.k, self.alpha, &self.a, self.lda, &self.b,
            self.ldb, self.beta, &mut c, self.ldc,
        )
        .expect("valid shapes");
        c
    }

    /// Checks `got` against the reference with a forward error bound that grows with `k`.
    fn check(&self, got: &[f32], want: &[f32], what: &str) -> Result<(), String> {
        let eps = f32::EPSILON as f64;
        for i in 0..self.m {
            for j in 0..self.ldc {
                let idx = i * self.ldc + j;
                if j >= self.n {
                    if got[idx].to_bits() != PAD.to_bits() {
                        return Err(format!("{what}: padding C[{i},{j}] overwritten"));
                    }
                    continue;
                }
                let mut mag = 0.0f64;
                for p in 0..self.k {
                    mag += (self.av(i, p) as f64 * self.bv(p, j) as f64).abs();
                }
                let c0 = if self.beta == 0.0 {
                    0.0
                } else {
                    self.c[idx] as f64
                };
                let scale = (self.alpha as f64).abs() * mag + (self.beta as f64 * c0).abs();
                let tol = 3.0 * (self.k as f64 + 2.0) * eps * scale + 1e-30;
                let (g, w) = (got[idx] as f64, want[idx] as f64);
                if !g.is_finite() || (g - w).abs() > tol {
                    return Err(format!(
                        "{what}: C[{i},{j}] = {g}, reference {w}, tolerance {tol:e} \
                         (m {} n {} k {} ta {} tb {} alpha {} beta {})",
                        self.m, self.n, self.k, self.ta, self.tb, self.alpha, self.beta
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Tiny blocks so that small shapes cross every block boundary (kc not a multiple of anything).
fn tiny_blocks(kernel: Kernel) -> Blocks {
    let uk = micro_kernel(kernel);
    Blocks {
        kc: 7,
        l2_bytes: 1 << 30,
        nb_max: 2 * uk.nr,
        mb: 2 * uk.mr,
        nr: uk.nr,
    }
}

/// Every path: available kernels x {1, 2, 3} threads x {cache-derived, tiny} blocks, with
/// threading forced even for tiny problems.
/// For AVX-512 both with and without the dot-product path of `A * B^T` (forced on for every
/// depth).
fn configs() -> Vec<(String, Config)> {
    let mut out = Vec::new();
    for kernel in Kernel::available() {
        for threads in [1, 2, 3] {
            for tiny in [false, true] {
                let dots: &[bool] = if kernel == Kernel::Avx512 {
                    &[false, true]
                } else {
                    &[false]
                };
                for &dot in dots {
                    out.push((
                        format!("{kernel} threads {threads} tiny-blocks {tiny} dot {dot}"),
                        Config {
                            kernel,
                            threads,
                            blocks: tiny.then(|| tiny_blocks(kernel)),
                            min_flops_per_thread: 1,
                            dot: if dot { DotPath::Always } else { DotPath::Never },
                        },
                    ));
                }
            }
        }
    }
    out
}

fn check_all(case: &Case) -> Result<(), String> {
    let want = case.reference();
    for (name, cfg) in configs() {
        case.check(&case.run(&cfg), &want, &name)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(160))]

    #[test]
    fn all_paths_match_reference(
        ta in any::<bool>(),
        tb in any::<bool>(),
        m in 1usize..=70,
        n in 1usize..=70,
        k in 1usize..=70,
        alpha in prop::sample::select(vec![1.0f32, -0.5, 2.0]),
        beta in prop::sample::select(vec![0.0f32, 1.0, -1.5]),
        pads in (0usize..4, 0usize..4, 0usize..4),
        seed in any::<u64>(),
    ) {
        let case = Case::new(ta, tb, m, n, k, alpha, beta, pads, seed);
        check_all(&case).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn size_one_dimensions(
        ta in any::<bool>(),
        tb in any::<bool>(),
        which in 0usize..3,
        x in 1usize..=40,
        y in 1usize..=40,
        beta in prop::sample::select(vec![0.0f32, 0.5]),
        seed in any::<u64>(),
    ) {
        let (m, n, k) = match which { 0 => (1, x, y), 1 => (x, 1, y), _ => (x, y, 1) };
        let case = Case::new(ta, tb, m, n, k, 1.5, beta, (0, 1, 2), seed);
        check_all(&case).map_err(TestCaseError::fail)?;
    }
}

/// Shapes that cross the real (cache-derived) block sizes: `k` above `kc`, `n` above `nb`,
/// and the conv-like skinny shapes in all three orientations.
#[test]
fn large_shapes_cross_real_blocks() {
    let shapes = [
        (false, false, 70, 600, 1100),
        (true, false, 45, 530, 700),
        (false, true, 37, 301, 1030),
        (true, true, 19, 333, 600),
        // conv forward (NN), weight gradient (NT, depth split), input gradient (TN).
        (false, false, 16, 4100, 144),
        (false, true, 16, 144, 4100),
        (false, true, 13, 150, 3001),
        (true, false, 144, 4100, 16),
    ];
    for (i, &(ta, tb, m, n, k)) in shapes.iter().enumerate() {
        for beta in [0.0, 0.75] {
            let case = Case::new(ta, tb, m, n, k, 0.9, beta, (3, 0, 5), 1000 + i as u64);
            let want = case.reference();
            for kernel in Kernel::available() {
                for threads in [1, 2] {
                    let cfg = Config {
                        kernel,
                        threads,
                        blocks: None,
                        min_flops_per_thread: MIN_FLOPS_PER_THREAD,
                        dot: DotPath::Auto,
                    };
                    let name = format!("{kernel} threads {threads}");
                    case.check(&case.run(&cfg), &want, &name).unwrap();
                }
            }
        }
    }
}

#[test]
fn public_entry_points_match_reference() {
    let case = Case::new(false, true, 33, 65, 17, 1.0, 0.0, (1, 2, 3), 7);
    let want = case.reference();
    let mut c = case.c.clone();
    sgemm(
        case.ta, case.tb, case.m, case.n, case.k, case.alpha, &case.a, case.lda, &case.b, case.ldb,
        case.beta, &mut c, case.ldc,
    );
    case.check(&c, &want, "sgemm").unwrap();
    for kernel in Kernel::available() {
        let mut c = case.c.clone();
        sgemm_with(
            kernel, 2, case.ta, case.tb, case.m, case.n, case.k, case.alpha, &case.a, case.lda,
            &case.b, case.ldb, case.beta, &mut c, case.ldc,
        )
        .unwrap();
        case.check(&c, &want, kernel.name()).unwrap();
    }
}

#[test]
fn zero_depth_scales_c_and_empty_outputs_do_nothing() {
    let mut c = vec![1.0f32, 2.0, 3.0, 4.0];
    sgemm(false, false, 2, 2, 0, 1.0, &[], 0, &[], 2, 0.5, &mut c, 2);
    assert_eq!(c, vec![0.5, 1.0, 1.5, 2.0]);
    let mut c = vec![f32::NAN; 4];
    sgemm(false, false, 2, 2, 0, 1.0, &[], 0, &[], 2, 0.0, &mut c, 2);
    assert_eq!(c, vec![0.0; 4]);
    let mut c = vec![7.0f32; 3];
    sgemm(
        false,
        false,
        0,
        3,
        4,
        1.0,
        &[],
        4,
        &[0.0; 12],
        3,
        0.0,
        &mut c,
        3,
    );
    sgemm(
        false,
        false,
        3,
        0,
        4,
        1.0,
        &[0.0; 12],
        4,
        &[],
        0,
        0.0,
        &mut c,
        0,
    );
    assert_eq!(c, vec![7.0; 3]);
}

#[test]
fn bad_shapes_are_errors() {
    let a = vec![0.0f32; 6];
    let b = vec![0.0f32; 6];
    let mut c = vec![0.0f32; 4];
    // A is 2 x 3 but lda 2 < 3.
    let e = try_sgemm(false, false, 2, 2, 3, 1.0, &a, 2, &b, 2, 0.0, &mut c, 2).unwrap_err();
    assert_eq!(
        e,
        GemmError::LeadingDim {
            what: "lda",
            ld: 2,
            cols: 3
        }
    );
    // B is 3 x 2 with ldb 2: needs 6, has 5.
    let e = try_sgemm(
        false,
        false,
        2,
        2,
        3,
        1.0,
        &a,
        3,
        &b[..5],
        2,
        0.0,
        &mut c,
        2,
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            GemmError::TooShort {
                what: "b",
                needed: 6,
                got: 5,
                ..
            }
        ),
        "{e:?}"
    );
    // C is 2 x 2 with ldc 3: needs 5, has 4.
    let e = try_sgemm(false, false, 2, 2, 3, 1.0, &a, 3, &b, 2, 0.0, &mut c, 3).unwrap_err();
    assert!(
        matches!(
            e,
            GemmError::TooShort {
                what: "c",
                needed: 5,
                got: 4,
                ..
            }
        ),
        "{e:?}"
    );
    // Transposed A is 3 x 2 (k x m), lda 2 is fine.
    try_sgemm(true, false, 2, 2, 3, 1.0, &a, 2, &b, 2, 0.0, &mut c, 2).unwrap();
    assert!(e.to_string().contains("`c` has 4 elements"));
}

#[test]
#[should_panic(expected = "leading dimension lda")]
fn sgemm_panics_with_a_clear_message() {
    let mut c = vec![0.0f32; 4];
    sgemm(
        false, false, 2, 2, 3, 1.0, &[0.0; 6], 2, &[0.0; 6], 2, 0.0, &mut c, 2,
    );
}

#[test]
fn kernel_selection() {
    assert!(Kernel::Scalar.is_available());
    assert!(Kernel::best().is_available());
    assert_eq!(Kernel::available().last(), Some(&Kernel::best()));
    set_kernel(Kernel::Scalar).unwrap();
    assert_eq!(active_kernel(), Kernel::Scalar);
    reset_kernel();
    assert_eq!(active_kernel(), Kernel::best());
    for k in Kernel::ALL {
        assert_eq!(set_kernel(k).is_ok(), k.is_available());
        reset_kernel();
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        assert_eq!(Kernel::best(), Kernel::Avx512);
    }
}

#[test]
fn cache_sizes_and_blocks() {
    assert_eq!(parse_cache_size("32K\n"), Some(32 << 10));
    assert_eq!(parse_cache_size("32M"), Some(32 << 20));
    assert_eq!(parse_cache_size("512"), Some(512));
    assert_eq!(parse_cache_size("x"), None);
    let cs = CacheSizes {
        l1d: 32 << 10,
        l2: 1 << 20,
        l3: 32 << 20,
    };
    let b = Blocks::for_caches(cs, 8, 32);
    // An 8 x kc A panel fills half of L1; a kc x nb B block half of L2.
    assert_eq!(b.kc, 512);
    assert_eq!(b.nb(512), 256);
    assert_eq!(b.nb(16), 8192);
    assert_eq!(b.mb % 8, 0);
    let d = CacheSizes::detect();
    assert!(d.l1d >= 4096 && d.l2 >= d.l1d);
}

#[test]
fn thread_plans_for_conv_shapes() {
    let uk = micro_kernel(Kernel::best());
    let job = |m, n, k| Job {
        m,
        n,
        k,
        alpha: 1.0,
        a: MatPtr {
            ptr: std::ptr::null(),
            rs: 0,
            cs: 0,
        },
        b: MatPtr {
            ptr: std::ptr::null(),
            rs: 0,
            cs: 0,
        },
        beta: 0.0,
        c: std::ptr::null_mut(),
        ldc: n,
    };
    // Forward and input-gradient convolutions: columns; weight gradient: depth.
    assert_eq!(plan(uk, &job(16, 65536, 144), 2), Split::Cols(2));
    assert_eq!(plan(uk, &job(144, 65536, 16), 2), Split::Cols(2));
    assert_eq!(plan(uk, &job(16, 144, 65536), 2), Split::Depth(2));
    assert_eq!(plan(uk, &job(64, 576, 4096), 2), Split::Depth(2));
    assert_eq!(plan(uk, &job(1024, 1024, 1024), 2), Split::Cols(2));
    // Tall and narrow: rows.
    assert_eq!(plan(uk, &job(512, 8, 64), 2), Split::Rows(2));
}

/// The dot-product path peels a head block to align B's rows: check every misalignment, with
/// `ldb` a multiple of 16 (where the peeling applies) and not.
#[test]
fn dot_path_with_misaligned_operands() {
    let (m, n) = (6, 13);
    for k in [512usize, 515] {
        for off in 0..5 {
            let mut rng = ChaCha8Rng::seed_from_u64(off as u64 + k as u64);
            let a: Vec<f32> = (0..m * k + off)
                .map(|_| rng.random_range(-1.0..1.0))
                .collect();
            let b: Vec<f32> = (0..n * k + off)
                .map(|_| rng.random_range(-1.0..1.0))
                .collect();
            let (a, b) = (&a[off..], &b[off..]);
            let mut want = vec![0.0f32; m * n];
            sgemm_naive(false, true, m, n, k, 1.0, a, k, b, k, 0.0, &mut want, n);
            for kernel in Kernel::available() {
                let mut got = vec![f32::NAN; m * n];
                sgemm_with(
                    kernel, 1, false, true, m, n, k, 1.0, a, k, b, k, 0.0, &mut got, n,
                )
                .unwrap();
                for (g, w) in got.iter().zip(&want) {
                    assert!(
                        (g - w).abs() <= 1e-4 * (k as f32).sqrt(),
                        "{kernel} off {off}: {g} vs {w}"
                    );
                }
            }
        }
    }
}
