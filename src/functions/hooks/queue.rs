//! The in-memory side of the outbox: which tenants to drain and when, and the jobs this
//! node claimed as it committed them.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use tokio::sync::Notify;

use crate::store::{JobRef, JobRow, now_ms};
use crate::tenancy::Scope;

/// Tenants whose outboxes may hold due jobs, and when the others' next job is due; and
/// the jobs this node claimed at birth, waiting to run.
#[derive(Default)]
pub struct JobQueue {
    dirty: Mutex<HashSet<i64>>,
    pub(super) next_due: Mutex<HashMap<i64, i64>>,
    wake: Notify,
    pub(super) born: Mutex<HashMap<i64, Born>>,
}

/// A tenant's jobs claimed at birth, in commit order, each with the end of its claim.
pub(super) struct Born {
    pub(super) scope: Scope,
    pub(super) jobs: std::collections::VecDeque<(JobRow, i64)>,
}

/// The most jobs claimed at birth that wait in memory per tenant; past it, new jobs go to
/// the outbox unclaimed (the runner is behind, and a claim would only expire).
pub(super) const MAX_BORN: usize = 10_000;

impl JobQueue {
    pub(crate) fn mark(&self, tenant: i64) {
        self.dirty
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(tenant);
        self.wake.notify_one();
    }

    /// Tenants to look at again without waking the runner (it is looking already).
    pub(in crate::functions) fn mark_all(&self, tenants: impl IntoIterator<Item = i64>) {
        self.dirty
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(tenants);
    }

    /// A tenant whose next job is due at `at` (ms).
    pub(in crate::functions) fn due_at(&self, tenant: i64, at: i64) {
        self.next_due
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(tenant, at);
        self.wake.notify_one();
    }

    /// A tenant with a job due at `at` (ms) at the latest: an earlier time it is due at
    /// already stands.
    pub(in crate::functions) fn due_by(&self, tenant: i64, at: i64) {
        self.next_due
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(tenant)
            .and_modify(|t| *t = (*t).min(at))
            .or_insert(at);
        self.wake.notify_one();
    }

    /// Waits until a tenant is marked (at once if one was since the last wait).
    pub(in crate::functions) async fn woken(&self) {
        self.wake.notified().await
    }

    /// The tenants due at `now`: those marked since the last call and those whose next
    /// job is due; and when the next of the others is due.
    pub(in crate::functions) fn take_due(&self, now: i64) -> (HashSet<i64>, Option<i64>) {
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

    pub(super) fn born_count(&self, tenant: i64) -> usize {
        self.born
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&tenant)
            .map_or(0, |b| b.jobs.len())
    }

    /// Up to `limit` of a tenant's jobs claimed at birth whose claims have at least
    /// `margin_ms` to run, and when the first of their claims ends; and the deliveries
    /// of those with less, which are not started: the caller gives them back to the
    /// outbox, so that the claim that takes them next does not count an attempt they
    /// never made (at the last one, it would leave them dead unrun).
    pub(super) fn take_born(
        &self,
        tenant: i64,
        limit: usize,
        margin_ms: i64,
    ) -> (Vec<JobRow>, i64, Vec<JobRef>) {
        let mut born = self.born.lock().unwrap_or_else(|p| p.into_inner());
        let Some(b) = born.get_mut(&tenant) else {
            return (Vec::new(), i64::MAX, Vec::new());
        };
        let now = now_ms();
        let mut out = Vec::new();
        let mut short = Vec::new();
        let mut first_end = i64::MAX;
        while out.len() < limit {
            match b.jobs.pop_front() {
                Some((job, until)) if until - now >= margin_ms => {
                    first_end = first_end.min(until);
                    out.push(job);
                }
                Some((job, _)) => short.push(job.delivery()),
                None => break,
            }
        }
        if b.jobs.is_empty() {
            born.remove(&tenant);
        }
        (out, first_end, short)
    }
}
