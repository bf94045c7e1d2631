//! When the after hooks of each tenant run. Every tenant with due jobs is drained by a task
//! of its own, started as soon as the tenant becomes due, so a tenant's slow, looping or
//! failing hooks hold back only its own later jobs. Drained together in passes, every
//! tenant that became due waited for the slowest of the pass (a looping tenant's, minutes).
//! Between tenants the worker pool shares the workers (see `pool`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::{JoinError, JoinSet};

use super::FunctionService;
use crate::store::now_ms;
use crate::tenancy::{Scope, SystemTask, Tenant};

/// Full scan of every tenant's outbox (jobs of a runner that died, on any node).
const RESCAN: Duration = Duration::from_secs(30);
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
    /// writes queued jobs at once, retries when due, and every tenant at start and every
    /// 30 s (jobs left by a runner that died, here or on another node).
    pub async fn run_forever(self: Arc<Self>) {
        let mut tenants: HashMap<i64, Arc<Tenant>> = HashMap::new();
        let mut last_scan: Option<tokio::time::Instant> = None;
        let mut drains = Drains::default();
        loop {
            let rescan = last_scan.is_none_or(|t| t.elapsed() >= RESCAN);
            if rescan {
                match self.store.list_tenants().await {
                    Ok(rows) => {
                        tenants = rows
                            .into_iter()
                            .map(|r| (r.id, Arc::new(Tenant::from(r))))
                            .collect();
                        self.queue.mark_all(tenants.keys().copied());
                    }
                    Err(e) => tracing::warn!(error = %e, "hook runner: cannot list tenants"),
                }
                last_scan = Some(tokio::time::Instant::now());
            }
            let now = now_ms();
            let (mut due, next_wake) = self.queue.take_due(now);
            if !rescan && due.iter().any(|t| !tenants.contains_key(t)) {
                // A tenant created since the last scan.
                last_scan = None;
                self.queue.mark_all(due);
                continue;
            }
            // Still unknown after a fresh scan: deleted.
            due.retain(|t| tenants.contains_key(t));
            for t in due {
                if let Some(tenant) = tenants.get(&t).filter(|t| !t.suspended) {
                    drains.start(&self, tenant.clone());
                }
            }
            let sleep = next_wake
                .map(|t| Duration::from_millis((t - now).clamp(1, 30_000) as u64))
                .unwrap_or(RESCAN);
            tokio::select! {
                _ = self.queue.woken() => {}
                _ = tokio::time::sleep(sleep) => {}
                Some(ended) = drains.tasks.join_next_with_id() => {
                    drains.ended(&self, ended.map(|(task, ())| task));
                }
            }
        }
    }
}
