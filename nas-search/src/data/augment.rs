//! Training-time image augmentation: the standard CIFAR recipe (zero-padded random crop and
//! random horizontal flip), applied to NCHW `f32` images in place.

use rand::{Rng, RngCore};
use serde::{Deserialize, Serialize};

/// Random augmentation of training images.
///
/// The crop pads an image with `pad` pixels of value 0 on every side and cuts a window of the
/// original size at a random offset, which is the same as shifting the image by `dy, dx` in
/// `-pad..=pad` and filling the uncovered border with zeros. On normalised data 0 is the
/// training mean of the channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Augment {
    /// Padding of the random crop in pixels (0 disables the crop).
    pub pad: usize,
    /// Whether to flip each image horizontally with probability 1/2.
    pub flip: bool,
}

impl Augment {
    /// The standard CIFAR augmentation: 4-pixel padded random crop and random horizontal flip.
    pub fn cifar() -> Self {
        Self { pad: 4, flip: true }
    }

    /// No augmentation.
    pub fn none() -> Self {
        Self {
            pad: 0,
            flip: false,
        }
    }

    /// Augments one image of `shape = (C, H, W)` in place; `scratch` is reused between calls.
    ///
    /// `image.len()` must equal `C * H * W` (checked with a debug assertion; the batch iterator
    /// guarantees it).
    pub fn apply(
        &self,
        image: &mut [f32],
        shape: (usize, usize, usize),
        rng: &mut dyn RngCore,
        scratch: &mut Vec<f32>,
    ) {
        debug_assert_eq!(image.len(), shape.0 * shape.1 * shape.2);
        if self.pad > 0 {
            // Offsets drawn as u32 so that a seed gives the same crops on every platform.
            // (Pads are capped at 2^30 pixels, far beyond any image, so the arithmetic cannot
            // overflow.)
            let pad = self.pad.min(1 << 30) as u32;
            let span = 2 * pad;
            let p = pad as isize;
            let dy = rng.random_range(0..=span) as isize - p;
            let dx = rng.random_range(0..=span) as isize - p;
            if dy != 0 || dx != 0 {
                scratch.clear();
                scratch.extend_from_slice(image);
                shift(scratch, image, shape, dy, dx);
            }
        }
        if self.flip && rng.random_bool(0.5) {
            hflip(image, shape);
        }
    }

    /// Augments every image of a batch (`images.len()` a multiple of `C * H * W`).
    pub fn apply_batch(
        &self,
        images: &mut [f32],
        shape: (usize, usize, usize),
        rng: &mut dyn RngCore,
        scratch: &mut Vec<f32>,
    ) {
        let n = shape.0 * shape.1 * shape.2;
        for img in images.chunks_exact_mut(n) {
            self.apply(img, shape, rng, scratch);
        }
    }
}

/// Mirrors an image of `shape = (C, H, W)` left to right, in place. Applying it twice is the
/// identity.
pub fn hflip(image: &mut [f32], shape: (usize, usize, usize)) {
    let w = shape.2;
    for row in image.chunks_exact_mut(w) {
        row.reverse();
    }
}

/// Writes `src` shifted by `dy` rows and `dx` columns into `dst`:
/// `dst[c, y, x] = src[c, y + dy, x + dx]`, or 0 where that falls outside the image. This is a
/// crop of the zero-padded image at offset `(pad + dy, pad + dx)`.
///
/// # Panics
/// If `src` or `dst` is shorter than `C * H * W` (like slice indexing).
pub fn shift(src: &[f32], dst: &mut [f32], shape: (usize, usize, usize), dy: isize, dx: isize) {
    let (c, h, w) = shape;
    let (hi, wi) = (h as isize, w as isize);
    for ch in 0..c {
        let base = ch * h * w;
        for y in 0..hi {
            let row = &mut dst[base + (y as usize) * w..base + (y as usize + 1) * w];
            let sy = y + dy;
            if sy < 0 || sy >= hi {
                row.fill(0.0);
                continue;
            }
            let src_row = &src[base + (sy as usize) * w..base + (sy as usize + 1) * w];
            // Columns x with 0 <= x + dx < w.
            let x0 = (-dx).clamp(0, wi) as usize;
            let x1 = (wi - dx).clamp(0, wi) as usize;
            if x0 >= x1 {
                row.fill(0.0);
                continue;
            }
            row[..x0].fill(0.0);
            row[x1..].fill(0.0);
            let s0 = (x0 as isize + dx) as usize;
            row[x0..x1].copy_from_slice(&src_row[s0..s0 + (x1 - x0)]);
        }
    }
}
