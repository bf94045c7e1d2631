//! The outbox of after-hooks: jobs inserted in the write's transaction (see `commit`),
//! claimed by runners with a lease, deleted when done, rescheduled or marked dead when not.

use serde_json::Value;
use sqlx::Row;

use super::{Backend, Store, StoreResult, TenantData, now_ms, on_db, one_row, postgres};
use crate::tenancy::Scope;

/// Where a unit of writes came from, for the jobs it triggers.
#[derive(Clone, Debug, Default)]
pub struct Origin {
    /// The writer as the hook event shows it (`{uid, email, email_verified}`), if a user.
    pub auth: Option<Value>,
    /// The writer is a service key or a function (`ctx.db`), as an HTTP function's
    /// `service` says of its caller.
    pub service: bool,
    /// Hook depth of the writer (0: a client request).
    pub depth: u32,
}

/// A job to insert with a write.
#[derive(Clone, Debug)]
pub struct NewJob {
    pub id: String,
    pub function: String,
    /// The event, as JSON text.
    pub event: String,
    pub depth: u32,
    pub max_attempts: u32,
    /// Claimed at birth by the committing node until then (its first attempt; the node
    /// runs it from memory, with no claim transaction), or None: due now, for any runner.
    pub claimed_until: Option<i64>,
}

/// Decides, inside the write's transaction, which jobs a committed write triggers.
pub trait JobPlanner: Send + Sync {
    /// Called before a unit is queued, outside any transaction: loads what `plan` needs.
    fn prepare<'a>(&'a self, scope: &'a Scope) -> futures_util::future::BoxFuture<'a, ()>;
    /// The jobs of one write (synchronous: it runs inside the transaction).
    fn plan(&self, scope: &Scope, written: &super::Written, origin: &Origin) -> Vec<NewJob>;
    /// Told after a commit that inserted jobs, with them.
    fn committed(&self, scope: &Scope, jobs: Vec<NewJob>);
}

/// One delivery of a job: its id and the attempt number its claim gave it. Each claim
/// counts the attempt up, so a delivery whose lease ran out and was claimed again no
/// longer matches, and what it does to the job (finish, fail, acknowledge) is ignored.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct JobRef {
    pub id: String,
    pub attempts: u32,
}

/// A claimed job.
#[derive(Clone, Debug)]
pub struct JobRow {
    pub id: String,
    pub function: String,
    pub event: String,
    pub depth: u32,
    pub attempts: u32,
    pub max_attempts: u32,
}

impl JobRow {
    pub fn delivery(&self) -> JobRef {
        JobRef {
            id: self.id.clone(),
            attempts: self.attempts,
        }
    }
}

/// A job as the admin API lists it.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct JobInfo {
    pub id: String,
    pub function: String,
    /// pending | dead
    pub state: String,
    pub attempts: i64,
    pub max_attempts: i64,
    pub run_at: i64,
    pub last_error: Option<String>,
    pub created_at: i64,
    /// The event as the function receives it (an array for a batching hook).
    pub event: Value,
}

/// What a rescan of the outboxes found: the tenants whose jobs the hook runner may not
/// know of (jobs of a runner that died, or queued by another process).
#[derive(Debug)]
pub enum OutboxScan {
    /// Every tenant with pending jobs, with when its next one is due (PostgreSQL: one
    /// query over the one database).
    All(Vec<(i64, i64)>),
    /// Only the tenants that other processes reported since the last scan (SQLite: a
    /// file per tenant; reading every file would keep every tenant from going idle). A
    /// process that runs hooks knows the rest from its own commits and claims, and from
    /// one look at each tenant at start (`Store::next_job_due`).
    Reported(Vec<i64>),
}

/// The error a job is left dead with when a claim finds it due again at its last
/// attempt: that attempt's claim ran out with no outcome recorded (its runner stopped, or
/// its run outlasted the lease). A claim never starts an attempt past `max_attempts`; a
/// run that outlasted its lease may still record its outcome (its delivery still matches).
pub(crate) const LEASE_RAN_OUT: &str = "its last attempt did not finish within its claim's \
     lease (the runner stopped, or the run outlasted the lease)";

/// Binds: tenant, id, function, event, depth, max_attempts, now, claimed_until (NULL: due
/// now). A job claimed at birth is on its first attempt, due again when the claim ends.
pub(crate) const INSERT_JOB_SQL: &str = "INSERT INTO jobs (tenant_id, id, function, event, depth, \
     attempts, max_attempts, state, run_at, lease_until, created_at) VALUES ($1, $2, $3, $4, $5, \
     CASE WHEN $8 IS NULL THEN 0 ELSE 1 END, $6, 'pending', COALESCE($8, $7), $8, $7)";

impl Store {
    /// Claims up to `limit` due jobs for `lease_ms`; also returns when the next job of the
    /// tenant becomes due (a retry, or a job whose lease runs out), if any.
    pub async fn claim_jobs(
        &self,
        scope: &Scope,
        lease_ms: i64,
        limit: i64,
    ) -> StoreResult<(Vec<JobRow>, Option<i64>)> {
        let now = now_ms();
        let tenant = scope.tenant().id;
        if self.is_frozen(tenant) || self.marked_moving(tenant).await? {
            // A move is copying the jobs: none is claimed until it ends; look again soon.
            return Ok((Vec::new(), Some(now + 1000)));
        }
        match self.tenant_data(scope).await? {
            (TenantData::Sqlite(file), tenant) => file.claim_jobs(tenant, now, lease_ms, limit),
            (TenantData::Postgres(pool), tenant) => {
                postgres::claim_jobs(&pool, tenant, now, lease_ms, limit).await
            }
        }
    }

    /// Deletes finished jobs (those still held by these deliveries).
    pub async fn finish_jobs(&self, scope: &Scope, jobs: &[JobRef]) -> StoreResult<()> {
        if jobs.is_empty() {
            return Ok(());
        }
        match self.tenant_data(scope).await? {
            (TenantData::Sqlite(file), tenant) => file.finish_jobs(tenant, jobs),
            (TenantData::Postgres(pool), tenant) => {
                postgres::finish_jobs(&pool, tenant, jobs).await
            }
        }
    }

    /// Extends the claims these deliveries still hold to `lease_ms` from now (a job whose
    /// delivery was taken over, or that is finished, failed or released, is left alone):
    /// the runner renews the claims of a batch's jobs that wait for a worker behind the
    /// others, or for their outcome to be recorded. Returns how many were renewed.
    pub async fn renew_claims(
        &self,
        scope: &Scope,
        jobs: &[JobRef],
        lease_ms: i64,
    ) -> StoreResult<u64> {
        if jobs.is_empty() {
            return Ok(0);
        }
        let until = now_ms() + lease_ms;
        match self.tenant_data(scope).await? {
            (TenantData::Sqlite(file), tenant) => file.renew_claims(tenant, jobs, until),
            (TenantData::Postgres(pool), tenant) => {
                postgres::renew_claims(&pool, tenant, jobs, until).await
            }
        }
    }

    /// Gives claimed jobs that never started back to the outbox, due now and on the same
    /// attempt (a node shutting down with jobs claimed at birth still queued).
    pub async fn release_jobs(&self, scope: &Scope, jobs: &[JobRef]) -> StoreResult<()> {
        if jobs.is_empty() {
            return Ok(());
        }
        let now = now_ms();
        match self.tenant_data(scope).await? {
            (TenantData::Sqlite(file), tenant) => file.release_jobs(tenant, jobs, now),
            (TenantData::Postgres(pool), tenant) => {
                postgres::release_jobs(&pool, tenant, jobs, now).await
            }
        }
    }

    /// Records a failed attempt: run again at `retry_at`, or (None) mark the job dead.
    pub async fn fail_job(
        &self,
        scope: &Scope,
        job: &JobRef,
        error: &str,
        retry_at: Option<i64>,
    ) -> StoreResult<()> {
        let next = match retry_at {
            Some(t) => ("pending", t),
            None => ("dead", now_ms()),
        };
        match self.tenant_data(scope).await? {
            (TenantData::Sqlite(file), tenant) => file.fail_job(tenant, job, error, next),
            (TenantData::Postgres(pool), tenant) => {
                postgres::fail_job(&pool, tenant, job, error, next).await
            }
        }
    }

    /// Jobs of a tenant (`state`: pending or dead), oldest first after `after`.
    pub async fn list_jobs(
        &self,
        scope: &Scope,
        state: Option<&str>,
        after: Option<&str>,
        limit: i64,
    ) -> StoreResult<Vec<JobInfo>> {
        let (db, tenant) = self.tenant_db(scope).await?;
        on_db!(db, |p| {
            let rows = sqlx::query(
                "SELECT id, function, state, attempts, max_attempts, run_at, last_error, \
                 created_at, event FROM jobs WHERE tenant_id = $1 \
                 AND ($2 IS NULL OR state = $2) AND ($3 IS NULL OR id > $3) \
                 ORDER BY id LIMIT $4",
            )
            .bind(tenant)
            .bind(state)
            .bind(after)
            .bind(limit)
            .fetch_all(&p)
            .await?;
            rows.iter()
                .map(|r| -> StoreResult<JobInfo> {
                    let attempts: i32 = r.try_get(3)?;
                    let max: i32 = r.try_get(4)?;
                    let event: String = r.try_get(8)?;
                    Ok(JobInfo {
                        id: r.try_get(0)?,
                        function: r.try_get(1)?,
                        state: r.try_get(2)?,
                        attempts: attempts.into(),
                        max_attempts: max.into(),
                        run_at: r.try_get(5)?,
                        last_error: r.try_get(6)?,
                        created_at: r.try_get(7)?,
                        event: serde_json::from_str(&event).unwrap_or_default(),
                    })
                })
                .collect()
        })
    }

    /// The rescan of the hook runner (see `OutboxScan`). On SQLite it takes the reports.
    pub async fn scan_outboxes(&self) -> StoreResult<OutboxScan> {
        match &*self.inner {
            Backend::Postgres(pool) => {
                Ok(OutboxScan::All(postgres::pending_job_tenants(pool).await?))
            }
            Backend::Sqlite(s) => Ok(OutboxScan::Reported(
                sqlx::query_scalar::<_, i64>("DELETE FROM job_reports RETURNING tenant_id")
                    .fetch_all(&s.control)
                    .await?,
            )),
        }
    }

    /// When the tenant's next pending job is due, if it has one (a read: on SQLite it
    /// opens the file if closed, and takes no write lock).
    pub async fn next_job_due(&self, scope: &Scope) -> StoreResult<Option<i64>> {
        let (db, tenant) = self.tenant_db(scope).await?;
        Ok(on_db!(db, |p| {
            sqlx::query_scalar::<_, Option<i64>>(
                "SELECT MIN(run_at) FROM jobs WHERE tenant_id = $1 AND state = 'pending'",
            )
            .bind(tenant)
            .fetch_one(&p)
            .await?
        }))
    }

    /// Tells the hook runner of another process that this tenant's outbox holds jobs it
    /// was not told of (SQLite: a row its next rescan takes; PostgreSQL: nothing, every
    /// rescan reads all outboxes). Call it after the jobs are committed.
    pub async fn report_jobs(&self, tenant: i64) -> StoreResult<()> {
        if let Backend::Sqlite(s) = &*self.inner {
            sqlx::query(
                "INSERT INTO job_reports (tenant_id, reported_at) VALUES ($1, $2) \
                 ON CONFLICT (tenant_id) DO UPDATE SET reported_at = excluded.reported_at",
            )
            .bind(tenant)
            .bind(now_ms())
            .execute(&s.control)
            .await?;
        }
        Ok(())
    }

    /// Puts a dead job back in the queue with fresh attempts; NotFound unless it is dead.
    /// Reported (`report_jobs`): the retry may come from the CLI, beside a running server.
    pub async fn retry_job(&self, scope: &Scope, id: &str) -> StoreResult<()> {
        let (db, tenant) = self.tenant_db(scope).await?;
        let n = on_db!(db, |p| {
            sqlx::query(
                "UPDATE jobs SET state = 'pending', attempts = 0, run_at = $3, \
                 lease_until = NULL WHERE tenant_id = $1 AND id = $2 AND state = 'dead'",
            )
            .bind(tenant)
            .bind(id)
            .bind(now_ms())
            .execute(&p)
            .await?
            .rows_affected()
        });
        one_row(n)?;
        // The retry is done: a runner that does not hear of it finds it at its next start.
        if let Err(e) = self.report_jobs(tenant).await {
            tracing::warn!(tenant, error = %e, "could not report a retried hook job");
        }
        Ok(())
    }
}
