//! Random fills from a seeded [`ChaCha8Rng`] and dropout masks.
//!
//! Fills are generated on the host in element order, so a given generator state produces the
//! same numbers on every backend.

#[cfg(feature = "cuda")]
pub(crate) mod cuda_kernel;

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

/// A distribution for [`Backend::fill_random`](crate::Backend::fill_random).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RandomDist {
    /// Uniform on `[low, high)`.
    Uniform {
        /// Lower bound (inclusive).
        low: f32,
        /// Upper bound (exclusive).
        high: f32,
    },
    /// Normal with the given mean and standard deviation.
    Normal {
        /// Mean.
        mean: f32,
        /// Standard deviation (>= 0).
        std: f32,
    },
    /// Standard Gumbel (location 0, scale 1): `-ln(-ln(u))`, `u` uniform on `(0, 1)`, as GDAS
    /// uses for Gumbel-softmax.
    Gumbel,
}

/// Fills `out` from `dist`. Parameters are validated by the caller.
pub(crate) fn fill(dist: RandomDist, rng: &mut ChaCha8Rng, out: &mut [f32]) {
    match dist {
        RandomDist::Uniform { low, high } => {
            for v in out.iter_mut() {
                let u: f32 = rng.random();
                *v = low + (high - low) * u;
                if *v >= high {
                    *v = low;
                }
            }
        }
        RandomDist::Normal { mean, std } => {
            for v in out.iter_mut() {
                let z: f32 = StandardNormal.sample(rng);
                *v = mean + std * z;
            }
        }
        RandomDist::Gumbel => {
            for v in out.iter_mut() {
                // u in (0, 1): avoid ln(0)
                let u: f64 = loop {
                    let u: f64 = rng.random();
                    if u > 0.0 {
                        break u;
                    }
                };
                *v = -(-(u.ln())).ln() as f32;
            }
        }
    }
}

/// `out[i] = 0` with probability `p`, else `1 / (1 - p)` (inverted dropout; `p == 1` gives 0).
pub(crate) fn dropout_mask(p: f32, rng: &mut ChaCha8Rng, out: &mut [f32]) {
    let keep = if p < 1.0 { 1.0 / (1.0 - p) } else { 0.0 };
    for v in out.iter_mut() {
        let u: f32 = rng.random();
        *v = if u < p { 0.0 } else { keep };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Backend, Cpu};
    use rand::SeedableRng;

    fn moments(v: &[f32]) -> (f64, f64) {
        let n = v.len() as f64;
        let m = v.iter().map(|&x| x as f64).sum::<f64>() / n;
        let var = v.iter().map(|&x| (x as f64 - m).powi(2)).sum::<f64>() / n;
        (m, var)
    }

    #[test]
    fn fills_have_the_right_moments_and_are_seeded() {
        let n = 200_000;
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut v = vec![0.0; n];
        Cpu.fill_random(
            RandomDist::Uniform {
                low: -1.0,
                high: 3.0,
            },
            &mut rng,
            &mut v,
        )
        .unwrap();
        let (m, var) = moments(&v);
        assert!(
            (m - 1.0).abs() < 0.02 && (var - 16.0 / 12.0).abs() < 0.02,
            "{m} {var}"
        );
        assert!(v.iter().all(|&x| (-1.0..3.0).contains(&x)));
        Cpu.fill_random(
            RandomDist::Normal {
                mean: 2.0,
                std: 0.5,
            },
            &mut rng,
            &mut v,
        )
        .unwrap();
        let (m, var) = moments(&v);
        assert!(
            (m - 2.0).abs() < 0.01 && (var - 0.25).abs() < 0.01,
            "{m} {var}"
        );
        Cpu.fill_random(RandomDist::Gumbel, &mut rng, &mut v)
            .unwrap();
        let (m, var) = moments(&v);
        // Gumbel(0,1): mean = Euler-Mascheroni, variance = pi^2/6
        assert!(
            (m - 0.5772).abs() < 0.02 && (var - 1.6449).abs() < 0.05,
            "{m} {var}"
        );

        let mut a = vec![0.0; 100];
        let mut b = vec![0.0; 100];
        Cpu.fill_random(
            RandomDist::Gumbel,
            &mut ChaCha8Rng::seed_from_u64(3),
            &mut a,
        )
        .unwrap();
        Cpu.fill_random(
            RandomDist::Gumbel,
            &mut ChaCha8Rng::seed_from_u64(3),
            &mut b,
        )
        .unwrap();
        assert_eq!(a, b);
        Cpu.fill_random(
            RandomDist::Gumbel,
            &mut ChaCha8Rng::seed_from_u64(4),
            &mut b,
        )
        .unwrap();
        assert_ne!(a, b);

        assert!(
            Cpu.fill_random(
                RandomDist::Uniform {
                    low: 1.0,
                    high: 1.0
                },
                &mut rng,
                &mut v
            )
            .is_err()
        );
        assert!(
            Cpu.fill_random(
                RandomDist::Normal {
                    mean: 0.0,
                    std: -1.0
                },
                &mut rng,
                &mut v
            )
            .is_err()
        );
    }

    #[test]
    fn dropout_mask_keeps_expectation() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut m = vec![0.0; 100_000];
        Cpu.dropout_mask(0.3, &mut rng, &mut m).unwrap();
        let zeros = m.iter().filter(|&&v| v == 0.0).count() as f64 / m.len() as f64;
        assert!((zeros - 0.3).abs() < 0.01);
        assert!(m.iter().all(|&v| v == 0.0 || (v - 1.0 / 0.7).abs() < 1e-6));
        let (mean, _) = moments(&m);
        assert!((mean - 1.0).abs() < 0.02);
        Cpu.dropout_mask(0.0, &mut rng, &mut m).unwrap();
        assert!(m.iter().all(|&v| v == 1.0));
        assert!(Cpu.dropout_mask(1.5, &mut rng, &mut m).is_err());
        assert!(Cpu.dropout_mask(f32::NAN, &mut rng, &mut m).is_err());
    }
}
