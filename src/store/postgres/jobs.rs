//! The job outbox on PostgreSQL: claims skip rows other runners hold locked.

use sqlx::{PgPool, Row};

use crate::store::StoreResult;
use crate::store::jobs::{JobRef, JobRow, LEASE_RAN_OUT};

/// Every tenant with pending jobs, with when its next one is due: the hook runner's
/// rescan, one query for all tenants (an index-only scan of `jobs_due`).
pub(crate) async fn pending_job_tenants(pool: &PgPool) -> StoreResult<Vec<(i64, i64)>> {
    Ok(sqlx::query_as(
        "SELECT tenant_id, MIN(run_at) FROM jobs WHERE state = 'pending' GROUP BY tenant_id",
    )
    .fetch_all(pool)
    .await?)
}

/// `Store::claim_jobs` at time `now`.
pub(crate) async fn claim_jobs(
    pool: &PgPool,
    tenant: i64,
    now: i64,
    lease_ms: i64,
    limit: i64,
) -> StoreResult<(Vec<JobRow>, Option<i64>)> {
    let mut tx = pool.begin().await?;
    // Due again at its last attempt: that attempt's claim ran out. It goes dead rather
    // than round again (see `LEASE_RAN_OUT`).
    let dead = sqlx::query(
        "UPDATE jobs SET state = 'dead', run_at = $2, lease_until = NULL, last_error = $3 \
         WHERE tenant_id = $1 AND id IN (SELECT id FROM jobs WHERE tenant_id = $1 \
         AND state = 'pending' AND run_at <= $2 AND attempts >= max_attempts \
         FOR UPDATE SKIP LOCKED)",
    )
    .bind(tenant)
    .bind(now)
    .bind(LEASE_RAN_OUT)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if dead > 0 {
        tracing::warn!(tenant, jobs = dead, "hook jobs dead: {LEASE_RAN_OUT}");
    }
    // A claim moves run_at to the end of the lease: the job is due again only if its
    // runner does not finish it by then. So "due" is one indexed range on run_at.
    let rows = sqlx::query(
        "UPDATE jobs SET run_at = $3, lease_until = $3, attempts = attempts + 1 \
         WHERE tenant_id = $1 AND id IN (SELECT id FROM jobs WHERE tenant_id = $1 \
         AND state = 'pending' AND run_at <= $2 AND attempts < max_attempts \
         ORDER BY run_at LIMIT $4 FOR UPDATE SKIP LOCKED) \
         RETURNING id, function, event, depth, attempts, max_attempts",
    )
    .bind(tenant)
    .bind(now)
    .bind(now + lease_ms)
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    // A full batch means more may be due now; otherwise say when the next is.
    let next: Option<i64> = if (rows.len() as i64) < limit {
        sqlx::query_scalar(
            "SELECT MIN(run_at) FROM jobs WHERE tenant_id = $1 AND state = 'pending'",
        )
        .bind(tenant)
        .fetch_one(&mut *tx)
        .await?
    } else {
        Some(now)
    };
    tx.commit().await?;
    let jobs = rows
        .iter()
        .map(|r| -> StoreResult<JobRow> {
            let depth: i32 = r.try_get(3)?;
            let attempts: i32 = r.try_get(4)?;
            let max: i32 = r.try_get(5)?;
            Ok(JobRow {
                id: r.try_get(0)?,
                function: r.try_get(1)?,
                event: r.try_get(2)?,
                depth: depth.max(0) as u32,
                attempts: attempts.max(0) as u32,
                max_attempts: max.max(1) as u32,
            })
        })
        .collect::<StoreResult<Vec<_>>>()?;
    Ok((jobs, next))
}

pub(crate) async fn finish_jobs(pool: &PgPool, tenant: i64, jobs: &[JobRef]) -> StoreResult<()> {
    for chunk in jobs.chunks(200) {
        let list: Vec<String> = (0..chunk.len())
            .map(|i| format!("(${}, ${})", 2 * i + 2, 2 * i + 3))
            .collect();
        let sql = format!(
            "DELETE FROM jobs WHERE tenant_id = $1 AND (id, attempts) IN (VALUES {})",
            list.join(", ")
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(tenant);
        for j in chunk {
            q = q.bind(j.id.as_str()).bind(j.attempts as i32);
        }
        q.execute(pool).await?;
    }
    Ok(())
}

/// `Store::renew_claims`: the claims end at `until`.
pub(crate) async fn renew_claims(
    pool: &PgPool,
    tenant: i64,
    jobs: &[JobRef],
    until: i64,
) -> StoreResult<u64> {
    let mut renewed = 0;
    for chunk in jobs.chunks(200) {
        let list: Vec<String> = (0..chunk.len())
            .map(|i| format!("(${}, ${})", 2 * i + 3, 2 * i + 4))
            .collect();
        let sql = format!(
            "UPDATE jobs SET run_at = $2, lease_until = $2 WHERE tenant_id = $1 \
             AND state = 'pending' AND lease_until IS NOT NULL \
             AND (id, attempts) IN (VALUES {})",
            list.join(", ")
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant)
            .bind(until);
        for j in chunk {
            q = q.bind(j.id.as_str()).bind(j.attempts as i32);
        }
        renewed += q.execute(pool).await?.rows_affected();
    }
    Ok(renewed)
}

pub(crate) async fn release_jobs(
    pool: &PgPool,
    tenant: i64,
    jobs: &[JobRef],
    now: i64,
) -> StoreResult<()> {
    for j in jobs {
        sqlx::query(
            "UPDATE jobs SET attempts = attempts - 1, run_at = $4, lease_until = NULL \
             WHERE tenant_id = $1 AND id = $2 AND attempts = $3",
        )
        .bind(tenant)
        .bind(j.id.as_str())
        .bind(j.attempts as i32)
        .bind(now)
        .execute(pool)
        .await?;
    }
    Ok(())
}

/// `Store::fail_job`: the job's new `state` and `run_at`.
pub(crate) async fn fail_job(
    pool: &PgPool,
    tenant: i64,
    job: &JobRef,
    error: &str,
    (state, run_at): (&str, i64),
) -> StoreResult<()> {
    sqlx::query(
        "UPDATE jobs SET state = $3, run_at = $4, lease_until = NULL, last_error = $5 \
         WHERE tenant_id = $1 AND id = $2 AND attempts = $6",
    )
    .bind(tenant)
    .bind(job.id.as_str())
    .bind(state)
    .bind(run_at)
    .bind(error)
    .bind(job.attempts as i32)
    .execute(pool)
    .await?;
    Ok(())
}
