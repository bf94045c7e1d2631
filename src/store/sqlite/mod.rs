//! The hot paths of the SQLite backend (document reads, lists, group commits, session
//! checks, the job outbox) through rusqlite, on the calling thread.
//!
//! sqlx runs every SQLite statement on a worker thread and hands rows back through a
//! channel; on a loaded server that hand-off, not SQLite, was most of a request's cost
//! (BENCHMARKS.md has the point-read figures). These statements take microseconds, so
//! running them inline on the async worker is cheaper than any hand-off. Everything else
//! (admin, auth flows, migrations) stays on sqlx; both share the file.

mod commit;
mod documents;
mod jobs;
mod lookups;
mod tuning;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};
use serde_json::Value;

use super::functions::InvocationRow;
use super::predicate_sql::SqlParam;
use super::{StoreError, StoreResult, now_ms};

pub use tuning::{SqliteMemory, SqliteTuning, sqlite_memory};

const MAX_IDLE_READERS: usize = 8;

/// One tenant's SQLite file through rusqlite: one writer connection, a few idle readers.
pub(crate) struct SqliteFile {
    path: PathBuf,
    tuning: SqliteTuning,
    readers: Mutex<Vec<Counted>>,
    writer: Mutex<Option<Counted>>,
    /// When a connection was last taken or the file looked up (`now_ms`), for the idle close.
    last_used: AtomicI64,
    /// When the writer last committed (`now_ms`; `i64::MIN`: never), for `written_since`.
    last_write: AtomicI64,
    /// The store's count of open connections, for `/metrics`.
    open_count: Arc<AtomicUsize>,
}

/// A connection, counted in its store's gauge for as long as it is open.
struct Counted {
    conn: Connection,
    count: Arc<AtomicUsize>,
}

impl Counted {
    fn open(
        path: &Path,
        tuning: &SqliteTuning,
        count: &Arc<AtomicUsize>,
    ) -> rusqlite::Result<Self> {
        let conn = open(path, tuning)?;
        count.fetch_add(1, Ordering::Relaxed);
        Ok(Counted {
            conn,
            count: count.clone(),
        })
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::Relaxed);
    }
}

impl std::ops::Deref for Counted {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.conn
    }
}

impl std::ops::DerefMut for Counted {
    fn deref_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }
}

fn open(path: &Path, tuning: &SqliteTuning) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "cache_size", tuning.cache_size_pragma())?;
    // Answers the size in force (a row), which the plain update would refuse.
    conn.pragma_update_and_check(None, "mmap_size", tuning.mmap_pragma(), |_| Ok(()))?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

fn json_text(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "{}".into())
}

fn to_sql_value(p: &SqlParam) -> SqlValue {
    match p {
        SqlParam::Bool(b) => SqlValue::Integer(i64::from(*b)),
        SqlParam::Int(i) => SqlValue::Integer(*i),
        SqlParam::Float(f) => SqlValue::Real(*f),
        SqlParam::Text(s) | SqlParam::Json(s) => SqlValue::Text(s.clone()),
    }
}

/// `$N` → `?N`. SQLite reads `$1` as a *named* parameter whose index is its order of
/// first appearance; `?N` is numbered, as the SQL builders intend. A `$` followed by a
/// digit only ever starts a placeholder in generated SQL (JSON paths read `'$.a'`).
fn numbered_placeholders(sql: &str) -> std::borrow::Cow<'_, str> {
    let placeholder = |w: &[u8]| w[0] == b'$' && w[1].is_ascii_digit();
    if !sql.as_bytes().windows(2).any(placeholder) {
        return std::borrow::Cow::Borrowed(sql);
    }
    // Bytes, not chars: every query runs through here, and an ASCII byte for an ASCII
    // byte keeps the text UTF-8.
    let mut out = sql.as_bytes().to_vec();
    for i in 0..out.len() - 1 {
        if placeholder(&out[i..i + 2]) {
            out[i] = b'?';
        }
    }
    match String::from_utf8(out) {
        Ok(s) => std::borrow::Cow::Owned(s),
        Err(_) => std::borrow::Cow::Borrowed(sql),
    }
}

/// Runs a write that may wait for SQLite's write lock. On a multi-threaded runtime the
/// thread hands its other tasks over first (`block_in_place`), so a task that holds the
/// lock through another connection (a sqlx transaction) can still run and release it.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

impl SqliteFile {
    pub(crate) fn new(
        path: &Path,
        tuning: SqliteTuning,
        open_count: Arc<AtomicUsize>,
    ) -> SqliteFile {
        SqliteFile {
            path: path.to_path_buf(),
            tuning,
            readers: Mutex::new(Vec::new()),
            writer: Mutex::new(None),
            last_used: AtomicI64::new(now_ms()),
            last_write: AtomicI64::new(i64::MIN),
            open_count,
        }
    }

    /// Whether a write transaction of this process committed here at or after `since_ms`.
    pub(crate) fn written_since(&self, since_ms: i64) -> bool {
        self.last_write.load(Ordering::Relaxed) >= since_ms
    }

    /// When a write transaction of this process last committed here (`now_ms`).
    pub(crate) fn last_write(&self) -> Option<i64> {
        Some(self.last_write.load(Ordering::Relaxed)).filter(|t| *t != i64::MIN)
    }

    /// Whether no connection was taken nor the file looked up for `idle`.
    pub(crate) fn idle_for(&self, idle: std::time::Duration) -> bool {
        let idle_ms = i64::try_from(idle.as_millis()).unwrap_or(i64::MAX);
        now_ms().saturating_sub(self.last_used.load(Ordering::Relaxed)) >= idle_ms
    }

    pub(crate) fn touch(&self) {
        self.last_used.store(now_ms(), Ordering::Relaxed);
    }

    /// The file's `PRAGMA user_version`: the tenant schema version its migrations reached
    /// (0: not recorded). Fails when the file does not exist (it is never created here).
    pub(crate) fn schema_version(&self) -> StoreResult<i64> {
        self.with_reader(|c| c.pragma_query_value(None, "user_version", |r| r.get(0)))
    }

    /// Records the schema version the migrations reached, so the next open of the file
    /// can skip them with one read of the header (`schema_version`).
    pub(crate) fn set_schema_version(&self, version: i32) -> StoreResult<()> {
        self.with_writer(|tx| tx.pragma_update(None, "user_version", version))
    }

    /// Runs `f` in an IMMEDIATE transaction on the writer connection. Every frequent write
    /// of a tenant file goes through this one connection: two connections of this process
    /// competing for SQLite's write lock could otherwise both wait, each on a task the
    /// other's blocked thread should run.
    pub(crate) fn with_writer<T>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<T>,
    ) -> StoreResult<T> {
        self.touch();
        blocking(|| {
            let mut slot = self.writer.lock().unwrap_or_else(|p| p.into_inner());
            if slot.is_none() {
                *slot = Some(Counted::open(&self.path, &self.tuning, &self.open_count)?);
            }
            let Some(conn) = slot.as_mut() else {
                return Err(StoreError::Unavailable("no writer connection"));
            };
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let out = f(&tx)?;
            tx.commit()?;
            self.last_write.store(now_ms(), Ordering::Relaxed);
            Ok(out)
        })
    }

    fn with_reader<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> StoreResult<T> {
        self.touch();
        let conn = self.readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match conn {
            Some(c) => c,
            None => Counted::open(&self.path, &self.tuning, &self.open_count)?,
        };
        let out = f(&conn);
        let mut readers = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        if readers.len() < MAX_IDLE_READERS {
            readers.push(conn);
        }
        Ok(out?)
    }

    /// Whether a session is live and its user enabled.
    pub(crate) fn session_active(
        &self,
        tenant: i64,
        session_id: &str,
        user_id: &str,
    ) -> StoreResult<bool> {
        let now = now_ms();
        self.with_reader(|c| {
            c.prepare_cached(
                "SELECT 1 FROM sessions s JOIN users u ON u.tenant_id = s.tenant_id AND u.id = s.user_id \
                 WHERE s.tenant_id = ?1 AND s.id = ?2 AND s.user_id = ?3 \
                   AND s.revoked_at IS NULL AND s.expires_at > ?4 AND u.disabled = 0",
            )?
            .query_row(params![tenant, session_id, user_id, now], |_| Ok(()))
            .optional()
            .map(|o| o.is_some())
        })
    }
}

impl SqliteFile {
    /// Appends invocation records.
    pub(crate) fn insert_invocations(
        &self,
        tenant: i64,
        rows: &[InvocationRow],
    ) -> StoreResult<()> {
        self.with_writer(|tx| {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO invocations (tenant_id, id, function, trigger, version, \
                 started_at, duration_us, outcome, error, logs) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) ON CONFLICT DO NOTHING",
            )?;
            for r in rows {
                stmt.execute(params![
                    tenant,
                    r.id,
                    r.function,
                    r.trigger,
                    r.version,
                    r.started_at,
                    r.duration_us,
                    r.outcome,
                    r.error,
                    r.logs.to_string()
                ])?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn placeholders() {
        assert_eq!(
            super::numbered_placeholders("json_extract(data, '$.a') > $3 AND id = $12"),
            "json_extract(data, '$.a') > ?3 AND id = ?12"
        );
    }
}
