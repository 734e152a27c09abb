//! Elementwise ops: unary maps, broadcasting binary ops, `axpy`, DARTS' weighted sum of K
//! tensors, and channel concat/split for NCHW tensors.
//!
//! The scalar definitions in [`UnaryOp::apply`], [`UnaryOp::grad`] and [`BinaryOp::apply`] are
//! the meaning of each op; every backend must match them.

pub(crate) mod cpu_kernel;
#[cfg(feature = "cuda")]
pub(crate) mod cuda_kernel;

/// A unary elementwise op `y = f(x)`.
///
/// Its backward ([`Backend::unary_backward`](crate::Backend::unary_backward)) computes
/// `dx = dy * f'(x)`, using whichever of `x` and `y` is cheaper (see [`UnaryOp::grad`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum UnaryOp {
    /// `max(x, 0)`; derivative 1 for `x > 0`, else 0.
    Relu,
    /// `-x`.
    Neg,
    /// `e^x`.
    Exp,
    /// Natural logarithm.
    Log,
    /// Square root.
    Sqrt,
    /// `x * x`.
    Square,
    /// `|x|`; derivative `sign(x)` (0 at 0).
    Abs,
    /// Hyperbolic tangent ([`math::tanh`](crate::math::tanh)).
    Tanh,
    /// Logistic sigmoid `1 / (1 + e^-x)` ([`math::sigmoid`](crate::math::sigmoid)).
    Sigmoid,
    /// `1 / x`.
    Recip,
    /// `a * x`.
    Scale(f32),
    /// `x + a`.
    AddScalar(f32),
}

impl UnaryOp {
    /// `f(x)`: the definition of the op.
    #[inline(always)]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            UnaryOp::Relu => x.max(0.0),
            UnaryOp::Neg => -x,
            UnaryOp::Exp => x.exp(),
            UnaryOp::Log => x.ln(),
            UnaryOp::Sqrt => x.sqrt(),
            UnaryOp::Square => x * x,
            UnaryOp::Abs => x.abs(),
            UnaryOp::Tanh => crate::math::tanh(x),
            UnaryOp::Sigmoid => crate::math::sigmoid(x),
            UnaryOp::Recip => 1.0 / x,
            UnaryOp::Scale(a) => a * x,
            UnaryOp::AddScalar(a) => x + a,
        }
    }

    /// `dy * f'(x)` given the input `x`, the output `y = f(x)` and the upstream gradient `dy`.
    #[inline(always)]
    pub fn grad(self, x: f32, y: f32, dy: f32) -> f32 {
        match self {
            UnaryOp::Relu => {
                if x > 0.0 {
                    dy
                } else {
                    0.0
                }
            }
            UnaryOp::Neg => -dy,
            UnaryOp::Exp => dy * y,
            UnaryOp::Log => dy / x,
            UnaryOp::Sqrt => dy * 0.5 / y,
            UnaryOp::Square => dy * 2.0 * x,
            UnaryOp::Abs => {
                if x > 0.0 {
                    dy
                } else if x < 0.0 {
                    -dy
                } else {
                    0.0
                }
            }
            UnaryOp::Tanh => dy * (1.0 - y * y),
            UnaryOp::Sigmoid => dy * y * (1.0 - y),
            UnaryOp::Recip => -dy * y * y,
            UnaryOp::Scale(a) => dy * a,
            UnaryOp::AddScalar(_) => dy,
        }
    }
}

/// A binary elementwise op `out = a ∘ b` with numpy broadcasting.
///
/// Gradients are composed by the caller from [`BinaryOp`]s and
/// [`Backend::sum_to_shape`](crate::Backend::sum_to_shape) (which undoes broadcasting).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    /// `a + b`.
    Add,
    /// `a - b`.
    Sub,
    /// `a * b`.
    Mul,
    /// `a / b`.
    Div,
    /// `max(a, b)`.
    Maximum,
    /// `min(a, b)`.
    Minimum,
}

impl BinaryOp {
    /// `a ∘ b`: the definition of the op.
    #[inline(always)]
    pub fn apply(self, a: f32, b: f32) -> f32 {
        match self {
            BinaryOp::Add => a + b,
            BinaryOp::Sub => a - b,
            BinaryOp::Mul => a * b,
            BinaryOp::Div => a / b,
            BinaryOp::Maximum => a.max(b),
            BinaryOp::Minimum => a.min(b),
        }
    }
}

/// The numpy broadcast of two shapes (right-aligned; each pair of dims equal or one of them 1).
pub fn broadcast_shape(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let r = a.len().max(b.len());
    let mut out = vec![0; r];
    for i in 0..r {
        let da = if i + a.len() >= r {
            a[i + a.len() - r]
        } else {
            1
        };
        let db = if i + b.len() >= r {
            b[i + b.len() - r]
        } else {
            1
        };
        out[i] = if da == db {
            da
        } else if da == 1 {
            db
        } else if db == 1 {
            da
        } else {
            return None;
        };
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Backend, Cpu, KernelError};
    use proptest::prelude::*;

    fn idx_of(shape: &[usize], mut flat: usize) -> Vec<usize> {
        let mut ix = vec![0; shape.len()];
        for d in (0..shape.len()).rev() {
            ix[d] = flat % shape[d];
            flat /= shape[d];
        }
        ix
    }

    /// Naive broadcast gather: the element of `x` (shape `xs`) seen at index `ix` of a shape of
    /// rank `ix.len()`.
    fn gather(x: &[f32], xs: &[usize], ix: &[usize]) -> f32 {
        let off = ix.len() - xs.len();
        let mut flat = 0;
        for d in 0..xs.len() {
            let i = if xs[d] == 1 { 0 } else { ix[d + off] };
            flat = flat * xs[d] + i;
        }
        x[flat]
    }

    fn shape_pair() -> impl Strategy<Value = (Vec<usize>, Vec<usize>)> {
        prop::collection::vec((1usize..5, 0u8..4), 0..5).prop_map(|dims| {
            let full: Vec<usize> = dims.iter().map(|d| d.0).collect();
            let a: Vec<usize> = dims
                .iter()
                .map(|&(d, m)| if m == 1 { 1 } else { d })
                .collect();
            let b: Vec<usize> = dims
                .iter()
                .map(|&(d, m)| if m == 2 { 1 } else { d })
                .collect();
            // drop some leading dims of b
            let cut = dims.first().map_or(0, |d| (d.1 == 3) as usize);
            let _ = full;
            (a, b[cut.min(b.len())..].to_vec())
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        #[test]
        fn binary_matches_naive_broadcast((sa, sb) in shape_pair(), seed in 0u64..1000) {
            let na: usize = sa.iter().product();
            let nb: usize = sb.iter().product();
            let a: Vec<f32> = (0..na).map(|i| ((i as u64 * 7 + seed) % 13) as f32 - 6.0).collect();
            let b: Vec<f32> = (0..nb).map(|i| ((i as u64 * 5 + seed) % 11) as f32 - 4.5).collect();
            let so = broadcast_shape(&sa, &sb).unwrap();
            let no: usize = so.iter().product();
            for op in [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div, BinaryOp::Maximum, BinaryOp::Minimum] {
                let mut out = vec![0.0; no];
                Cpu.binary(op, &a, &sa, &b, &sb, &mut out).unwrap();
                for f in 0..no {
                    let ix = idx_of(&so, f);
                    let want = op.apply(gather(&a, &sa, &ix), gather(&b, &sb, &ix));
                    prop_assert_eq!(out[f], want);
                }
                // sum_to_shape undoes broadcasting: sum over the broadcast dims.
                let mut red = vec![0.0; na];
                Cpu.sum_to_shape(&out, &so, &sa, &mut red).unwrap();
                let mut want = vec![0.0f64; na];
                for f in 0..no {
                    let ix = idx_of(&so, f);
                    let off = so.len() - sa.len();
                    let mut flat = 0;
                    for d in 0..sa.len() {
                        flat = flat * sa[d] + if sa[d] == 1 { 0 } else { ix[d + off] };
                    }
                    want[flat] += out[f] as f64;
                }
                for i in 0..na {
                    prop_assert!((red[i] as f64 - want[i]).abs() <= 1e-4 * (1.0 + want[i].abs()));
                }
                // broadcast_to matches gather.
                let mut bt = vec![0.0; no];
                Cpu.broadcast_to(&b, &sb, &so, &mut bt).unwrap();
                for f in 0..no {
                    prop_assert_eq!(bt[f], gather(&b, &sb, &idx_of(&so, f)));
                }
            }
        }
    }

    #[test]
    fn binary_shape_errors() {
        let a = vec![0.0; 6];
        let b = vec![0.0; 4];
        let mut out = vec![0.0; 6];
        assert!(matches!(
            Cpu.binary(BinaryOp::Add, &a, &[2, 3], &b, &[4], &mut out),
            Err(KernelError::Broadcast { .. })
        ));
        assert!(matches!(
            Cpu.binary(BinaryOp::Add, &a, &[2, 3], &a[..5], &[2, 3], &mut out),
            Err(KernelError::LengthMismatch { what: "b", .. })
        ));
        let mut small = vec![0.0; 5];
        assert!(matches!(
            Cpu.binary(BinaryOp::Add, &a, &[2, 3], &a, &[2, 3], &mut small),
            Err(KernelError::LengthMismatch { what: "out", .. })
        ));
        let mut r = vec![0.0; 4];
        assert!(Cpu.sum_to_shape(&a, &[2, 3], &[4], &mut r).is_err());
    }

    /// Every unary op (also used by the kernel tests in `cpu_kernel`).
    pub(super) const UNARY: [UnaryOp; 12] = [
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
        UnaryOp::Scale(-1.7),
        UnaryOp::AddScalar(0.3),
    ];

    #[test]
    fn unary_backward_matches_finite_differences() {
        // Positive inputs away from kinks so that every op is defined and smooth there;
        // negative ones for the ops defined there.
        let xs: Vec<f32> = (0..37).map(|i| 0.2 + 0.07 * i as f32).collect();
        let neg: Vec<f32> = xs.iter().map(|v| -v).collect();
        for op in UNARY {
            for x in [&xs, &neg] {
                if x[0] < 0.0 && matches!(op, UnaryOp::Log | UnaryOp::Sqrt) {
                    continue;
                }
                let mut y = vec![0.0; x.len()];
                Cpu.unary(op, x, &mut y).unwrap();
                let dy: Vec<f32> = (0..x.len()).map(|i| 1.0 + 0.1 * (i % 5) as f32).collect();
                let mut dx = vec![0.0; x.len()];
                Cpu.unary_backward(op, x, &y, &dy, &mut dx).unwrap();
                for i in 0..x.len() {
                    let h = 1e-3f64;
                    let f = |v: f64| op.apply(v as f32) as f64;
                    let xi = x[i] as f64;
                    let fd = (f(xi + h) - f(xi - h)) / (2.0 * h) * dy[i] as f64;
                    assert!(
                        (dx[i] as f64 - fd).abs() <= 2e-2 * (1.0 + fd.abs()),
                        "{op:?} x={xi} dx={} fd={fd}",
                        dx[i]
                    );
                    assert_eq!(y[i], op.apply(x[i]));
                }
            }
        }
        let mut y = vec![0.0; 3];
        assert!(Cpu.unary(UnaryOp::Relu, &[1.0, 2.0], &mut y).is_err());
    }

    #[test]
    fn relu_fast_path_matches_scalar_on_odd_sizes() {
        for n in [0usize, 1, 7, 8, 9, 15, 16, 17, 33, 1000] {
            let x: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let mut y = vec![9.0; n];
            Cpu.unary(UnaryOp::Relu, &x, &mut y).unwrap();
            for i in 0..n {
                assert_eq!(y[i], x[i].max(0.0));
            }
            let mut yy = y.clone();
            Cpu.axpy(2.0, &x, &mut yy).unwrap();
            for i in 0..n {
                assert_eq!(yy[i], y[i] + 2.0 * x[i]);
            }
        }
    }

    #[test]
    fn chunked_threaded_paths_match_scalar_definitions() {
        // sizes above the threading chunk (65,536) and not a multiple of it
        let n = 200_003;
        let a: Vec<f32> = (0..n)
            .map(|i| ((i * 37) % 101) as f32 * 0.02 - 1.0)
            .collect();
        let b: Vec<f32> = (0..n)
            .map(|i| ((i * 53) % 97) as f32 * 0.03 - 1.4)
            .collect();
        let mut y = vec![0.0; n];
        Cpu.unary(UnaryOp::Tanh, &a, &mut y).unwrap();
        assert!(y.iter().zip(&a).all(|(y, a)| *y == UnaryOp::Tanh.apply(*a)));
        let mut d = vec![0.0; n];
        Cpu.unary_backward(UnaryOp::Relu, &a, &y, &b, &mut d)
            .unwrap();
        assert!((0..n).all(|i| d[i] == if a[i] > 0.0 { b[i] } else { 0.0 }));
        for op in [BinaryOp::Add, BinaryOp::Mul, BinaryOp::Minimum] {
            Cpu.binary(op, &a, &[n], &b, &[n], &mut y).unwrap();
            assert!((0..n).all(|i| y[i] == op.apply(a[i], b[i])));
        }
        let mut acc = b.clone();
        Cpu.axpy(-0.5, &a, &mut acc).unwrap();
        assert!((0..n).all(|i| acc[i] == b[i] + -0.5 * a[i]));
        let w = vec![0.25f32, -2.0];
        Cpu.weighted_sum(&w, &[&a, &b], &mut y).unwrap();
        assert!((0..n).all(|i| y[i] == 0.25 * a[i] + -2.0 * b[i]));
        let (mut da, mut db, mut dw) = (vec![0.0; n], vec![0.0; n], vec![0.0; 2]);
        Cpu.weighted_sum_backward(&w, &[&a, &b], &acc, &mut [&mut da, &mut db], &mut dw)
            .unwrap();
        assert!((0..n).all(|i| da[i] == 0.25 * acc[i] && db[i] == -2.0 * acc[i]));
        let want: f64 = (0..n).map(|i| acc[i] as f64 * a[i] as f64).sum();
        assert!(
            (dw[0] as f64 - want).abs() < 1e-6 * (1.0 + want.abs()),
            "{} {want}",
            dw[0]
        );
    }

    #[test]
    fn weighted_sum_and_backward() {
        let k = 3;
        let n = 29;
        let xs: Vec<Vec<f32>> = (0..k)
            .map(|j| {
                (0..n)
                    .map(|i| ((i * 3 + j * 7) % 10) as f32 * 0.1 - 0.4)
                    .collect()
            })
            .collect();
        let w = vec![0.2f32, -0.5, 1.5];
        let refs: Vec<&[f32]> = xs.iter().map(|v| &v[..]).collect();
        let mut out = vec![0.0; n];
        Cpu.weighted_sum(&w, &refs, &mut out).unwrap();
        for i in 0..n {
            let want: f32 = (0..k).map(|j| w[j] * xs[j][i]).sum();
            assert!((out[i] - want).abs() < 1e-6);
        }
        // loss = <g, out>: gradient wrt x_j is w_j * g, wrt w_j is <g, x_j>; check by FD on w.
        let g: Vec<f32> = (0..n).map(|i| (i as f32 * 0.3).cos()).collect();
        let mut dxs: Vec<Vec<f32>> = vec![vec![0.0; n]; k];
        let mut dxr: Vec<&mut [f32]> = dxs.iter_mut().map(|v| &mut v[..]).collect();
        let mut dw = vec![0.0; k];
        Cpu.weighted_sum_backward(&w, &refs, &g, &mut dxr, &mut dw)
            .unwrap();
        let loss = |w: &[f32]| -> f64 {
            (0..n)
                .map(|i| g[i] as f64 * (0..k).map(|j| w[j] as f64 * xs[j][i] as f64).sum::<f64>())
                .sum()
        };
        for j in 0..k {
            let mut wp = w.clone();
            wp[j] += 1e-2;
            let mut wm = w.clone();
            wm[j] -= 1e-2;
            let fd = (loss(&wp) - loss(&wm)) / 2e-2;
            assert!((dw[j] as f64 - fd).abs() < 1e-3, "dw {j}");
            for i in 0..n {
                assert_eq!(dxs[j][i], w[j] * g[i]);
            }
        }
        let mut bad = vec![0.0; 2];
        assert!(Cpu.weighted_sum(&w[..2], &refs, &mut out).is_err());
        assert!(Cpu.weighted_sum(&w, &refs, &mut bad).is_err());
    }

    #[test]
    fn concat_split_round_trip() {
        let (n, hw) = (3, 5);
        let chans = [2usize, 1, 4];
        let parts: Vec<Vec<f32>> = chans
            .iter()
            .enumerate()
            .map(|(p, &c)| (0..n * c * hw).map(|i| (p * 1000 + i) as f32).collect())
            .collect();
        let refs: Vec<&[f32]> = parts.iter().map(|v| &v[..]).collect();
        let ct: usize = chans.iter().sum();
        let mut out = vec![0.0; n * ct * hw];
        Cpu.concat_channels(&refs, &chans, n, hw, &mut out).unwrap();
        // naive: out[b, c, s] comes from part p with local channel c - offset
        for b in 0..n {
            let mut off = 0;
            for (p, &c) in chans.iter().enumerate() {
                for cc in 0..c {
                    for s in 0..hw {
                        assert_eq!(
                            out[(b * ct + off + cc) * hw + s],
                            parts[p][(b * c + cc) * hw + s]
                        );
                    }
                }
                off += c;
            }
        }
        let mut back: Vec<Vec<f32>> = chans.iter().map(|&c| vec![0.0; n * c * hw]).collect();
        let mut br: Vec<&mut [f32]> = back.iter_mut().map(|v| &mut v[..]).collect();
        Cpu.split_channels(&out, &chans, n, hw, &mut br).unwrap();
        assert_eq!(back, parts);
        assert!(
            Cpu.concat_channels(&refs, &chans[..2], n, hw, &mut out)
                .is_err()
        );
    }
}
