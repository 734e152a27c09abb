//! The CPU backend's buffers: a per-thread free list.
//!
//! A training step allocates the same buffer sizes every step. Fresh allocations of large buffers
//! come from the OS as untouched pages, and touching them costs page faults (about 4 us per 4 KiB
//! on the development machine). [`Buf`] returns its vector to a per-thread free list keyed by
//! length when dropped, and [`Buf::zeros`] takes from that list first, so steady-state training
//! reuses memory instead of faulting in new pages.
//!
//! A freed vector serves any request between half its capacity and its capacity (the
//! smallest fit), since activations of different sizes come and go between the stages of a
//! network and between recomputed cells. How much the pool keeps follows what the program
//! needs: live and pooled floats together stay within the peak of simultaneously live buffers
//! seen on the thread plus a sixty-fourth (and 16 MiB). A request that no pooled vector fits and
//! that would break that bound resizes the nearest pooled vector (`realloc`: for a mapped block
//! a shrink unmaps its tail and a growth remaps it, so the pages that stay are not faulted in
//! again); a fresh allocation beyond the bound first frees the largest pooled buffers. The
//! slack is small because whatever the pool holds counts in the process's peak memory, and
//! what it frees really leaves the process: large blocks are mapped from the OS (glibc's
//! `M_MMAP_THRESHOLD` held at 128 KiB, see `large_buffers_from_the_os`), not left in the heap,
//! where fragmentation made the resident set grow step after step. (A DARTS search step that
//! peaks at 7.6 GB of activations gets them all back next step; with the former fixed 1 GiB
//! cap and exact-size reuse the rest were faulted in again every step.)

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::ops::{Deref, DerefMut};

/// Buffers shorter than this are not pooled (the allocator handles them well).
const MIN_POOLED: usize = 1024;
/// Live plus pooled floats may exceed the peak of live floats by a sixty-fourth of it
/// plus `FLOOR_FLOATS`.
const SLACK_DIV: usize = 64;
/// (16 MiB.)
const FLOOR_FLOATS: usize = 4 << 20;
/// Allocations of at least this many bytes are mapped from the OS (and unmapped when freed).
const MMAP_THRESHOLD: i32 = 128 << 10;

#[cfg(all(target_os = "linux", target_env = "gnu"))]
unsafe extern "C" {
    fn mallopt(param: i32, value: i32) -> i32;
}

/// Makes glibc's malloc map allocations of `MMAP_THRESHOLD` bytes and more from the OS and
/// give them back when freed (once per process). glibc starts with this threshold but raises
/// it (up to 32 MiB) whenever such a block is freed; then freed activations stay in the heap,
/// fragmented, still counted in the resident set, and a step that needs other sizes takes
/// more. Fixed, what the pool frees leaves the process. Elsewhere: nothing.
fn large_buffers_from_the_os() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        // M_MMAP_THRESHOLD
        const M_MMAP_THRESHOLD: i32 = -3;
        // SAFETY: mallopt only changes malloc's tunables; glibc serialises it with malloc.
        ONCE.call_once(|| unsafe {
            mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        });
    }
}

struct FreeList {
    enabled: bool,
    /// Free vectors by capacity.
    by_cap: BTreeMap<usize, Vec<Vec<f32>>>,
    /// Floats (capacity) held in `by_cap`.
    floats: usize,
    /// Floats in pool-sized buffers handed out on this thread and not yet dropped.
    live: usize,
    /// The largest `live` seen.
    peak: usize,
    /// Slack of `live + floats` over the peak (`FLOOR_FLOATS`; tests lower it).
    floor: usize,
    hits: u64,
    misses: u64,
    /// Misses served by resizing a pooled vector of another size.
    resized: u64,
    /// Pooled floats when `peak` last rose (diagnostic).
    floats_at_peak: usize,
}

impl Default for FreeList {
    fn default() -> Self {
        large_buffers_from_the_os();
        FreeList {
            enabled: true,
            by_cap: BTreeMap::new(),
            floats: 0,
            live: 0,
            peak: 0,
            floor: FLOOR_FLOATS,
            hits: 0,
            misses: 0,
            floats_at_peak: 0,
            resized: 0,
        }
    }
}

impl FreeList {
    /// The most `live + floats` may be.
    fn bound(&self) -> usize {
        self.peak + self.peak / SLACK_DIV + self.floor
    }

    /// Counts `len` more live floats; frees pooled buffers while live plus pooled floats
    /// exceed the bound.
    fn add_live(&mut self, len: usize) {
        self.live += len;
        let rose = self.live > self.peak;
        self.peak = self.peak.max(self.live);
        let bound = self.bound();
        // free the largest pooled buffers first
        while self.live + self.floats > bound {
            let Some(mut last) = self.by_cap.last_entry() else {
                break;
            };
            let cap = *last.key();
            if last.get_mut().pop().is_some() {
                self.floats -= cap;
            }
            if last.get().is_empty() {
                last.remove();
            }
        }
        if rose {
            self.floats_at_peak = self.floats;
        }
    }
}

impl FreeList {
    /// The pooled vector nearest to `len` floats outside `len..=2 len`: the smallest larger
    /// one, else the largest.
    fn take_nearest(&mut self, len: usize) -> Option<Vec<f32>> {
        let cap = match self.by_cap.range(2 * len + 1..).next() {
            Some((&cap, _)) => cap,
            None => *self.by_cap.last_key_value()?.0,
        };
        let list = self.by_cap.get_mut(&cap)?;
        let v = list.pop();
        if list.is_empty() {
            self.by_cap.remove(&cap);
        }
        v
    }
}

/// Counts a pool-sized buffer created outside [`Buf::pooled`] (it joins the pool when dropped).
fn track_new(len: usize) {
    if len >= MIN_POOLED {
        let _ = POOL.try_with(|p| p.borrow_mut().add_live(len));
    }
}

/// Uncounts a pool-sized buffer that leaves the pool's reach.
fn untrack(len: usize) {
    if len >= MIN_POOLED {
        let _ = POOL.try_with(|p| {
            let mut p = p.borrow_mut();
            p.live = p.live.saturating_sub(len);
        });
    }
}

thread_local! {
    static POOL: RefCell<FreeList> = RefCell::new(FreeList::default());
}

/// Turns this thread's pool on or off (on by default); turning it off frees what it holds.
/// For measuring what the pool saves.
pub fn set_pooling(enabled: bool) {
    POOL.with(|p| {
        let mut p = p.borrow_mut();
        p.enabled = enabled;
        if !enabled {
            p.by_cap.clear();
            p.floats = 0;
        }
    });
}

/// `len` zeros in a fresh vector, or `None` when the allocation is refused (or the size
/// overflows).
fn fresh_zeros(len: usize) -> Option<Vec<f32>> {
    let mut v: Vec<f32> = Vec::new();
    v.try_reserve_exact(len).ok()?;
    v.resize(len, 0.0);
    Some(v)
}

/// A float32 buffer that goes back to this thread's free list when dropped.
#[derive(Debug, PartialEq)]
pub struct Buf(Vec<f32>);

impl Buf {
    /// A buffer of `len` zeros, reusing a pooled vector of the same length when there is one.
    pub fn zeros(len: usize) -> Buf {
        match Buf::pooled(len) {
            Some(mut v) => {
                v.fill(0.0);
                Buf(v)
            }
            None => {
                track_new(len);
                Buf(vec![0.0; len])
            }
        }
    }

    /// [`Buf::zeros`] that reports an allocation the system refuses instead of aborting the
    /// process (`None`): how the CPU backend turns a size that cannot fit into an error.
    pub fn try_zeros(len: usize) -> Option<Buf> {
        if let Some(mut v) = Buf::pooled(len) {
            v.fill(0.0);
            return Some(Buf(v));
        }
        let v = fresh_zeros(len)?;
        track_new(len);
        Some(Buf(v))
    }

    /// [`Buf::for_overwrite`] that reports a refused allocation (`None`) instead of aborting.
    pub fn try_for_overwrite(len: usize) -> Option<Buf> {
        if let Some(v) = Buf::pooled(len) {
            return Some(Buf(v));
        }
        let v = fresh_zeros(len)?;
        track_new(len);
        Some(Buf(v))
    }

    /// A buffer of `len` values for a caller that overwrites every one of them (a backend
    /// op's output): a pooled vector keeps what its last user left, which saves zeroing it.
    /// The values are always initialised floats, never undefined memory.
    pub fn for_overwrite(len: usize) -> Buf {
        Buf(Buf::pooled(len).unwrap_or_else(|| {
            track_new(len);
            vec![0.0; len]
        }))
    }

    /// A pooled vector resized to `len` floats, if the pool has one whose capacity is between
    /// `len` and `2 len` (the smallest such): buffers serve other sizes too, as activations of
    /// different stages (and recomputed cells) come and go.
    fn pooled(len: usize) -> Option<Vec<f32>> {
        if len >= MIN_POOLED {
            let reused = POOL
                .try_with(|p| {
                    let mut p = p.borrow_mut();
                    if !p.enabled {
                        return None;
                    }
                    let v = match p.by_cap.range_mut(len..=2 * len).next() {
                        Some((&cap, list)) => {
                            let v = list.pop();
                            if list.is_empty() {
                                p.by_cap.remove(&cap);
                            }
                            v
                        }
                        None => None,
                    };
                    if v.is_none() && p.live + p.floats + len > p.bound() {
                        // A fresh buffer would push pooled ones out: resize the nearest instead
                        // (the smallest larger one, else the largest), so its pages that
                        // stay are not faulted in again.
                        if let Some(mut v) = p.take_nearest(len) {
                            p.floats -= v.capacity();
                            if v.capacity() > len {
                                v.truncate(len);
                                v.shrink_to(len);
                            } else {
                                v.reserve_exact(len - v.len());
                            }
                            v.resize(len, 0.0);
                            p.resized += 1;
                            p.add_live(v.capacity());
                            return Some(v);
                        }
                    }
                    match v {
                        Some(mut v) => {
                            let cap = v.capacity();
                            p.floats -= cap;
                            p.live += cap;
                            if p.live > p.peak {
                                p.peak = p.live;
                                p.floats_at_peak = p.floats;
                            }
                            p.hits += 1;
                            if v.len() >= len {
                                v.truncate(len);
                            } else {
                                v.resize(len, 0.0);
                            }
                            Some(v)
                        }
                        None => {
                            p.misses += 1;
                            None
                        }
                    }
                })
                .ok()
                .flatten();
            return reused;
        }
        None
    }

    /// A buffer holding `len` copies of `value`.
    pub fn full(len: usize, value: f32) -> Buf {
        let mut b = Buf::zeros(len);
        if value != 0.0 {
            b.fill(value);
        }
        b
    }

    /// A pooled copy of `src`.
    pub fn copy_from(src: &[f32]) -> Buf {
        let mut b = Buf::for_overwrite(src.len());
        b.copy_from_slice(src);
        b
    }

    /// Wraps an existing vector (it joins the pool when dropped).
    pub fn from_vec(v: Vec<f32>) -> Buf {
        track_new(v.capacity());
        Buf(v)
    }

    /// The underlying vector (the CPU backend's buffer type).
    pub fn as_vec(&self) -> &Vec<f32> {
        &self.0
    }

    /// The underlying vector, mutably (do not change its length or capacity).
    pub fn as_vec_mut(&mut self) -> &mut Vec<f32> {
        &mut self.0
    }

    /// The vector, taken out of the pool's reach.
    pub fn into_vec(mut self) -> Vec<f32> {
        let v = std::mem::take(&mut self.0);
        untrack(v.capacity());
        v
    }
}

impl Clone for Buf {
    fn clone(&self) -> Buf {
        Buf::copy_from(&self.0)
    }
}

impl Deref for Buf {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.0
    }
}

impl DerefMut for Buf {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.0
    }
}

impl std::borrow::Borrow<[f32]> for Buf {
    fn borrow(&self) -> &[f32] {
        &self.0
    }
}

impl std::borrow::BorrowMut<[f32]> for Buf {
    fn borrow_mut(&mut self) -> &mut [f32] {
        &mut self.0
    }
}

impl<'a> IntoIterator for &'a Buf {
    type Item = &'a f32;
    type IntoIter = std::slice::Iter<'a, f32>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl Drop for Buf {
    fn drop(&mut self) {
        let cap = self.0.capacity();
        if cap < MIN_POOLED {
            return;
        }
        let v = std::mem::take(&mut self.0);
        let _ = POOL.try_with(|p| {
            let mut p = p.borrow_mut();
            p.live = p.live.saturating_sub(cap);
            if !p.enabled || p.live + p.floats + cap > p.bound() {
                return;
            }
            p.by_cap.entry(cap).or_default().push(v);
            p.floats += cap;
        });
    }
}

/// Statistics of this thread's buffer pool: `(hits, misses, floats currently pooled)`.
/// A hit is a pooled allocation that reused a freed buffer.
pub fn pool_stats() -> (u64, u64, usize) {
    POOL.with(|p| {
        let p = p.borrow();
        (p.hits, p.misses, p.floats)
    })
}

/// The most floats (capacity) of pool-sized buffers live at once on this thread so far: the
/// activations and gradients a step holds at its peak, without the pool's free buffers (what
/// the pool adds on top is at most a sixty-fourth of this plus 16 MiB).
pub fn pool_peak_live() -> usize {
    POOL.with(|p| p.borrow().peak)
}

/// Misses of this thread's pool served by resizing a pooled buffer of another size.
pub fn pool_resized() -> u64 {
    POOL.with(|p| p.borrow().resized)
}

/// Floats this thread's pool held when the live peak was last raised: what the pool added to
/// the process's memory at its peak (at most the slack over the peak).
pub fn pool_floats_at_peak() -> usize {
    POOL.with(|p| p.borrow().floats_at_peak)
}

/// Overwrites every buffer kept in this thread's pool with `value`. For tests: an op that
/// took a buffer with [`Buf::for_overwrite`] and read it before writing every value would
/// give a different (non-finite, with `f32::NAN`) result afterwards.
pub fn fill_pooled(value: f32) {
    POOL.with(|p| {
        for list in p.borrow_mut().by_cap.values_mut() {
            for v in list {
                v.fill(value);
            }
        }
    });
}

/// Frees every buffer kept in this thread's pool.
pub fn clear_pool() {
    POOL.with(|p| {
        let mut p = p.borrow_mut();
        p.by_cap.clear();
        p.floats = 0;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropped_buffers_are_reused_and_zeroed() {
        clear_pool();
        let (h0, _, _) = pool_stats();
        let mut a = Buf::zeros(5000);
        a[3] = 7.0;
        let ptr = a.as_ptr();
        drop(a);
        assert_eq!(pool_stats().2, 5000);
        let b = Buf::zeros(5000);
        assert_eq!(b.as_ptr(), ptr, "same allocation reused");
        assert!(b.iter().all(|&x| x == 0.0), "reused buffer is zeroed");
        assert_eq!(pool_stats().0, h0 + 1);
        let small = Buf::zeros(10);
        drop(small);
        assert_eq!(pool_stats().2, 0, "small buffers are not pooled");
    }

    #[test]
    fn a_pooled_buffer_serves_sizes_down_to_half_its_capacity() {
        clear_pool();
        let a = Buf::zeros(4000);
        let ptr = a.as_ptr();
        drop(a);
        let small = Buf::zeros(1500);
        assert_ne!(small.as_ptr(), ptr, "less than half: not reused");
        let b = Buf::zeros(3000);
        assert_eq!((b.as_ptr(), b.len()), (ptr, 3000), "reused, resized");
        assert!(b.iter().all(|&v| v == 0.0));
        drop(b);
        let c = Buf::for_overwrite(4000);
        assert_eq!(
            (c.as_ptr(), c.len()),
            (ptr, 4000),
            "grows back within its capacity"
        );
        drop((small, c));
        clear_pool();
    }

    #[test]
    fn pool_keeps_up_to_the_live_peak_and_frees_other_sizes_at_a_new_peak() {
        POOL.with(|p| {
            *p.borrow_mut() = FreeList {
                floor: 0,
                ..FreeList::default()
            }
        });
        let a: Vec<Buf> = (0..10).map(|_| Buf::zeros(2000)).collect();
        drop(a);
        assert_eq!(
            pool_stats().2,
            20_000,
            "everything up to the peak comes back"
        );
        // other sizes: pooled buffers are resized or freed so that live + pooled stays within
        // the peak plus a sixty-fourth
        let b: Vec<Buf> = (0..5).map(|_| Buf::for_overwrite(3000)).collect();
        let (live, pooled) = POOL.with(|p| (p.borrow().live, p.borrow().floats));
        assert_eq!(live, 15_000);
        assert!(live + pooled <= 21_250, "live {live} + pooled {pooled}");
        assert!(pooled >= 4000, "only what had to go was freed: {pooled}");
        drop(b);
        let c: Vec<Buf> = (0..8).map(|_| Buf::for_overwrite(3000)).collect();
        let (live, pooled, peak) =
            POOL.with(|p| (p.borrow().live, p.borrow().floats, p.borrow().peak));
        assert_eq!((live, peak), (24_000, 24_000));
        assert_eq!(
            pooled, 0,
            "a new peak holds no pooled buffers of other sizes"
        );
        drop(c);
        POOL.with(|p| *p.borrow_mut() = FreeList::default());
    }

    #[test]
    fn a_request_no_pooled_buffer_fits_resizes_the_nearest_when_a_fresh_one_would_break_the_bound()
    {
        POOL.with(|p| {
            *p.borrow_mut() = FreeList {
                floor: 0,
                ..FreeList::default()
            }
        });
        let state = || POOL.with(|p| (p.borrow().live, p.borrow().floats, p.borrow().resized));
        let a = [Buf::zeros(10_000), Buf::zeros(2_000)];
        drop(a);
        assert_eq!(state(), (0, 12_000, 0));
        // 3000: nothing pooled in 3000..=6000, and a fresh buffer would take live + pooled to
        // 15,000, over the bound (12,000 + 187): the nearest larger vector shrinks
        let mut b = Buf::for_overwrite(3000);
        assert_eq!(state(), (3000, 2000, 1));
        assert_eq!((b.len(), b.as_vec().capacity()), (3000, 3000));
        b[2999] = 1.0;
        // 8000 (3000 + 2000 + 8000 > the bound): only the 2000 one is left: it grows, zeroed
        let c = Buf::zeros(8000);
        assert_eq!(state(), (11_000, 0, 2));
        assert_eq!(c.as_vec().capacity(), 8000);
        assert!(c.iter().all(|&v| v == 0.0));
        drop((b, c));
        assert_eq!(state(), (0, 11_000, 2));
        // within the bound a request nothing fits takes a fresh buffer, the pool untouched
        let d = Buf::zeros(1100);
        assert_eq!(state(), (1100, 11_000, 2));
        drop(d);
        POOL.with(|p| *p.borrow_mut() = FreeList::default());
    }
}
