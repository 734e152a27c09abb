//! Communicators for data-parallel training: who this process is among its peers (rank, size)
//! and the collectives a data-parallel step needs (a sum over ranks, a broadcast).
//!
//! * [`SingleProcess`]: rank 0 of 1; every collective is the identity.
//! * [`ThreadGroup`]: `n` ranks as threads of one process (tests run the data-parallel
//!   arithmetic with it on every CI run, no MPI needed). Sums are taken in rank order, so
//!   every rank gets the same bits and one rank's sum is its own buffer.
//! * `Mpi` (feature `mpi`, rsmpi over the system's MPI library): the ranks `mpirun -np N` or
//!   `srun --mpi=pmix` started; [`mpi_world`] joins them.
//!
//! Data-parallel DARTS on top of these is [`crate::oneshot::OneShotSearch::with_communicator`].

#[cfg(feature = "mpi")]
mod mpi;
mod threads;

use std::sync::Arc;

#[cfg(feature = "mpi")]
pub use self::mpi::{Mpi, mpi_world};
pub use threads::ThreadGroup;

/// A collective operation failed (a peer left, buffers of different lengths, MPI error).
#[derive(Debug, Clone, thiserror::Error)]
#[error("data-parallel run: {0}")]
pub struct CommError(pub String);

/// `Result` with [`CommError`].
pub type CommResult<T> = std::result::Result<T, CommError>;

/// The processes of a data-parallel run and their collectives. Every rank must call the
/// collectives in the same order with buffers of the same length.
pub trait Communicator: Send + Sync {
    /// This process' index, `0..size`.
    fn rank(&self) -> usize;
    /// The number of processes.
    fn size(&self) -> usize;
    /// Element-wise sum over the ranks, in place; every rank ends with the same values.
    fn allreduce_sum_f32(&self, buf: &mut [f32]) -> CommResult<()>;
    /// [`Communicator::allreduce_sum_f32`] in double precision.
    fn allreduce_sum_f64(&self, buf: &mut [f64]) -> CommResult<()>;
    /// Replaces `buf` on every rank by `root`'s bytes (lengths may differ before the call).
    fn broadcast_bytes(&self, buf: &mut Vec<u8>, root: usize) -> CommResult<()>;
    /// Ends the whole run after an error on this rank, so that no peer waits forever in a
    /// collective this rank will never join (MPI: `MPI_Abort`, which does not return).
    fn abort(&self, code: i32);
    /// A short name for messages: `single`, `threads`, `mpi`.
    fn kind(&self) -> &'static str;
}

/// One process alone: rank 0 of 1.
#[derive(Debug, Clone, Copy, Default)]
pub struct SingleProcess;

impl Communicator for SingleProcess {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn allreduce_sum_f32(&self, _buf: &mut [f32]) -> CommResult<()> {
        Ok(())
    }
    fn allreduce_sum_f64(&self, _buf: &mut [f64]) -> CommResult<()> {
        Ok(())
    }
    fn broadcast_bytes(&self, _buf: &mut Vec<u8>, root: usize) -> CommResult<()> {
        if root != 0 {
            return Err(CommError(format!("broadcast from rank {root} of 1")));
        }
        Ok(())
    }
    fn abort(&self, _code: i32) {}
    fn kind(&self) -> &'static str {
        "single"
    }
}

/// The rank's `[lo, hi)` share of `len` items: contiguous, sizes differing by at most one,
/// rank 0 first (the split `torch.utils.data.DistributedSampler` makes of one batch, without
/// its padding).
pub fn shard_range(len: usize, rank: usize, size: usize) -> (usize, usize) {
    (len * rank / size, len * (rank + 1) / size)
}

/// The environment variables a launcher sets in every rank it starts: a size above 1 there
/// means this process is one of several.
const SIZE_VARS: [&str; 4] = [
    "OMPI_COMM_WORLD_SIZE", // Open MPI's mpirun
    "PMI_SIZE",             // MPICH / Intel MPI (Hydra), srun --mpi=pmi2
    "PMIX_SIZE",            // some PMIx launchers
    "MPI_LOCALNRANKS",      // MPICH
];

/// The number of ranks an MPI launcher (mpirun, srun with a PMI plugin) says this process is
/// one of, read from its environment; `None` when none of the launchers' variables is set.
/// Under `srun --mpi=pmix` the size is `SLURM_NTASKS` when `PMIX_RANK` is set.
pub fn launcher_size() -> Option<usize> {
    for v in SIZE_VARS {
        if let Some(n) = std::env::var(v).ok().and_then(|s| s.trim().parse().ok()) {
            return Some(n);
        }
    }
    if std::env::var_os("PMIX_RANK").is_some() {
        return std::env::var("SLURM_NTASKS")
            .ok()
            .and_then(|s| s.trim().parse().ok());
    }
    None
}

/// The communicator of this process: with the `mpi` feature and an MPI launcher's
/// environment, MPI's world; with a launcher of several ranks but no `mpi` feature, an error
/// (N copies of a single-process run would race for one output directory); otherwise
/// [`SingleProcess`].
pub fn from_environment() -> CommResult<Arc<dyn Communicator>> {
    let launched = launcher_size();
    #[cfg(feature = "mpi")]
    if launched.is_some() {
        return Ok(Arc::new(mpi_world()?));
    }
    if let Some(n) = launched
        && n > 1
    {
        return Err(CommError(format!(
            "started as one of {n} MPI ranks, but this nas was built without the `mpi` feature \
             (cargo build --release -p nas-cli --features mpi; needs libmpi and libclang)"
        )));
    }
    Ok(Arc::new(SingleProcess))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_cover_a_batch_in_order() {
        for len in 0..20 {
            for size in 1..6 {
                let mut next = 0;
                for r in 0..size {
                    let (lo, hi) = shard_range(len, r, size);
                    assert_eq!(lo, next);
                    assert!(hi - lo == len / size || hi - lo == len / size + 1);
                    next = hi;
                }
                assert_eq!(next, len);
            }
        }
    }

    #[test]
    fn a_single_process_is_rank_0_of_1() {
        let c = SingleProcess;
        let mut v = vec![1.5f32, -2.0];
        c.allreduce_sum_f32(&mut v).unwrap();
        assert_eq!(v, [1.5, -2.0]);
        let mut b = vec![1u8, 2];
        c.broadcast_bytes(&mut b, 0).unwrap();
        assert_eq!(b, [1, 2]);
        assert!(c.broadcast_bytes(&mut b, 1).is_err());
    }
}
