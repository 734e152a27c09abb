//! Thread-count setting and a small fork-join `parallel_for` used by the CPU kernels.
//!
//! - [`num_threads`]: the configured number of threads. Defaults to the environment variable
//!   `NAS_THREADS` when it holds a positive integer, else to the machine's available parallelism.
//! - [`set_num_threads`]: change it at run time (process-wide).
//! - [`set_thread_budget`]: a per-thread cap, so that concurrent workers split the process's
//!   threads instead of multiplying them ([`share_for`] computes a worker's share).
//! - [`parallel_for`]: run tasks `0..n_tasks` over the configured threads and return when all are
//!   done. A call made from inside a task runs its tasks serially on the calling thread, so nested
//!   parallel loops never deadlock or oversubscribe.
//! - [`parallel_chunks_mut`], [`parallel_split_mut`]: `parallel_for` over disjoint pieces of
//!   one output slice, each task handed its piece as `&mut [T]` (the one place where the
//!   kernels' "each task writes its own part" pattern needs a raw pointer).
//! - [`split_range`]: the nearly-equal contiguous split that [`parallel_split_mut`] uses.
//!
//! Tasks run on a persistent pool of parked worker threads (spawned on first use, grown when a
//! larger thread count is asked for), so a call costs a wake-up (a few microseconds) rather than
//! a thread spawn, and workers keep their thread-local scratch buffers between calls. Calls
//! from different outer threads are serialised. After a job, workers spin on an atomic
//! generation counter for a while before they park, and the caller spins on an atomic count of
//! finished helpers: neither takes the mutex nor reads the clock on every spin, and the
//! condition variables are signalled only when a thread has actually parked.

use std::cell::Cell;
use std::ops::Range;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// 0 means "not yet initialised from the environment".
static NUM_THREADS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// True while this thread is running a task of a `parallel_for`.
    static IN_PARALLEL: Cell<bool> = const { Cell::new(false) };
    /// This thread's share of the thread budget (0: the process-wide count).
    static BUDGET: Cell<usize> = const { Cell::new(0) };
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

/// The number of threads kernels called from this thread may use (at least 1): this thread's
/// budget ([`set_thread_budget`]) when it has one, else the process-wide count.
///
/// Until [`set_num_threads`] is called the process-wide count is `NAS_THREADS` when that is
/// set to a positive integer, else [`std::thread::available_parallelism`].
pub fn num_threads() -> usize {
    let b = BUDGET.with(Cell::get);
    let total = total_threads();
    if b != 0 { b.min(total) } else { total }
}

/// Gives kernels called from this thread at most `n` threads (`0` removes the limit): how `N`
/// concurrent workers share one thread budget (each gets `total / N`, so workers times kernel
/// threads never exceed the total). A budget of 1 runs this thread's kernels serially on it,
/// never touching the shared pool.
pub fn set_thread_budget(n: usize) {
    BUDGET.with(|b| b.set(n));
}

/// Each of `workers` concurrent workers' share of the process-wide thread count (at least 1).
pub fn share_for(workers: usize) -> usize {
    (total_threads() / workers.max(1)).max(1)
}

/// The process-wide thread count (ignoring this thread's budget).
pub fn total_threads() -> usize {
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
    pool().run(threads - 1, n_tasks, f);
}

/// Splits `0..n` into `parts` nearly equal contiguous ranges (the first `n % parts` one longer)
/// and returns range `i`. For `i < parts` the ranges are disjoint, in order and cover `0..n`.
pub fn split_range(n: usize, parts: usize, i: usize) -> Range<usize> {
    let base = n / parts;
    let extra = n % parts;
    let start = i * base + i.min(extra);
    start..start + base + usize::from(i < extra)
}

/// Runs `f(i, piece)` for every `chunk`-sized piece of `data` (`data.chunks_mut(chunk)`, the
/// last piece possibly shorter; piece `i` starts at `i * chunk`) over up to [`num_threads`]
/// threads, one task per piece, as [`parallel_for`] does.
///
/// # Panics
/// If `chunk` is 0 (and `data` is not empty), or if a task panics.
pub fn parallel_chunks_mut<T: Send>(
    data: &mut [T],
    chunk: usize,
    f: impl Fn(usize, &mut [T]) + Sync,
) {
    chunks_mut_threads(num_threads(), data, chunk, f);
}

fn chunks_mut_threads<T: Send>(
    threads: usize,
    data: &mut [T],
    chunk: usize,
    f: impl Fn(usize, &mut [T]) + Sync,
) {
    let len = data.len();
    if len == 0 {
        return;
    }
    assert!(chunk > 0, "parallel_chunks_mut: chunk size 0");
    // Piece i is `[i * chunk, min((i + 1) * chunk, len))`: disjoint for distinct i, inside data.
    for_each_piece(
        threads,
        data,
        len.div_ceil(chunk),
        &|i| i * chunk..((i + 1) * chunk).min(len),
        &f,
    );
}

/// Splits `data`, made of `data.len() / unit` units of `unit` elements, into `parts` nearly
/// equal runs of whole units ([`split_range`] over the units) and runs `f(i, units, piece)` for
/// each run `i` over up to [`num_threads`] threads, one task per run; `units` is the run's range
/// of unit indices and `piece` its elements.
///
/// # Panics
/// If `unit` is 0 or does not divide `data.len()`, if `parts` is 0 while `data` is not empty,
/// or if a task panics.
pub fn parallel_split_mut<T: Send>(
    data: &mut [T],
    unit: usize,
    parts: usize,
    f: impl Fn(usize, Range<usize>, &mut [T]) + Sync,
) {
    split_mut_threads(num_threads(), data, unit, parts, f);
}

fn split_mut_threads<T: Send>(
    threads: usize,
    data: &mut [T],
    unit: usize,
    parts: usize,
    f: impl Fn(usize, Range<usize>, &mut [T]) + Sync,
) {
    assert!(
        unit > 0 && data.len().is_multiple_of(unit),
        "parallel_split_mut: {} elements are not whole units of {unit}",
        data.len()
    );
    let units = data.len() / unit;
    if units > 0 {
        assert!(parts > 0, "parallel_split_mut: 0 parts");
    }
    // Run i is `split_range(units, parts, i)` scaled by `unit`: the runs are disjoint, in order
    // and inside data (see `split_range`).
    let range = |i| {
        let r = split_range(units, parts, i);
        r.start * unit..r.end * unit
    };
    for_each_piece(threads, data, parts, &range, &|i, piece: &mut [T]| {
        f(i, split_range(units, parts, i), piece)
    });
}

/// The one raw pointer behind [`parallel_chunks_mut`] and [`parallel_split_mut`]: the start of
/// the slice their tasks carve their pieces from.
struct PiecesPtr<T>(*mut T);

// SAFETY: the pointer is only used by `for_each_piece`, whose tasks each turn it into a
// `&mut [T]` over their own piece; the pieces of distinct tasks are disjoint and every task runs
// once, so sharing the pointer between threads only ever moves exclusive access to distinct
// `T`s to other threads, which `T: Send` allows.
unsafe impl<T: Send> Sync for PiecesPtr<T> {}

/// Runs `f(i, &mut data[range(i)])` for `i` in `0..n_pieces` over up to `threads` threads.
///
/// Private because soundness rests on `range`: callers pass only ranges that are pairwise
/// disjoint for distinct `i` and lie inside `data` (bounds are checked again here; the
/// disjointness is the callers' argument).
fn for_each_piece<T: Send>(
    threads: usize,
    data: &mut [T],
    n_pieces: usize,
    range: &(dyn Fn(usize) -> Range<usize> + Sync),
    f: &(dyn Fn(usize, &mut [T]) + Sync),
) {
    let len = data.len();
    let base = PiecesPtr(data.as_mut_ptr());
    parallel_for_threads(threads, n_pieces, &|i| {
        let r = range(i);
        assert!(r.start <= r.end && r.end <= len, "piece {i} out of bounds");
        let base = &base;
        // SAFETY: `r` lies inside `data` (checked above), which this call borrows mutably
        // until every task has finished; `parallel_for_threads` runs each `i` exactly once and
        // the callers' ranges of distinct `i` are disjoint, so no two live `&mut` overlap.
        let piece = unsafe { std::slice::from_raw_parts_mut(base.0.add(r.start), r.len()) };
        f(i, piece);
    });
}

/// One `parallel_for` call as the workers see it.
struct Job<'a> {
    f: &'a (dyn Fn(usize) + Sync),
    n_tasks: usize,
    next: AtomicUsize,
    panicked: AtomicBool,
}

impl Job<'_> {
    /// Takes tasks until none is left; records a panic instead of unwinding.
    fn work(&self) {
        let _guard = ParallelGuard::enter();
        let r = catch_unwind(AssertUnwindSafe(|| {
            loop {
                let t = self.next.fetch_add(1, Ordering::Relaxed);
                if t >= self.n_tasks {
                    break;
                }
                (self.f)(t);
            }
        }));
        if r.is_err() {
            self.panicked.store(true, Ordering::Relaxed);
        }
    }
}

/// A type-erased pointer to the current [`Job`] (valid while its caller waits in
/// [`Pool::run`]).
#[derive(Clone, Copy)]
struct JobPtr(*const Job<'static>);
// SAFETY: the pointee is `Sync` (atomics and a `Sync` closure) and outlives every use.
unsafe impl Send for JobPtr {}

struct State {
    job: Option<JobPtr>,
    /// Workers this generation needs and how many have joined.
    wanted: usize,
    joined: usize,
    /// Workers spawned so far.
    workers: usize,
    /// Workers parked on `work` (the caller wakes them only when this is not 0).
    parked: usize,
}

/// Persistent worker threads: they spin on `generation` for a while after each job, then park
/// on a condition variable. The spinning sides (the caller waiting for its helpers, workers
/// waiting for the next job) read atomics only; the mutex is taken to hand a job out, and to
/// park or wake a parked thread.
struct Pool {
    state: Mutex<State>,
    work: Condvar,
    done: Condvar,
    /// Bumped for every job; workers spin on it briefly before parking.
    generation: AtomicU64,
    /// Helpers that have finished the current job (reset under `state` before it is published).
    finished: AtomicUsize,
    /// True while the caller is parked on `done` (set and cleared under `state`).
    caller_parked: AtomicBool,
    /// Serialises callers from different outer threads.
    caller: Mutex<()>,
}

/// How long a worker spins for the next job (and a caller for completion) before parking.
const SPIN: Duration = Duration::from_micros(30);

/// Spin-loop iterations between two reads of the clock (a clock read costs more than a spin).
const SPINS_PER_CLOCK: u32 = 64;

/// Spins until `ready()` or until `SPIN` has passed; true when `ready()` held.
#[inline]
fn spin_until(ready: impl Fn() -> bool) -> bool {
    let start = Instant::now();
    let mut spins = 0u32;
    loop {
        if ready() {
            return true;
        }
        spins += 1;
        if spins.is_multiple_of(SPINS_PER_CLOCK) && start.elapsed() >= SPIN {
            return false;
        }
        std::hint::spin_loop();
    }
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| Pool {
        state: Mutex::new(State {
            job: None,
            wanted: 0,
            joined: 0,
            workers: 0,
            parked: 0,
        }),
        work: Condvar::new(),
        done: Condvar::new(),
        generation: AtomicU64::new(0),
        finished: AtomicUsize::new(0),
        caller_parked: AtomicBool::new(false),
        caller: Mutex::new(()),
    })
}

/// Locks, ignoring poisoning (the protected state stays consistent: panics are caught).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Pool {
    /// Runs `f` over `0..n_tasks` on the caller plus `helpers` workers.
    fn run(&'static self, helpers: usize, n_tasks: usize, f: &(dyn Fn(usize) + Sync)) {
        let _caller = lock(&self.caller);
        let job = Job {
            f,
            n_tasks,
            next: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
        };
        let (helpers, wake) = {
            let mut st = lock(&self.state);
            while st.workers < helpers {
                let spawned = std::thread::Builder::new()
                    .name(format!("nas-worker-{}", st.workers))
                    .spawn(move || self.worker());
                if spawned.is_err() {
                    break;
                }
                st.workers += 1;
            }
            let helpers = helpers.min(st.workers);
            // SAFETY: (lifetime erasure) the caller does not return before every worker that
            // joined this job has finished with it (see the wait below).
            let ptr = JobPtr((&job as *const Job<'_>).cast::<Job<'static>>());
            st.job = Some(ptr);
            st.wanted = helpers;
            st.joined = 0;
            self.finished.store(0, Ordering::Relaxed);
            self.generation.fetch_add(1, Ordering::Release);
            // Spinning workers see the new generation; parked ones need the condition
            // variable (they count themselves in `parked` under this lock before waiting).
            (helpers, st.parked > 0)
        };
        if wake {
            self.work.notify_all();
        }
        job.work();
        // Wait for the helpers: spin briefly on the counter, then park.
        let all_done = || self.finished.load(Ordering::SeqCst) == helpers;
        if !spin_until(all_done) {
            let mut st = lock(&self.state);
            self.caller_parked.store(true, Ordering::SeqCst);
            while !all_done() {
                st = self.done.wait(st).unwrap_or_else(|e| e.into_inner());
            }
            self.caller_parked.store(false, Ordering::SeqCst);
        }
        lock(&self.state).job = None;
        if job.panicked.load(Ordering::Relaxed) {
            panic!("a parallel_for task panicked");
        }
    }

    fn worker(&'static self) {
        let mut seen = 0u64;
        loop {
            // Spin briefly for the next job, then park.
            spin_until(|| self.generation.load(Ordering::Acquire) != seen);
            let (job, wanted) = {
                let mut st = lock(&self.state);
                loop {
                    let g = self.generation.load(Ordering::Acquire);
                    if g != seen {
                        seen = g;
                        if st.job.is_some() && st.joined < st.wanted {
                            st.joined += 1;
                            break (st.job, st.wanted);
                        }
                    }
                    st.parked += 1;
                    st = self.work.wait(st).unwrap_or_else(|e| e.into_inner());
                    st.parked -= 1;
                }
            };
            if let Some(JobPtr(ptr)) = job {
                // SAFETY: the caller keeps the job alive until `finished` reaches `wanted`,
                // which needs this worker's increment below.
                unsafe { (*ptr).work() };
            }
            // The last helper wakes the caller if it has parked. With sequentially consistent
            // order, either the caller's check of `finished` (made under the lock, before it
            // waits) sees this increment, or this load sees `caller_parked` and the lock below
            // waits until the caller is inside `wait`.
            if self.finished.fetch_add(1, Ordering::SeqCst) + 1 == wanted
                && self.caller_parked.load(Ordering::SeqCst)
            {
                let _st = lock(&self.state);
                self.done.notify_one();
            }
        }
    }
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
    fn split_range_covers_in_order() {
        for n in [0, 1, 5, 7, 64] {
            for parts in [1, 2, 3, 8] {
                let mut next = 0;
                for i in 0..parts {
                    let r = split_range(n, parts, i);
                    assert_eq!(r.start, next, "n {n} parts {parts} i {i}");
                    assert!(r.len() <= n / parts + 1 && r.len() >= n / parts);
                    next = r.end;
                }
                assert_eq!(next, n);
            }
        }
    }

    #[test]
    fn chunks_mut_hands_each_task_its_piece() {
        for threads in [1, 2, 3] {
            for (len, chunk) in [(0, 4), (1, 4), (8, 4), (10, 4), (10, 1), (5, 16)] {
                let mut v = vec![0usize; len];
                chunks_mut_threads(threads, &mut v, chunk, |i, piece| {
                    assert_eq!(piece.len(), chunk.min(len - i * chunk));
                    for (j, x) in piece.iter_mut().enumerate() {
                        *x += i * chunk + j + 1;
                    }
                });
                let want: Vec<usize> = (1..=len).collect();
                assert_eq!(v, want, "threads {threads} len {len} chunk {chunk}");
            }
        }
    }

    #[test]
    fn split_mut_hands_each_task_whole_units() {
        for threads in [1, 2, 3] {
            for (units, unit, parts) in [(0, 3, 2), (5, 3, 2), (7, 2, 3), (2, 4, 4), (4, 1, 1)] {
                let mut v = vec![0usize; units * unit];
                split_mut_threads(threads, &mut v, unit, parts, |i, r, piece| {
                    assert_eq!(r, split_range(units, parts, i));
                    assert_eq!(piece.len(), r.len() * unit);
                    for (j, x) in piece.iter_mut().enumerate() {
                        *x += r.start * unit + j + 1;
                    }
                });
                let want: Vec<usize> = (1..=units * unit).collect();
                assert_eq!(v, want, "threads {threads} units {units} parts {parts}");
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

    /// The parking paths: workers that parked between jobs are woken for the next one, and a
    /// caller that parked while its helper was still busy is woken when the helper finishes
    /// (each run longer than the spin). A lost wake-up hangs, so the calls run on a thread and
    /// the test fails when they have not all returned within a minute.
    #[test]
    fn parked_workers_and_callers_are_woken() {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for round in 0..20u64 {
                // idle longer than the spin: the worker parks
                std::thread::sleep(SPIN * 4);
                let total = AtomicU64::new(0);
                parallel_for_threads(2, 2, &|t| {
                    if t == 1 {
                        // the other thread waits longer than the spin: the caller or the
                        // worker parks, whichever took task 0
                        std::thread::sleep(SPIN * 4);
                    }
                    total.fetch_add(t as u64 + round, Ordering::Relaxed);
                });
                assert_eq!(total.load(Ordering::Relaxed), 1 + 2 * round);
            }
            tx.send(()).unwrap();
        });
        rx.recv_timeout(Duration::from_secs(60))
            .expect("a parked thread was not woken");
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
