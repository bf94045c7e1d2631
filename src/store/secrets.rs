//! A tenant's secrets: sealed by `secrets::SecretsService` before they get here; the store
//! only ever sees nonces and ciphertexts.

use super::{BackendKind, Store, StoreResult, now_ms, on_db, one_row};
use crate::tenancy::Scope;

/// One stored secret, still sealed.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SecretRow {
    pub name: String,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
    pub updated_at: i64,
}

/// A secret's name and last write, without its value.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SecretMeta {
    pub name: String,
    pub updated_at: i64,
}

/// What `put_secret` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretPut {
    Created {
        updated_at: i64,
    },
    Updated {
        updated_at: i64,
    },
    /// The name is new and the tenant already holds `max` secrets: nothing was written.
    LimitReached,
}

impl Store {
    /// Creates or replaces a secret, unless that would take the tenant past `max` secrets.
    /// The count and the write are one transaction, serialised per tenant (SQLite: the
    /// write lock; PostgreSQL: a transaction-scoped advisory lock on the tenant).
    pub async fn put_secret(
        &self,
        scope: &Scope,
        name: &str,
        nonce: &[u8],
        ciphertext: &[u8],
        max: i64,
    ) -> StoreResult<SecretPut> {
        let (db, tenant) = self.tenant_db(scope).await?;
        let begin = db.begin_write();
        let postgres = self.kind() == BackendKind::Postgres;
        let now = now_ms();
        on_db!(db, |p| {
            let mut tx = p.begin_with(begin).await?;
            if postgres {
                sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('plinth:secrets', $1))")
                    .bind(tenant)
                    .execute(&mut *tx)
                    .await?;
            }
            let (count, exists): (i64, i64) = sqlx::query_as(
                "SELECT COUNT(*), COUNT(*) FILTER (WHERE name = $2) FROM secrets \
                 WHERE tenant_id = $1",
            )
            .bind(tenant)
            .bind(name)
            .fetch_one(&mut *tx)
            .await?;
            if exists == 0 && count >= max {
                return Ok(SecretPut::LimitReached);
            }
            sqlx::query(
                "INSERT INTO secrets (tenant_id, name, nonce, ciphertext, updated_at) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (tenant_id, name) DO UPDATE SET nonce = excluded.nonce, \
                 ciphertext = excluded.ciphertext, updated_at = excluded.updated_at",
            )
            .bind(tenant)
            .bind(name)
            .bind(nonce)
            .bind(ciphertext)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(if exists == 0 {
                SecretPut::Created { updated_at: now }
            } else {
                SecretPut::Updated { updated_at: now }
            })
        })
    }

    /// Deletes a secret; `NotFound` when the tenant has none of this name.
    pub async fn delete_secret(&self, scope: &Scope, name: &str) -> StoreResult<()> {
        let (db, tenant) = self.tenant_db(scope).await?;
        let n = on_db!(db, |p| sqlx::query(
            "DELETE FROM secrets WHERE tenant_id = $1 AND name = $2"
        )
        .bind(tenant)
        .bind(name)
        .execute(&p)
        .await?
        .rows_affected());
        one_row(n)
    }

    /// Names and update times of the tenant's secrets, by name; never values.
    pub async fn list_secrets(&self, scope: &Scope) -> StoreResult<Vec<SecretMeta>> {
        let (db, tenant) = self.tenant_db(scope).await?;
        Ok(on_db!(db, |p| sqlx::query_as(
            "SELECT name, updated_at FROM secrets WHERE tenant_id = $1 ORDER BY name"
        )
        .bind(tenant)
        .fetch_all(&p)
        .await?))
    }

    /// Every secret of the tenant, sealed, by name (for decryption by the service).
    pub async fn load_secrets(&self, scope: &Scope) -> StoreResult<Vec<SecretRow>> {
        let (db, tenant) = self.tenant_db(scope).await?;
        Ok(on_db!(db, |p| sqlx::query_as(
            "SELECT name, nonce, ciphertext, updated_at FROM secrets \
             WHERE tenant_id = $1 ORDER BY name"
        )
        .bind(tenant)
        .fetch_all(&p)
        .await?))
    }
}
