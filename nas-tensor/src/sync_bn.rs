//! Synchronised batch normalisation for data-parallel training (PyTorch's `SyncBatchNorm`).
//!
//! In a data-parallel step every process (rank) holds a shard of the batch. Plain batch norm
//! normalises each shard by its own statistics, so N ranks do not compute what one process on
//! the whole batch computes. With a [`SyncBn`] installed on the calling thread
//! ([`with_sync_bn`]), every [`crate::nn::BatchNorm2d`] in training mode instead:
//!
//! * forward: sums its shard's count, mean and variance over the ranks (one reduction of
//!   `1 + 3c` numbers) and normalises by the statistics of the whole batch; the running
//!   statistics are updated with them (the same on every rank);
//! * backward: sums `sum(dy)` and `sum(dy * xhat)` per channel over the ranks (one reduction
//!   of `2c` numbers) so the input gradient is the whole batch's.
//!
//! The reduction is a caller-supplied function (an allreduce over the ranks) so this crate
//! knows nothing of processes or MPI. Every rank must run the same graph: reductions happen
//! in forward and backward order, and each rank has to call them in the same sequence.
//!
//! Loss weighting: a rank's loss is the mean over its shard, and the whole batch's loss is
//! `sum_r w_r L_r` with `w_r = n_r / n` ([`SyncBn::weight`]). Each rank back-propagates its own
//! `L_r`; the backward reduction weights its sums by `w_r` and divides the result by it, so the
//! gradients a rank ends with, multiplied by `w_r` and summed over the ranks, are the whole
//! batch's gradients exactly (up to float rounding), shards of unequal size included.

use std::cell::RefCell;
use std::sync::Arc;

use nas_kernels::backend::BatchNormParams;

use crate::error::{Result, arg_err};
use crate::storage::{self, Storage};
use crate::tensor::{Tensor, new_data};

/// A sum over the ranks, in place: every rank passes a buffer of the same length and gets the
/// element-wise sum of all ranks' buffers (an allreduce).
pub type Reduce = Arc<dyn Fn(&mut [f64]) -> Result<()> + Send + Sync>;

/// What a synchronised batch norm needs: the reduction over the ranks and this rank's share of
/// the batch's loss.
#[derive(Clone)]
pub struct SyncBn {
    /// The sum over ranks.
    pub reduce: Reduce,
    /// This rank's examples over the batch's (`n_r / n`; 1 on a single process).
    pub weight: f64,
}

impl std::fmt::Debug for SyncBn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncBn")
            .field("weight", &self.weight)
            .finish_non_exhaustive()
    }
}

thread_local! {
    static CURRENT: RefCell<Option<SyncBn>> = const { RefCell::new(None) };
}

/// Runs `f` with `sync` installed on this thread (restoring what was there before, also on
/// panic-free early returns): batch norms in training mode created by `f` synchronise.
pub fn with_sync_bn<R>(sync: Option<SyncBn>, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<SyncBn>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let prev = self.0.take();
            CURRENT.with(|c| *c.borrow_mut() = prev);
        }
    }
    let prev = CURRENT.with(|c| c.replace(sync));
    let _restore = Restore(prev);
    f()
}

/// The synchronisation installed on this thread, if any.
pub fn current() -> Option<SyncBn> {
    CURRENT.with(|c| c.borrow().clone())
}

fn host(s: &Storage) -> Result<Vec<f32>> {
    s.to_vec()
}

impl Tensor {
    /// Batch normalisation in training mode with the statistics of the whole batch across the
    /// ranks `sync` reduces over (see the [module](crate::sync_bn) docs); otherwise as
    /// [`Tensor::batch_norm`] with `training = true`.
    pub fn batch_norm_synced(
        &self,
        weight: Option<&Tensor>,
        bias: Option<&Tensor>,
        running_mean: Option<&Tensor>,
        running_var: Option<&Tensor>,
        momentum: f32,
        eps: f32,
        sync: &SyncBn,
    ) -> Result<Tensor> {
        let op = "batch_norm_synced";
        let (n, c, h, w) =
            crate::ops::conv::batch_norm_args(op, self, weight, bias, running_mean, running_var)?;
        if !(sync.weight > 0.0 && sync.weight.is_finite()) {
            return arg_err(
                op,
                format!("rank weight must be positive, got {}", sync.weight),
            );
        }
        let dev = self.device();
        let hw = h * w;
        let m_local = (n * hw) as f64;
        // 1. This shard's mean and biased variance (the kernel's accurate shifted sums).
        let train_p = BatchNormParams {
            n,
            c,
            hw,
            eps,
            momentum,
            training: true,
        }
        .check()?;
        let mut scratch = Storage::alloc(dev, train_p.x_len())?;
        let mut lmean = Storage::zeros(dev, c)?;
        let mut linv = Storage::zeros(dev, c)?;
        storage::batch_norm(
            &train_p,
            &self.read(),
            None,
            None,
            None,
            None,
            &mut scratch,
            &mut lmean,
            &mut linv,
        )?;
        drop(scratch);
        let (lmean, linv) = (host(&lmean)?, host(&linv)?);
        // 2. Sum count, count * mean, count * var and count * mean^2 over the ranks; the
        // between-shard term of the variance is then exact in f64.
        let mut buf = vec![0.0f64; 1 + 3 * c];
        buf[0] = m_local;
        for ch in 0..c {
            let mu = lmean[ch] as f64;
            let inv = linv[ch] as f64;
            let var = (1.0 / (inv * inv) - eps as f64).max(0.0);
            buf[1 + ch] = m_local * mu;
            buf[1 + c + ch] = m_local * var;
            buf[1 + 2 * c + ch] = m_local * mu * mu;
        }
        (sync.reduce)(&mut buf)?;
        let m_total = buf[0];
        if !(m_total > 1.0) {
            return arg_err(
                op,
                format!("the whole batch has {m_total} values per channel; need at least 2"),
            );
        }
        let mut gmean = vec![0.0f64; c];
        let mut gvar = vec![0.0f64; c];
        for ch in 0..c {
            let mean = buf[1 + ch] / m_total;
            gmean[ch] = mean;
            gvar[ch] = ((buf[1 + c + ch] + buf[1 + 2 * c + ch]) / m_total - mean * mean).max(0.0);
        }
        // 3. Running statistics, as the kernel updates them (unbiased variance).
        if let (Some(rm), Some(rv)) = (running_mean, running_var) {
            let mo = momentum as f64;
            let (rm0, rv0) = (rm.to_vec()?, rv.to_vec()?);
            let rm1: Vec<f32> = (0..c)
                .map(|ch| ((1.0 - mo) * rm0[ch] as f64 + mo * gmean[ch]) as f32)
                .collect();
            let rv1: Vec<f32> = (0..c)
                .map(|ch| {
                    ((1.0 - mo) * rv0[ch] as f64 + mo * gvar[ch] * m_total / (m_total - 1.0)) as f32
                })
                .collect();
            *rm.write() = Storage::from_slice(dev, &rm1)?;
            *rv.write() = Storage::from_slice(dev, &rv1)?;
        }
        // 4. Normalise by the whole batch's statistics: the kernel in evaluation mode with
        // them as its "running" statistics.
        let mean_s =
            Storage::from_slice(dev, &gmean.iter().map(|&v| v as f32).collect::<Vec<_>>())?;
        let var_s = Storage::from_slice(dev, &gvar.iter().map(|&v| v as f32).collect::<Vec<_>>())?;
        let eval_p = BatchNormParams {
            n,
            c,
            hw,
            eps,
            momentum,
            training: false,
        }
        .check()?;
        let mut y = Storage::alloc(dev, eval_p.x_len())?;
        let mut save_mean = Storage::zeros(dev, c)?;
        let mut save_invstd = Storage::zeros(dev, c)?;
        {
            let mut m = mean_s.try_clone()?;
            let mut v = var_s.try_clone()?;
            let wg = weight.map(|t| t.read());
            let bg = bias.map(|t| t.read());
            storage::batch_norm(
                &eval_p,
                &self.read(),
                wg.as_deref(),
                bg.as_deref(),
                Some(&mut m),
                Some(&mut v),
                &mut y,
                &mut save_mean,
                &mut save_invstd,
            )?;
        }
        let invstd = host(&save_invstd)?;
        let gamma_host = weight.map(|t| t.to_vec()).transpose()?;
        let wc = weight.cloned();
        let x = self.data.clone();
        let sync = sync.clone();
        let mut parents = vec![self];
        if let (Some(wt), Some(bt)) = (weight, bias) {
            parents.push(wt);
            parents.push(bt);
        }
        Ok(Tensor::from_op_data(
            op,
            self.shape().to_vec(),
            new_data(y),
            &parents,
            move |dy, needs| {
                let dev = dy.device();
                let x = x.read().unwrap_or_else(|e| e.into_inner());
                // dx = k (dy - S / M - xhat * SX / M), k = gamma * invstd, S = sum(dy) and
                // SX = sum(dy * xhat) over the whole batch. The kernel in evaluation mode
                // gives k dy and this shard's sums; the rest is an affine map of xhat, which
                // the forward kernel in evaluation mode computes.
                let mut dx = Storage::alloc(dev, eval_p.x_len())?;
                let mut dgamma = Storage::zeros(dev, c)?;
                let mut dbeta = Storage::zeros(dev, c)?;
                {
                    let wg = wc.as_ref().map(|t| t.read());
                    storage::batch_norm_backward(
                        &eval_p,
                        &x,
                        wg.as_deref(),
                        &save_mean,
                        &save_invstd,
                        dy,
                        &mut dx,
                        Some(&mut dgamma),
                        Some(&mut dbeta),
                    )?;
                }
                let (sx_l, s_l) = (host(&dgamma)?, host(&dbeta)?);
                let mut buf = vec![0.0f64; 2 * c];
                for ch in 0..c {
                    buf[ch] = sync.weight * s_l[ch] as f64;
                    buf[c + ch] = sync.weight * sx_l[ch] as f64;
                }
                (sync.reduce)(&mut buf)?;
                let mut a = vec![0.0f32; c];
                let mut b = vec![0.0f32; c];
                for ch in 0..c {
                    let k = gamma_host.as_ref().map_or(1.0, |g| g[ch] as f64) * invstd[ch] as f64;
                    let s = buf[ch] / sync.weight;
                    let sx = buf[c + ch] / sync.weight;
                    a[ch] = (-k * s / m_total) as f32;
                    b[ch] = (-k * sx / m_total) as f32;
                }
                let mut corr = Storage::alloc(dev, eval_p.x_len())?;
                {
                    let (mut m, mut v) = (mean_s.try_clone()?, var_s.try_clone()?);
                    let (mut s0, mut s1) = (Storage::zeros(dev, c)?, Storage::zeros(dev, c)?);
                    storage::batch_norm(
                        &eval_p,
                        &x,
                        Some(&Storage::from_slice(dev, &b)?),
                        Some(&Storage::from_slice(dev, &a)?),
                        Some(&mut m),
                        Some(&mut v),
                        &mut corr,
                        &mut s0,
                        &mut s1,
                    )?;
                }
                storage::axpy(1.0, &corr, &mut dx)?;
                let mut grads = vec![needs[0].then_some(dx)];
                if wc.is_some() {
                    grads.push(Some(dgamma));
                    grads.push(Some(dbeta));
                }
                Ok(grads)
            },
        ))
    }
}
