//! Launches of `kernel.cu` (counter-based random fills) on the CUDA backend.

use crate::cuda::{Cuda, CudaBuf, Launch, Module};
use crate::error::Result;

/// What [`fill`] draws.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Draw {
    /// Uniform on `[low, high)`.
    Uniform(f32, f32),
    /// Normal with mean and standard deviation.
    Normal(f32, f32),
    /// Standard Gumbel.
    Gumbel,
    /// Inverted-dropout mask with drop probability `p`.
    Dropout(f32),
}

/// Fills `out` with Philox4x32-10 draws for `seed` (see `kernel.cu`).
pub(crate) fn fill(c: &Cuda, draw: Draw, seed: u64, out: &CudaBuf) -> Result<()> {
    let n = out.len();
    if n == 0 {
        return Ok(());
    }
    let (dist, a, b) = match draw {
        Draw::Uniform(lo, hi) => (0, lo, hi),
        Draw::Normal(mean, std) => (1, mean, std),
        Draw::Gumbel => (2, 0.0, 0.0),
        Draw::Dropout(p) => (3, p, 0.0),
    };
    Launch::new(Module::Random, "rn_fill")
        .over(n.div_ceil(4))
        .buf(out)
        .int(n)
        .u32(seed as u32)
        .u32((seed >> 32) as u32)
        .i32(dist)
        .f32(a)
        .f32(b)
        .run(c)
}

/// The Philox4x32-10 block of `counter` under `key` (the host mirror of `kernel.cu`'s
/// `rn_philox`, for the tests).
#[cfg(all(test, feature = "cuda-emu"))]
pub(crate) fn philox(mut c: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let (mut k0, mut k1) = (key[0], key[1]);
    for _ in 0..10 {
        let p0 = 0xD251_1F53u64 * c[0] as u64;
        let p1 = 0xCD9E_8D57u64 * c[2] as u64;
        let (hi0, lo0) = ((p0 >> 32) as u32, p0 as u32);
        let (hi1, lo1) = ((p1 >> 32) as u32, p1 as u32);
        c = [hi1 ^ c[1] ^ k0, lo1, hi0 ^ c[3] ^ k1, lo0];
        k0 = k0.wrapping_add(0x9E37_79B9);
        k1 = k1.wrapping_add(0xBB67_AE85);
    }
    c
}

#[cfg(all(test, feature = "cuda-emu"))]
mod tests {
    use super::*;
    use crate::Backend;

    /// The specification, on the host: element `i` is word `i % 4` of the block of counter
    /// `i / 4` under the key `(seed low, seed high)`.
    fn want(draw: Draw, seed: u64, n: usize) -> Vec<f32> {
        let key = [seed as u32, (seed >> 32) as u32];
        let unit = |x: u32| (x >> 8) as f32 * (1.0 / 16_777_216.0);
        (0..n)
            .map(|i| {
                let q = (i / 4) as u64;
                let w = philox([q as u32, (q >> 32) as u32, 0, 0], key);
                let x = w[i % 4];
                match draw {
                    Draw::Uniform(lo, hi) => lo + (hi - lo) * unit(x),
                    Draw::Dropout(p) => {
                        if unit(x) < 1.0 - p {
                            1.0 / (1.0 - p)
                        } else {
                            0.0
                        }
                    }
                    Draw::Gumbel => {
                        let u = ((x >> 8) as f64 + 0.5) / 16_777_216.0;
                        -(-(u.ln())).ln() as f32
                    }
                    Draw::Normal(mean, std) => {
                        let (e, o) = (w[(i % 4) & !1], w[(i % 4) | 1]);
                        let u1 = ((e >> 8) as f64 + 1.0) / 16_777_216.0;
                        let u2 = (o >> 8) as f64 / 16_777_216.0;
                        let r = (-2.0 * u1.ln()).sqrt();
                        let t = std::f64::consts::TAU * u2;
                        let z = if i % 2 == 0 { r * t.cos() } else { r * t.sin() };
                        (mean as f64 + std as f64 * z) as f32
                    }
                }
            })
            .collect()
    }

    #[test]
    fn philox_matches_the_published_known_answers() {
        // Random123's kat_vectors for philox4x32_10
        assert_eq!(
            philox([0; 4], [0; 2]),
            [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8]
        );
        assert_eq!(
            philox([u32::MAX; 4], [u32::MAX; 2]),
            [0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd]
        );
    }

    #[test]
    fn emulated_fills_follow_the_specification() {
        let c = Cuda::emulated();
        for (draw, seed) in [
            (Draw::Uniform(-2.0, 3.0), 7u64),
            (Draw::Dropout(0.3), 1 << 40 | 9),
            (Draw::Gumbel, 11),
            (Draw::Normal(1.0, 2.0), u64::MAX),
        ] {
            for n in [1usize, 5, 1030] {
                let out = c.alloc(n).unwrap();
                fill(&c, draw, seed, &out).unwrap();
                let got = c.to_vec(&out).unwrap();
                let exp = want(draw, seed, n);
                for (i, (g, e)) in got.iter().zip(&exp).enumerate() {
                    let tol = match draw {
                        Draw::Uniform(..) | Draw::Dropout(_) => 0.0,
                        _ => 4.0 * f32::EPSILON * e.abs().max(1.0),
                    };
                    assert!((g - e).abs() <= tol, "{draw:?} n={n} i={i}: {g} vs {e}");
                }
            }
        }
    }
}
