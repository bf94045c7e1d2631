//! Group commit: the document writes of one tenant that arrive while a transaction is
//! running are queued and then committed together, in arrival order, in the next one.
//!
//! A group is decided entirely in memory before any write statement runs: the current
//! rows of every document the group touches are read at once (after taking the tenant's
//! seq row, which serialises the tenant's writers on both backends), each unit's
//! decisions are applied to an overlay, and a unit whose decision refuses leaves no
//! trace. Then the final state goes out in a few multi-row statements, the change rows in
//! one more, and the seq row is moved once. So a unit is all-or-nothing, units see each
//! other's effects in order, and seq order is commit order, whatever the group size.

mod plan;

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

pub(crate) use plan::{GroupPlan, acked_jobs, group_keys, plan_group, stale_units};

use super::documents::{StoredDoc, WriteDecision, Written};
use super::jobs::{JobRef, NewJob, Origin};
use super::{Store, StoreError, TenantData, postgres};
use crate::tenancy::Scope;

pub(crate) type AnyError = Box<dyn Any + Send>;
pub(crate) type Decide =
    Box<dyn FnOnce(Option<&StoredDoc>) -> Result<WriteDecision, AnyError> + Send>;

pub(crate) struct ErasedWrite {
    pub collection: String,
    pub id: String,
    pub decide: Decide,
}

pub(crate) enum UnitError {
    Rejected(usize, AnyError),
    Store(StoreError),
}

type Reply = oneshot::Sender<UnitOutcome>;

struct Unit {
    writes: Vec<ErasedWrite>,
    /// Hook deliveries this unit acknowledges: their jobs are deleted with its writes.
    acks: Vec<JobRef>,
    origin: Origin,
    reply: Reply,
}

#[derive(Default)]
struct Queue {
    pending: Vec<Unit>,
    running: bool,
}

/// The write queues of all tenants.
#[derive(Default)]
pub(crate) struct Groups {
    queues: Mutex<HashMap<i64, Arc<Mutex<Queue>>>>,
    stats: CommitStats,
}

/// Counters of group commits, for `/metrics`.
#[derive(Default, Debug)]
pub struct CommitStats {
    pub groups: AtomicU64,
    pub units: AtomicU64,
    pub writes: AtomicU64,
    /// Nanoseconds spent in group transactions.
    pub busy_ns: AtomicU64,
}

/// Most writes one group commits; the rest wait for the next.
const MAX_GROUP_WRITES: usize = 2000;

impl Store {
    /// How many group commits ran, how many units and writes they carried, and the time
    /// spent in their transactions.
    pub fn commit_totals(&self) -> crate::metrics::CommitTotals {
        let s = &self.groups.stats;
        crate::metrics::CommitTotals {
            groups: s.groups.load(Ordering::Relaxed),
            units: s.units.load(Ordering::Relaxed),
            writes: s.writes.load(Ordering::Relaxed),
            busy_seconds: s.busy_ns.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }

    /// Queues one unit (a list of writes, all or nothing) and waits for its commit. A
    /// unit that acknowledges hook deliveries (`acks`) commits only while each still holds
    /// its job, and deletes those jobs in the same transaction: its writes happen once.
    pub(crate) async fn commit_unit(
        &self,
        scope: &Scope,
        writes: Vec<ErasedWrite>,
        acks: Vec<JobRef>,
    ) -> Result<Vec<Written>, UnitError> {
        let tenant = scope.tenant().id;
        // Marked by a move this node does not run (another node's, or the CLI's): no
        // freeze here stops the write, and one landing after the copy would be lost.
        let marked = self.marked_moving(tenant).await.map_err(UnitError::Store)?;
        if let Some(planner) = self.planner.get() {
            planner.prepare(scope).await;
        }
        let origin = Origin {
            auth: scope.auth_json(),
            service: scope.caller().is_service(),
            depth: scope.depth(),
        };
        let queue = {
            let mut queues = self.groups.queues.lock().unwrap_or_else(|p| p.into_inner());
            queues.entry(tenant).or_default().clone()
        };
        let (tx, rx) = oneshot::channel();
        let lead = {
            let mut q = queue.lock().unwrap_or_else(|p| p.into_inner());
            // Checked under the queue's lock: a move that froze the tenant and then saw
            // the queue idle knows no unit can slip in after it (see `commits_idle`).
            if marked || self.is_frozen(tenant) {
                return Err(UnitError::Store(StoreError::TenantMoving));
            }
            q.pending.push(Unit {
                writes,
                acks,
                origin,
                reply: tx,
            });
            !std::mem::replace(&mut q.running, true)
        };
        if lead {
            // A task of its own: the caller's future may be dropped (client gone,
            // timeout) and the queued units of others must still be committed.
            let store = self.clone();
            let scope = scope.clone();
            tokio::spawn(async move { store.drain(&scope, &queue).await });
        }
        rx.await.unwrap_or_else(|_| {
            Err(UnitError::Store(StoreError::Unavailable(
                "the commit task ended before answering",
            )))
        })
    }

    /// Drops the write queues that no write holds (a tenant's next write makes its queue
    /// again): a node keeps a queue per tenant writing now, not per tenant ever written.
    /// A queue is taken from the map under its lock, and a commit holds it while
    /// running, so one held by nothing else is idle.
    pub fn release_idle_commit_queues(&self) {
        self.groups
            .queues
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, q| Arc::strong_count(q) > 1);
    }

    /// Whether no unit of the tenant is queued or committing.
    pub(crate) fn commits_idle(&self, tenant: i64) -> bool {
        let queue = self
            .groups
            .queues
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&tenant)
            .cloned();
        queue.is_none_or(|q| {
            let q = q.lock().unwrap_or_else(|p| p.into_inner());
            !q.running && q.pending.is_empty()
        })
    }

    async fn drain(&self, scope: &Scope, queue: &Mutex<Queue>) {
        loop {
            // Let the requests that are already runnable queue their writes first: one
            // yield turns a burst of concurrent writes into one transaction. Not when
            // writes already wait (they came during the last commit): on a busy runtime
            // a yield queues this task behind every runnable one, and every write of
            // the tenant waits for it.
            let waiting = queue
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pending
                .len();
            if waiting < 2 {
                tokio::task::yield_now().await;
            }
            let group = {
                let mut q = queue.lock().unwrap_or_else(|p| p.into_inner());
                if q.pending.is_empty() {
                    q.running = false;
                    return;
                }
                let mut total = 0;
                let mut n = 0;
                for u in &q.pending {
                    if n > 0 && total + u.writes.len() > MAX_GROUP_WRITES {
                        break;
                    }
                    total += u.writes.len();
                    n += 1;
                }
                self.groups.stats.groups.fetch_add(1, Ordering::Relaxed);
                self.groups
                    .stats
                    .units
                    .fetch_add(n as u64, Ordering::Relaxed);
                self.groups
                    .stats
                    .writes
                    .fetch_add(total as u64, Ordering::Relaxed);
                q.pending.drain(..n).collect::<Vec<_>>()
            };
            self.commit_group(scope, group).await;
        }
    }

    async fn commit_group(&self, scope: &Scope, group: Vec<Unit>) {
        let mut replies = Vec::with_capacity(group.len());
        let mut units = Vec::with_capacity(group.len());
        let mut acks = Vec::with_capacity(group.len());
        let mut origins = Vec::with_capacity(group.len());
        for u in group {
            replies.push(u.reply);
            units.push(u.writes);
            acks.push(u.acks);
            origins.push(u.origin);
        }
        let started = std::time::Instant::now();
        let applied = self.apply_group(scope, units, &acks, &origins).await;
        self.groups
            .stats
            .busy_ns
            .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        match applied {
            Ok((outcomes, jobs)) => {
                if !jobs.is_empty()
                    && let Some(planner) = self.planner.get()
                {
                    planner.committed(scope, jobs);
                }
                let writes: usize = outcomes
                    .iter()
                    .filter_map(|o| o.as_ref().ok())
                    .map(Vec::len)
                    .sum();
                self.count_writes(scope.tenant().id, writes as u64);
                let last = outcomes
                    .iter()
                    .filter_map(|o| o.as_ref().ok())
                    .flat_map(|w| w.iter().map(|w| w.seq))
                    .max();
                // Writers first: their answers are woken before the fan-out is, so a
                // fan-out to thousands of sockets never runs ahead of them.
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    let _ = reply.send(outcome);
                }
                if let Some(seq) = last {
                    self.committed(scope.tenant().id, seq);
                    if self.placed_on_cluster(scope.tenant().id) {
                        self.announce_commit(scope.tenant().id, seq).await;
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, tenant = %scope.tenant().slug, "group commit failed");
                // sqlx errors cannot be cloned: each waiting write gets one of the same
                // kind, so "the database is down" stays a 503 for all of them.
                let unreachable = matches!(&e, StoreError::Db(d) if super::database_unreachable(d));
                let full = super::storage_full(&e);
                let msg = e.to_string();
                for reply in replies {
                    let err = if full {
                        StoreError::StorageFull
                    } else if unreachable {
                        StoreError::Unavailable("the database is unreachable")
                    } else {
                        StoreError::Db(sqlx::Error::Protocol(msg.clone()))
                    };
                    let _ = reply.send(Err(UnitError::Store(err)));
                }
            }
        }
    }

    /// The jobs the group's committed writes trigger, in write order.
    pub(crate) fn plan_jobs(
        &self,
        scope: &Scope,
        plan: &GroupPlan,
        origins: &[Origin],
    ) -> Vec<NewJob> {
        let Some(planner) = self.planner.get() else {
            return Vec::new();
        };
        plan.outcomes
            .iter()
            .zip(origins)
            .flat_map(|(outcome, origin)| {
                outcome
                    .iter()
                    .flatten()
                    .flat_map(move |w| planner.plan(scope, w, origin))
            })
            .collect()
    }

    /// One transaction for the whole group; per-unit outcomes in order, and the jobs it
    async fn apply_group(
        &self,
        scope: &Scope,
        units: Vec<Vec<ErasedWrite>>,
        acks: &[Vec<JobRef>],
        origins: &[Origin],
    ) -> Result<(Vec<UnitOutcome>, Vec<NewJob>), StoreError> {
        let plan_jobs = |plan: &GroupPlan| self.plan_jobs(scope, plan, origins);
        match self.tenant_data(scope).await? {
            (TenantData::Sqlite(file), tenant) => file.apply_group(tenant, units, acks, &plan_jobs),
            (TenantData::Postgres(pool), tenant) => {
                postgres::apply_group(&pool, tenant, units, acks, plan_jobs).await
            }
        }
    }
}

pub(crate) type UnitOutcome = Result<Vec<Written>, UnitError>;
