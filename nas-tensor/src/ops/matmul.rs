//! Matrix product and the linear (fully connected) layer op, through the backend's GEMM.

use nas_kernels::{Matmul, ReduceOp};

use crate::error::{Result, shape_err};
use crate::storage::{self, Storage};
use crate::tensor::{Tensor, check_same_device};

fn gemm(p: Matmul, a: &Storage, b: &Storage, c: &mut Storage) -> Result<()> {
    storage::matmul(&p, a, b, c)
}

impl Tensor {
    /// Matrix product of `[m, k]` and `[k, n]` tensors.
    pub fn matmul(&self, other: &Tensor) -> Result<Tensor> {
        check_same_device("matmul", self, other)?;
        let (a, b) = (self.shape(), other.shape());
        if a.len() != 2 || b.len() != 2 || a[1] != b[0] {
            return shape_err("matmul", format!("need [m, k] x [k, n], got {a:?} x {b:?}"));
        }
        let (m, k, n) = (a[0], a[1], b[1]);
        let mut out = Storage::zeros(self.device(), m * n)?;
        gemm(Matmul::new(m, n, k), &self.read(), &other.read(), &mut out)?;
        let (ac, bc) = (self.clone(), other.clone());
        Ok(Tensor::from_op(
            "matmul",
            vec![m, n],
            out,
            &[self, other],
            move |g, needs| {
                let mut ga = None;
                if needs[0] {
                    // dA = G B^T : [m, n] x [n, k]
                    let mut d = Storage::zeros(g.device(), m * k)?;
                    gemm(
                        Matmul::new(m, k, n).transpose(false, true),
                        g,
                        &bc.read(),
                        &mut d,
                    )?;
                    ga = Some(d);
                }
                let mut gb = None;
                if needs[1] {
                    // dB = A^T G : [k, m] x [m, n]
                    let mut d = Storage::zeros(g.device(), k * n)?;
                    gemm(
                        Matmul::new(k, n, m).transpose(true, false),
                        &ac.read(),
                        g,
                        &mut d,
                    )?;
                    gb = Some(d);
                }
                Ok(vec![ga, gb])
            },
        ))
    }

    /// Fully connected layer: `self [n, in] x weight[out, in]^T + bias[out]` (PyTorch layout).
    pub fn linear(&self, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
        check_same_device("linear", self, weight)?;
        let (x, w) = (self.shape(), weight.shape());
        if x.len() != 2 || w.len() != 2 || x[1] != w[1] {
            return shape_err(
                "linear",
                format!("need input [n, in] and weight [out, in], got {x:?} and {w:?}"),
            );
        }
        let (n, fin, fout) = (x[0], x[1], w[0]);
        if let Some(b) = bias {
            check_same_device("linear", self, b)?;
            if b.shape() != [fout] {
                return shape_err(
                    "linear",
                    format!("bias must be [{fout}], got {:?}", b.shape()),
                );
            }
        }
        let mut out = Storage::zeros(self.device(), n * fout)?;
        let mut beta = 0.0;
        if let Some(b) = bias {
            storage::broadcast_to(&b.read(), &[fout], &[n, fout], &mut out)?;
            beta = 1.0;
        }
        gemm(
            Matmul::new(n, fout, fin)
                .transpose(false, true)
                .scale(1.0, beta),
            &self.read(),
            &weight.read(),
            &mut out,
        )?;
        let (xc, wc) = (self.clone(), weight.clone());
        let mut parents = vec![self, weight];
        if let Some(b) = bias {
            parents.push(b);
        }
        let has_bias = bias.is_some();
        Ok(Tensor::from_op(
            "linear",
            vec![n, fout],
            out,
            &parents,
            move |g, needs| {
                let mut grads = vec![None, None];
                if needs[0] {
                    let mut d = Storage::zeros(g.device(), n * fin)?;
                    gemm(Matmul::new(n, fin, fout), g, &wc.read(), &mut d)?;
                    grads[0] = Some(d);
                }
                if needs[1] {
                    let mut d = Storage::zeros(g.device(), fout * fin)?;
                    gemm(
                        Matmul::new(fout, fin, n).transpose(true, false),
                        g,
                        &xc.read(),
                        &mut d,
                    )?;
                    grads[1] = Some(d);
                }
                if has_bias {
                    let mut gb = None;
                    if needs[2] {
                        let mut d = Storage::zeros(g.device(), fout)?;
                        storage::reduce(ReduceOp::Sum, g, &[n, fout], Some(0), &mut d)?;
                        gb = Some(d);
                    }
                    grads.push(gb);
                }
                Ok(grads)
            },
        ))
    }
}
