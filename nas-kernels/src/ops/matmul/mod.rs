//! Batched matrix multiplication through [`crate::gemm::sgemm`].

#[cfg(feature = "cuda")]
pub(crate) mod cuda_kernel;

/// Parameters of `C[i] = alpha * op(A[i]) * op(B[i]) + beta * C[i]` for `i in 0..batch`, all
/// matrices row-major and contiguous (`A[i]` is `m x k`, or `k x m` when `trans_a`; `B[i]` is
/// `k x n`, or `n x k` when `trans_b`; `C[i]` is `m x n`). With `beta == 0`, `C` is not read.
/// When `b_shared` is set, one `B` is used for every batch element (a weight matrix).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Matmul {
    /// Number of independent products.
    pub batch: usize,
    /// Rows of `op(A)` and `C`.
    pub m: usize,
    /// Columns of `op(B)` and `C`.
    pub n: usize,
    /// Inner dimension.
    pub k: usize,
    /// Use `A` transposed.
    pub trans_a: bool,
    /// Use `B` transposed.
    pub trans_b: bool,
    /// One `B` for all batch elements.
    pub b_shared: bool,
    /// Scale of the product.
    pub alpha: f32,
    /// Scale of the existing `C` (0: overwrite).
    pub beta: f32,
}

impl Matmul {
    /// `C = A * B` with `A: m x k`, `B: k x n`, batch 1.
    pub fn new(m: usize, n: usize, k: usize) -> Self {
        Matmul {
            batch: 1,
            m,
            n,
            k,
            trans_a: false,
            trans_b: false,
            b_shared: false,
            alpha: 1.0,
            beta: 0.0,
        }
    }
    /// Sets `trans_a` and `trans_b`.
    pub fn transpose(mut self, trans_a: bool, trans_b: bool) -> Self {
        self.trans_a = trans_a;
        self.trans_b = trans_b;
        self
    }
    /// Sets `alpha` and `beta`.
    pub fn scale(mut self, alpha: f32, beta: f32) -> Self {
        self.alpha = alpha;
        self.beta = beta;
        self
    }
    /// Sets the batch size (and whether `B` is shared across it).
    pub fn batched(mut self, batch: usize, b_shared: bool) -> Self {
        self.batch = batch;
        self.b_shared = b_shared;
        self
    }
    /// Elements of the `A` buffer.
    pub fn a_len(&self) -> usize {
        self.batch * self.m * self.k
    }
    /// Elements of the `B` buffer.
    pub fn b_len(&self) -> usize {
        if self.b_shared {
            self.k * self.n
        } else {
            self.batch * self.k * self.n
        }
    }
    /// Elements of the `C` buffer.
    pub fn c_len(&self) -> usize {
        self.batch * self.m * self.n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Backend, Cpu};

    #[test]
    fn batched_matmul_matches_naive() {
        for &(batch, m, n, k, ta, tb, shared) in &[
            (1usize, 1usize, 1usize, 1usize, false, false, false),
            (3, 5, 7, 9, false, true, false),
            (2, 4, 3, 6, true, false, true),
            (2, 17, 9, 1, true, true, false),
        ] {
            let p = Matmul::new(m, n, k)
                .transpose(ta, tb)
                .batched(batch, shared)
                .scale(0.5, 2.0);
            let a: Vec<f32> = (0..p.a_len()).map(|i| (i % 7) as f32 - 3.0).collect();
            let b: Vec<f32> = (0..p.b_len()).map(|i| (i % 5) as f32 - 2.0).collect();
            let c0: Vec<f32> = (0..p.c_len()).map(|i| (i % 3) as f32).collect();
            let mut c = c0.clone();
            Cpu.matmul(&p, &a, &b, &mut c).unwrap();
            for bi in 0..batch {
                let ao = bi * m * k;
                let bo = if shared { 0 } else { bi * k * n };
                for i in 0..m {
                    for j in 0..n {
                        let mut s = 0.0;
                        for q in 0..k {
                            let av = if ta {
                                a[ao + q * m + i]
                            } else {
                                a[ao + i * k + q]
                            };
                            let bv = if tb {
                                b[bo + j * k + q]
                            } else {
                                b[bo + q * n + j]
                            };
                            s += av * bv;
                        }
                        let idx = bi * m * n + i * n + j;
                        assert!((c[idx] - (0.5 * s + 2.0 * c0[idx])).abs() < 1e-4);
                    }
                }
            }
            let mut short = vec![0.0; p.c_len() - 1];
            assert!(Cpu.matmul(&p, &a, &b, &mut short).is_err());
        }
    }
}
