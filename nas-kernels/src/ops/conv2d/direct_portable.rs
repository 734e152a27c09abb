//! The direct paths on targets without the AVX-512 kernels: [`available`] is false, so
//! [`super::choose`] never picks them; the entry points forward to the portable im2col and
//! depthwise code so that the dispatch compiles the same everywhere.

use super::Conv2dParams;
pub(super) fn available() -> bool {
    false
}
pub(super) fn forward(p: &Conv2dParams, x: &[f32], w: &[f32], y: &mut [f32]) {
    super::im2col::forward(p, x, w, y)
}
pub(super) fn backward_input(p: &Conv2dParams, w: &[f32], dy: &[f32], dx: &mut [f32]) {
    super::im2col::backward_input(p, w, dy, dx)
}
pub(super) fn forward_relu(p: &Conv2dParams, x: &[f32], w: &[f32], y: &mut [f32]) {
    super::shared::with_relu(x, |r| super::im2col::forward(p, r, w, y))
}
pub(super) fn backward_input_masked(
    p: &Conv2dParams,
    w: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    mask: Option<&[f32]>,
) {
    super::im2col::backward_input(p, w, dy, dx);
    if let Some(x) = mask {
        super::shared::relu_mask(dx, x);
    }
}
pub(super) fn backward_weight(p: &Conv2dParams, x: &[f32], dy: &[f32], dw: &mut [f32]) {
    super::im2col::backward_weight(p, x, dy, dw)
}
pub(super) fn backward_weight_relu(p: &Conv2dParams, x: &[f32], dy: &[f32], dw: &mut [f32]) {
    super::shared::with_relu(x, |r| super::im2col::backward_weight(p, r, dy, dw))
}
pub(super) fn depthwise_forward(p: &Conv2dParams, x: &[f32], w: &[f32], y: &mut [f32], relu: bool) {
    if relu {
        super::shared::with_relu(x, |r| super::depthwise::forward(p, r, w, y))
    } else {
        super::depthwise::forward(p, x, w, y)
    }
}
pub(super) fn depthwise_backward_input(
    p: &Conv2dParams,
    w: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    mask: Option<&[f32]>,
) {
    super::depthwise::backward_input(p, w, dy, dx);
    if let Some(x) = mask {
        super::shared::relu_mask(dx, x);
    }
}
pub(super) fn depthwise_backward_weight(
    p: &Conv2dParams,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    relu: bool,
) {
    if relu {
        super::shared::with_relu(x, |r| super::depthwise::backward_weight(p, r, dy, dw))
    } else {
        super::depthwise::backward_weight(p, x, dy, dw)
    }
}
