//! Architecture weights (`alpha`), their softmax, Gumbel sampling for GDAS, and JSON snapshots.

use nas_tensor::{RandomDist, Tensor};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::error::{OneShotError, Result};
use super::supernet::{HardWeights, Mixing, SpaceKind};

/// The architecture parameters: one `[edges, ops]` logit matrix per cell type (leaf tensors
/// that require gradients).
pub struct ArchParams {
    /// The space.
    pub space: SpaceKind,
    /// Logits of the normal cells (NB201: of its only cell type).
    pub normal: Tensor,
    /// Logits of the reduction cells (DARTS space only).
    pub reduce: Option<Tensor>,
    /// PC-DARTS edge normalisation: `[edges]` logits per cell type (normal, reduce), each
    /// node's incoming edges weighted by their softmax ([`ArchParams::with_edge_betas`]).
    pub betas: Option<(Tensor, Option<Tensor>)>,
}

/// A plain copy of the architecture weights, for JSON outputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArchSnapshot {
    /// `darts` or `nb201`.
    pub space: String,
    /// Op names, in column order.
    pub ops: Vec<String>,
    /// Edge labels, in row order (`"j->k"` for DARTS node `k` counted from 2, `"i<-j"` for NB201).
    pub edges: Vec<String>,
    /// Raw logits of the normal cell.
    pub alpha_normal: Vec<Vec<f32>>,
    /// Softmax of [`ArchSnapshot::alpha_normal`] per edge.
    pub weights_normal: Vec<Vec<f32>>,
    /// Raw logits of the reduction cell (DARTS only).
    pub alpha_reduce: Option<Vec<Vec<f32>>>,
    /// Softmax of [`ArchSnapshot::alpha_reduce`] per edge.
    pub weights_reduce: Option<Vec<Vec<f32>>>,
    /// PC-DARTS: the normalised edge weights of the normal cell (softmax over each node's
    /// incoming edges).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edge_weights_normal: Option<Vec<f32>>,
    /// PC-DARTS: the same for the reduction cell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edge_weights_reduce: Option<Vec<f32>>,
}

/// Edge labels of a space, in weight-row order.
pub fn edge_labels(space: SpaceKind) -> Vec<String> {
    match space {
        SpaceKind::Darts => super::derive::darts_edge_list()
            .into_iter()
            .map(|(j, k)| format!("{j}->{}", k + 2))
            .collect(),
        SpaceKind::Nb201 => nas_space::nb201::EDGES
            .iter()
            .map(|(s, t)| format!("{t}<-{s}"))
            .collect(),
        SpaceKind::Rnn => (1..=nas_space::rnn::NUM_NODES)
            .flat_map(|i| (0..i).map(move |j| format!("{j}->{i}")))
            .collect(),
    }
}

/// Row-wise softmax of a row-major `[rows, cols]` matrix, computed in f64 (for reports and
/// derivation; the search itself uses the tensor softmax).
pub fn softmax_rows(m: &[Vec<f32>]) -> Vec<Vec<f32>> {
    m.iter()
        .map(|r| {
            let mx = r.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
            let e: Vec<f64> = r.iter().map(|&x| (x as f64 - mx).exp()).collect();
            let s: f64 = e.iter().sum();
            e.iter().map(|&x| (x / s) as f32).collect()
        })
        .collect()
}

fn to_rows(t: &Tensor) -> Result<Vec<Vec<f32>>> {
    let k = t.shape()[1];
    Ok(t.to_vec()?.chunks(k).map(|c| c.to_vec()).collect())
}

impl ArchParams {
    /// `1e-3 * N(0, 1)` logits (the original initialisation), drawn from `rng` (normal first).
    pub fn new(space: SpaceKind, rng: &mut ChaCha8Rng) -> ArchParams {
        let shape = [space.num_edges(), space.num_ops()];
        let normal = Tensor::randn_with(&shape, rng).scale(1e-3).param();
        let reduce = space
            .has_reduce()
            .then(|| Tensor::randn_with(&shape, rng).scale(1e-3).param());
        ArchParams {
            space,
            normal,
            reduce,
            betas: None,
        }
    }

    /// Adds PC-DARTS' edge-normalisation logits, `1e-3 * N(0, 1)` drawn from `rng` (normal
    /// first).
    pub fn with_edge_betas(mut self, rng: &mut ChaCha8Rng) -> ArchParams {
        let e = [self.space.num_edges()];
        let normal = Tensor::randn_with(&e, rng).scale(1e-3).param();
        let reduce = self
            .space
            .has_reduce()
            .then(|| Tensor::randn_with(&e, rng).scale(1e-3).param());
        self.betas = Some((normal, reduce));
        self
    }

    /// The parameter tensors (for the architecture optimizer and checkpoints): op logits,
    /// normal first, then the edge logits if any.
    pub fn tensors(&self) -> Vec<Tensor> {
        let mut v = vec![self.normal.clone()];
        if let Some(r) = &self.reduce {
            v.push(r.clone());
        }
        if let Some((n, r)) = &self.betas {
            v.push(n.clone());
            v.extend(r.iter().cloned());
        }
        v
    }

    /// A copy whose tensors are detached (no gradient reaches these parameters through it).
    pub fn detached(&self) -> ArchParams {
        ArchParams {
            space: self.space,
            normal: self.normal.detach(),
            reduce: self.reduce.as_ref().map(Tensor::detach),
            betas: self
                .betas
                .as_ref()
                .map(|(n, r)| (n.detach(), r.as_ref().map(Tensor::detach))),
        }
    }

    /// Edge normalisation of `beta` (`[edges]`): a softmax over each node's incoming edges
    /// (DARTS: 2, 3, 4, 5 edges; NB201: 1, 2, 3), recorded.
    fn edge_softmax(&self, beta: &Tensor) -> Result<Tensor> {
        let sizes: &[usize] = match self.space {
            SpaceKind::Darts => &[2, 3, 4, 5],
            SpaceKind::Nb201 => &[1, 2, 3],
            SpaceKind::Rnn => &[1, 2, 3, 4, 5, 6, 7, 8],
        };
        let mut parts = Vec::with_capacity(sizes.len());
        let mut first = 0;
        for &n in sizes {
            parts.push(beta.narrow(0, first, n)?.softmax(0)?);
            first += n;
        }
        Ok(Tensor::concat(&parts, 0)?)
    }

    /// The DARTS mixing: softmax over ops per edge (recorded, so gradients reach the logits);
    /// with edge logits, PC-DARTS' partial mixing with normalised edge weights.
    pub fn soft(&self) -> Result<Mixing> {
        if let Some((nb, rb)) = &self.betas {
            return Ok(Mixing::Partial {
                normal: self.normal.softmax(1)?,
                reduce: match &self.reduce {
                    Some(r) => Some(r.softmax(1)?),
                    None => None,
                },
                normal_edges: self.edge_softmax(nb)?,
                reduce_edges: match rb {
                    Some(r) => Some(self.edge_softmax(r)?),
                    None => None,
                },
            });
        }
        Ok(Mixing::Soft {
            normal: self.normal.softmax(1)?,
            reduce: match &self.reduce {
                Some(r) => Some(r.softmax(1)?),
                None => None,
            },
        })
    }

    /// The GDAS mixing at temperature `tau`: per edge, Gumbel noise `g` is added to the
    /// log-softmax of the logits, `p = softmax((log_softmax(alpha) + g) / tau)`, the op
    /// `argmax p` is selected (first on ties) and the weights are `one_hot - stop_grad(p) + p`.
    /// The noise is generated on the logits' device from one seed drawn from `rng` per cell
    /// type; non-finite logits are an error (the original code redraws noise that came out
    /// infinite, which this generator cannot produce).
    pub fn gumbel(&self, tau: f32, rng: &mut ChaCha8Rng) -> Result<Mixing> {
        if !(tau > 0.0) || !tau.is_finite() {
            return Err(OneShotError::Config(format!(
                "Gumbel temperature must be positive and finite, got {tau}"
            )));
        }
        let normal = hard_sample(&self.normal, tau, rng)?;
        let reduce = match &self.reduce {
            Some(r) => Some(hard_sample(r, tau, rng)?),
            None => None,
        };
        Ok(Mixing::Hard { normal, reduce })
    }

    /// A snapshot of logits and softmaxed weights.
    pub fn snapshot(&self) -> Result<ArchSnapshot> {
        let an = to_rows(&self.normal)?;
        let ar = self.reduce.as_ref().map(to_rows).transpose()?;
        let (ewn, ewr) = match &self.betas {
            Some((n, r)) => (
                Some(self.edge_softmax(&n.detach())?.to_vec()?),
                match r {
                    Some(r) => Some(self.edge_softmax(&r.detach())?.to_vec()?),
                    None => None,
                },
            ),
            None => (None, None),
        };
        Ok(ArchSnapshot {
            edge_weights_normal: ewn,
            edge_weights_reduce: ewr,
            space: self.space.name().to_string(),
            ops: self
                .space
                .op_names()
                .iter()
                .map(|s| s.to_string())
                .collect(),
            edges: edge_labels(self.space),
            weights_normal: softmax_rows(&an),
            weights_reduce: ar.as_ref().map(|r| softmax_rows(r)),
            alpha_normal: an,
            alpha_reduce: ar,
        })
    }
}

fn hard_sample(alpha: &Tensor, tau: f32, rng: &mut ChaCha8Rng) -> Result<HardWeights> {
    let (e, k) = (alpha.shape()[0], alpha.shape()[1]);
    // Gumbel noise on the device, from one seed drawn from `rng` (Philox: the same values on
    // every device); its uniforms lie strictly inside (0, 1), so the noise is always finite.
    let noise = Tensor::random_on(&[e, k], RandomDist::Gumbel, rng, alpha.device())?;
    let logits = alpha.log_softmax(1)?.add(&noise)?.scale(1.0 / tau);
    let probs = logits.softmax(1)?;
    // Non-finite probabilities can only come from non-finite logits: an error, not a redraw
    // (redrawing could never succeed).
    let total = probs.sum().item()?;
    if !total.is_finite() {
        return Err(OneShotError::Config(format!(
            "GDAS sampling: the architecture weights give non-finite probabilities (sum {total})"
        )));
    }
    // The chosen ops steer which branch runs: `e` indices come to the host, nothing else.
    let HardWeights { weights, index } =
        HardWeights::one_hot(probs.argmax_rows()?, k, alpha.device())?;
    let weights = weights.sub(&probs.detach())?.add(&probs)?;
    Ok(HardWeights { weights, index })
}
