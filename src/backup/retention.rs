//! The complete backups in a directory, the removal of all but the newest N, and of
//! what interrupted backups left behind.

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

/// Removes the `.<stamp>.partial` folders under `dir` that no backup in progress holds:
/// what a backup killed mid-way (a crash, `kill -9`, a power cut) left. A backup holds a
/// lock on its folder until it is renamed whole (`files::lock_dir`), and the system
/// drops the lock with the process, so a folder still being written, by this process
/// or another (`plinth backup` beside a server's schedule), is left alone. Nothing not
/// named like a backup's partial folder is touched. The removed folders.
pub fn clear_partials(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for entry in entries.filter_map(Result::ok) {
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let partial = name
            .strip_prefix('.')
            .and_then(|n| n.strip_suffix(".partial"))
            .is_some_and(is_stamp);
        // Not through a symbolic link: only a real folder of our own naming.
        if !partial || !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let path = entry.path();
        match super::files::unlocked(&path) {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot check a partial backup");
                continue;
            }
        }
        match std::fs::remove_dir_all(&path) {
            Ok(()) => {
                tracing::warn!(path = %path.display(), "removed a partial backup left by an interrupted run");
                removed.push(path);
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove a partial backup");
            }
        }
    }
    removed
}
