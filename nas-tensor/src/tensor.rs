//! The [`Tensor`] handle: shape, device, data, gradient and (when recorded) the graph node.

use std::cell::Cell;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};

use nas_kernels::RandomDist;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::Device;
use crate::error::{Result, TensorError, arg_err, shape_err};
use crate::storage::{self, Storage};

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    static NO_GRAD_DEPTH: Cell<usize> = const { Cell::new(0) };
    static LIVE_NODES: Cell<isize> = const { Cell::new(0) };
    static NODES_RECORDED: Cell<u64> = const { Cell::new(0) };
}

/// How an op sends the gradient of its output to its inputs: given the output gradient and,
/// per input, whether that input needs a gradient, it returns one gradient (or `None`) per input.
pub(crate) type BackwardFn =
    Box<dyn FnOnce(&Storage, &[bool]) -> Result<Vec<Option<Storage>>> + Send + 'static>;

/// One recorded op: its inputs and its gradient rule.
///
/// `parents` are graph handles only ([`Inner`] holds no values): an input's values stay alive
/// after the forward pass only if the gradient rule captured them (or something else holds
/// the tensor), so an intermediate that no rule needs is freed as soon as its last user is.
pub(crate) struct Node {
    pub(crate) op: &'static str,
    pub(crate) parents: Vec<Arc<Inner>>,
    pub(crate) backward: BackwardFn,
    pub(crate) _live: LiveNode,
}

/// Counts live nodes: one per node, decremented when the node (or its parts) are dropped.
pub(crate) struct LiveNode;

impl Drop for LiveNode {
    fn drop(&mut self) {
        let _ = LIVE_NODES.try_with(|c| c.set(c.get() - 1));
    }
}

impl Node {
    fn new(op: &'static str, parents: Vec<Arc<Inner>>, backward: BackwardFn) -> Node {
        LIVE_NODES.with(|c| c.set(c.get() + 1));
        NODES_RECORDED.with(|c| c.set(c.get() + 1));
        Node {
            op,
            parents,
            backward,
            _live: LiveNode,
        }
    }
}

/// A tensor's identity in the graph: everything but its values.
pub(crate) struct Inner {
    pub(crate) id: u64,
    pub(crate) shape: Vec<usize>,
    pub(crate) grad: Mutex<Option<Storage>>,
    pub(crate) requires_grad: bool,
    pub(crate) is_leaf: bool,
    pub(crate) node: Mutex<Option<Node>>,
    /// How a gradient rule that reads this tensor's values may get them again instead of
    /// keeping them (see [`Recompute`]); `None`: keep them.
    pub(crate) recompute: Option<Arc<Recompute>>,
}

/// The values of an op's output, computed again on demand: gradient rules that read the
/// output (a weighted sum's weight gradient, the op's own rule) hold this instead of the values,
/// so the values are freed once the forward pass is done with them. The first reader in
/// backward recomputes and caches them; the op's own rule, which runs after every reader,
/// takes them out of the cache, so they live only while the op's part of backward runs.
pub(crate) struct Recompute {
    f: Box<dyn Fn() -> Result<Storage> + Send + Sync>,
    cache: Mutex<Option<Arc<Storage>>>,
}

impl Recompute {
    pub(crate) fn new(f: impl Fn() -> Result<Storage> + Send + Sync + 'static) -> Recompute {
        Recompute {
            f: Box::new(f),
            cache: Mutex::new(None),
        }
    }

    /// The values, recomputed on the first call and cached for the next readers.
    pub(crate) fn get(&self) -> Result<Arc<Storage>> {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = cache.as_ref() {
            return Ok(Arc::clone(v));
        }
        let v = Arc::new((self.f)()?);
        *cache = Some(Arc::clone(&v));
        Ok(v)
    }

    /// The values for their last reader: taken out of the cache (recomputed when not there),
    /// so they are freed once the caller drops them.
    pub(crate) fn take(&self) -> Result<Arc<Storage>> {
        let cached = self.cache.lock().unwrap_or_else(|e| e.into_inner()).take();
        match cached {
            Some(v) => Ok(v),
            None => Ok(Arc::new((self.f)()?)),
        }
    }
}

/// An input's values as a gradient rule keeps them: the values themselves, or their
/// [`Recompute`] when the op that made them gave one.
pub(crate) enum Saved {
    Data(Data),
    Recompute(Arc<Recompute>),
}

/// Read access to [`Saved`] values.
pub(crate) enum SavedRead<'a> {
    Guard(std::sync::RwLockReadGuard<'a, Storage>),
    Owned(Arc<Storage>),
}

impl std::ops::Deref for SavedRead<'_> {
    type Target = Storage;
    fn deref(&self) -> &Storage {
        match self {
            SavedRead::Guard(g) => g,
            SavedRead::Owned(s) => s,
        }
    }
}

impl Saved {
    /// What a gradient rule keeps of `t` to read its values in backward.
    pub(crate) fn of(t: &Tensor) -> Saved {
        match &t.inner.recompute {
            Some(r) => Saved::Recompute(Arc::clone(r)),
            None => Saved::Data(t.data.clone()),
        }
    }

    pub(crate) fn read(&self) -> Result<SavedRead<'_>> {
        Ok(match self {
            Saved::Data(d) => SavedRead::Guard(d.read().unwrap_or_else(|e| e.into_inner())),
            Saved::Recompute(r) => SavedRead::Owned(r.get()?),
        })
    }
}

impl Inner {
    pub(crate) fn numel(&self) -> usize {
        numel(&self.shape)
    }

    pub(crate) fn accumulate_grad(&self, g: Storage) -> Result<()> {
        let mut slot = self.grad.lock().unwrap_or_else(|e| e.into_inner());
        match slot.as_mut() {
            Some(acc) => storage::axpy(1.0, &g, acc)?,
            None => *slot = Some(g),
        }
        Ok(())
    }
}

/// A tensor's values, shared between its handles (and with gradient rules that saved them).
pub(crate) type Data = Arc<RwLock<Storage>>;

pub(crate) fn new_data(buf: Storage) -> Data {
    Arc::new(RwLock::new(buf))
}

/// A float32 tensor: a cheap, shareable handle (cloning shares the data and the gradient).
///
/// Parameters are leaf tensors created with [`Tensor::param`] (or [`Tensor::requires_grad_`]);
/// ops on tensors that require gradients record a graph node (unless in [`no_grad`] mode), and
/// [`Tensor::backward`] on a scalar accumulates gradients into every leaf that requires them.
#[derive(Clone)]
pub struct Tensor {
    pub(crate) inner: Arc<Inner>,
    pub(crate) data: Data,
}

/// A weak handle to a tensor: lets tests check whether an intermediate (its values and its
/// graph identity) is still alive.
#[derive(Clone)]
pub struct WeakTensor(Weak<Inner>, Weak<RwLock<Storage>>);

impl WeakTensor {
    /// The tensor, if something still holds both its graph identity and its values.
    pub fn upgrade(&self) -> Option<Tensor> {
        Some(Tensor {
            inner: self.0.upgrade()?,
            data: self.1.upgrade()?,
        })
    }

    /// Are the values still held (by a handle or by a gradient rule that saved them)?
    pub fn values_alive(&self) -> bool {
        self.1.strong_count() > 0
    }

    /// Is the graph identity still held (by a handle or as the input of a recorded op)?
    pub fn node_alive(&self) -> bool {
        self.0.strong_count() > 0
    }
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Printing reads values back from the device: only a few.
        let head = self
            .to_vec()
            .map(|v| v.into_iter().take(8).collect::<Vec<f32>>());
        write!(
            f,
            "Tensor(shape={:?}, device={}, requires_grad={}, data={:?}{})",
            self.inner.shape,
            self.device(),
            self.inner.requires_grad,
            head,
            if self.numel() > 8 { "..." } else { "" }
        )
    }
}

/// Number of elements of a shape.
pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// Is gradient recording enabled on this thread (not inside [`no_grad`])?
pub fn is_grad_enabled() -> bool {
    NO_GRAD_DEPTH.with(|d| d.get() == 0)
}

/// While alive, ops on this thread record nothing (evaluation / inference mode).
pub struct NoGradGuard {
    _not_send: std::marker::PhantomData<*const ()>,
}

impl NoGradGuard {
    /// Enters no-grad mode until the guard is dropped.
    pub fn new() -> NoGradGuard {
        NO_GRAD_DEPTH.with(|d| d.set(d.get() + 1));
        NoGradGuard {
            _not_send: std::marker::PhantomData,
        }
    }
}

impl Default for NoGradGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for NoGradGuard {
    fn drop(&mut self) {
        NO_GRAD_DEPTH.with(|d| d.set(d.get() - 1));
    }
}

/// Runs `f` with gradient recording disabled: no graph node is created and no intermediate
/// is kept alive by a graph.
pub fn no_grad<R>(f: impl FnOnce() -> R) -> R {
    let _g = NoGradGuard::new();
    f()
}

/// Runs `f` with gradient recording enabled, even inside [`no_grad`] (a checkpointed segment
/// recomputed during a backward must record).
pub(crate) fn with_grad<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(usize);
    impl Drop for Restore {
        fn drop(&mut self) {
            NO_GRAD_DEPTH.with(|d| d.set(self.0));
        }
    }
    let _restore = Restore(NO_GRAD_DEPTH.with(|d| d.replace(0)));
    f()
}

/// Graph nodes currently alive that were created on this thread (a node dropped on another
/// thread is counted there). Backward releases the nodes it walks.
pub fn live_graph_nodes() -> isize {
    LIVE_NODES.with(|c| c.get())
}

/// Graph nodes recorded so far on this thread (monotone counter).
pub fn graph_nodes_recorded() -> u64 {
    NODES_RECORDED.with(|c| c.get())
}

pub(crate) fn check_same_device(op: &'static str, a: &Tensor, b: &Tensor) -> Result<()> {
    if a.device() != b.device() {
        return Err(TensorError::DeviceMismatch {
            op,
            a: a.device().to_string(),
            b: b.device().to_string(),
        });
    }
    Ok(())
}

impl Tensor {
    fn make(shape: Vec<usize>, data: Data, requires_grad: bool, node: Option<Node>) -> Tensor {
        debug_assert_eq!(
            numel(&shape),
            data.read().unwrap_or_else(|e| e.into_inner()).len()
        );
        let is_leaf = node.is_none();
        Tensor {
            inner: Arc::new(Inner {
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                shape,
                grad: Mutex::new(None),
                requires_grad,
                is_leaf,
                node: Mutex::new(node),
                recompute: None,
            }),
            data,
        }
    }

    /// Internal constructor of an op result: records a graph node when gradients are enabled
    /// and some input requires a gradient.
    pub(crate) fn from_op(
        op: &'static str,
        shape: Vec<usize>,
        data: Storage,
        parents: &[&Tensor],
        backward: impl FnOnce(&Storage, &[bool]) -> Result<Vec<Option<Storage>>> + Send + 'static,
    ) -> Tensor {
        Tensor::from_op_data(op, shape, new_data(data), parents, backward)
    }

    /// [`Tensor::from_op`] with the output's values already shared: a gradient rule that needs
    /// the output (ReLU, non-affine batch norm) captures a clone of `data` instead of keeping
    /// its input alive; a reshape shares its input's values.
    pub(crate) fn from_op_data(
        op: &'static str,
        shape: Vec<usize>,
        data: Data,
        parents: &[&Tensor],
        backward: impl FnOnce(&Storage, &[bool]) -> Result<Vec<Option<Storage>>> + Send + 'static,
    ) -> Tensor {
        let record = is_grad_enabled() && parents.iter().any(|p| p.requires_grad());
        if record {
            let parents: Vec<Arc<Inner>> = parents.iter().map(|&p| p.inner.clone()).collect();
            let node = Node::new(op, parents, Box::new(backward));
            Tensor::make(shape, data, true, Some(node))
        } else {
            Tensor::make(shape, data, false, None)
        }
    }

    /// Like [`Tensor::from_op`] for ops whose inputs need no gradient (or that are not
    /// differentiable): never records.
    pub(crate) fn constant(shape: Vec<usize>, data: Storage) -> Tensor {
        Tensor::make(shape, new_data(data), false, None)
    }

    // ----- creation -----

    /// A tensor over a storage (crate-internal: optimizers hand out their buffers).
    pub(crate) fn from_storage(shape: &[usize], data: Storage) -> Tensor {
        Tensor::constant(shape.to_vec(), data)
    }

    fn check_len(op: &'static str, len: usize, shape: &[usize]) -> Result<()> {
        if len != numel(shape) {
            return shape_err(
                op,
                format!(
                    "{len} values do not fill shape {shape:?} ({} elements)",
                    numel(shape)
                ),
            );
        }
        Ok(())
    }

    /// A tensor from a vector and a shape (on the CPU).
    pub fn from_vec(data: Vec<f32>, shape: &[usize]) -> Result<Tensor> {
        Tensor::from_vec_on(data, shape, Device::Cpu)
    }

    /// A tensor from a vector and a shape on `device` (a host-to-device transfer).
    pub fn from_vec_on(data: Vec<f32>, shape: &[usize], device: Device) -> Result<Tensor> {
        Tensor::check_len("from_vec", data.len(), shape)?;
        Ok(Tensor::constant(
            shape.to_vec(),
            Storage::from_vec(device, data)?,
        ))
    }

    /// A tensor from a slice and a shape (on the CPU).
    pub fn from_slice(data: &[f32], shape: &[usize]) -> Result<Tensor> {
        Tensor::from_slice_on(data, shape, Device::Cpu)
    }

    /// A tensor from a slice and a shape on `device` (a host-to-device transfer).
    pub fn from_slice_on(data: &[f32], shape: &[usize], device: Device) -> Result<Tensor> {
        Tensor::check_len("from_slice", data.len(), shape)?;
        Ok(Tensor::constant(
            shape.to_vec(),
            Storage::from_slice(device, data)?,
        ))
    }

    /// A scalar (shape `[]`) on the CPU.
    pub fn scalar(v: f32) -> Tensor {
        Tensor::constant(vec![], Storage::host(vec![v]))
    }

    /// Zeros on the CPU.
    pub fn zeros(shape: &[usize]) -> Tensor {
        Tensor::constant(shape.to_vec(), Storage::host_full(numel(shape), 0.0))
    }

    /// Zeros on `device`.
    pub fn zeros_on(shape: &[usize], device: Device) -> Result<Tensor> {
        Ok(Tensor::constant(
            shape.to_vec(),
            Storage::zeros(device, numel(shape))?,
        ))
    }

    /// Ones on the CPU.
    pub fn ones(shape: &[usize]) -> Tensor {
        Tensor::full(shape, 1.0)
    }

    /// Every element equal to `v`, on the CPU.
    pub fn full(shape: &[usize], v: f32) -> Tensor {
        Tensor::constant(shape.to_vec(), Storage::host_full(numel(shape), v))
    }

    /// Every element equal to `v`, on `device`.
    pub fn full_on(shape: &[usize], v: f32, device: Device) -> Result<Tensor> {
        Ok(Tensor::constant(
            shape.to_vec(),
            Storage::full(device, numel(shape), v)?,
        ))
    }

    /// Samples of `dist` (uniform, normal, Gumbel) on the CPU; `rng` gives the fill's seed (see
    /// [`Tensor::random_on`]).
    pub fn random_with(shape: &[usize], dist: RandomDist, rng: &mut ChaCha8Rng) -> Result<Tensor> {
        Tensor::random_on(shape, dist, rng, Device::Cpu)
    }

    /// Samples of `dist` generated on `device`: one `u64` is drawn from the host generator
    /// `rng` as the fill's seed, and the backend computes every element from that seed and
    /// its index ([`Tensor::random_seeded`]), so the same generator state gives the same values
    /// on every device and each tensor advances `rng` by the same amount whatever its size.
    pub fn random_on(
        shape: &[usize],
        dist: RandomDist,
        rng: &mut ChaCha8Rng,
        device: Device,
    ) -> Result<Tensor> {
        Tensor::random_seeded(shape, dist, rng.next_u64(), device)
    }

    /// Samples of `dist` for `seed`, computed on `device` by the counter-based generator of
    /// [`nas_kernels::ops::random`]: element `i` depends only on `(seed, i)`.
    pub fn random_seeded(
        shape: &[usize],
        dist: RandomDist,
        seed: u64,
        device: Device,
    ) -> Result<Tensor> {
        let mut b = Storage::alloc(device, numel(shape))?;
        storage::fill_random(dist, seed, &mut b)?;
        Ok(Tensor::constant(shape.to_vec(), b))
    }

    /// Standard normal samples drawn from `rng`.
    pub fn randn_with(shape: &[usize], rng: &mut ChaCha8Rng) -> Tensor {
        Tensor::random_with(
            shape,
            RandomDist::Normal {
                mean: 0.0,
                std: 1.0,
            },
            rng,
        )
        .expect("the standard normal is a valid distribution")
    }

    /// Standard normal samples from a ChaCha8 generator seeded with `seed`.
    pub fn randn(shape: &[usize], seed: u64) -> Tensor {
        Tensor::randn_with(shape, &mut ChaCha8Rng::seed_from_u64(seed))
    }

    /// Uniform samples in `[lo, hi)` drawn from `rng`.
    pub fn uniform_with(shape: &[usize], lo: f32, hi: f32, rng: &mut ChaCha8Rng) -> Result<Tensor> {
        if !(lo < hi) || !lo.is_finite() || !hi.is_finite() {
            return arg_err("uniform", format!("need finite lo < hi, got [{lo}, {hi})"));
        }
        Tensor::random_with(shape, RandomDist::Uniform { low: lo, high: hi }, rng)
    }

    /// Uniform samples in `[lo, hi)` from a ChaCha8 generator seeded with `seed`.
    pub fn uniform(shape: &[usize], lo: f32, hi: f32, seed: u64) -> Result<Tensor> {
        Tensor::uniform_with(shape, lo, hi, &mut ChaCha8Rng::seed_from_u64(seed))
    }

    /// A trainable leaf (parameter): the same values, `requires_grad = true`, no history.
    pub fn param(self) -> Tensor {
        // A handle nothing else shares gives its values up without a copy.
        let data = if Arc::strong_count(&self.data) == 1 {
            self.data.clone()
        } else {
            new_data(self.read().try_clone().expect("a copy on the same device"))
        };
        Tensor::make(self.inner.shape.clone(), data, true, None)
    }

    /// Alias of [`Tensor::param`] in PyTorch's spelling (returns a new leaf handle).
    pub fn requires_grad_(self) -> Tensor {
        self.param()
    }

    /// A new leaf over the same values (no copy, no history), requiring a gradient if
    /// `requires_grad`: what a checkpointed segment is recomputed from.
    pub(crate) fn leaf_sharing(&self, requires_grad: bool) -> Tensor {
        Tensor::make(
            self.inner.shape.clone(),
            self.data.clone(),
            requires_grad,
            None,
        )
    }

    /// Takes the accumulated gradient out of this tensor, leaving none.
    pub(crate) fn take_grad(&self) -> Option<Storage> {
        self.inner
            .grad
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    /// A copy of the values with no history and no gradient requirement.
    pub fn detach(&self) -> Tensor {
        let data = self.read().try_clone().expect("a copy on the same device");
        Tensor::constant(self.inner.shape.clone(), data)
    }

    /// A tensor from an `ndarray` array (any dimensionality; copied, row-major), on the CPU.
    pub fn from_ndarray<D: ndarray::Dimension>(a: &ndarray::Array<f32, D>) -> Tensor {
        let shape = a.shape().to_vec();
        let v: Vec<f32> = a.iter().copied().collect();
        Tensor::constant(shape, Storage::host(v))
    }

    /// The values as a dynamic-dimensional `ndarray` array (copied to the host).
    pub fn to_ndarray(&self) -> Result<ndarray::ArrayD<f32>> {
        Ok(
            ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&self.inner.shape), self.to_vec()?)
                .expect("shape and length agree by construction"),
        )
    }

    // ----- accessors -----

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.inner.shape
    }

    /// Number of dimensions.
    pub fn ndim(&self) -> usize {
        self.inner.shape.len()
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        numel(&self.inner.shape)
    }

    /// The device the data lives on.
    pub fn device(&self) -> Device {
        self.read().device()
    }

    /// A copy of the tensor on `device` (the same handle when it is already there), with no
    /// history. Between two devices the values travel through the host.
    pub fn to_device(&self, device: Device) -> Result<Tensor> {
        if device == self.device() {
            return Ok(self.clone());
        }
        let v = self.to_vec()?;
        Ok(Tensor::constant(
            self.inner.shape.clone(),
            Storage::from_vec(device, v)?,
        ))
    }

    /// Moves this tensor's values (and its gradient, if any) to `device` in place: every
    /// handle of it sees the move. This is how [`crate::nn::Module::to_device`] moves a
    /// network's parameters and buffers without rebuilding it.
    pub fn move_to(&self, device: Device) -> Result<()> {
        if device == self.device() {
            return Ok(());
        }
        let moved = Storage::from_vec(device, self.to_vec()?)?;
        let mut grad = self.inner.grad.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(g) = grad.as_ref() {
            *grad = Some(Storage::from_vec(device, g.to_vec()?)?);
        }
        *self.write() = moved;
        Ok(())
    }

    /// Does this tensor take part in gradient computation?
    pub fn requires_grad(&self) -> bool {
        self.inner.requires_grad
    }

    /// Is this a leaf (created directly, not by a recorded op)?
    pub fn is_leaf(&self) -> bool {
        self.inner.is_leaf
    }

    /// A unique id (stable for the tensor's lifetime).
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// Do two handles refer to the same tensor?
    pub fn same(&self, other: &Tensor) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// A weak handle.
    pub fn downgrade(&self) -> WeakTensor {
        WeakTensor(Arc::downgrade(&self.inner), Arc::downgrade(&self.data))
    }

    /// Name of the op that produced this tensor, while its graph node is alive.
    pub fn grad_fn_name(&self) -> Option<&'static str> {
        self.inner
            .node
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|n| n.op)
    }

    /// Overwrites the values from a host slice of the same length (a host-to-device
    /// transfer; not recorded by autograd).
    pub fn set_data(&self, values: &[f32]) -> Result<()> {
        if values.len() != self.numel() {
            return shape_err(
                "set_data",
                format!(
                    "{} values for a tensor of shape {:?}",
                    values.len(),
                    self.shape()
                ),
            );
        }
        let device = self.device();
        *self.write() = Storage::from_slice(device, values)?;
        Ok(())
    }

    /// Overwrites the values with those of `src` (same shape, same device), on the device:
    /// no host transfer, not recorded by autograd.
    pub fn copy_from(&self, src: &Tensor) -> Result<()> {
        if src.shape() != self.shape() {
            return shape_err(
                "copy_from",
                format!("source {:?} into {:?}", src.shape(), self.shape()),
            );
        }
        check_same_device("copy_from", self, src)?;
        if Arc::ptr_eq(&self.data, &src.data) {
            return Ok(());
        }
        let s = src.read();
        self.write().copy_from(&s)
    }

    /// The values, copied to the host (a device-to-host transfer).
    pub fn to_vec(&self) -> Result<Vec<f32>> {
        self.read().to_vec()
    }

    /// The single value of a one-element tensor (a device-to-host transfer).
    pub fn item(&self) -> Result<f32> {
        if self.numel() != 1 {
            return shape_err(
                "item",
                format!("need one element, got shape {:?}", self.shape()),
            );
        }
        Ok(self.to_vec()?[0])
    }

    // ----- gradients -----

    /// The accumulated gradient (leaves only), as a tensor with no history (a copy on the
    /// same device).
    pub fn grad(&self) -> Result<Option<Tensor>> {
        let g = self.inner.grad.lock().unwrap_or_else(|e| e.into_inner());
        g.as_ref()
            .map(|g| Ok(Tensor::constant(self.inner.shape.clone(), g.try_clone()?)))
            .transpose()
    }

    /// The accumulated gradient, copied to the host.
    pub fn grad_vec(&self) -> Result<Option<Vec<f32>>> {
        let g = self.inner.grad.lock().unwrap_or_else(|e| e.into_inner());
        g.as_ref().map(|g| g.to_vec()).transpose()
    }

    /// Does the tensor hold a gradient?
    pub fn has_grad(&self) -> bool {
        self.inner
            .grad
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// Sets the gradient from host values (e.g. a finite-difference estimate); `None` clears it.
    pub fn set_grad(&self, grad: Option<&[f32]>) -> Result<()> {
        if let Some(g) = grad
            && g.len() != self.numel()
        {
            return shape_err(
                "set_grad",
                format!("{} values for shape {:?}", g.len(), self.shape()),
            );
        }
        let device = self.device();
        let g = grad.map(|g| Storage::from_slice(device, g)).transpose()?;
        *self.inner.grad.lock().unwrap_or_else(|e| e.into_inner()) = g;
        Ok(())
    }

    /// Sets the gradient to the values of `grad` (same shape and device), on the device.
    pub fn set_grad_from(&self, grad: &Tensor) -> Result<()> {
        if grad.shape() != self.shape() {
            return shape_err(
                "set_grad_from",
                format!("gradient {:?} for {:?}", grad.shape(), self.shape()),
            );
        }
        check_same_device("set_grad_from", self, grad)?;
        let g = grad.read().try_clone()?;
        *self.inner.grad.lock().unwrap_or_else(|e| e.into_inner()) = Some(g);
        Ok(())
    }

    /// Clears the gradient (PyTorch's `zero_grad(set_to_none=True)`).
    pub fn zero_grad(&self) {
        *self.inner.grad.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Locks the gradient for a backend call that updates it (clipping) or reads it
    /// (optimizers).
    pub(crate) fn grad_slot(&self) -> std::sync::MutexGuard<'_, Option<Storage>> {
        self.inner.grad.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads the data for an op.
    pub(crate) fn read(&self) -> std::sync::RwLockReadGuard<'_, Storage> {
        self.data.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes the data for an op that updates a tensor in place (BN running statistics,
    /// optimizer updates).
    pub(crate) fn write(&self) -> std::sync::RwLockWriteGuard<'_, Storage> {
        self.data.write().unwrap_or_else(|e| e.into_inner())
    }
}
