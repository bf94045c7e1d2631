//! Document reads on a tenant file: one document, a list page, a count, a snapshot with
//! its log position, the change log and a query plan. The SQL of lists and counts is
//! built by `documents::list_sql`.

use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;

use super::{SqliteFile, numbered_placeholders, to_sql_value};
use crate::store::StoreResult;
use crate::store::documents::{
    Change, ChangeOp, ListQuery, ListedDoc, SortValue, StoredDoc, read_enough,
};
use crate::store::predicate_sql::SqlParam;

/// Reads one document by key.
pub(super) const GET_DOC_SQL: &str = "SELECT id, data, version, created_at, updated_at \
     FROM documents WHERE tenant_id = ?1 AND collection = ?2 AND id = ?3";

/// A document from `SELECT id, data, version, created_at, updated_at`, by position.
pub(super) fn doc_from_row(
    row: &rusqlite::Row<'_>,
    collection: &str,
) -> rusqlite::Result<StoredDoc> {
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

/// The tenant's last seq (0 before its first write).
fn read_seq(c: &Connection, tenant: i64) -> rusqlite::Result<i64> {
    Ok(
        c.prepare_cached("SELECT seq FROM tenant_seq WHERE tenant_id = ?1")?
            .query_row(params![tenant], |r| r.get(0))
            .optional()?
            .unwrap_or(0),
    )
}

impl SqliteFile {
    pub(crate) fn get_document(
        &self,
        tenant: i64,
        collection: &str,
        id: &str,
    ) -> StoreResult<Option<StoredDoc>> {
        self.with_reader(|c| {
            c.prepare_cached(GET_DOC_SQL)?
                .query_row(params![tenant, collection, id], |r| {
                    doc_from_row(r, collection)
                })
                .optional()
        })
    }

    /// Runs a list query built by `documents::list_sql`.
    pub(crate) fn list(
        &self,
        sql: &str,
        params: &[SqlParam],
        q: &ListQuery<'_>,
    ) -> StoreResult<Vec<ListedDoc>> {
        self.with_reader(|c| run_list(c, sql, params, q))
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
        params: &[SqlParam],
        q: &ListQuery<'_>,
    ) -> StoreResult<(i64, Vec<ListedDoc>)> {
        self.with_reader(|c| {
            // A deferred transaction: its snapshot starts at the first read and holds for
            // both statements (WAL mode), so the documents are exactly those at `seq`.
            let tx = c.unchecked_transaction()?;
            let seq = read_seq(&tx, tenant)?;
            let docs = run_list(&tx, sql, params, q)?;
            tx.commit()?;
            Ok((seq, docs))
        })
    }

    /// The changes `Store::changes_since` reads, and the log's end they were read up to,
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
            let end = read_seq(&tx, tenant)?;
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
            Ok((out, end))
        })
    }
}

/// Runs a list query built by `documents::list_sql` on a connection.
fn run_list(
    c: &Connection,
    sql: &str,
    params: &[SqlParam],
    q: &ListQuery<'_>,
) -> rusqlite::Result<Vec<ListedDoc>> {
    let values: Vec<SqlValue> = params.iter().map(to_sql_value).collect();
    let sql = numbered_placeholders(sql);
    let mut stmt = c.prepare_cached(&sql)?;
    let n_keys = q.order.len();
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
            collection: q.collection.to_string(),
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
        if read_enough(out.len(), bytes, q.max_bytes) {
            break;
        }
        let row = row?;
        bytes += row.data.len();
        out.push(row);
    }
    Ok(out)
}
