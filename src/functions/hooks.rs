//! After hooks. Planning: inside each write's transaction the store asks the `Planner`
//! which hooks of the tenant's active deploy the write triggers and inserts one outbox job
//! per hook; a node that runs hooks inserts them already claimed by itself and queues
//! them in memory. Running: a tenant's drain (started by `hook_scheduler`) runs those,
//! then claims the tenant's due jobs (with a lease, so a runner that dies leaves them to
//! another), runs them on the worker pool, deletes the done ones and reschedules failures
//! with exponential backoff until they are marked dead.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};

use futures_util::future::BoxFuture;
use serde_json::Value;
use tokio::sync::Notify;

use super::bundle::Manifest;
use super::{FunctionService, Trigger};
use crate::documents::wire::DocJson;
use crate::rules::{AuthInfo, Bindings, ExprKind, Expression};
use crate::store::{
    ChangeOp, JobPlanner, JobRef, JobRow, NewJob, Origin, StoredDoc, Written, now_ms,
};
use crate::tenancy::Scope;

/// Writes made by hooks this deep are refused: a hook that writes to its own collection
/// cannot trigger itself forever.
pub const MAX_HOOK_DEPTH: u32 = 8;
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;
/// Jobs one claim takes from a tenant.
const CLAIM_BATCH: i64 = 64;

/// An after hook of a deploy, its condition compiled.
pub struct CompiledHook {
    pub function: String,
    pub collection: String,
    pub ops: Vec<ChangeOp>,
    pub when: Option<Expression>,
    pub max_attempts: u32,
    /// After hooks declared with `batch`: the most events one invocation gets (as an array).
    pub batch: Option<usize>,
}

/// The hooks of one phase ("before" or "after"), in manifest order.
impl CompiledHook {
    /// Whether the `when` condition holds for a write (true without one).
    pub(crate) fn when_holds(
        &self,
        auth: Option<&AuthInfo>,
        id: &str,
        before: Option<&StoredDoc>,
        new: Option<&Value>,
    ) -> bool {
        let Some(when) = &self.when else {
            return true;
        };
        let meta = before.map(crate::documents::meta);
        when.evaluate(&Bindings {
            auth,
            id,
            doc: before.map(|d| &d.data),
            new,
            meta: meta.as_ref(),
            now_ms: now_ms(),
        })
    }
}

pub fn compile_hooks(m: &Manifest, phase: &str) -> Result<Vec<CompiledHook>, String> {
    m.hooks
        .iter()
        .filter(|h| h.phase == phase)
        .map(|h| {
            let when = match &h.when {
                Some(src) => Some(
                    Expression::compile(src, ExprKind::Condition)
                        .map_err(|e| format!("hook when: {}", e.message))?,
                ),
                None => None,
            };
            Ok(CompiledHook {
                function: h.function.clone(),
                collection: h.collection.clone(),
                ops: h
                    .on
                    .iter()
                    .filter_map(|o| match o.as_str() {
                        "create" => Some(ChangeOp::Create),
                        "update" => Some(ChangeOp::Update),
                        "delete" => Some(ChangeOp::Delete),
                        _ => None,
                    })
                    .collect(),
                when,
                max_attempts: h.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS),
                batch: h.batch.map(|n| n as usize),
            })
        })
        .collect()
}

/// An after-hook event as committed with its job (`attempt` is set again per delivery).
#[derive(serde::Serialize)]
struct EventOut<'a> {
    id: &'a str,
    tenant: &'a str,
    collection: &'a str,
    op: &'a str,
    doc: Option<DocJson<'a>>,
    before: Option<DocJson<'a>>,
    seq: i64,
    auth: Option<&'a Value>,
    attempt: u32,
}

pub(crate) fn auth_info(v: &Value) -> Option<AuthInfo> {
    Some(AuthInfo {
        uid: v.get("uid")?.as_str()?.to_string(),
        email: v
            .get("email")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        email_verified: v
            .get("email_verified")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        claims: Value::Object(Default::default()),
    })
}

/// Tenants whose outboxes may hold due jobs, and when the others' next job is due; and
/// the jobs this node claimed at birth, waiting to run.
#[derive(Default)]
pub struct JobQueue {
    dirty: Mutex<HashSet<i64>>,
    next_due: Mutex<HashMap<i64, i64>>,
    wake: Notify,
    born: Mutex<HashMap<i64, Born>>,
}

/// A tenant's jobs claimed at birth, in commit order, each with the end of its claim.
struct Born {
    scope: Scope,
    jobs: std::collections::VecDeque<(JobRow, i64)>,
}

/// The most jobs claimed at birth that wait in memory per tenant; past it, new jobs go to
/// the outbox unclaimed (the runner is behind, and a claim would only expire).
const MAX_BORN: usize = 10_000;

impl JobQueue {
    pub(crate) fn mark(&self, tenant: i64) {
        self.dirty
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(tenant);
        self.wake.notify_one();
    }

    /// Tenants to look at again without waking the runner (it is looking already).
    pub(super) fn mark_all(&self, tenants: impl IntoIterator<Item = i64>) {
        self.dirty
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(tenants);
    }

    /// A tenant whose next job is due at `at` (ms).
    pub(super) fn due_at(&self, tenant: i64, at: i64) {
        self.next_due
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(tenant, at);
        self.wake.notify_one();
    }

    /// Waits until a tenant is marked (at once if one was since the last wait).
    pub(super) async fn woken(&self) {
        self.wake.notified().await
    }

    /// The tenants due at `now`: those marked since the last call and those whose next
    /// job is due; and when the next of the others is due.
    pub(super) fn take_due(&self, now: i64) -> (HashSet<i64>, Option<i64>) {
        let mut due: HashSet<i64> =
            std::mem::take(&mut *self.dirty.lock().unwrap_or_else(|p| p.into_inner()));
        let mut next = self.next_due.lock().unwrap_or_else(|p| p.into_inner());
        next.retain(|t, at| {
            if *at <= now {
                due.insert(*t);
                false
            } else {
                true
            }
        });
        (due, next.values().min().copied())
    }

    fn born_count(&self, tenant: i64) -> usize {
        self.born
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&tenant)
            .map_or(0, |b| b.jobs.len())
    }

    /// Up to `limit` of a tenant's jobs claimed at birth whose claims have at least
    /// `margin_ms` to run; those with less are left to expire and be claimed again.
    fn take_born(&self, tenant: i64, limit: usize, margin_ms: i64) -> Vec<JobRow> {
        let mut born = self.born.lock().unwrap_or_else(|p| p.into_inner());
        let Some(b) = born.get_mut(&tenant) else {
            return Vec::new();
        };
        let now = now_ms();
        let mut out = Vec::new();
        while out.len() < limit {
            match b.jobs.pop_front() {
                Some((job, until)) if until - now >= margin_ms => out.push(job),
                Some(_) => {}
                None => break,
            }
        }
        if b.jobs.is_empty() {
            born.remove(&tenant);
        }
        out
    }
}

/// The store's view of the hooks (held weakly: the service owns the store).
pub struct Planner(Weak<FunctionService>);

impl Planner {
    pub fn new(svc: &Arc<FunctionService>) -> Planner {
        Planner(Arc::downgrade(svc))
    }
}

impl JobPlanner for Planner {
    fn prepare<'a>(&'a self, scope: &'a Scope) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if let Some(svc) = self.0.upgrade()
                && let Err(e) = svc.active(scope).await
            {
                tracing::warn!(tenant = %scope.tenant().slug, error = %e, "could not load the active deploy");
            }
        })
    }

    fn plan(&self, scope: &Scope, w: &Written, origin: &Origin) -> Vec<NewJob> {
        let Some(svc) = self.0.upgrade() else {
            return Vec::new();
        };
        let Some(dep) = svc.cached(scope.tenant().id) else {
            return Vec::new();
        };
        let mut jobs = Vec::new();
        // A node that runs hooks claims the jobs of its own writes as it commits them and
        // runs them from memory: no claim transaction per batch of jobs.
        let claimed_until = (svc.config.run_hooks
            && svc.queue.born_count(scope.tenant().id) < MAX_BORN)
            .then(|| now_ms() + svc.lease_ms());
        let after = (w.op != ChangeOp::Delete).then_some(&w.doc);
        let auth = origin.auth.as_ref().and_then(auth_info);
        for h in &dep.hooks {
            if h.collection != w.doc.collection
                || !h.ops.contains(&w.op)
                || !h.when_holds(
                    auth.as_ref(),
                    &w.doc.id,
                    w.before.as_ref(),
                    after.map(|d| &d.data),
                )
            {
                continue;
            }
            let id = uuid::Uuid::now_v7().to_string();
            // Serialized from borrowed parts: this runs inside the commit, under the
            // tenant's write lock, once per job.
            let event = serde_json::to_string(&EventOut {
                id: &id,
                tenant: &scope.tenant().slug,
                collection: &w.doc.collection,
                op: w.op.as_str(),
                doc: after.map(DocJson::of),
                before: w.before.as_ref().map(DocJson::of),
                seq: w.seq,
                auth: origin.auth.as_ref(),
                attempt: 1,
            })
            .unwrap_or_default();
            jobs.push(NewJob {
                id,
                function: h.function.clone(),
                event,
                depth: origin.depth + 1,
                max_attempts: h.max_attempts,
                claimed_until,
            });
        }
        jobs
    }

    fn committed(&self, scope: &Scope, jobs: Vec<NewJob>) {
        let Some(svc) = self.0.upgrade() else {
            return;
        };
        let tenant = scope.tenant().id;
        let mut born = jobs
            .into_iter()
            .filter_map(|j| {
                let until = j.claimed_until?;
                let row = JobRow {
                    id: j.id,
                    function: j.function,
                    event: j.event,
                    depth: j.depth,
                    attempts: 1,
                    max_attempts: j.max_attempts,
                };
                Some((row, until))
            })
            .peekable();
        if born.peek().is_some() {
            let mut queue = svc.queue.born.lock().unwrap_or_else(|p| p.into_inner());
            queue
                .entry(tenant)
                .or_insert_with(|| Born {
                    scope: scope.clone(),
                    jobs: Default::default(),
                })
                .jobs
                .extend(born);
        }
        svc.queue.mark(tenant);
    }
}

/// Delay before attempt `attempts + 1`: 1 s, 2 s, 4 s … capped at 5 minutes, with jitter.
fn backoff_ms(attempts: u32) -> i64 {
    let base = 1000i64.saturating_mul(1 << attempts.saturating_sub(1).min(9));
    base.min(300_000) + (rand::random::<u16>() % 250) as i64
}

/// Splits claimed jobs into invocations: a job per invocation, except that first attempts
/// of a function whose hooks take batches go together, up to the batch size. A retried job
/// runs alone (still as an array), so one event that keeps failing holds back no other.
fn group_jobs<'a>(
    jobs: &'a [JobRow],
    dep: Option<&super::Deployment>,
) -> Vec<(Vec<&'a JobRow>, bool)> {
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
}

impl Delivery {
    fn new(jobs: Vec<JobRef>) -> Delivery {
        Delivery {
            jobs: Mutex::new(Some(jobs)),
            acked: Default::default(),
        }
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
        dep: Option<&Arc<super::Deployment>>,
        jobs: &[&JobRow],
        as_array: bool,
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
        let delivery = Arc::new(Delivery::new(jobs.iter().map(|j| j.delivery()).collect()));
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
    pub(super) async fn drain_tenant(&self, scope: &Scope) -> Result<(), crate::store::StoreError> {
        let lease = self.lease_ms();
        // A claimed job is started only while its claim outlasts the longest run.
        let margin = (self.config.caps.max_timeout_ms as i64).min(lease / 2);
        let tenant = scope.tenant().id;
        loop {
            let born = self.queue.take_born(tenant, CLAIM_BATCH as usize, margin);
            if !born.is_empty() {
                self.run_claimed(scope, &born).await?;
                continue;
            }
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
            self.run_claimed(scope, &jobs).await?;
        }
    }

    /// Runs claimed jobs (grouped into invocations) and records each one's outcome.
    async fn run_claimed(
        &self,
        scope: &Scope,
        jobs: &[JobRow],
    ) -> Result<(), crate::store::StoreError> {
        let dep = match self.active(scope).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(tenant = %scope.tenant().slug, error = %e, "hook runner: cannot load the active deploy");
                None
            }
        };
        let runs = group_jobs(jobs, dep.as_deref());
        let results = futures_util::future::join_all(
            runs.iter()
                .map(|(group, as_array)| self.run_jobs(scope, dep.as_ref(), group, *as_array)),
        )
        .await;
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
