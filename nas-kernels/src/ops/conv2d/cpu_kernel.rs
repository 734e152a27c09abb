//! CPU convolution kernels. Shapes are validated by [`crate::Cpu`].
//!
//! Paths ([`Path`]), chosen by [`choose`] and all tested against [`super::reference`]:
//! - [`Path::Depthwise`]: direct loops per channel plane (forward, input and weight gradient);
//!   stride-1 rows are contiguous AXPYs/dots that the compiler vectorises.
//! - [`Path::OneByOne`]: 1x1, stride 1, no padding: the image *is* the GEMM operand.
//! - [`Path::Direct`] (x86-64 with AVX-512, stride 1): a register-blocked direct convolution
//!   on a zero-padded copy of the image (no im2col); the input gradient is the same kernel on
//!   the padded output gradient with flipped, transposed weights; the weight gradient a
//!   register-blocked correlation of input and output gradient, for 3x3 kernels with at least
//!   8 input channels per group vectorised over input channels on a channels-last copy of
//!   the input (`dw_avx512.rs`), else over output columns with horizontal sums. A ReLU on the
//!   input (the `*_relu_input` / `*_relu_mask` entry points) is applied while staging, and its
//!   mask on each image's input gradient as soon as that is computed.
//! - [`Path::Strided`] (x86-64 with AVX-512, any stride, kernels larger than 1x1): the forward
//!   as a direct convolution on a phase-split copy of the image (`strided.rs`; no im2col);
//!   its gradients are im2col's, except the weight gradient of 3x3 stride-2 kernels with at
//!   least 8 input channels per group (`dw_avx512.rs` on a copy split into even and odd
//!   columns).
//! - [`Path::Im2col`]: everything else: im2col into a pooled workspace, then
//!   [`sgemm`](crate::gemm::sgemm) per group.
//!
//! Images are spread over threads with [`parallel_for`](crate::threads::parallel_for); weight gradients accumulate per-thread
//! partial sums that are added at the end.

use super::Conv2dParams;
use shared::{relu_mask, with_relu};

#[path = "shared.rs"]
mod shared;
#[cfg(test)]
pub(crate) use shared::threads_for;

#[path = "depthwise.rs"]
mod depthwise;
#[path = "im2col.rs"]
mod im2col;
#[path = "one_by_one.rs"]
mod one_by_one;
#[path = "strided.rs"]
mod strided;

#[cfg(not(target_arch = "x86_64"))]
#[path = "direct_portable.rs"]
mod direct;
#[cfg(target_arch = "x86_64")]
#[path = "direct_avx512.rs"]
mod direct;
#[cfg(target_arch = "x86_64")]
#[path = "dw_avx512.rs"]
pub(crate) mod dw_avx512;

/// Whether the channels-last AVX-512 weight gradient (`dw_avx512.rs`) is the faster one for
/// `p` on the direct and strided paths (3x3, stride 1 or 2, column dilation 1, at least 8
/// input channels per group).
fn dw_cl_pays(p: &Conv2dParams) -> bool {
    #[cfg(target_arch = "x86_64")]
    return dw_avx512::pays(p);
    #[cfg(not(target_arch = "x86_64"))]
    return false;
}

/// The weight gradient of `dw_avx512.rs` (only called where [`dw_cl_pays`]).
fn dw_cl(p: &Conv2dParams, x: &[f32], dy: &[f32], dw: &mut [f32], relu: bool) {
    #[cfg(target_arch = "x86_64")]
    dw_avx512::backward_weight(p, x, dy, dw, relu);
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("{p:?} {} {} {} {relu}", x.len(), dy.len(), dw.len());
}

/// An implementation strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Path {
    /// im2col + GEMM (any configuration).
    Im2col,
    /// 1x1, stride 1, no padding: GEMM on the image directly.
    OneByOne,
    /// Direct per-plane loops for `groups == c_in == c_out`.
    Depthwise,
    /// Register-blocked AVX-512 direct convolution, stride 1.
    Direct,
    /// Register-blocked AVX-512 depthwise kernels, stride 1.
    DepthwiseDirect,
    /// AVX-512 direct forward on a phase-split copy, any stride (`strided.rs`); its
    /// gradients are im2col's (but see [`dw_cl_pays`]).
    Strided,
}

fn is_1x1(p: &Conv2dParams) -> bool {
    p.kh == 1 && p.kw == 1 && p.stride == (1, 1) && p.padding == (0, 0)
}

/// Whether `path` can compute `p` on this machine.
pub(crate) fn applicable(path: Path, p: &Conv2dParams) -> bool {
    match path {
        Path::Im2col => true,
        Path::OneByOne => is_1x1(p),
        Path::Depthwise => p.is_depthwise(),
        Path::Direct => direct::available() && p.stride == (1, 1),
        Path::DepthwiseDirect => {
            p.is_depthwise() && direct::available() && matches!(p.stride, (1, 1) | (2, 2))
        }
        Path::Strided => strided::available(),
    }
}

/// The path used by default.
pub(crate) fn choose(p: &Conv2dParams) -> Path {
    if p.is_depthwise() && p.c_in > 1 {
        if applicable(Path::DepthwiseDirect, p) {
            Path::DepthwiseDirect
        } else {
            Path::Depthwise
        }
    } else if is_1x1(p) {
        Path::OneByOne
    } else if applicable(Path::Direct, p) {
        Path::Direct
    } else if applicable(Path::Strided, p) && strided::pays(p) {
        Path::Strided
    } else {
        Path::Im2col
    }
}

/// Forward convolution.
pub(crate) fn forward(p: &Conv2dParams, x: &[f32], w: &[f32], bias: Option<&[f32]>, y: &mut [f32]) {
    forward_with(choose(p), p, x, w, bias, y)
}

/// Gradient with respect to the input.
pub(crate) fn backward_input(p: &Conv2dParams, w: &[f32], dy: &[f32], dx: &mut [f32]) {
    backward_input_with(choose(p), p, w, dy, dx)
}

/// Gradient with respect to weight and bias.
pub(crate) fn backward_weight(
    p: &Conv2dParams,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    dbias: Option<&mut [f32]>,
) {
    // For 1x1 convolutions the AVX-512 direct kernel beats GEMM here (the GEMM's depth is the
    // image size and its output tiny), so it is chosen when available.
    let path = match choose(p) {
        Path::OneByOne if applicable(Path::Direct, p) => Path::Direct,
        other => other,
    };
    backward_weight_with(path, p, x, dy, dw, dbias)
}

/// Forward convolution (no bias) of `relu(x)`. The AVX-512 direct and depthwise kernels
/// apply the ReLU while staging each input plane; other paths convolve a ReLU'd copy.
pub(crate) fn forward_relu_input(p: &Conv2dParams, x: &[f32], w: &[f32], y: &mut [f32]) {
    match choose(p) {
        Path::DepthwiseDirect => direct::depthwise_forward(p, x, w, y, true),
        Path::Direct => direct::forward_relu(p, x, w, y),
        _ => with_relu(x, |r| forward(p, r, w, None, y)),
    }
}

/// Weight gradient (no bias) of a convolution whose input was `relu(x)` (see
/// [`forward_relu_input`]). The AVX-512 direct and depthwise kernels apply the ReLU while
/// staging each input plane; other paths read a ReLU'd copy.
pub(crate) fn backward_weight_relu_input(p: &Conv2dParams, x: &[f32], dy: &[f32], dw: &mut [f32]) {
    match choose(p) {
        Path::DepthwiseDirect => direct::depthwise_backward_weight(p, x, dy, dw, true),
        Path::Direct | Path::Strided if dw_cl_pays(p) => dw_cl(p, x, dy, dw, true),
        Path::Direct => direct::backward_weight_relu(p, x, dy, dw),
        _ => with_relu(x, |r| backward_weight(p, r, dy, dw, None)),
    }
}

/// Input gradient of a convolution whose input was `relu(x)`, through the ReLU:
/// `dx = conv_backward_input(dy) * (x > 0)`. The AVX-512 direct and depthwise kernels mask
/// each image or plane as they finish it; other paths mask afterwards.
pub(crate) fn backward_input_relu_mask(
    p: &Conv2dParams,
    w: &[f32],
    dy: &[f32],
    x: &[f32],
    dx: &mut [f32],
) {
    let path = choose(p);
    if path == Path::DepthwiseDirect && (flip_ok(p) || p.stride == (2, 2)) {
        direct::depthwise_backward_input(p, w, dy, dx, Some(x))
    } else if path == Path::Direct && flip_ok(p) {
        direct::backward_input_masked(p, w, dy, dx, Some(x))
    } else {
        backward_input(p, w, dy, dx);
        relu_mask(dx, x);
    }
}

/// Forward along a given (applicable) path.
pub(crate) fn forward_with(
    path: Path,
    p: &Conv2dParams,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
) {
    debug_assert!(applicable(path, p));
    match path {
        Path::Im2col => im2col::forward(p, x, w, y),
        Path::OneByOne => one_by_one::forward(p, x, w, y),
        Path::Depthwise => depthwise::forward(p, x, w, y),
        Path::Direct => direct::forward(p, x, w, y),
        Path::DepthwiseDirect => direct::depthwise_forward(p, x, w, y, false),
        Path::Strided => strided::forward(p, x, w, y),
    }
    if let Some(b) = bias {
        let ohw = p.out_h() * p.out_w();
        for (i, plane) in y.chunks_exact_mut(ohw).enumerate() {
            let bv = b[i % p.c_out];
            for v in plane {
                *v += bv;
            }
        }
    }
}

/// Input gradient along a given (applicable) path.
pub(crate) fn backward_input_with(
    path: Path,
    p: &Conv2dParams,
    w: &[f32],
    dy: &[f32],
    dx: &mut [f32],
) {
    match path {
        Path::Im2col | Path::Strided => im2col::backward_input(p, w, dy, dx),
        Path::OneByOne => one_by_one::backward_input(p, w, dy, dx),
        Path::Depthwise => depthwise::backward_input(p, w, dy, dx),
        Path::Direct => {
            if flip_ok(p) {
                direct::backward_input(p, w, dy, dx)
            } else {
                im2col::backward_input(p, w, dy, dx)
            }
        }
        Path::DepthwiseDirect => {
            if flip_ok(p) || p.stride == (2, 2) {
                direct::depthwise_backward_input(p, w, dy, dx, None)
            } else {
                depthwise::backward_input(p, w, dy, dx)
            }
        }
    }
}

/// Whether the input gradient can be computed as a stride-1 convolution of the padded output
/// gradient (padding `d * (k - 1) - p` must not be negative).
fn flip_ok(p: &Conv2dParams) -> bool {
    p.dilation.0 * (p.kh - 1) >= p.padding.0 && p.dilation.1 * (p.kw - 1) >= p.padding.1
}

/// Weight (and bias) gradient along a given (applicable) path.
pub(crate) fn backward_weight_with(
    path: Path,
    p: &Conv2dParams,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    dbias: Option<&mut [f32]>,
) {
    match path {
        Path::Direct | Path::Strided if dw_cl_pays(p) => dw_cl(p, x, dy, dw, false),
        Path::Im2col | Path::Strided => im2col::backward_weight(p, x, dy, dw),
        Path::OneByOne => one_by_one::backward_weight(p, x, dy, dw),
        Path::Depthwise => depthwise::backward_weight(p, x, dy, dw),
        Path::Direct => direct::backward_weight(p, x, dy, dw),
        Path::DepthwiseDirect => direct::depthwise_backward_weight(p, x, dy, dw, false),
    }
    if let Some(db) = dbias {
        let ohw = p.out_h() * p.out_w();
        db.fill(0.0);
        for (i, plane) in dy.chunks_exact(ohw).enumerate() {
            db[i % p.c_out] += plane.iter().sum::<f32>();
        }
    }
}
