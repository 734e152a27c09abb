//! `exp`, the logistic sigmoid and `tanh` in plain `f32` arithmetic, so that loops over
//! them vectorise (libm's `expf`/`tanhf` are calls, one element at a time).
//!
//! Each is a definition the backends share: [`UnaryOp::Tanh`](crate::UnaryOp::Tanh),
//! [`UnaryOp::Sigmoid`](crate::UnaryOp::Sigmoid) and the LSTM cell use them. Accuracy
//! (checked over a dense grid against `f64` in this module's tests):
//! - [`exp`]: within 2 ulp of `e^x` for `x` in `[-87.3, 88.7]`; `+inf` above, `0` below
//!   (results that would be subnormal are flushed to zero), NaN for NaN.
//! - [`sigmoid`]: within 3 ulp where the result is at least `1e-30`, and within `1e-30`
//!   absolutely below that.
//! - [`tanh`]: within 5 ulp; exactly odd; `±1` beyond `|x| = 9.1`.
//!
//! How: `e^x = 2^n e^r` with `n = round(x / ln 2)` and `|r| <= ln 2 / 2` (`r` computed
//! with `ln 2` split in two, so the reduction is exact to f32 precision), `e^r` by its
//! Taylor series to degree 7 (the first omitted term is below 2.3e-9 relative), and `2^n`
//! written straight into the exponent bits. `tanh` uses its own Taylor series to degree 13
//! for `|x| < 0.4` (the first omitted term is below 5e-9 relative) and
//! `1 - 2 / (e^{2|x|} + 1)` above, where the subtraction loses at most 1.6 bits.

/// `1.5 * 2^23`: adding it to an `f32` of magnitude below `2^22` rounds to the nearest
/// integer (ties to even), which then sits in the low bits of the sum's mantissa.
const ROUND_MAGIC: f32 = 12_582_912.0;
/// Above this `e^x` overflows `f32`.
const EXP_HI: f32 = 88.722_83;
/// Below this `e^x` is subnormal (under `2^-126`).
const EXP_LO: f32 = -87.336_54;

/// `e^x` (see the module docs for its accuracy).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    // ln 2 = LN2_HI + LN2_LO, LN2_HI with its low 12 mantissa bits zero, so n * LN2_HI is
    // exact for |n| < 2^12.
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let xc = x.clamp(EXP_LO, EXP_HI);
    let shifted = xc * LOG2_E + ROUND_MAGIC;
    let n = shifted - ROUND_MAGIC;
    let r = (xc - n * LN2_HI) - n * LN2_LO;
    // e^r = sum r^k / k!, k <= 7, by Horner.
    let mut p = 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    // n sits in the low bits of `shifted` (whose exponent field is that of 1.5 * 2^23);
    // n + 127 shifted into the exponent field is 2^n. n is in [-126, 128].
    let biased = shifted
        .to_bits()
        .wrapping_sub(ROUND_MAGIC.to_bits())
        .wrapping_add(127);
    let two_n = f32::from_bits(biased.wrapping_shl(23));
    // n = 128 happens only for x just below EXP_HI, where 2^127 * (2 e^r) is the exact
    // form that stays finite.
    let y = if n > 127.5 {
        f32::from_bits(254 << 23) * (p * 2.0)
    } else {
        p * two_n
    };
    if x > EXP_HI {
        f32::INFINITY
    } else if x < EXP_LO {
        0.0
    } else if x.is_nan() {
        x
    } else {
        y
    }
}

/// The logistic sigmoid `1 / (1 + e^-x)` (see the module docs for its accuracy).
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// The hyperbolic tangent (see the module docs for its accuracy).
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    let a = x.abs();
    // Taylor series of tanh, odd terms to x^13.
    let s = a * a;
    let mut p = 21_844.0 / 6_081_075.0;
    p = p * s - 1_382.0 / 155_925.0;
    p = p * s + 62.0 / 2_835.0;
    p = p * s - 17.0 / 315.0;
    p = p * s + 2.0 / 15.0;
    p = p * s - 1.0 / 3.0;
    let small = a + a * s * p;
    let large = 1.0 - 2.0 / (exp(2.0 * a) + 1.0);
    let t = if a < 0.4 { small } else { large };
    // copysign keeps tanh odd, -0.0 included, and passes NaN through (NaN < 0.4 is false,
    // and 1 - 2 / (NaN + 1) is NaN).
    t.copysign(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Distance in units in the last place of `want` (as an f32).
    fn ulps(got: f32, want: f64) -> f64 {
        let w = want as f32;
        if got == w {
            return 0.0;
        }
        let ulp = (f32::from_bits(w.abs().to_bits() + 1) - w.abs()) as f64;
        (got as f64 - want).abs() / ulp
    }

    /// Every f32 in `[lo, hi]` at a stride that visits about `count` of them, plus the ends.
    fn grid(lo: f32, hi: f32, count: u32) -> impl Iterator<Item = f32> {
        let step = (hi - lo) / count as f32;
        (0..=count)
            .map(move |i| lo + step * i as f32)
            .chain([lo, hi])
    }

    #[test]
    fn exp_is_within_two_ulp_over_its_range() {
        let mut worst = (0.0, 0.0f32);
        for x in grid(EXP_LO, EXP_HI, 2_000_000).chain(grid(-1.0, 1.0, 200_000)) {
            let u = ulps(exp(x), (x as f64).exp());
            if u > worst.0 {
                worst = (u, x);
            }
        }
        assert!(worst.0 <= 2.0, "exp: {} ulp at x = {}", worst.0, worst.1);
    }

    #[test]
    fn exp_limits_and_nan() {
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(89.0), f32::INFINITY);
        assert_eq!(exp(f32::INFINITY), f32::INFINITY);
        assert_eq!(exp(-88.0), 0.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert!(exp(f32::NAN).is_nan());
        assert!(exp(EXP_HI).is_finite());
        assert!(exp(EXP_LO) >= f32::MIN_POSITIVE);
    }

    #[test]
    fn sigmoid_is_accurate() {
        let mut worst = (0.0, 0.0f32);
        for x in grid(-90.0, 90.0, 2_000_000) {
            let want = 1.0 / (1.0 + (-(x as f64)).exp());
            let got = sigmoid(x);
            let u = if want >= 1e-30 {
                ulps(got, want)
            } else {
                assert!((got as f64 - want).abs() <= 1e-30, "sigmoid({x}) = {got}");
                0.0
            };
            if u > worst.0 {
                worst = (u, x);
            }
        }
        assert!(
            worst.0 <= 3.0,
            "sigmoid: {} ulp at x = {}",
            worst.0,
            worst.1
        );
        assert_eq!(sigmoid(f32::INFINITY), 1.0);
        assert_eq!(sigmoid(f32::NEG_INFINITY), 0.0);
        assert!(sigmoid(f32::NAN).is_nan());
    }

    #[test]
    fn tanh_is_accurate_and_odd() {
        let mut worst = (0.0, 0.0f32);
        for x in grid(-12.0, 12.0, 2_000_000).chain(grid(-0.5, 0.5, 200_000)) {
            let got = tanh(x);
            assert_eq!(got.to_bits(), (-tanh(-x)).to_bits(), "tanh not odd at {x}");
            let u = ulps(got, (x as f64).tanh());
            if u > worst.0 {
                worst = (u, x);
            }
        }
        assert!(worst.0 <= 5.0, "tanh: {} ulp at x = {}", worst.0, worst.1);
        for tiny in [1e-30f32, 1e-10, 1e-5, f32::MIN_POSITIVE] {
            assert_eq!(tanh(tiny), tiny);
        }
        assert_eq!(tanh(9.2), 1.0);
        assert_eq!(tanh(f32::INFINITY), 1.0);
        assert_eq!(tanh(f32::NEG_INFINITY), -1.0);
        assert!(tanh(f32::NAN).is_nan());
        assert_eq!(tanh(-0.0).to_bits(), (-0.0f32).to_bits());
    }
}
