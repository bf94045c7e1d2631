//! Deciding a group in memory: which units commit, what each write becomes, the rows
//! to upsert and delete, and the seqs. Pure, so both backends share it.

use std::collections::HashMap;

use super::{ErasedWrite, UnitError, UnitOutcome};
use crate::store::StoreError;
use crate::store::documents::{ChangeOp, StoredDoc, WriteDecision, Written};
use crate::store::jobs::JobRef;

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
