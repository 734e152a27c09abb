//! Elementwise ops: binary ops with NumPy broadcasting (add, sub, mul, div), scalar ops and
//! unary ops (neg, relu, exp, log, sigmoid, tanh, sqrt), each with its gradient rule.

use crate::buf::Buf;
use crate::error::{Result, shape_err};
use crate::tensor::{Tensor, check_same_device, numel};

/// The broadcast shape of `a` and `b` (NumPy rules: align right, sizes equal or one of them 1).
pub fn broadcast_shape(op: &'static str, a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let n = a.len().max(b.len());
    let mut out = vec![0; n];
    for i in 0..n {
        let da = if i + a.len() >= n {
            a[i + a.len() - n]
        } else {
            1
        };
        let db = if i + b.len() >= n {
            b[i + b.len() - n]
        } else {
            1
        };
        out[i] = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return shape_err(op, format!("shapes {a:?} and {b:?} do not broadcast"));
        };
    }
    Ok(out)
}

/// Strides (in elements) of `shape` seen through the broadcast `out` shape: 0 on broadcast dims.
fn bcast_strides(shape: &[usize], out: &[usize]) -> Vec<usize> {
    let n = out.len();
    let mut strides = vec![0; n];
    let mut s = 1;
    for i in (0..shape.len()).rev() {
        let oi = i + n - shape.len();
        strides[oi] = if shape[i] == 1 { 0 } else { s };
        s *= shape[i];
    }
    strides
}

/// Calls `f(out_index, a_index, b_index)` for every element of `out`, row-major.
fn for_each_bcast(
    out: &[usize],
    sa: &[usize],
    sb: &[usize],
    mut f: impl FnMut(usize, usize, usize),
) {
    let total = numel(out);
    if total == 0 {
        return;
    }
    let n = out.len();
    let mut idx = vec![0usize; n];
    let (mut ia, mut ib) = (0usize, 0usize);
    for o in 0..total {
        f(o, ia, ib);
        // odometer increment
        let mut d = n;
        while d > 0 {
            d -= 1;
            idx[d] += 1;
            ia += sa[d];
            ib += sb[d];
            if idx[d] < out[d] {
                break;
            }
            ia -= sa[d] * out[d];
            ib -= sb[d] * out[d];
            idx[d] = 0;
        }
    }
}

#[derive(Clone, Copy)]
enum Bin {
    Add,
    Sub,
    Mul,
    Div,
}

impl Bin {
    fn name(self) -> &'static str {
        match self {
            Bin::Add => "add",
            Bin::Sub => "sub",
            Bin::Mul => "mul",
            Bin::Div => "div",
        }
    }
    #[inline]
    fn f(self, a: f32, b: f32) -> f32 {
        match self {
            Bin::Add => a + b,
            Bin::Sub => a - b,
            Bin::Mul => a * b,
            Bin::Div => a / b,
        }
    }
    /// d f / d a times g
    #[inline]
    fn da(self, _a: f32, b: f32, g: f32) -> f32 {
        match self {
            Bin::Add | Bin::Sub => g,
            Bin::Mul => g * b,
            Bin::Div => g / b,
        }
    }
    /// d f / d b times g
    #[inline]
    fn db(self, a: f32, b: f32, g: f32) -> f32 {
        match self {
            Bin::Add => g,
            Bin::Sub => -g,
            Bin::Mul => g * a,
            Bin::Div => -g * a / (b * b),
        }
    }
}

fn binary(op: Bin, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let name = op.name();
    check_same_device(name, a, b)?;
    let out_shape = broadcast_shape(name, a.shape(), b.shape())?;
    let n = numel(&out_shape);
    let mut out = Buf::zeros(n);
    {
        let (ad, bd) = (a.read(), b.read());
        if a.shape() == b.shape() {
            for ((o, &x), &y) in out.iter_mut().zip(ad.iter()).zip(bd.iter()) {
                *o = op.f(x, y);
            }
        } else if b.numel() == 1 {
            let y = bd[0];
            for (o, &x) in out.iter_mut().zip(ad.iter()) {
                *o = op.f(x, y);
            }
        } else {
            let sa = bcast_strides(a.shape(), &out_shape);
            let sb = bcast_strides(b.shape(), &out_shape);
            for_each_bcast(&out_shape, &sa, &sb, |o, ia, ib| {
                out[o] = op.f(ad[ia], bd[ib])
            });
        }
    }
    let (ac, bc) = (a.clone(), b.clone());
    let os = out_shape.clone();
    Ok(Tensor::from_op(
        name,
        out_shape,
        a.device(),
        out,
        &[a, b],
        move |g, needs| {
            let (ad, bd) = (ac.read(), bc.read());
            let sa = bcast_strides(ac.shape(), &os);
            let sb = bcast_strides(bc.shape(), &os);
            let mut ga = needs[0].then(|| Buf::zeros(ad.len()));
            let mut gb = needs[1].then(|| Buf::zeros(bd.len()));
            for_each_bcast(&os, &sa, &sb, |o, ia, ib| {
                let (x, y, go) = (ad[ia], bd[ib], g[o]);
                if let Some(ga) = ga.as_mut() {
                    ga[ia] += op.da(x, y, go);
                }
                if let Some(gb) = gb.as_mut() {
                    gb[ib] += op.db(x, y, go);
                }
            });
            Ok(vec![ga, gb])
        },
    ))
}

#[derive(Clone, Copy)]
enum Un {
    Neg,
    Relu,
    Exp,
    Log,
    Sigmoid,
    Tanh,
    Sqrt,
    Scale(f32),
    AddScalar(f32),
}

impl Un {
    fn name(self) -> &'static str {
        match self {
            Un::Neg => "neg",
            Un::Relu => "relu",
            Un::Exp => "exp",
            Un::Log => "log",
            Un::Sigmoid => "sigmoid",
            Un::Tanh => "tanh",
            Un::Sqrt => "sqrt",
            Un::Scale(_) => "scale",
            Un::AddScalar(_) => "add_scalar",
        }
    }
    #[inline]
    fn f(self, x: f32) -> f32 {
        match self {
            Un::Neg => -x,
            Un::Relu => x.max(0.0),
            Un::Exp => x.exp(),
            Un::Log => x.ln(),
            Un::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            Un::Tanh => x.tanh(),
            Un::Sqrt => x.sqrt(),
            Un::Scale(s) => x * s,
            Un::AddScalar(s) => x + s,
        }
    }
    /// Gradient given input x, output y and output gradient g.
    #[inline]
    fn df(self, x: f32, y: f32, g: f32) -> f32 {
        match self {
            Un::Neg => -g,
            Un::Relu => {
                if x > 0.0 {
                    g
                } else {
                    0.0
                }
            }
            Un::Exp => g * y,
            Un::Log => g / x,
            Un::Sigmoid => g * y * (1.0 - y),
            Un::Tanh => g * (1.0 - y * y),
            Un::Sqrt => g * 0.5 / y,
            Un::Scale(s) => g * s,
            Un::AddScalar(_) => g,
        }
    }
}

fn unary(op: Un, a: &Tensor) -> Tensor {
    let mut out = Buf::zeros(a.numel());
    {
        let ad = a.read();
        for (o, &x) in out.iter_mut().zip(ad.iter()) {
            *o = op.f(x);
        }
    }
    let ac = a.clone();
    // The output values are recomputed from the input in backward (cheap), so the graph keeps
    // only the input alive.
    Tensor::from_op(
        op.name(),
        a.shape().to_vec(),
        a.device(),
        out,
        &[a],
        move |g, _| {
            let ad = ac.read();
            let mut ga = Buf::zeros(ad.len());
            for ((gi, &x), &go) in ga.iter_mut().zip(ad.iter()).zip(g) {
                *gi = op.df(x, op.f(x), go);
            }
            Ok(vec![Some(ga)])
        },
    )
}

impl Tensor {
    /// `self + other` with broadcasting.
    pub fn add(&self, other: &Tensor) -> Result<Tensor> {
        binary(Bin::Add, self, other)
    }
    /// `self - other` with broadcasting.
    pub fn sub(&self, other: &Tensor) -> Result<Tensor> {
        binary(Bin::Sub, self, other)
    }
    /// `self * other` (elementwise) with broadcasting.
    pub fn mul(&self, other: &Tensor) -> Result<Tensor> {
        binary(Bin::Mul, self, other)
    }
    /// `self / other` (elementwise) with broadcasting.
    pub fn div(&self, other: &Tensor) -> Result<Tensor> {
        binary(Bin::Div, self, other)
    }
    /// `-self`.
    pub fn neg(&self) -> Tensor {
        unary(Un::Neg, self)
    }
    /// `max(self, 0)`; the gradient at exactly 0 is 0 (as PyTorch).
    pub fn relu(&self) -> Tensor {
        unary(Un::Relu, self)
    }
    /// `exp(self)`.
    pub fn exp(&self) -> Tensor {
        unary(Un::Exp, self)
    }
    /// Natural logarithm.
    pub fn log(&self) -> Tensor {
        unary(Un::Log, self)
    }
    /// Logistic sigmoid.
    pub fn sigmoid(&self) -> Tensor {
        unary(Un::Sigmoid, self)
    }
    /// Hyperbolic tangent.
    pub fn tanh(&self) -> Tensor {
        unary(Un::Tanh, self)
    }
    /// Square root.
    pub fn sqrt(&self) -> Tensor {
        unary(Un::Sqrt, self)
    }
    /// `s * self`.
    pub fn scale(&self, s: f32) -> Tensor {
        unary(Un::Scale(s), self)
    }
    /// `self + s`.
    pub fn add_scalar(&self, s: f32) -> Tensor {
        unary(Un::AddScalar(s), self)
    }
}
