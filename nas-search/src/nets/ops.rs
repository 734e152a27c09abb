//! Candidate operations of cell-based spaces as [`Module`]s, defined as in the original codes
//! (NAS-Bench-201's `cell_operations.py`, DARTS' `operations.py`).
//!
//! | name | module | parameters |
//! |---|---|---|
//! | `none` | [`Zero`]: zeros of the output shape (stride-aware, `c_out` channels) | 0 |
//! | `skip_connect` | identity; [`FactorizedReduce`] when stride 2 or `c_in != c_out` | FR: `c_in*c_out + 2*c_out` |
//! | `nor_conv_1x1`, `nor_conv_3x3` | [`ReLUConvBN`] (ReLU, conv without bias, BN) | `k*k*c_in*c_out + 2*c_out` |
//! | `avg_pool_3x3` | [`Pool`]: 3x3 average pool, padding 1, `count_include_pad = false` | 0 (plus a 1x1 ReLUConvBN when `c_in != c_out`, as NB201) |
//! | `max_pool_3x3` | [`Pool`]: 3x3 max pool, padding 1 | 0 (idem) |
//! | `sep_conv_3x3/5x5/7x7` | [`SepConv`]: (ReLU, depthwise conv, pointwise conv, BN) twice | `2*k*k*c_in + c_in*c_in + c_in*c_out` + BN `2*c_in + 2*c_out` |
//! | `dil_conv_3x3/5x5` | [`DilConv`]: ReLU, dilated (2) depthwise conv, pointwise conv, BN | `k*k*c_in + c_in*c_out + 2*c_out` |
//!
//! `affine = false` gives batch norms without scale and shift (the DARTS supernet); running
//! statistics are always tracked. Convolutions never have a bias (the original codes use
//! `bias = False` in DARTS and `bias = not affine` in NB201, whose benchmark networks are
//! affine). Parameter names follow PyTorch's module paths (`op.1.weight`, `conv_1.weight`,
//! `bn.running_mean`), so state dicts line up with the original models.
//!
//! The constructor by name is [`build_op`]; typed shortcuts are [`nb201_op`] and
//! [`darts_op`]. The stride must be 1 or 2.

use super::flops::{CountedConv2d, conv_forward, record_conv_out};
use nas_space::darts::DartsOp;
use nas_space::nb201::Nb201Op;
use nas_tensor::nn::{
    AvgPool2d, BatchNorm2d, Conv2d, Identity, MaxPool2d, Module, ReLU, Sequential,
};
use nas_tensor::{ConvOptions, Result, Tensor, TensorError};
use rand_chacha::ChaCha8Rng;

/// Every op name [`build_op`] accepts.
pub const OP_NAMES: [&str; 11] = [
    "none",
    "skip_connect",
    "nor_conv_1x1",
    "nor_conv_3x3",
    "avg_pool_3x3",
    "max_pool_3x3",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "sep_conv_7x7",
    "dil_conv_3x3",
    "dil_conv_5x5",
];

fn invalid(op: &'static str, detail: impl Into<String>) -> TensorError {
    TensorError::InvalidArgument {
        op,
        detail: detail.into(),
    }
}

fn check_stride(op: &'static str, stride: usize) -> Result<()> {
    if stride == 1 || stride == 2 {
        Ok(())
    } else {
        Err(invalid(op, format!("stride must be 1 or 2, got {stride}")))
    }
}

fn check_channels(op: &'static str, c_in: usize, c_out: usize) -> Result<()> {
    if c_in == 0 || c_out == 0 {
        Err(invalid(
            op,
            format!("channels must be positive, got c_in {c_in}, c_out {c_out}"),
        ))
    } else {
        Ok(())
    }
}

fn raw_conv(
    c_in: usize,
    c_out: usize,
    k: usize,
    options: ConvOptions,
    rng: &mut ChaCha8Rng,
) -> Result<Conv2d> {
    Conv2d::new(c_in, c_out, k, options, false, rng)
}

/// A bias-free convolution whose forward pass is FLOP-counted.
fn conv(
    c_in: usize,
    c_out: usize,
    k: usize,
    options: ConvOptions,
    rng: &mut ChaCha8Rng,
) -> Result<CountedConv2d> {
    Ok(CountedConv2d(raw_conv(c_in, c_out, k, options, rng)?))
}

/// ReLU, `k x k` convolution (no bias), batch norm: NB201's `nor_conv_kxk` and DARTS' cell
/// preprocessing. Parameters `op.1.weight`, `op.2.{weight,bias}` (the indices of PyTorch's
/// `Sequential(ReLU, Conv2d, BatchNorm2d)`). The ReLU and the convolution run as one
/// [`Tensor::relu_conv2d`] op: the same values without a ReLU'd activation kept per block.
pub struct ReLUConvBN {
    conv: Conv2d,
    bn: BatchNorm2d,
}

impl ReLUConvBN {
    /// `c_in -> c_out`, kernel `k`, with stride, padding and dilation as given.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        c_in: usize,
        c_out: usize,
        k: usize,
        stride: usize,
        padding: usize,
        dilation: usize,
        affine: bool,
        rng: &mut ChaCha8Rng,
    ) -> Result<ReLUConvBN> {
        check_channels("ReLUConvBN", c_in, c_out)?;
        let o = ConvOptions::default()
            .stride(stride)
            .padding(padding)
            .dilation(dilation);
        Ok(ReLUConvBN {
            conv: raw_conv(c_in, c_out, k, o, rng)?,
            bn: BatchNorm2d::new(c_out, affine),
        })
    }

    /// The same layers as three separate modules, `Sequential(ReLU, Conv2d, BatchNorm2d)`
    /// (same names and values), for callers that take the ReLU out (the NB201 supernet applies
    /// one ReLU shared by all the ops of an edge).
    pub fn into_sequential(self) -> Sequential {
        Sequential::new()
            .push(ReLU::new())
            .push(CountedConv2d(self.conv))
            .push(self.bn)
    }
}

impl Module for ReLUConvBN {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let c = &self.conv;
        let y = x.relu_conv2d(&c.weight, c.options)?;
        record_conv_out(c, y.shape());
        self.bn.forward(&y)
    }
    fn children(&self, f: &mut dyn FnMut(&str, &dyn Module)) {
        f("op.1", &self.conv);
        f("op.2", &self.bn);
    }
}

/// ReLU, two bias-free convolutions, BN: the block DARTS' separable and dilated convolutions
/// are made of. The ReLU and both convolutions run as one [`Tensor::relu_conv_conv`] op, which
/// keeps only the block's input for backward (the ReLU and first-convolution outputs are
/// recomputed there), so a block holds one activation (its BN output) instead of four.
struct ReluConvConvBn {
    first: Conv2d,
    second: Conv2d,
    bn: BatchNorm2d,
}

impl ReluConvConvBn {
    fn new(first: Conv2d, second: Conv2d, c_out: usize, affine: bool) -> ReluConvConvBn {
        ReluConvConvBn {
            first,
            second,
            bn: BatchNorm2d::new(c_out, affine),
        }
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (a, b) = (&self.first, &self.second);
        let y = x.relu_conv_conv(&a.weight, a.options, &b.weight, b.options)?;
        // the FLOP count of both convolutions (the first's output has `y`'s size: the second
        // is 1x1 with stride 1)
        let s = y.shape();
        record_conv_out(a, &[s[0], a.weight.shape()[0], s[2], s[3]]);
        record_conv_out(b, s);
        self.bn.forward(&y)
    }

    /// Its layers as children `op.<first>`, `op.<first + 1>`, `op.<first + 2>`: the indices
    /// they have in DARTS' `nn.Sequential`.
    fn children(&self, first: usize, f: &mut dyn FnMut(&str, &dyn Module)) {
        f(&format!("op.{first}"), &self.first);
        f(&format!("op.{}", first + 1), &self.second);
        f(&format!("op.{}", first + 2), &self.bn);
    }
}

/// DARTS' separable convolution: (ReLU, depthwise `k x k` conv, pointwise conv, BN) twice;
/// the first depthwise conv carries the stride, the first block keeps `c_in` channels.
/// Parameters as in DARTS' `nn.Sequential`: `op.1.weight`, `op.2.weight`, `op.3.*`,
/// `op.5.weight`, `op.6.weight`, `op.7.*`. Each half runs as one ReLU-conv-conv op (see
/// [`Tensor::relu_conv_conv`]): same values, a quarter of the activations kept for backward.
pub struct SepConv {
    blocks: [ReluConvConvBn; 2],
}

impl SepConv {
    /// `c_in -> c_out`, kernel `k` (odd), padding `k / 2`.
    pub fn new(
        c_in: usize,
        c_out: usize,
        k: usize,
        stride: usize,
        affine: bool,
        rng: &mut ChaCha8Rng,
    ) -> Result<SepConv> {
        check_channels("SepConv", c_in, c_out)?;
        check_stride("SepConv", stride)?;
        let pad = k / 2;
        let dw1 = ConvOptions::default()
            .stride(stride)
            .padding(pad)
            .groups(c_in);
        let dw2 = ConvOptions::default().padding(pad).groups(c_in);
        // drawn in the order of the layers
        let first = ReluConvConvBn::new(
            raw_conv(c_in, c_in, k, dw1, rng)?,
            raw_conv(c_in, c_in, 1, ConvOptions::default(), rng)?,
            c_in,
            affine,
        );
        let second = ReluConvConvBn::new(
            raw_conv(c_in, c_in, k, dw2, rng)?,
            raw_conv(c_in, c_out, 1, ConvOptions::default(), rng)?,
            c_out,
            affine,
        );
        Ok(SepConv {
            blocks: [first, second],
        })
    }
}

impl Module for SepConv {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.blocks[0].forward(x)?;
        self.blocks[1].forward(&h)
    }
    fn children(&self, f: &mut dyn FnMut(&str, &dyn Module)) {
        self.blocks[0].children(1, f);
        self.blocks[1].children(5, f);
    }
}

/// DARTS' dilated convolution: ReLU, depthwise `k x k` conv with dilation 2 (padding `k - 1`),
/// pointwise conv, BN. Parameters `op.1.weight`, `op.2.weight`, `op.3.*`; the ReLU and the two
/// convolutions run as one op (see [`SepConv`]).
pub struct DilConv {
    block: ReluConvConvBn,
}

impl DilConv {
    /// `c_in -> c_out`, kernel `k` (odd), dilation 2.
    pub fn new(
        c_in: usize,
        c_out: usize,
        k: usize,
        stride: usize,
        affine: bool,
        rng: &mut ChaCha8Rng,
    ) -> Result<DilConv> {
        check_channels("DilConv", c_in, c_out)?;
        check_stride("DilConv", stride)?;
        let dw = ConvOptions::default()
            .stride(stride)
            .padding(k - 1)
            .dilation(2)
            .groups(c_in);
        let block = ReluConvConvBn::new(
            raw_conv(c_in, c_in, k, dw, rng)?,
            raw_conv(c_in, c_out, 1, ConvOptions::default(), rng)?,
            c_out,
            affine,
        );
        Ok(DilConv { block })
    }
}

impl Module for DilConv {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.block.forward(x)
    }
    fn children(&self, f: &mut dyn FnMut(&str, &dyn Module)) {
        self.block.children(1, f);
    }
}

/// Factorized reduction: ReLU, then for stride 2 two 1x1 stride-2 convolutions, one on the
/// input and one on the input shifted by one pixel (right/bottom zero padded, as NB201; equal to
/// DARTS' `x[:, :, 1:, 1:]` for even sizes), their outputs concatenated (`c_out / 2` and
/// `c_out - c_out / 2` channels), then BN. For stride 1 (a channel change) one 1x1 conv.
/// Parameters `conv_1.weight`, `conv_2.weight` (stride 2 only), `bn.*`.
pub struct FactorizedReduce {
    /// First convolution (all of `c_out` when the stride is 1).
    pub conv_1: Conv2d,
    /// Second convolution on the shifted input (stride 2 only).
    pub conv_2: Option<Conv2d>,
    /// The batch norm over the `c_out` concatenated channels.
    pub bn: BatchNorm2d,
}

impl FactorizedReduce {
    /// `c_in -> c_out` with stride 1 or 2 (`c_out >= 2` for stride 2).
    pub fn new(
        c_in: usize,
        c_out: usize,
        stride: usize,
        affine: bool,
        rng: &mut ChaCha8Rng,
    ) -> Result<FactorizedReduce> {
        check_channels("FactorizedReduce", c_in, c_out)?;
        check_stride("FactorizedReduce", stride)?;
        let (conv_1, conv_2) = if stride == 2 {
            if c_out < 2 {
                return Err(invalid(
                    "FactorizedReduce",
                    format!("stride 2 needs c_out >= 2, got {c_out}"),
                ));
            }
            let o = ConvOptions::default().stride(2);
            let a = c_out / 2;
            (
                raw_conv(c_in, a, 1, o, rng)?,
                Some(raw_conv(c_in, c_out - a, 1, o, rng)?),
            )
        } else {
            (raw_conv(c_in, c_out, 1, ConvOptions::default(), rng)?, None)
        };
        Ok(FactorizedReduce {
            conv_1,
            conv_2,
            bn: BatchNorm2d::new(c_out, affine),
        })
    }
}

/// `x` shifted up-left by one pixel with a zero row/column at the bottom/right, only as far
/// as a stride-2 1x1 convolution reads it: for even sides the padding is never read, so the
/// slice is returned unpadded.
fn shift_for_stride2(x: &Tensor) -> Result<Tensor> {
    let s = x.shape().to_vec();
    if s.len() != 4 || s[2] < 2 || s[3] < 2 {
        return Err(TensorError::Shape {
            op: "FactorizedReduce",
            detail: format!("need an NCHW input at least 2x2, got {s:?}"),
        });
    }
    let (n, c, h, w) = (s[0], s[1], s[2], s[3]);
    let mut y = x.narrow(2, 1, h - 1)?.narrow(3, 1, w - 1)?;
    if h % 2 == 1 {
        let z = Tensor::zeros_on(&[n, c, 1, w - 1], x.device())?;
        y = Tensor::concat(&[y, z], 2)?;
    }
    if w % 2 == 1 {
        let hh = y.shape()[2];
        let z = Tensor::zeros_on(&[n, c, hh, 1], x.device())?;
        y = Tensor::concat(&[y, z], 3)?;
    }
    Ok(y)
}

impl FactorizedReduce {
    /// What the convolutions read, computed from the input `x` alone: its ReLU and, for
    /// stride 2, the ReLU shifted by one pixel. Factorized reductions on the same input can
    /// share them ([`FactorizedReduce::forward_inputs`]): the DARTS supernet's four stride-2
    /// `skip_connect` edges out of one state keep one copy instead of four.
    pub fn inputs(&self, x: &Tensor) -> Result<(Tensor, Option<Tensor>)> {
        let rx = x.relu();
        let shifted = match self.conv_2 {
            Some(_) => Some(shift_for_stride2(&rx)?),
            None => None,
        };
        Ok((rx, shifted))
    }

    /// The forward pass from [`FactorizedReduce::inputs`] of the input (same values as
    /// `forward`).
    pub fn forward_inputs(&self, rx: &Tensor, shifted: Option<&Tensor>) -> Result<Tensor> {
        let out = match (&self.conv_2, shifted) {
            (None, _) => conv_forward(&self.conv_1, rx)?,
            (Some(c2), Some(sh)) => {
                let a = conv_forward(&self.conv_1, rx)?;
                let b = conv_forward(c2, sh)?;
                Tensor::concat(&[a, b], 1)?
            }
            (Some(_), None) => {
                return Err(invalid(
                    "FactorizedReduce",
                    "stride 2 needs the shifted input (see FactorizedReduce::inputs)",
                ));
            }
        };
        self.bn.forward(&out)
    }
}

impl Module for FactorizedReduce {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (rx, shifted) = self.inputs(x)?;
        self.forward_inputs(&rx, shifted.as_ref())
    }
    fn children(&self, f: &mut dyn FnMut(&str, &dyn Module)) {
        f("conv_1", &self.conv_1);
        if let Some(c2) = &self.conv_2 {
            f("conv_2", c2);
        }
        f("bn", &self.bn);
    }
}

/// The `none` op: zeros with `c_out` channels and the spatial size a stride-`stride` 3x3
/// op with padding 1 would produce (`ceil(h / stride)`). Records no graph.
#[derive(Debug, Clone)]
pub struct Zero {
    /// Output channels.
    pub c_out: usize,
    /// 1 or 2.
    pub stride: usize,
}

impl Zero {
    /// The zero op.
    pub fn new(c_out: usize, stride: usize) -> Result<Zero> {
        check_stride("Zero", stride)?;
        check_channels("Zero", c_out, c_out)?;
        Ok(Zero { c_out, stride })
    }
}

impl Module for Zero {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match *x.shape() {
            [n, _, h, w] => Tensor::zeros_on(
                &[
                    n,
                    self.c_out,
                    h.div_ceil(self.stride),
                    w.div_ceil(self.stride),
                ],
                x.device(),
            ),
            _ => Err(TensorError::Shape {
                op: "Zero",
                detail: format!("need an NCHW input, got {:?}", x.shape()),
            }),
        }
    }
}

/// Whether a pool is an average or a max pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolKind {
    /// `avg_pool_3x3` (`count_include_pad = false`).
    Avg,
    /// `max_pool_3x3`.
    Max,
}

/// A 3x3 pool with padding 1, preceded (NB201's `POOLING`) by a 1x1 [`ReLUConvBN`] when the
/// channel count changes. Parameters `preprocess.op.*` when present.
pub struct Pool {
    /// The channel-changing 1x1 ReLU-conv-BN, if `c_in != c_out`.
    pub preprocess: Option<ReLUConvBN>,
    /// The pool.
    pub pool: Box<dyn Module>,
}

impl Pool {
    /// A 3x3 pool `c_in -> c_out` with the given stride.
    pub fn new(
        kind: PoolKind,
        c_in: usize,
        c_out: usize,
        stride: usize,
        affine: bool,
        rng: &mut ChaCha8Rng,
    ) -> Result<Pool> {
        check_channels("Pool", c_in, c_out)?;
        check_stride("Pool", stride)?;
        let preprocess = if c_in != c_out {
            Some(ReLUConvBN::new(c_in, c_out, 1, 1, 0, 1, affine, rng)?)
        } else {
            None
        };
        let pool: Box<dyn Module> = match kind {
            PoolKind::Avg => Box::new(AvgPool2d::new(3, stride, 1)),
            PoolKind::Max => Box::new(MaxPool2d::new(3, stride, 1)),
        };
        Ok(Pool { preprocess, pool })
    }
}

impl Module for Pool {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match &self.preprocess {
            Some(p) => self.pool.forward(&p.forward(x)?),
            None => self.pool.forward(x),
        }
    }
    fn children(&self, f: &mut dyn FnMut(&str, &dyn Module)) {
        if let Some(p) = &self.preprocess {
            f("preprocess", p);
        }
    }
}

/// NB201's ResNet basic block joining two stages: `conv_a` = ReLUConvBN 3x3 with the stride,
/// `conv_b` = ReLUConvBN 3x3, plus a shortcut: for stride 2 `downsample` = 2x2 average pool
/// (stride 2) then a 1x1 conv without bias and without BN (`downsample.1.weight`); for a
/// channel change at stride 1 a 1x1 ReLUConvBN; otherwise the identity. Output = shortcut +
/// `conv_b(conv_a(x))`.
pub struct ResNetBasicBlock {
    /// First 3x3 ReLU-conv-BN (carries the stride).
    pub conv_a: ReLUConvBN,
    /// Second 3x3 ReLU-conv-BN.
    pub conv_b: ReLUConvBN,
    /// The shortcut, `None` for the identity.
    pub downsample: Option<Box<dyn Module>>,
}

impl ResNetBasicBlock {
    /// A block `c_in -> c_out` with stride 1 or 2 (batch norms affine, as NB201).
    pub fn new(
        c_in: usize,
        c_out: usize,
        stride: usize,
        rng: &mut ChaCha8Rng,
    ) -> Result<ResNetBasicBlock> {
        check_stride("ResNetBasicBlock", stride)?;
        let conv_a = ReLUConvBN::new(c_in, c_out, 3, stride, 1, 1, true, rng)?;
        let conv_b = ReLUConvBN::new(c_out, c_out, 3, 1, 1, 1, true, rng)?;
        let downsample: Option<Box<dyn Module>> = if stride == 2 {
            Some(Box::new(
                Sequential::new().push(AvgPool2d::new(2, 2, 0)).push(conv(
                    c_in,
                    c_out,
                    1,
                    ConvOptions::default(),
                    rng,
                )?),
            ))
        } else if c_in != c_out {
            Some(Box::new(ReLUConvBN::new(
                c_in, c_out, 1, 1, 0, 1, true, rng,
            )?))
        } else {
            None
        };
        Ok(ResNetBasicBlock {
            conv_a,
            conv_b,
            downsample,
        })
    }
}

impl Module for ResNetBasicBlock {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let b = self.conv_b.forward(&self.conv_a.forward(x)?)?;
        match &self.downsample {
            Some(d) => d.forward(x)?.add(&b),
            None => x.add(&b),
        }
    }
    fn children(&self, f: &mut dyn FnMut(&str, &dyn Module)) {
        f("conv_a", &self.conv_a);
        f("conv_b", &self.conv_b);
        if let Some(d) = &self.downsample {
            f("downsample", d);
        }
    }
}

/// Builds the op called `name` (one of [`OP_NAMES`]) from `c_in` to `c_out` channels with
/// `stride` (1 or 2) and affine or plain batch norms, weights drawn from `rng`.
///
/// `c_in != c_out` is allowed for the NB201 ops (`none`, `skip_connect`, `nor_conv_*`,
/// pools) and the DARTS convolutions; unknown names are an error listing the valid ones.
pub fn build_op(
    name: &str,
    c_in: usize,
    c_out: usize,
    stride: usize,
    affine: bool,
    rng: &mut ChaCha8Rng,
) -> Result<Box<dyn Module>> {
    check_stride("build_op", stride)?;
    check_channels("build_op", c_in, c_out)?;
    Ok(match name {
        "none" => Box::new(Zero::new(c_out, stride)?),
        "skip_connect" => {
            if stride == 1 && c_in == c_out {
                Box::new(Identity::new())
            } else {
                Box::new(FactorizedReduce::new(c_in, c_out, stride, affine, rng)?)
            }
        }
        "nor_conv_1x1" => Box::new(ReLUConvBN::new(c_in, c_out, 1, stride, 0, 1, affine, rng)?),
        "nor_conv_3x3" => Box::new(ReLUConvBN::new(c_in, c_out, 3, stride, 1, 1, affine, rng)?),
        "avg_pool_3x3" => Box::new(Pool::new(PoolKind::Avg, c_in, c_out, stride, affine, rng)?),
        "max_pool_3x3" => Box::new(Pool::new(PoolKind::Max, c_in, c_out, stride, affine, rng)?),
        "sep_conv_3x3" => Box::new(SepConv::new(c_in, c_out, 3, stride, affine, rng)?),
        "sep_conv_5x5" => Box::new(SepConv::new(c_in, c_out, 5, stride, affine, rng)?),
        "sep_conv_7x7" => Box::new(SepConv::new(c_in, c_out, 7, stride, affine, rng)?),
        "dil_conv_3x3" => Box::new(DilConv::new(c_in, c_out, 3, stride, affine, rng)?),
        "dil_conv_5x5" => Box::new(DilConv::new(c_in, c_out, 5, stride, affine, rng)?),
        other => {
            return Err(invalid(
                "build_op",
                format!("unknown op {other:?}; expected one of {OP_NAMES:?}"),
            ));
        }
    })
}

/// The NAS-Bench-201 edge op `op` at `c` channels, stride 1, affine (as in the benchmark's
/// networks).
pub fn nb201_op(op: Nb201Op, c: usize, rng: &mut ChaCha8Rng) -> Result<Box<dyn Module>> {
    build_op(op.as_str(), c, c, 1, true, rng)
}

/// The DARTS op `op` at `c` channels with `stride` and `affine` (`None` builds `none`).
pub fn darts_op(
    op: Option<DartsOp>,
    c: usize,
    stride: usize,
    affine: bool,
    rng: &mut ChaCha8Rng,
) -> Result<Box<dyn Module>> {
    build_op(
        op.map_or("none", DartsOp::as_str),
        c,
        c,
        stride,
        affine,
        rng,
    )
}

/// Number of parameters of [`build_op`]`(name, c_in, c_out, stride, affine)` without building
/// it; `None` for an unknown name.
pub fn op_params(
    name: &str,
    c_in: usize,
    c_out: usize,
    stride: usize,
    affine: bool,
) -> Option<u64> {
    let (ci, co) = (c_in as u64, c_out as u64);
    let bn = |c: u64| if affine { 2 * c } else { 0 };
    let rcb = |k: u64| k * k * ci * co + bn(co);
    let sep = |k: u64| 2 * k * k * ci + ci * ci + ci * co + bn(ci) + bn(co);
    let dil = |k: u64| k * k * ci + ci * co + bn(co);
    Some(match name {
        "none" => 0,
        "skip_connect" if stride == 1 && c_in == c_out => 0,
        "skip_connect" => ci * co + bn(co),
        "nor_conv_1x1" => rcb(1),
        "nor_conv_3x3" => rcb(3),
        "avg_pool_3x3" | "max_pool_3x3" if c_in == c_out => 0,
        "avg_pool_3x3" | "max_pool_3x3" => rcb(1),
        "sep_conv_3x3" => sep(3),
        "sep_conv_5x5" => sep(5),
        "sep_conv_7x7" => sep(7),
        "dil_conv_3x3" => dil(3),
        "dil_conv_5x5" => dil(5),
        _ => return None,
    })
}

/// Multiply-accumulates of [`build_op`]`(name, c_in, c_out, stride, ..)` on one `h x w`
/// input image, counting convolutions only (`k*k*c_in/groups*c_out*h_out*w_out`; batch norm,
/// ReLU, pools and sums count 0, as NAS-Bench-201's convention); `None` for an unknown name.
pub fn op_flops(
    name: &str,
    c_in: usize,
    c_out: usize,
    stride: usize,
    h: usize,
    w: usize,
) -> Option<u64> {
    let (ci, co) = (c_in as u64, c_out as u64);
    let px_s = (h.div_ceil(stride) * w.div_ceil(stride)) as u64;
    let px_1 = (h * w) as u64;
    Some(match name {
        "none" => 0,
        "skip_connect" if stride == 1 && c_in == c_out => 0,
        "skip_connect" => ci * co * px_s,
        "nor_conv_1x1" => ci * co * px_s,
        "nor_conv_3x3" => 9 * ci * co * px_s,
        "avg_pool_3x3" | "max_pool_3x3" if c_in == c_out => 0,
        "avg_pool_3x3" | "max_pool_3x3" => ci * co * px_1,
        "sep_conv_3x3" | "sep_conv_5x5" | "sep_conv_7x7" => {
            let k: u64 = name[9..10].parse().ok()?;
            k * k * ci * px_s + ci * ci * px_s + k * k * ci * px_s + ci * co * px_s
        }
        "dil_conv_3x3" | "dil_conv_5x5" => {
            let k: u64 = name[9..10].parse().ok()?;
            k * k * ci * px_s + ci * co * px_s
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn rng() -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(7)
    }

    #[test]
    fn every_op_has_the_right_shape_and_parameter_count() {
        for &name in OP_NAMES.iter() {
            for &(c_in, c_out) in &[(4usize, 4usize), (4, 6)] {
                for stride in [1usize, 2] {
                    for side in [7usize, 8] {
                        let mut op = build_op(name, c_in, c_out, stride, true, &mut rng()).unwrap();
                        assert_eq!(
                            crate::nets::flops::count_forward_flops(op.as_mut(), c_in, side, side)
                                .unwrap(),
                            op_flops(name, c_in, c_out, stride, side, side).unwrap(),
                            "flops of {name} {c_in}->{c_out} /{stride} {side}"
                        );
                        let x = Tensor::randn(&[2, c_in, side, side], 1);
                        let y = op.forward(&x).unwrap();
                        let s = side.div_ceil(stride);
                        assert_eq!(
                            y.shape(),
                            &[2, c_out, s, s],
                            "{name} {c_in}->{c_out} /{stride} {side}"
                        );
                        assert_eq!(
                            op.num_parameters() as u64,
                            op_params(name, c_in, c_out, stride, true).unwrap(),
                            "{name} {c_in}->{c_out} /{stride}"
                        );
                        let plain = build_op(name, c_in, c_out, stride, false, &mut rng()).unwrap();
                        assert_eq!(
                            plain.num_parameters() as u64,
                            op_params(name, c_in, c_out, stride, false).unwrap()
                        );
                    }
                }
            }
        }
        assert!(build_op("conv_7x1_1x7", 4, 4, 1, true, &mut rng()).is_err());
        assert!(build_op("nor_conv_3x3", 4, 4, 3, true, &mut rng()).is_err());
        assert!(build_op("nor_conv_3x3", 0, 4, 1, true, &mut rng()).is_err());
        assert!(op_params("bogus", 1, 1, 1, true).is_none());
    }

    #[test]
    fn parameter_names_follow_pytorch_paths() {
        let names = |m: &dyn Module| -> Vec<String> {
            m.state_dict().into_iter().map(|(n, _)| n).collect()
        };
        let sep = build_op("sep_conv_3x3", 4, 4, 1, true, &mut rng()).unwrap();
        let n = names(sep.as_ref());
        for expected in [
            "op.1.weight",
            "op.2.weight",
            "op.3.weight",
            "op.3.running_var",
            "op.5.weight",
            "op.6.weight",
            "op.7.bias",
        ] {
            assert!(n.contains(&expected.to_string()), "{expected} not in {n:?}");
        }
        let fr = build_op("skip_connect", 4, 4, 2, false, &mut rng()).unwrap();
        assert_eq!(
            names(fr.as_ref()),
            [
                "conv_1.weight",
                "conv_2.weight",
                "bn.running_mean",
                "bn.running_var"
            ]
        );
        let block = ResNetBasicBlock::new(4, 8, 2, &mut rng()).unwrap();
        let n = names(&block);
        assert!(n.contains(&"downsample.1.weight".to_string()), "{n:?}");
        assert!(n.contains(&"conv_a.op.1.weight".to_string()), "{n:?}");
        // The shortcut conv has no BN and no bias: 4*8; conv_a 9*4*8 + 16; conv_b 9*8*8 + 16.
        assert_eq!(block.num_parameters(), 32 + 288 + 16 + 576 + 16);
    }

    #[test]
    fn relu_conv_bn_and_sep_conv_compute_their_definition() {
        let x = Tensor::randn(&[2, 3, 6, 6], 3);
        let mut r = rng();
        let op = ReLUConvBN::new(3, 5, 3, 2, 1, 1, true, &mut r).unwrap();
        let conv_w = op.state_dict()[0].1.clone();
        let y = op.forward(&x).unwrap();
        let c = x
            .relu()
            .conv2d(&conv_w, None, ConvOptions::default().stride(2).padding(1))
            .unwrap();
        let expected = c
            .batch_norm(None, None, None, None, true, 0.1, 1e-5)
            .unwrap();
        let (a, b) = (y.to_vec().unwrap(), expected.to_vec().unwrap());
        for (p, q) in a.iter().zip(&b) {
            assert!((p - q).abs() < 1e-4, "{p} vs {q}");
        }
    }

    #[test]
    fn factorized_reduce_matches_the_darts_definition_on_even_inputs() {
        let x = Tensor::randn(&[2, 3, 8, 6], 5);
        let fr = FactorizedReduce::new(3, 6, 2, false, &mut rng()).unwrap();
        let y = fr.forward(&x).unwrap();
        let r = x.relu();
        let o = ConvOptions::default().stride(2);
        let a = r.conv2d(&fr.conv_1.weight, None, o).unwrap();
        let shifted = r.narrow(2, 1, 7).unwrap().narrow(3, 1, 5).unwrap();
        let b = shifted
            .conv2d(&fr.conv_2.as_ref().unwrap().weight, None, o)
            .unwrap();
        let cat = Tensor::concat(&[a, b], 1).unwrap();
        let expected = cat
            .batch_norm(None, None, None, None, true, 0.1, 1e-5)
            .unwrap();
        assert_eq!(y.shape(), &[2, 6, 4, 3]);
        for (p, q) in y.to_vec().unwrap().iter().zip(expected.to_vec().unwrap()) {
            assert!((p - q).abs() < 1e-4, "{p} vs {q}");
        }
        // Odd sides: the second half reads the zero padding in its last row/column, so those
        // pre-BN outputs are exactly 0. Check through an eval-mode BN with unit statistics.
        let fr = FactorizedReduce::new(3, 4, 2, false, &mut rng()).unwrap();
        fr.set_training(false);
        let y = fr.forward(&Tensor::randn(&[1, 3, 7, 7], 2)).unwrap();
        assert_eq!(y.shape(), &[1, 4, 4, 4]);
        let v = y.to_vec().unwrap();
        for ch in 2..4 {
            for i in 0..4 {
                assert_eq!(v[ch * 16 + 3 * 4 + i], 0.0);
                assert_eq!(v[ch * 16 + i * 4 + 3], 0.0);
            }
        }
    }

    #[test]
    fn gradients_flow_through_composite_ops() {
        for name in ["sep_conv_3x3", "dil_conv_5x5", "skip_connect"] {
            let op = build_op(name, 4, 4, 2, true, &mut rng()).unwrap();
            let x = Tensor::randn(&[2, 4, 9, 9], 9).requires_grad_();
            let loss = op
                .forward(&x)
                .unwrap()
                .mul(&Tensor::randn(&[2, 4, 5, 5], 4))
                .unwrap()
                .sum();
            loss.backward().unwrap();
            assert!(
                x.grad_vec().unwrap().unwrap().iter().any(|g| *g != 0.0),
                "{name}"
            );
            for (n, p) in op.named_parameters() {
                let g = p.grad_vec().unwrap().unwrap_or_default();
                assert!(g.iter().any(|v| *v != 0.0), "{name}: {n} got no gradient");
            }
        }
    }
}
