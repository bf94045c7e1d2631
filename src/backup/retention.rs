//! The complete backups in a directory, and the removal of all but the newest N.

use std::path::{Path, PathBuf};

use super::manifest::{MANIFEST_FILE, is_stamp};
use super::{BackupError, BackupResult};

/// The complete backups under `dir`, oldest first: folders named like a timestamp that
/// hold a manifest. Anything else there (partial backups, the operator's own files) is
/// neither listed nor ever removed.
pub fn list(dir: &Path) -> BackupResult<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir)
        .map_err(BackupError::io(format!("cannot list {}", dir.display())))?;
    let mut found: Vec<(String, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let path = e.path();
            (is_stamp(&name) && path.join(MANIFEST_FILE).is_file()).then_some((name, path))
        })
        .collect();
    found.sort();
    Ok(found.into_iter().map(|(_, p)| p).collect())
}

/// Removes all but the newest `keep` (at least 1) complete backups; the removed ones.
/// Called only after a new backup completed, so a failing schedule never eats the
/// backups it already has.
pub fn prune(dir: &Path, keep: usize) -> BackupResult<Vec<PathBuf>> {
    let all = list(dir)?;
    let excess = all.len().saturating_sub(keep.max(1));
    let mut removed = Vec::with_capacity(excess);
    for old in all.into_iter().take(excess) {
        std::fs::remove_dir_all(&old).map_err(BackupError::io(format!(
            "cannot remove the old backup {}",
            old.display()
        )))?;
        removed.push(old);
    }
    Ok(removed)
}
