//! Checkpoints of a one-shot search: everything needed to continue bit-identically.
//!
//! The file uses the search crate's envelope ([`crate::checkpoint::write_atomic`]: header line
//! with length and FNV-1a checksum, temporary file, fsync, rename). Its payload is
//! `u64 LE json_len`, a JSON document (settings, position, generator, optimizer scalars,
//! history, a data fingerprint and a table of contents), then the raw little-endian `f32`
//! sections the table lists: every network parameter and BN buffer (by name), the architecture
//! logits, the SGD momentum buffers and the Adam moments (ENAS: also the controller's parameters
//! and Adam moments, its baseline as bits in the JSON part). Floats never pass through decimal
//! text, so a resumed search continues exactly.

use std::path::Path;

use nas_tensor::optim::{AdamConfig, AdamParamState, AdamState, SgdConfig, SgdState};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::error::{OneShotError, Result};
use super::net::OneShotNet;
use super::search::{EpochRecord, EpochSums, OneShotConfig, OneShotSearch};
use crate::checkpoint::{fnv1a64, read_verified, write_atomic};
use crate::data::Dataset;
use crate::strategy::ControllerState;

const FORMAT: &str = "nas-rs one-shot search";
const VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct Meta {
    format: String,
    version: u32,
    config: OneShotConfig,
    data_fingerprint: String,
    epoch: usize,
    step_in_epoch: usize,
    global_step: u64,
    sums: EpochSums,
    rng: ChaCha8Rng,
    sgd_config: SgdConfig,
    adam_config: AdamConfig,
    adam_steps: Vec<Option<u64>>,
    history: Vec<EpochRecord>,
    sections: Vec<(String, usize)>,
    /// ENAS: the controller's Adam settings, steps per parameter and baseline (as f64 bits);
    /// its parameters and moments are `ctrl.*` sections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    controller: Option<ControllerMeta>,
}

#[derive(Serialize, Deserialize)]
struct ControllerMeta {
    adam_config: AdamConfig,
    adam_steps: Vec<Option<u64>>,
    baseline_num_bits: u64,
    baseline_den_bits: u64,
}

/// Where a checkpoint stands (read without rebuilding the search).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointProgress {
    /// Epoch in progress.
    pub epoch: usize,
    /// Steps done in that epoch.
    pub step_in_epoch: usize,
    /// Steps done in total.
    pub global_step: u64,
}

/// A fingerprint of a data set (shape, labels and image bits), to refuse resuming on other data.
pub fn data_fingerprint(d: &Dataset) -> String {
    let mut bytes = Vec::with_capacity(d.images().len() * 4 + d.labels().len() * 8 + 32);
    let (c, h, w) = d.shape();
    for v in [c, h, w, d.num_classes(), d.len()] {
        bytes.extend_from_slice(&(v as u64).to_le_bytes());
    }
    for &l in d.labels() {
        bytes.extend_from_slice(&(l as u64).to_le_bytes());
    }
    for &x in d.images() {
        bytes.extend_from_slice(&x.to_bits().to_le_bytes());
    }
    format!("{:016x}", fnv1a64(&bytes))
}

fn bad(path: &Path, problem: impl Into<String>) -> OneShotError {
    OneShotError::Checkpoint {
        path: path.to_path_buf(),
        problem: problem.into(),
    }
}

impl OneShotSearch {
    /// Rebuilds a search from a checkpoint written by [`OneShotSearch::save_checkpoint`] for the
    /// same settings and data. An error names what differs (settings, data) or what is broken.
    pub fn load_checkpoint(path: &Path, config: &OneShotConfig, data: &Dataset) -> Result<Self> {
        OneShotSearch::resume(path, config, data)
    }

    /// [`OneShotSearch::load_checkpoint`] from the file's bytes, read elsewhere (a data-parallel
    /// run's rank 0 reads the file and broadcasts it); `path` names it in errors.
    pub fn load_checkpoint_bytes(
        path: &Path,
        bytes: &[u8],
        config: &OneShotConfig,
        data: &Dataset,
    ) -> Result<Self> {
        OneShotSearch::resume_bytes(path, bytes, config, data)
    }
}

impl<N: OneShotNet> OneShotSearch<N> {
    pub(crate) fn full_data_fingerprint(&self) -> String {
        N::fingerprint(&self.data)
    }

    /// Writes a checkpoint to `path` (atomically).
    pub fn save_checkpoint(&self, path: &Path) -> Result<()> {
        let mut sections: Vec<(String, usize)> = Vec::new();
        let mut blob: Vec<u8> = Vec::new();
        let mut push = |name: String, v: &[f32]| {
            sections.push((name, v.len()));
            for x in v {
                blob.extend_from_slice(&x.to_le_bytes());
            }
        };
        for (name, t) in self.net.state_dict() {
            push(format!("net.{name}"), &t.to_vec()?);
        }
        for (i, a) in self.arch.tensors().iter().enumerate() {
            push(format!("alpha.{i}"), &a.to_vec()?);
        }
        for (name, t) in N::carried_state(&self.data) {
            push(name, &t.to_vec()?);
        }
        let sgd = self.sgd_state()?;
        for (i, b) in sgd.momentum_buffers.iter().enumerate() {
            if let Some(b) = b {
                push(format!("sgd.momentum.{i}"), b);
            }
        }
        let adam = self.adam_state()?;
        for (i, p) in adam.params.iter().enumerate() {
            if let Some(p) = p {
                push(format!("adam.exp_avg.{i}"), &p.exp_avg);
                push(format!("adam.exp_avg_sq.{i}"), &p.exp_avg_sq);
            }
        }
        let controller = match &self.controller {
            None => None,
            Some(c) => {
                let st = c.state()?;
                for (i, p) in st.params.iter().enumerate() {
                    push(format!("ctrl.param.{i}"), p);
                }
                for (i, p) in st.adam.params.iter().enumerate() {
                    if let Some(p) = p {
                        push(format!("ctrl.adam.exp_avg.{i}"), &p.exp_avg);
                        push(format!("ctrl.adam.exp_avg_sq.{i}"), &p.exp_avg_sq);
                    }
                }
                Some(ControllerMeta {
                    adam_config: st.adam.config,
                    adam_steps: st
                        .adam
                        .params
                        .iter()
                        .map(|p| p.as_ref().map(|p| p.step))
                        .collect(),
                    baseline_num_bits: st.baseline_num.to_bits(),
                    baseline_den_bits: st.baseline_den.to_bits(),
                })
            }
        };
        let meta = Meta {
            format: FORMAT.into(),
            version: VERSION,
            config: self.config.clone(),
            data_fingerprint: self.full_data_fingerprint(),
            epoch: self.epoch,
            step_in_epoch: self.step_in_epoch,
            global_step: self.global_step,
            sums: self.sums.clone(),
            rng: self.rng.clone(),
            sgd_config: sgd.config,
            adam_config: adam.config,
            adam_steps: adam
                .params
                .iter()
                .map(|p| p.as_ref().map(|p| p.step))
                .collect(),
            history: self.history.clone(),
            sections,
            controller,
        };
        let json = serde_json::to_vec(&meta).map_err(|e| bad(path, e.to_string()))?;
        let mut payload = Vec::with_capacity(8 + json.len() + blob.len());
        payload.extend_from_slice(&(json.len() as u64).to_le_bytes());
        payload.extend_from_slice(&json);
        payload.extend_from_slice(&blob);
        write_atomic(path, &payload)?;
        Ok(())
    }

    /// Rebuilds a search from a checkpoint written by [`OneShotSearch::save_checkpoint`] for the
    /// same settings and input ([`OneShotSearch::start`]'s). An error names what differs
    /// (settings, data) or what is broken.
    pub fn resume(path: &Path, config: &OneShotConfig, input: &N::Input) -> Result<Self> {
        let bytes = std::fs::read(path)
            .map_err(|e| OneShotError::from(crate::error::SearchError::io(path, e)))?;
        Self::resume_bytes(path, &bytes, config, input)
    }

    /// [`OneShotSearch::resume`] from the file's bytes, read elsewhere (a data-parallel run's
    /// rank 0 reads the file and broadcasts it); `path` names it in errors.
    pub fn resume_bytes(
        path: &Path,
        bytes: &[u8],
        config: &OneShotConfig,
        input: &N::Input,
    ) -> Result<Self> {
        let (mut meta, blob) = meta_of(path, crate::checkpoint::verify_bytes(path, bytes)?)?;
        // How often checkpoints are written does not change the search; more epochs extend it
        // (the learning-rate and temperature schedules then run over the new number of epochs
        // from the step where it stopped).
        meta.config.checkpoint_every = config.checkpoint_every;
        if config.epochs > meta.config.epochs {
            meta.config.epochs = config.epochs;
        }
        // the device is a run setting (not saved): a search may resume on another one
        meta.config.device = config.device;
        // SPOS / RSWS: the number of candidate paths only sizes the path search after
        // training, which is rerun from the trained supernet on every (re)start
        meta.config.candidates = config.candidates;
        if &meta.config != config {
            let a = serde_json::to_value(&meta.config).unwrap_or_default();
            let b = serde_json::to_value(config).unwrap_or_default();
            let mut diffs = Vec::new();
            if let (Some(a), Some(b)) = (a.as_object(), b.as_object()) {
                for (k, va) in a {
                    let vb = b.get(k).unwrap_or(&serde_json::Value::Null);
                    if va != vb {
                        // The settings' floats are f32: print them as such (0.025, not
                        // 0.02500000037252903).
                        let show = |v: &serde_json::Value| match v.as_f64() {
                            Some(x) if v.is_f64() => format!("{}", x as f32),
                            _ => v.to_string(),
                        };
                        diffs.push(format!("{k} {} (this search: {})", show(va), show(vb)));
                    }
                }
            }
            return Err(bad(
                path,
                format!(
                    "it was written with other settings: {}; refusing to resume",
                    diffs.join("; ")
                ),
            ));
        }
        let mut s = OneShotSearch::<N>::start(config.clone(), input)?;
        let fp = s.full_data_fingerprint();
        if fp != meta.data_fingerprint {
            return Err(bad(
                path,
                format!(
                    "it was written for other data (fingerprint {} here {})",
                    meta.data_fingerprint, fp
                ),
            ));
        }
        // Index the sections.
        let mut map = std::collections::HashMap::new();
        let mut off = 0usize;
        for (name, len) in &meta.sections {
            let end = off + len * 4;
            if end > blob.len() {
                return Err(bad(path, format!("section {name} runs past the end")));
            }
            let v: Vec<f32> = blob[off..end]
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            map.insert(name.clone(), v);
            off = end;
        }
        if off != blob.len() {
            return Err(bad(path, "trailing bytes after the last section"));
        }
        let mut take = |name: String, want: usize| -> Result<Vec<f32>> {
            let v = map
                .remove(&name)
                .ok_or_else(|| bad(path, format!("missing section {name}")))?;
            if v.len() != want {
                return Err(bad(
                    path,
                    format!("section {name} has {} values, expected {want}", v.len()),
                ));
            }
            Ok(v)
        };
        for (name, t) in s.net.state_dict() {
            let v = take(format!("net.{name}"), t.numel())?;
            t.set_data(&v)?;
        }
        for (i, a) in s.arch.tensors().iter().enumerate() {
            let v = take(format!("alpha.{i}"), a.numel())?;
            a.set_data(&v)?;
        }
        for (name, t) in N::carried_state(&s.data) {
            let v = take(name, t.numel())?;
            t.set_data(&v)?;
        }
        let mut bufs = Vec::new();
        for (i, p) in s.w_params.iter().enumerate() {
            let name = format!("sgd.momentum.{i}");
            bufs.push(if meta.sections.iter().any(|(n, _)| *n == name) {
                Some(take(name, p.numel())?)
            } else {
                None
            });
        }
        let arch_t = s.arch.tensors();
        if meta.adam_steps.len() != arch_t.len() {
            return Err(bad(path, "wrong number of Adam parameter states"));
        }
        let mut aps = Vec::new();
        for (i, (st, a)) in meta.adam_steps.iter().zip(&arch_t).enumerate() {
            aps.push(match st {
                Some(step) => Some(AdamParamState {
                    step: *step,
                    exp_avg: take(format!("adam.exp_avg.{i}"), a.numel())?,
                    exp_avg_sq: take(format!("adam.exp_avg_sq.{i}"), a.numel())?,
                }),
                None => None,
            });
        }
        match (&mut s.controller, meta.controller) {
            (None, None) => {}
            (Some(c), Some(cm)) => {
                let shapes: Vec<usize> = c.parameters().iter().map(|p| p.numel()).collect();
                if cm.adam_steps.len() != shapes.len() {
                    return Err(bad(path, "wrong number of controller Adam states"));
                }
                let mut params = Vec::with_capacity(shapes.len());
                for (i, &n) in shapes.iter().enumerate() {
                    params.push(take(format!("ctrl.param.{i}"), n)?);
                }
                let mut aps = Vec::with_capacity(shapes.len());
                for (i, (st, &n)) in cm.adam_steps.iter().zip(&shapes).enumerate() {
                    aps.push(match st {
                        Some(step) => Some(AdamParamState {
                            step: *step,
                            exp_avg: take(format!("ctrl.adam.exp_avg.{i}"), n)?,
                            exp_avg_sq: take(format!("ctrl.adam.exp_avg_sq.{i}"), n)?,
                        }),
                        None => None,
                    });
                }
                c.load(ControllerState {
                    params,
                    adam: AdamState {
                        config: cm.adam_config,
                        params: aps,
                    },
                    baseline_num: f64::from_bits(cm.baseline_num_bits),
                    baseline_den: f64::from_bits(cm.baseline_den_bits),
                })?;
            }
            (Some(_), None) => return Err(bad(path, "it holds no controller state")),
            (None, Some(_)) => return Err(bad(path, "it holds a controller this search has not")),
        }
        if let Some(name) = map.keys().next() {
            return Err(bad(path, format!("unexpected section {name}")));
        }
        s.load_optimizers(
            SgdState {
                config: meta.sgd_config,
                momentum_buffers: bufs,
            },
            AdamState {
                config: meta.adam_config,
                params: aps,
            },
        )?;
        s.epoch = meta.epoch;
        s.step_in_epoch = meta.step_in_epoch;
        s.global_step = meta.global_step;
        s.sums = meta.sums;
        s.rng = meta.rng;
        s.history = meta.history;
        Ok(s)
    }
}

fn read_meta(path: &Path) -> Result<(Meta, Vec<u8>)> {
    meta_of(path, read_verified(path)?)
}

fn meta_of(path: &Path, payload: Vec<u8>) -> Result<(Meta, Vec<u8>)> {
    if payload.len() < 8 {
        return Err(bad(path, "payload too short"));
    }
    let n = u64::from_le_bytes(payload[..8].try_into().expect("8 bytes")) as usize;
    if 8 + n > payload.len() {
        return Err(bad(path, "JSON part runs past the end"));
    }
    let meta: Meta = serde_json::from_slice(&payload[8..8 + n])
        .map_err(|e| bad(path, format!("bad JSON part: {e}")))?;
    if meta.format != FORMAT || meta.version != VERSION {
        return Err(bad(
            path,
            format!(
                "not a one-shot checkpoint of version {VERSION} ({:?} v{})",
                meta.format, meta.version
            ),
        ));
    }
    Ok((meta, payload[8 + n..].to_vec()))
}

/// Reads where a checkpoint stands.
pub fn checkpoint_progress(path: &Path) -> Result<CheckpointProgress> {
    let (m, _) = read_meta(path)?;
    Ok(CheckpointProgress {
        epoch: m.epoch,
        step_in_epoch: m.step_in_epoch,
        global_step: m.global_step,
    })
}
