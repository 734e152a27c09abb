//! Output directories: one search at a time, names that cannot collide, and a guard that
//! keeps a process from exiting in the middle of writing its state.
//!
//! * [`DirLock`]: an exclusive advisory lock (`flock`) on `DIR/.nas.lock`, held for the whole
//!   run and released by the operating system when the process ends, however it ends (a
//!   `kill -9` included). A second search on the same directory is refused with an error
//!   naming the holder's process id, which the holder writes into the lock file.
//! * [`create_unique_dir`]: creates `BASE/STEM` exclusively, or `BASE/STEM-2`, `STEM-3`, ...
//!   when it exists, so two searches started in the same second get two directories.
//! * [`persist_guard`]: every write of a search's state (checkpoint, journal, events) happens
//!   while this process-wide guard is held; a signal handler that takes it before exiting
//!   therefore never cuts a write in two.

use crate::error::{Result, SearchError};
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

/// Name of the lock file inside a locked directory.
pub const LOCK_FILE: &str = ".nas.lock";

/// An exclusive lock on an output directory, held until dropped (or the process ends).
#[derive(Debug)]
pub struct DirLock {
    dir: PathBuf,
    _file: File,
}

impl DirLock {
    /// Locks `dir` (which must exist), or fails with [`SearchError::Locked`] naming the process
    /// that holds it.
    pub fn acquire(dir: &Path) -> Result<DirLock> {
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| SearchError::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(SearchError::Locked {
                    dir: dir.to_path_buf(),
                    holder: holder_pid(&mut file),
                });
            }
            Err(TryLockError::Error(e)) => return Err(SearchError::io(&path, e)),
        }
        let pid = format!("{}\n", std::process::id());
        (|| -> std::io::Result<()> {
            file.set_len(0)?;
            file.seek(SeekFrom::Start(0))?;
            file.write_all(pid.as_bytes())
        })()
        .map_err(|e| SearchError::io(&path, e))?;
        Ok(DirLock {
            dir: dir.to_path_buf(),
            _file: file,
        })
    }

    /// The locked directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// The pid written by the lock's holder (it writes it right after locking: retried briefly).
fn holder_pid(file: &mut File) -> Option<u32> {
    for _ in 0..20 {
        let mut s = String::new();
        if file.seek(SeekFrom::Start(0)).is_ok()
            && file.read_to_string(&mut s).is_ok()
            && let Ok(pid) = s.trim().parse()
        {
            return Some(pid);
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    None
}

/// Creates `base/stem` (and `base` if needed) exclusively; when it exists, `base/stem-2`,
/// `base/stem-3`, ... Returns the directory created.
pub fn create_unique_dir(base: &Path, stem: &str) -> Result<PathBuf> {
    fs::create_dir_all(base).map_err(|e| SearchError::io(base, e))?;
    for i in 1u32.. {
        let name = if i == 1 {
            stem.to_string()
        } else {
            format!("{stem}-{i}")
        };
        let path = base.join(name);
        match fs::create_dir(&path) {
            Ok(()) => return Ok(path),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(SearchError::io(&path, e)),
        }
    }
    unreachable!("u32 suffixes exhausted")
}

static PERSIST: Mutex<()> = Mutex::new(());

/// Held while a search writes its state; see the [module docs](self).
pub fn persist_guard() -> MutexGuard<'static, ()> {
    PERSIST.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_dirs_get_suffixes() {
        let tmp = tempfile::tempdir().unwrap();
        let a = create_unique_dir(tmp.path(), "s").unwrap();
        let b = create_unique_dir(tmp.path(), "s").unwrap();
        let c = create_unique_dir(tmp.path(), "s").unwrap();
        assert_eq!(a, tmp.path().join("s"));
        assert_eq!(b, tmp.path().join("s-2"));
        assert_eq!(c, tmp.path().join("s-3"));
    }

    #[test]
    fn a_locked_directory_is_refused_until_released() {
        let tmp = tempfile::tempdir().unwrap();
        let lock = DirLock::acquire(tmp.path()).unwrap();
        // flock locks belong to the open file description: a second open conflicts even in
        // the same process.
        let e = DirLock::acquire(tmp.path()).unwrap_err().to_string();
        assert!(e.contains(&format!("pid {}", std::process::id())), "{e}");
        assert!(e.contains(&tmp.path().display().to_string()), "{e}");
        drop(lock);
        DirLock::acquire(tmp.path()).unwrap();
    }
}
