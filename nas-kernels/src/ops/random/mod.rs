//! Counter-based random fills and dropout masks: the same numbers on every backend.
//!
//! A fill is a pure function of a 64-bit `seed` and the element index, so a backend can compute
//! every element independently (one GPU thread per four elements) and still produce exactly the
//! values the CPU produces. The generator is Philox4x32-10 (Salmon et al., "Parallel random
//! numbers: as easy as 1, 2, 3", SC 2011), the generator cuRAND and PyTorch's CUDA backend use.
//!
//! The layout every backend follows (the CUDA kernels mirror [`philox4x32_10`] and [`sample`]):
//! - key `k = [seed as u32, (seed >> 32) as u32]`;
//! - element `i` reads word `i % 4` of the block `philox4x32_10([b as u32, (b >> 32) as u32, 0,
//!   0], k)` with `b = i / 4`;
//! - a word `x` becomes `u = (x >> 8) * 2^-24` in `[0, 1)` (24 bits: exact in `f32`);
//! - **uniform** `[low, high)`: `low + (high - low) * u` (mapped back to `low` if rounding
//!   reaches `high`);
//! - **normal**: Box-Muller over the word pairs (0, 1) and (2, 3) of a block:
//!   `u1 = ((x_even >> 8) + 1) * 2^-24` in `(0, 1]`, `u2 = (x_odd >> 8) * 2^-24`,
//!   `r = sqrt(-2 ln u1)`; the even element is `mean + std * r * cos(2 pi u2)`, the odd one
//!   `mean + std * r * sin(2 pi u2)`;
//! - **Gumbel**: `-ln(-ln(u'))` with `u' = ((x >> 8) + 0.5) * 2^-24` in `(0, 1)`;
//! - **dropout keep-mask**: `1 / (1 - p)` where `u < 1 - p`, else `0`.
//!
//! Uniform and dropout values are bit-identical across backends; normal and Gumbel values go
//! through `ln`, `sqrt`, `sin` and `cos`, which device math libraries may round differently in
//! the last place.
//!
//! [`Tensor`](https://docs.rs/nas-tensor) constructors draw one `u64` seed per tensor from the
//! caller's host generator, so a host seed still decides every value.

#[cfg(feature = "cuda")]
pub(crate) mod cuda_kernel;

use crate::error::{KernelError, Result};
use crate::threads;

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

impl RandomDist {
    /// Checks the parameters: uniform needs finite `low < high`, normal a finite mean and a
    /// finite `std >= 0`.
    pub fn validate(&self) -> Result<()> {
        match *self {
            RandomDist::Uniform { low, high }
                if low.partial_cmp(&high) != Some(std::cmp::Ordering::Less)
                    || !low.is_finite()
                    || !high.is_finite() =>
            {
                Err(KernelError::param(
                    "fill_random",
                    format!("uniform needs finite low < high, got [{low}, {high})"),
                ))
            }
            RandomDist::Normal { mean, std }
                if !(std >= 0.0 && std.is_finite() && mean.is_finite()) =>
            {
                Err(KernelError::param(
                    "fill_random",
                    format!("normal needs finite mean and std >= 0, got {mean}, {std}"),
                ))
            }
            _ => Ok(()),
        }
    }
}

/// Checks a dropout probability: `p` in `[0, 1]`.
pub fn validate_dropout(p: f32) -> Result<()> {
    if (0.0..=1.0).contains(&p) {
        Ok(())
    } else {
        Err(KernelError::param(
            "dropout_mask",
            format!("p must be in [0, 1], got {p}"),
        ))
    }
}

const M0: u32 = 0xD251_1F53;
const M1: u32 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;

#[inline(always)]
fn mulhilo(a: u32, b: u32) -> (u32, u32) {
    let p = u64::from(a) * u64::from(b);
    ((p >> 32) as u32, p as u32)
}

/// The Philox4x32-10 block function: four random words from a 128-bit counter and a 64-bit
/// key.
#[inline]
pub fn philox4x32_10(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let mut c = counter;
    let mut k = key;
    for round in 0..10 {
        let (hi0, lo0) = mulhilo(M0, c[0]);
        let (hi1, lo1) = mulhilo(M1, c[2]);
        c = [hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0];
        if round < 9 {
            k = [k[0].wrapping_add(W0), k[1].wrapping_add(W1)];
        }
    }
    c
}

/// The four words of block `b` for `seed`.
#[inline]
pub fn block(seed: u64, b: u64) -> [u32; 4] {
    philox4x32_10(
        [b as u32, (b >> 32) as u32, 0, 0],
        [seed as u32, (seed >> 32) as u32],
    )
}

const TWO_POW_M24: f32 = 1.0 / 16_777_216.0;

#[inline(always)]
fn unit(x: u32) -> f32 {
    (x >> 8) as f32 * TWO_POW_M24
}

/// The four samples of block `b` (elements `4b .. 4b + 4`) of `dist` for `seed`.
#[inline]
pub fn sample(dist: RandomDist, seed: u64, b: u64) -> [f32; 4] {
    let x = block(seed, b);
    match dist {
        RandomDist::Uniform { low, high } => x.map(|x| {
            let v = low + (high - low) * unit(x);
            if v >= high { low } else { v }
        }),
        RandomDist::Normal { mean, std } => {
            let mut out = [0.0; 4];
            for p in 0..2 {
                let u1 = ((x[2 * p] >> 8) + 1) as f32 * TWO_POW_M24;
                let u2 = unit(x[2 * p + 1]);
                let r = (-2.0 * u1.ln()).sqrt();
                let (s, c) = (std::f32::consts::TAU * u2).sin_cos();
                out[2 * p] = mean + std * r * c;
                out[2 * p + 1] = mean + std * r * s;
            }
            out
        }
        RandomDist::Gumbel => x.map(|x| {
            let u = ((x >> 8) as f32 + 0.5) * TWO_POW_M24;
            -(-u.ln()).ln()
        }),
    }
}

/// Fills `out` with `dist` for `seed`: element `i` gets word `i % 4` of block `i / 4`.
/// Parameters are validated by the caller.
pub(crate) fn fill(dist: RandomDist, seed: u64, out: &mut [f32]) {
    for_blocks(out, |b, quad| {
        let s = sample(dist, seed, b);
        quad.copy_from_slice(&s[..quad.len()]);
    });
}

/// `out[i] = 1 / (1 - p)` where element `i`'s uniform is below `1 - p`, else `0` (inverted
/// dropout; `p == 1` gives all zeros).
pub(crate) fn dropout_mask(p: f32, seed: u64, out: &mut [f32]) {
    let keep = 1.0 - p;
    let scale = if p < 1.0 { 1.0 / keep } else { 0.0 };
    for_blocks(out, |b, quad| {
        for (v, &x) in quad.iter_mut().zip(&block(seed, b)) {
            *v = if unit(x) < keep { scale } else { 0.0 };
        }
    });
}

/// Runs `f(b, elements 4b..4b+4 of out)` for every block, over threads for large fills.
fn for_blocks(out: &mut [f32], f: impl Fn(u64, &mut [f32]) + Sync) {
    // A multiple of 4, so every piece starts on a block boundary.
    const CHUNK: usize = 1 << 14;
    let run = |ci: usize, piece: &mut [f32]| {
        let base = (ci * CHUNK / 4) as u64;
        for (j, quad) in piece.chunks_mut(4).enumerate() {
            f(base + j as u64, quad);
        }
    };
    if out.len() <= CHUNK {
        run(0, out);
    } else {
        threads::parallel_chunks_mut(out, CHUNK, run);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Backend, Cpu};

    fn moments(v: &[f32]) -> (f64, f64) {
        let n = v.len() as f64;
        let m = v.iter().map(|&x| x as f64).sum::<f64>() / n;
        let var = v.iter().map(|&x| (x as f64 - m).powi(2)).sum::<f64>() / n;
        (m, var)
    }

    #[test]
    fn philox_matches_the_random123_known_answers() {
        // Random123's kat_vectors for philox4x32_10 (Salmon et al. 2011).
        assert_eq!(
            philox4x32_10([0; 4], [0; 2]),
            [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8]
        );
        assert_eq!(
            philox4x32_10([u32::MAX; 4], [u32::MAX; 2]),
            [0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd]
        );
        assert_eq!(
            philox4x32_10(
                [0x243f_6a88, 0x85a3_08d3, 0x1319_8a2e, 0x0370_7344],
                [0xa409_3822, 0x299f_31d0]
            ),
            [0xd16c_fe09, 0x94fd_cceb, 0x5001_e420, 0x2412_6ea1]
        );
    }

    #[test]
    fn element_i_is_word_i_mod_4_of_block_i_div_4_whatever_the_length() {
        let dist = RandomDist::Uniform {
            low: 0.0,
            high: 1.0,
        };
        // Longer than one thread piece, and not a multiple of 4.
        let n = (1 << 15) + 7;
        let mut v = vec![f32::NAN; n];
        Cpu.fill_random(dist, 42, &mut v).unwrap();
        for i in [0, 1, 3, 4, 5, 16_383, 16_384, 16_385, n - 1] {
            let b = block(42, (i / 4) as u64);
            assert_eq!(v[i], (b[i % 4] >> 8) as f32 / 16_777_216.0, "element {i}");
        }
        // A prefix is the same whatever the length (counter-based: no stream state).
        let mut short = vec![f32::NAN; 10];
        Cpu.fill_random(dist, 42, &mut short).unwrap();
        assert_eq!(short[..], v[..10]);
    }

    #[test]
    fn fills_have_the_right_moments_and_are_seeded() {
        let n = 200_000;
        let mut v = vec![0.0; n];
        let uniform = RandomDist::Uniform {
            low: -1.0,
            high: 3.0,
        };
        Cpu.fill_random(uniform, 7, &mut v).unwrap();
        let (m, var) = moments(&v);
        assert!(
            (m - 1.0).abs() < 0.02 && (var - 16.0 / 12.0).abs() < 0.02,
            "{m} {var}"
        );
        assert!(v.iter().all(|&x| (-1.0..3.0).contains(&x)));
        let normal = RandomDist::Normal {
            mean: 2.0,
            std: 0.5,
        };
        Cpu.fill_random(normal, 8, &mut v).unwrap();
        let (m, var) = moments(&v);
        assert!(
            (m - 2.0).abs() < 0.01 && (var - 0.25).abs() < 0.01,
            "{m} {var}"
        );
        // Tails: a standard normal exceeds 3 sigma with probability 0.0027.
        let tail = v.iter().filter(|&&x| (x - 2.0).abs() > 1.5).count() as f64 / n as f64;
        assert!((tail - 0.0027).abs() < 0.001, "{tail}");
        Cpu.fill_random(RandomDist::Gumbel, 9, &mut v).unwrap();
        let (m, var) = moments(&v);
        // Gumbel(0,1): mean = Euler-Mascheroni, variance = pi^2/6
        assert!(
            (m - 0.5772).abs() < 0.02 && (var - 1.6449).abs() < 0.05,
            "{m} {var}"
        );
        assert!(v.iter().all(|x| x.is_finite()));

        let mut a = vec![0.0; 100];
        let mut b = vec![0.0; 100];
        Cpu.fill_random(RandomDist::Gumbel, 3, &mut a).unwrap();
        Cpu.fill_random(RandomDist::Gumbel, 3, &mut b).unwrap();
        assert_eq!(a, b);
        Cpu.fill_random(RandomDist::Gumbel, 4, &mut b).unwrap();
        assert_ne!(a, b);
        // Seeds differing only in the high word differ too (both key words are used).
        Cpu.fill_random(RandomDist::Gumbel, 3 | (1 << 40), &mut b)
            .unwrap();
        assert_ne!(a, b);

        let bad_uniform = RandomDist::Uniform {
            low: 1.0,
            high: 1.0,
        };
        assert!(Cpu.fill_random(bad_uniform, 0, &mut v).is_err());
        let bad_normal = RandomDist::Normal {
            mean: 0.0,
            std: -1.0,
        };
        assert!(Cpu.fill_random(bad_normal, 0, &mut v).is_err());
    }

    #[test]
    fn dropout_mask_keeps_expectation() {
        let mut m = vec![0.0; 100_000];
        Cpu.dropout_mask(0.3, 1, &mut m).unwrap();
        let zeros = m.iter().filter(|&&v| v == 0.0).count() as f64 / m.len() as f64;
        assert!((zeros - 0.3).abs() < 0.01);
        assert!(m.iter().all(|&v| v == 0.0 || (v - 1.0 / 0.7).abs() < 1e-6));
        let (mean, _) = moments(&m);
        assert!((mean - 1.0).abs() < 0.02);
        // The kept elements are those whose uniform is below 1 - p.
        let mut u = vec![0.0; 100_000];
        let unit = RandomDist::Uniform {
            low: 0.0,
            high: 1.0,
        };
        Cpu.fill_random(unit, 1, &mut u).unwrap();
        assert!(m.iter().zip(&u).all(|(&m, &u)| (m != 0.0) == (u < 0.7)));
        Cpu.dropout_mask(0.0, 2, &mut m).unwrap();
        assert!(m.iter().all(|&v| v == 1.0));
        Cpu.dropout_mask(1.0, 2, &mut m).unwrap();
        assert!(m.iter().all(|&v| v == 0.0));
        assert!(Cpu.dropout_mask(1.5, 2, &mut m).is_err());
        assert!(Cpu.dropout_mask(f32::NAN, 2, &mut m).is_err());
    }
}
