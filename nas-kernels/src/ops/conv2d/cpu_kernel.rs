//! CPU convolution kernels. Shapes are validated by [`crate::Cpu`].

use super::{Conv2d, reference};

/// Forward convolution.
pub(crate) fn forward(p: &Conv2d, x: &[f32], w: &[f32], bias: Option<&[f32]>, y: &mut [f32]) {
    reference::forward(p, x, w, bias, y)
}

/// Gradient with respect to the input.
pub(crate) fn backward_input(p: &Conv2d, w: &[f32], dy: &[f32], dx: &mut [f32]) {
    reference::backward_input(p, w, dy, dx)
}

/// Gradient with respect to weight and bias.
pub(crate) fn backward_weight(
    p: &Conv2d,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    dbias: Option<&mut [f32]>,
) {
    reference::backward_weight(p, x, dy, dw, dbias)
}
