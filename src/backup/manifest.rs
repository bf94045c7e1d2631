//! `manifest.json`: what a backup holds, and the checks a restore makes of it before it
//! trusts a single file.

use std::path::{Component, Path};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{BackupError, BackupResult};

pub const MANIFEST_FILE: &str = "manifest.json";
const FORMAT: &str = "plinth-backup";
const FORMAT_VERSION: u32 = 1;
pub const SQLITE: &str = "sqlite";
pub const POSTGRES: &str = "postgres";
pub const PG_DUMP_FILE: &str = "plinth.dump";

/// A backup folder's name: its start in UTC, to the millisecond, so names sort by time.
const STAMP: &str = "%Y%m%dT%H%M%S%.3fZ";

pub fn stamp(at: DateTime<Utc>) -> String {
    at.format(STAMP).to_string()
}

/// Whether a folder name is a backup's, `20261206T161500.123Z` (a partial one starts
/// with a dot and is not).
pub fn is_stamp(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() == 20
        && b.iter().enumerate().all(|(i, c)| match i {
            8 => *c == b'T',
            15 => *c == b'.',
            19 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub format_version: u32,
    pub plinth_version: String,
    /// `sqlite` or `postgres`.
    pub backend: String,
    /// The newest migration applied (SQLite: the control database's; each file has its own).
    pub schema_version: Option<i64>,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub files: Vec<FileEntry>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FileEntry {
    /// Relative to the backup folder, `/`-separated.
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_version: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<i64>,
}

impl Manifest {
    pub fn new(
        backend: &str,
        schema_version: Option<i64>,
        started_at: DateTime<Utc>,
        files: Vec<FileEntry>,
    ) -> Manifest {
        Manifest {
            format: FORMAT.into(),
            format_version: FORMAT_VERSION,
            plinth_version: env!("CARGO_PKG_VERSION").into(),
            backend: backend.into(),
            schema_version,
            started_at,
            finished_at: Utc::now(),
            files,
        }
    }

    pub fn write(&self, dir: &Path) -> BackupResult<()> {
        let path = dir.join(MANIFEST_FILE);
        let text = serde_json::to_vec_pretty(self).map_err(|e| BackupError::Io {
            what: "cannot encode the manifest".into(),
            cause: std::io::Error::other(e),
        })?;
        std::fs::write(&path, text)
            .map_err(BackupError::io(format!("cannot write {}", path.display())))?;
        super::files::sync_file(&path)
    }

    /// Reads and checks a backup's manifest: its format, backend, and that every path
    /// it lists is one a backup makes (nothing outside the folder, nothing unexpected).
    pub fn read(dir: &Path) -> BackupResult<Manifest> {
        let damaged = |why: String| BackupError::Damaged {
            path: dir.to_path_buf(),
            why,
        };
        let path = dir.join(MANIFEST_FILE);
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(BackupError::Refused(format!(
                    "{} is not a Plinth backup (no {MANIFEST_FILE}); name a DIR/<timestamp> \
                     folder that `plinth backup` made",
                    dir.display()
                )));
            }
            Err(e) => return Err(damaged(format!("{MANIFEST_FILE}: {e}"))),
        };
        let m: Manifest = serde_json::from_slice(&text)
            .map_err(|e| damaged(format!("{MANIFEST_FILE} does not parse: {e}")))?;
        if m.format != FORMAT {
            return Err(damaged(format!("{MANIFEST_FILE} is not a Plinth manifest")));
        }
        if m.format_version > FORMAT_VERSION {
            return Err(BackupError::Refused(format!(
                "the backup's format is version {}, newer than this Plinth ({}) reads: \
                 restore it with Plinth {} or later",
                m.format_version,
                env!("CARGO_PKG_VERSION"),
                m.plinth_version
            )));
        }
        let expected: fn(&str) -> bool = match m.backend.as_str() {
            SQLITE => sqlite_path,
            POSTGRES => |p| p == PG_DUMP_FILE,
            other => return Err(damaged(format!("unknown backend {other:?}"))),
        };
        if m.files.is_empty() {
            return Err(damaged("the manifest lists no files".into()));
        }
        for f in &m.files {
            if !safe_relative(&f.path) || !expected(&f.path) {
                return Err(damaged(format!("unexpected file {:?}", f.path)));
            }
        }
        if m.backend == SQLITE && !m.files.iter().any(|f| f.path == "control.db") {
            return Err(damaged("the manifest lists no control.db".into()));
        }
        Ok(m)
    }

    /// Refuses a backup whose schema is newer than this build's migrations: a
    /// newer Plinth made it, and this one would misread it.
    pub fn check_schema_known(&self) -> BackupResult<()> {
        let known = crate::store::backup::known_schemas();
        for f in &self.files {
            let newest = match (self.backend.as_str(), f.tenant_id) {
                (POSTGRES, _) => known.postgres,
                (_, None) => known.sqlite_control,
                (_, Some(_)) => known.sqlite_tenant,
            };
            if f.schema_version.is_some_and(|v| v > newest) {
                return Err(BackupError::Refused(format!(
                    "{} is at schema version {}, newer than this Plinth ({}) knows ({newest}): \
                     restore it with Plinth {} or later",
                    f.path,
                    f.schema_version.unwrap_or_default(),
                    env!("CARGO_PKG_VERSION"),
                    self.plinth_version
                )));
            }
        }
        Ok(())
    }
}

fn sqlite_path(p: &str) -> bool {
    p == "control.db"
        || p.strip_prefix("tenants/tenant-")
            .and_then(|rest| rest.strip_suffix(".db"))
            .is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
}

fn safe_relative(p: &str) -> bool {
    Path::new(p)
        .components()
        .all(|c| matches!(c, Component::Normal(_)))
}
