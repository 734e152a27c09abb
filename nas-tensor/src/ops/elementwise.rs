//! Elementwise ops: binary ops with NumPy broadcasting (add, sub, mul, div, maximum, minimum),
//! scalar ops and unary maps, each with its gradient rule; compute in the backend.

use nas_kernels::{BinaryOp, UnaryOp};

use crate::error::{Result, shape_err};
use crate::storage::{self, Storage};
use crate::tensor::{Data, Tensor, check_same_device, new_data, numel};

/// The broadcast shape of `a` and `b` (NumPy rules: align right, sizes equal or one of them 1).
pub fn broadcast_shape(op: &'static str, a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    match nas_kernels::broadcast_shape(a, b) {
        Some(s) => Ok(s),
        None => shape_err(op, format!("shapes {a:?} and {b:?} do not broadcast")),
    }
}

/// `out = a op b` on buffers (broadcasting), allocated here.
pub(crate) fn bin(
    op: BinaryOp,
    a: &Storage,
    sa: &[usize],
    b: &Storage,
    sb: &[usize],
    out_shape: &[usize],
) -> Result<Storage> {
    let mut out = Storage::alloc(a.device(), numel(out_shape))?;
    storage::binary(op, a, sa, b, sb, &mut out)?;
    Ok(out)
}

/// Sums a gradient of the broadcast shape down to an input's shape.
fn reduce_to(g: &Storage, out_shape: &[usize], shape: &[usize]) -> Result<Storage> {
    if out_shape == shape {
        return g.try_clone();
    }
    let mut r = Storage::zeros(g.device(), numel(shape))?;
    storage::sum_to_shape(g, out_shape, shape, &mut r)?;
    Ok(r)
}

fn unary_buf(op: UnaryOp, x: &Storage) -> Result<Storage> {
    let mut y = Storage::alloc(x.device(), x.len())?;
    storage::unary(op, x, &mut y)?;
    Ok(y)
}

fn binary(op: BinaryOp, name: &'static str, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    check_same_device(name, a, b)?;
    let os = broadcast_shape(name, a.shape(), b.shape())?;
    let out = bin(op, &a.read(), a.shape(), &b.read(), b.shape(), &os)?;
    // Sums and differences need only the shapes: their inputs' values are not kept alive.
    let (ac, bc) = match op {
        BinaryOp::Add | BinaryOp::Sub => {
            let dev = a.device();
            (
                new_data(Storage::zeros(dev, 0)?),
                new_data(Storage::zeros(dev, 0)?),
            )
        }
        _ => (a.data.clone(), b.data.clone()),
    };
    let (sa, sb) = (a.shape().to_vec(), b.shape().to_vec());
    let osc = os.clone();
    Ok(Tensor::from_op(name, os, out, &[a, b], move |g, needs| {
        let (sa, sb) = (&sa[..], &sb[..]);
        let ad = ac.read().unwrap_or_else(|e| e.into_inner());
        let bd = bc.read().unwrap_or_else(|e| e.into_inner());
        let os = &osc;
        let (ga, gb) = match op {
            BinaryOp::Add | BinaryOp::Sub => {
                let ga = if needs[0] {
                    Some(reduce_to(g, os, sa)?)
                } else {
                    None
                };
                let gb = if needs[1] {
                    let r = reduce_to(g, os, sb)?;
                    Some(if op == BinaryOp::Sub {
                        unary_buf(UnaryOp::Neg, &r)?
                    } else {
                        r
                    })
                } else {
                    None
                };
                (ga, gb)
            }
            BinaryOp::Mul => {
                let ga = if needs[0] {
                    Some(reduce_to(&bin(BinaryOp::Mul, g, os, &bd, sb, os)?, os, sa)?)
                } else {
                    None
                };
                let gb = if needs[1] {
                    Some(reduce_to(&bin(BinaryOp::Mul, g, os, &ad, sa, os)?, os, sb)?)
                } else {
                    None
                };
                (ga, gb)
            }
            BinaryOp::Div => {
                // d/da = g / b ; d/db = -(g / b) * (a / b)
                let g_over_b = bin(BinaryOp::Div, g, os, &bd, sb, os)?;
                let gb = if needs[1] {
                    let y = bin(BinaryOp::Div, &ad, sa, &bd, sb, os)?;
                    let t = bin(BinaryOp::Mul, &g_over_b, os, &y, os, os)?;
                    Some(unary_buf(UnaryOp::Neg, &reduce_to(&t, os, sb)?)?)
                } else {
                    None
                };
                let ga = if needs[0] {
                    Some(reduce_to(&g_over_b, os, sa)?)
                } else {
                    None
                };
                (ga, gb)
            }
            BinaryOp::Maximum | BinaryOp::Minimum => {
                // The gradient goes to `a` where it wins or ties, else to `b` (as a mask).
                let dev = g.device();
                let mut ma = Storage::alloc(dev, numel(os))?;
                let mut mb = Storage::alloc(dev, numel(os))?;
                let ab = bin(op, &ad, sa, &bd, sb, os)?; // the output
                let mut a_full = Storage::alloc(dev, numel(os))?;
                storage::broadcast_to(&ad, sa, os, &mut a_full)?;
                storage::select_backward(&a_full, &ab, g, &mut ma, &mut mb)?;
                let ga = if needs[0] {
                    Some(reduce_to(&ma, os, sa)?)
                } else {
                    None
                };
                let gb = if needs[1] {
                    Some(reduce_to(&mb, os, sb)?)
                } else {
                    None
                };
                (ga, gb)
            }
        };
        Ok(vec![ga, gb])
    }))
}

fn unary(op: UnaryOp, name: &'static str, a: &Tensor) -> Result<Tensor> {
    let y = new_data(unary_buf(op, &a.read())?);
    // What the gradient rule keeps: ReLU's mask reads its output (x > 0 exactly where
    // y > 0), so its input is not kept alive; the linear ops read neither; the others keep
    // the input and recompute the output in backward (cheap).
    let saved: Option<Data> = match op {
        UnaryOp::Relu => Some(y.clone()),
        UnaryOp::Scale(_) | UnaryOp::Neg | UnaryOp::AddScalar(_) => None,
        _ => Some(a.data.clone()),
    };
    Ok(Tensor::from_op_data(
        name,
        a.shape().to_vec(),
        y,
        &[a],
        move |g, _| {
            let mut dx = Storage::alloc(g.device(), g.len())?;
            let Some(saved) = saved else {
                // The derivative reads neither the input nor the output.
                storage::unary_backward(op, g, g, g, &mut dx)?;
                return Ok(vec![Some(dx)]);
            };
            let v = saved.read().unwrap_or_else(|e| e.into_inner());
            // ReLU: `v` is the output, whose sign pattern is the input's.
            let y = match op {
                UnaryOp::Relu => None,
                _ => Some(unary_buf(op, &v)?),
            };
            let yv = y.as_ref().unwrap_or(&v);
            storage::unary_backward(op, &v, yv, g, &mut dx)?;
            Ok(vec![Some(dx)])
        },
    ))
}

fn unary_ok(op: UnaryOp, name: &'static str, a: &Tensor) -> Tensor {
    // Unary kernels only fail on length mismatches, which cannot happen here.
    unary(op, name, a).expect("unary op on matching buffers")
}

impl Tensor {
    /// `self + other` with broadcasting.
    pub fn add(&self, other: &Tensor) -> Result<Tensor> {
        binary(BinaryOp::Add, "add", self, other)
    }
    /// `self - other` with broadcasting.
    pub fn sub(&self, other: &Tensor) -> Result<Tensor> {
        binary(BinaryOp::Sub, "sub", self, other)
    }
    /// `self * other` (elementwise) with broadcasting.
    pub fn mul(&self, other: &Tensor) -> Result<Tensor> {
        binary(BinaryOp::Mul, "mul", self, other)
    }
    /// `self / other` (elementwise) with broadcasting.
    pub fn div(&self, other: &Tensor) -> Result<Tensor> {
        binary(BinaryOp::Div, "div", self, other)
    }
    /// Elementwise maximum with broadcasting (ties send the gradient to `self`).
    pub fn maximum(&self, other: &Tensor) -> Result<Tensor> {
        binary(BinaryOp::Maximum, "maximum", self, other)
    }
    /// Elementwise minimum with broadcasting (ties send the gradient to `self`).
    pub fn minimum(&self, other: &Tensor) -> Result<Tensor> {
        binary(BinaryOp::Minimum, "minimum", self, other)
    }
    /// `-self`.
    pub fn neg(&self) -> Tensor {
        unary_ok(UnaryOp::Neg, "neg", self)
    }
    /// `max(self, 0)`; the gradient at exactly 0 is 0 (as PyTorch).
    pub fn relu(&self) -> Tensor {
        unary_ok(UnaryOp::Relu, "relu", self)
    }
    /// `exp(self)`.
    pub fn exp(&self) -> Tensor {
        unary_ok(UnaryOp::Exp, "exp", self)
    }
    /// Natural logarithm.
    pub fn log(&self) -> Tensor {
        unary_ok(UnaryOp::Log, "log", self)
    }
    /// Logistic sigmoid.
    pub fn sigmoid(&self) -> Tensor {
        unary_ok(UnaryOp::Sigmoid, "sigmoid", self)
    }
    /// Hyperbolic tangent.
    pub fn tanh(&self) -> Tensor {
        unary_ok(UnaryOp::Tanh, "tanh", self)
    }
    /// Square root.
    pub fn sqrt(&self) -> Tensor {
        unary_ok(UnaryOp::Sqrt, "sqrt", self)
    }
    /// `self * self`.
    pub fn square(&self) -> Tensor {
        unary_ok(UnaryOp::Square, "square", self)
    }
    /// `|self|` (gradient 0 at 0).
    pub fn abs(&self) -> Tensor {
        unary_ok(UnaryOp::Abs, "abs", self)
    }
    /// `1 / self`.
    pub fn recip(&self) -> Tensor {
        unary_ok(UnaryOp::Recip, "recip", self)
    }
    /// `s * self`.
    pub fn scale(&self, s: f32) -> Tensor {
        unary_ok(UnaryOp::Scale(s), "scale", self)
    }
    /// `self + s`.
    pub fn add_scalar(&self, s: f32) -> Tensor {
        unary_ok(UnaryOp::AddScalar(s), "add_scalar", self)
    }
}
