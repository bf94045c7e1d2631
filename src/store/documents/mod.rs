//! Documents of a tenant: read one, write a unit, list, count and snapshot.
//!
//! A write is one transaction: the document row, the tenant's next `seq` (a counter row
//! whose lock serialises the tenant's writers until commit, so seq order is commit order
//! on both backends) and the change row. The caller decides what to write from the
//! document as it is inside the transaction (locked on PostgreSQL, under SQLite's write
//! lock), so rule checks and conditional writes cannot race.
//!
//! Each read goes to the tenant's hot-path backend (`store::sqlite` through rusqlite,
//! `store::postgres` through sqlx); the SQL of lists is built once (`list_sql`).

mod changes;
mod list_sql;
mod types;

use list_sql::{count_sql, list_sql};
pub use types::*;

use super::commit::{AnyError, ErasedWrite, UnitError};
use super::{Store, StoreError, StoreResult, TenantData, postgres};
use crate::query::Predicate;
use crate::tenancy::Scope;

impl Store {
    pub async fn get_document(
        &self,
        scope: &Scope,
        collection: &str,
        id: &str,
    ) -> StoreResult<Option<StoredDoc>> {
        match self.tenant_data(scope).await? {
            (TenantData::Sqlite(file), tenant) => file.get_document(tenant, collection, id),
            (TenantData::Postgres(pool), tenant) => {
                postgres::get_document(&pool, tenant, collection, id).await
            }
        }
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
        let (data, tenant) = self.tenant_data(scope).await?;
        let (sql, params) = list_sql(tenant, &q, data.dialect())?;
        tracing::trace!(%sql, ?params, "list");
        match data {
            TenantData::Sqlite(file) => file.list(&sql, &params, &q),
            TenantData::Postgres(pool) => postgres::list(&pool, sql, &params, &q).await,
        }
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
        let (data, tenant) = self.tenant_data(scope).await?;
        let (sql, params) = count_sql(tenant, collection, predicate, cap, data.dialect())?;
        match data {
            TenantData::Sqlite(file) => file.count(&sql, &params),
            TenantData::Postgres(pool) => postgres::count(&pool, sql, &params).await,
        }
    }

    /// What a list query matches and the log position it reflects, from one snapshot:
    /// no change at or below the returned seq is missing from the documents, and none
    /// above it is in them.
    pub async fn snapshot(
        &self,
        scope: &Scope,
        q: ListQuery<'_>,
    ) -> StoreResult<(i64, Vec<ListedDoc>)> {
        let (data, tenant) = self.tenant_data(scope).await?;
        let (sql, params) = list_sql(tenant, &q, data.dialect())?;
        match data {
            TenantData::Sqlite(file) => file.snapshot(tenant, &sql, &params, &q),
            TenantData::Postgres(pool) => postgres::snapshot(&pool, tenant, sql, &params, &q).await,
        }
    }

    /// The database's plan for a list query, one line per step (for tests and
    /// diagnostics: `EXPLAIN QUERY PLAN` on SQLite, `EXPLAIN` on PostgreSQL).
    pub async fn explain_list(&self, scope: &Scope, q: ListQuery<'_>) -> StoreResult<Vec<String>> {
        let (data, tenant) = self.tenant_data(scope).await?;
        let (sql, params) = list_sql(tenant, &q, data.dialect())?;
        match data {
            TenantData::Sqlite(file) => file.explain(&sql, &params),
            TenantData::Postgres(pool) => postgres::explain(&pool, &sql, &params).await,
        }
    }
}
