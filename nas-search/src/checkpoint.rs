//! Checkpoint files: atomic writes and verified reads.
//!
//! Format: one ASCII header line `NASRS-SEARCH-CHECKPOINT v1 <len> <fnv64-hex>\n` followed by
//! exactly `<len>` bytes of JSON (the [`crate::search::SearchState`]); `<fnv64-hex>` is the
//! 64-bit FNV-1a hash of those bytes. A truncated or altered file is detected before any JSON is
//! parsed. Writes go to a temporary file in the same directory, which is flushed and fsynced,
//! then renamed over the old file (and the directory fsynced), so the old checkpoint is replaced
//! only by a complete new one.

use crate::error::{Result, SearchError};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The first word of a checkpoint file.
pub const MAGIC: &str = "NASRS-SEARCH-CHECKPOINT";
/// The format version written by this crate.
pub const VERSION: u32 = 1;

/// 64-bit FNV-1a.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn bad(path: &Path, problem: impl Into<String>) -> SearchError {
    SearchError::Checkpoint {
        path: path.to_path_buf(),
        problem: problem.into(),
    }
}

/// A temporary file name beside the final `name` in `dir`, unique to this write: the process id,
/// the time in nanoseconds and a per-process counter, so that two processes (two `nas eval`
/// runs of one trial on different nodes sharing the directory, say) or two threads never write
/// the same temporary file. Leftovers of a kill start with `.{name}.tmp-`.
pub(crate) fn temp_path(dir: &Path, name: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    dir.join(format!(
        ".{name}.tmp-{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Writes `payload` as a checkpoint at `path` atomically (temporary file, fsync, rename).
pub fn write_atomic(path: &Path, payload: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| bad(path, "checkpoint path has no file name"))?
        .to_string_lossy()
        .into_owned();
    let tmp = temp_path(&dir, &name);
    let header = format!(
        "{MAGIC} v{VERSION} {} {:016x}\n",
        payload.len(),
        fnv1a64(payload)
    );
    let result = (|| -> std::io::Result<()> {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(header.as_bytes())?;
        f.write_all(payload)?;
        f.flush()?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        // Make the rename itself durable.
        if let Ok(d) = fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(SearchError::io(path, e));
    }
    Ok(())
}

/// Reads and verifies a checkpoint, returning its JSON payload.
pub fn read_verified(path: &Path) -> Result<Vec<u8>> {
    let bytes = fs::read(path).map_err(|e| SearchError::io(path, e))?;
    verify_bytes(path, &bytes)
}

/// Verifies the bytes of a checkpoint read elsewhere (a data-parallel run's rank 0 reads the
/// file and broadcasts it), returning its payload; `path` names it in errors.
pub fn verify_bytes(path: &Path, bytes: &[u8]) -> Result<Vec<u8>> {
    let nl = bytes.iter().position(|&b| b == b'\n').ok_or_else(|| {
        bad(
            path,
            "no header line (empty, truncated or not a checkpoint)",
        )
    })?;
    let header = std::str::from_utf8(&bytes[..nl])
        .map_err(|_| bad(path, "header is not text: not a nas-rs checkpoint"))?;
    let parts: Vec<&str> = header.split(' ').collect();
    if parts.len() != 4 || parts[0] != MAGIC {
        return Err(bad(
            path,
            format!("not a nas-rs search checkpoint (header {header:?})"),
        ));
    }
    if parts[1] != format!("v{VERSION}") {
        return Err(bad(
            path,
            format!(
                "format version {} is not supported (this build reads v{VERSION})",
                parts[1]
            ),
        ));
    }
    let len: usize = parts[2]
        .parse()
        .map_err(|_| bad(path, format!("bad length {:?}", parts[2])))?;
    let hash = u64::from_str_radix(parts[3], 16)
        .map_err(|_| bad(path, format!("bad checksum field {:?}", parts[3])))?;
    let payload = &bytes[nl + 1..];
    if payload.len() != len {
        return Err(bad(
            path,
            format!(
                "truncated or padded: header says {len} bytes of state, file has {}",
                payload.len()
            ),
        ));
    }
    if fnv1a64(payload) != hash {
        return Err(bad(path, "checksum mismatch: the file is corrupt"));
    }
    Ok(payload.to_vec())
}
