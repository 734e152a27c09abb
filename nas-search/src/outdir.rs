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
use std::collections::{BTreeMap, HashSet};
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

/// A clean-up to run when the process is interrupted (SIGINT/SIGTERM) during a search.
pub type InterruptHook = Box<dyn Fn() + Send>;

static HOOKS: Mutex<Vec<(u64, InterruptHook)>> = Mutex::new(Vec::new());
static NEXT_HOOK: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Registers `hook` to run at an interrupt ([`run_interrupt_hooks`]); returns its id for
/// [`remove_interrupt_hook`]. A remote executor cancels its jobs this way.
pub fn add_interrupt_hook(hook: InterruptHook) -> u64 {
    let id = NEXT_HOOK.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    HOOKS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push((id, hook));
    id
}

/// Removes the hook `id` (nothing if it is gone).
pub fn remove_interrupt_hook(id: u64) {
    HOOKS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .retain(|(i, _)| *i != id);
}

/// Runs every registered hook: what a signal handler calls before the process exits.
pub fn run_interrupt_hooks() {
    for (_, hook) in HOOKS.lock().unwrap_or_else(|p| p.into_inner()).iter() {
        hook();
    }
}

/// The command line that continues a search writing into `dir`, given the one that started
/// it (`args`, program name first): the same arguments, with `--resume` and
/// `--out DIR` added when they are missing, quoted for a POSIX shell.
pub fn resume_command(args: Vec<String>, dir: &Path) -> String {
    let mut args = args;
    let has = |a: &[String], long: &str, short: Option<&str>| {
        a.iter().skip(1).any(|x| {
            x == long
                || x.starts_with(&format!("{long}="))
                || short.is_some_and(|s| x == s || (x.starts_with(s) && x.len() > s.len()))
        })
    };
    if !has(&args, "--out", Some("-o")) {
        args.push("--out".into());
        args.push(dir.display().to_string());
    }
    if !has(&args, "--resume", None) {
        args.push("--resume".into());
    }
    args.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" ")
}

fn quote(a: &str) -> String {
    let plain = !a.is_empty()
        && a.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_./:=@%+,-~".contains(c));
    if plain {
        a.to_string()
    } else {
        format!("'{}'", a.replace('\'', "'\\''"))
    }
}

/// The settings file of a search's output directory: the options it was started with, as
/// option name (`max_time`) -> command-line value.
pub const SETTINGS_FILE: &str = "settings.json";

/// Options a resume may change (a larger budget; the search refuses other worker counts;
/// the executor, which does not change results); a one-shot search may also be given more
/// `epochs`.
pub const RESUME_MAY_CHANGE: [&str; 11] = [
    "evaluations",
    "max_time",
    "workers",
    "executor",
    "slurm_partition",
    "slurm_time",
    "slurm_args",
    "ray_address",
    "ray_cpus",
    "ray_gpus",
    "ray_python",
];

/// Writes `settings` to `dir/settings.json` (atomically).
pub fn write_settings(dir: &Path, settings: &BTreeMap<String, String>) -> Result<()> {
    let text =
        serde_json::to_string_pretty(settings).map_err(|e| SearchError::Serde(e.to_string()))?;
    crate::builder::write_file_atomic(&dir.join(SETTINGS_FILE), (text + "\n").as_bytes())
}

/// For a resumed search in `dir`: the saved settings that were not `given` now (to be taken
/// from the file), after refusing a given one whose value (in `now`) differs from the saved
/// one, unless [`RESUME_MAY_CHANGE`] allows it. `None` without a settings file (a search of an
/// older version keeps the settings as given).
pub fn resume_settings(
    dir: &Path,
    now: &BTreeMap<String, String>,
    given: &HashSet<String>,
) -> Result<Option<BTreeMap<String, String>>> {
    let path = dir.join(SETTINGS_FILE);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(None);
    };
    let bad = |problem: String| SearchError::Input {
        path: path.clone(),
        problem,
    };
    let saved: BTreeMap<String, String> =
        serde_json::from_str(&text).map_err(|e| bad(format!("not a settings file: {e}")))?;
    let oneshot = saved
        .get("strategy")
        .is_some_and(|s| crate::oneshot::Method::parse(s.split(':').next().unwrap_or("")).is_ok());
    let may_change = |id: &str| RESUME_MAY_CHANGE.contains(&id) || (oneshot && id == "epochs");
    let flag = |id: &str| format!("--{}", id.replace('_', "-"));
    let mut taken = BTreeMap::new();
    for (id, value) in saved {
        if !given.contains(&id) {
            taken.insert(id, value);
        } else if !may_change(&id) && now.get(&id) != Some(&value) {
            return Err(bad(format!(
                "this search was started with {} {value}; --resume continues it with its own \
                 settings (drop {} {}, or start a new search with another --out)",
                flag(&id),
                flag(&id),
                now.get(&id).map_or("", String::as_str)
            )));
        }
    }
    Ok(Some(taken))
}

#[cfg(test)]
mod resume_command_tests {
    use super::*;

    #[test]
    fn resume_command_adds_out_and_resume_and_quotes() {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            resume_command(v(&["nas", "search", "-n", "8"]), Path::new("runs/s 1")),
            "nas search -n 8 --out 'runs/s 1' --resume"
        );
        assert_eq!(
            resume_command(
                v(&["nas", "search", "--out=r", "--resume", "--strategy", "a'b"]),
                Path::new("r")
            ),
            "nas search --out=r --resume --strategy 'a'\\''b'"
        );
        assert_eq!(
            resume_command(v(&["nas", "search", "-or1"]), Path::new("r1")),
            "nas search -or1 --resume"
        );
    }
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
