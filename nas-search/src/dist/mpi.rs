//! The MPI communicator (rsmpi): the world of ranks an MPI launcher started.

use std::sync::OnceLock;
use std::thread::ThreadId;

use mpi::collective::{CommunicatorCollectives, Root, SystemOperation};
use mpi::environment::{Threading, Universe};
use mpi::topology::Communicator as _;

use super::{CommError, CommResult, Communicator};

/// MPI's world communicator. MPI is initialised with `MPI_THREAD_FUNNELED`: every collective
/// must come from the thread that called [`mpi_world`] (the kernel thread pool never calls
/// MPI); a call from another thread is an error, not undefined behaviour. Dropping the last
/// handle finalises MPI.
pub struct Mpi {
    universe: Universe,
    owner: ThreadId,
    rank: usize,
    size: usize,
}

static STARTED: OnceLock<()> = OnceLock::new();

/// Initialises MPI (once per process) and returns its world.
pub fn mpi_world() -> CommResult<Mpi> {
    if STARTED.set(()).is_err() {
        return Err(CommError(
            "MPI was already initialised in this process".into(),
        ));
    }
    let (universe, _threading) = mpi::initialize_with_threading(Threading::Funneled)
        .ok_or_else(|| CommError("MPI could not be initialised (MPI_Init_thread failed)".into()))?;
    let world = universe.world();
    let (rank, size) = (world.rank() as usize, world.size() as usize);
    Ok(Mpi {
        universe,
        owner: std::thread::current().id(),
        rank,
        size,
    })
}

impl Mpi {
    fn check_thread(&self) -> CommResult<()> {
        if std::thread::current().id() != self.owner {
            return Err(CommError(format!(
                "rank {}: an MPI collective from a thread other than the one that initialised \
                 MPI",
                self.rank
            )));
        }
        Ok(())
    }
}

fn count(len: usize) -> CommResult<()> {
    if len > i32::MAX as usize {
        return Err(CommError(format!(
            "a buffer of {len} elements is over MPI's count limit"
        )));
    }
    Ok(())
}

impl Communicator for Mpi {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.size
    }
    fn allreduce_sum_f32(&self, buf: &mut [f32]) -> CommResult<()> {
        self.check_thread()?;
        count(buf.len())?;
        let send = buf.to_vec();
        self.universe
            .world()
            .all_reduce_into(&send[..], buf, SystemOperation::sum());
        Ok(())
    }
    fn allreduce_sum_f64(&self, buf: &mut [f64]) -> CommResult<()> {
        self.check_thread()?;
        count(buf.len())?;
        let send = buf.to_vec();
        self.universe
            .world()
            .all_reduce_into(&send[..], buf, SystemOperation::sum());
        Ok(())
    }
    fn broadcast_bytes(&self, buf: &mut Vec<u8>, root: usize) -> CommResult<()> {
        self.check_thread()?;
        if root >= self.size {
            return Err(CommError(format!(
                "broadcast from rank {root} of {}",
                self.size
            )));
        }
        count(buf.len())?;
        let world = self.universe.world();
        let root_proc = world.process_at_rank(root as i32);
        let mut len = [buf.len() as u64];
        root_proc.broadcast_into(&mut len[..]);
        if self.rank != root {
            buf.resize(len[0] as usize, 0);
        }
        root_proc.broadcast_into(&mut buf[..]);
        Ok(())
    }
    fn abort(&self, code: i32) {
        self.universe.world().abort(code)
    }
    fn kind(&self) -> &'static str {
        "mpi"
    }
}
