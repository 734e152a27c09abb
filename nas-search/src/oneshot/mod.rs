//! One-shot architecture search on nas-tensor: DARTS (first and second order), GDAS, PC-DARTS,
//! and single-path weight sharing (SPOS, random search with weight sharing, ENAS) over the DARTS and
//! NAS-Bench-201 spaces, and DARTS (first and second order) over the DARTS recurrent space on
//! text, with exact checkpoint/resume.
//!
//! * [`supernet`]: the DARTS supernet (stem, 8 cells with reductions at 1/3 and 2/3 of the depth,
//!   14 mixed edges over 8 primitives, `none` included, pools followed by non-affine BN,
//!   non-affine preprocessing, concatenation of the 4 intermediate nodes, global pooling,
//!   linear) and the NAS-Bench-201 supernet (its macro skeleton with 6 mixed edges over 5 ops),
//!   built from [`crate::nets::ops`].
//! * [`arch`]: architecture weights (`[edges, ops]` per cell type, `1e-3 N(0, 1)`), softmax and
//!   Gumbel sampling.
//! * [`search`]: the bilevel optimisation ([`OneShotSearch`]): weights by SGD (0.025 cosine to
//!   0.001, momentum 0.9, weight decay 3e-4, clip 5), architecture by Adam (3e-4, betas
//!   (0.5, 0.999), weight decay 1e-3), the training set split in halves; first order, second
//!   order (unrolled step with `xi` = current weight learning rate, finite-difference
//!   Hessian-vector product with `R = 0.01 / ||v||`) and GDAS (hard Gumbel-softmax, straight
//!   through, temperature 10 -> 0.1); PC-DARTS (Xu et al. 2020): first order on a supernet whose
//!   edges pass `1/K` of their channels through the ops (the rest bypassed, then a channel
//!   shuffle) with edge normalisation (per node, a softmax over the incoming edges' logits,
//!   trained by the same Adam; derivation scales each op weight by its edge's weight).
//!   beta-DARTS (Ye et al. 2022): first order with `lambda * mean_edges logsumexp(alpha_edge)`
//!   per cell type added to the architecture loss (its gradient `lambda / edges *
//!   softmax(alpha)` added to the logits' gradient), `lambda` linear from 0 to
//!   [`OneShotConfig::beta_lambda`]; DARTS+ (Liang et al. 2019): first order, stopped at the end
//!   of the first epoch whose derived cell has [`OneShotConfig::plus_threshold`] skip
//!   connections (DARTS normal cell) or parameter-free ops (NB201), the record saying why.
//! * [`net`]: [`OneShotNet`], what [`OneShotSearch`] trains; [`text`]: DARTS first and second
//!   order on the DARTS recurrent space ([`crate::nets::rnn::RnnSupernet`] over a text corpus,
//!   its training stream split into weight and architecture halves, truncated BPTT with the
//!   state carried across steps; the original recurrent search's SGD at 20, clip 0.25, Adam at
//!   3e-3), started with [`run_oneshot_on`] or [`OneShotSearch::start`].
//! * [`spos`]: SPOS and random search with weight sharing: training on one uniformly sampled
//!   path per step, then a path search scored by inherited weights with BN recalibration.
//! * [`enas`]: ENAS: training on one path per step sampled by an LSTM controller, which is
//!   trained by REINFORCE on its samples' validation-batch accuracy; derivation keeps the best
//!   of the controller's samples.
//! * [`derive`]: the DARTS, NAS-Bench-201 and DARTS recurrent derivation rules (ties
//!   documented there).
//! * [`checkpoint`]: checkpoints holding weights, BN statistics, architecture weights, both
//!   optimizers, the noise generator, epoch and step; a resumed search is bit-identical to an
//!   uninterrupted one (same thread count).
//! * [`heatmap`]: the SVG heat map of the softmaxed weights.
//!
//! [`run_oneshot`] is the entry point for the command line: it writes, per epoch,
//! `epochs/epoch_NNN.json` (architecture weights, genotype, losses and accuracies) and
//! `history.json`, and at the end `alphas.svg` (SPOS / RSWS: `candidates.json` instead),
//! `genotype.txt` and `result.json`, checkpointing to
//! `checkpoint.bin` (every `checkpoint_every` steps and at each epoch end).
//! [`run_oneshot_parallel`] runs the same search data-parallel over a
//! [`crate::dist::Communicator`]'s ranks (each on a shard of every batch; rank 0 writes).
//!
//! Differences from the original code, all deliberate: the learning rate of epoch `t` is the
//! cosine value at `t` (the original's scheduler call order gave epoch 0 the value at 1); the
//! architecture batch of step `s` is the `s`-th batch of a per-epoch permutation of the
//! architecture half (the original drew a fresh random batch each step); the `none` op is not
//! run (it contributes exactly zero; its weight still enters the softmax).
//!
//! Memory: the separable and dilated convolutions keep one activation per ReLU-conv-conv-BN
//! block (see [`crate::nets::ops::SepConv`]), graph nodes keep only the values their gradient
//! rules read, and each node of a cell is one weighted sum over all its incoming ops, so one
//! graph over the C = 16 DARTS supernet at batch 64 peaks at about 2.7 GB (docs/PERF.md).
//! [`OneShotConfig::recompute_cells`] trades time for memory on larger settings.

pub mod arch;
pub mod checkpoint;
pub mod derive;
pub mod enas;
pub mod error;
pub mod heatmap;
pub mod net;
pub mod search;
pub mod spos;
pub mod supernet;
pub mod text;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

pub use arch::{ArchParams, ArchSnapshot};
pub use checkpoint::{CheckpointProgress, checkpoint_progress};
pub use derive::{derive_darts_cell, derive_darts_genotype, derive_nb201_cell, derive_rnn_cell};
pub use error::{OneShotError, Result};
pub use heatmap::{heatmap_svg, save_heatmap};
pub use net::OneShotNet;
pub use search::{
    EpochRecord, Genotype, ImageHalves, Method, OneShotConfig, OneShotSearch, RECOMPUTE_CELLS,
};
pub use spos::{PathCandidate, PathSearch, path_indices, path_mixing, sample_path};
pub use supernet::{HardWeights, Mixing, SpaceKind, Supernet, SupernetConfig};
pub use text::{TextBatch, TextHalves};

use crate::data::Dataset;
use crate::dist::Communicator;

/// The checkpoint file name inside the output directory.
pub const CHECKPOINT_FILE: &str = "checkpoint.bin";

/// What a finished one-shot search returns.
#[derive(Debug, Clone, Serialize)]
pub struct OneShotOutcome {
    /// The strategy.
    pub method: Method,
    /// The space.
    pub space: SpaceKind,
    /// The final derived genotype.
    pub genotype: Genotype,
    /// One record per epoch.
    pub history: Vec<EpochRecord>,
    /// Final architecture weights (SPOS / RSWS: the untrained initial ones).
    pub arch: ArchSnapshot,
    /// SPOS / RSWS: the path search (also written to `candidates.json`).
    pub paths: Option<PathSearch>,
    /// Where the search resumed from, if it did.
    pub resumed_from_step: Option<u64>,
    /// Steps run by this call.
    pub steps_run: u64,
    /// The output directory.
    pub out_dir: PathBuf,
}

impl EpochRecord {
    /// One line for a progress log: losses, accuracies and the derived genotype.
    pub fn line(&self) -> String {
        if let Genotype::Rnn(g) = &self.genotype {
            // text: losses in bits per character
            let bpc = |nats: f64| nats / std::f64::consts::LN_2;
            let valid = self
                .valid_loss
                .map_or("n/a".into(), |l| format!("{:.3} bpc", bpc(l)));
            return format!(
                "epoch {:>3}  train {:.3} bpc  arch-half {:.3} bpc (eval {valid})  {g}",
                self.epoch + 1,
                bpc(self.train_loss),
                bpc(self.search_loss)
            );
        }
        let valid = self
            .valid_acc
            .map_or("n/a".into(), |a| format!("{:5.1}%", a * 100.0));
        format!(
            "epoch {:>3}  train loss {:.4} acc {:5.1}%  arch-half acc {valid}  {}",
            self.epoch + 1,
            self.train_loss,
            self.train_acc * 100.0,
            self.genotype
        )
    }
}

/// Progress events of [`run_oneshot_observed`].
#[derive(Debug)]
pub enum Event<'a> {
    /// A step finished.
    Step {
        /// Epoch.
        epoch: usize,
        /// Steps done in the epoch.
        step: usize,
        /// Steps per epoch.
        steps_per_epoch: usize,
    },
    /// An epoch finished.
    Epoch(&'a EpochRecord),
}

/// `v` as pretty JSON (written atomically by the caller: a kill leaves the old file or the new
/// one whole).
fn pretty<T: Serialize>(v: &T) -> Result<String> {
    serde_json::to_string_pretty(v).map_err(|e| OneShotError::Config(e.to_string()))
}

/// Runs (or, with `resume`, continues) a one-shot search on `train_data` (a training set; it is
/// split into weight and architecture halves), writing outputs and checkpoints to `out_dir`.
///
/// With `resume`, `out_dir/checkpoint.bin` must exist and match the settings and data.
pub fn run_oneshot(
    config: &OneShotConfig,
    train_data: &Dataset,
    out_dir: &Path,
    resume: bool,
) -> Result<OneShotOutcome> {
    run_oneshot_observed(config, train_data, out_dir, resume, &mut |_| {})
}

/// [`run_oneshot`] with a callback after every step and epoch.
pub fn run_oneshot_observed(
    config: &OneShotConfig,
    train_data: &Dataset,
    out_dir: &Path,
    resume: bool,
    observe: &mut dyn FnMut(&Event<'_>),
) -> Result<OneShotOutcome> {
    run_oneshot_inner::<Supernet>(config, train_data, out_dir, resume, None, observe)
}

/// [`run_oneshot_observed`] for any supernet: `input` is what [`OneShotSearch::start`] reads
/// (the recurrent space: a [`crate::data::text::TextCorpus`], with
/// [`crate::nets::rnn::RnnSupernet`]). Same outputs, checkpoints and resumption.
pub fn run_oneshot_on<N: OneShotNet>(
    config: &OneShotConfig,
    input: &N::Input,
    out_dir: &Path,
    resume: bool,
    observe: &mut dyn FnMut(&Event<'_>),
) -> Result<OneShotOutcome> {
    run_oneshot_inner::<N>(config, input, out_dir, resume, None, observe)
}

/// [`run_oneshot_observed`] data-parallel over `comm`'s ranks
/// ([`OneShotSearch::with_communicator`]); every rank calls it with the same settings and data.
/// Rank 0 alone reads and writes `out_dir` and decides `resume`; it broadcasts the checkpoint
/// it resumes from, so the other ranks need no access to the directory and write nothing
/// (their `out_dir` and `resume` are ignored). Every rank returns the same outcome.
pub fn run_oneshot_parallel(
    config: &OneShotConfig,
    train_data: &Dataset,
    out_dir: &Path,
    resume: bool,
    comm: Arc<dyn Communicator>,
    observe: &mut dyn FnMut(&Event<'_>),
) -> Result<OneShotOutcome> {
    run_oneshot_inner::<Supernet>(config, train_data, out_dir, resume, Some(comm), observe)
}

/// Rank 0's checkpoint for the others: a tag byte (0: start afresh, 1: the checkpoint's bytes
/// follow, 2: rank 0 failed to read it, its message follows).
fn share_checkpoint(comm: &dyn Communicator, ckpt: &Path, resume: bool) -> Result<Option<Vec<u8>>> {
    let mut msg = Vec::new();
    let mut mine = Err(None);
    if comm.rank() == 0 {
        if resume {
            match std::fs::read(ckpt) {
                Ok(b) => {
                    msg.push(1);
                    msg.extend_from_slice(&b);
                    mine = Ok(Some(b));
                }
                Err(e) => {
                    let e = if e.kind() == std::io::ErrorKind::NotFound {
                        OneShotError::Checkpoint {
                            path: ckpt.to_path_buf(),
                            problem: "cannot resume: no checkpoint there".into(),
                        }
                    } else {
                        OneShotError::io(ckpt, e)
                    };
                    msg.push(2);
                    msg.extend_from_slice(e.to_string().as_bytes());
                    mine = Err(Some(e));
                }
            }
        } else {
            msg.push(0);
            mine = Ok(None);
        }
    }
    comm.broadcast_bytes(&mut msg, 0)?;
    if comm.rank() == 0 {
        return mine.map_err(|e| e.expect("rank 0 keeps its error"));
    }
    match msg.first() {
        Some(0) => Ok(None),
        Some(1) => Ok(Some(msg[1..].to_vec())),
        _ => Err(OneShotError::Config(format!(
            "rank 0 could not read the checkpoint to resume from: {}",
            String::from_utf8_lossy(msg.get(1..).unwrap_or_default())
        ))),
    }
}

fn run_oneshot_inner<N: OneShotNet>(
    config: &OneShotConfig,
    input: &N::Input,
    out_dir: &Path,
    resume: bool,
    comm: Option<Arc<dyn Communicator>>,
    observe: &mut dyn FnMut(&Event<'_>),
) -> Result<OneShotOutcome> {
    let epochs_dir = out_dir.join("epochs");
    let ckpt = out_dir.join(CHECKPOINT_FILE);
    // Data-parallel: rank 0 alone touches the directory.
    let writer = comm.as_ref().is_none_or(|c| c.rank() == 0);
    let (mut s, resumed_from_step) = match &comm {
        None if resume => {
            if !ckpt.exists() {
                return Err(OneShotError::Checkpoint {
                    path: ckpt,
                    problem: "cannot resume: no checkpoint there".into(),
                });
            }
            let s = OneShotSearch::<N>::resume(&ckpt, config, input)?;
            let g = s.global_step();
            (s, Some(g))
        }
        None => (OneShotSearch::<N>::start(config.clone(), input)?, None),
        Some(c) => {
            let (s, from) = match share_checkpoint(c.as_ref(), &ckpt, resume)? {
                Some(bytes) => {
                    let s = OneShotSearch::<N>::resume_bytes(&ckpt, &bytes, config, input)?;
                    let g = s.global_step();
                    (s, Some(g))
                }
                None => (OneShotSearch::<N>::start(config.clone(), input)?, None),
            };
            (N::with_communicator(s, c.clone())?, from)
        }
    };
    // Checked: from here on, writes (checkpoints under the persist guard, so that a signal
    // handler taking it never exits in the middle of one).
    if writer {
        std::fs::create_dir_all(&epochs_dir).map_err(|e| OneShotError::io(&epochs_dir, e))?;
    }
    let save = |s: &OneShotSearch<N>| {
        if !writer {
            return Ok(());
        }
        let _g = crate::outdir::persist_guard();
        s.save_checkpoint(&ckpt)
    };
    let write_json = |path: &Path, v: &dyn Fn() -> Result<String>| {
        if writer {
            Ok(crate::builder::write_file_atomic(path, v()?.as_bytes())?)
        } else {
            Ok::<(), OneShotError>(())
        }
    };
    let start = s.global_step();
    while !s.is_done() {
        let spe = s.steps_per_epoch();
        while s.step_in_epoch() < spe {
            s.step()?;
            observe(&Event::Step {
                epoch: s.epoch(),
                step: s.step_in_epoch(),
                steps_per_epoch: spe,
            });
            if config.checkpoint_every > 0 && s.global_step() % config.checkpoint_every as u64 == 0
            {
                save(&s)?;
            }
        }
        let rec = s.finish_epoch()?;
        write_json(
            &epochs_dir.join(format!("epoch_{:03}.json", rec.epoch)),
            &|| pretty(&rec),
        )?;
        write_json(&out_dir.join("history.json"), &|| pretty(&s.history()))?;
        save(&s)?;
        observe(&Event::Epoch(&rec));
    }
    let arch = s.arch().snapshot()?;
    let (genotype, paths) = if config.method.samples_paths() {
        // SPOS / RSWS: the path search over the trained supernet (no architecture weights).
        let p = N::search_paths(&mut s)?;
        write_json(&out_dir.join("candidates.json"), &|| pretty(&p))?;
        (p.best_genotype(), Some(p))
    } else {
        if writer {
            save_heatmap(
                &arch,
                &format!(
                    "{} on {}: softmax of the architecture weights after {} epochs",
                    config.method.name(),
                    config.space.name(),
                    s.epoch()
                ),
                &out_dir.join("alphas.svg"),
            )?;
        }
        (s.genotype()?, None)
    };
    let gpath = out_dir.join("genotype.txt");
    if writer {
        crate::builder::write_file_atomic(&gpath, format!("{genotype}\n").as_bytes())?;
    }
    let outcome = OneShotOutcome {
        method: config.method,
        space: config.space,
        genotype,
        history: s.history().to_vec(),
        arch,
        paths,
        resumed_from_step,
        steps_run: s.global_step() - start,
        out_dir: out_dir.to_path_buf(),
    };
    write_json(&out_dir.join("result.json"), &|| pretty(&outcome))?;
    Ok(outcome)
}
