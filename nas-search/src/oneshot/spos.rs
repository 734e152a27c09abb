//! Single-path weight sharing: SPOS (Guo et al. 2020) and random search with weight sharing
//! (Li & Talwalkar 2019) on the same [`Supernet`](super::Supernet).
//!
//! Training ([`super::OneShotSearch::step`] with [`Method::Spos`] or [`Method::RandomWs`]): each
//! step draws one architecture uniformly from the space ([`sample_path`]: the space's own
//! `SearchSpace::sample`, so a DARTS path is a valid genotype, two inputs per node, every other
//! edge `none`) and takes one SGD step of the weights on that path alone
//! ([`path_mixing`]: constant one-hot edge weights, so the supernet runs the selected op of
//! each edge and nothing else). The architecture weights are not used.
//!
//! Search ([`super::OneShotSearch::search_paths`]): a multi-trial strategy of
//! [`crate::strategy`] (regularized evolution for SPOS, random search for RSWS) proposes
//! `candidates` architectures; each is scored by the validation accuracy (the architecture
//! half of the data) of the network it selects in the supernet with inherited weights, after
//! its BN statistics are recalibrated on `bn_batches` fixed weight-half batches
//! ([`super::OneShotSearch::recalibrate_bn`]: the exact average of the per-batch statistics,
//! not a running average). The supernet's own statistics are restored after every candidate,
//! so the search is a pure function of the trained supernet, and a search killed in this
//! phase repeats it identically on resume. The strategy sees only validation accuracy; on the
//! NAS-Bench-201 space each candidate's table accuracy is reported beside it, with the
//! Spearman rank correlation between the two.
//!
//! Per epoch, the record's genotype and validation numbers are those of a *reference path*
//! (one architecture drawn from the seed, fixed for the whole run), recalibrated the same way:
//! a measure of how well the shared weights serve one network as training goes on.

use nas_space::SearchSpace;
use nas_space::darts::{DARTS_PRIMITIVES, DartsCell, DartsSpace};
use nas_space::nb201::{Nb201Op, Nb201Space};
use nas_tensor::nn::Module;
use nas_tensor::{Device, Tensor, no_grad};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::derive::darts_edge_list;
use super::error::{OneShotError, Result};
use super::search::{Genotype, Method, OneShotSearch, SearchBatch, epoch_order, gather};
use super::supernet::{HardWeights, Mixing, SpaceKind};
use crate::history::{Outcome, Trial};
use crate::strategy::{Ask, StrategyKind};

/// Salt of the reference path's generator.
const REFERENCE_SALT: u64 = 0x5e0f_2e4e_0ce0_0001;
/// Salt of the candidate search's generator.
const SEARCH_SALT: u64 = 0x5e0f_2e4e_0ce0_0002;
/// Salt of the batch order of BN recalibration.
const BN_ORDER_SALT: u64 = 3;

/// One architecture drawn uniformly from `space` (its `SearchSpace::sample`).
pub fn sample_path(space: SpaceKind, rng: &mut dyn RngCore) -> Genotype {
    match space {
        SpaceKind::Nb201 => Genotype::Nb201(Nb201Space.sample(rng)),
        SpaceKind::Darts => Genotype::Darts(DartsSpace.sample(rng)),
        SpaceKind::Rnn => Genotype::Rnn(nas_space::rnn::RnnSpace.sample(rng)),
    }
}

fn darts_cell_indices(cell: &DartsCell, what: &str) -> Result<Vec<usize>> {
    let edges = darts_edge_list();
    let mut index = vec![0usize; edges.len()];
    for (k, node) in cell.nodes.iter().enumerate() {
        for &(op, input) in node {
            let row = edges.iter().position(|&e| e == (input, k)).ok_or_else(|| {
                OneShotError::Config(format!(
                    "{what} cell: node {} cannot take input {input}",
                    k + 2
                ))
            })?;
            if index[row] != 0 {
                return Err(OneShotError::Config(format!(
                    "{what} cell: node {} takes input {input} twice, which is no path through \
                     the supernet (one op per edge)",
                    k + 2
                )));
            }
            index[row] = op.primitive_index();
        }
    }
    Ok(index)
}

/// The op index (column of the architecture weights, `none` = 0) of every edge of the path
/// `g`: normal (NB201: the only) cell, and the reduction cell of the DARTS space. Edges a DARTS
/// genotype does not use are `none`.
pub fn path_indices(g: &Genotype) -> Result<(Vec<usize>, Option<Vec<usize>>)> {
    match g {
        Genotype::Nb201(c) => Ok((c.ops.iter().map(|o| o.index()).collect(), None)),
        Genotype::Darts(d) => Ok((
            darts_cell_indices(&d.normal, "normal")?,
            Some(darts_cell_indices(&d.reduce, "reduction")?),
        )),
        Genotype::Rnn(_) => Err(OneShotError::Config(
            "recurrent cells have no path mixing (single-path methods run on image spaces)".into(),
        )),
    }
}

/// The mixing that runs exactly the path `g` (constant one-hot edge weights).
pub fn path_mixing(g: &Genotype, device: Device) -> Result<Mixing> {
    let (normal, reduce) = path_indices(g)?;
    let k = match g {
        Genotype::Nb201(_) => Nb201Op::ALL.len(),
        Genotype::Darts(_) => DARTS_PRIMITIVES.len(),
        Genotype::Rnn(_) => nas_space::rnn::RNN_PRIMITIVES.len(),
    };
    Ok(Mixing::Hard {
        normal: HardWeights::one_hot(normal, k, device)?,
        reduce: reduce
            .map(|r| HardWeights::one_hot(r, k, device))
            .transpose()?,
    })
}

/// One candidate of the path search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PathCandidate {
    /// Position in the order the strategy proposed it.
    pub id: usize,
    /// The architecture.
    pub genotype: Genotype,
    /// Validation loss of its path with inherited weights and recalibrated BN statistics.
    pub valid_loss: f64,
    /// Validation accuracy of that path (fraction): what the strategy sees.
    pub valid_acc: f64,
    /// NAS-Bench-201: its 200-epoch CIFAR-10 test accuracy (%) from the table (reported only).
    pub nb201_cifar10_test: Option<f64>,
    /// The id of an earlier equivalent candidate whose score was reused (not evaluated again).
    pub same_as: Option<usize>,
}

/// What the path search of a SPOS / RSWS run found (written to `candidates.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PathSearch {
    /// `spos` or `rsws`.
    pub method: String,
    /// The multi-trial strategy that proposed the candidates, with its settings.
    pub strategy: String,
    /// Every candidate, in proposal order.
    pub candidates: Vec<PathCandidate>,
    /// Index of the best one (highest validation accuracy; the first on ties).
    pub best: usize,
    /// NAS-Bench-201: Spearman rank correlation between the distinct candidates' supernet
    /// validation accuracy and their table accuracy, and how many candidates it is over.
    pub spearman_vs_table: Option<(f64, usize)>,
}

impl PathSearch {
    /// The chosen architecture.
    pub fn best_genotype(&self) -> Genotype {
        self.candidates[self.best].genotype
    }
}

/// Drives `strategy` over `space` for `n` proposals, scoring each new architecture by `eval`.
fn propose<S: SearchSpace>(
    space: &S,
    strategy: &StrategyKind,
    n: usize,
    seed: u64,
    to_genotype: fn(&S::Arch) -> Genotype,
    eval: &mut dyn FnMut(&Genotype) -> Result<(f64, f64)>,
) -> Result<Vec<PathCandidate>> {
    let mut st = strategy.build(space)?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ SEARCH_SALT);
    let mut seen: std::collections::HashMap<String, usize> = Default::default();
    let mut out: Vec<PathCandidate> = Vec::with_capacity(n);
    while out.len() < n {
        let cand = match st.ask(space, &mut rng)? {
            Ask::Evaluate(c) => c,
            // Sequential: nothing is in flight, so a strategy that waits has finished.
            Ask::Wait | Ask::Done => break,
        };
        let g = to_genotype(&cand.arch);
        let id = out.len();
        let key = space.canonical(&cand.arch);
        let (valid_loss, valid_acc, same_as) = match seen.get(&key) {
            Some(&j) => (out[j].valid_loss, out[j].valid_acc, Some(j)),
            None => {
                let (l, a) = eval(&g)?;
                seen.insert(key, id);
                (l, a, None)
            }
        };
        let nb201_cifar10_test = match g {
            Genotype::Nb201(c) => crate::tabular::Nb201Table::embedded()
                .ok()
                .map(|t| t.get(&c).test_200[0]),
            Genotype::Darts(_) | Genotype::Rnn(_) => None,
        };
        st.tell(
            space,
            &Trial {
                id: id as u64,
                arch: cand.arch,
                fidelity: cand.fidelity,
                outcome: Outcome::Ok(crate::evaluator::Metrics {
                    valid_accuracy: valid_acc,
                    test_accuracy: None,
                    loss: Some(valid_loss),
                    params: None,
                    flops: None,
                    latency_ms: None,
                    cost: 1.0,
                }),
                cost: 1.0,
                cached_from: same_as.map(|j| j as u64),
                started_unix_ms: 0,
                finished_unix_ms: 0,
                wall_time_s: 0.0,
            },
        )?;
        out.push(PathCandidate {
            id,
            genotype: g,
            valid_loss,
            valid_acc,
            nb201_cifar10_test,
            same_as,
        });
    }
    Ok(out)
}

/// NAS-Bench-201: Spearman's rho between the distinct candidates' supernet accuracy and their
/// table accuracy, with how many it is over (`None` on the DARTS and recurrent spaces).
pub(crate) fn table_spearman(
    space: SpaceKind,
    candidates: &[PathCandidate],
) -> Option<(f64, usize)> {
    let distinct: Vec<&PathCandidate> = candidates.iter().filter(|c| c.same_as.is_none()).collect();
    match space {
        SpaceKind::Nb201 => {
            let x: Vec<f64> = distinct.iter().map(|c| c.valid_acc).collect();
            let y: Vec<f64> = distinct
                .iter()
                .map(|c| c.nb201_cifar10_test.unwrap_or(f64::NAN))
                .collect();
            Some(crate::proxies::spearman(&x, &y))
        }
        SpaceKind::Darts | SpaceKind::Rnn => None,
    }
}

/// NAS-Bench-201: the cell's 200-epoch CIFAR-10 test accuracy (%) from the embedded table.
pub(crate) fn table_accuracy(g: &Genotype) -> Option<f64> {
    match g {
        Genotype::Nb201(c) => crate::tabular::Nb201Table::embedded()
            .ok()
            .map(|t| t.get(c).test_200[0]),
        Genotype::Darts(_) | Genotype::Rnn(_) => None,
    }
}

impl<N: super::net::OneShotNet> OneShotSearch<N> {
    /// The reference path of this run (drawn from the seed; see the module docs).
    pub fn reference_path(&self) -> Genotype {
        let mut rng = ChaCha8Rng::seed_from_u64(self.config.seed ^ REFERENCE_SALT);
        sample_path(self.config.space, &mut rng)
    }
}

impl OneShotSearch {
    /// The fixed weight-half batches that recalibrate BN statistics (`bn_batches` batches of
    /// a permutation drawn from the seed, wrapping around a small weight half).
    pub fn bn_batches(&self) -> Result<Vec<SearchBatch>> {
        let n = self.data.train.len();
        let order = epoch_order(n, self.config.seed, BN_ORDER_SALT, 0);
        let b = self.config.batch_size.min(n);
        (0..self.config.bn_batches)
            .map(|i| {
                let idx: Vec<usize> = (0..b).map(|j| order[(i * b + j) % n]).collect();
                gather(&self.data.train, &idx, self.config.device)
            })
            .collect()
    }

    /// Sets every BN running statistic of the supernet to the exact average of the batch
    /// statistics that the path `mix` produces on `batches` (training-mode forward passes
    /// without gradients). Statistics of ops off the path come out as mean 0, variance 1.
    pub fn recalibrate_bn(&self, mix: &Mixing, batches: &[SearchBatch]) -> Result<()> {
        if batches.is_empty() {
            return Err(OneShotError::Config(
                "BN recalibration needs at least one batch".into(),
            ));
        }
        // Every BN of the supernet is built with this momentum (`BatchNorm2d::new`); a reset
        // buffer `r0` becomes `(1 - m) r0 + m s` after one batch with statistic `s`.
        let m = nas_tensor::nn::BatchNorm2d::new(1, false).momentum;
        let stats: Vec<(Tensor, f32)> = self
            .net
            .named_buffers()
            .into_iter()
            .filter_map(|(name, t)| {
                if name.ends_with("running_mean") {
                    Some((t, 0.0))
                } else if name.ends_with("running_var") {
                    Some((t, 1.0))
                } else {
                    None
                }
            })
            .collect();
        let reset = || -> Result<()> {
            for (t, v) in &stats {
                t.copy_from(&Tensor::full_on(t.shape(), *v, t.device())?)?;
            }
            Ok(())
        };
        let was_training = self.net.is_training();
        self.net.set_training(true);
        let result = no_grad(|| -> Result<()> {
            let mut sums: Vec<Option<Tensor>> = vec![None; stats.len()];
            for batch in batches {
                reset()?;
                self.net.forward_mix(&batch.x, mix)?;
                for ((t, _), s) in stats.iter().zip(sums.iter_mut()) {
                    *s = Some(match s.take() {
                        None => t.detach(),
                        Some(acc) => acc.add(t)?,
                    });
                }
            }
            let nb = batches.len() as f32;
            for ((t, init), s) in stats.iter().zip(sums) {
                let s = s.expect("at least one batch");
                // mean of r = (1 - m) r0 + m s over the batches, solved for the mean of s
                let shift = Tensor::full_on(t.shape(), (1.0 - m) * init, t.device())?;
                t.copy_from(&s.scale(1.0 / nb).sub(&shift)?.scale(1.0 / m))?;
            }
            Ok(())
        });
        self.net.set_training(was_training);
        result
    }

    /// Validation loss and accuracy (the architecture half, evaluation mode) of the path `g`
    /// with inherited weights, after recalibrating its BN statistics on `batches`
    /// ([`OneShotSearch::bn_batches`]); the supernet's statistics are restored afterwards.
    pub fn path_accuracy(&mut self, g: &Genotype, batches: &[SearchBatch]) -> Result<(f64, f64)> {
        let mix = path_mixing(g, self.config.device)?;
        let saved = self.net.buffer_snapshot();
        let result = self
            .recalibrate_bn(&mix, batches)
            .and_then(|()| self.evaluate_valid_with(&mix));
        saved.restore()?;
        result
    }

    /// The path search after training (see the module docs): `candidates` proposals of
    /// regularized evolution (SPOS) or random search (RSWS), each scored by
    /// [`OneShotSearch::path_accuracy`].
    pub fn search_paths(&mut self) -> Result<PathSearch> {
        let method = self.config.method;
        let spec = match method {
            Method::Spos => "rea",
            Method::RandomWs => "random",
            Method::Enas => return self.enas_derive(),
            other => {
                return Err(OneShotError::Config(format!(
                    "{} does not search sampled paths",
                    other.name()
                )));
            }
        };
        let strategy = StrategyKind::parse(spec)?;
        let batches = self.bn_batches()?;
        let (n, seed, space) = (self.config.candidates, self.config.seed, self.config.space);
        let mut eval = |g: &Genotype| self.path_accuracy(g, &batches);
        let candidates = match space {
            SpaceKind::Nb201 => propose(
                &Nb201Space,
                &strategy,
                n,
                seed,
                |c| Genotype::Nb201(*c),
                &mut eval,
            )?,
            SpaceKind::Darts => propose(
                &DartsSpace,
                &strategy,
                n,
                seed,
                |d| Genotype::Darts(*d),
                &mut eval,
            )?,
            SpaceKind::Rnn => {
                return Err(OneShotError::Config(
                    "single-path methods run on image spaces only".into(),
                ));
            }
        };
        if candidates.is_empty() {
            return Err(OneShotError::Config(format!(
                "the {} strategy proposed no candidate",
                strategy.label()
            )));
        }
        let mut best = 0;
        for (i, c) in candidates.iter().enumerate() {
            if c.valid_acc > candidates[best].valid_acc {
                best = i;
            }
        }
        let spearman_vs_table = table_spearman(space, &candidates);
        Ok(PathSearch {
            method: method.name().into(),
            strategy: strategy.label(),
            candidates,
            best,
            spearman_vs_table,
        })
    }
}
