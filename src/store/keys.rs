//! A tenant's service keys (stored hashed; the prefix stays visible for lookup and lists).

use super::{Store, StoreError, StoreResult, TenantData, now_ms, on_db, on_unique};
use crate::tenancy::Scope;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ServiceKeyRow {
    pub id: String,
    pub name: String,
    pub prefix: String,
    pub key_hash: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

impl Store {
    pub async fn create_service_key(
        &self,
        scope: &Scope,
        id: &str,
        name: &str,
        prefix: &str,
        key_hash: &str,
    ) -> StoreResult<ServiceKeyRow> {
        let (db, tenant) = self.tenant_db(scope).await?;
        Ok(on_db!(db, |p| {
            sqlx::query_as(
            "INSERT INTO service_keys (tenant_id, id, name, prefix, key_hash, created_at, revoked_at) \
             VALUES ($1, $2, $3, $4, $5, $6, NULL) \
             RETURNING id, name, prefix, key_hash, created_at, revoked_at"
        )
        .bind(tenant)
        .bind(id)
        .bind(name)
        .bind(prefix)
        .bind(key_hash)
        .bind(now_ms())
        .fetch_one(&p)
        .await
        .map_err(|e| on_unique(e, "prefix", "key prefix collision"))?
        }))
    }

    /// All keys of the tenant, revoked ones included, oldest first.
    pub async fn list_service_keys(&self, scope: &Scope) -> StoreResult<Vec<ServiceKeyRow>> {
        let (db, tenant) = self.tenant_db(scope).await?;
        Ok(on_db!(db, |p| sqlx::query_as(
            "SELECT id, name, prefix, key_hash, created_at, revoked_at FROM service_keys \
             WHERE tenant_id = $1 ORDER BY created_at, id"
        )
        .bind(tenant)
        .fetch_all(&p)
        .await?))
    }

    /// The live (unrevoked) key with this prefix. Asked by every request with a service
    /// key (past the cache's TTL): on SQLite through the hot path's connections.
    pub async fn find_service_key(
        &self,
        scope: &Scope,
        prefix: &str,
    ) -> StoreResult<Option<ServiceKeyRow>> {
        match self.tenant_data(scope).await? {
            (TenantData::Sqlite(file), tenant) => file.find_service_key(tenant, prefix),
            (TenantData::Postgres(pool), tenant) => Ok(sqlx::query_as(
                "SELECT id, name, prefix, key_hash, created_at, revoked_at FROM service_keys \
                 WHERE tenant_id = $1 AND prefix = $2 AND revoked_at IS NULL",
            )
            .bind(tenant)
            .bind(prefix)
            .fetch_optional(&pool)
            .await?),
        }
    }

    pub async fn revoke_service_key(&self, scope: &Scope, id: &str) -> StoreResult<ServiceKeyRow> {
        let (db, tenant) = self.tenant_db(scope).await?;
        let row: Option<ServiceKeyRow> = on_db!(db, |p| sqlx::query_as(
            "UPDATE service_keys SET revoked_at = COALESCE(revoked_at, $3) \
             WHERE tenant_id = $1 AND id = $2 \
             RETURNING id, name, prefix, key_hash, created_at, revoked_at"
        )
        .bind(tenant)
        .bind(id)
        .bind(now_ms())
        .fetch_optional(&p)
        .await?);
        row.ok_or(StoreError::NotFound)
    }
}
