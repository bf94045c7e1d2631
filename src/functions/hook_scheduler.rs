//! When the after hooks of each tenant run. Every tenant with due jobs is drained by a task
//! of its own, started as soon as the tenant becomes due, so a tenant's slow, looping or
//! failing hooks hold back only its own later jobs. Drained together in passes, every
//! tenant that became due waited for the slowest of the pass (a looping tenant's, minutes).
//! Between tenants the worker pool shares the workers (see `pool`).
//!
//! A tenant becomes due when this node commits or retries its jobs, when a claim says its
//! next job is due, and when a rescan finds jobs this node was not told of. A rescan
//! reads no idle tenant's SQLite file (see `store::OutboxScan`): a claim on every tenant
//! every 30 s kept all of them open (10,000 tenants: 333 empty write transactions a
//! second), so none ever closed its connections when idle.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::{JoinError, JoinSet};
use tokio::time::Instant;

use super::FunctionService;
use crate::store::{OutboxScan, StoreError, now_ms};
use crate::tenancy::{Scope, SystemTask, Tenant};

/// How soon a tenant whose drain failed (a store error) is tried again.
const RETRY_FAILED_DRAIN_MS: i64 = 1000;

/// The tenants being drained, each by its own task.
#[derive(Default)]
struct Drains {
    tasks: JoinSet<()>,
    tenant_of: HashMap<tokio::task::Id, i64>,
    /// Tenants with a drain running, and whether they became due again since it started
    /// (what it claimed may not hold the newest jobs): then it runs once more.
    running: HashMap<i64, bool>,
}

impl Drains {
    fn start(&mut self, svc: &Arc<FunctionService>, tenant: Arc<Tenant>) {
        let id = tenant.id;
        if let Some(again) = self.running.get_mut(&id) {
            *again = true;
            return;
        }
        self.running.insert(id, false);
        let svc = svc.clone();
        let task = self.tasks.spawn(async move {
            let scope = Scope::system(tenant, SystemTask::Hooks);
            if let Err(e) = svc.drain_tenant(&scope).await {
                tracing::warn!(tenant = %scope.tenant().slug, error = %e, "hook runner failed; retrying");
                svc.queue.due_at(id, now_ms() + RETRY_FAILED_DRAIN_MS);
            }
        });
        self.tenant_of.insert(task.id(), id);
    }

    /// A drain ended: its tenant is drained again if it became due meanwhile (or soon,
    /// if the drain panicked).
    fn ended(&mut self, svc: &FunctionService, ended: Result<tokio::task::Id, JoinError>) {
        let task = match &ended {
            Ok(task) => *task,
            Err(e) => e.id(),
        };
        let Some(tenant) = self.tenant_of.remove(&task) else {
            return;
        };
        let again = self.running.remove(&tenant) == Some(true);
        if let Err(e) = ended {
            tracing::error!(tenant, error = %e, "hook runner stopped; retrying");
            svc.queue.due_at(tenant, now_ms() + RETRY_FAILED_DRAIN_MS);
        } else if again {
            svc.queue.mark(tenant);
        }
    }
}

impl FunctionService {
    /// Runs after-hook jobs until the task is aborted (its drains with it): tenants whose
    /// writes queued jobs at once, retries when due, and the jobs the rescans find (at
    /// start, then every `hook_rescan`: see `look_for_jobs`).
    pub async fn run_forever(self: Arc<Self>) {
        let rescan = self.config.hook_rescan;
        let rescan_ms = i64::try_from(rescan.as_millis()).unwrap_or(i64::MAX);
        let mut tenants: HashMap<i64, Arc<Tenant>> = HashMap::new();
        let mut have_list = false;
        let mut listed: Option<Instant> = None;
        let mut scanned: Option<Instant> = None;
        let mut looked_at_start = false;
        let mut drains = Drains::default();
        loop {
            let relist = listed.is_none_or(|t| t.elapsed() >= rescan);
            if relist {
                match self.store.list_tenants().await {
                    Ok(rows) => {
                        tenants = rows
                            .into_iter()
                            .map(|r| (r.id, Arc::new(Tenant::from(r))))
                            .collect();
                        have_list = true;
                    }
                    Err(e) => tracing::warn!(error = %e, "hook runner: cannot list tenants"),
                }
                listed = Some(Instant::now());
            }
            if scanned.is_none_or(|t| t.elapsed() >= rescan) {
                // The look at every tenant waits for the first list of them.
                let at_start = have_list && !looked_at_start;
                match self.look_for_jobs(&tenants, at_start).await {
                    Ok(()) => looked_at_start |= at_start,
                    Err(e) => tracing::warn!(error = %e, "hook runner: cannot scan the outboxes"),
                }
                scanned = Some(Instant::now());
            }
            let now = now_ms();
            let (mut due, next_wake) = self.queue.take_due(now);
            if !relist && due.iter().any(|t| !tenants.contains_key(t)) {
                // A tenant created since the last list.
                listed = None;
                self.queue.mark_all(due);
                continue;
            }
            // Still unknown after a fresh list: deleted.
            due.retain(|t| tenants.contains_key(t));
            for t in due {
                match tenants.get(&t) {
                    Some(tenant) if !tenant.suspended => drains.start(&self, tenant.clone()),
                    // Its jobs wait until it is resumed; looked at again without opening
                    // its file until then.
                    Some(_) => self.queue.due_by(t, now + rescan_ms),
                    None => {}
                }
            }
            let sleep = next_wake
                .map(|t| Duration::from_millis((t - now).clamp(1, rescan_ms.max(1)) as u64))
                .unwrap_or(rescan);
            tokio::select! {
                _ = self.queue.woken() => {}
                _ = tokio::time::sleep(sleep) => {}
                Some(ended) = drains.tasks.join_next_with_id() => {
                    drains.ended(&self, ended.map(|(task, ())| task));
                }
            }
        }
    }

    /// Finds the jobs this node was not told of by its own commits and claims (see
    /// `store::OutboxScan`) and makes their tenants due when their next job is. A rescan
    /// opens no tenant's file on SQLite, so idle tenants stay closed; `at_start`, each
    /// tenant is read once there (jobs left by the last run).
    async fn look_for_jobs(
        &self,
        tenants: &HashMap<i64, Arc<Tenant>>,
        at_start: bool,
    ) -> Result<(), StoreError> {
        match self.store.scan_outboxes().await? {
            OutboxScan::All(due) => {
                for (tenant, at) in due {
                    self.queue.due_by(tenant, at);
                }
            }
            OutboxScan::Reported(reported) => {
                self.queue.mark_all(reported);
                if !at_start {
                    return Ok(());
                }
                for tenant in tenants.values() {
                    let scope = Scope::system(tenant.clone(), SystemTask::Hooks);
                    match self.store.next_job_due(&scope).await {
                        Ok(Some(at)) => self.queue.due_by(tenant.id, at),
                        Ok(None) => {}
                        Err(e) => {
                            // Its drain tries again, and retries until the store answers.
                            tracing::warn!(tenant = %tenant.slug, error = %e, "hook runner: cannot read the outbox");
                            self.queue.mark(tenant.id);
                        }
                    }
                }
            }
        }
        Ok(())
    }
}
