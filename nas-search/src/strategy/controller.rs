//! An LSTM controller trained with REINFORCE (Zoph & Le 2017; ENAS): the agent of the seed
//! article, over the categorical decisions of any space (see [`LstmController`]).

use nas_space::SearchSpace;
use nas_tensor::nn::lookup_in;
use nas_tensor::optim::{Adam, AdamConfig, AdamState, Optimizer};
use nas_tensor::{Tensor, no_grad};
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::{Ask, Candidate, Strategy};
use crate::error::{Result, SearchError};
use crate::history::Trial;

/// Settings of [`LstmController`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControllerConfig {
    /// LSTM units (and embedding size), default 32.
    pub hidden: usize,
    /// Adam's learning rate on the controller's parameters, default 0.01.
    pub learning_rate: f64,
    /// Momentum of the moving-average baseline, default 0.9.
    pub baseline_momentum: f64,
    /// Fidelity of every evaluation, default 12.
    pub fidelity: u32,
    /// Seed of the parameters' initialisation (uniform in ±0.1), default 0.
    pub init_seed: u64,
    /// Logits are `c * tanh(raw / temperature)` with `c` this constant (ENAS' bound): with
    /// `K` choices every probability stays at least `1 / (1 + (K - 1) e^(2c))`, so the policy
    /// cannot collapse beyond recovery. Default 2.5.
    pub tanh_constant: f32,
    /// The temperature of the bound above, default 5.
    pub temperature: f32,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            hidden: 32,
            learning_rate: 0.01,
            baseline_momentum: 0.9,
            fidelity: 12,
            init_seed: 0,
            tanh_constant: 2.5,
            temperature: 5.0,
        }
    }
}

/// Half-width of the uniform initialisation (ENAS' 0.1).
const INIT: f32 = 0.1;

/// The REINFORCE-trained LSTM controller.
///
/// The controller emits an architecture one decision at a time. Step `d` feeds the embedding
/// of the previous decision's choice (a learned start token for `d = 0`) to an LSTM cell and
/// reads decision `d`'s choice probabilities from its own softmax head on the LSTM output
/// (logits bounded as ENAS does, [`ControllerConfig::tanh_constant`]), so every decision is conditioned on all earlier ones through the LSTM state. Sampling runs the
/// cell step by step without a graph ([`Tensor::lstm_cell`]); the update recomputes the
/// log-probability of the sampled choices in one teacher-forced pass of the fused layer
/// ([`Tensor::lstm`]) and takes one Adam step on `-(reward - baseline) * log p(choices)`. The
/// baseline is the bias-corrected exponential moving average of the rewards, updated before
/// the advantage, as [`super::Reinforce`] does. Failed trials do not update the controller.
///
/// Its whole state (parameters, Adam moments, baseline) is saved and restored as JSON, so
/// searches with it resume like the others.
pub struct LstmController {
    config: ControllerConfig,
    sizes: Vec<usize>,
    /// Row of choice 0 of decision `d` in the embedding table (row 0: the start token).
    offsets: Vec<usize>,
    embedding: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    bias: Tensor,
    heads: Vec<(Tensor, Tensor)>,
    opt: Adam,
    baseline_num: f64,
    baseline_den: f64,
}

/// The whole mutable state of an [`LstmController`] (parameters, Adam moments, baseline), as
/// [`LstmController::state`] returns it and [`LstmController::load`] takes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControllerState {
    /// Parameter values in [`LstmController::parameters`] order.
    pub params: Vec<Vec<f32>>,
    /// Adam's state.
    pub adam: AdamState,
    /// Numerator of the bias-corrected moving-average baseline.
    pub baseline_num: f64,
    /// Its denominator (0 before the first reward).
    pub baseline_den: f64,
}

fn tensor_err(e: nas_tensor::TensorError) -> SearchError {
    SearchError::strategy("lstm-controller", e.to_string())
}

fn softmax(l: &[f32]) -> Vec<f64> {
    let m = l.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
    let e: Vec<f64> = l.iter().map(|&x| (x as f64 - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.into_iter().map(|x| x / s).collect()
}

impl LstmController {
    /// A controller for decisions with `sizes` choices each.
    pub fn new(config: ControllerConfig, sizes: &[usize]) -> Result<Self> {
        if sizes.is_empty() || sizes.contains(&0) {
            return Err(SearchError::Config(format!(
                "lstm-controller: every decision needs at least one choice, got {sizes:?}"
            )));
        }
        let valid = config.hidden > 0
            && config.learning_rate > 0.0
            && config.learning_rate.is_finite()
            && (0.0..1.0).contains(&config.baseline_momentum)
            && config.tanh_constant > 0.0
            && config.temperature > 0.0;
        if !valid {
            return Err(SearchError::Config(format!(
                "lstm-controller: hidden must be > 0, learning_rate, tanh_constant and \
                 temperature > 0 and baseline_momentum in [0, 1), got {config:?}"
            )));
        }
        let h = config.hidden;
        let mut rng = ChaCha8Rng::seed_from_u64(config.init_seed);
        let mut u = |shape: &[usize]| {
            Tensor::uniform_with(shape, -INIT, INIT, &mut rng)
                .map(Tensor::param)
                .map_err(tensor_err)
        };
        let mut offsets = Vec::with_capacity(sizes.len());
        let mut rows = 1;
        for &n in sizes {
            offsets.push(rows);
            rows += n;
        }
        let embedding = u(&[rows, h])?;
        let w_ih = u(&[4 * h, h])?;
        let w_hh = u(&[4 * h, h])?;
        let bias = u(&[4 * h])?;
        let heads = sizes
            .iter()
            .map(|&n| Ok((u(&[n, h])?, u(&[n])?)))
            .collect::<Result<Vec<_>>>()?;
        let mut c = LstmController {
            config,
            sizes: sizes.to_vec(),
            offsets,
            embedding,
            w_ih,
            w_hh,
            bias,
            heads,
            opt: Adam::new(Vec::new(), AdamConfig::new(0.0)).map_err(tensor_err)?,
            baseline_num: 0.0,
            baseline_den: 0.0,
        };
        c.opt = Adam::new(
            c.parameters(),
            AdamConfig::new(c.config.learning_rate as f32),
        )
        .map_err(tensor_err)?;
        Ok(c)
    }

    /// The controller's parameters (embedding, LSTM, then each decision's head).
    pub fn parameters(&self) -> Vec<Tensor> {
        let mut p = vec![
            self.embedding.clone(),
            self.w_ih.clone(),
            self.w_hh.clone(),
            self.bias.clone(),
        ];
        for (w, b) in &self.heads {
            p.push(w.clone());
            p.push(b.clone());
        }
        p
    }

    /// The embedding row that feeds step `d` after the choices `prefix` (`prefix.len() == d`).
    fn input_row(&self, prefix: &[usize]) -> usize {
        match prefix.last() {
            None => 0,
            Some(&c) => self.offsets[prefix.len() - 1] + c,
        }
    }

    /// Runs the cell over `prefix` and returns the choice probabilities of decision
    /// `prefix.len()` given it (no graph recorded).
    pub fn distribution_after(&self, prefix: &[usize]) -> Result<Vec<f64>> {
        let d = prefix.len();
        if d >= self.sizes.len() || prefix.iter().zip(&self.sizes).any(|(&c, &n)| c >= n) {
            return Err(SearchError::strategy(
                "lstm-controller",
                format!("prefix {prefix:?} does not fit decisions {:?}", self.sizes),
            ));
        }
        no_grad(|| {
            let (mut h, mut c) = self.zero_state()?;
            let mut logits = None;
            for step in 0..=d {
                (h, c) = self.step(&prefix[..step], &h, &c)?;
                if step == d {
                    logits = Some(self.head(d, &h)?);
                }
            }
            Ok(softmax(
                &logits.expect("d + 1 steps").to_vec().map_err(tensor_err)?,
            ))
        })
    }

    fn zero_state(&self) -> Result<(Tensor, Tensor)> {
        let h = self.config.hidden;
        Ok((Tensor::zeros(&[1, h]), Tensor::zeros(&[1, h])))
    }

    /// One cell step fed with the embedding of `prefix`'s last choice.
    fn step(&self, prefix: &[usize], h: &Tensor, c: &Tensor) -> Result<(Tensor, Tensor)> {
        let x = lookup_in(&self.embedding, &[self.input_row(prefix)], &[1]).map_err(tensor_err)?;
        Tensor::lstm_cell(&x, h, c, &self.w_ih, &self.w_hh, Some(&self.bias)).map_err(tensor_err)
    }

    fn head(&self, d: usize, h: &Tensor) -> Result<Tensor> {
        let (w, b) = &self.heads[d];
        let raw = h.linear(w, Some(b)).map_err(tensor_err)?;
        let (c, t) = (self.config.tanh_constant, self.config.temperature);
        Ok(raw.scale(1.0 / t).tanh().scale(c))
    }

    /// Samples one choice per decision, each conditioned on the earlier ones.
    pub fn sample(&self, rng: &mut dyn RngCore) -> Result<Vec<usize>> {
        Ok(self.sample_with_probs(rng)?.0)
    }

    /// [`LstmController::sample`], also returning the probability each sampled choice had.
    pub fn sample_with_probs(&self, rng: &mut dyn RngCore) -> Result<(Vec<usize>, Vec<f64>)> {
        no_grad(|| {
            let (mut h, mut c) = self.zero_state()?;
            let mut choices = Vec::with_capacity(self.sizes.len());
            let mut probs = Vec::with_capacity(self.sizes.len());
            for d in 0..self.sizes.len() {
                (h, c) = self.step(&choices, &h, &c)?;
                let p = softmax(&self.head(d, &h)?.to_vec().map_err(tensor_err)?);
                let u: f64 = rng.random();
                let mut acc = 0.0;
                let mut pick = p.len() - 1;
                for (k, pk) in p.iter().enumerate() {
                    acc += pk;
                    if u < acc {
                        pick = k;
                        break;
                    }
                }
                choices.push(pick);
                probs.push(p[pick]);
            }
            Ok((choices, probs))
        })
    }

    /// ENAS' entropy term of a sample whose choices had probabilities `probs`: the sum over
    /// decisions of `-log p * p` (ENAS adds `entropy_weight` times this to the reward, with no
    /// gradient through it).
    pub fn sample_entropy(probs: &[f64]) -> f64 {
        probs
            .iter()
            .map(|&p| if p > 0.0 { -p.ln() * p } else { 0.0 })
            .sum()
    }

    /// The REINFORCE loss of a batch of samples, `mean_i advantage_i * -log p(choices_i)`, as
    /// a scalar with a graph: its gradient is minus the REINFORCE estimate of the gradient of
    /// the expected reward.
    pub fn reinforce_loss(&self, batch: &[(Vec<usize>, f64)]) -> Result<Tensor> {
        if batch.is_empty() {
            return Err(SearchError::strategy(
                "lstm-controller",
                "a REINFORCE step needs at least one sample",
            ));
        }
        let n = batch.len() as f32;
        let mut total: Option<Tensor> = None;
        for (choices, advantage) in batch {
            let term = self.neg_log_prob(choices)?.scale((*advantage as f32) / n);
            total = Some(match total {
                None => term,
                Some(t) => t.add(&term).map_err(tensor_err)?,
            });
        }
        Ok(total.expect("at least one sample"))
    }

    /// One REINFORCE step on a batch of `(choices, reward)` samples: each reward updates the
    /// moving-average baseline in turn and its advantage is taken against the updated
    /// baseline (as ENAS does), then one Adam step on [`LstmController::reinforce_loss`].
    /// Returns the advantages.
    pub fn reinforce_step(&mut self, samples: &[(Vec<usize>, f64)]) -> Result<Vec<f64>> {
        let mut batch = Vec::with_capacity(samples.len());
        for (choices, reward) in samples {
            if !reward.is_finite() {
                return Err(SearchError::strategy(
                    "lstm-controller",
                    format!("reward {reward} is not finite"),
                ));
            }
            let m = self.config.baseline_momentum;
            self.baseline_num = m * self.baseline_num + (1.0 - m) * reward;
            self.baseline_den = m * self.baseline_den + (1.0 - m);
            batch.push((
                choices.clone(),
                reward - self.baseline_num / self.baseline_den,
            ));
        }
        for p in self.parameters() {
            p.zero_grad();
        }
        let loss = self.reinforce_loss(&batch)?;
        loss.backward().map_err(tensor_err)?;
        self.opt.step().map_err(tensor_err)?;
        Ok(batch.into_iter().map(|(_, a)| a).collect())
    }

    /// The whole mutable state (see [`ControllerState`]).
    pub fn state(&self) -> Result<ControllerState> {
        let params = self
            .parameters()
            .iter()
            .map(Tensor::to_vec)
            .collect::<nas_tensor::Result<_>>()
            .map_err(tensor_err)?;
        Ok(ControllerState {
            params,
            adam: self.opt.state().map_err(tensor_err)?,
            baseline_num: self.baseline_num,
            baseline_den: self.baseline_den,
        })
    }

    /// Restores a state from [`LstmController::state`] of a controller of the same shape.
    pub fn load(&mut self, st: ControllerState) -> Result<()> {
        let bad =
            |m: String| SearchError::strategy("lstm-controller", format!("bad saved state: {m}"));
        let params = self.parameters();
        if st.params.len() != params.len()
            || st
                .params
                .iter()
                .zip(&params)
                .any(|(v, p)| v.len() != p.numel())
        {
            return Err(bad(format!(
                "its parameters do not fit a controller of decisions {:?} and {} units",
                self.sizes, self.config.hidden
            )));
        }
        for (v, p) in st.params.iter().zip(&params) {
            p.set_data(v).map_err(tensor_err)?;
        }
        self.opt.load_state(st.adam).map_err(tensor_err)?;
        self.baseline_num = st.baseline_num;
        self.baseline_den = st.baseline_den;
        Ok(())
    }

    /// The decisions' sizes.
    pub fn decisions(&self) -> &[usize] {
        &self.sizes
    }

    /// `-log p(choices)` as a scalar with a graph: one teacher-forced pass of the fused LSTM
    /// over all decisions.
    pub fn neg_log_prob(&self, choices: &[usize]) -> Result<Tensor> {
        let steps = self.sizes.len();
        if choices.len() != steps || choices.iter().zip(&self.sizes).any(|(&c, &n)| c >= n) {
            return Err(SearchError::strategy(
                "lstm-controller",
                format!("choices {choices:?} do not fit decisions {:?}", self.sizes),
            ));
        }
        let rows: Vec<usize> = (0..steps).map(|d| self.input_row(&choices[..d])).collect();
        let x = lookup_in(&self.embedding, &rows, &[steps, 1]).map_err(tensor_err)?;
        let (h0, c0) = self.zero_state()?;
        let out = Tensor::lstm(&x, &h0, &c0, &self.w_ih, &self.w_hh, &self.bias)
            .map_err(tensor_err)?
            .output;
        let h = self.config.hidden;
        let mut total: Option<Tensor> = None;
        for (d, &c) in choices.iter().enumerate() {
            let hd = out
                .narrow(0, d, 1)
                .and_then(|t| t.reshape(&[1, h]))
                .map_err(tensor_err)?;
            let nll = self.head(d, &hd)?.cross_entropy(&[c]).map_err(tensor_err)?;
            total = Some(match total {
                None => nll,
                Some(t) => t.add(&nll).map_err(tensor_err)?,
            });
        }
        Ok(total.expect("at least one decision"))
    }

    /// The current baseline (`None` before the first reward).
    pub fn baseline(&self) -> Option<f64> {
        (self.baseline_den > 0.0).then(|| self.baseline_num / self.baseline_den)
    }

    fn update(&mut self, choices: &[usize], reward: f64) -> Result<()> {
        self.reinforce_step(&[(choices.to_vec(), reward)]).map(drop)
    }
}

impl<S: SearchSpace> Strategy<S> for LstmController {
    fn name(&self) -> &'static str {
        "lstm-controller"
    }
    fn config(&self) -> serde_json::Value {
        serde_json::json!({ "config": self.config, "decisions": self.sizes })
    }
    fn ask(&mut self, space: &S, rng: &mut dyn RngCore) -> Result<Ask<S::Arch>> {
        let mut last_err = None;
        for _ in 0..100 {
            let choices = self.sample(rng)?;
            match space.decode_decisions(&choices) {
                Ok(arch) => {
                    return Ok(Ask::Evaluate(Candidate {
                        arch,
                        fidelity: self.config.fidelity,
                    }));
                }
                Err(e) => last_err = Some(e),
            }
        }
        Err(SearchError::strategy(
            "lstm-controller",
            format!("100 samples in a row decoded to no valid architecture: {last_err:?}"),
        ))
    }
    fn tell(&mut self, space: &S, trial: &Trial<S::Arch>) -> Result<()> {
        if let Some(reward) = trial.score() {
            let choices = space.encode_decisions(&trial.arch);
            self.update(&choices, reward)?;
        }
        Ok(())
    }
    fn save_state(&self) -> Result<serde_json::Value> {
        super::state_to_json(&self.state()?)
    }
    fn load_state(&mut self, state: serde_json::Value) -> Result<()> {
        let st: ControllerState = super::state_from_json("lstm-controller", state)?;
        self.load(st)
    }
}

impl super::StrategyConfig for ControllerConfig {
    const NAME: &'static str = "lstm-controller";
    const ALIASES: &'static [&'static str] = &["controller", "enas-controller"];
    const ABOUT: &'static str =
        "REINFORCE with an LSTM controller that emits the decisions one by one (Zoph & Le, ENAS)";
    fn build<S: SearchSpace>(&self, space: &S) -> Result<Box<dyn Strategy<S>>> {
        Ok(Box::new(LstmController::new(
            self.clone(),
            &space.decisions(),
        )?))
    }
    fn set_fidelity(&mut self, fidelity: u32, _any_fidelity: bool) -> Result<()> {
        self.fidelity = fidelity;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic::{ToyObjective, ToySpace};
    use crate::{Budget, SearchConfig, run_search};

    #[test]
    fn sampling_and_the_fused_log_probability_agree() {
        let c = LstmController::new(ControllerConfig::default(), &[3, 4, 2]).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for _ in 0..5 {
            let ch = c.sample(&mut rng).unwrap();
            let mut lp = 0.0;
            for d in 0..3 {
                lp += c.distribution_after(&ch[..d]).unwrap()[ch[d]].ln();
            }
            let fused = c.neg_log_prob(&ch).unwrap().item().unwrap() as f64;
            assert!((fused + lp).abs() < 1e-4, "{fused} vs {}", -lp);
        }
        assert!(c.neg_log_prob(&[3, 0, 0]).is_err());
        assert!(c.distribution_after(&[0, 0, 0]).is_err());
    }

    /// The decision after a prefix depends on the prefix (through the LSTM state): trained
    /// on a reward for repeating the first choice, with the first choice drawn uniformly, the
    /// controller learns to copy whichever it was, which no independent per-decision policy
    /// can represent (it would give one fixed second-choice distribution).
    #[test]
    fn later_decisions_are_conditioned_on_earlier_ones() {
        for seed in 0..4 {
            let config = ControllerConfig {
                init_seed: seed,
                ..ControllerConfig::default()
            };
            let mut c = LstmController::new(config, &[3, 3]).unwrap();
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            for _ in 0..800 {
                let first = rng.random_range(0..3);
                let p = c.distribution_after(&[first]).unwrap();
                let u: f64 = rng.random();
                let second = if u < p[0] {
                    0
                } else if u < p[0] + p[1] {
                    1
                } else {
                    2
                };
                let reward = if first == second { 1.0 } else { 0.0 };
                c.update(&[first, second], reward).unwrap();
            }
            for first in 0..3 {
                let p = c.distribution_after(&[first]).unwrap();
                assert!(p[first] > 0.8, "seed {seed}, after {first}: {p:?}");
            }
        }
    }

    #[test]
    fn it_finds_good_architectures_of_a_toy_space_and_resumes() {
        let space = ToySpace {
            dims: 5,
            choices: 4,
        };
        let obj = ToyObjective::new(&space, 3);
        let mut c = LstmController::new(ControllerConfig::default(), &space.decisions()).unwrap();
        let out = run_search(
            &space,
            &mut c,
            &obj,
            &SearchConfig::new(0, Budget::evaluations(300)),
        )
        .unwrap();
        let scores: Vec<f64> = out
            .history
            .trials
            .iter()
            .map(|t| t.metrics().unwrap().test_accuracy.unwrap())
            .collect();
        let first = scores[..50].iter().sum::<f64>() / 50.0;
        let last = scores[250..].iter().sum::<f64>() / 50.0;
        assert!(last > first + 5.0, "mean score {first:.2} -> {last:.2}");
        assert!(
            last > 0.85 * obj.optimum(&space),
            "{last} vs optimum {}",
            obj.optimum(&space)
        );
        // The state round-trips: a restored controller gives the same distributions.
        let saved = Strategy::<ToySpace>::save_state(&c).unwrap();
        let mut d = LstmController::new(
            ControllerConfig {
                init_seed: 9,
                ..ControllerConfig::default()
            },
            &space.decisions(),
        )
        .unwrap();
        Strategy::<ToySpace>::load_state(&mut d, saved).unwrap();
        assert_eq!(
            c.distribution_after(&[1, 2]).unwrap(),
            d.distribution_after(&[1, 2]).unwrap()
        );
        assert_eq!(c.baseline(), d.baseline());
        let mut other = LstmController::new(ControllerConfig::default(), &[2, 2]).unwrap();
        let saved = Strategy::<ToySpace>::save_state(&c).unwrap();
        assert!(Strategy::<ToySpace>::load_state(&mut other, saved).is_err());
    }
}
