//! Limits checked before anything big is allocated or read: the memory a training run would
//! need (`nas_search::memory`), and the size of architecture inputs.

use crate::error::Result;
use nas_search::data::Dataset;
use nas_search::memory::{NetSize, available_memory, check, estimate};

/// Largest architecture input read from `@FILE` or stdin.
pub const MAX_ARCH_BYTES: u64 = 16 << 20;

/// Refuses a training run (of `copies` networks at once) whose estimated memory exceeds
/// `--max-memory`, or the machine's available memory when that is not given.
pub fn check_memory(
    size: NetSize,
    train: &Dataset,
    train_examples: Option<usize>,
    batch: usize,
    copies: usize,
    max_memory: Option<u64>,
    what: &str,
) -> Result<()> {
    let n = train_examples.map_or(train.len(), |n| n.min(train.len()));
    let est = estimate(
        size,
        train.shape(),
        train.num_classes(),
        batch.min(n.max(1)),
    );
    let (limit, name) = match (max_memory, available_memory()) {
        (Some(m), _) => (m, "--max-memory"),
        (None, Some(a)) => (
            a,
            "the memory available on this machine, MemAvailable in /proc/meminfo",
        ),
        (None, None) => return Ok(()),
    };
    Ok(check(&est, copies, limit, what, name)?)
}
