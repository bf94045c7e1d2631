//! After hooks. Planning: inside each write's transaction the store asks the `Planner`
//! which hooks of the tenant's active deploy the write triggers and inserts one outbox job
//! per hook; a node that runs hooks inserts them already claimed by itself and queues
//! them in memory. Running: a tenant's drain (started by `hook_scheduler`) runs those,
//! then claims the tenant's due jobs (with a lease, so a runner that dies leaves them to
//! another), runs them on the worker pool, deletes the done ones and reschedules failures
//! with exponential backoff until they are marked dead.

mod claims;
mod compile;
mod queue;
mod runner;

use std::sync::{Arc, Weak};

use futures_util::future::BoxFuture;
use serde_json::Value;

use super::FunctionService;
use crate::documents::wire::DocJson;
use crate::rules::AuthInfo;
use crate::store::{ChangeOp, JobPlanner, JobRow, NewJob, Origin, Written, now_ms};
use crate::tenancy::Scope;

/// Writes made by hooks this deep are refused: a hook that writes to its own collection
/// cannot trigger itself forever.
pub const MAX_HOOK_DEPTH: u32 = 8;
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;

pub use compile::{CompiledHook, compile_hooks};
pub use queue::JobQueue;
use queue::{Born, MAX_BORN};
pub(crate) use runner::Delivery;

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
    /// A service key or a function wrote (`auth` is null for them, as for anonymous
    /// writers): what an HTTP function's event says of its caller.
    service: bool,
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
                service: origin.service,
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
        if !svc.config.run_hooks {
            // Jobs this process does not run: the runner of another process (a server
            // beside this CLI or hook-less node) must hear of them; on SQLite its rescan
            // no longer reads every tenant's outbox.
            let store = svc.store.clone();
            tokio::spawn(async move {
                if let Err(e) = store.report_jobs(tenant).await {
                    tracing::warn!(tenant, error = %e, "could not report queued hook jobs");
                }
            });
        }
    }
}
