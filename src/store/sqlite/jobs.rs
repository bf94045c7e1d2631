//! The job outbox on a tenant file: claims, finishes, releases and failures, each one
//! IMMEDIATE transaction on the writer connection.

use rusqlite::params;

use super::SqliteFile;
use crate::store::StoreResult;
use crate::store::jobs::{JobRef, JobRow, LEASE_RAN_OUT};

impl SqliteFile {
    /// `Store::claim_jobs` at time `now`.
    pub(crate) fn claim_jobs(
        &self,
        tenant: i64,
        now: i64,
        lease_ms: i64,
        limit: i64,
    ) -> StoreResult<(Vec<JobRow>, Option<i64>)> {
        self.with_writer(|tx| {
            // Due again at its last attempt: that attempt's claim ran out. It goes dead
            // rather than round again (see `LEASE_RAN_OUT`). Through the partial index of
            // those jobs alone: SQLite prefers `jobs_due` (more equalities), which visits
            // every due job at each claim, and a backlog of 100k jobs drained at half
            // the rate (benches/functions-bench.sh).
            let dead = tx
                .prepare_cached(
                    "UPDATE jobs INDEXED BY jobs_last_attempt SET state = 'dead', \
                     run_at = ?2, lease_until = NULL, last_error = ?3 WHERE tenant_id = ?1 \
                     AND state = 'pending' AND run_at <= ?2 AND attempts >= max_attempts",
                )?
                .execute(params![tenant, now, LEASE_RAN_OUT])?;
            if dead > 0 {
                tracing::warn!(tenant, jobs = dead, "hook jobs dead: {LEASE_RAN_OUT}");
            }
            let mut stmt = tx.prepare_cached(
                "UPDATE jobs SET run_at = ?3, lease_until = ?3, attempts = attempts + 1 \
                 WHERE tenant_id = ?1 AND id IN (SELECT id FROM jobs WHERE tenant_id = ?1 \
                 AND state = 'pending' AND run_at <= ?2 AND attempts < max_attempts \
                 ORDER BY run_at LIMIT ?4) \
                 RETURNING id, function, event, depth, attempts, max_attempts",
            )?;
            let jobs = stmt
                .query_map(params![tenant, now, now + lease_ms, limit], |r| {
                    Ok(JobRow {
                        id: r.get(0)?,
                        function: r.get(1)?,
                        event: r.get(2)?,
                        depth: r.get::<_, i64>(3)?.max(0) as u32,
                        attempts: r.get::<_, i64>(4)?.max(0) as u32,
                        max_attempts: r.get::<_, i64>(5)?.max(1) as u32,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let next: Option<i64> = if (jobs.len() as i64) < limit {
                tx.query_row(
                    "SELECT MIN(run_at) FROM jobs WHERE tenant_id = ?1 AND state = 'pending'",
                    params![tenant],
                    |r| r.get(0),
                )?
            } else {
                Some(now)
            };
            Ok((jobs, next))
        })
    }

    pub(crate) fn finish_jobs(&self, tenant: i64, jobs: &[JobRef]) -> StoreResult<()> {
        self.with_writer(|tx| {
            let mut stmt = tx.prepare_cached(
                "DELETE FROM jobs WHERE tenant_id = ?1 AND id = ?2 AND attempts = ?3",
            )?;
            for j in jobs {
                stmt.execute(params![tenant, j.id, j.attempts])?;
            }
            Ok(())
        })
    }

    /// `Store::renew_claims`: the claims end at `until`.
    pub(crate) fn renew_claims(
        &self,
        tenant: i64,
        jobs: &[JobRef],
        until: i64,
    ) -> StoreResult<u64> {
        self.with_writer(|tx| {
            let mut stmt = tx.prepare_cached(
                "UPDATE jobs SET run_at = ?4, lease_until = ?4 WHERE tenant_id = ?1 \
                 AND id = ?2 AND attempts = ?3 AND state = 'pending' AND lease_until IS NOT NULL",
            )?;
            let mut renewed = 0;
            for j in jobs {
                renewed += stmt.execute(params![tenant, j.id, j.attempts, until])? as u64;
            }
            Ok(renewed)
        })
    }

    pub(crate) fn release_jobs(&self, tenant: i64, jobs: &[JobRef], now: i64) -> StoreResult<()> {
        self.with_writer(|tx| {
            let mut stmt = tx.prepare_cached(
                "UPDATE jobs SET attempts = attempts - 1, run_at = ?4, lease_until = NULL \
                 WHERE tenant_id = ?1 AND id = ?2 AND attempts = ?3",
            )?;
            for j in jobs {
                stmt.execute(params![tenant, j.id, j.attempts, now])?;
            }
            Ok(())
        })
    }

    /// `Store::fail_job`: the job's new `state` and `run_at`.
    pub(crate) fn fail_job(
        &self,
        tenant: i64,
        job: &JobRef,
        error: &str,
        (state, run_at): (&str, i64),
    ) -> StoreResult<()> {
        self.with_writer(|tx| {
            tx.execute(
                "UPDATE jobs SET state = ?3, run_at = ?4, lease_until = NULL, last_error = ?5 \
                 WHERE tenant_id = ?1 AND id = ?2 AND attempts = ?6",
                params![tenant, job.id, state, run_at, error, job.attempts],
            )?;
            Ok(())
        })
    }
}
