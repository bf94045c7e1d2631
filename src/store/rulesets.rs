//! Rule sets (versioned sources, the latest active) and the expression indexes their
//! index hints ask for.

use super::predicate_sql::{self, Dialect};
use super::{Db, Store, StoreError, StoreResult, TenantData, now_ms, on_db};
use crate::names::FieldPath;
use crate::tenancy::Scope;

fn dialect(db: &Db) -> Dialect {
    match db {
        Db::Sqlite(_) => Dialect::Sqlite,
        Db::Postgres(_) => Dialect::Postgres,
    }
}

impl Store {
    /// Stores a rule set as the tenant's next version; returns that version.
    pub async fn insert_ruleset(&self, scope: &Scope, source: &str, by: &str) -> StoreResult<i64> {
        let (db, tenant) = self.tenant_db(scope).await?;
        // One statement takes the next version and inserts it: atomic on SQLite, and on
        // PostgreSQL a concurrent insert of the same version fails on the primary key.
        Ok(on_db!(db, |p| sqlx::query_scalar(
            "INSERT INTO rulesets (tenant_id, version, source, created_at, created_by) \
             SELECT $1, COALESCE(MAX(version), 0) + 1, $2, $3, $4 FROM rulesets \
             WHERE tenant_id = $1 RETURNING version"
        )
        .bind(tenant)
        .bind(source)
        .bind(now_ms())
        .bind(by)
        .fetch_one(&p)
        .await?))
    }

    /// The active (latest) rule set: (version, source). On SQLite through the hot path's
    /// connections, as `active_ruleset_version`.
    pub async fn active_ruleset(&self, scope: &Scope) -> StoreResult<Option<(i64, String)>> {
        match self.tenant_data(scope).await? {
            (TenantData::Sqlite(file), tenant) => file.active_ruleset(tenant),
            (TenantData::Postgres(pool), tenant) => Ok(sqlx::query_as(
                "SELECT version, source FROM rulesets WHERE tenant_id = $1 \
                 ORDER BY version DESC LIMIT 1",
            )
            .bind(tenant)
            .fetch_optional(&pool)
            .await?),
        }
    }

    /// The tenant's rule set versions, newest first, at most `limit`:
    /// (version, created_at ms, created_by).
    pub async fn ruleset_versions(
        &self,
        scope: &Scope,
        limit: i64,
    ) -> StoreResult<Vec<(i64, i64, String)>> {
        let (db, tenant) = self.tenant_db(scope).await?;
        Ok(on_db!(db, |p| sqlx::query_as(
            "SELECT version, created_at, created_by FROM rulesets WHERE tenant_id = $1 \
             ORDER BY version DESC LIMIT $2"
        )
        .bind(tenant)
        .bind(limit)
        .fetch_all(&p)
        .await?))
    }

    /// One stored version's source, if that version exists.
    pub async fn ruleset_source(&self, scope: &Scope, version: i64) -> StoreResult<Option<String>> {
        let (db, tenant) = self.tenant_db(scope).await?;
        Ok(on_db!(db, |p| sqlx::query_scalar(
            "SELECT source FROM rulesets WHERE tenant_id = $1 AND version = $2"
        )
        .bind(tenant)
        .bind(version)
        .fetch_optional(&p)
        .await?))
    }

    /// The active rule set's version only (cheap freshness check for caches), asked by
    /// every request past the rules cache's TTL: on SQLite through the hot path's
    /// connections, so a closed tenant's first request opens one connection, not two.
    pub async fn active_ruleset_version(&self, scope: &Scope) -> StoreResult<i64> {
        match self.tenant_data(scope).await? {
            (TenantData::Sqlite(file), tenant) => file.active_ruleset_version(tenant),
            (TenantData::Postgres(pool), tenant) => {
                let v: Option<i64> =
                    sqlx::query_scalar("SELECT MAX(version) FROM rulesets WHERE tenant_id = $1")
                        .bind(tenant)
                        .fetch_one(&pool)
                        .await?;
                Ok(v.unwrap_or(0))
            }
        }
    }

    /// Makes the tenant's expression indexes exactly `indexes` (per collection, each a
    /// list of document paths); indexes of this tenant not listed are dropped.
    pub async fn sync_indexes(
        &self,
        scope: &Scope,
        indexes: &[(String, Vec<FieldPath>)],
    ) -> StoreResult<()> {
        let (db, tenant) = self.tenant_db(scope).await?;
        let dialect = dialect(&db);
        let prefix = format!("ix_t{tenant}_");
        let mut wanted: Vec<(String, String)> = Vec::new();
        for (collection, paths) in indexes {
            // Collection names are validated ^[a-z][a-z0-9_]{0,62}$ before they get here;
            // check again, since this one is inlined into DDL.
            if !crate::names::valid_collection(collection) {
                return Err(StoreError::Internal("invalid collection name in index"));
            }
            let exprs: Vec<String> = paths
                .iter()
                .map(|p| predicate_sql::path_sql(p, dialect))
                .collect();
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
