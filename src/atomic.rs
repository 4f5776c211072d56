//! Atomic file writes: a temporary file in the target's folder, renamed into place, so a reader (or
//! a run killed half-way) sees the old file or the new one, never a mix.
use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};

/// Writes `bytes` to `path` atomically and durably (flushed to disk before the rename), creating
/// the folder if needed. For files that matter: bundles, split manifests, list files, reports.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write(path, bytes, true)
}

/// Like [`write_atomic`] but without flushing to disk: for regenerable data (cache entries), where
/// a damaged file after a power cut is detected by its checksum and recomputed.
pub fn write_atomic_fast(path: &Path, bytes: &[u8]) -> Result<()> {
    write(path, bytes, false)
}

fn write(path: &Path, bytes: &[u8], durable: bool) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(|e| Error::io("cannot create folder", dir, e))?;
    let mut tmp =
        tempfile::NamedTempFile::new_in(dir).map_err(|e| Error::io("cannot write in", dir, e))?;
    tmp.write_all(bytes)
        .map_err(|e| Error::io("cannot write", path, e))?;
    if durable {
        tmp.as_file()
            .sync_all()
            .map_err(|e| Error::io("cannot write", path, e))?;
    }
    tmp.persist(path)
        .map_err(|e| Error::io("cannot write", path, e.error))?;
    Ok(())
}
