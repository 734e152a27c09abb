//! DARTS on the recurrent space: the [`OneShotNet`] of [`RnnSupernet`] on a text corpus.
//!
//! The corpus' training stream is split as the image search splits its training set: its first
//! `train_portion` trains the weights, the rest the architecture (the corpus' validation and
//! test streams stay untouched, for training the derived cell). Each half is cut into
//! `batch_size` columns read in windows of [`OneShotConfig::bptt`] steps
//! ([`TokenWindows`]); step `s` of an epoch reads window `s` of the weight half and window
//! `s mod n` of the architecture half. Each half carries its recurrent state from step to step
//! (detached: truncated BPTT), from zeros at the start of every epoch, as the original's
//! `train_search.py` does: the state a half carries on is the one its last pass of the step
//! produced (the weight step; the architecture pass, unrolled or not). The carried states are
//! part of checkpoints. Dropout masks come from a generator seeded by the step, so a resumed
//! search draws the same ones.
//!
//! Losses are nats per character and accuracies the fraction of next characters predicted.

use std::cell::RefCell;

use nas_tensor::nn::{CarriedState, Module, TokenWindows, Window};
use nas_tensor::{Tensor, no_grad};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::error::{OneShotError, Result};
use super::net::OneShotNet;
use super::search::{OneShotConfig, OneShotSearch};
use super::spos::PathSearch;
use super::supernet::SpaceKind;
use crate::data::text::TextCorpus;
use crate::nets::rnn::{RnnDropout, RnnSupernet};

/// The recurrent search's halves of the training stream, their windows and carried states.
pub struct TextHalves {
    /// The windows of the weight half, in order.
    train: Vec<Window>,
    /// The windows of the architecture half, in order.
    arch: Vec<Window>,
    /// The state each half carries to its next window (weight half first).
    carried: RefCell<[CarriedState; 2]>,
    /// Dropout masks of the current step.
    dropout_rng: RefCell<ChaCha8Rng>,
    state_shape: Vec<usize>,
    fingerprint: String,
}

/// One window of either half and the state it starts from.
pub struct TextBatch {
    /// Inputs and targets.
    pub window: Window,
    /// The recurrent state before the window (detached).
    pub state: Vec<Tensor>,
    /// 0: weight half; 1: architecture half (whose carried state a pass over it replaces).
    pub half: usize,
}

impl TextHalves {
    fn zeros(&self, device: nas_tensor::Device) -> Result<CarriedState> {
        Ok(CarriedState::zeros(&[&self.state_shape], device)?)
    }
}

fn fingerprint(vocab: usize, parts: &[&[u32]]) -> String {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&(vocab as u64).to_le_bytes());
    for p in parts {
        bytes.extend_from_slice(&(p.len() as u64).to_le_bytes());
        for &c in *p {
            bytes.extend_from_slice(&c.to_le_bytes());
        }
    }
    format!("text-{:016x}", crate::checkpoint::fnv1a64(&bytes))
}

impl OneShotNet for RnnSupernet {
    type Input = TextCorpus;
    type Data = TextHalves;
    type Batch = TextBatch;

    fn build(config: &OneShotConfig, corpus: &TextCorpus, seed: u64) -> Result<(Self, TextHalves)> {
        if config.space != SpaceKind::Rnn {
            return Err(OneShotError::Config(format!(
                "the recurrent supernet searches the rnn space, not {}",
                config.space.name()
            )));
        }
        let n = corpus.train.len();
        let n_train = ((n as f64) * config.train_portion).floor() as usize;
        let (b, t) = (config.batch_size, config.bptt);
        let (wh, ah) = (&corpus.train[..n_train], &corpus.train[n_train..]);
        let windows = |part: &[u32], name: &str| -> Result<Vec<Window>> {
            TokenWindows::new(part, b, t)
                .map(|w| w.collect())
                .map_err(|e| {
                    OneShotError::Data(format!(
                        "the {name} half of {} ({} of {n} training characters, train portion \
                         {}) is too short for {b} columns: {e}",
                        corpus.name,
                        part.len(),
                        config.train_portion
                    ))
                })
        };
        let train = windows(wh, "weight")?;
        let arch = windows(ah, "architecture")?;
        let vocab = corpus.vocab.len();
        let net = RnnSupernet::new(vocab, config.c, RnnDropout::default(), seed, true)?;
        let state_shape = vec![b, config.c];
        let zeros = || CarriedState::zeros(&[&state_shape], config.device);
        let halves = TextHalves {
            train,
            arch,
            carried: RefCell::new([zeros()?, zeros()?]),
            dropout_rng: RefCell::new(ChaCha8Rng::seed_from_u64(seed)),
            fingerprint: fingerprint(vocab, &[wh, ah]),
            state_shape,
        };
        Ok((net, halves))
    }

    fn fingerprint(data: &TextHalves) -> String {
        data.fingerprint.clone()
    }

    fn steps_per_epoch(config: &OneShotConfig, data: &TextHalves) -> usize {
        let full = data.train.len();
        config.steps_per_epoch.map_or(full, |s| s.min(full))
    }

    fn batch_pair(s: &mut OneShotSearch<Self>, step: usize) -> Result<(TextBatch, TextBatch)> {
        let d = &s.data;
        if step >= d.train.len() {
            return Err(OneShotError::Config(format!(
                "step {step} is past the end of the epoch ({} windows)",
                d.train.len()
            )));
        }
        let device = s.config.device;
        if step == 0 {
            // every epoch starts from zero states
            *d.carried.borrow_mut() = [d.zeros(device)?, d.zeros(device)?];
        }
        let seed = s.config.seed
            ^ 0x000d_20b0_u64.wrapping_mul(0x9e37_79b9_7f4a_7c15)
            ^ (s.global_step + 1).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        *d.dropout_rng.borrow_mut() = ChaCha8Rng::seed_from_u64(seed);
        let carried = d.carried.borrow();
        let batch = |half: usize, w: &Window| TextBatch {
            window: w.clone(),
            state: carried[half].get().to_vec(),
            half,
        };
        Ok((
            batch(0, &d.train[step]),
            batch(1, &d.arch[step % d.arch.len()]),
        ))
    }

    fn batch_len(b: &TextBatch) -> u64 {
        b.window.targets.len() as u64
    }

    fn loss_backward(
        s: &OneShotSearch<Self>,
        what: &str,
        batch: &TextBatch,
        recorded: bool,
        only: Option<&[Tensor]>,
    ) -> Result<(f32, u64)> {
        let alpha = &s.arch.normal;
        let mix = if recorded {
            alpha.softmax(1)?
        } else {
            alpha.detach().softmax(1)?
        };
        let (logits, next) = {
            let mut rng = s.data.dropout_rng.borrow_mut();
            s.net
                .forward_window(&batch.window, &batch.state, &mut rng, &mix)?
        };
        drop(mix);
        let loss = logits.cross_entropy(&batch.window.targets)?;
        let lv = loss.item()?;
        s.check_finite(what, lv)?;
        let corr = correct(&logits, &batch.window.targets)?;
        drop(logits);
        match only {
            Some(leaves) => loss.backward_for(leaves)?,
            None => loss.backward()?,
        }
        s.data.carried.borrow_mut()[batch.half].carry(&next)?;
        Ok((lv, corr))
    }

    fn single_path_step(
        s: &mut OneShotSearch<Self>,
        _train: &TextBatch,
        _arch: &TextBatch,
    ) -> Result<(f32, u64, f32, u64)> {
        Err(OneShotError::Config(format!(
            "{} is not available on the recurrent space",
            s.config.method.name()
        )))
    }

    /// The first [`OneShotSearch::steps_per_epoch`] windows of the architecture half from a
    /// zero state, in evaluation mode (no dropout), under the softmax of the architecture
    /// weights: (nats per character, fraction of characters predicted).
    fn evaluate_valid(s: &mut OneShotSearch<Self>) -> Result<(f64, f64)> {
        s.net.set_training(false);
        let result = (|| -> Result<(f64, f64)> {
            let d = &s.data;
            let mut state = d.zeros(s.config.device)?;
            let mix = s.arch.normal.detach().softmax(1)?;
            let mut rng = ChaCha8Rng::seed_from_u64(0);
            let (mut nats, mut corr, mut count) = (0.0f64, 0u64, 0u64);
            let windows = s.steps_per_epoch().min(d.arch.len());
            for w in &d.arch[..windows] {
                no_grad(|| -> Result<()> {
                    let (logits, next) = s.net.forward_window(w, state.get(), &mut rng, &mix)?;
                    let n = w.targets.len() as u64;
                    nats += logits.cross_entropy(&w.targets)?.item()? as f64 * n as f64;
                    corr += correct(&logits, &w.targets)?;
                    count += n;
                    state.carry(&next)?;
                    Ok(())
                })?;
            }
            Ok((nats / count as f64, corr as f64 / count as f64))
        })();
        s.net.set_training(true);
        result
    }

    fn search_paths(s: &mut OneShotSearch<Self>) -> Result<PathSearch> {
        Err(OneShotError::Config(format!(
            "{} is not available on the recurrent space",
            s.config.method.name()
        )))
    }

    fn carried_state(data: &TextHalves) -> Vec<(String, Tensor)> {
        let c = data.carried.borrow();
        ["train", "arch"]
            .iter()
            .zip(c.iter())
            .flat_map(|(h, st)| {
                st.get()
                    .iter()
                    .enumerate()
                    .map(move |(i, t)| (format!("carried.{h}.{i}"), t.clone()))
            })
            .collect()
    }
}

fn correct(logits: &Tensor, targets: &[usize]) -> Result<u64> {
    Ok(logits
        .argmax_rows()?
        .iter()
        .zip(targets)
        .filter(|(a, b)| a == b)
        .count() as u64)
}
