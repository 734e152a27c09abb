//! Strided copies: one description ([`StridedCopy`]) for permutes, slices along a dimension
//! and the scatter of a slice's gradient back into a zeroed tensor.

#[cfg(feature = "cuda")]
pub(crate) mod cuda_kernel;

use crate::error::{KernelError, Result};

/// Copies `dst[dst_offset + sum_i idx_i * dst_strides[i]] = src[src_offset + sum_i idx_i *
/// src_strides[i]]` for every index `idx` of the box `dims` (row-major order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StridedCopy {
    /// Sizes of the index box.
    pub dims: Vec<usize>,
    /// Offset of element `[0, ..., 0]` in the source.
    pub src_offset: usize,
    /// Source stride of each dimension.
    pub src_strides: Vec<usize>,
    /// Offset of element `[0, ..., 0]` in the destination.
    pub dst_offset: usize,
    /// Destination stride of each dimension.
    pub dst_strides: Vec<usize>,
}

/// Row-major strides of a contiguous shape.
pub fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1usize; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        strides[d] = strides[d + 1] * shape[d + 1];
    }
    strides
}

impl StridedCopy {
    /// A contiguous tensor of shape `shape` into the contiguous layout of its dimensions
    /// reordered by `perm` (output dimension `i` is input dimension `perm[i]`).
    pub fn permute(shape: &[usize], perm: &[usize]) -> StridedCopy {
        let strides = contiguous_strides(shape);
        let dims: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
        StridedCopy {
            src_offset: 0,
            src_strides: perm.iter().map(|&p| strides[p]).collect(),
            dst_offset: 0,
            dst_strides: contiguous_strides(&dims),
            dims,
        }
    }

    /// The slice `start..start + len` of dimension `dim` of a contiguous `shape`, copied out
    /// contiguously.
    pub fn narrow(shape: &[usize], dim: usize, start: usize, len: usize) -> StridedCopy {
        let (outer, d, inner) = split(shape, dim);
        StridedCopy {
            dims: vec![outer, len * inner],
            src_offset: start * inner,
            src_strides: vec![d * inner, 1],
            dst_offset: 0,
            dst_strides: vec![len * inner, 1],
        }
    }

    /// The inverse of [`StridedCopy::narrow`]: a contiguous slice written back into its
    /// place in a tensor of shape `shape` (the rest of which is left as it is).
    pub fn unnarrow(shape: &[usize], dim: usize, start: usize, len: usize) -> StridedCopy {
        let n = StridedCopy::narrow(shape, dim, start, len);
        StridedCopy {
            dims: n.dims,
            src_offset: n.dst_offset,
            src_strides: n.dst_strides,
            dst_offset: n.src_offset,
            dst_strides: n.src_strides,
        }
    }

    /// Number of elements copied.
    pub fn numel(&self) -> usize {
        self.dims.iter().product()
    }

    /// One past the largest index read from (`strides` of `src` or `dst`).
    fn extent(&self, offset: usize, strides: &[usize]) -> usize {
        if self.numel() == 0 {
            return 0;
        }
        offset
            + self
                .dims
                .iter()
                .zip(strides)
                .map(|(&d, &s)| (d - 1) * s)
                .sum::<usize>()
            + 1
    }

    /// Checks the description against the buffers' lengths.
    pub fn validate(&self, src_len: usize, dst_len: usize) -> Result<()> {
        let nd = self.dims.len();
        if self.src_strides.len() != nd || self.dst_strides.len() != nd {
            return Err(KernelError::param(
                "copy_strided",
                format!(
                    "{nd} dims with {} source and {} destination strides",
                    self.src_strides.len(),
                    self.dst_strides.len()
                ),
            ));
        }
        let (s, d) = (
            self.extent(self.src_offset, &self.src_strides),
            self.extent(self.dst_offset, &self.dst_strides),
        );
        if s > src_len || d > dst_len {
            return Err(KernelError::param(
                "copy_strided",
                format!(
                    "reads up to {s} of {src_len} source and writes up to {d} of {dst_len} destination elements"
                ),
            ));
        }
        Ok(())
    }
}

fn split(shape: &[usize], dim: usize) -> (usize, usize, usize) {
    let outer: usize = shape[..dim].iter().product();
    let inner: usize = shape[dim + 1..].iter().product();
    (outer, shape[dim], inner)
}

/// The CPU kernel (the description was validated): rows whose last dimension is contiguous
/// on both sides are copied with `copy_from_slice`.
pub(crate) fn cpu_copy(p: &StridedCopy, src: &[f32], dst: &mut [f32]) {
    let n = p.numel();
    if n == 0 {
        return;
    }
    let nd = p.dims.len();
    if nd == 0 {
        dst[p.dst_offset] = src[p.src_offset];
        return;
    }
    let last = nd - 1;
    let row = p.dims[last];
    let (ss, ds) = (p.src_strides[last], p.dst_strides[last]);
    let mut idx = vec![0usize; last];
    let (mut si, mut di) = (p.src_offset, p.dst_offset);
    loop {
        if ss == 1 && ds == 1 {
            dst[di..di + row].copy_from_slice(&src[si..si + row]);
        } else {
            for j in 0..row {
                dst[di + j * ds] = src[si + j * ss];
            }
        }
        // next row (odometer over the leading dimensions)
        let mut d = last;
        loop {
            if d == 0 {
                return;
            }
            d -= 1;
            idx[d] += 1;
            si += p.src_strides[d];
            di += p.dst_strides[d];
            if idx[d] < p.dims[d] {
                break;
            }
            si -= p.src_strides[d] * p.dims[d];
            di -= p.dst_strides[d] * p.dims[d];
            idx[d] = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The naive definition: every index of the box, one at a time.
    fn naive(p: &StridedCopy, src: &[f32], dst: &mut [f32]) {
        let n = p.numel();
        let nd = p.dims.len();
        for flat in 0..n {
            let (mut rem, mut si, mut di) = (flat, p.src_offset, p.dst_offset);
            for d in (0..nd).rev() {
                let i = rem % p.dims[d];
                rem /= p.dims[d];
                si += i * p.src_strides[d];
                di += i * p.dst_strides[d];
            }
            dst[di] = src[si];
        }
    }

    #[test]
    fn permutes_slices_and_scatters_like_the_definition() {
        let shape = [2, 3, 4, 5];
        let src: Vec<f32> = (0..120).map(|i| i as f32).collect();
        let cases = [
            StridedCopy::permute(&shape, &[0, 2, 3, 1]),
            StridedCopy::permute(&shape, &[3, 2, 1, 0]),
            StridedCopy::permute(&shape, &[0, 1, 2, 3]),
            StridedCopy::narrow(&shape, 1, 1, 2),
            StridedCopy::narrow(&shape, 3, 4, 1),
            StridedCopy::narrow(&shape, 0, 1, 1),
        ];
        for p in &cases {
            p.validate(src.len(), p.numel()).unwrap();
            let (mut a, mut b) = (vec![-1.0; p.numel()], vec![-1.0; p.numel()]);
            cpu_copy(p, &src, &mut a);
            naive(p, &src, &mut b);
            assert_eq!(a, b, "{p:?}");
        }
        // [0, 2, 3, 1] moves channels last: element (n, c, h, w) lands at (n, h, w, c)
        let p = StridedCopy::permute(&shape, &[0, 2, 3, 1]);
        let mut out = vec![0.0; 120];
        cpu_copy(&p, &src, &mut out);
        assert_eq!(
            out[((4 + 2) * 5 + 3) * 3 + 1],
            src[((3 + 1) * 4 + 2) * 5 + 3]
        );
        // narrow then unnarrow restores the slice and leaves the rest
        let n = StridedCopy::narrow(&shape, 2, 1, 2);
        let mut part = vec![0.0; n.numel()];
        cpu_copy(&n, &src, &mut part);
        let mut back = vec![0.0; 120];
        let u = StridedCopy::unnarrow(&shape, 2, 1, 2);
        u.validate(part.len(), 120).unwrap();
        cpu_copy(&u, &part, &mut back);
        for (i, (&b, &s)) in back.iter().zip(&src).enumerate() {
            let h = (i / 5) % 4;
            assert_eq!(b, if (1..3).contains(&h) { s } else { 0.0 }, "{i}");
        }
    }

    #[test]
    fn out_of_range_descriptions_are_errors() {
        let p = StridedCopy::narrow(&[2, 3], 1, 1, 2);
        assert!(p.validate(5, 4).is_err());
        assert!(p.validate(6, 3).is_err());
        assert!(p.validate(6, 4).is_ok());
        let mut q = p.clone();
        q.src_strides.pop();
        assert!(q.validate(6, 4).is_err());
    }
}
