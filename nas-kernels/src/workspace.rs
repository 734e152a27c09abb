//! Reusable scratch buffers for the CPU kernels (im2col columns, padded images, per-thread
//! partial sums).
//!
//! [`crate::threads::parallel_for`] may run tasks on fresh threads, so a thread-local cache
//! would not survive between calls; instead a small process-wide pool hands out buffers and
//! takes them back, so hot paths stop allocating after the first call.

use std::sync::Mutex;

static POOL: Mutex<Vec<Vec<f32>>> = Mutex::new(Vec::new());

/// Keep at most this many idle buffers.
const MAX_POOLED: usize = 32;

/// Runs `f` with a scratch buffer of exactly `len` elements. The contents are unspecified
/// (whatever a previous user left), so callers must initialise what they read.
pub(crate) fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    let mut buf = {
        let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
        // best fit: the smallest pooled buffer with enough capacity, else the largest
        let pick = pool
            .iter()
            .enumerate()
            .filter(|(_, b)| b.capacity() >= len)
            .min_by_key(|(_, b)| b.capacity())
            .map(|(i, _)| i)
            .or_else(|| (0..pool.len()).max_by_key(|&i| pool[i].capacity()));
        pick.map(|i| pool.swap_remove(i)).unwrap_or_default()
    };
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
    let r = f(&mut buf[..len]);
    let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
    if pool.len() < MAX_POOLED {
        pool.push(buf);
    }
    r
}

#[cfg(test)]
mod tests {
    #[test]
    fn scratch_has_requested_length_and_is_reused() {
        let p1 = super::with_scratch(1000, |b| {
            assert_eq!(b.len(), 1000);
            b.fill(1.0);
            b.as_ptr() as usize
        });
        super::with_scratch(10, |b| assert_eq!(b.len(), 10));
        // nested use gets a different buffer
        super::with_scratch(1000, |a| {
            super::with_scratch(1000, |b| assert_ne!(a.as_ptr(), b.as_ptr()))
        });
        assert!(p1 != 0);
    }
}
