//! Function deploys, the active deploy of each tenant, and the invocation log.

use sqlx::Row;

use super::{Store, StoreError, StoreResult, TenantData, now_ms, on_db, postgres};
use crate::tenancy::Scope;

/// One stored deploy version.
#[derive(Clone, Debug)]
pub struct DeployRow {
    pub version: i64,
    /// The parsed manifest, as JSON text.
    pub manifest: String,
    /// `{"functions/x.js": source}` as JSON text.
    pub files: String,
    pub rules: Option<String>,
    pub created_at: i64,
    pub created_by: String,
}

/// A deploy version in a history listing.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct DeploySummary {
    pub version: i64,
    pub created_at: i64,
    pub created_by: String,
    pub active: bool,
}

/// One recorded invocation.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct InvocationRow {
    pub id: String,
    pub function: String,
    /// http | before | after
    pub trigger: String,
    pub version: i64,
    /// Start, in ms since the Unix epoch.
    pub started_at: i64,
    pub duration_us: i64,
    /// ok | error | timeout | out_of_memory | rejected
    pub outcome: String,
    pub error: Option<String>,
    /// Captured log lines: `[{"level": "info", "message": "..."}]`.
    #[schema(value_type = Vec<std::collections::HashMap<String, serde_json::Value>>)]
    pub logs: serde_json::Value,
}

impl Store {
    /// Stores a deploy as the tenant's next version (not yet active); returns the version.
    pub async fn insert_deploy(
        &self,
        scope: &Scope,
        manifest: &str,
        files: &str,
        rules: Option<&str>,
        by: &str,
    ) -> StoreResult<i64> {
        let (db, tenant) = self.tenant_db(scope).await?;
        // One statement, as `insert_ruleset`.
        Ok(on_db!(db, |p| sqlx::query_scalar(
            "INSERT INTO deploys (tenant_id, version, manifest, files, rules, created_at, \
             created_by) SELECT $1, COALESCE(MAX(version), 0) + 1, $2, $3, $4, $5, $6 \
             FROM deploys WHERE tenant_id = $1 RETURNING version"
        )
        .bind(tenant)
        .bind(manifest)
        .bind(files)
        .bind(rules)
        .bind(now_ms())
        .bind(by)
        .fetch_one(&p)
        .await?))
    }

    /// Makes `version` the tenant's active deploy; NotFound when it does not exist.
    pub async fn activate_deploy(&self, scope: &Scope, version: i64, by: &str) -> StoreResult<()> {
        let (db, tenant) = self.tenant_db(scope).await?;
        let begin = db.begin_write();
        on_db!(db, |p| {
            let mut tx = p.begin_with(begin).await?;
            let exists: Option<i64> = sqlx::query_scalar(
                "SELECT version FROM deploys WHERE tenant_id = $1 AND version = $2",
            )
            .bind(tenant)
            .bind(version)
            .fetch_optional(&mut *tx)
            .await?;
            if exists.is_none() {
                return Err(StoreError::NotFound);
            }
            sqlx::query(
                "INSERT INTO deploy_active (tenant_id, version, activated_at, activated_by) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id) DO UPDATE SET \
                 version = excluded.version, activated_at = excluded.activated_at, \
                 activated_by = excluded.activated_by",
            )
            .bind(tenant)
            .bind(version)
            .bind(now_ms())
            .bind(by)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    /// The active deploy version (0 when none was ever activated). One indexed read:
    /// caches use it as their freshness check.
    pub async fn active_deploy_version(&self, scope: &Scope) -> StoreResult<i64> {
        let (db, tenant) = self.tenant_db(scope).await?;
        let v: Option<i64> = on_db!(db, |p| sqlx::query_scalar(
            "SELECT version FROM deploy_active WHERE tenant_id = $1"
        )
        .bind(tenant)
        .fetch_optional(&p)
        .await?);
        Ok(v.unwrap_or(0))
    }

    pub async fn get_deploy(&self, scope: &Scope, version: i64) -> StoreResult<Option<DeployRow>> {
        let (db, tenant) = self.tenant_db(scope).await?;
        on_db!(db, |p| {
            let row = sqlx::query(
                "SELECT version, manifest, files, rules, created_at, created_by FROM deploys \
                 WHERE tenant_id = $1 AND version = $2",
            )
            .bind(tenant)
            .bind(version)
            .fetch_optional(&p)
            .await?;
            row.map(|r| -> StoreResult<DeployRow> {
                Ok(DeployRow {
                    version: r.try_get(0)?,
                    manifest: r.try_get(1)?,
                    files: r.try_get(2)?,
                    rules: r.try_get(3)?,
                    created_at: r.try_get(4)?,
                    created_by: r.try_get(5)?,
                })
            })
            .transpose()
        })
    }

    /// Every deploy of the tenant, newest first.
    pub async fn list_deploys(&self, scope: &Scope) -> StoreResult<Vec<DeploySummary>> {
        let (db, tenant) = self.tenant_db(scope).await?;
        on_db!(db, |p| {
            let rows = sqlx::query(
                "SELECT d.version, d.created_at, d.created_by, \
                 CASE WHEN a.version = d.version THEN 1 ELSE 0 END \
                 FROM deploys d LEFT JOIN deploy_active a ON a.tenant_id = d.tenant_id \
                 WHERE d.tenant_id = $1 ORDER BY d.version DESC",
            )
            .bind(tenant)
            .fetch_all(&p)
            .await?;
            rows.iter()
                .map(|r| -> StoreResult<DeploySummary> {
                    let active: i32 = r.try_get(3)?;
                    Ok(DeploySummary {
                        version: r.try_get(0)?,
                        created_at: r.try_get(1)?,
                        created_by: r.try_get(2)?,
                        active: active == 1,
                    })
                })
                .collect()
        })
    }

    /// Appends invocation records (one multi-row statement per call).
    pub async fn insert_invocations(
        &self,
        scope: &Scope,
        rows: &[InvocationRow],
    ) -> StoreResult<()> {
        if rows.is_empty() {
            return Ok(());
        }
        match self.tenant_data(scope).await? {
            (TenantData::Sqlite(file), tenant) => file.insert_invocations(tenant, rows),
            (TenantData::Postgres(pool), tenant) => {
                postgres::insert_invocations(&pool, tenant, rows).await
            }
        }
    }

    /// A page of invocations, newest first; `before` is the last id of the previous page.
    pub async fn list_invocations(
        &self,
        scope: &Scope,
        function: Option<&str>,
        before: Option<&str>,
        limit: i64,
    ) -> StoreResult<Vec<InvocationRow>> {
        let (db, tenant) = self.tenant_db(scope).await?;
        on_db!(db, |p| {
            let rows = sqlx::query(
                "SELECT id, function, trigger, version, started_at, duration_us, outcome, error, \
                 logs FROM invocations WHERE tenant_id = $1 \
                 AND ($2 IS NULL OR function = $2) AND ($3 IS NULL OR id < $3) \
                 ORDER BY id DESC LIMIT $4",
            )
            .bind(tenant)
            .bind(function)
            .bind(before)
            .bind(limit)
            .fetch_all(&p)
            .await?;
            rows.iter()
                .map(|r| -> StoreResult<InvocationRow> {
                    let logs: String = r.try_get(8)?;
                    Ok(InvocationRow {
                        id: r.try_get(0)?,
                        function: r.try_get(1)?,
                        trigger: r.try_get(2)?,
                        version: r.try_get(3)?,
                        started_at: r.try_get(4)?,
                        duration_us: r.try_get(5)?,
                        outcome: r.try_get(6)?,
                        error: r.try_get(7)?,
                        logs: serde_json::from_str(&logs).unwrap_or_default(),
                    })
                })
                .collect()
        })
    }
}
