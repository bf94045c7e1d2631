//! The types documents are read and written as: stored documents, writes and their
//! decisions, change-log entries, and list queries with their keyset positions.

use serde_json::Value;

use crate::query::{OrderField, Predicate};
use crate::store::StoreError;

#[derive(Clone, Debug, PartialEq)]
pub struct StoredDoc {
    pub collection: String,
    pub id: String,
    pub data: Value,
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeOp {
    Create,
    Update,
    Delete,
}

impl ChangeOp {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeOp::Create => "create",
            ChangeOp::Update => "update",
            ChangeOp::Delete => "delete",
        }
    }

    pub(crate) fn parse(s: &str) -> ChangeOp {
        match s {
            "create" => ChangeOp::Create,
            "delete" => ChangeOp::Delete,
            _ => ChangeOp::Update,
        }
    }
}

/// What to do with one document, decided from its current state.
#[derive(Debug)]
pub enum WriteDecision {
    /// Create it with this data (it must not exist).
    Insert(Value),
    /// Replace its data (it must exist): version + 1.
    Replace(Value),
    Delete,
}

/// Decides a write from the document as it is inside the transaction (None: absent).
pub type DecideFn<E> = Box<dyn FnOnce(Option<&StoredDoc>) -> Result<WriteDecision, E> + Send>;

/// One write of a transaction: where, and how to decide from the current document.
pub struct WriteRequest<E> {
    pub collection: String,
    pub id: String,
    pub decide: DecideFn<E>,
}

/// A committed write.
#[derive(Clone, Debug)]
pub struct Written {
    pub op: ChangeOp,
    pub seq: i64,
    /// The document after the write (for delete: as it was when deleted).
    pub doc: StoredDoc,
    pub before: Option<StoredDoc>,
}

#[derive(Debug)]
pub enum WriteError<E> {
    /// A decision refused the write (the index of the write in its batch).
    Rejected(usize, E),
    Store(StoreError),
}

impl<E> From<sqlx::Error> for WriteError<E> {
    fn from(e: sqlx::Error) -> Self {
        WriteError::Store(StoreError::Db(e))
    }
}

impl<E> From<StoreError> for WriteError<E> {
    fn from(e: StoreError) -> Self {
        WriteError::Store(e)
    }
}

/// One change-log entry.
#[derive(Clone, Debug)]
pub struct Change {
    pub seq: i64,
    pub collection: String,
    pub doc_id: String,
    pub op: ChangeOp,
    pub version: i64,
    pub data: Option<Value>,
    pub before: Option<Value>,
    pub at: i64,
    /// The document's creation time (0 for changes logged before this was recorded).
    pub created_at: i64,
    /// Update time of the version before the change, when there was one.
    pub before_updated_at: Option<i64>,
}

impl Change {
    /// The document after the change (None for a delete), as GET shows it.
    pub fn doc_after(&self) -> Option<StoredDoc> {
        self.data.clone().map(|data| StoredDoc {
            collection: self.collection.clone(),
            id: self.doc_id.clone(),
            data,
            version: self.version,
            created_at: self.created_at,
            updated_at: self.at,
        })
    }

    /// The document before the change (None for a create): for a delete, the deleted
    /// version; for an update, the version it replaced.
    pub fn doc_before(&self) -> Option<StoredDoc> {
        self.before.clone().map(|data| StoredDoc {
            collection: self.collection.clone(),
            id: self.doc_id.clone(),
            data,
            version: if self.op == ChangeOp::Delete {
                self.version
            } else {
                self.version - 1
            },
            created_at: self.created_at,
            updated_at: self.before_updated_at.unwrap_or(self.created_at),
        })
    }

    /// The change as it was written, rebuilt from the commit's result.
    pub fn from_written(w: &Written, at: i64) -> Change {
        Change {
            seq: w.seq,
            collection: w.doc.collection.clone(),
            doc_id: w.doc.id.clone(),
            op: w.op,
            version: w.doc.version,
            data: (w.op != ChangeOp::Delete).then(|| w.doc.data.clone()),
            before: w.before.as_ref().map(|d| d.data.clone()),
            at,
            created_at: w.doc.created_at,
            before_updated_at: w.before.as_ref().map(|d| d.updated_at),
        }
    }
}

/// A sort-key value read back from a row, kept exactly so a cursor can resume after it.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "t", content = "v", rename_all = "lowercase")]
pub enum SortValue {
    Null,
    Int(i64),
    Float(f64),
    Text(String),
    /// PostgreSQL: the jsonb value as JSON text.
    Json(String),
}

#[derive(Clone, Debug, PartialEq)]
pub struct OrderKey {
    pub field: OrderField,
    pub desc: bool,
}

/// Resume after this row: its sort-key values and its tie-break value.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct After {
    pub keys: Vec<SortValue>,
    /// The final tie-break: the rowid on SQLite (an index delivers rows in rowid order
    /// within equal keys, so no sort is needed), the id on PostgreSQL.
    pub tie: SortValue,
}

pub struct ListQuery<'a> {
    pub collection: &'a str,
    /// Read rule AND filter, already combined; None: everything.
    pub predicate: Option<&'a Predicate>,
    /// Sort keys; a unique tie-break is always appended (see [`After::tie`]).
    pub order: &'a [OrderKey],
    pub after: Option<&'a After>,
    pub limit: i64,
    /// Stop reading once the data read passes this many bytes (see [`page_len`]).
    pub max_bytes: usize,
    /// Read the matches from the index that narrows the predicate and sort them, rather
    /// than walk an index in the list's order (see `documents::list`): the order's keys
    /// are written so that no index matches them.
    pub sort_matches: bool,
}

/// Whether a list read of `rows_read` rows holding `bytes_read` bytes of data stops: once
/// past `max_bytes`, with at least two rows read (so a page of one oversized document
/// still knows whether more follow).
pub(in crate::store) fn read_enough(rows_read: usize, bytes_read: usize, max_bytes: usize) -> bool {
    rows_read >= 2 && bytes_read > max_bytes
}

/// How many of `rows` (read with `read_enough`) a page of at most `limit` rows and
/// `max_bytes` of data holds: at least one. Rows past it mean more follow.
pub fn page_len(rows: &[ListedDoc], limit: usize, max_bytes: usize) -> usize {
    let mut bytes = 0usize;
    let mut n = 0;
    for r in rows.iter().take(limit) {
        bytes += r.data.len();
        if n > 0 && bytes > max_bytes {
            break;
        }
        n += 1;
    }
    n
}

/// A listed document: its data stays the JSON text the database holds (a list never
/// needs it parsed: the rules were applied in SQL), and its sort keys.
pub struct ListedDoc {
    pub collection: String,
    pub id: String,
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
    /// The data as the JSON text the database holds (written by us, so valid JSON).
    pub data: String,
    pub keys: Vec<SortValue>,
    pub tie: SortValue,
}
