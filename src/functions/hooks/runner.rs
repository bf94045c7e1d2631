//! Running claimed jobs: grouped into invocations, their outcomes recorded, failures
//! retried with backoff until dead.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::claims::{Claim, Keeper};
use crate::functions::{Deployment, FunctionService, Trigger};
use crate::store::{JobRef, JobRow, now_ms};
use crate::tenancy::Scope;

/// Jobs one claim takes from a tenant.
const CLAIM_BATCH: i64 = 64;

/// Delay before attempt `attempts + 1`: 1 s, 2 s, 4 s … capped at 5 minutes, with jitter.
fn backoff_ms(attempts: u32) -> i64 {
    let base = 1000i64.saturating_mul(1 << attempts.saturating_sub(1).min(9));
    base.min(300_000) + (rand::random::<u16>() % 250) as i64
}

/// Splits claimed jobs into invocations: a job per invocation, except that first attempts
/// of a function whose hooks take batches go together, up to the batch size. A retried job
/// runs alone (still as an array), so one event that keeps failing holds back no other.
fn group_jobs<'a>(jobs: &'a [JobRow], dep: Option<&Deployment>) -> Vec<(Vec<&'a JobRow>, bool)> {
    let batch_of = |function: &str| {
        dep.and_then(|d| d.hooks.iter().find(|h| h.function == function))
            .and_then(|h| h.batch)
    };
    let mut runs: Vec<(Vec<&JobRow>, bool)> = Vec::new();
    let mut open: HashMap<&str, usize> = HashMap::new();
    for job in jobs {
        match batch_of(&job.function) {
            Some(size) if job.attempts <= 1 => match open.get(job.function.as_str()) {
                Some(&i) if runs[i].0.len() < size => runs[i].0.push(job),
                _ => {
                    open.insert(&job.function, runs.len());
                    runs.push((vec![job], true));
                }
            },
            Some(_) => runs.push((vec![job], true)),
            None => runs.push((vec![job], false)),
        }
    }
    runs
}

/// The job deliveries one after-hook invocation runs. `ctx.db.batch(writes, {ack: true})`
/// takes them and commits its writes with their jobs' deletion; then the runner has
/// nothing left to finish.
pub(crate) struct Delivery {
    jobs: Mutex<Option<Vec<JobRef>>>,
    acked: std::sync::atomic::AtomicBool,
    /// Its jobs' claims, kept while it waits (see `claims`).
    claim: Arc<Claim>,
}

impl Delivery {
    fn new(jobs: Vec<JobRef>, claim: Arc<Claim>) -> Delivery {
        Delivery {
            jobs: Mutex::new(Some(jobs)),
            acked: Default::default(),
            claim,
        }
    }

    /// A worker started the invocation (told by the pool).
    pub(crate) fn started(&self) {
        self.claim.started();
    }

    /// The deliveries to acknowledge, unless an acknowledgement took them already.
    pub(crate) fn take(&self) -> Option<Vec<JobRef>> {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// An acknowledgement that failed: the next may try again.
    pub(crate) fn put_back(&self, jobs: Vec<JobRef>) {
        *self.jobs.lock().unwrap_or_else(|p| p.into_inner()) = Some(jobs);
    }

    pub(crate) fn acked(&self) {
        self.acked.store(true, std::sync::atomic::Ordering::Release);
    }

    fn is_acked(&self) -> bool {
        self.acked.load(std::sync::atomic::Ordering::Acquire)
    }
}

enum JobResult {
    Done,
    Failed(String),
    /// The invocation acknowledged its jobs itself (whatever happened after that).
    Acked,
}

impl FunctionService {
    /// Runs claimed jobs of one function in one invocation on the tenant's active deploy:
    /// one event, or an array of events for a hook declared with `batch`.
    async fn run_jobs(
        &self,
        scope: &Scope,
        dep: Option<&Arc<Deployment>>,
        jobs: &[&JobRow],
        as_array: bool,
        delivery: Arc<Delivery>,
    ) -> JobResult {
        let Some(dep) = dep else {
            return JobResult::Failed("no deploy is active".into());
        };
        let Some(first) = jobs.first() else {
            return JobResult::Done;
        };
        if !dep.bytecode.contains_key(&first.function) {
            return JobResult::Failed(format!(
                "function '{}' is not in the active deploy (version {})",
                first.function, dep.version
            ));
        }
        let limits = dep.limits(&first.function, self.config.after_timeout, &self.config);
        // The attempt number goes into each event (the rest is as committed).
        let mut events: Vec<Value> = jobs
            .iter()
            .map(|job| match serde_json::from_str::<Value>(&job.event) {
                Ok(mut v) => {
                    v["attempt"] = Value::from(job.attempts);
                    v
                }
                Err(_) => Value::String(job.event.clone()),
            })
            .collect();
        let event = if as_array {
            // In commit order, whatever order the claim returned them in.
            events.sort_by_key(|e| e.get("seq").and_then(Value::as_i64).unwrap_or(0));
            Value::Array(events).to_string()
        } else {
            events.swap_remove(0).to_string()
        };
        let depth = jobs.iter().map(|j| j.depth).max().unwrap_or(0);
        let (_, result) = self
            .invoke(
                scope,
                dep,
                &first.function,
                Trigger::After,
                event,
                limits,
                depth,
                Some(delivery.clone()),
            )
            .await;
        match result {
            _ if delivery.is_acked() => JobResult::Acked,
            Ok(_) => JobResult::Done,
            Err(e) => JobResult::Failed(e.to_string()),
        }
    }

    /// How long a claim lasts (see `FunctionsConfig::hook_lease`).
    pub(crate) fn lease_ms(&self) -> i64 {
        match self.config.hook_lease {
            Some(d) => d.as_millis() as i64,
            None => (self.config.caps.max_timeout_ms as i64) * 2 + 10_000,
        }
    }

    /// Gives the jobs claimed at birth that have not started back to the outbox, so a
    /// restarted (or another) node runs them at once instead of after their claims end.
    pub async fn release_born(&self) {
        let born = std::mem::take(&mut *self.queue.born.lock().unwrap_or_else(|p| p.into_inner()));
        for (_, b) in born {
            let jobs: Vec<JobRef> = b.jobs.iter().map(|(j, _)| j.delivery()).collect();
            if let Err(e) = self.store.release_jobs(&b.scope, &jobs).await {
                tracing::warn!(tenant = %b.scope.tenant().slug, error = %e, "could not release queued hook jobs");
            }
        }
    }

    /// Runs a tenant's jobs claimed at birth, then claims and runs its due jobs until
    /// none are left.
    pub(in crate::functions) async fn drain_tenant(
        &self,
        scope: &Scope,
    ) -> Result<(), crate::store::StoreError> {
        let lease = self.lease_ms();
        // A claimed job is started only while its claim outlasts the longest run.
        let margin = (self.config.caps.max_timeout_ms as i64).min(lease / 2);
        let tenant = scope.tenant().id;
        loop {
            let (born, first_end, short) =
                self.queue.take_born(tenant, CLAIM_BATCH as usize, margin);
            if !short.is_empty() {
                // Claimed at birth but never started: back on the same attempt.
                self.store.release_jobs(scope, &short).await?;
            }
            if !born.is_empty() {
                self.run_claimed(scope, &born, first_end).await?;
                continue;
            }
            // Before the claim: the claims end after this.
            let until = now_ms() + lease;
            let (jobs, next) = self.store.claim_jobs(scope, lease, CLAIM_BATCH).await?;
            {
                let mut due = self
                    .queue
                    .next_due
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                match next {
                    Some(t) => due.insert(tenant, t),
                    None => due.remove(&tenant),
                };
            }
            if jobs.is_empty() {
                return Ok(());
            }
            self.run_claimed(scope, &jobs, until).await?;
        }
    }

    /// Runs claimed jobs (grouped into invocations), their claims ending at `until` or
    /// later, and records each one's outcome.
    async fn run_claimed(
        &self,
        scope: &Scope,
        jobs: &[JobRow],
        until: i64,
    ) -> Result<(), crate::store::StoreError> {
        let dep = match self.active(scope).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(tenant = %scope.tenant().slug, error = %e, "hook runner: cannot load the active deploy");
                None
            }
        };
        let runs = group_jobs(jobs, dep.as_deref());
        let mut keeper = Keeper::new(until);
        let deliveries: Vec<Arc<Delivery>> = runs
            .iter()
            .map(|(group, _)| {
                let refs: Vec<JobRef> = group.iter().map(|j| j.delivery()).collect();
                Arc::new(Delivery::new(refs.clone(), keeper.claim(refs)))
            })
            .collect();
        keeper.keep(
            self.store.clone(),
            scope.clone(),
            deliveries.iter().map(|d| d.claim.clone()).collect(),
            self.lease_ms(),
            self.config.caps.max_timeout_ms as i64,
        );
        let active = dep.as_ref();
        let results = futures_util::future::join_all(runs.iter().zip(&deliveries).map(
            |((group, as_array), delivery)| async move {
                let result = self
                    .run_jobs(scope, active, group, *as_array, delivery.clone())
                    .await;
                delivery.claim.over();
                result
            },
        ))
        .await;
        drop(keeper);
        let mut done = Vec::new();
        for ((group, _), result) in runs.iter().zip(results) {
            for job in group {
                match &result {
                    JobResult::Acked => {}
                    JobResult::Done => done.push(job.delivery()),
                    JobResult::Failed(error) => {
                        let retry_at = (job.attempts < job.max_attempts)
                            .then(|| now_ms() + backoff_ms(job.attempts));
                        if retry_at.is_none() {
                            tracing::warn!(tenant = %scope.tenant().slug, job = %job.id,
                                function = %job.function, %error, "hook job is dead");
                        }
                        self.store
                            .fail_job(scope, &job.delivery(), error, retry_at)
                            .await?;
                    }
                }
            }
        }
        self.store.finish_jobs(scope, &done).await?;
        Ok(())
    }
}
