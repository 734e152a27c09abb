//! `n` ranks as threads of one process.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use super::{CommError, CommResult, Communicator};

/// What one rank hands to a collective.
#[derive(Debug, Clone)]
enum Payload {
    F32(Vec<f32>),
    F64(Vec<f64>),
    Bytes(Vec<u8>),
}

#[derive(Default)]
struct State {
    /// Rounds completed.
    generation: u64,
    /// This round's contributions, by rank.
    deposits: Vec<Option<Payload>>,
    arrived: usize,
    /// The finished round's result, until every rank has read it.
    result: Option<Result<Payload, String>>,
    readers_left: usize,
    /// A rank that left the group (dropped its handle or aborted).
    left: Option<usize>,
}

struct Shared {
    size: usize,
    state: Mutex<State>,
    cv: Condvar,
}

/// One rank of a group of threads ([`ThreadGroup::new`] makes the group; hand one to each
/// thread). Collectives block until every rank has joined; sums are taken in rank order, so
/// all ranks get the same bits. A rank whose handle is dropped (its thread returned, perhaps
/// with an error) makes every collective still waiting, and every later one, fail instead of
/// hanging.
pub struct ThreadGroup {
    rank: usize,
    shared: Arc<Shared>,
}

impl ThreadGroup {
    /// A group of `size` ranks (at least 1): the handles of ranks `0..size`.
    pub fn new(size: usize) -> Vec<ThreadGroup> {
        let size = size.max(1);
        let shared = Arc::new(Shared {
            size,
            state: Mutex::new(State {
                deposits: vec![None; size],
                ..State::default()
            }),
            cv: Condvar::new(),
        });
        (0..size)
            .map(|rank| ThreadGroup {
                rank,
                shared: shared.clone(),
            })
            .collect()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn gone(&self, st: &State) -> CommError {
        CommError(format!(
            "rank {} left the group; rank {} cannot finish its collective",
            st.left.unwrap_or(usize::MAX),
            self.rank
        ))
    }

    /// Deposits `mine`, waits for the round to complete, returns its result.
    fn round(
        &self,
        mine: Payload,
        combine: fn(&[Payload], usize) -> Result<Payload, String>,
    ) -> CommResult<Payload> {
        let sh = &self.shared;
        let mut st = self.lock();
        // the previous round's result is still being read
        while st.readers_left > 0 {
            if st.left.is_some() {
                return Err(self.gone(&st));
            }
            st = sh.cv.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        if st.left.is_some() {
            return Err(self.gone(&st));
        }
        st.deposits[self.rank] = Some(mine);
        st.arrived += 1;
        let generation = st.generation;
        if st.arrived == sh.size {
            let all: Vec<Payload> = st
                .deposits
                .iter_mut()
                .map(|d| d.take().expect("deposited"))
                .collect();
            st.result = Some(combine(&all, sh.size));
            st.arrived = 0;
            st.readers_left = sh.size;
            st.generation += 1;
            sh.cv.notify_all();
        } else {
            while st.generation == generation {
                if st.left.is_some() {
                    return Err(self.gone(&st));
                }
                st = sh.cv.wait(st).unwrap_or_else(|e| e.into_inner());
            }
        }
        let out = st.result.clone().expect("a finished round has a result");
        st.readers_left -= 1;
        if st.readers_left == 0 {
            st.result = None;
            sh.cv.notify_all();
        }
        out.map_err(CommError)
    }
}

/// Sums the ranks' equal-length buffers in rank order (so every rank gets the same bits);
/// `get` takes a rank's buffer out of its payload (`None`: another collective, named `kind`).
fn sum_in_rank_order<T: Copy + std::ops::AddAssign>(
    all: &[Payload],
    kind: &str,
    get: fn(&Payload) -> Option<&Vec<T>>,
) -> Result<Vec<T>, String> {
    let mut acc: Option<Vec<T>> = None;
    for (r, p) in all.iter().enumerate() {
        let Some(v) = get(p) else {
            return Err(format!(
                "rank {r} joined an {kind} sum with another collective"
            ));
        };
        match &mut acc {
            None => acc = Some(v.clone()),
            Some(a) if a.len() == v.len() => a.iter_mut().zip(v).for_each(|(s, &x)| *s += x),
            Some(a) => {
                return Err(format!(
                    "ranks summed buffers of different lengths ({} on rank 0, {} on rank {r})",
                    a.len(),
                    v.len()
                ));
            }
        }
    }
    Ok(acc.unwrap_or_default())
}

fn sum_f32(all: &[Payload], _size: usize) -> Result<Payload, String> {
    fn get(p: &Payload) -> Option<&Vec<f32>> {
        match p {
            Payload::F32(v) => Some(v),
            _ => None,
        }
    }
    sum_in_rank_order(all, "f32", get).map(Payload::F32)
}

fn sum_f64(all: &[Payload], _size: usize) -> Result<Payload, String> {
    fn get(p: &Payload) -> Option<&Vec<f64>> {
        match p {
            Payload::F64(v) => Some(v),
            _ => None,
        }
    }
    sum_in_rank_order(all, "f64", get).map(Payload::F64)
}

/// The root's bytes: the root's deposit is tagged by a leading 1, the others' by 0.
fn pick_root(all: &[Payload], _size: usize) -> Result<Payload, String> {
    let mut root = None;
    for (r, p) in all.iter().enumerate() {
        let Payload::Bytes(v) = p else {
            return Err(format!(
                "rank {r} joined a broadcast with another collective"
            ));
        };
        if v.first() == Some(&1) {
            if root.is_some() {
                return Err("two ranks broadcast as root".into());
            }
            root = Some(Payload::Bytes(v[1..].to_vec()));
        }
    }
    root.ok_or_else(|| "a broadcast without its root".into())
}

impl Communicator for ThreadGroup {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.shared.size
    }
    fn allreduce_sum_f32(&self, buf: &mut [f32]) -> CommResult<()> {
        match self.round(Payload::F32(buf.to_vec()), sum_f32)? {
            Payload::F32(v) => buf.copy_from_slice(&v),
            _ => unreachable!("sum_f32 returns f32"),
        }
        Ok(())
    }
    fn allreduce_sum_f64(&self, buf: &mut [f64]) -> CommResult<()> {
        match self.round(Payload::F64(buf.to_vec()), sum_f64)? {
            Payload::F64(v) => buf.copy_from_slice(&v),
            _ => unreachable!("sum_f64 returns f64"),
        }
        Ok(())
    }
    fn broadcast_bytes(&self, buf: &mut Vec<u8>, root: usize) -> CommResult<()> {
        if root >= self.size() {
            return Err(CommError(format!(
                "broadcast from rank {root} of {}",
                self.size()
            )));
        }
        let mut mine = vec![u8::from(self.rank == root)];
        if self.rank == root {
            mine.extend_from_slice(buf);
        }
        match self.round(Payload::Bytes(mine), pick_root)? {
            Payload::Bytes(v) => *buf = v,
            _ => unreachable!("pick_root returns bytes"),
        }
        Ok(())
    }
    fn abort(&self, _code: i32) {
        let mut st = self.lock();
        st.left.get_or_insert(self.rank);
        self.shared.cv.notify_all();
    }
    fn kind(&self) -> &'static str {
        "threads"
    }
}

impl Drop for ThreadGroup {
    fn drop(&mut self) {
        self.abort(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_and_broadcasts_agree_on_every_rank() {
        let group = ThreadGroup::new(3);
        let outs: Vec<(Vec<f32>, Vec<f64>, Vec<u8>)> = std::thread::scope(|s| {
            let hs: Vec<_> = group
                .iter()
                .map(|c| {
                    s.spawn(move || {
                        let r = c.rank() as f32;
                        let mut a = vec![r, 1.0, 0.1 * r];
                        let mut b = vec![r as f64 * 2.0];
                        let mut bytes = if c.rank() == 2 { vec![7, 8, 9] } else { vec![] };
                        for _ in 0..50 {
                            // many rounds back to back: no rank overtakes the others
                            let mut x = vec![1.0f32];
                            c.allreduce_sum_f32(&mut x).unwrap();
                            assert_eq!(x, [3.0]);
                        }
                        c.allreduce_sum_f32(&mut a).unwrap();
                        c.allreduce_sum_f64(&mut b).unwrap();
                        c.broadcast_bytes(&mut bytes, 2).unwrap();
                        (a, b, bytes)
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (a, b, bytes) in &outs {
            assert_eq!(a, &[0.0 + 1.0 + 2.0, 3.0, (0.0f32 + 0.1) + 0.2]);
            assert_eq!(b, &[6.0]);
            assert_eq!(bytes, &[7, 8, 9]);
        }
    }

    #[test]
    fn a_rank_that_leaves_fails_the_others_instead_of_hanging() {
        let mut group = ThreadGroup::new(2);
        let r1 = group.pop().unwrap();
        let r0 = group.pop().unwrap();
        let h = std::thread::spawn(move || {
            let mut x = vec![1.0f32];
            r0.allreduce_sum_f32(&mut x)
        });
        drop(r1);
        let e = h.join().unwrap().unwrap_err();
        assert!(e.to_string().contains("rank 1 left"), "{e}");
    }

    #[test]
    fn mismatched_lengths_are_an_error_on_every_rank() {
        let group = ThreadGroup::new(2);
        let errs: Vec<String> = std::thread::scope(|s| {
            let hs: Vec<_> = group
                .iter()
                .map(|c| {
                    s.spawn(move || {
                        let mut x = vec![0.0f32; 1 + c.rank()];
                        c.allreduce_sum_f32(&mut x).unwrap_err().to_string()
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for e in errs {
            assert!(e.contains("different lengths"), "{e}");
        }
    }
}
