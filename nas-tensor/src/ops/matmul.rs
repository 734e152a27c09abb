//! Matrix product and the linear (fully connected) layer op, through `nas_kernels::gemm::sgemm`.

use nas_kernels::gemm::sgemm;

use crate::buf::Buf;
use crate::error::{Result, shape_err};
use crate::tensor::{Tensor, check_same_device};

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
        sgemm(
            false,
            false,
            m,
            n,
            k,
            1.0,
            &self.read(),
            k,
            &other.read(),
            n,
            0.0,
            &mut out,
            n,
        );
        let (ac, bc) = (self.clone(), other.clone());
        Ok(Tensor::from_op(
            "matmul",
            vec![m, n],
            self.device(),
            out,
            &[self, other],
            move |g, needs| {
                let ga = needs[0].then(|| {
                    // dA = G B^T : [m, n] x [n, k]
                    let mut ga = Buf::zeros(m * k);
                    sgemm(
                        false,
                        true,
                        m,
                        k,
                        n,
                        1.0,
                        g,
                        n,
                        &bc.read(),
                        n,
                        0.0,
                        &mut ga,
                        k,
                    );
                    ga
                });
                let gb = needs[1].then(|| {
                    // dB = A^T G : [k, m] x [m, n]
                    let mut gb = Buf::zeros(k * n);
                    sgemm(
                        true,
                        false,
                        k,
                        n,
                        m,
                        1.0,
                        &ac.read(),
                        k,
                        g,
                        n,
                        0.0,
                        &mut gb,
                        n,
                    );
                    gb
                });
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
        if let Some(b) = bias {
            let bd = b.read();
            for row in out.chunks_mut(fout) {
                row.copy_from_slice(&bd);
            }
        }
        let beta = if bias.is_some() { 1.0 } else { 0.0 };
        sgemm(
            false,
            true,
            n,
            fout,
            fin,
            1.0,
            &self.read(),
            fin,
            &weight.read(),
            fin,
            beta,
            &mut out,
            fout,
        );
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
                let gx = needs[0].then(|| {
                    let mut gx = Buf::zeros(n * fin);
                    sgemm(
                        false,
                        false,
                        n,
                        fin,
                        fout,
                        1.0,
                        g,
                        fout,
                        &wc.read(),
                        fin,
                        0.0,
                        &mut gx,
                        fin,
                    );
                    gx
                });
                let gw = needs[1].then(|| {
                    let mut gw = Buf::zeros(fout * fin);
                    sgemm(
                        true,
                        false,
                        fout,
                        fin,
                        n,
                        1.0,
                        g,
                        fout,
                        &xc.read(),
                        fin,
                        0.0,
                        &mut gw,
                        fin,
                    );
                    gw
                });
                let mut grads = vec![gx, gw];
                if has_bias {
                    grads.push(needs[2].then(|| {
                        let mut gb = Buf::zeros(fout);
                        for row in g.chunks(fout) {
                            gb.iter_mut().zip(row).for_each(|(a, b)| *a += b);
                        }
                        gb
                    }));
                }
                Ok(grads)
            },
        ))
    }
}
