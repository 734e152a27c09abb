//! Matrix product and the linear (fully connected) layer op, through the backend's GEMM.

use nas_kernels::{Backend, Matmul, ReduceOp};

use crate::buf::Buf;
use crate::error::{Result, shape_err};
use crate::ops::cpu;
use crate::tensor::{Tensor, check_same_device};

fn gemm(p: Matmul, a: &Buf, b: &Buf, c: &mut Buf) -> Result<()> {
    cpu().matmul(&p, a.as_vec(), b.as_vec(), c.as_vec_mut())?;
    Ok(())
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
        let mut out = Buf::zeros(m * n);
        gemm(Matmul::new(m, n, k), &self.read(), &other.read(), &mut out)?;
        let (ac, bc) = (self.clone(), other.clone());
        Ok(Tensor::from_op(
            "matmul",
            vec![m, n],
            self.device(),
            out,
            &[self, other],
            move |g, needs| {
                let mut ga = None;
                if needs[0] {
                    // dA = G B^T : [m, n] x [n, k]
                    let mut d = Buf::zeros(m * k);
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
                    let mut d = Buf::zeros(k * n);
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
        let mut out = Buf::zeros(n * fout);
        let mut beta = 0.0;
        if let Some(b) = bias {
            cpu().broadcast_to(b.read().as_vec(), &[fout], &[n, fout], out.as_vec_mut())?;
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
            self.device(),
            out,
            &parents,
            move |g, needs| {
                let mut grads = vec![None, None];
                if needs[0] {
                    let mut d = Buf::zeros(n * fin);
                    gemm(Matmul::new(n, fin, fout), g, &wc.read(), &mut d)?;
                    grads[0] = Some(d);
                }
                if needs[1] {
                    let mut d = Buf::zeros(fout * fin);
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
                        let mut d = Buf::zeros(fout);
                        cpu().reduce(
                            ReduceOp::Sum,
                            g.as_vec(),
                            &[n, fout],
                            Some(0),
                            d.as_vec_mut(),
                        )?;
                        gb = Some(d);
                    }
                    grads.push(gb);
                }
                Ok(grads)
            },
        ))
    }
}
