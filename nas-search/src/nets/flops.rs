//! Counting multiply-accumulates in the forward pass.
//!
//! The networks of [`crate::nets`] build their convolutions as [`CountedConv2d`] and their
//! classifiers as [`CountedLinear`]: thin wrappers that, while [`count_forward_flops`] runs on
//! the current thread, add what each call computes to a thread-local counter, using the
//! shapes actually seen. This gives an independent check of the closed-form counts
//! ([`crate::nets::nb201::nb201_cost`], ...). The convention is NAS-Bench-201's (see
//! [`crate::nb201_cost`]): a convolution costs `k*k*(c_in/groups)*c_out*h_out*w_out` per image,
//! a linear layer `in*out + out`; everything else costs 0.

use std::cell::Cell;

use nas_tensor::nn::{Conv2d, Linear, Module};
use nas_tensor::{Result, Tensor, no_grad};

thread_local! {
    static COUNTER: Cell<Option<u64>> = const { Cell::new(None) };
}

fn record(flops: u64) {
    COUNTER.with(|c| {
        if let Some(v) = c.get() {
            c.set(Some(v + flops));
        }
    });
}

/// Records the cost of `conv` having mapped `x` to `y` (for modules that call a [`Conv2d`]
/// directly rather than through [`CountedConv2d`]).
pub fn record_conv(conv: &Conv2d, y: &Tensor) {
    record_conv_out(conv, y.shape());
}

/// Records the cost of `conv` having produced an output of shape `s` (`[n, c_out, h, w]`), for
/// fused ops whose intermediate outputs are never tensors.
pub fn record_conv_out(conv: &Conv2d, s: &[usize]) {
    let w = conv.weight.shape();
    let per_out: u64 = (w[1] * w[2] * w[3]) as u64;
    // the count is per image
    if s.len() == 4 {
        record(per_out * (s[1] * s[2] * s[3]) as u64);
    }
}

/// Conv2d forward that records its cost when counting is on.
pub fn conv_forward(conv: &Conv2d, x: &Tensor) -> Result<Tensor> {
    let y = conv.forward(x)?;
    record_conv(conv, &y);
    Ok(y)
}

/// A [`Conv2d`] whose forward pass is counted (same parameter names as the inner conv).
pub struct CountedConv2d(pub Conv2d);

impl Module for CountedConv2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        conv_forward(&self.0, x)
    }
    fn children(&self, f: &mut dyn FnMut(&str, &dyn Module)) {
        f("", &self.0)
    }
}

/// A [`Linear`] whose forward pass is counted (`in*out + out` per example).
pub struct CountedLinear(pub Linear);

impl Module for CountedLinear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = self.0.forward(x)?;
        let w = self.0.weight.shape();
        let bias = if self.0.bias.is_some() { w[0] } else { 0 };
        record((w[0] * w[1] + bias) as u64);
        Ok(y)
    }
    fn children(&self, f: &mut dyn FnMut(&str, &dyn Module)) {
        f("", &self.0)
    }
}

/// Runs `module` once on a zero image of shape `[1, c, h, w]` in evaluation mode without
/// recording a graph, and returns the multiply-accumulates its counted layers performed.
/// The module's training flag is restored afterwards; running statistics are not touched.
pub fn count_forward_flops(module: &mut dyn Module, c: usize, h: usize, w: usize) -> Result<u64> {
    let was_training = module.is_training();
    module.set_training(false);
    let previous = COUNTER.with(|k| k.replace(Some(0)));
    let out = no_grad(|| module.forward(&Tensor::zeros(&[1, c, h, w])));
    let counted = COUNTER.with(|k| k.replace(previous)).unwrap_or(0);
    module.set_training(was_training);
    out?;
    Ok(counted)
}
