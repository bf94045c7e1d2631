//! Files of a backup: checksums, checked copies, and the staging folder that is either
//! renamed into place whole or removed.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{BackupError, BackupResult, FileEntry};

const CHUNK: usize = 256 * 1024;

/// Flushes a file that another writer (SQLite, pg_dump) made to disk.
pub fn sync_file(path: &Path) -> BackupResult<()> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(BackupError::io(format!("cannot sync {}", path.display())))
}

/// Size and SHA-256 (hex) of a file.
pub fn digest(path: &Path) -> BackupResult<(u64, String)> {
    let mut file =
        File::open(path).map_err(BackupError::io(format!("cannot read {}", path.display())))?;
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut bytes = 0u64;
    loop {
        let n = file
            .read(&mut buf)
            .map_err(BackupError::io(format!("cannot read {}", path.display())))?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        bytes += n as u64;
    }
    Ok((bytes, hex::encode(hash.finalize())))
}

/// Checks one file of the backup at `from` against its manifest entry.
pub fn check(from: &Path, entry: &FileEntry) -> BackupResult<()> {
    let path = from.join(&entry.path);
    let damaged = |why: String| BackupError::Damaged {
        path: from.to_path_buf(),
        why,
    };
    let len = match std::fs::metadata(&path) {
        Ok(m) => m.len(),
        Err(e) => return Err(damaged(format!("{}: {e}", entry.path))),
    };
    if len != entry.bytes {
        return Err(damaged(format!(
            "{} has {len} bytes, the manifest says {}",
            entry.path, entry.bytes
        )));
    }
    let (_, sha) = digest(&path)?;
    if sha != entry.sha256 {
        return Err(damaged(format!(
            "the checksum of {} does not match the manifest",
            entry.path
        )));
    }
    Ok(())
}

/// Copies one file of a backup to `dst`, checking size and checksum of what was read
/// (the backup may change between the check before and the copy).
pub fn copy_checked(from: &Path, entry: &FileEntry, dst: &Path) -> BackupResult<()> {
    let src = from.join(&entry.path);
    let damaged = |why: String| BackupError::Damaged {
        path: from.to_path_buf(),
        why,
    };
    let mut input = File::open(&src).map_err(|e| damaged(format!("{}: {e}", entry.path)))?;
    let mut output =
        File::create(dst).map_err(BackupError::io(format!("cannot create {}", dst.display())))?;
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut bytes = 0u64;
    loop {
        let n = input
            .read(&mut buf)
            .map_err(BackupError::io(format!("cannot read {}", src.display())))?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        output
            .write_all(&buf[..n])
            .map_err(BackupError::io(format!("cannot write {}", dst.display())))?;
        bytes += n as u64;
    }
    output
        .sync_all()
        .map_err(BackupError::io(format!("cannot sync {}", dst.display())))?;
    if bytes != entry.bytes || hex::encode(hash.finalize()) != entry.sha256 {
        return Err(damaged(format!(
            "{} changed while it was restored",
            entry.path
        )));
    }
    Ok(())
}

/// Makes a directory's entries (a rename, a new file) durable.
pub fn sync_dir(dir: &Path) -> BackupResult<()> {
    #[cfg(unix)]
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(BackupError::io(format!("cannot sync {}", dir.display())))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Takes an exclusive lock on a folder a backup is filling, held as long as the returned
/// handle: `retention::clear_partials` leaves a locked folder alone. (flock(2) on the
/// folder itself: it moves with the folder's rename, and ends with the process.)
#[cfg(unix)]
pub fn lock_dir(path: &Path) -> BackupResult<Option<File>> {
    let what = format!("cannot lock {}", path.display());
    let dir = File::open(path).map_err(BackupError::io(what.clone()))?;
    match dir.try_lock() {
        Ok(()) => Ok(Some(dir)),
        Err(std::fs::TryLockError::WouldBlock) => Err(BackupError::Refused(format!(
            "{} is being written by another backup",
            path.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(BackupError::io(what)(e)),
    }
}

#[cfg(not(unix))]
pub fn lock_dir(_: &Path) -> BackupResult<Option<File>> {
    Ok(None)
}

/// Whether no one holds the folder's lock (it is taken and released at once).
#[cfg(unix)]
pub fn unlocked(path: &Path) -> std::io::Result<bool> {
    match File::open(path)?.try_lock() {
        Ok(()) => Ok(true),
        Err(std::fs::TryLockError::WouldBlock) => Ok(false),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

/// Without flock a partial folder cannot be told from one in progress: none is removed.
#[cfg(not(unix))]
pub fn unlocked(_: &Path) -> std::io::Result<bool> {
    Ok(false)
}

/// A folder being filled: removed when dropped unless committed (an error, a panic or a
/// cancelled task leaves nothing half-written under a real name).
pub struct Staging {
    path: PathBuf,
    keep: bool,
}

impl Staging {
    pub fn create(path: PathBuf) -> BackupResult<Staging> {
        std::fs::create_dir(&path)
            .map_err(BackupError::io(format!("cannot create {}", path.display())))?;
        Ok(Staging { path, keep: false })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Syncs the folder and renames it to `name`.
    pub fn commit_as(mut self, name: &Path) -> BackupResult<()> {
        sync_dir(&self.path)?;
        std::fs::rename(&self.path, name).map_err(BackupError::io(format!(
            "cannot rename {} to {}",
            self.path.display(),
            name.display()
        )))?;
        self.keep = true;
        Ok(())
    }

    /// The staged content was moved elsewhere entry by entry; remove the (empty) folder.
    pub fn finish(mut self) {
        self.keep = true;
        if let Err(e) = std::fs::remove_dir_all(&self.path) {
            tracing::warn!(path = %self.path.display(), error = %e, "could not remove a staging folder");
        }
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}
