//! Tensor storage: a buffer owned by one of the built backends, and the one place where
//! nas-tensor calls a backend.
//!
//! # Why an enum over backends
//! A [`Storage`] is an enum with one variant per backend built into this binary (the CPU,
//! the test-only [`TestBackend`], and CUDA behind its feature), not a type parameter
//! of `Tensor`. Users pick a device at run time (`--device cpu`), networks and strategies
//! stay free of generics, and a tensor can be moved to another device in place (see
//! [`crate::nn::Module::to_device`]). The price is one `match` per kernel call, which is
//! negligible next to the kernels themselves.
//!
//! With the `cuda` feature a `Storage::Cuda` variant holds device memory of a CUDA device
//! (or of the emulated device the tests use); without it, a CUDA device is
//! [`TensorError::DeviceUnavailable`].
//!
//! Every function below dispatches on the device of its first buffer to that backend's
//! method of the same name; a buffer of another backend among its arguments is a
//! [`TensorError::DeviceMismatch`] naming both devices. Ops never see host slices: host
//! access is [`Storage::from_vec`] / [`Storage::to_vec`] only.

use nas_kernels::{
    AdamStep, Backend, BatchNormParams, BinaryOp, Buf, Checked, Conv2dParams, Cpu, Lstm, LstmCell,
    Matmul, Pool2dParams, RandomDist, ReduceOp, Rows, SgdStep, SoftmaxOp, StridedCopy, TestBackend,
    TestBuf, UnaryOp,
};

use crate::Device;
use crate::error::{Result, TensorError};

/// A tensor's values, in the buffer type of the backend that owns them.
#[derive(Debug)]
pub enum Storage {
    /// Host memory of the CPU backend (pooled per thread).
    Cpu(Buf),
    /// The test-only backend's opaque buffer.
    Test(TestBuf),
    /// Device memory of a CUDA device (or of the emulated one, `Device::CudaEmu`).
    #[cfg(feature = "cuda")]
    Cuda(nas_kernels::CudaBuf),
}

/// A backend whose buffers a [`Storage`] can hold.
pub(crate) trait StorageBackend: Backend {
    fn get<'a>(&self, s: &'a Storage) -> Result<&'a Self::Buffer>;
    fn get_mut<'a>(&self, s: &'a mut Storage) -> Result<&'a mut Self::Buffer>;
    fn wrap(b: Self::Owned) -> Storage;
}

fn mismatch(want: Device, got: Device) -> TensorError {
    TensorError::DeviceMismatch {
        op: "storage",
        a: want.to_string(),
        b: got.to_string(),
    }
}

impl StorageBackend for Cpu {
    fn get<'a>(&self, s: &'a Storage) -> Result<&'a [f32]> {
        match s {
            Storage::Cpu(b) => Ok(b),
            other => Err(mismatch(Device::Cpu, other.device())),
        }
    }
    fn get_mut<'a>(&self, s: &'a mut Storage) -> Result<&'a mut [f32]> {
        match s {
            Storage::Cpu(b) => Ok(b),
            other => Err(mismatch(Device::Cpu, other.device())),
        }
    }
    fn wrap(b: Buf) -> Storage {
        Storage::Cpu(b)
    }
}

impl StorageBackend for TestBackend {
    fn get<'a>(&self, s: &'a Storage) -> Result<&'a TestBuf> {
        match s {
            Storage::Test(b) => Ok(b),
            other => Err(mismatch(Device::Test, other.device())),
        }
    }
    fn get_mut<'a>(&self, s: &'a mut Storage) -> Result<&'a mut TestBuf> {
        match s {
            Storage::Test(b) => Ok(b),
            other => Err(mismatch(Device::Test, other.device())),
        }
    }
    fn wrap(b: TestBuf) -> Storage {
        Storage::Test(b)
    }
}

#[cfg(feature = "cuda")]
impl StorageBackend for nas_kernels::Cuda {
    fn get<'a>(&self, s: &'a Storage) -> Result<&'a nas_kernels::CudaBuf> {
        match s {
            Storage::Cuda(b) if b.device() == self.device() => Ok(b),
            other => Err(mismatch(self.device(), other.device())),
        }
    }
    fn get_mut<'a>(&self, s: &'a mut Storage) -> Result<&'a mut nas_kernels::CudaBuf> {
        let dev = self.device();
        if s.device() != dev {
            return Err(mismatch(dev, s.device()));
        }
        match s {
            Storage::Cuda(b) => Ok(b),
            other => Err(mismatch(dev, other.device())),
        }
    }
    fn wrap(b: nas_kernels::CudaBuf) -> Storage {
        Storage::Cuda(b)
    }
}

fn g<'a, B: StorageBackend>(b: &B, s: &'a Storage) -> Result<&'a B::Buffer> {
    b.get(s)
}

fn gm<'a, B: StorageBackend>(b: &B, s: &'a mut Storage) -> Result<&'a mut B::Buffer> {
    b.get_mut(s)
}

fn wrap<B: StorageBackend>(_: &B, b: B::Owned) -> Storage {
    B::wrap(b)
}

fn gs<'a, B: StorageBackend>(b: &B, xs: &[&'a Storage]) -> Result<Vec<&'a B::Buffer>> {
    xs.iter().map(|x| g(b, x)).collect()
}

fn gms<'a, B: StorageBackend>(b: &B, xs: &'a mut [&mut Storage]) -> Result<Vec<&'a mut B::Buffer>> {
    xs.iter_mut().map(|x| gm(b, x)).collect()
}

/// Runs `$body` with `$b` bound to the backend of device `$dev`.
macro_rules! on {
    ($dev:expr, $b:ident => $body:expr) => {{
        match $dev {
            Device::Cpu => {
                let $b = &Cpu;
                $body
            }
            Device::Test => {
                let $b = &TestBackend;
                $body
            }
            #[cfg(feature = "cuda")]
            d @ (Device::Cuda(_) | Device::CudaEmu) => {
                let cuda = nas_kernels::Cuda::new(d)?;
                let $b = &cuda;
                $body
            }
            #[cfg(not(feature = "cuda"))]
            d @ (Device::Cuda(_) | Device::CudaEmu) => {
                Err(TensorError::DeviceUnavailable(d.to_string()))
            }
        }
    }};
}

impl Storage {
    /// The device whose backend owns the buffer.
    pub fn device(&self) -> Device {
        match self {
            Storage::Cpu(_) => Device::Cpu,
            Storage::Test(_) => Device::Test,
            #[cfg(feature = "cuda")]
            Storage::Cuda(b) => b.device(),
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Storage::Cpu(b) => b.len(),
            Storage::Test(b) => TestBackend.len(b),
            #[cfg(feature = "cuda")]
            Storage::Cuda(b) => b.len(),
        }
    }

    /// Is it empty?
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Host values owned by the CPU backend, without a fallible allocation (the infallible
    /// CPU constructors of `Tensor`: `zeros`, `full`, `scalar`, `from_ndarray`).
    pub(crate) fn host(data: Vec<f32>) -> Storage {
        Storage::Cpu(Buf::from_vec(data))
    }

    /// `len` copies of `value` in CPU memory from the pool (see [`Storage::host`]).
    pub(crate) fn host_full(len: usize, value: f32) -> Storage {
        Storage::Cpu(Buf::full(len, value))
    }

    /// `len` zeros on `device`.
    pub fn zeros(device: Device, len: usize) -> Result<Storage> {
        on!(device, b => Ok(wrap(b, b.zeros(len)?)))
    }

    /// `len` values on `device` for an op that overwrites all of them.
    pub(crate) fn alloc(device: Device, len: usize) -> Result<Storage> {
        on!(device, b => Ok(wrap(b, b.alloc(len)?)))
    }

    /// `len` copies of `value` on `device`.
    pub fn full(device: Device, len: usize, value: f32) -> Result<Storage> {
        let mut s = Storage::alloc(device, len)?;
        s.fill(value)?;
        Ok(s)
    }

    /// The values of `data` on `device` (a host-to-device transfer).
    pub fn from_vec(device: Device, data: Vec<f32>) -> Result<Storage> {
        on!(device, b => Ok(wrap(b, b.from_vec(data)?)))
    }

    /// A copy of `data` on `device` (a host-to-device transfer).
    pub fn from_slice(device: Device, data: &[f32]) -> Result<Storage> {
        on!(device, b => Ok(wrap(b, b.from_slice(data)?)))
    }

    /// The values, copied to the host (a device-to-host transfer).
    pub fn to_vec(&self) -> Result<Vec<f32>> {
        on!(self.device(), b => Ok(b.to_vec(g(b, self)?)?))
    }

    /// A copy on the same device.
    pub fn try_clone(&self) -> Result<Storage> {
        let mut out = Storage::alloc(self.device(), self.len())?;
        out.copy_from(self)?;
        Ok(out)
    }

    /// `self = src` (same device, same length).
    pub fn copy_from(&mut self, src: &Storage) -> Result<()> {
        on!(src.device(), b => Ok(b.copy(g(b, src)?, gm(b, self)?)?))
    }

    /// Sets every element to `value`.
    pub fn fill(&mut self, value: f32) -> Result<()> {
        on!(self.device(), b => Ok(b.fill(value, gm(b, self)?)?))
    }
}

// ---------------------------------------------------------------- backend calls

pub(crate) fn copy_strided(p: &StridedCopy, src: &Storage, dst: &mut Storage) -> Result<()> {
    on!(src.device(), b => Ok(b.copy_strided(p, g(b, src)?, gm(b, dst)?)?))
}

pub(crate) fn unary(op: UnaryOp, x: &Storage, y: &mut Storage) -> Result<()> {
    on!(x.device(), b => Ok(b.unary(op, g(b, x)?, gm(b, y)?)?))
}

pub(crate) fn unary_backward(
    op: UnaryOp,
    x: &Storage,
    y: &Storage,
    dy: &Storage,
    dx: &mut Storage,
) -> Result<()> {
    on!(x.device(), b => Ok(b.unary_backward(op, g(b, x)?, g(b, y)?, g(b, dy)?, gm(b, dx)?)?))
}

pub(crate) fn binary(
    op: BinaryOp,
    x: &Storage,
    xs: &[usize],
    y: &Storage,
    ys: &[usize],
    out: &mut Storage,
) -> Result<()> {
    on!(x.device(), b => Ok(b.binary(op, g(b, x)?, xs, g(b, y)?, ys, gm(b, out)?)?))
}

pub(crate) fn sum_to_shape(
    x: &Storage,
    x_shape: &[usize],
    out_shape: &[usize],
    out: &mut Storage,
) -> Result<()> {
    on!(x.device(), b => Ok(b.sum_to_shape(g(b, x)?, x_shape, out_shape, gm(b, out)?)?))
}

pub(crate) fn broadcast_to(
    x: &Storage,
    x_shape: &[usize],
    out_shape: &[usize],
    out: &mut Storage,
) -> Result<()> {
    on!(x.device(), b => Ok(b.broadcast_to(g(b, x)?, x_shape, out_shape, gm(b, out)?)?))
}

pub(crate) fn axpy(alpha: f32, x: &Storage, y: &mut Storage) -> Result<()> {
    on!(x.device(), b => Ok(b.axpy(alpha, g(b, x)?, gm(b, y)?)?))
}

pub(crate) fn weighted_sum(w: &Storage, xs: &[&Storage], out: &mut Storage) -> Result<()> {
    on!(w.device(), b => Ok(b.weighted_sum(g(b, w)?, &gs(b, xs)?, gm(b, out)?)?))
}

pub(crate) fn weighted_sum_backward(
    w: &Storage,
    xs: &[&Storage],
    dy: &Storage,
    dxs: &mut [&mut Storage],
    dw: &mut Storage,
) -> Result<()> {
    on!(w.device(), b => Ok(b.weighted_sum_backward(
        g(b, w)?,
        &gs(b, xs)?,
        g(b, dy)?,
        &mut gms(b, dxs)?,
        gm(b, dw)?,
    )?))
}

pub(crate) fn concat_channels(
    xs: &[&Storage],
    channels: &[usize],
    n: usize,
    hw: usize,
    out: &mut Storage,
) -> Result<()> {
    on!(out.device(), b => Ok(b.concat_channels(&gs(b, xs)?, channels, n, hw, gm(b, out)?)?))
}

pub(crate) fn split_channels(
    x: &Storage,
    channels: &[usize],
    n: usize,
    hw: usize,
    outs: &mut [&mut Storage],
) -> Result<()> {
    on!(x.device(), b => Ok(b.split_channels(g(b, x)?, channels, n, hw, &mut gms(b, outs)?)?))
}

pub(crate) fn reduce(
    op: ReduceOp,
    x: &Storage,
    shape: &[usize],
    axis: Option<usize>,
    out: &mut Storage,
) -> Result<()> {
    on!(x.device(), b => Ok(b.reduce(op, g(b, x)?, shape, axis, gm(b, out)?)?))
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn reduce_backward(
    op: ReduceOp,
    x: &Storage,
    y: &Storage,
    shape: &[usize],
    axis: Option<usize>,
    dy: &Storage,
    dx: &mut Storage,
) -> Result<()> {
    on!(x.device(), b => Ok(b.reduce_backward(
        op, g(b, x)?, g(b, y)?, shape, axis, g(b, dy)?, gm(b, dx)?,
    )?))
}

pub(crate) fn softmax(
    op: SoftmaxOp,
    x: &Storage,
    rows: usize,
    cols: usize,
    y: &mut Storage,
) -> Result<()> {
    on!(x.device(), b => Ok(b.softmax(op, g(b, x)?, rows, cols, gm(b, y)?)?))
}

pub(crate) fn softmax_backward(
    op: SoftmaxOp,
    y: &Storage,
    dy: &Storage,
    rows: usize,
    cols: usize,
    dx: &mut Storage,
) -> Result<()> {
    on!(y.device(), b => Ok(b.softmax_backward(op, g(b, y)?, g(b, dy)?, rows, cols, gm(b, dx)?)?))
}

pub(crate) fn cross_entropy(
    logits: &Storage,
    labels: &[usize],
    rows: usize,
    cols: usize,
    loss: &mut Storage,
) -> Result<()> {
    on!(logits.device(), b => Ok(b.cross_entropy(g(b, logits)?, labels, rows, cols, gm(b, loss)?)?))
}

pub(crate) fn cross_entropy_backward(
    logits: &Storage,
    labels: &[usize],
    rows: usize,
    cols: usize,
    dloss: &Storage,
    dlogits: &mut Storage,
) -> Result<()> {
    on!(logits.device(), b => Ok(b.cross_entropy_backward(
        g(b, logits)?, labels, rows, cols, g(b, dloss)?, gm(b, dlogits)?,
    )?))
}

pub(crate) fn matmul(p: &Matmul, a: &Storage, x: &Storage, c: &mut Storage) -> Result<()> {
    on!(a.device(), b => Ok(b.matmul(p, g(b, a)?, g(b, x)?, gm(b, c)?)?))
}

pub(crate) fn conv2d(
    p: &Checked<Conv2dParams>,
    x: &Storage,
    w: &Storage,
    bias: Option<&Storage>,
    y: &mut Storage,
) -> Result<()> {
    on!(x.device(), b => {
        let bias = bias.map(|s| g(b, s)).transpose()?;
        Ok(b.conv2d(p, g(b, x)?, g(b, w)?, bias, gm(b, y)?)?)
    })
}

pub(crate) fn conv2d_backward_input(
    p: &Checked<Conv2dParams>,
    w: &Storage,
    dy: &Storage,
    dx: &mut Storage,
) -> Result<()> {
    on!(w.device(), b => Ok(b.conv2d_backward_input(p, g(b, w)?, g(b, dy)?, gm(b, dx)?)?))
}

pub(crate) fn conv2d_backward_weight(
    p: &Checked<Conv2dParams>,
    x: &Storage,
    dy: &Storage,
    dw: &mut Storage,
    dbias: Option<&mut Storage>,
) -> Result<()> {
    on!(x.device(), b => {
        let dbias = dbias.map(|s| gm(b, s)).transpose()?;
        Ok(b.conv2d_backward_weight(p, g(b, x)?, g(b, dy)?, gm(b, dw)?, dbias)?)
    })
}

pub(crate) fn conv2d_relu_input(
    p: &Checked<Conv2dParams>,
    x: &Storage,
    w: &Storage,
    y: &mut Storage,
) -> Result<()> {
    on!(x.device(), b => Ok(b.conv2d_relu_input(p, g(b, x)?, g(b, w)?, gm(b, y)?)?))
}

pub(crate) fn conv2d_backward_input_relu_mask(
    p: &Checked<Conv2dParams>,
    w: &Storage,
    dy: &Storage,
    x: &Storage,
    dx: &mut Storage,
) -> Result<()> {
    on!(w.device(), b => Ok(b.conv2d_backward_input_relu_mask(
        p, g(b, w)?, g(b, dy)?, g(b, x)?, gm(b, dx)?,
    )?))
}

pub(crate) fn conv2d_backward_weight_relu_input(
    p: &Checked<Conv2dParams>,
    x: &Storage,
    dy: &Storage,
    dw: &mut Storage,
) -> Result<()> {
    on!(x.device(), b => Ok(b.conv2d_backward_weight_relu_input(p, g(b, x)?, g(b, dy)?, gm(b, dw)?)?))
}

pub(crate) fn pool2d(p: &Checked<Pool2dParams>, x: &Storage, y: &mut Storage) -> Result<()> {
    on!(x.device(), b => Ok(b.pool2d(p, g(b, x)?, gm(b, y)?)?))
}

pub(crate) fn pool2d_backward(
    p: &Checked<Pool2dParams>,
    x: &Storage,
    y: Option<&Storage>,
    dy: &Storage,
    dx: &mut Storage,
) -> Result<()> {
    on!(dy.device(), b => {
        let y = y.map(|s| g(b, s)).transpose()?;
        Ok(b.pool2d_backward(p, g(b, x)?, y, g(b, dy)?, gm(b, dx)?)?)
    })
}

pub(crate) fn global_avg_pool(
    n: usize,
    c: usize,
    hw: usize,
    x: &Storage,
    y: &mut Storage,
) -> Result<()> {
    on!(x.device(), b => Ok(b.global_avg_pool(n, c, hw, g(b, x)?, gm(b, y)?)?))
}

pub(crate) fn global_avg_pool_backward(
    n: usize,
    c: usize,
    hw: usize,
    dy: &Storage,
    dx: &mut Storage,
) -> Result<()> {
    on!(dy.device(), b => Ok(b.global_avg_pool_backward(n, c, hw, g(b, dy)?, gm(b, dx)?)?))
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn batch_norm(
    p: &Checked<BatchNormParams>,
    x: &Storage,
    gamma: Option<&Storage>,
    beta: Option<&Storage>,
    running_mean: Option<&mut Storage>,
    running_var: Option<&mut Storage>,
    y: &mut Storage,
    save_mean: &mut Storage,
    save_invstd: &mut Storage,
) -> Result<()> {
    on!(x.device(), b => {
        let gamma = gamma.map(|s| g(b, s)).transpose()?;
        let beta = beta.map(|s| g(b, s)).transpose()?;
        let rm = running_mean.map(|s| gm(b, s)).transpose()?;
        let rv = running_var.map(|s| gm(b, s)).transpose()?;
        Ok(b.batch_norm(
            p, g(b, x)?, gamma, beta, rm, rv, gm(b, y)?, gm(b, save_mean)?, gm(b, save_invstd)?,
        )?)
    })
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn batch_norm_backward(
    p: &Checked<BatchNormParams>,
    x: &Storage,
    gamma: Option<&Storage>,
    save_mean: &Storage,
    save_invstd: &Storage,
    dy: &Storage,
    dx: &mut Storage,
    dgamma: Option<&mut Storage>,
    dbeta: Option<&mut Storage>,
) -> Result<()> {
    on!(x.device(), b => {
        let gamma = gamma.map(|s| g(b, s)).transpose()?;
        let dgamma = dgamma.map(|s| gm(b, s)).transpose()?;
        let dbeta = dbeta.map(|s| gm(b, s)).transpose()?;
        Ok(b.batch_norm_backward(
            p, g(b, x)?, gamma, g(b, save_mean)?, g(b, save_invstd)?, g(b, dy)?, gm(b, dx)?,
            dgamma, dbeta,
        )?)
    })
}

pub(crate) fn select_backward(
    a: &Storage,
    y: &Storage,
    dy: &Storage,
    da: &mut Storage,
    db: &mut Storage,
) -> Result<()> {
    on!(a.device(), b => Ok(b.select_backward(g(b, a)?, g(b, y)?, g(b, dy)?, gm(b, da)?, gm(b, db)?)?))
}

pub(crate) fn argmax_rows(x: &Storage, rows: usize, cols: usize, out: &mut Storage) -> Result<()> {
    on!(x.device(), b => Ok(b.argmax_rows(g(b, x)?, rows, cols, gm(b, out)?)?))
}

pub(crate) fn sgd_step(
    p: &SgdStep,
    w: &mut Storage,
    grad: &Storage,
    momentum: Option<&mut Storage>,
) -> Result<()> {
    on!(grad.device(), b => {
        let momentum = momentum.map(|s| gm(b, s)).transpose()?;
        Ok(b.sgd_step(p, gm(b, w)?, g(b, grad)?, momentum)?)
    })
}

pub(crate) fn adam_step(
    p: &AdamStep,
    w: &mut Storage,
    grad: &Storage,
    m: &mut Storage,
    v: &mut Storage,
) -> Result<()> {
    on!(grad.device(), b => Ok(b.adam_step(p, gm(b, w)?, g(b, grad)?, gm(b, m)?, gm(b, v)?)?))
}

pub(crate) fn clip_grad_norm(
    grads: &mut [&mut Storage],
    max_norm: f32,
    total: &mut Storage,
) -> Result<()> {
    on!(total.device(), b => Ok(b.clip_grad_norm(&mut gms(b, grads)?, max_norm, gm(b, total)?)?))
}

pub(crate) fn fill_random(dist: RandomDist, seed: u64, out: &mut Storage) -> Result<()> {
    on!(out.device(), b => Ok(b.fill_random(dist, seed, gm(b, out)?)?))
}

pub(crate) fn dropout_mask(p: f32, seed: u64, out: &mut Storage) -> Result<()> {
    on!(out.device(), b => Ok(b.dropout_mask(p, seed, gm(b, out)?)?))
}

pub(crate) fn gather_rows(
    p: &Rows,
    table: &Storage,
    indices: &[usize],
    out: &mut Storage,
) -> Result<()> {
    on!(table.device(), b => Ok(b.gather_rows(p, g(b, table)?, indices, gm(b, out)?)?))
}

pub(crate) fn scatter_add_rows(
    p: &Rows,
    src: &Storage,
    indices: &[usize],
    table: &mut Storage,
) -> Result<()> {
    on!(src.device(), b => Ok(b.scatter_add_rows(p, g(b, src)?, indices, gm(b, table)?)?))
}

pub(crate) fn lstm_cell(
    p: &LstmCell,
    gates: &Storage,
    c_prev: &Storage,
    act: &mut Storage,
    hc: &mut Storage,
) -> Result<()> {
    on!(gates.device(), b => Ok(b.lstm_cell(p, g(b, gates)?, g(b, c_prev)?, gm(b, act)?, gm(b, hc)?)?))
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn lstm_cell_backward(
    p: &LstmCell,
    act: &Storage,
    c_prev: &Storage,
    hc: &Storage,
    dhc: &Storage,
    dgates: &mut Storage,
    dc_prev: &mut Storage,
) -> Result<()> {
    on!(act.device(), b => Ok(b.lstm_cell_backward(
        p, g(b, act)?, g(b, c_prev)?, g(b, hc)?, g(b, dhc)?, gm(b, dgates)?, gm(b, dc_prev)?,
    )?))
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn lstm_sequence(
    p: &Lstm,
    xg: &Storage,
    w_hh: &Storage,
    h0: &Storage,
    c0: &Storage,
    act: &mut Storage,
    hs: &mut Storage,
    cs: &mut Storage,
) -> Result<()> {
    on!(xg.device(), b => Ok(b.lstm_sequence(
        p, g(b, xg)?, g(b, w_hh)?, g(b, h0)?, g(b, c0)?, gm(b, act)?, gm(b, hs)?, gm(b, cs)?,
    )?))
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn lstm_sequence_backward(
    p: &Lstm,
    w_hh: &Storage,
    c0: &Storage,
    act: &Storage,
    cs: &Storage,
    dhs: &Storage,
    dxg: &mut Storage,
    dh0: &mut Storage,
    dc0: &mut Storage,
) -> Result<()> {
    on!(act.device(), b => Ok(b.lstm_sequence_backward(
        p, g(b, w_hh)?, g(b, c0)?, g(b, act)?, g(b, cs)?, g(b, dhs)?, gm(b, dxg)?, gm(b, dh0)?,
        gm(b, dc0)?,
    )?))
}
