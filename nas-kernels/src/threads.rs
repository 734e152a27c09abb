//! Thread-count setting and a small fork-join `parallel_for` used by the CPU kernels.
//!
//! - [`num_threads`]: the configured number of threads. Defaults to the environment variable
//!   `NAS_THREADS` when it holds a positive integer, else to the machine's available parallelism.
//! - [`set_num_threads`]: change it at run time (process-wide).
//! - [`parallel_for`]: run tasks `0..n_tasks` over the configured threads and return when all are
//!   done. A call made from inside a task runs its tasks serially on the calling thread, so nested
//!   parallel loops never deadlock or oversubscribe.
//!
//! This first version spawns scoped threads per call (tens of microseconds); the kernels only
//! call it for problems large enough for that to be negligible.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

/// 0 means "not yet initialised from the environment".
static NUM_THREADS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// True while this thread is running a task of a `parallel_for`.
    static IN_PARALLEL: Cell<bool> = const { Cell::new(false) };
}

/// Parses a `NAS_THREADS` value: a positive integer, surrounding whitespace allowed.
fn parse_threads(s: &str) -> Option<usize> {
    match s.trim().parse::<usize>() {
        Ok(n) if n > 0 => Some(n),
        _ => None,
    }
}

fn default_threads() -> usize {
    if let Ok(s) = std::env::var("NAS_THREADS")
        && let Some(n) = parse_threads(&s)
    {
        return n;
    }
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The number of threads kernels may use (at least 1).
///
/// Until [`set_num_threads`] is called this is `NAS_THREADS` when that is set to a positive
/// integer, else [`std::thread::available_parallelism`].
pub fn num_threads() -> usize {
    let n = NUM_THREADS.load(Ordering::Relaxed);
    if n != 0 {
        return n;
    }
    let d = default_threads();
    // Keep a value set concurrently by `set_num_threads`.
    match NUM_THREADS.compare_exchange(0, d, Ordering::Relaxed, Ordering::Relaxed) {
        Ok(_) => d,
        Err(current) => current,
    }
}

/// Sets the number of threads kernels may use, process-wide. `0` is treated as `1`.
pub fn set_num_threads(n: usize) {
    NUM_THREADS.store(n.max(1), Ordering::Relaxed);
}

/// True when called from inside a task of [`parallel_for`] (where nested calls run serially).
pub fn in_parallel() -> bool {
    IN_PARALLEL.with(|c| c.get())
}

/// Runs `f(0)`, ..., `f(n_tasks - 1)` over up to [`num_threads`] threads (the caller included)
/// and returns when all have finished. Tasks are handed out dynamically, in increasing order.
///
/// Called from inside a task, it runs the tasks serially on the current thread.
/// A panic in a task is propagated to the caller after all threads have stopped.
pub fn parallel_for(n_tasks: usize, f: &(dyn Fn(usize) + Sync)) {
    parallel_for_threads(num_threads(), n_tasks, f);
}

/// Like [`parallel_for`] but with an explicit thread count (callers usually pass at most
/// [`num_threads`]; kernels use it to keep small problems on fewer threads, tests to force a
/// count). Uses `min(threads, n_tasks)` threads, the caller included.
pub fn parallel_for_threads(threads: usize, n_tasks: usize, f: &(dyn Fn(usize) + Sync)) {
    let threads = threads.min(n_tasks);
    if threads <= 1 || in_parallel() {
        run_serial(n_tasks, f);
        return;
    }
    let next = AtomicUsize::new(0);
    let work = || {
        let _guard = ParallelGuard::enter();
        loop {
            let t = next.fetch_add(1, Ordering::Relaxed);
            if t >= n_tasks {
                break;
            }
            f(t);
        }
    };
    std::thread::scope(|s| {
        for _ in 1..threads {
            s.spawn(work);
        }
        work();
    });
}

fn run_serial(n_tasks: usize, f: &(dyn Fn(usize) + Sync)) {
    let _guard = ParallelGuard::enter();
    for t in 0..n_tasks {
        f(t);
    }
}

/// Marks the current thread as inside a parallel region; restores the previous state on drop
/// (also during unwinding).
struct ParallelGuard {
    prev: bool,
}

impl ParallelGuard {
    fn enter() -> Self {
        let prev = IN_PARALLEL.with(|c| c.replace(true));
        ParallelGuard { prev }
    }
}

impl Drop for ParallelGuard {
    fn drop(&mut self) {
        let prev = self.prev;
        IN_PARALLEL.with(|c| c.set(prev));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    #[test]
    fn parse_accepts_positive_integers_only() {
        assert_eq!(parse_threads("2"), Some(2));
        assert_eq!(parse_threads(" 8 "), Some(8));
        assert_eq!(parse_threads("0"), None);
        assert_eq!(parse_threads("-1"), None);
        assert_eq!(parse_threads("two"), None);
        assert_eq!(parse_threads(""), None);
    }

    #[test]
    fn every_task_runs_exactly_once() {
        for threads in [1, 2, 3, 7] {
            for n in [0, 1, 2, 5, 100] {
                let counts: Vec<AtomicU64> = (0..n).map(|_| AtomicU64::new(0)).collect();
                parallel_for_threads(threads, n, &|t| {
                    counts[t].fetch_add(1, Ordering::Relaxed);
                });
                assert!(
                    counts.iter().all(|c| c.load(Ordering::Relaxed) == 1),
                    "threads {threads} n {n}"
                );
            }
        }
    }

    #[test]
    fn nested_calls_run_serially_and_complete() {
        let total = AtomicU64::new(0);
        parallel_for_threads(4, 8, &|_| {
            assert!(in_parallel());
            let tid = std::thread::current().id();
            parallel_for_threads(4, 10, &|j| {
                // Nested tasks stay on the calling thread.
                assert_eq!(std::thread::current().id(), tid);
                total.fetch_add(j as u64, Ordering::Relaxed);
            });
        });
        assert_eq!(total.load(Ordering::Relaxed), 8 * 45);
        assert!(!in_parallel());
    }

    #[test]
    fn panics_propagate_and_state_is_restored() {
        let r = std::panic::catch_unwind(|| {
            parallel_for_threads(2, 4, &|t| {
                if t == 3 {
                    panic!("task 3 fails");
                }
            });
        });
        assert!(r.is_err());
        assert!(!in_parallel());
        // Still usable afterwards.
        let total = AtomicU64::new(0);
        parallel_for_threads(2, 4, &|t| {
            total.fetch_add(t as u64 + 1, Ordering::Relaxed);
        });
        assert_eq!(total.load(Ordering::Relaxed), 10);
    }
}
