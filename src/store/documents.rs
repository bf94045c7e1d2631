//! Documents, the change log and rule sets of a tenant.
//!
//! A write is one transaction: the document row, the tenant's next `seq` (a counter row
//! whose lock serialises the tenant's writers until commit, so seq order is commit order
//! on both backends) and the change row. The caller decides what to write from the
//! document as it is inside the transaction (locked on PostgreSQL, under SQLite's write
//! lock), so rule checks and conditional writes cannot race.

use serde_json::Value;
use sqlx::Row;
use sqlx::types::Json;

use super::commit::{AnyError, ErasedWrite, UnitError};
use super::predicate_sql::{self, Dialect, SqlParam};
use super::{Db, Store, StoreError, StoreResult, now_ms, on_db};
use crate::query::{Field, Predicate};
use crate::tenancy::Scope;

#[derive(Clone, Debug, PartialEq)]
pub struct StoredDoc {
    pub collection: String,
    pub id: String,
    pub data: Value,
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeOp {
    Create,
    Update,
    Delete,
}

impl ChangeOp {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeOp::Create => "create",
            ChangeOp::Update => "update",
            ChangeOp::Delete => "delete",
        }
    }

    pub(crate) fn parse(s: &str) -> ChangeOp {
        match s {
            "create" => ChangeOp::Create,
            "delete" => ChangeOp::Delete,
            _ => ChangeOp::Update,
        }
    }
}

/// What to do with one document, decided from its current state.
#[derive(Debug)]
pub enum WriteDecision {
    /// Create it with this data (it must not exist).
    Insert(Value),
    /// Replace its data (it must exist): version + 1.
    Replace(Value),
    Delete,
}

/// Decides a write from the document as it is inside the transaction (None: absent).
pub type DecideFn<E> = Box<dyn FnOnce(Option<&StoredDoc>) -> Result<WriteDecision, E> + Send>;

/// One write of a transaction: where, and how to decide from the current document.
pub struct WriteRequest<E> {
    pub collection: String,
    pub id: String,
    pub decide: DecideFn<E>,
}

/// A committed write.
#[derive(Clone, Debug)]
pub struct Written {
    pub op: ChangeOp,
    pub seq: i64,
    /// The document after the write (for delete: as it was when deleted).
    pub doc: StoredDoc,
    pub before: Option<StoredDoc>,
}

#[derive(Debug)]
pub enum WriteError<E> {
    /// A decision refused the write (the index of the write in its batch).
    Rejected(usize, E),
    Store(StoreError),
}

impl<E> From<sqlx::Error> for WriteError<E> {
    fn from(e: sqlx::Error) -> Self {
        WriteError::Store(StoreError::Db(e))
    }
}

impl<E> From<StoreError> for WriteError<E> {
    fn from(e: StoreError) -> Self {
        WriteError::Store(e)
    }
}

/// One change-log entry.
#[derive(Clone, Debug)]
pub struct Change {
    pub seq: i64,
    pub collection: String,
    pub doc_id: String,
    pub op: ChangeOp,
    pub version: i64,
    pub data: Option<Value>,
    pub before: Option<Value>,
    pub at: i64,
    /// The document's creation time (0 for changes logged before this was recorded).
    pub created_at: i64,
    /// Update time of the version before the change, when there was one.
    pub before_updated_at: Option<i64>,
}

impl Change {
    /// The document after the change (None for a delete), as GET shows it.
    pub fn doc_after(&self) -> Option<StoredDoc> {
        self.data.clone().map(|data| StoredDoc {
            collection: self.collection.clone(),
            id: self.doc_id.clone(),
            data,
            version: self.version,
            created_at: self.created_at,
            updated_at: self.at,
        })
    }

    /// The document before the change (None for a create): for a delete, the deleted
    /// version; for an update, the version it replaced.
    pub fn doc_before(&self) -> Option<StoredDoc> {
        self.before.clone().map(|data| StoredDoc {
            collection: self.collection.clone(),
            id: self.doc_id.clone(),
            data,
            version: if self.op == ChangeOp::Delete {
                self.version
            } else {
                self.version - 1
            },
            created_at: self.created_at,
            updated_at: self.before_updated_at.unwrap_or(self.created_at),
        })
    }

    /// The change as it was written, rebuilt from the commit's result.
    pub fn from_written(w: &Written, at: i64) -> Change {
        Change {
            seq: w.seq,
            collection: w.doc.collection.clone(),
            doc_id: w.doc.id.clone(),
            op: w.op,
            version: w.doc.version,
            data: (w.op != ChangeOp::Delete).then(|| w.doc.data.clone()),
            before: w.before.as_ref().map(|d| d.data.clone()),
            at,
            created_at: w.doc.created_at,
            before_updated_at: w.before.as_ref().map(|d| d.updated_at),
        }
    }
}

/// A sort-key value read back from a row, kept exactly so a cursor can resume after it.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "t", content = "v", rename_all = "lowercase")]
pub enum SortValue {
    Null,
    Int(i64),
    Float(f64),
    Text(String),
    /// PostgreSQL: the jsonb value as JSON text.
    Json(String),
}

#[derive(Clone, Debug, PartialEq)]
pub struct OrderKey {
    pub field: Field,
    pub desc: bool,
}

/// Resume after this row: its sort-key values and its tie-break value.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct After {
    pub keys: Vec<SortValue>,
    /// The final tie-break: the rowid on SQLite (an index delivers rows in rowid order
    /// within equal keys, so no sort is needed), the id on PostgreSQL.
    pub tie: SortValue,
}

pub struct ListQuery<'a> {
    pub collection: &'a str,
    /// Read rule AND filter, already combined; None: everything.
    pub predicate: Option<&'a Predicate>,
    /// Sort keys; a unique tie-break is always appended (see [`After::tie`]).
    pub order: &'a [OrderKey],
    pub after: Option<&'a After>,
    pub limit: i64,
    /// Stop reading once the data read passes this many bytes (see [`page_len`]).
    pub max_bytes: usize,
    /// Read the matches from the index that narrows the predicate and sort them, rather
    /// than walk an index in the list's order (see `documents::list`): the order's keys
    /// are written so that no index matches them.
    pub sort_matches: bool,
}

/// Whether a list read of `rows_read` rows holding `bytes_read` bytes of data stops: once
/// past `max_bytes`, with at least two rows read (so a page of one oversized document
/// still knows whether more follow).
pub(super) fn read_enough(rows_read: usize, bytes_read: usize, max_bytes: usize) -> bool {
    rows_read >= 2 && bytes_read > max_bytes
}

/// How many of `rows` (read with `read_enough`) a page of at most `limit` rows and
/// `max_bytes` of data holds: at least one. Rows past it mean more follow.
pub fn page_len(rows: &[ListedDoc], limit: usize, max_bytes: usize) -> usize {
    let mut bytes = 0usize;
    let mut n = 0;
    for r in rows.iter().take(limit) {
        bytes += r.data.len();
        if n > 0 && bytes > max_bytes {
            break;
        }
        n += 1;
    }
    n
}

/// A listed document: its data stays the JSON text the database holds (a list never
/// needs it parsed: the rules were applied in SQL), and its sort keys.
pub struct ListedDoc {
    pub collection: String,
    pub id: String,
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
    /// The data as the JSON text the database holds (written by us, so valid JSON).
    pub data: String,
    pub keys: Vec<SortValue>,
    pub tie: SortValue,
}

fn dialect(db: &Db) -> Dialect {
    match db {
        Db::Sqlite(_) => Dialect::Sqlite,
        Db::Postgres(_) => Dialect::Postgres,
    }
}

/// Binds rendered parameters in order.
macro_rules! bind_params {
    ($q:expr, $params:expr, $dialect:expr) => {{
        let mut q = $q;
        for p in $params {
            q = match p {
                SqlParam::Bool(b) => q.bind(*b),
                SqlParam::Int(i) => q.bind(*i),
                SqlParam::Float(f) => q.bind(*f),
                SqlParam::Text(s) => q.bind(s.clone()),
                SqlParam::Json(s) => q.bind(s.clone()),
            };
        }
        q
    }};
}

fn doc_from_row<R: Row>(row: &R, collection: &str) -> Result<StoredDoc, sqlx::Error>
where
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Json<Value>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> &'r str: sqlx::ColumnIndex<R>,
{
    Ok(StoredDoc {
        collection: collection.to_string(),
        id: row.try_get("id")?,
        data: row.try_get::<Json<Value>, _>("data")?.0,
        version: row.try_get("version")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// A document row selected with its `collection` column.
pub(crate) fn doc_from_row_at<R: Row>(row: &R) -> Result<StoredDoc, sqlx::Error>
where
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Json<Value>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> &'r str: sqlx::ColumnIndex<R>,
{
    let collection: String = row.try_get("collection")?;
    doc_from_row(row, &collection)
}

impl Store {
    pub async fn get_document(
        &self,
        scope: &Scope,
        collection: &str,
        id: &str,
    ) -> StoreResult<Option<StoredDoc>> {
        if let Some(fast) = self.fast_sqlite(scope).await? {
            return fast.get_document(scope.tenant().id, collection, id);
        }
        let (db, tenant) = self.tenant_db(scope).await?;
        let sql = "SELECT id, data, version, created_at, updated_at FROM documents \
                   WHERE tenant_id = $1 AND collection = $2 AND id = $3";
        on_db!(db, |p| {
            let row = sqlx::query(sql)
                .bind(tenant)
                .bind(collection)
                .bind(id)
                .fetch_optional(&p)
                .await?;
            Ok(match row {
                Some(r) => Some(doc_from_row(&r, collection)?),
                None => None,
            })
        })
    }

    /// Runs the writes as one unit (all or nothing, in order), committed with whatever
    /// other writes of the tenant are waiting (see `commit`).
    pub async fn write_documents<E: Send + 'static>(
        &self,
        scope: &Scope,
        writes: Vec<WriteRequest<E>>,
        acks: Vec<super::JobRef>,
    ) -> Result<Vec<Written>, WriteError<E>> {
        let erased = writes
            .into_iter()
            .map(|w| {
                let decide = w.decide;
                ErasedWrite {
                    collection: w.collection,
                    id: w.id,
                    decide: Box::new(move |d: Option<&StoredDoc>| {
                        decide(d).map_err(|e| Box::new(e) as AnyError)
                    }),
                }
            })
            .collect();
        self.commit_unit(scope, erased, acks)
            .await
            .map_err(|e| match e {
                UnitError::Rejected(i, any) => match any.downcast::<E>() {
                    Ok(e) => WriteError::Rejected(i, *e),
                    Err(_) => WriteError::Store(StoreError::Internal("write rejected")),
                },
                UnitError::Store(e) => WriteError::Store(e),
            })
    }

    /// One page of a collection, in `order` then id, after the cursor, filtered.
    pub async fn list_documents(
        &self,
        scope: &Scope,
        q: ListQuery<'_>,
    ) -> StoreResult<Vec<ListedDoc>> {
        let n_keys = q.order.len();
        if let Some(fast) = self.fast_sqlite(scope).await? {
            let (sql, params) = list_sql(scope.tenant().id, &q, Dialect::Sqlite)?;
            tracing::trace!(%sql, ?params, "list");
            return fast.list(&sql, q.collection, &params, n_keys, q.max_bytes);
        }
        let (db, tenant) = self.tenant_db(scope).await?;
        let dialect = dialect(&db);
        let (sql, params) = list_sql(tenant, &q, dialect)?;
        on_db!(db, |p| {
            let query = sqlx::query(sqlx::AssertSqlSafe(sql));
            let query = bind_params!(query, &params, dialect);
            read_page(query.fetch(&p), &q, n_keys, dialect).await
        })
    }

    /// How many documents of `collection` match `predicate`, counting no further than
    /// `cap + 1` (so the work is bounded whatever the collection's size; a result over
    /// `cap` means "more than `cap`").
    pub async fn count_documents(
        &self,
        scope: &Scope,
        collection: &str,
        predicate: Option<&Predicate>,
        cap: i64,
    ) -> StoreResult<i64> {
        if let Some(fast) = self.fast_sqlite(scope).await? {
            let (sql, params) = count_sql(
                scope.tenant().id,
                collection,
                predicate,
                cap,
                Dialect::Sqlite,
            )?;
            return fast.count(&sql, &params);
        }
        let (db, tenant) = self.tenant_db(scope).await?;
        let dialect = dialect(&db);
        let (sql, params) = count_sql(tenant, collection, predicate, cap, dialect)?;
        on_db!(db, |p| {
            let query = sqlx::query_scalar(sqlx::AssertSqlSafe(sql));
            let query = bind_params!(query, &params, dialect);
            Ok(query.fetch_one(&p).await?)
        })
    }

    /// What a list query matches and the log position it reflects, from one snapshot:
    /// no change at or below the returned seq is missing from the documents, and none
    /// above it is in them.
    pub async fn snapshot(
        &self,
        scope: &Scope,
        q: ListQuery<'_>,
    ) -> StoreResult<(i64, Vec<ListedDoc>)> {
        let n_keys = q.order.len();
        let tenant = scope.tenant().id;
        if let Some(fast) = self.fast_sqlite(scope).await? {
            let (sql, params) = list_sql(tenant, &q, Dialect::Sqlite)?;
            return fast.snapshot(tenant, &sql, q.collection, &params, n_keys, q.max_bytes);
        }
        let (db, tenant) = self.tenant_db(scope).await?;
        let dialect = dialect(&db);
        let (sql, params) = list_sql(tenant, &q, dialect)?;
        on_db!(db, |p| {
            let mut tx = p
                .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                .await?;
            let seq: Option<i64> =
                sqlx::query_scalar("SELECT seq FROM tenant_seq WHERE tenant_id = $1")
                    .bind(tenant)
                    .fetch_optional(&mut *tx)
                    .await?;
            let query = sqlx::query(sqlx::AssertSqlSafe(sql));
            let query = bind_params!(query, &params, dialect);
            let out = read_page(query.fetch(&mut *tx), &q, n_keys, dialect).await?;
            tx.commit().await?;
            Ok((seq.unwrap_or(0), out))
        })
    }

    /// Changes after `since`, in seq order.
    /// Changes after `since`, in seq order, at most `limit`, only of `collections` when
    /// given; and how far the log was read: the seq the caller may continue after (the
    /// last change returned when `limit` were, else the log's end when the read began),
    /// so changes of other collections are skipped without being read.
    pub async fn changes_since(
        &self,
        scope: &Scope,
        since: i64,
        limit: i64,
        collections: Option<&[String]>,
    ) -> StoreResult<(Vec<Change>, i64)> {
        if let Some(fast) = self.fast_sqlite(scope).await? {
            return fast.changes_since(scope.tenant().id, since, limit, collections);
        }
        let (db, tenant) = self.tenant_db(scope).await?;
        // Seqs are taken under the tenant_seq row lock and committed in order, so every
        // change up to the end read here is already visible to the next statement.
        let (end, _) = self.change_seq(scope).await?;
        let super::Db::Postgres(p) = db else {
            return Err(StoreError::Internal(
                "SQLite reads the log through rusqlite",
            ));
        };
        let rows = sqlx::query(
            "SELECT seq, collection, doc_id, op, version, data, before, at, created_at, \
             before_updated_at FROM changes WHERE tenant_id = $1 AND seq > $2 AND seq <= $3 \
             AND ($5::text[] IS NULL OR collection = ANY($5)) ORDER BY seq LIMIT $4",
        )
        .bind(tenant)
        .bind(since)
        .bind(end)
        .bind(limit)
        .bind(collections.map(<[String]>::to_vec))
        .fetch_all(&p)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            out.push(Change {
                seq: r.try_get("seq")?,
                collection: r.try_get("collection")?,
                doc_id: r.try_get("doc_id")?,
                op: ChangeOp::parse(&r.try_get::<String, _>("op")?),
                version: r.try_get("version")?,
                data: r.try_get::<Option<Json<Value>>, _>("data")?.map(|j| j.0),
                before: r.try_get::<Option<Json<Value>>, _>("before")?.map(|j| j.0),
                at: r.try_get("at")?,
                created_at: r.try_get::<Option<i64>, _>("created_at")?.unwrap_or(0),
                before_updated_at: r.try_get("before_updated_at")?,
            });
        }
        let reached = match out.last() {
            Some(c) if out.len() as i64 >= limit => c.seq,
            _ => end.max(since),
        };
        Ok((out, reached))
    }

    /// Every collection that holds documents, with its count, by name. A full count per
    /// collection (the admin console's data browser shows it once per visit, not per page).
    pub async fn collection_counts(&self, scope: &Scope) -> StoreResult<Vec<(String, i64)>> {
        let (db, tenant) = self.tenant_db(scope).await?;
        Ok(on_db!(db, |p| sqlx::query_as(
            "SELECT collection, COUNT(*) FROM documents WHERE tenant_id = $1 \
             GROUP BY collection ORDER BY collection"
        )
        .bind(tenant)
        .fetch_all(&p)
        .await?))
    }

    /// (last seq, pruned through): the log holds the changes after `pruned_through`.
    pub async fn change_seq(&self, scope: &Scope) -> StoreResult<(i64, i64)> {
        let (db, tenant) = self.tenant_db(scope).await?;
        let row: Option<(i64, i64)> = on_db!(db, |p| sqlx::query_as(
            "SELECT seq, pruned_through FROM tenant_seq WHERE tenant_id = $1"
        )
        .bind(tenant)
        .fetch_optional(&p)
        .await?);
        Ok(row.unwrap_or((0, 0)))
    }

    /// Deletes changes older than `older_than_ms` and records how far the log was cut.
    pub async fn prune_changes(&self, scope: &Scope, older_than_ms: i64) -> StoreResult<u64> {
        let (db, tenant) = self.tenant_db(scope).await?;
        let begin = db.begin_write();
        on_db!(db, |p| {
            let mut tx = p.begin_with(begin).await?;
            let cut: Option<i64> =
                sqlx::query_scalar("SELECT MAX(seq) FROM changes WHERE tenant_id = $1 AND at < $2")
                    .bind(tenant)
                    .bind(older_than_ms)
                    .fetch_one(&mut *tx)
                    .await?;
            let Some(cut) = cut else {
                return Ok(0);
            };
            let n = sqlx::query("DELETE FROM changes WHERE tenant_id = $1 AND seq <= $2")
                .bind(tenant)
                .bind(cut)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            sqlx::query(
                "UPDATE tenant_seq SET pruned_through = $2 WHERE tenant_id = $1 AND pruned_through < $2",
            )
            .bind(tenant)
            .bind(cut)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(n)
        })
    }

    // ---- rule sets ----------------------------------------------------------------------

    /// Stores a rule set as the tenant's next version; returns that version.
    pub async fn insert_ruleset(&self, scope: &Scope, source: &str, by: &str) -> StoreResult<i64> {
        let (db, tenant) = self.tenant_db(scope).await?;
        let begin = db.begin_write();
        on_db!(db, |p| {
            let mut tx = p.begin_with(begin).await?;
            let version: i64 = sqlx::query_scalar(
                "SELECT COALESCE(MAX(version), 0) + 1 FROM rulesets WHERE tenant_id = $1",
            )
            .bind(tenant)
            .fetch_one(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO rulesets (tenant_id, version, source, created_at, created_by) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(tenant)
            .bind(version)
            .bind(source)
            .bind(now_ms())
            .bind(by)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(version)
        })
    }

    /// The active (latest) rule set: (version, source).
    pub async fn active_ruleset(&self, scope: &Scope) -> StoreResult<Option<(i64, String)>> {
        let (db, tenant) = self.tenant_db(scope).await?;
        Ok(on_db!(db, |p| {
            sqlx::query_as(
            "SELECT version, source FROM rulesets WHERE tenant_id = $1 ORDER BY version DESC LIMIT 1"
        )
        .bind(tenant)
        .fetch_optional(&p)
        .await?
        }))
    }

    /// The active rule set's version only (cheap freshness check for caches).
    pub async fn active_ruleset_version(&self, scope: &Scope) -> StoreResult<i64> {
        let (db, tenant) = self.tenant_db(scope).await?;
        let v: Option<i64> = on_db!(db, |p| sqlx::query_scalar(
            "SELECT MAX(version) FROM rulesets WHERE tenant_id = $1"
        )
        .bind(tenant)
        .fetch_one(&p)
        .await?);
        Ok(v.unwrap_or(0))
    }

    /// Makes the tenant's expression indexes exactly `indexes` (per collection, each a
    /// list of fields); indexes of this tenant not listed are dropped.
    pub async fn sync_indexes(
        &self,
        scope: &Scope,
        indexes: &[(String, Vec<Field>)],
    ) -> StoreResult<()> {
        let (db, tenant) = self.tenant_db(scope).await?;
        let dialect = dialect(&db);
        let prefix = format!("ix_t{tenant}_");
        let mut wanted: Vec<(String, String)> = Vec::new();
        for (collection, fields) in indexes {
            // Collection names are validated ^[a-z][a-z0-9_]{0,62}$ before they get here;
            // check again, since this one is inlined into DDL.
            if !crate::names::valid_collection(collection) {
                return Err(StoreError::Internal("invalid collection name in index"));
            }
            let mut exprs = Vec::new();
            for f in fields {
                exprs.push(
                    predicate_sql::field_sql(f, dialect)
                        .ok_or(StoreError::Internal("index path is not identifier-safe"))?,
                );
            }
            // The default order's keys follow the indexed paths (created_at, then the
            // tie-break: SQLite's rowid is in every index already), so "equality on the
            // paths, default order" reads exactly `limit` rows from the index. Without
            // them the planner walked the created_at index and skipped every other
            // owner's rows (13 ms of CPU for a list of a late owner's documents).
            // "+created" in the hash renames indexes made before, so they are rebuilt.
            let hash =
                &crate::crypto::sha256_hex(&format!("{collection}|{}|+created", exprs.join("|")))
                    [..16];
            let name = format!("{prefix}{hash}");
            let ddl = match dialect {
                Dialect::Sqlite => format!(
                    "CREATE INDEX IF NOT EXISTS {name} ON documents \
                     (tenant_id, collection, {}, created_at) WHERE collection = '{collection}'",
                    exprs.join(", ")
                ),
                Dialect::Postgres => format!(
                    "CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON documents \
                     (tenant_id, collection, {}, created_at, id) \
                     WHERE tenant_id = {tenant} AND collection = '{collection}'",
                    exprs.join(", ")
                ),
            };
            wanted.push((name, ddl));
        }
        let list_sql = match dialect {
            Dialect::Sqlite => {
                "SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE $1"
            }
            Dialect::Postgres => {
                "SELECT indexname FROM pg_indexes WHERE tablename = 'documents' AND indexname LIKE $1"
            }
        };
        on_db!(db, |p| {
            let existing: Vec<String> = sqlx::query_scalar(list_sql)
                .bind(format!("{prefix}%"))
                .fetch_all(&p)
                .await?;
            for (name, ddl) in &wanted {
                if !existing.contains(name) {
                    sqlx::query(sqlx::AssertSqlSafe(ddl.clone()))
                        .execute(&p)
                        .await?;
                }
            }
            for name in existing {
                if name.starts_with(&prefix) && !wanted.iter().any(|(n, _)| n == &name) {
                    sqlx::query(sqlx::AssertSqlSafe(format!("DROP INDEX IF EXISTS {name}")))
                        .execute(&p)
                        .await?;
                }
            }
            Ok(())
        })
    }

    /// The database's plan for a list query, one line per step (for tests and
    /// diagnostics: `EXPLAIN QUERY PLAN` on SQLite, `EXPLAIN` on PostgreSQL).
    pub async fn explain_list(&self, scope: &Scope, q: ListQuery<'_>) -> StoreResult<Vec<String>> {
        if let Some(fast) = self.fast_sqlite(scope).await? {
            let (sql, params) = list_sql(scope.tenant().id, &q, Dialect::Sqlite)?;
            return fast.explain(&sql, &params);
        }
        let (db, tenant) = self.tenant_db(scope).await?;
        let dialect = dialect(&db);
        let (sql, params) = list_sql(tenant, &q, dialect)?;
        on_db!(db, |p| {
            let query = sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN {sql}")));
            let query = bind_params!(query, &params, dialect);
            let rows = query.fetch_all(&p).await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                out.push(r.try_get::<String, _>(0)?);
            }
            Ok(out)
        })
    }

    /// Names of the tenant's expression indexes (for tests and diagnostics).
    pub async fn index_names(&self, scope: &Scope) -> StoreResult<Vec<String>> {
        let (db, tenant) = self.tenant_db(scope).await?;
        let list_sql = match dialect(&db) {
            Dialect::Sqlite => {
                "SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE $1 ORDER BY name"
            }
            Dialect::Postgres => {
                "SELECT indexname FROM pg_indexes WHERE tablename = 'documents' AND indexname LIKE $1 ORDER BY indexname"
            }
        };
        Ok(on_db!(db, |p| sqlx::query_scalar(list_sql)
            .bind(format!("ix_t{tenant}_%"))
            .fetch_all(&p)
            .await?))
    }
}

/// The SQL of a list query and its parameters (numbered from `$1`).
///
/// The tenant id (an integer from our own tables) and the collection (validated
/// `^[a-z][a-z0-9_]{0,62}$`) are written into the SQL as literals: a partial expression
/// index (`WHERE collection = 'votes'`) is only usable when the planner can see them, and
/// PostgreSQL's generic plans for prepared statements cannot see bound values. Everything
/// that comes from a request is bound.
fn list_sql(
    tenant: i64,
    q: &ListQuery<'_>,
    dialect: Dialect,
) -> StoreResult<(String, Vec<SqlParam>)> {
    if !crate::names::valid_collection(q.collection) {
        return Err(StoreError::Internal("invalid collection name"));
    }
    let mut params: Vec<SqlParam> = Vec::new();
    // `data_text`: the JSON as text on both backends, passed through to the response.
    let mut sql = String::from(match dialect {
        Dialect::Sqlite => {
            "SELECT id, data AS data_text, version, created_at, updated_at, rowid AS tie"
        }
        Dialect::Postgres => {
            "SELECT id, data::text AS data_text, version, created_at, updated_at, id AS tie"
        }
    });
    let mut key_exprs = Vec::with_capacity(q.order.len());
    for (i, k) in q.order.iter().enumerate() {
        let expr = sort_expr(&k.field, dialect)
            .ok_or(StoreError::Internal("order field cannot be sorted on"))?;
        sql.push_str(&format!(", {expr} AS k{i}"));
        key_exprs.push(expr);
    }
    sql.push_str(&format!(
        " FROM documents WHERE tenant_id = {tenant} AND collection = '{}'",
        q.collection
    ));
    let first = 1;
    if let Some(pred) = q.predicate {
        let rendered = predicate_sql::render(pred, dialect, first + params.len());
        // In WHERE, NULL (a CEL error) already excludes the row; no IS TRUE, which
        // would hide the equalities from the planner's index matching.
        sql.push_str(&format!(" AND ({})", rendered.sql));
        params.extend(rendered.params);
    }
    if let Some(after) = q.after {
        let cond = keyset_condition(
            &key_exprs,
            q.order,
            after,
            dialect,
            first + params.len(),
            &mut params,
        );
        sql.push_str(&format!(" AND ({cond})"));
    }
    sql.push_str(" ORDER BY ");
    for (expr, k) in key_exprs.iter().zip(q.order) {
        let dir = if k.desc { "DESC" } else { "ASC" };
        let integer = matches!(
            k.field,
            Field::CreatedAt | Field::UpdatedAt | Field::Version
        );
        match (q.sort_matches && integer, dialect) {
            (false, _) => sql.push_str(&format!("{expr} {dir}, ")),
            // the same values; an expression no index holds
            (true, Dialect::Sqlite) => sql.push_str(&format!("+{expr} {dir}, ")),
            (true, Dialect::Postgres) => sql.push_str(&format!("({expr} + 0) {dir}, ")),
        }
    }
    let (tie, tie_desc) = tie_break(q.order, dialect);
    sql.push_str(&format!(
        "{tie} {} LIMIT {}",
        if tie_desc { "DESC" } else { "ASC" },
        q.limit.clamp(1, 10_001)
    ));
    Ok((sql, params))
}

/// The SQL counting the rows a list's predicate matches, at most `cap + 1` of them
/// (literals as in `list_sql`).
fn count_sql(
    tenant: i64,
    collection: &str,
    predicate: Option<&Predicate>,
    cap: i64,
    dialect: Dialect,
) -> StoreResult<(String, Vec<SqlParam>)> {
    if !crate::names::valid_collection(collection) {
        return Err(StoreError::Internal("invalid collection name"));
    }
    let mut sql = format!(
        "SELECT count(*) FROM (SELECT 1 FROM documents WHERE tenant_id = {tenant} AND collection = '{collection}'"
    );
    let mut params = Vec::new();
    if let Some(pred) = predicate {
        let rendered = predicate_sql::render(pred, dialect, 1);
        sql.push_str(&format!(" AND ({})", rendered.sql));
        params = rendered.params;
    }
    sql.push_str(&format!(" LIMIT {}) AS matched", cap.max(0) + 1));
    Ok((sql, params))
}

/// The SQL of a sort key: exactly the expression an index on that path holds, so an
/// index can deliver rows in order. A missing path is SQL NULL, which sorts first on
/// SQLite and last (ascending) on PostgreSQL; the keyset condition follows each.
fn sort_expr(field: &Field, dialect: Dialect) -> Option<String> {
    predicate_sql::field_sql(field, dialect)
}

/// The rows of a list query, streamed, so a page of large documents stops at
/// `max_bytes` (see `read_enough`) instead of reading every row first.
async fn read_page<R, S>(
    mut rows: S,
    q: &ListQuery<'_>,
    n_keys: usize,
    dialect: Dialect,
) -> StoreResult<Vec<ListedDoc>>
where
    S: futures_util::Stream<Item = Result<R, sqlx::Error>> + Unpin,
    R: Row,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> f64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Json<Value>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    usize: sqlx::ColumnIndex<R>,
    for<'s> &'s str: sqlx::ColumnIndex<R>,
{
    let mut out = Vec::new();
    let mut bytes = 0usize;
    while let Some(r) = futures_util::TryStreamExt::try_next(&mut rows).await? {
        if read_enough(out.len(), bytes, q.max_bytes) {
            break;
        }
        let doc = listed_doc(&r, q, n_keys, dialect)?;
        bytes += doc.data.len();
        out.push(doc);
    }
    Ok(out)
}

/// One row of a list query (columns as `list_sql` selects them) as a listed document.
fn listed_doc<R: Row>(
    r: &R,
    q: &ListQuery<'_>,
    n_keys: usize,
    dialect: Dialect,
) -> Result<ListedDoc, sqlx::Error>
where
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> f64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Json<Value>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    usize: sqlx::ColumnIndex<R>,
    for<'s> &'s str: sqlx::ColumnIndex<R>,
{
    let mut keys = Vec::with_capacity(n_keys);
    for i in 0..n_keys {
        keys.push(read_sort_value(r, i, &q.order[i].field, dialect)?);
    }
    Ok(ListedDoc {
        collection: q.collection.to_string(),
        id: r.try_get("id")?,
        version: r.try_get("version")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        data: r.try_get("data_text")?,
        keys,
        tie: SortValue::Text(r.try_get("tie")?),
    })
}

fn read_sort_value<R: Row>(
    row: &R,
    i: usize,
    field: &Field,
    dialect: Dialect,
) -> Result<SortValue, sqlx::Error>
where
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> f64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Json<Value>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    usize: sqlx::ColumnIndex<R>,
{
    // Column 6 + i: after id, data, version, created_at, updated_at, tie.
    let col = 6 + i;
    match (field, dialect) {
        (Field::Id, _) => Ok(SortValue::Text(row.try_get(col)?)),
        (Field::Version | Field::CreatedAt | Field::UpdatedAt, _) => {
            Ok(SortValue::Int(row.try_get(col)?))
        }
        (Field::Doc(_), Dialect::Postgres) => Ok(row
            .try_get::<Option<Json<Value>>, _>(col)?
            .map_or(SortValue::Null, |j| SortValue::Json(j.0.to_string()))),
        (Field::Doc(_), Dialect::Sqlite) => {
            // json_extract yields whatever storage class the JSON value maps to.
            if let Ok(v) = row.try_get::<Option<i64>, _>(col) {
                return Ok(v.map_or(SortValue::Null, SortValue::Int));
            }
            if let Ok(v) = row.try_get::<Option<f64>, _>(col) {
                return Ok(v.map_or(SortValue::Null, SortValue::Float));
            }
            let v: Option<String> = row.try_get(col)?;
            Ok(v.map_or(SortValue::Null, SortValue::Text))
        }
    }
}

/// The unique last sort key, in the direction of the last key so that an index read
/// backwards delivers a descending order too: on SQLite the rowid, which every index
/// (expression indexes included) holds in that order within equal keys; on PostgreSQL
/// the id, the last column of every declared index.
fn tie_break(order: &[OrderKey], dialect: Dialect) -> (&'static str, bool) {
    let desc = order.last().is_some_and(|k| k.desc);
    match dialect {
        Dialect::Sqlite => ("rowid", desc),
        Dialect::Postgres => ("id", desc),
    }
}

/// `row > after` in the list's order (keys, then the tie-break), NULL-aware.
fn keyset_condition(
    exprs: &[String],
    order: &[OrderKey],
    after: &After,
    dialect: Dialect,
    first_param: usize,
    params: &mut Vec<SqlParam>,
) -> String {
    let mut next = first_param;
    let mut bind = |params: &mut Vec<SqlParam>, v: &SortValue| -> String {
        let (param, cast) = match v {
            SortValue::Null => return "NULL".to_string(),
            SortValue::Int(i) => (SqlParam::Int(*i), ""),
            SortValue::Float(f) => (SqlParam::Float(*f), ""),
            SortValue::Text(s) => (SqlParam::Text(s.clone()), ""),
            SortValue::Json(s) => (SqlParam::Json(s.clone()), "::jsonb"),
        };
        params.push(param);
        let s = format!("${next}{cast}");
        next += 1;
        s
    };
    // Built from the last key outwards: tail = (tie beyond its cursor value)
    let (tie, tie_desc) = tie_break(order, dialect);
    let tie_param = bind(params, &after.tie);
    let mut cond = format!("{tie} {} {tie_param}", if tie_desc { "<" } else { ">" });
    for (i, (expr, key)) in exprs.iter().zip(order).enumerate().rev() {
        let value = after.keys.get(i).cloned().unwrap_or(SortValue::Null);
        let is_null = matches!(value, SortValue::Null);
        let v = bind(params, &value);
        let (beyond, equal) = match dialect {
            Dialect::Postgres => {
                // NULL sorts after every value ascending (before, descending).
                let beyond = match (key.desc, is_null) {
                    (false, true) => "FALSE".to_string(),
                    (false, false) => format!("({expr} > {v} OR {expr} IS NULL)"),
                    (true, true) => format!("{expr} IS NOT NULL"),
                    (true, false) => format!("{expr} < {v}"),
                };
                (beyond, format!("{expr} IS NOT DISTINCT FROM {v}"))
            }
            Dialect::Sqlite => {
                // NULL sorts before every value.
                let beyond = match (key.desc, is_null) {
                    (false, true) => format!("{expr} IS NOT NULL"),
                    (false, false) => format!("{expr} > {v}"),
                    (true, true) => "FALSE".to_string(),
                    (true, false) => format!("({expr} < {v} OR {expr} IS NULL)"),
                };
                (beyond, format!("{expr} IS {v}"))
            }
        };
        cond = format!("{beyond} OR ({equal} AND ({cond}))");
    }
    cond
}
