//! Keeping a batch's claims while its jobs wait. A runner claims up to 64 jobs at once
//! (or takes those it claimed at birth); they wait for workers behind one another (a
//! tenant runs on all but one), and their outcomes are recorded when the last is over.
//! A job whose claim ran out meanwhile was claimed and run again by another runner; with
//! a lease shorter than a batch's run, two nodes took the whole batch from each other
//! again and again, and the outbox never emptied.
//!
//! So, while a batch runs, the claims of its jobs that wait for a worker or for their
//! outcome to be recorded are renewed every third of the lease, and a job starts with at
//! least `min(the lease, the longest time limit)` of its claim left (renewed as it starts
//! if not). With the default lease a run never outlives its claim; with a shorter one, a
//! run that outlasts the lease may still be taken over (delivery is at least once). A
//! run lasts from its start to its end, parked waits for `ctx.db` included: with a
//! tenant's share of the workers busy, a parked invocation may wait a while to resume.
//! A runner that dies renews nothing: its jobs go to another runner once their lease
//! ends.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU8, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

use crate::store::{JobRef, Store, now_ms};
use crate::tenancy::Scope;

const WAITING: u8 = 0;
/// Started, its claim not looked at since.
const STARTED: u8 = 1;
const RUNNING: u8 = 2;
const OVER: u8 = 3;

/// The claims of one invocation's jobs, as its runner keeps them.
pub(super) struct Claim {
    /// `WAITING` for a worker, `STARTED`, `RUNNING`, or `OVER` (the outcome not recorded
    /// yet).
    state: AtomicU8,
    /// When the claims end at the earliest (ms).
    until: AtomicI64,
    refs: Vec<JobRef>,
    /// Told when an invocation of the batch starts.
    started: Arc<Notify>,
}

impl Claim {
    pub(super) fn started(&self) {
        self.state.store(STARTED, Ordering::Release);
        self.started.notify_one();
    }

    pub(super) fn over(&self) {
        self.state.store(OVER, Ordering::Release);
    }
}

/// A batch's claims and the task that keeps them; the task stops when this is dropped
/// (with the batch, however it ends: a drain aborted at shutdown included).
pub(super) struct Keeper {
    started: Arc<Notify>,
    until: i64,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Keeper {
    /// For a batch whose claims all end at `until` (ms) or later.
    pub(super) fn new(until: i64) -> Keeper {
        Keeper {
            started: Arc::new(Notify::new()),
            until,
            task: None,
        }
    }

    /// The claim of one invocation's jobs.
    pub(super) fn claim(&self, refs: Vec<JobRef>) -> Arc<Claim> {
        Arc::new(Claim {
            state: AtomicU8::new(WAITING),
            until: AtomicI64::new(self.until),
            refs,
            started: self.started.clone(),
        })
    }

    /// Starts keeping `claims` (see the module's comment). No renewal in a batch's first
    /// third: the jobs are taken with enough of their claims left, and a write per batch
    /// would cost the hot path the claim transaction that claiming at birth saves.
    pub(super) fn keep(
        &mut self,
        store: Store,
        scope: Scope,
        claims: Vec<Arc<Claim>>,
        lease: i64,
        longest_run: i64,
    ) {
        let need = longest_run.min(lease);
        let every = Duration::from_millis(u64::try_from(lease / 3).unwrap_or(1).max(1));
        let started = self.started.clone();
        self.task = Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let periodic = tokio::select! {
                    _ = tick.tick() => true,
                    () = started.notified() => false,
                };
                let now = now_ms();
                let due: Vec<&Arc<Claim>> = claims
                    .iter()
                    .filter(|c| match c.state.load(Ordering::Acquire) {
                        // Looked at once as it starts: renewed if its claim is short.
                        STARTED => {
                            c.state
                                .compare_exchange(
                                    STARTED,
                                    RUNNING,
                                    Ordering::AcqRel,
                                    Ordering::Acquire,
                                )
                                .is_ok()
                                && c.until.load(Ordering::Acquire) - now < need
                        }
                        WAITING | OVER => periodic,
                        _ => false,
                    })
                    .collect();
                if due.is_empty() {
                    continue;
                }
                let refs: Vec<JobRef> = due.iter().flat_map(|c| c.refs.iter().cloned()).collect();
                match store.renew_claims(&scope, &refs, lease).await {
                    Ok(_) => {
                        for c in due {
                            c.until.fetch_max(now + lease, Ordering::AcqRel);
                        }
                    }
                    Err(e) => tracing::warn!(tenant = %scope.tenant().slug, error = %e,
                        "could not renew the claims of queued hook jobs"),
                }
            }
        }));
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
