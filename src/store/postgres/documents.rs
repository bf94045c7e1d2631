//! Document reads on PostgreSQL: one document, a list page (streamed), a count, a
//! snapshot with its log position, the change log and a query plan. The SQL of lists
//! and counts is built by `documents::list_sql`.

use serde_json::Value;
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::types::Json;
use sqlx::{PgPool, Postgres, Row};

use crate::query::OrderField;
use crate::store::StoreResult;
use crate::store::documents::{
    Change, ChangeOp, ListQuery, ListedDoc, SortValue, StoredDoc, read_enough,
};
use crate::store::predicate_sql::SqlParam;

type Query<'q> = sqlx::query::Query<'q, Postgres, PgArguments>;

/// A document from `SELECT id, data, version, created_at, updated_at`.
fn doc_from_row(row: &PgRow, collection: &str) -> Result<StoredDoc, sqlx::Error> {
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
pub(super) fn doc_from_row_at(row: &PgRow) -> Result<StoredDoc, sqlx::Error> {
    let collection: String = row.try_get("collection")?;
    doc_from_row(row, &collection)
}

/// Binds rendered parameters in order.
fn bind_params<'q>(mut q: Query<'q>, params: &[SqlParam]) -> Query<'q> {
    for p in params {
        q = match p {
            SqlParam::Bool(b) => q.bind(*b),
            SqlParam::Int(i) => q.bind(*i),
            SqlParam::Float(f) => q.bind(*f),
            SqlParam::Text(s) | SqlParam::Json(s) => q.bind(s.clone()),
        };
    }
    q
}

pub(crate) async fn get_document(
    pool: &PgPool,
    tenant: i64,
    collection: &str,
    id: &str,
) -> StoreResult<Option<StoredDoc>> {
    let row = sqlx::query(
        "SELECT id, data, version, created_at, updated_at FROM documents \
         WHERE tenant_id = $1 AND collection = $2 AND id = $3",
    )
    .bind(tenant)
    .bind(collection)
    .bind(id)
    .fetch_optional(pool)
    .await?;
    Ok(match row {
        Some(r) => Some(doc_from_row(&r, collection)?),
        None => None,
    })
}

/// Runs a list query built by `documents::list_sql`.
pub(crate) async fn list(
    pool: &PgPool,
    sql: String,
    params: &[SqlParam],
    q: &ListQuery<'_>,
) -> StoreResult<Vec<ListedDoc>> {
    let query = bind_params(sqlx::query(sqlx::AssertSqlSafe(sql)), params);
    read_page(query.fetch(pool), q).await
}

/// The one integer a query built by `documents::count_sql` answers.
pub(crate) async fn count(pool: &PgPool, sql: String, params: &[SqlParam]) -> StoreResult<i64> {
    let query = bind_params(sqlx::query(sqlx::AssertSqlSafe(sql)), params);
    Ok(query.fetch_one(pool).await?.try_get(0)?)
}

/// `list`, plus the tenant's log position, both from one REPEATABLE READ snapshot.
pub(crate) async fn snapshot(
    pool: &PgPool,
    tenant: i64,
    sql: String,
    params: &[SqlParam],
    q: &ListQuery<'_>,
) -> StoreResult<(i64, Vec<ListedDoc>)> {
    let mut tx = pool
        .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await?;
    let seq: Option<i64> = sqlx::query_scalar("SELECT seq FROM tenant_seq WHERE tenant_id = $1")
        .bind(tenant)
        .fetch_optional(&mut *tx)
        .await?;
    let query = bind_params(sqlx::query(sqlx::AssertSqlSafe(sql)), params);
    let out = read_page(query.fetch(&mut *tx), q).await?;
    tx.commit().await?;
    Ok((seq.unwrap_or(0), out))
}

/// `EXPLAIN` of a list query, one line per step.
pub(crate) async fn explain(
    pool: &PgPool,
    sql: &str,
    params: &[SqlParam],
) -> StoreResult<Vec<String>> {
    let query = sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN {sql}")));
    let rows = bind_params(query, params).fetch_all(pool).await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        out.push(r.try_get::<String, _>(0)?);
    }
    Ok(out)
}

/// The changes in `(since, end]`, at most `limit`, only of `collections` when given.
pub(crate) async fn changes(
    pool: &PgPool,
    tenant: i64,
    (since, end): (i64, i64),
    limit: i64,
    collections: Option<&[String]>,
) -> StoreResult<Vec<Change>> {
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
    .fetch_all(pool)
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
    Ok(out)
}

/// The rows of a list query, streamed, so a page of large documents stops at
/// `max_bytes` (see `read_enough`) instead of reading every row first.
async fn read_page<S>(mut rows: S, q: &ListQuery<'_>) -> StoreResult<Vec<ListedDoc>>
where
    S: futures_util::Stream<Item = Result<PgRow, sqlx::Error>> + Unpin,
{
    let mut out = Vec::new();
    let mut bytes = 0usize;
    while let Some(r) = futures_util::TryStreamExt::try_next(&mut rows).await? {
        if read_enough(out.len(), bytes, q.max_bytes) {
            break;
        }
        let doc = listed_doc(&r, q)?;
        bytes += doc.data.len();
        out.push(doc);
    }
    Ok(out)
}

/// One row of a list query (columns as `list_sql` selects them) as a listed document.
fn listed_doc(r: &PgRow, q: &ListQuery<'_>) -> Result<ListedDoc, sqlx::Error> {
    let mut keys = Vec::with_capacity(q.order.len());
    for (i, key) in q.order.iter().enumerate() {
        keys.push(read_sort_value(r, i, &key.field)?);
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

fn read_sort_value(row: &PgRow, i: usize, field: &OrderField) -> Result<SortValue, sqlx::Error> {
    // Column 6 + i: after id, data, version, created_at, updated_at, tie.
    let col = 6 + i;
    match field {
        OrderField::Id => Ok(SortValue::Text(row.try_get(col)?)),
        OrderField::Version | OrderField::CreatedAt | OrderField::UpdatedAt => {
            Ok(SortValue::Int(row.try_get(col)?))
        }
        OrderField::Doc(_) => Ok(row
            .try_get::<Option<Json<Value>>, _>(col)?
            .map_or(SortValue::Null, |j| SortValue::Json(j.0.to_string()))),
    }
}
