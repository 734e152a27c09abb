//! Measured CPU inference latency: a table of per-op latencies, summed per network (the
//! lookup-table approach of FBNet, ProxylessNAS and Once-for-All).
//!
//! * A network's forward pass is listed as [`LatOp`]s with the shapes they run at
//!   ([`nb201_ops`] for the NAS-Bench-201 macro network; [`crate::nets::NetworkFamily::ops`] and
//!   [`crate::Evaluator::network_ops`] give them per architecture). The list follows the
//!   network's own `forward` op for op: a cell edge whose op is `none` runs nothing, an edge
//!   whose source node has no input runs on a zero tensor (one [`LatOp::Zeros`]), every node
//!   with two or more inputs adds them ([`LatOp::Add`]).
//! * Each distinct op is measured once ([`measure_op`]) with nas-rs's own modules and CPU
//!   kernels: the module is built, set to evaluation mode, and its forward pass run without a
//!   graph on a random input of batch [`LatencySettings::batch`], with
//!   [`LatencySettings::threads`] kernel threads, `warmup` untimed runs, then the minimum (or
//!   median) of `repeats` timed runs. Minimum by default: on a shared machine it is the
//!   estimate least disturbed by other processes.
//! * The results are a [`LatencyTable`], saved as JSON (atomically) and keyed by what makes
//!   them valid ([`TableKey`]: the CPU model, the logical CPUs, threads, batch, warm-up,
//!   repeats and statistic, and the table format). A table file with another key, or one that
//!   does not parse, is an error naming the file, never silently reused or overwritten.
//! * A network's latency is the sum of its ops' entries ([`LatencyModel::latency_ms`]).
//!   `examples/latency_check.rs` measures whole networks against that sum (docs/RESULTS.md).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use nas_space::nb201::{EDGES, Nb201Cell, Nb201Op};
use nas_tensor::nn::{BatchNorm2d, Conv2d, Linear, Module, ReLU, Sequential};
use nas_tensor::{ConvOptions, Tensor, no_grad};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{Result, SearchError};
use crate::nets::nb201::Nb201Config;
use crate::nets::ops::{ResNetBasicBlock, build_op};

/// One op of a network's forward pass at the shape it runs at (per image; the batch is a
/// setting of the measurement). Sides are the op's *input* height and width.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum LatOp {
    /// A cell op built by [`build_op`] (`nor_conv_3x3`, `avg_pool_3x3`, `skip_connect`, ...),
    /// batch norms affine.
    Op {
        /// The op's name ([`crate::nets::ops::OP_NAMES`]).
        name: String,
        /// Input channels.
        c_in: usize,
        /// Output channels.
        c_out: usize,
        /// Stride (1 or 2).
        stride: usize,
        /// Input height.
        h: usize,
        /// Input width.
        w: usize,
    },
    /// A 3x3 convolution (no bias) followed by batch norm: the NB201 stem.
    Stem {
        /// Input channels.
        c_in: usize,
        /// Output channels.
        c_out: usize,
        /// Input height.
        h: usize,
        /// Input width.
        w: usize,
    },
    /// NB201's ResNet basic block with stride 2 joining two stages.
    ResBlock {
        /// Input channels.
        c_in: usize,
        /// Output channels.
        c_out: usize,
        /// Input height.
        h: usize,
        /// Input width.
        w: usize,
    },
    /// The classifier head: batch norm, ReLU, global average pooling, linear (with bias).
    Head {
        /// Channels.
        c: usize,
        /// Input height.
        h: usize,
        /// Input width.
        w: usize,
        /// Classes.
        classes: usize,
    },
    /// The element-wise sum of two `[c, h, w]` tensors (a cell node's inputs).
    Add {
        /// Channels.
        c: usize,
        /// Height.
        h: usize,
        /// Width.
        w: usize,
    },
    /// A zero `[c, h, w]` tensor (a cell node with no input).
    Zeros {
        /// Channels.
        c: usize,
        /// Height.
        h: usize,
        /// Width.
        w: usize,
    },
}

impl LatOp {
    /// The table's key of this op (`nor_conv_3x3/16->16/s1/32x32`, `add/16/32x32`, ...).
    pub fn key(&self) -> String {
        match self {
            LatOp::Op {
                name,
                c_in,
                c_out,
                stride,
                h,
                w,
            } => format!("{name}/{c_in}->{c_out}/s{stride}/{h}x{w}"),
            LatOp::Stem { c_in, c_out, h, w } => format!("stem/{c_in}->{c_out}/{h}x{w}"),
            LatOp::ResBlock { c_in, c_out, h, w } => format!("resblock/{c_in}->{c_out}/{h}x{w}"),
            LatOp::Head { c, h, w, classes } => format!("head/{c}->{classes}/{h}x{w}"),
            LatOp::Add { c, h, w } => format!("add/{c}/{h}x{w}"),
            LatOp::Zeros { c, h, w } => format!("zeros/{c}/{h}x{w}"),
        }
    }

    /// Whether this op runs a convolution (the cell's `nor_conv_*`, the stem, the ResNet
    /// block).
    pub fn is_conv(&self) -> bool {
        match self {
            LatOp::Op { name, .. } => name.contains("conv"),
            LatOp::Stem { .. } | LatOp::ResBlock { .. } => true,
            _ => false,
        }
    }

    /// Multiply-accumulates of this op per image, in NAS-Bench-201's convention (convolutions
    /// and the linear layer only; see [`crate::nets::flops`]). Summed over a network's ops it
    /// equals the network's closed-form FLOPs, which ties the op list to the network.
    pub fn flops(&self) -> u64 {
        let conv = |k: usize, ci: usize, co: usize, px: usize| (k * k * ci * co * px) as u64;
        match *self {
            LatOp::Op {
                ref name,
                c_in,
                c_out,
                stride,
                h,
                w,
            } => {
                let px = h.div_ceil(stride) * w.div_ceil(stride);
                match name.as_str() {
                    "nor_conv_1x1" => conv(1, c_in, c_out, px),
                    "nor_conv_3x3" => conv(3, c_in, c_out, px),
                    _ => 0,
                }
            }
            LatOp::Stem { c_in, c_out, h, w } => conv(3, c_in, c_out, h * w),
            LatOp::ResBlock { c_in, c_out, h, w } => {
                let px = h.div_ceil(2) * w.div_ceil(2);
                conv(3, c_in, c_out, px) + conv(3, c_out, c_out, px) + conv(1, c_in, c_out, px)
            }
            LatOp::Head { c, classes, .. } => (c * classes + classes) as u64,
            LatOp::Add { .. } | LatOp::Zeros { .. } => 0,
        }
    }

    /// The input shape (per image) of this op: `[c, h, w]`, or `None` for [`LatOp::Zeros`].
    fn input(&self) -> Option<[usize; 3]> {
        match *self {
            LatOp::Op { c_in, h, w, .. }
            | LatOp::Stem { c_in, h, w, .. }
            | LatOp::ResBlock { c_in, h, w, .. } => Some([c_in, h, w]),
            LatOp::Head { c, h, w, .. } | LatOp::Add { c, h, w } => Some([c, h, w]),
            LatOp::Zeros { .. } => None,
        }
    }

    /// A closure running this op once on a fixed random input of `batch` images, weights drawn
    /// from a fixed seed, in evaluation mode, recording no graph.
    pub fn runner(&self, batch: usize) -> Result<Box<dyn Fn() -> Result<()>>> {
        let tensor_err = |e: nas_tensor::TensorError| {
            SearchError::Config(format!("latency of {}: {e}", self.key()))
        };
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let shape = |s: [usize; 3]| [batch, s[0], s[1], s[2]];
        let module: Box<dyn Module> = match self {
            LatOp::Op {
                name,
                c_in,
                c_out,
                stride,
                ..
            } => build_op(name, *c_in, *c_out, *stride, true, &mut rng).map_err(tensor_err)?,
            LatOp::Stem { c_in, c_out, .. } => Box::new(
                Sequential::new()
                    .push(
                        Conv2d::new(
                            *c_in,
                            *c_out,
                            3,
                            ConvOptions::default().padding(1),
                            false,
                            &mut rng,
                        )
                        .map_err(tensor_err)?,
                    )
                    .push(BatchNorm2d::new(*c_out, true)),
            ),
            LatOp::ResBlock { c_in, c_out, .. } => {
                Box::new(ResNetBasicBlock::new(*c_in, *c_out, 2, &mut rng).map_err(tensor_err)?)
            }
            LatOp::Head { c, classes, .. } => Box::new(HeadModule {
                lastact: Sequential::new()
                    .push(BatchNorm2d::new(*c, true))
                    .push(ReLU::new()),
                classifier: Linear::new(*c, *classes, true, &mut rng).map_err(tensor_err)?,
            }),
            LatOp::Add { c, h, w } => {
                let a = Tensor::randn(&shape([*c, *h, *w]), 1);
                let b = Tensor::randn(&shape([*c, *h, *w]), 2);
                let key = self.key();
                return Ok(Box::new(move || {
                    no_grad(|| a.add(&b))
                        .map(drop)
                        .map_err(|e| SearchError::Config(format!("latency of {key}: {e}")))
                }));
            }
            LatOp::Zeros { c, h, w } => {
                let s = shape([*c, *h, *w]);
                let key = self.key();
                return Ok(Box::new(move || {
                    Tensor::zeros_on(&s, nas_tensor::Device::Cpu)
                        .map(drop)
                        .map_err(|e| SearchError::Config(format!("latency of {key}: {e}")))
                }));
            }
        };
        module.set_training(false);
        let x = Tensor::randn(&shape(self.input().unwrap_or([1, 1, 1])), 1);
        let key = self.key();
        Ok(Box::new(move || {
            no_grad(|| module.forward(&x))
                .map(drop)
                .map_err(|e| SearchError::Config(format!("latency of {key}: {e}")))
        }))
    }
}

/// The NB201 head as one module (what [`crate::nets::nb201::Nb201Network`] runs after its last
/// cell).
struct HeadModule {
    lastact: Sequential,
    classifier: Linear,
}

impl Module for HeadModule {
    fn forward(&self, x: &Tensor) -> nas_tensor::Result<Tensor> {
        let h = self.lastact.forward(x)?.global_avg_pool()?;
        self.classifier.forward(&h)
    }
    fn children(&self, f: &mut dyn FnMut(&str, &dyn Module)) {
        f("lastact", &self.lastact);
        f("classifier", &self.classifier);
    }
}

/// The ops of one NB201 cell at `c` channels on `h x w`, in the order
/// [`crate::nets::nb201::Nb201CellModule`]'s forward pass runs them.
pub fn nb201_cell_ops(cell: &Nb201Cell, c: usize, h: usize, w: usize, out: &mut Vec<LatOp>) {
    let mut has_value = [true, false, false, false];
    for target in 1..4 {
        let mut inputs = 0;
        for (e, &(s, t)) in EDGES.iter().enumerate() {
            if t != target || cell.ops[e] == Nb201Op::None {
                continue;
            }
            if !has_value[s] {
                out.push(LatOp::Zeros { c, h, w });
            }
            out.push(LatOp::Op {
                name: cell.ops[e].as_str().to_string(),
                c_in: c,
                c_out: c,
                stride: 1,
                h,
                w,
            });
            inputs += 1;
            if inputs > 1 {
                out.push(LatOp::Add { c, h, w });
            }
        }
        has_value[target] = inputs > 0;
    }
    if !has_value[3] {
        out.push(LatOp::Zeros { c, h, w });
    }
}

/// The ops of [`crate::nets::nb201::Nb201Network`]`(cell, config)` on `h x w` inputs, in the
/// order its forward pass runs them: stem, the cells and the two ResNet blocks, the head.
pub fn nb201_ops(cell: &Nb201Cell, config: &Nb201Config, h: usize, w: usize) -> Vec<LatOp> {
    let mut out = vec![LatOp::Stem {
        c_in: config.in_channels,
        c_out: config.channels,
        h,
        w,
    }];
    let (mut c, mut h, mut w) = (config.channels, h, w);
    for stage in 0..3 {
        if stage > 0 {
            out.push(LatOp::ResBlock {
                c_in: c,
                c_out: 2 * c,
                h,
                w,
            });
            (c, h, w) = (2 * c, h.div_ceil(2), w.div_ceil(2));
        }
        for _ in 0..config.cells_per_stage {
            nb201_cell_ops(cell, c, h, w, &mut out);
        }
    }
    out.push(LatOp::Head {
        c,
        h,
        w,
        classes: config.classes,
    });
    out
}

/// Which statistic of the timed runs is the latency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Statistic {
    /// The fastest run (the default: least disturbed by other processes).
    Min,
    /// The median run.
    Median,
}

/// How latencies are measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatencySettings {
    /// Images per forward pass (1: single-image inference latency).
    pub batch: usize,
    /// Kernel threads (1 by default).
    pub threads: usize,
    /// Untimed runs before timing.
    pub warmup: u32,
    /// Timed runs.
    pub repeats: u32,
    /// The statistic of the timed runs.
    pub statistic: Statistic,
}

impl Default for LatencySettings {
    /// Batch 1, 1 thread, 3 warm-up runs, the minimum of 20.
    fn default() -> Self {
        LatencySettings {
            batch: 1,
            threads: 1,
            warmup: 3,
            repeats: 20,
            statistic: Statistic::Min,
        }
    }
}

impl LatencySettings {
    /// Checks that every count is positive, naming the setting.
    pub fn check(&self) -> Result<()> {
        for (name, v) in [
            ("batch", self.batch as u64),
            ("threads", self.threads as u64),
            ("repeats", u64::from(self.repeats)),
        ] {
            if v == 0 {
                return Err(SearchError::Setting(format!(
                    "latency {name} must be at least 1"
                )));
            }
        }
        Ok(())
    }
}

/// Runs `f` `warmup` times untimed, then `repeats` times timed, with `threads` kernel threads
/// on this thread; returns the chosen statistic of the timed runs, in milliseconds.
pub fn time_ms(settings: &LatencySettings, f: &mut dyn FnMut() -> Result<()>) -> Result<f64> {
    settings.check()?;
    let previous = nas_tensor::threads::num_threads();
    nas_tensor::threads::set_thread_budget(settings.threads);
    let r = (|| {
        for _ in 0..settings.warmup {
            f()?;
        }
        let mut times = Vec::with_capacity(settings.repeats as usize);
        for _ in 0..settings.repeats {
            let t = Instant::now();
            f()?;
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
        times.sort_by(f64::total_cmp);
        Ok(match settings.statistic {
            Statistic::Min => times[0],
            Statistic::Median => times[times.len() / 2],
        })
    })();
    // A budget of the process-wide count is no budget.
    nas_tensor::threads::set_thread_budget(if previous == nas_tensor::threads::total_threads() {
        0
    } else {
        previous
    });
    r
}

/// Measures one op on this machine's CPU (see the module docs), in milliseconds.
pub fn measure_op(op: &LatOp, settings: &LatencySettings) -> Result<f64> {
    let run = op.runner(settings.batch)?;
    time_ms(settings, &mut || run())
}

/// Measures a whole network's forward pass on `[batch, c, h, w]` random inputs (evaluation
/// mode, no graph), in milliseconds: what the summed table is checked against.
pub fn measure_network(
    net: &dyn Module,
    input: (usize, usize, usize),
    settings: &LatencySettings,
) -> Result<f64> {
    let was = net.is_training();
    net.set_training(false);
    let x = Tensor::randn(&[settings.batch, input.0, input.1, input.2], 1);
    let r = time_ms(settings, &mut || {
        no_grad(|| net.forward(&x))
            .map(drop)
            .map_err(|e| SearchError::Config(format!("latency of the network: {e}")))
    });
    net.set_training(was);
    r
}

/// The format written into every table file.
pub const TABLE_FORMAT: &str = "nas-rs latency table 1";

/// What a table's latencies are valid for: a table is reused only when its key equals the
/// key of the measurement asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableKey {
    /// [`TABLE_FORMAT`].
    pub format: String,
    /// The CPU (`model name` of `/proc/cpuinfo`, else the architecture).
    pub cpu: String,
    /// Logical CPUs of the machine.
    pub logical_cpus: usize,
    /// The measurement settings.
    pub settings: LatencySettings,
}

impl TableKey {
    /// The key of measuring with `settings` on this machine.
    pub fn this_machine(settings: LatencySettings) -> TableKey {
        TableKey {
            format: TABLE_FORMAT.into(),
            cpu: cpu_model(),
            logical_cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            settings,
        }
    }
}

/// The CPU's model name (`/proc/cpuinfo`), or the target architecture where that is unknown.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

/// Measured latencies per op key, in milliseconds, with the key they are valid for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencyTable {
    /// What the entries are valid for.
    pub key: TableKey,
    /// Milliseconds per [`LatOp::key`].
    pub entries: BTreeMap<String, f64>,
}

impl LatencyTable {
    /// An empty table for `key`.
    pub fn new(key: TableKey) -> LatencyTable {
        LatencyTable {
            key,
            entries: BTreeMap::new(),
        }
    }

    /// Loads the table at `path` for `key`: `Ok(None)` when there is no file; an error naming
    /// the file when it does not parse, holds a bad entry, or was measured under another key
    /// (another machine, thread count, batch...), saying which.
    pub fn load(path: &Path, key: &TableKey) -> Result<Option<LatencyTable>> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(SearchError::io(path, e)),
        };
        let bad = |problem: String| SearchError::Input {
            path: path.to_path_buf(),
            problem,
        };
        let table: LatencyTable = serde_json::from_str(&text)
            .map_err(|e| bad(format!("not a latency table ({TABLE_FORMAT}): {e}")))?;
        if table.key.format != TABLE_FORMAT {
            return Err(bad(format!(
                "latency table format {:?}, this nas reads {TABLE_FORMAT:?}",
                table.key.format
            )));
        }
        if table.key != *key {
            return Err(bad(format!(
                "latency table measured for {}, not for {} here; delete it or choose another \
                 file to measure again",
                describe(&table.key),
                describe(key)
            )));
        }
        if let Some((k, v)) = table
            .entries
            .iter()
            .find(|(_, v)| !(v.is_finite() && **v >= 0.0))
        {
            return Err(bad(format!("latency table entry {k:?} is {v}, not a time")));
        }
        Ok(Some(table))
    }

    /// Writes the table to `path` atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let text =
            serde_json::to_string_pretty(self).map_err(|e| SearchError::Serde(e.to_string()))?;
        crate::builder::write_file_atomic(path, (text + "\n").as_bytes())
    }
}

fn describe(k: &TableKey) -> String {
    let s = &k.settings;
    format!(
        "cpu {:?} ({} logical), {} thread(s), batch {}, {} warm-up, {:?} of {}",
        k.cpu, k.logical_cpus, s.threads, s.batch, s.warmup, s.statistic, s.repeats
    )
    .to_lowercase()
}

/// How a missing entry is measured (the real one is [`measure_op`]; tests inject fakes).
pub type MeasureFn = Arc<dyn Fn(&LatOp, &LatencySettings) -> Result<f64> + Send + Sync>;

/// A latency table in use: entries missing when a network is costed are measured then (one
/// at a time, under a lock) and the table saved at once when it has a file.
pub struct LatencyModel {
    table: Mutex<LatencyTable>,
    path: Option<PathBuf>,
    measure: MeasureFn,
    /// Seconds spent measuring entries so far.
    measuring_s: Mutex<f64>,
}

impl LatencyModel {
    /// A model measuring with `settings` on this machine, its table kept in `path` (loaded
    /// when the file exists; see [`LatencyTable::load`]), or in memory only.
    pub fn new(settings: LatencySettings, path: Option<&Path>) -> Result<LatencyModel> {
        Self::with_measure(settings, path, Arc::new(measure_op))
    }

    /// [`LatencyModel::new`] with another measurement function (tests; a table of another
    /// machine's latencies measured by hand).
    pub fn with_measure(
        settings: LatencySettings,
        path: Option<&Path>,
        measure: MeasureFn,
    ) -> Result<LatencyModel> {
        settings.check()?;
        let key = TableKey::this_machine(settings);
        let table = match path {
            Some(p) => LatencyTable::load(p, &key)?,
            None => None,
        }
        .unwrap_or_else(|| LatencyTable::new(key));
        Ok(LatencyModel {
            table: Mutex::new(table),
            path: path.map(Path::to_path_buf),
            measure,
            measuring_s: Mutex::new(0.0),
        })
    }

    /// The latency of a network running `ops`, in milliseconds: the sum of their entries,
    /// measuring (and saving) those the table lacks.
    pub fn latency_ms(&self, ops: &[LatOp]) -> Result<f64> {
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        let mut added = false;
        let mut total = 0.0;
        for op in ops {
            let k = op.key();
            let v = match table.entries.get(&k) {
                Some(v) => *v,
                None => {
                    let t = Instant::now();
                    let v = (self.measure)(op, &table.key.settings)?;
                    *self.measuring_s.lock().unwrap_or_else(|p| p.into_inner()) +=
                        t.elapsed().as_secs_f64();
                    if !(v.is_finite() && v >= 0.0) {
                        return Err(SearchError::Config(format!(
                            "latency of {k}: measured {v} ms"
                        )));
                    }
                    table.entries.insert(k, v);
                    added = true;
                    v
                }
            };
            total += v;
        }
        if added && let Some(p) = &self.path {
            table.save(p)?;
        }
        Ok(total)
    }

    /// A copy of the table as it is now.
    pub fn table(&self) -> LatencyTable {
        self.table.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Seconds spent measuring entries so far.
    pub fn measuring_s(&self) -> f64 {
        *self.measuring_s.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The file a search keeps its latency table in, inside its output directory.
pub const TABLE_FILE: &str = "latency_table.json";

/// An evaluator that adds the measured latency of each architecture's network
/// ([`crate::Metrics::latency_ms`]) to what `inner` reports; same name, same costs.
pub struct WithLatency<A> {
    inner: Arc<dyn crate::Evaluator<A>>,
    model: Arc<LatencyModel>,
}

impl<A> WithLatency<A> {
    /// `inner` with latencies from `model`.
    pub fn new(inner: Arc<dyn crate::Evaluator<A>>, model: Arc<LatencyModel>) -> Self {
        WithLatency { inner, model }
    }
}

/// The latency of `arch`'s network as `evaluator` would build it, from `model`.
pub fn latency_of<A>(
    evaluator: &dyn crate::Evaluator<A>,
    model: &LatencyModel,
    arch: &A,
) -> Result<f64> {
    let ops = evaluator.network_ops(arch).ok_or_else(|| {
        SearchError::Setting(format!(
            "the evaluator {} does not list its network's ops, so it has no latency",
            evaluator.name()
        ))
    })?;
    model.latency_ms(&ops)
}

impl<A> crate::Evaluator<A> for WithLatency<A> {
    fn name(&self) -> String {
        self.inner.name()
    }
    fn evaluate(
        &self,
        request: &crate::EvalRequest<'_, A>,
    ) -> std::result::Result<crate::Metrics, crate::EvalError> {
        let mut m = self.inner.evaluate(request)?;
        m.latency_ms = Some(
            latency_of(&*self.inner, &self.model, request.arch)
                .map_err(|e| crate::EvalError::Fatal(e.to_string()))?,
        );
        Ok(m)
    }
    fn network_cost(&self, arch: &A) -> Option<crate::nets::NetworkCost> {
        self.inner.network_cost(arch)
    }
    fn network_ops(&self, arch: &A) -> Option<Vec<LatOp>> {
        self.inner.network_ops(arch)
    }
    fn reported_tests(&self, arch: &A) -> Vec<(String, f64)> {
        self.inner.reported_tests(arch)
    }
}

/// Latency in a search: `None` when neither `--objectives acc,latency` nor `--max-latency-ms`
/// asks for it. Otherwise the model (its table in `dir`/[`TABLE_FILE`] when the search has an
/// output directory, so a resumed search reuses the same latencies), after costing `probe`
/// (which measures its ops at once, so a setting or table error stops the search before
/// anything is evaluated). Refused, naming the flag, for an evaluator that cannot list its
/// network's ops and for trials run remotely (`remote`: latency is this machine's).
pub fn for_search<A>(
    moo: &crate::pareto::MooSettings,
    settings: LatencySettings,
    evaluator: &Arc<dyn crate::Evaluator<A>>,
    probe: &A,
    dir: Option<&Path>,
    remote: bool,
) -> Result<Option<Arc<LatencyModel>>> {
    let flag = if moo
        .objectives
        .is_some_and(|o| o.cost == crate::pareto::CostKind::Latency)
    {
        "--objectives acc,latency"
    } else if moo.limits.max_latency_ms.is_some() {
        "--max-latency-ms"
    } else {
        return Ok(None);
    };
    if remote {
        return Err(SearchError::Setting(format!(
            "{flag}: latency is measured on this machine, so trials cannot run on an executor"
        )));
    }
    if evaluator.network_ops(probe).is_none() {
        return Err(SearchError::Setting(format!(
            "{flag}: the evaluator {} does not list its network's ops, so it has no latency \
             (nb201 networks have one: the train evaluator and nb201-table)",
            evaluator.name()
        )));
    }
    let path = dir.map(|d| d.join(TABLE_FILE));
    let model = Arc::new(LatencyModel::new(settings, path.as_deref())?);
    latency_of(&**evaluator, &model, probe)?;
    Ok(Some(model))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nets::flops::count_forward_flops;
    use crate::nets::nb201::{Nb201Network, nb201_cost};
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn cell(s: &str) -> Nb201Cell {
        Nb201Cell::parse(s).unwrap()
    }

    const ALL_CONV: &str = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|";
    const EMPTY: &str = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|";
    const SKIPS: &str = "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|";
    const MIXED: &str = "|nor_conv_1x1~0|+|none~0|avg_pool_3x3~1|+|none~0|none~1|nor_conv_3x3~2|";

    fn small() -> Nb201Config {
        Nb201Config {
            channels: 4,
            cells_per_stage: 2,
            in_channels: 3,
            classes: 10,
        }
    }

    fn count(ops: &[LatOp], f: impl Fn(&LatOp) -> bool) -> usize {
        ops.iter().filter(|o| f(o)).count()
    }

    #[test]
    fn op_lists_follow_the_network() {
        let cfg = Nb201Config::default();
        // Each op list's FLOPs add up to the closed form and to the FLOPs counted while the
        // built network runs: the list has the network's convolutions at their shapes.
        for s in [ALL_CONV, EMPTY, SKIPS, MIXED] {
            let c = cell(s);
            for (config, side) in [(cfg, 32), (small(), 12)] {
                let ops = nb201_ops(&c, &config, side, side);
                let flops: u64 = ops.iter().map(LatOp::flops).sum();
                assert_eq!(flops, nb201_cost(&c, &config, side, side).flops, "{s}");
                let mut net = Nb201Network::new(&c, config, 0).unwrap();
                let counted = count_forward_flops(&mut net, 3, side, side).unwrap();
                assert_eq!(flops, counted, "{s} {config:?}");
            }
        }
        let n = cfg.cells_per_stage;
        let conv = nb201_ops(&cell(ALL_CONV), &cfg, 32, 32);
        // stem + 2 ResNet blocks + 6 convolutions per cell; nodes 2 and 3 add 1 and 2 times.
        assert_eq!(count(&conv, LatOp::is_conv), 3 + 3 * n * 6);
        assert_eq!(count(&conv, |o| matches!(o, LatOp::Add { .. })), 3 * n * 3);
        assert_eq!(count(&conv, |o| matches!(o, LatOp::Zeros { .. })), 0);
        // The empty cell runs no op but its zero output; skips run identities and adds.
        let empty = nb201_ops(&cell(EMPTY), &cfg, 32, 32);
        assert_eq!(count(&empty, LatOp::is_conv), 3);
        assert_eq!(empty.len(), 1 + 2 + 1 + 3 * n);
        assert_eq!(count(&empty, |o| matches!(o, LatOp::Zeros { .. })), 3 * n);
        let skips = nb201_ops(&cell(SKIPS), &cfg, 32, 32);
        assert_eq!(count(&skips, LatOp::is_conv), 3);
        assert_eq!(count(&skips, |o| matches!(o, LatOp::Add { .. })), 3 * n * 3);
        // Mixed: node 1 = conv1x1(x), node 2 = pool(node 1), node 3 = conv3x3(node 2).
        let mixed = nb201_ops(&cell(MIXED), &small(), 8, 8);
        let first: Vec<String> = mixed[1..4].iter().map(LatOp::key).collect();
        assert_eq!(
            first,
            [
                "nor_conv_1x1/4->4/s1/8x8",
                "avg_pool_3x3/4->4/s1/8x8",
                "nor_conv_3x3/4->4/s1/8x8"
            ]
        );
        // A node whose inputs are all `none` feeds zeros to the next op.
        let dead = cell("|none~0|+|none~0|none~1|+|none~0|none~1|nor_conv_1x1~2|");
        let d = nb201_ops(&dead, &small(), 8, 8);
        assert_eq!(
            d[1..3].iter().map(LatOp::key).collect::<Vec<_>>(),
            ["zeros/4/8x8", "nor_conv_1x1/4->4/s1/8x8"]
        );
        // Stages halve the side and double the channels.
        assert!(conv.contains(&LatOp::ResBlock {
            c_in: 16,
            c_out: 32,
            h: 32,
            w: 32
        }));
        assert!(conv.contains(&LatOp::Head {
            c: 64,
            h: 8,
            w: 8,
            classes: 10
        }));
    }

    #[test]
    fn every_op_runs_and_is_timed() {
        let settings = LatencySettings {
            repeats: 2,
            warmup: 1,
            ..Default::default()
        };
        let mut keys = BTreeSet::new();
        for s in [ALL_CONV, MIXED, SKIPS, EMPTY] {
            for op in nb201_ops(&cell(s), &small(), 8, 8) {
                if keys.insert(op.key()) {
                    let ms = measure_op(&op, &settings).unwrap();
                    assert!(ms.is_finite() && ms >= 0.0, "{}: {ms}", op.key());
                }
            }
        }
        assert!(keys.len() >= 10, "{keys:?}");
        let net = Nb201Network::new(&cell(MIXED), small(), 0).unwrap();
        assert!(measure_network(&net, (3, 8, 8), &settings).unwrap() > 0.0);
        assert!(
            LatencySettings {
                repeats: 0,
                ..settings
            }
            .check()
            .is_err()
        );
    }

    use std::collections::BTreeSet;

    /// A fake measurement: 1 ms per MFLOP plus 0.5 ms, counting its calls.
    fn fake(calls: Arc<AtomicUsize>) -> MeasureFn {
        Arc::new(move |op: &LatOp, _: &LatencySettings| {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok(op.flops() as f64 / 1e6 + 0.5)
        })
    }

    #[test]
    fn the_table_sums_measures_once_saves_and_reuses() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lat.json");
        let calls = Arc::new(AtomicUsize::new(0));
        let settings = LatencySettings::default();
        let m = LatencyModel::with_measure(settings, Some(&path), fake(calls.clone())).unwrap();
        let ops = nb201_ops(&cell(MIXED), &small(), 8, 8);
        let distinct: BTreeSet<String> = ops.iter().map(LatOp::key).collect();
        let want: f64 = ops.iter().map(|o| o.flops() as f64 / 1e6 + 0.5).sum();
        let got = m.latency_ms(&ops).unwrap();
        assert!((got - want).abs() < 1e-9, "{got} {want}");
        assert_eq!(calls.load(Ordering::SeqCst), distinct.len());
        assert!(ops.len() > distinct.len());
        // Again: nothing measured; the file holds every entry.
        assert_eq!(m.latency_ms(&ops).unwrap(), got);
        assert_eq!(calls.load(Ordering::SeqCst), distinct.len());
        let saved = LatencyTable::load(&path, &TableKey::this_machine(settings))
            .unwrap()
            .unwrap();
        assert_eq!(saved.entries.len(), distinct.len());
        // A new model on the same file measures nothing.
        let calls2 = Arc::new(AtomicUsize::new(0));
        let m2 = LatencyModel::with_measure(settings, Some(&path), fake(calls2.clone())).unwrap();
        assert_eq!(m2.latency_ms(&ops).unwrap(), got);
        assert_eq!(calls2.load(Ordering::SeqCst), 0);
        // The empty cell is faster than the mixed one, which is faster than all convolutions.
        let lat = |s: &str| m.latency_ms(&nb201_ops(&cell(s), &small(), 8, 8)).unwrap();
        assert!(lat(EMPTY) < lat(MIXED) && lat(MIXED) < lat(ALL_CONV));
    }

    #[test]
    fn a_table_of_other_settings_or_a_corrupt_one_is_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lat.json");
        let settings = LatencySettings::default();
        let calls = Arc::new(AtomicUsize::new(0));
        let m = LatencyModel::with_measure(settings, Some(&path), fake(calls.clone())).unwrap();
        m.latency_ms(&nb201_ops(&cell(MIXED), &small(), 8, 8))
            .unwrap();
        let before = std::fs::read(&path).unwrap();
        for other in [
            LatencySettings {
                threads: 2,
                ..settings
            },
            LatencySettings {
                batch: 8,
                ..settings
            },
            LatencySettings {
                statistic: Statistic::Median,
                ..settings
            },
        ] {
            let e = LatencyModel::with_measure(other, Some(&path), fake(calls.clone()))
                .err()
                .unwrap()
                .to_string();
            assert!(e.contains("lat.json") && e.contains("measured for"), "{e}");
        }
        // Another machine.
        let mut t: LatencyTable = serde_json::from_slice(&before).unwrap();
        t.key.cpu = "Some Other CPU".into();
        let p2 = dir.path().join("other.json");
        t.save(&p2).unwrap();
        let e = LatencyModel::new(settings, Some(&p2))
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("other.json") && e.contains("some other cpu"),
            "{e}"
        );
        // Refused files are left as they were.
        assert_eq!(std::fs::read(&path).unwrap(), before);
        for (name, text) in [
            ("trunc.json", &String::from_utf8_lossy(&before)[..40]),
            ("junk.json", "not json at all"),
            (
                "neg.json",
                &String::from_utf8_lossy(&before).replacen(": 0.5", ": -1.0", 1),
            ),
        ] {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            let e = LatencyModel::new(settings, Some(&p)).err().unwrap();
            assert!(matches!(e, SearchError::Input { .. }), "{e}");
            assert!(e.to_string().contains(name), "{e}");
        }
        // A measurement that fails or gives nonsense is an error, not an entry.
        let bad: MeasureFn = Arc::new(|_: &LatOp, _: &LatencySettings| Ok(f64::NAN));
        let m = LatencyModel::with_measure(settings, None, bad).unwrap();
        assert!(m.latency_ms(&[LatOp::Add { c: 1, h: 1, w: 1 }]).is_err());
        assert!(m.table().entries.is_empty());
    }
}
