//! The hot paths of the PostgreSQL backend through sqlx: document reads, lists,
//! snapshots, the change log, the group commit and the job outbox. The SQLite backend runs the same
//! paths through rusqlite (`store::sqlite`); what is cold (control tables, users,
//! secrets, rule sets, deploys, migrations) is written once for both dialects with
//! `on_db!`.

use sqlx::PgPool;

use super::functions::InvocationRow;
use super::{StoreResult, now_ms};

mod commit;
mod documents;
mod jobs;

pub(crate) use commit::apply_group;
pub(crate) use documents::{changes, count, explain, get_document, list, snapshot};
pub(crate) use jobs::{
    claim_jobs, fail_job, finish_jobs, pending_job_tenants, release_jobs, renew_claims,
};

/// Whether a session is live and its user enabled.
pub(crate) async fn session_active(
    pool: &PgPool,
    tenant: i64,
    session_id: &str,
    user_id: &str,
) -> StoreResult<bool> {
    let found: Option<i64> = sqlx::query_scalar(
        "SELECT s.expires_at FROM sessions s JOIN users u ON u.tenant_id = s.tenant_id AND u.id = s.user_id \
         WHERE s.tenant_id = $1 AND s.id = $2 AND s.user_id = $3 \
           AND s.revoked_at IS NULL AND s.expires_at > $4 AND u.disabled = FALSE",
    )
    .bind(tenant)
    .bind(session_id)
    .bind(user_id)
    .bind(now_ms())
    .fetch_optional(pool)
    .await?;
    Ok(found.is_some())
}

/// Appends invocation records (one multi-row statement per 100).
pub(crate) async fn insert_invocations(
    pool: &PgPool,
    tenant: i64,
    rows: &[InvocationRow],
) -> StoreResult<()> {
    for chunk in rows.chunks(100) {
        let mut sql = String::from(
            "INSERT INTO invocations (tenant_id, id, function, trigger, version, started_at, \
             duration_us, outcome, error, logs) VALUES ",
        );
        for i in 0..chunk.len() {
            if i > 0 {
                sql.push_str(", ");
            }
            let b = i * 9 + 2;
            sql.push_str(&format!(
                "($1, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
                b,
                b + 1,
                b + 2,
                b + 3,
                b + 4,
                b + 5,
                b + 6,
                b + 7,
                b + 8
            ));
        }
        sql.push_str(" ON CONFLICT DO NOTHING");
        // Only placeholders are interpolated; every value is bound.
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(tenant);
        for r in chunk {
            q = q
                .bind(&r.id)
                .bind(&r.function)
                .bind(&r.trigger)
                .bind(r.version)
                .bind(r.started_at)
                .bind(r.duration_us)
                .bind(&r.outcome)
                .bind(&r.error)
                .bind(r.logs.to_string());
        }
        q.execute(pool).await?;
    }
    Ok(())
}
