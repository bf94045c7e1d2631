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

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use sqlx::types::Json;
use tokio::sync::oneshot;

use super::documents::{ChangeOp, StoredDoc, WriteDecision, Written, doc_from_row_at};
use super::jobs::{INSERT_JOB_SQL, JobRef, NewJob, Origin};
use super::{Store, StoreError, now_ms, on_db};
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
/// Rows per multi-row statement (well under SQLite's parameter limit).
const CHUNK: usize = 200;

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
        if let Some(planner) = self.planner.get() {
            planner.prepare(scope).await;
        }
        let origin = Origin {
            auth: scope.auth_json(),
            depth: scope.depth(),
        };
        let queue = {
            let mut queues = self.groups.queues.lock().unwrap_or_else(|p| p.into_inner());
            queues.entry(tenant).or_default().clone()
        };
        let (tx, rx) = oneshot::channel();
        let lead = {
            let mut q = queue.lock().unwrap_or_else(|p| p.into_inner());
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

    /// One transaction for the whole group; per-unit outcomes in order.
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
    /// queued.
    async fn apply_group(
        &self,
        scope: &Scope,
        units: Vec<Vec<ErasedWrite>>,
        acks: &[Vec<JobRef>],
        origins: &[Origin],
    ) -> Result<(Vec<UnitOutcome>, Vec<NewJob>), StoreError> {
        if let Some(fast) = self.fast_sqlite(scope).await? {
            return fast.apply_group(scope.tenant().id, units, acks, &|plan| {
                self.plan_jobs(scope, plan, origins)
            });
        }
        let (db, tenant) = self.tenant_db(scope).await?;
        let begin = db.begin_write();
        let db_kind = self.kind();
        on_db!(db, |p| {
            let mut tx = p.begin_with(begin).await?;
            // Taking the seq row first serialises this tenant's writers until commit.
            let seq0: i64 = sqlx::query_scalar(LOCK_SEQ_SQL)
                .bind(tenant)
                .fetch_one(&mut *tx)
                .await?;
            let keys = group_keys(&units);
            let mut current = Vec::new();
            for chunk in keys.chunks(CHUNK) {
                let sql = format!(
                    "SELECT collection, id, data, version, created_at, updated_at FROM documents \
                     WHERE tenant_id = $1 AND (collection, id) IN (VALUES {})",
                    values(chunk.len(), 2, false)
                );
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(tenant);
                for (c, i) in chunk {
                    q = q.bind(c.as_str()).bind(i.as_str());
                }
                for row in q.fetch_all(&mut *tx).await? {
                    current.push(doc_from_row_at(&row)?);
                }
            }
            // The acknowledged jobs as they are now, locked on PostgreSQL so that no
            // runner claims one again before this commits.
            let acked: Vec<&JobRef> = acks.iter().flatten().collect();
            let mut held = std::collections::HashSet::new();
            for chunk in acked.chunks(CHUNK) {
                let lock = match db_kind {
                    super::BackendKind::Postgres => " FOR UPDATE",
                    _ => "",
                };
                let sql = format!(
                    "SELECT id, attempts FROM jobs WHERE tenant_id = $1 AND state = 'pending' \
                     AND id IN (VALUES {}){lock}",
                    values(chunk.len(), 1, false)
                );
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(tenant);
                for r in chunk {
                    q = q.bind(r.id.as_str());
                }
                for row in q.fetch_all(&mut *tx).await? {
                    let attempts: i32 = sqlx::Row::try_get(&row, 1)?;
                    held.insert(JobRef {
                        id: sqlx::Row::try_get(&row, 0)?,
                        attempts: attempts.max(0) as u32,
                    });
                }
            }
            let stale = stale_units(acks, |r| held.contains(r));
            let plan = plan_group(units, &keys, current, &stale, seq0, now_ms());
            let done = acked_jobs(&plan, acks);
            for chunk in done.chunks(CHUNK) {
                let sql = format!(
                    "DELETE FROM jobs WHERE tenant_id = $1 AND id IN (VALUES {})",
                    values(chunk.len(), 1, false)
                );
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(tenant);
                for r in chunk {
                    q = q.bind(r.id.as_str());
                }
                q.execute(&mut *tx).await?;
            }
            let jobs = self.plan_jobs(scope, &plan, origins);
            for job in &jobs {
                sqlx::query(INSERT_JOB_SQL)
                    .bind(tenant)
                    .bind(job.id.as_str())
                    .bind(job.function.as_str())
                    .bind(job.event.as_str())
                    .bind(job.depth as i32)
                    .bind(job.max_attempts as i32)
                    .bind(plan.now)
                    .bind(job.claimed_until)
                    .execute(&mut *tx)
                    .await?;
            }
            let changes: Vec<&Written> = plan.changes().collect();
            if !changes.is_empty() {
                for chunk in plan.upserts.chunks(CHUNK) {
                    let sql = format!(
                        "INSERT INTO documents (tenant_id, collection, id, data, version, \
                         created_at, updated_at) VALUES {} {UPSERT_TAIL}",
                        values(chunk.len(), 6, true)
                    );
                    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(tenant);
                    for d in chunk {
                        q = q
                            .bind(d.collection.as_str())
                            .bind(d.id.as_str())
                            .bind(Json(&d.data))
                            .bind(d.version)
                            .bind(d.created_at)
                            .bind(d.updated_at);
                    }
                    q.execute(&mut *tx).await?;
                }
                for chunk in plan.deletes.chunks(CHUNK) {
                    let sql = format!(
                        "DELETE FROM documents WHERE tenant_id = $1 AND (collection, id) IN (VALUES {})",
                        values(chunk.len(), 2, false)
                    );
                    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(tenant);
                    for (c, i) in chunk {
                        q = q.bind(c.as_str()).bind(i.as_str());
                    }
                    q.execute(&mut *tx).await?;
                }
                for chunk in changes.chunks(CHUNK) {
                    let sql = format!(
                        "INSERT INTO changes (tenant_id, seq, collection, doc_id, op, version, \
                         data, before, at, created_at, before_updated_at) VALUES {}",
                        values(chunk.len(), 10, true)
                    );
                    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(tenant);
                    for w in chunk {
                        let after: Option<Json<&Value>> =
                            (w.op != ChangeOp::Delete).then_some(Json(&w.doc.data));
                        let before: Option<Json<&Value>> = w.before.as_ref().map(|d| Json(&d.data));
                        q = q
                            .bind(w.seq)
                            .bind(w.doc.collection.as_str())
                            .bind(w.doc.id.as_str())
                            .bind(w.op.as_str())
                            .bind(w.doc.version)
                            .bind(after)
                            .bind(before)
                            .bind(plan.now)
                            .bind(w.doc.created_at)
                            .bind(w.before.as_ref().map(|d| d.updated_at));
                    }
                    q.execute(&mut *tx).await?;
                }
                sqlx::query(SET_SEQ_SQL)
                    .bind(tenant)
                    .bind(plan.final_seq)
                    .execute(&mut *tx)
                    .await?;
                // Other nodes learn of the new changes when this commits (a no-op on SQLite,
                // which has no other nodes).
                if matches!(db_kind, super::BackendKind::Postgres) {
                    sqlx::query("SELECT pg_notify($1, $2)")
                        .bind(super::announce::CHANGES)
                        .bind(super::announce::commit_payload(tenant, plan.final_seq))
                        .execute(&mut *tx)
                        .await?;
                }
            }
            tx.commit().await?;
            Ok((plan.outcomes, jobs))
        })
    }
}

pub(crate) type UnitOutcome = Result<Vec<Written>, UnitError>;

/// Takes (and on PostgreSQL locks) the tenant's seq row and returns the current seq.
pub(crate) const LOCK_SEQ_SQL: &str = "INSERT INTO tenant_seq (tenant_id, seq, pruned_through) VALUES ($1, 0, 0) \
     ON CONFLICT (tenant_id) DO UPDATE SET seq = tenant_seq.seq RETURNING seq";
pub(crate) const SET_SEQ_SQL: &str = "UPDATE tenant_seq SET seq = $2 WHERE tenant_id = $1";
pub(crate) const UPSERT_TAIL: &str = "ON CONFLICT (tenant_id, collection, id) DO UPDATE SET \
     data = excluded.data, version = excluded.version, \
     created_at = excluded.created_at, updated_at = excluded.updated_at";

/// What a group commit writes, decided before any write statement runs.
pub(crate) struct GroupPlan {
    pub outcomes: Vec<UnitOutcome>,
    /// Final state of every created or changed document.
    pub upserts: Vec<StoredDoc>,
    /// Documents that existed and are gone.
    pub deletes: Vec<(String, String)>,
    pub final_seq: i64,
    pub now: i64,
}

impl GroupPlan {
    /// Every committed write, in seq order (the committed units' writes, in unit order).
    pub(crate) fn changes(&self) -> impl Iterator<Item = &Written> {
        self.outcomes
            .iter()
            .filter_map(|o| o.as_ref().ok())
            .flatten()
    }
}

/// The distinct (collection, id) pairs of a group, in first-seen order.
pub(crate) fn group_keys(units: &[Vec<ErasedWrite>]) -> Vec<(String, String)> {
    let mut seen = std::collections::HashSet::new();
    let mut keys = Vec::new();
    for w in units.iter().flatten() {
        if seen.insert((w.collection.as_str(), w.id.as_str())) {
            keys.push((w.collection.clone(), w.id.clone()));
        }
    }
    keys
}

/// Which units acknowledge a delivery that no longer holds its job (`held` says whether
/// one still does): those are refused whole.
pub(crate) fn stale_units(acks: &[Vec<JobRef>], held: impl Fn(&JobRef) -> bool) -> Vec<bool> {
    acks.iter().map(|a| !a.iter().all(&held)).collect()
}

/// The jobs that the committed units of a plan acknowledge, to delete with it.
pub(crate) fn acked_jobs<'a>(plan: &GroupPlan, acks: &'a [Vec<JobRef>]) -> Vec<&'a JobRef> {
    plan.outcomes
        .iter()
        .zip(acks)
        .filter(|(o, _)| o.is_ok())
        .flat_map(|(_, a)| a)
        .collect()
}

/// Decides every unit in order against the evolving state: a unit's writes see the
/// effects of the units before it and its own earlier writes; a refused unit (or a
/// `stale` one) leaves no trace and takes no seq.
pub(crate) fn plan_group(
    units: Vec<Vec<ErasedWrite>>,
    keys: &[(String, String)],
    current: Vec<StoredDoc>,
    stale: &[bool],
    seq0: i64,
    now: i64,
) -> GroupPlan {
    let mut state: HashMap<(String, String), Option<StoredDoc>> =
        keys.iter().map(|k| (k.clone(), None)).collect();
    for doc in current {
        state.insert((doc.collection.clone(), doc.id.clone()), Some(doc));
    }
    let existed: HashMap<(String, String), bool> = state
        .iter()
        .map(|(k, v)| (k.clone(), v.is_some()))
        .collect();
    let mut seq = seq0;
    let mut outcomes = Vec::with_capacity(units.len());
    let mut dirty: Vec<(String, String)> = Vec::new();
    for (i, writes) in units.into_iter().enumerate() {
        if stale.get(i).copied().unwrap_or(false) {
            outcomes.push(Err(UnitError::Store(StoreError::Superseded)));
            continue;
        }
        let unit_seq = seq;
        let mut overlay: HashMap<(String, String), Option<StoredDoc>> = HashMap::new();
        let mut written = Vec::with_capacity(writes.len());
        let mut failed = None;
        for (index, w) in writes.into_iter().enumerate() {
            let key = (w.collection.clone(), w.id.clone());
            let existing = match overlay.get(&key) {
                Some(v) => v.clone(),
                None => state.get(&key).cloned().flatten(),
            };
            let decision = match (w.decide)(existing.as_ref()) {
                Ok(d) => d,
                Err(e) => {
                    failed = Some(UnitError::Rejected(index, e));
                    break;
                }
            };
            let (op, doc, after) = match (decision, existing.clone()) {
                (WriteDecision::Insert(data), None) => {
                    let doc = StoredDoc {
                        collection: w.collection,
                        id: w.id,
                        data,
                        version: 1,
                        created_at: now,
                        updated_at: now,
                    };
                    (ChangeOp::Create, doc.clone(), Some(doc))
                }
                (WriteDecision::Replace(data), Some(old)) => {
                    let doc = StoredDoc {
                        data,
                        version: old.version + 1,
                        updated_at: now,
                        ..old
                    };
                    (ChangeOp::Update, doc.clone(), Some(doc))
                }
                (WriteDecision::Delete, Some(old)) => (ChangeOp::Delete, old, None),
                (WriteDecision::Insert(_), Some(_)) => {
                    failed = Some(UnitError::Store(StoreError::Conflict(
                        "a document with this id exists",
                    )));
                    break;
                }
                (_, None) => {
                    failed = Some(UnitError::Store(StoreError::NotFound));
                    break;
                }
            };
            seq += 1;
            overlay.insert(key, after);
            written.push(Written {
                op,
                seq,
                doc,
                before: existing,
            });
        }
        match failed {
            Some(e) => {
                seq = unit_seq;
                outcomes.push(Err(e));
            }
            None => {
                for (k, v) in overlay {
                    dirty.push(k.clone());
                    state.insert(k, v);
                }
                outcomes.push(Ok(written));
            }
        }
    }
    dirty.sort();
    dirty.dedup();
    let mut upserts = Vec::new();
    let mut deletes = Vec::new();
    for k in dirty {
        match state.remove(&k).flatten() {
            Some(doc) => upserts.push(doc),
            None if existed.get(&k).copied().unwrap_or(false) => deletes.push(k),
            None => {}
        }
    }
    GroupPlan {
        outcomes,
        upserts,
        deletes,
        final_seq: seq,
        now,
    }
}

/// `($2, $3), ($4, $5), …`: `rows` tuples of `per_row` placeholders numbered from `$2`,
/// each led by `$1` (the tenant id) when `with_tenant`.
fn values(rows: usize, per_row: usize, with_tenant: bool) -> String {
    let mut sql = String::with_capacity(rows * per_row * 5);
    for i in 0..rows {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        if with_tenant {
            sql.push_str("$1, ");
        }
        for j in 0..per_row {
            if j > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("${}", 2 + per_row * i + j));
        }
        sql.push(')');
    }
    sql
}

#[cfg(test)]
mod tests {
    #[test]
    fn values_lists() {
        assert_eq!(super::values(2, 2, false), "($2, $3), ($4, $5)");
        assert_eq!(super::values(2, 2, true), "($1, $2, $3), ($1, $4, $5)");
    }
}
