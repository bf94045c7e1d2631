//! The hot paths of the SQLite backend (document reads, lists, group commits, session
//! checks) through rusqlite, on the calling thread.
//!
//! sqlx runs every SQLite statement on a worker thread and hands rows back through a
//! channel; on a loaded server that hand-off, not SQLite, was most of a request's cost
//! (BENCHMARKS.md has the point-read figures). These statements take micro-
//! seconds, so running them inline on the async worker is cheaper than any hand-off.
//! Everything else (admin, auth flows, migrations) stays on sqlx; both share the file.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};
use serde_json::Value;

use super::commit::{
    ErasedWrite, GroupPlan, LOCK_SEQ_SQL, SET_SEQ_SQL, UPSERT_TAIL, UnitOutcome, acked_jobs,
    group_keys, plan_group, stale_units,
};
use super::documents::{Change, ChangeOp, ListedDoc, SortValue, StoredDoc};
use super::jobs::{INSERT_JOB_SQL, JobRef, NewJob};

use super::predicate_sql::SqlParam;
use super::{StoreError, StoreResult, now_ms};

const MAX_IDLE_READERS: usize = 8;

pub(crate) struct FastSqlite {
    path: PathBuf,
    readers: Mutex<Vec<Connection>>,
    writer: Mutex<Option<Connection>>,
}

fn open(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

fn json_text(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "{}".into())
}

/// A document from `SELECT id, data, version, created_at, updated_at`, by position.
fn doc_from_row(row: &rusqlite::Row<'_>, collection: &str) -> rusqlite::Result<StoredDoc> {
    let data: String = row.get(1)?;
    Ok(StoredDoc {
        collection: collection.to_string(),
        id: row.get(0)?,
        data: serde_json::from_str(&data).unwrap_or(Value::Null),
        version: row.get(2)?,
        created_at: row.get(3)?,
        updated_at: row.get(4)?,
    })
}

pub(crate) fn to_sql_value(p: &SqlParam) -> SqlValue {
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
fn numbered_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(|n| n.is_ascii_digit()) {
            out.push('?');
        } else {
            out.push(c);
        }
    }
    out
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

impl FastSqlite {
    pub(crate) fn new(path: &Path) -> FastSqlite {
        FastSqlite {
            path: path.to_path_buf(),
            readers: Mutex::new(Vec::new()),
            writer: Mutex::new(None),
        }
    }

    /// Runs `f` in an IMMEDIATE transaction on the writer connection. Every frequent write
    /// of a tenant file goes through this one connection: two connections of this process
    /// competing for SQLite's write lock could otherwise both wait, each on a task the
    /// other's blocked thread should run.
    pub(crate) fn with_writer<T>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<T>,
    ) -> StoreResult<T> {
        blocking(|| {
            let mut slot = self.writer.lock().unwrap_or_else(|p| p.into_inner());
            if slot.is_none() {
                *slot = Some(open(&self.path)?);
            }
            let Some(conn) = slot.as_mut() else {
                return Err(StoreError::Unavailable("no writer connection"));
            };
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let out = f(&tx)?;
            tx.commit()?;
            Ok(out)
        })
    }

    fn with_reader<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> StoreResult<T> {
        let conn = self.readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match conn {
            Some(c) => c,
            None => open(&self.path)?,
        };
        let out = f(&conn);
        let mut readers = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        if readers.len() < MAX_IDLE_READERS {
            readers.push(conn);
        }
        Ok(out?)
    }

    pub(crate) fn get_document(
        &self,
        tenant: i64,
        collection: &str,
        id: &str,
    ) -> StoreResult<Option<StoredDoc>> {
        self.with_reader(|c| {
            c.prepare_cached(
                "SELECT id, data, version, created_at, updated_at FROM documents \
                 WHERE tenant_id = ?1 AND collection = ?2 AND id = ?3",
            )?
            .query_row(params![tenant, collection, id], |r| {
                doc_from_row(r, collection)
            })
            .optional()
        })
    }

    /// Runs a list query built by `documents::list_sql`; returns the documents and their
    /// `n_keys` sort-key values.
    pub(crate) fn list(
        &self,
        sql: &str,
        collection: &str,
        params: &[SqlParam],
        n_keys: usize,
        max_bytes: usize,
    ) -> StoreResult<Vec<ListedDoc>> {
        self.with_reader(|c| {
            run_list(c, sql, collection, params, n_keys, max_bytes).map_err(to_rusqlite)
        })
    }

    /// The one integer a query built by `documents::count_sql` answers.
    pub(crate) fn count(&self, sql: &str, params: &[SqlParam]) -> StoreResult<i64> {
        let values: Vec<SqlValue> = params.iter().map(to_sql_value).collect();
        let sql = numbered_placeholders(sql);
        self.with_reader(|c| {
            c.prepare_cached(&sql)?
                .query_row(rusqlite::params_from_iter(values.iter()), |r| r.get(0))
        })
    }

    /// `EXPLAIN QUERY PLAN` of a list query: the `detail` of each step.
    pub(crate) fn explain(&self, sql: &str, params: &[SqlParam]) -> StoreResult<Vec<String>> {
        let values: Vec<SqlValue> = params.iter().map(to_sql_value).collect();
        let sql = format!("EXPLAIN QUERY PLAN {}", numbered_placeholders(sql));
        self.with_reader(|c| {
            let mut stmt = c.prepare(&sql)?;
            let rows = stmt.query_map(rusqlite::params_from_iter(values.iter()), |r| {
                r.get::<_, String>(3)
            })?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })
    }

    /// `list`, plus the tenant's log position, both from one read snapshot.
    pub(crate) fn snapshot(
        &self,
        tenant: i64,
        sql: &str,
        collection: &str,
        params: &[SqlParam],
        n_keys: usize,
        max_bytes: usize,
    ) -> StoreResult<(i64, Vec<ListedDoc>)> {
        let mut conn = self.readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
        if conn.is_none() {
            conn = Some(open(&self.path)?);
        }
        let Some(mut conn) = conn else {
            return Err(StoreError::Unavailable("no reader connection"));
        };
        let out = (|| -> StoreResult<(i64, Vec<ListedDoc>)> {
            // A deferred transaction: its snapshot starts at the first read and holds for
            // both statements (WAL mode), so the documents are exactly those at `seq`.
            let tx = conn.transaction()?;
            let seq: i64 = tx
                .prepare_cached("SELECT seq FROM tenant_seq WHERE tenant_id = ?1")?
                .query_row(params![tenant], |r| r.get(0))
                .optional()?
                .unwrap_or(0);
            let docs = run_list(&tx, sql, collection, params, n_keys, max_bytes)?;
            tx.commit()?;
            Ok((seq, docs))
        })();
        let mut readers = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        if readers.len() < MAX_IDLE_READERS {
            readers.push(conn);
        }
        out
    }

    /// `Store::changes_since` on a tenant file: the log's end and the changes up to it
    /// from one read snapshot.
    pub(crate) fn changes_since(
        &self,
        tenant: i64,
        since: i64,
        limit: i64,
        collections: Option<&[String]>,
    ) -> StoreResult<(Vec<Change>, i64)> {
        let filter = collections.map(|c| serde_json::to_string(c).unwrap_or_else(|_| "[]".into()));
        self.with_reader(|c| {
            let tx = c.unchecked_transaction()?;
            let end: i64 = tx
                .prepare_cached("SELECT seq FROM tenant_seq WHERE tenant_id = ?1")?
                .query_row(params![tenant], |r| r.get(0))
                .optional()?
                .unwrap_or(0);
            let sql = "SELECT seq, collection, doc_id, op, version, data, before, at, \
                       created_at, before_updated_at FROM changes WHERE tenant_id = ?1 \
                       AND seq > ?2 AND seq <= ?3 AND (?5 IS NULL \
                       OR collection IN (SELECT value FROM json_each(?5))) ORDER BY seq LIMIT ?4";
            let json = |t: Option<String>| t.and_then(|t| serde_json::from_str::<Value>(&t).ok());
            let out = tx
                .prepare_cached(sql)?
                .query_map(params![tenant, since, end, limit, filter], |r| {
                    Ok(Change {
                        seq: r.get(0)?,
                        collection: r.get(1)?,
                        doc_id: r.get(2)?,
                        op: ChangeOp::parse(&r.get::<_, String>(3)?),
                        version: r.get(4)?,
                        data: json(r.get(5)?),
                        before: json(r.get(6)?),
                        at: r.get(7)?,
                        created_at: r.get::<_, Option<i64>>(8)?.unwrap_or(0),
                        before_updated_at: r.get(9)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            tx.commit()?;
            let reached = match out.last() {
                Some(c) if out.len() as i64 >= limit => c.seq,
                _ => end.max(since),
            };
            Ok((out, reached))
        })
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

    /// One group commit (see `commit`), as one IMMEDIATE transaction on the writer.
    pub(crate) fn apply_group(
        &self,
        tenant: i64,
        units: Vec<Vec<ErasedWrite>>,
        acks: &[Vec<JobRef>],
        plan_jobs: &dyn Fn(&GroupPlan) -> Vec<NewJob>,
    ) -> StoreResult<(Vec<UnitOutcome>, Vec<NewJob>)> {
        blocking(|| self.apply_group_now(tenant, units, acks, plan_jobs))
    }

    fn apply_group_now(
        &self,
        tenant: i64,
        units: Vec<Vec<ErasedWrite>>,
        acks: &[Vec<JobRef>],
        plan_jobs: &dyn Fn(&GroupPlan) -> Vec<NewJob>,
    ) -> StoreResult<(Vec<UnitOutcome>, Vec<NewJob>)> {
        let mut slot = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(open(&self.path)?);
        }
        let Some(conn) = slot.as_mut() else {
            return Err(StoreError::Unavailable("no writer connection"));
        };
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let seq0: i64 = tx
            .prepare_cached(&numbered_placeholders(LOCK_SEQ_SQL))?
            .query_row(params![tenant], |r| r.get(0))?;
        let keys = group_keys(&units);
        let mut current = Vec::new();
        {
            let mut stmt = tx.prepare_cached(
                "SELECT id, data, version, created_at, updated_at FROM documents \
                 WHERE tenant_id = ?1 AND collection = ?2 AND id = ?3",
            )?;
            for (c, i) in &keys {
                if let Some(doc) = stmt
                    .query_row(params![tenant, c, i], |r| doc_from_row(r, c))
                    .optional()?
                {
                    current.push(doc);
                }
            }
        }
        let stale = if acks.iter().all(Vec::is_empty) {
            Vec::new()
        } else {
            let mut stmt = tx.prepare_cached(
                "SELECT attempts FROM jobs WHERE tenant_id = ?1 AND id = ?2 AND state = 'pending'",
            )?;
            let mut holds = std::collections::HashSet::new();
            for r in acks.iter().flatten() {
                let attempts: Option<i64> = stmt
                    .query_row(params![tenant, r.id], |row| row.get(0))
                    .optional()?;
                if attempts == Some(i64::from(r.attempts)) {
                    holds.insert(r);
                }
            }
            stale_units(acks, |r| holds.contains(r))
        };
        let plan = plan_group(units, &keys, current, &stale, seq0, now_ms());
        let done = acked_jobs(&plan, acks);
        if !done.is_empty() {
            let mut delete =
                tx.prepare_cached("DELETE FROM jobs WHERE tenant_id = ?1 AND id = ?2")?;
            for r in done {
                delete.execute(params![tenant, r.id])?;
            }
        }
        let jobs = plan_jobs(&plan);
        if !jobs.is_empty() {
            let mut insert = tx.prepare_cached(&numbered_placeholders(INSERT_JOB_SQL))?;
            for job in &jobs {
                insert.execute(params![
                    tenant,
                    job.id,
                    job.function,
                    job.event,
                    job.depth,
                    job.max_attempts,
                    plan.now,
                    job.claimed_until
                ])?;
            }
        }
        if plan.changes().next().is_some() {
            let mut upsert = tx.prepare_cached(&format!(
                "INSERT INTO documents (tenant_id, collection, id, data, version, created_at, \
                 updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) {UPSERT_TAIL}"
            ))?;
            for d in &plan.upserts {
                upsert.execute(params![
                    tenant,
                    d.collection,
                    d.id,
                    json_text(&d.data),
                    d.version,
                    d.created_at,
                    d.updated_at
                ])?;
            }
            let mut delete = tx.prepare_cached(
                "DELETE FROM documents WHERE tenant_id = ?1 AND collection = ?2 AND id = ?3",
            )?;
            for (c, i) in &plan.deletes {
                delete.execute(params![tenant, c, i])?;
            }
            let mut change = tx.prepare_cached(
                "INSERT INTO changes (tenant_id, seq, collection, doc_id, op, version, data, \
                 before, at, created_at, before_updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?;
            for w in plan.changes() {
                let after = (w.op != ChangeOp::Delete).then(|| json_text(&w.doc.data));
                let before = w.before.as_ref().map(|d| json_text(&d.data));
                change.execute(params![
                    tenant,
                    w.seq,
                    w.doc.collection,
                    w.doc.id,
                    w.op.as_str(),
                    w.doc.version,
                    after,
                    before,
                    plan.now,
                    w.doc.created_at,
                    w.before.as_ref().map(|d| d.updated_at)
                ])?;
            }
            tx.prepare_cached(&numbered_placeholders(SET_SEQ_SQL))?
                .execute(params![tenant, plan.final_seq])?;
        }
        tx.commit()?;
        Ok((plan.outcomes, jobs))
    }
}

/// Runs a list query built by `documents::list_sql` on a connection.
fn run_list(
    c: &Connection,
    sql: &str,
    collection: &str,
    params: &[SqlParam],
    n_keys: usize,
    max_bytes: usize,
) -> StoreResult<Vec<ListedDoc>> {
    let values: Vec<SqlValue> = params.iter().map(to_sql_value).collect();
    let sql = numbered_placeholders(sql);
    let mut stmt = c.prepare_cached(&sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(values.iter()), |r| {
        // Columns by position: id, data_text, version, created_at, updated_at, tie, keys.
        let data: String = r.get(1)?;
        let mut keys = Vec::with_capacity(n_keys);
        for i in 0..n_keys {
            keys.push(match r.get_ref(6 + i)? {
                ValueRef::Null => SortValue::Null,
                ValueRef::Integer(v) => SortValue::Int(v),
                ValueRef::Real(v) => SortValue::Float(v),
                ValueRef::Text(t) => SortValue::Text(String::from_utf8_lossy(t).into_owned()),
                ValueRef::Blob(b) => SortValue::Text(String::from_utf8_lossy(b).into_owned()),
            });
        }
        Ok(ListedDoc {
            collection: collection.to_string(),
            id: r.get(0)?,
            version: r.get(2)?,
            created_at: r.get(3)?,
            updated_at: r.get(4)?,
            data,
            keys,
            tie: SortValue::Int(r.get(5)?),
        })
    })?;
    let mut out = Vec::new();
    let mut bytes = 0usize;
    for row in rows {
        if super::documents::read_enough(out.len(), bytes, max_bytes) {
            break;
        }
        let row = row?;
        bytes += row.data.len();
        out.push(row);
    }
    Ok(out)
}

/// Back to a rusqlite error, for closures run by `with_reader`.
fn to_rusqlite(e: StoreError) -> rusqlite::Error {
    match e {
        StoreError::Sqlite(e) => e,
        other => rusqlite::Error::ToSqlConversionFailure(Box::new(std::io::Error::other(
            other.to_string(),
        ))),
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
