//! The group commit on PostgreSQL (see `store::commit`): one transaction, the group's
//! rows read and written in multi-row statements of at most `CHUNK` rows.

use std::collections::HashSet;

use serde_json::Value;
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool, Row};

use super::documents::doc_from_row_at;
use crate::store::commit::{
    ErasedWrite, GroupPlan, UnitOutcome, acked_jobs, group_keys, plan_group, stale_units,
};
use crate::store::documents::{ChangeOp, StoredDoc, Written};
use crate::store::jobs::{INSERT_JOB_SQL, JobRef, NewJob};
use crate::store::sql::{LOCK_SEQ_SQL, SET_SEQ_SQL, UPSERT_TAIL};
use crate::store::{StoreResult, announce, now_ms};

/// Rows per multi-row statement.
const CHUNK: usize = 200;

/// One transaction for the whole group; per-unit outcomes in order, and the jobs it
/// queued (`plan_jobs` says which the committed writes trigger).
pub(crate) async fn apply_group(
    pool: &PgPool,
    tenant: i64,
    units: Vec<Vec<ErasedWrite>>,
    acks: &[Vec<JobRef>],
    plan_jobs: impl Fn(&GroupPlan) -> Vec<NewJob>,
) -> StoreResult<(Vec<UnitOutcome>, Vec<NewJob>)> {
    let mut tx = pool.begin().await?;
    // Taking the seq row first serialises this tenant's writers until commit.
    let seq0: i64 = sqlx::query_scalar(LOCK_SEQ_SQL)
        .bind(tenant)
        .fetch_one(&mut *tx)
        .await?;
    let keys = group_keys(&units);
    let current = read_current(&mut tx, tenant, &keys).await?;
    let held = lock_held_jobs(&mut tx, tenant, acks).await?;
    let stale = stale_units(acks, |r| held.contains(r));
    let plan = plan_group(units, &keys, current, &stale, seq0, now_ms());
    delete_jobs(&mut tx, tenant, &acked_jobs(&plan, acks)).await?;
    let jobs = plan_jobs(&plan);
    insert_jobs(&mut tx, tenant, &jobs, plan.now).await?;
    // References into the plan, not the plan: a rejected unit's error is not `Sync`.
    let changes: Vec<&Written> = plan.changes().collect();
    if !changes.is_empty() {
        upsert_documents(&mut tx, tenant, &plan.upserts).await?;
        delete_documents(&mut tx, tenant, &plan.deletes).await?;
        insert_changes(&mut tx, tenant, &changes, plan.now).await?;
        sqlx::query(SET_SEQ_SQL)
            .bind(tenant)
            .bind(plan.final_seq)
            .execute(&mut *tx)
            .await?;
        // Other nodes learn of the new changes when this commits.
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(announce::CHANGES)
            .bind(announce::commit_payload(tenant, plan.final_seq))
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok((plan.outcomes, jobs))
}

/// The current rows of the documents the group touches (absent ones are missing).
async fn read_current(
    tx: &mut PgConnection,
    tenant: i64,
    keys: &[(String, String)],
) -> StoreResult<Vec<StoredDoc>> {
    let mut current = Vec::new();
    for chunk in keys.chunks(CHUNK) {
        let sql = format!(
            "SELECT collection, id, data, version, created_at, updated_at FROM documents \
             WHERE tenant_id = $1 AND (collection, id) IN (VALUES {})",
            values(chunk.len(), 2, false)
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(tenant);
        for (c, i) in chunk {
            q = q.bind(c.as_str()).bind(i.as_str());
        }
        for row in q.fetch_all(&mut *tx).await? {
            current.push(doc_from_row_at(&row)?);
        }
    }
    Ok(current)
}

/// The acknowledged jobs still pending as they are now, locked so that no runner claims
/// one again before this commits.
async fn lock_held_jobs(
    tx: &mut PgConnection,
    tenant: i64,
    acks: &[Vec<JobRef>],
) -> StoreResult<HashSet<JobRef>> {
    let acked: Vec<&JobRef> = acks.iter().flatten().collect();
    let mut held = HashSet::new();
    for chunk in acked.chunks(CHUNK) {
        let sql = format!(
            "SELECT id, attempts FROM jobs WHERE tenant_id = $1 AND state = 'pending' \
             AND id IN (VALUES {}) FOR UPDATE",
            values(chunk.len(), 1, false)
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(tenant);
        for r in chunk {
            q = q.bind(r.id.as_str());
        }
        for row in q.fetch_all(&mut *tx).await? {
            let attempts: i32 = row.try_get(1)?;
            held.insert(JobRef {
                id: row.try_get(0)?,
                attempts: attempts.max(0) as u32,
            });
        }
    }
    Ok(held)
}

async fn delete_jobs(tx: &mut PgConnection, tenant: i64, done: &[&JobRef]) -> StoreResult<()> {
    for chunk in done.chunks(CHUNK) {
        let sql = format!(
            "DELETE FROM jobs WHERE tenant_id = $1 AND id IN (VALUES {})",
            values(chunk.len(), 1, false)
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(tenant);
        for r in chunk {
            q = q.bind(r.id.as_str());
        }
        q.execute(&mut *tx).await?;
    }
    Ok(())
}

async fn insert_jobs(
    tx: &mut PgConnection,
    tenant: i64,
    jobs: &[NewJob],
    now: i64,
) -> StoreResult<()> {
    for job in jobs {
        sqlx::query(INSERT_JOB_SQL)
            .bind(tenant)
            .bind(job.id.as_str())
            .bind(job.function.as_str())
            .bind(job.event.as_str())
            .bind(job.depth as i32)
            .bind(job.max_attempts as i32)
            .bind(now)
            .bind(job.claimed_until)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

async fn upsert_documents(
    tx: &mut PgConnection,
    tenant: i64,
    upserts: &[StoredDoc],
) -> StoreResult<()> {
    for chunk in upserts.chunks(CHUNK) {
        let sql = format!(
            "INSERT INTO documents (tenant_id, collection, id, data, version, \
             created_at, updated_at) VALUES {} {UPSERT_TAIL}",
            values(chunk.len(), 6, true)
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(tenant);
        for d in chunk {
            q = q
                .bind(d.collection.as_str())
                .bind(d.id.as_str())
                .bind(Json(&d.data))
                .bind(d.version)
                .bind(d.created_at)
                .bind(d.updated_at);
        }
        q.execute(&mut *tx).await?;
    }
    Ok(())
}

async fn delete_documents(
    tx: &mut PgConnection,
    tenant: i64,
    deletes: &[(String, String)],
) -> StoreResult<()> {
    for chunk in deletes.chunks(CHUNK) {
        let sql = format!(
            "DELETE FROM documents WHERE tenant_id = $1 AND (collection, id) IN (VALUES {})",
            values(chunk.len(), 2, false)
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(tenant);
        for (c, i) in chunk {
            q = q.bind(c.as_str()).bind(i.as_str());
        }
        q.execute(&mut *tx).await?;
    }
    Ok(())
}

async fn insert_changes(
    tx: &mut PgConnection,
    tenant: i64,
    changes: &[&Written],
    now: i64,
) -> StoreResult<()> {
    for chunk in changes.chunks(CHUNK) {
        let sql = format!(
            "INSERT INTO changes (tenant_id, seq, collection, doc_id, op, version, \
             data, before, at, created_at, before_updated_at) VALUES {}",
            values(chunk.len(), 10, true)
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(tenant);
        for w in chunk {
            let after: Option<Json<&Value>> =
                (w.op != ChangeOp::Delete).then_some(Json(&w.doc.data));
            let before: Option<Json<&Value>> = w.before.as_ref().map(|d| Json(&d.data));
            q = q
                .bind(w.seq)
                .bind(w.doc.collection.as_str())
                .bind(w.doc.id.as_str())
                .bind(w.op.as_str())
                .bind(w.doc.version)
                .bind(after)
                .bind(before)
                .bind(now)
                .bind(w.doc.created_at)
                .bind(w.before.as_ref().map(|d| d.updated_at));
        }
        q.execute(&mut *tx).await?;
    }
    Ok(())
}

/// `($2, $3), ($4, $5), …`: `rows` tuples of `per_row` placeholders numbered from `$2`,
/// each led by `$1` (the tenant id) when `with_tenant`.
fn values(rows: usize, per_row: usize, with_tenant: bool) -> String {
    let mut sql = String::with_capacity(rows * per_row * 5);
    for i in 0..rows {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        if with_tenant {
            sql.push_str("$1, ");
        }
        for j in 0..per_row {
            if j > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("${}", 2 + per_row * i + j));
        }
        sql.push(')');
    }
    sql
}

#[cfg(test)]
mod tests {
    #[test]
    fn values_lists() {
        assert_eq!(super::values(2, 2, false), "($2, $3), ($4, $5)");
        assert_eq!(super::values(2, 2, true), "($1, $2, $3), ($1, $4, $5)");
    }
}
