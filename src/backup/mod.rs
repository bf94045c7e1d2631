//! Whole-server backups (`plinth backup`, `plinth restore`, `serve --backup-dir`).
//!
//! A backup is a folder `DIR/<UTC timestamp>/` holding copies and a `manifest.json`
//! (each file's size and SHA-256, the Plinth and schema versions, the backend):
//!
//! - SQLite: `control.db` and `tenants/tenant-N.db`, each copied with SQLite's online
//!   backup API (`store::backup::sqlite_backup`), consistent per file while a server
//!   writes. The control database is copied first and its copy names the tenants copied
//!   after it, so every tenant file in a backup has its tenant row.
//! - PostgreSQL: `plinth.dump`, made by `pg_dump -Fc` (one snapshot of the database).
//!
//! A backup is written into a hidden `.<stamp>.partial` folder and renamed when complete,
//! so a folder named like a timestamp is always whole; a failed one is removed, and one
//! a crash left behind is removed by the next backup (and at `serve` start), unless a
//! running backup holds its lock. A
//! restore checks every checksum before it writes anything and writes nothing half:
//! SQLite files are staged beside the target and moved in once all are copied and
//! checked again; `pg_restore` runs in one transaction into an empty database.

mod files;
mod manifest;
mod postgres;
mod retention;
mod sqlite;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use manifest::{FileEntry, MANIFEST_FILE, Manifest};
pub use retention::{clear_partials, list, prune};

use crate::store::{Location, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The request cannot be done as asked (a non-empty target, the wrong backend, no
    /// data where data was expected); nothing was written.
    #[error("{0}")]
    Refused(String),
    /// A backup whose files do not match its manifest; nothing was restored.
    #[error("the backup at {} is damaged: {why}; nothing was restored", path.display())]
    Damaged { path: PathBuf, why: String },
    #[error("{tool} not found: {hint}")]
    ToolMissing { tool: &'static str, hint: String },
    #[error("{tool} failed ({status}): {detail}")]
    Tool {
        tool: &'static str,
        status: String,
        detail: String,
    },
    // The causes are in the message and not chained as `source`: `{:#}` would print
    // them twice.
    #[error("{what}: {cause}")]
    Io { what: String, cause: std::io::Error },
    #[error("database: {0}")]
    Store(StoreError),
}

impl From<StoreError> for BackupError {
    fn from(e: StoreError) -> BackupError {
        BackupError::Store(e)
    }
}

impl BackupError {
    fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BackupError {
        let what = what.into();
        move |cause| BackupError::Io { what, cause }
    }
}

pub type BackupResult<T> = Result<T, BackupError>;

/// What a running backup or restore reports, for a progress line.
#[derive(Clone, Copy, Debug)]
pub enum Progress<'a> {
    /// A file was copied (or checked): its path in the backup and size.
    File { path: &'a str, bytes: u64 },
    /// `pg_dump` or `pg_restore` is running; bytes written (dump) or read so far.
    Dumped { bytes: u64 },
}

pub type OnProgress = Arc<dyn Fn(Progress<'_>) + Send + Sync>;

/// Progress nobody shows (the scheduled backups log their outcome instead).
pub fn quiet() -> OnProgress {
    Arc::new(|_| {})
}

/// Where `pg_dump` and `pg_restore` are (default: on PATH).
#[derive(Clone, Debug, Default)]
pub struct Tools {
    pub pg_dump: Option<PathBuf>,
    pub pg_restore: Option<PathBuf>,
}

/// A finished backup.
#[derive(Clone, Debug)]
pub struct Taken {
    pub dir: PathBuf,
    pub manifest: Manifest,
}

impl Taken {
    pub fn bytes(&self) -> u64 {
        self.manifest.files.iter().map(|f| f.bytes).sum()
    }
}

/// Takes a backup of the data at `location` into a new folder under `to`.
pub async fn take(
    location: &Location,
    to: &Path,
    tools: &Tools,
    progress: OnProgress,
) -> BackupResult<Taken> {
    std::fs::create_dir_all(to).map_err(BackupError::io(format!(
        "cannot create the backup directory {}",
        to.display()
    )))?;
    let started = chrono::Utc::now();
    let stamp = manifest::stamp(started);
    let dir = to.join(&stamp);
    if dir.exists() {
        return Err(BackupError::Refused(format!(
            "{} exists already",
            dir.display()
        )));
    }
    // What an interrupted backup left goes first (never one still being written).
    clear_partials(to);
    let partial = files::Staging::create(to.join(format!(".{stamp}.partial")))?;
    // Held until the folder is renamed whole: while held, no other run's
    // `clear_partials` removes it (on a failure `partial` removes it itself).
    let _lock = files::lock_dir(partial.path())?;
    let (entries, schema_version, backend) = match location {
        Location::SqliteDir(data) => {
            let (data, into) = (data.clone(), partial.path().to_path_buf());
            let entries = tokio::task::spawn_blocking(move || sqlite::take(&data, &into, progress))
                .await
                .map_err(|e| BackupError::Io {
                    what: "the backup thread stopped".into(),
                    cause: std::io::Error::other(e.to_string()),
                })??;
            let schema = entries.first().and_then(|f| f.schema_version);
            (entries, schema, manifest::SQLITE)
        }
        Location::Postgres(url) => {
            let (entry, schema) =
                postgres::take(url, partial.path(), tools.pg_dump.as_deref(), progress).await?;
            (vec![entry], schema, manifest::POSTGRES)
        }
    };
    let manifest = Manifest::new(backend, schema_version, started, entries);
    manifest.write(partial.path())?;
    partial.commit_as(&dir)?;
    files::sync_dir(to)?;
    tracing::info!(
        dir = %dir.display(),
        files = manifest.files.len(),
        bytes = manifest.files.iter().map(|f| f.bytes).sum::<u64>(),
        "backup taken"
    );
    Ok(Taken { dir, manifest })
}

/// Checks a backup: its manifest, and every file's size and checksum.
pub fn verify(from: &Path, progress: &OnProgress) -> BackupResult<Manifest> {
    let manifest = Manifest::read(from)?;
    for f in &manifest.files {
        files::check(from, f)?;
        progress(Progress::File {
            path: &f.path,
            bytes: f.bytes,
        });
    }
    Ok(manifest)
}

/// How a restore treats its target.
#[derive(Clone, Debug, Default)]
pub struct RestoreOptions {
    /// SQLite: replace what a non-empty target directory holds.
    pub force: bool,
    pub tools: Tools,
}

/// Restores the backup at `from` (a `DIR/<stamp>` folder) into `target`, which must be
/// of the backup's backend and empty (SQLite: unless `force`).
pub async fn restore(
    from: &Path,
    target: &Location,
    options: &RestoreOptions,
    progress: OnProgress,
) -> BackupResult<Manifest> {
    let manifest = Manifest::read(from)?;
    manifest.check_schema_known()?;
    match (manifest.backend.as_str(), target) {
        (manifest::SQLITE, Location::SqliteDir(dir)) => {
            let (from, dir, force) = (from.to_path_buf(), dir.clone(), options.force);
            let m = manifest.clone();
            tokio::task::spawn_blocking(move || sqlite::restore(&from, &m, &dir, force, &progress))
                .await
                .map_err(|e| BackupError::Io {
                    what: "the restore thread stopped".into(),
                    cause: std::io::Error::other(e.to_string()),
                })??;
        }
        (manifest::POSTGRES, Location::Postgres(url)) => {
            verify(from, &progress)?;
            postgres::restore(from, url, options.tools.pg_restore.as_deref(), progress).await?;
        }
        (manifest::SQLITE, Location::Postgres(_)) => {
            return Err(BackupError::Refused(
                "this is a backup of a SQLite data directory: restore it with --data-dir \
                 (to move tenants to PostgreSQL, use `plinth tenant export|import`)"
                    .into(),
            ));
        }
        (_, _) => {
            return Err(BackupError::Refused(
                "this is a backup of a PostgreSQL database: restore it with --database-url \
                 (to move tenants to SQLite, use `plinth tenant export|import`)"
                    .into(),
            ));
        }
    }
    Ok(manifest)
}

/// Backups taken by the server itself (`serve --backup-dir`).
#[derive(Clone, Debug)]
pub struct Schedule {
    pub dir: PathBuf,
    pub every: Duration,
    /// How many complete backups are kept (the newest); at least 1.
    pub keep: usize,
    pub pg_dump: Option<PathBuf>,
}

/// A duration as `90s`, `15m`, `1h` or `1d` (a bare number is seconds).
pub fn parse_interval(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{s:?}: expected a number and a unit, e.g. 30m or 1h"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        "d" => n.saturating_mul(86_400),
        _ => return Err(format!("{s:?}: the unit is one of s, m, h, d")),
    };
    if secs == 0 {
        return Err("the interval must be at least 1 s".into());
    }
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests;
