//! The group commit on a tenant file (see `store::commit`): one IMMEDIATE transaction on
//! the writer connection, one cached statement per row.

use std::collections::HashSet;

use rusqlite::{OptionalExtension, Transaction, params};

use super::documents::{GET_DOC_SQL, doc_from_row};
use super::{SqliteFile, json_text, numbered_placeholders};
use crate::store::commit::{
    ErasedWrite, GroupPlan, UnitOutcome, acked_jobs, group_keys, plan_group, stale_units,
};
use crate::store::documents::{ChangeOp, StoredDoc};
use crate::store::jobs::{INSERT_JOB_SQL, JobRef, NewJob};
use crate::store::sql::{LOCK_SEQ_SQL, SET_SEQ_SQL, UPSERT_TAIL};
use crate::store::{StoreResult, now_ms};

impl SqliteFile {
    /// One transaction for the whole group; per-unit outcomes in order, and the jobs it
    /// queued (`plan_jobs` says which the committed writes trigger).
    pub(crate) fn apply_group(
        &self,
        tenant: i64,
        units: Vec<Vec<ErasedWrite>>,
        acks: &[Vec<JobRef>],
        plan_jobs: &dyn Fn(&GroupPlan) -> Vec<NewJob>,
    ) -> StoreResult<(Vec<UnitOutcome>, Vec<NewJob>)> {
        self.with_writer(|tx| {
            let seq0: i64 = tx
                .prepare_cached(&numbered_placeholders(LOCK_SEQ_SQL))?
                .query_row(params![tenant], |r| r.get(0))?;
            let keys = group_keys(&units);
            let current = read_current(tx, tenant, &keys)?;
            let stale = stale_acks(tx, tenant, acks)?;
            let plan = plan_group(units, &keys, current, &stale, seq0, now_ms());
            delete_jobs(tx, tenant, &acked_jobs(&plan, acks))?;
            let jobs = plan_jobs(&plan);
            insert_jobs(tx, tenant, &jobs, plan.now)?;
            if plan.changes().next().is_some() {
                write_documents(tx, tenant, &plan)?;
                insert_changes(tx, tenant, &plan)?;
                tx.prepare_cached(&numbered_placeholders(SET_SEQ_SQL))?
                    .execute(params![tenant, plan.final_seq])?;
            }
            Ok((plan.outcomes, jobs))
        })
    }
}

/// The current rows of the documents the group touches (absent ones are missing).
fn read_current(
    tx: &Transaction<'_>,
    tenant: i64,
    keys: &[(String, String)],
) -> rusqlite::Result<Vec<StoredDoc>> {
    let mut stmt = tx.prepare_cached(GET_DOC_SQL)?;
    let mut current = Vec::new();
    for (c, i) in keys {
        if let Some(doc) = stmt
            .query_row(params![tenant, c, i], |r| doc_from_row(r, c))
            .optional()?
        {
            current.push(doc);
        }
    }
    Ok(current)
}

/// Which units acknowledge a delivery that no longer holds its job (see `stale_units`).
fn stale_acks(
    tx: &Transaction<'_>,
    tenant: i64,
    acks: &[Vec<JobRef>],
) -> rusqlite::Result<Vec<bool>> {
    if acks.iter().all(Vec::is_empty) {
        return Ok(Vec::new());
    }
    let mut stmt = tx.prepare_cached(
        "SELECT attempts FROM jobs WHERE tenant_id = ?1 AND id = ?2 AND state = 'pending'",
    )?;
    let mut holds = HashSet::new();
    for r in acks.iter().flatten() {
        let attempts: Option<i64> = stmt
            .query_row(params![tenant, r.id], |row| row.get(0))
            .optional()?;
        if attempts == Some(i64::from(r.attempts)) {
            holds.insert(r);
        }
    }
    Ok(stale_units(acks, |r| holds.contains(r)))
}

fn delete_jobs(tx: &Transaction<'_>, tenant: i64, done: &[&JobRef]) -> rusqlite::Result<()> {
    if done.is_empty() {
        return Ok(());
    }
    let mut delete = tx.prepare_cached("DELETE FROM jobs WHERE tenant_id = ?1 AND id = ?2")?;
    for r in done {
        delete.execute(params![tenant, r.id])?;
    }
    Ok(())
}

fn insert_jobs(
    tx: &Transaction<'_>,
    tenant: i64,
    jobs: &[NewJob],
    now: i64,
) -> rusqlite::Result<()> {
    if jobs.is_empty() {
        return Ok(());
    }
    let mut insert = tx.prepare_cached(&numbered_placeholders(INSERT_JOB_SQL))?;
    for job in jobs {
        insert.execute(params![
            tenant,
            job.id,
            job.function,
            job.event,
            job.depth,
            job.max_attempts,
            now,
            job.claimed_until
        ])?;
    }
    Ok(())
}

/// The final state of every document the plan changed: upserted or deleted.
fn write_documents(tx: &Transaction<'_>, tenant: i64, plan: &GroupPlan) -> rusqlite::Result<()> {
    let mut upsert = tx.prepare_cached(&format!(
        "INSERT INTO documents (tenant_id, collection, id, data, version, created_at, \
         updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) {UPSERT_TAIL}"
    ))?;
    for d in &plan.upserts {
        upsert.execute(params![
            tenant,
            d.collection,
            d.id,
            json_text(&d.data),
            d.version,
            d.created_at,
            d.updated_at
        ])?;
    }
    let mut delete = tx.prepare_cached(
        "DELETE FROM documents WHERE tenant_id = ?1 AND collection = ?2 AND id = ?3",
    )?;
    for (c, i) in &plan.deletes {
        delete.execute(params![tenant, c, i])?;
    }
    Ok(())
}

fn insert_changes(tx: &Transaction<'_>, tenant: i64, plan: &GroupPlan) -> rusqlite::Result<()> {
    let mut change = tx.prepare_cached(
        "INSERT INTO changes (tenant_id, seq, collection, doc_id, op, version, data, \
         before, at, created_at, before_updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?;
    for w in plan.changes() {
        let after = (w.op != ChangeOp::Delete).then(|| json_text(&w.doc.data));
        let before = w.before.as_ref().map(|d| json_text(&d.data));
        change.execute(params![
            tenant,
            w.seq,
            w.doc.collection,
            w.doc.id,
            w.op.as_str(),
            w.doc.version,
            after,
            before,
            plan.now,
            w.doc.created_at,
            w.before.as_ref().map(|d| d.updated_at)
        ])?;
    }
    Ok(())
}
