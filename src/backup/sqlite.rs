//! Backup and restore of a SQLite data directory (blocking: run on the blocking pool).

use std::path::Path;

use super::files::{self, Staging};
use super::{BackupError, BackupResult, FileEntry, Manifest, OnProgress, Progress};
use crate::store::backup::{
    SQLITE_CONTROL_FILE, SQLITE_TENANT_DIR, sqlite_backup, sqlite_check, sqlite_schema_version,
    sqlite_tenant_file, sqlite_tenant_ids,
};

/// Copies the control database, then every tenant file its copy lists, into `into`.
pub fn take(data: &Path, into: &Path, progress: OnProgress) -> BackupResult<Vec<FileEntry>> {
    let control = data.join(SQLITE_CONTROL_FILE);
    if !control.is_file() {
        return Err(BackupError::Refused(format!(
            "{} holds no Plinth data (no {SQLITE_CONTROL_FILE})",
            data.display()
        )));
    }
    std::fs::create_dir(into.join(SQLITE_TENANT_DIR)).map_err(BackupError::io(format!(
        "cannot create {}",
        into.join(SQLITE_TENANT_DIR).display()
    )))?;
    let mut entries = vec![copy_one(
        data,
        into,
        Path::new(SQLITE_CONTROL_FILE),
        None,
        &progress,
    )?];
    // The tenants of the copy, not of the live file: a tenant created since has no row in
    // this backup, so its file is left out with it.
    for id in sqlite_tenant_ids(&into.join(SQLITE_CONTROL_FILE))? {
        let rel = sqlite_tenant_file(id);
        if !data.join(&rel).is_file() {
            // Deleted since the control database was copied (its file goes with it), or
            // never used: the restored server makes an empty file on first use.
            tracing::warn!(tenant = id, file = %rel.display(), "tenant file absent; not in the backup");
            continue;
        }
        entries.push(copy_one(data, into, &rel, Some(id), &progress)?);
    }
    Ok(entries)
}

fn copy_one(
    data: &Path,
    into: &Path,
    rel: &Path,
    tenant_id: Option<i64>,
    progress: &OnProgress,
) -> BackupResult<FileEntry> {
    let dst = into.join(rel);
    sqlite_backup(&data.join(rel), &dst)?;
    let schema_version = sqlite_schema_version(&dst)?;
    files::sync_file(&dst)?;
    let (bytes, sha256) = files::digest(&dst)?;
    let path = rel.to_string_lossy().replace('\\', "/");
    progress(Progress::File { path: &path, bytes });
    Ok(FileEntry {
        path,
        bytes,
        sha256,
        schema_version,
        tenant_id,
    })
}

/// Restores into the directory `target`: every file checked against the manifest, then
/// copied (and checked again) into a staging folder inside `target`, then moved into
/// place. A damaged backup stops before the first copy; a target that holds anything is
/// refused unless `force`, which removes what it held only once the copies are checked.
pub fn restore(
    from: &Path,
    manifest: &Manifest,
    target: &Path,
    force: bool,
    progress: &OnProgress,
) -> BackupResult<()> {
    for f in &manifest.files {
        files::check(from, f)?;
    }
    let held = match std::fs::read_dir(target) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .collect::<Vec<_>>(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            return Err(BackupError::Refused(format!(
                "cannot use {} as the target: {e}",
                target.display()
            )));
        }
    };
    if !held.is_empty() && !force {
        return Err(BackupError::Refused(format!(
            "the target {} is not empty: restore into a new or empty directory, or pass \
             --force to replace what it holds (stop any server using it first)",
            target.display()
        )));
    }
    std::fs::create_dir_all(target).map_err(BackupError::io(format!(
        "cannot create {}",
        target.display()
    )))?;
    // Inside the target, not beside it: the target may be a mount point (a container's
    // volume), which cannot be renamed, and a rename within it stays on one file system.
    let staging = Staging::create(target.join(format!(".restoring-{}", std::process::id())))?;
    std::fs::create_dir(staging.path().join(SQLITE_TENANT_DIR)).map_err(BackupError::io(
        format!("cannot create {}", staging.path().display()),
    ))?;
    for f in &manifest.files {
        let dst = staging.path().join(&f.path);
        files::copy_checked(from, f, &dst)?;
        if let Some(problem) = sqlite_check(&dst) {
            return Err(BackupError::Damaged {
                path: from.to_path_buf(),
                why: format!("{} is not a sound SQLite database: {problem}", f.path),
            });
        }
        progress(Progress::File {
            path: &f.path,
            bytes: f.bytes,
        });
    }
    files::sync_dir(&staging.path().join(SQLITE_TENANT_DIR))?;
    files::sync_dir(staging.path())?;
    for old in held {
        let removed = if old.is_dir() {
            std::fs::remove_dir_all(&old)
        } else {
            std::fs::remove_file(&old)
        };
        removed.map_err(BackupError::io(format!("cannot remove {}", old.display())))?;
    }
    // Tenant files first, the control database last: a server started on a directory
    // the restore stopped half way through finds no control database and no tenants.
    for name in [SQLITE_TENANT_DIR, SQLITE_CONTROL_FILE] {
        std::fs::rename(staging.path().join(name), target.join(name)).map_err(BackupError::io(
            format!("cannot move {name} into {}", target.display()),
        ))?;
    }
    files::sync_dir(target)?;
    staging.finish();
    Ok(())
}
