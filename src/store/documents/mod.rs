//! Documents, the change log and rule sets of a tenant.
//!
//! A write is one transaction: the document row, the tenant's next `seq` (a counter row
//! whose lock serialises the tenant's writers until commit, so seq order is commit order
//! on both backends) and the change row. The caller decides what to write from the
//! document as it is inside the transaction (locked on PostgreSQL, under SQLite's write
//! lock), so rule checks and conditional writes cannot race.

mod changes;
mod list_sql;
mod types;

use serde_json::Value;
use sqlx::Row;
use sqlx::types::Json;

use list_sql::{count_sql, list_sql};
pub use types::*;

use super::commit::{AnyError, ErasedWrite, UnitError};
use super::predicate_sql::{Dialect, SqlParam};
use super::{Db, Store, StoreError, StoreResult, on_db};
use crate::query::{Field, Predicate};
use crate::tenancy::Scope;

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
