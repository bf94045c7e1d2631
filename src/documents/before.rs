//! Before-write hooks, as the document service sees them: something (the function
//! service) that may replace the data of a write or refuse it, asked before the write.
//! `documents` knows only this trait, not functions.

use futures_util::future::BoxFuture;
use serde_json::Value;

use super::DocError;
use crate::store::{ChangeOp, StoredDoc};
use crate::tenancy::Scope;

/// A write about to be made.
pub struct PendingWrite<'a> {
    pub collection: &'a str,
    pub id: &'a str,
    pub op: ChangeOp,
    /// The data the write would store (None for a delete).
    pub new: Option<&'a Value>,
    /// The document as stored now.
    pub before: Option<&'a StoredDoc>,
}

pub trait BeforeWrite: Send + Sync {
    /// Whether a write to `collection` by this caller may run a before hook (cheap;
    /// cached). False lets the write skip reading the stored document first.
    fn wants<'a>(&'a self, scope: &'a Scope, collection: &'a str) -> BoxFuture<'a, bool>;
    /// Runs the hooks of a write: Ok(Some(data)) replaces the data, Ok(None) keeps it,
    /// Err refuses the write.
    fn run<'a>(
        &'a self,
        scope: &'a Scope,
        write: PendingWrite<'a>,
    ) -> BoxFuture<'a, Result<Option<Value>, DocError>>;
}
