//! Writes through before hooks: read the stored document, let the hooks replace the data
//! or refuse, then write pinned to the version the hooks saw.

use std::sync::Arc;

use serde_json::Value;

use super::gate::Gate;
use super::write::{delete_request, put_request, validate_data};
use super::{DocError, DocumentService, PatchBody, Preconditions, before};
use crate::names::{CollectionName, DocId};
use crate::rules::Operation;
use crate::store::{ChangeOp, WriteRequest, Written};
use crate::tenancy::Scope;

/// What a write intends, before its data is final.
pub(super) enum Intent {
    Put(Value),
    Patch(PatchBody),
    Delete,
}

/// Attempts of a write whose before hook saw a version that changed before the write.
pub(super) const BEFORE_RACE_ATTEMPTS: usize = 3;

impl DocumentService {
    /// The before hooks of writes to `collection`, when there are any.
    pub(super) async fn before_hooks(
        &self,
        scope: &Scope,
        collection: &CollectionName,
    ) -> Option<Arc<dyn before::BeforeWrite>> {
        let hooks = self.before.get()?;
        hooks
            .wants(scope, collection.as_str())
            .await
            .then(|| hooks.clone())
    }

    /// Reads the stored document, works out the data the write would store, and lets the
    /// before hooks replace it or refuse. The result is the data to write (None: delete)
    /// and a precondition on the version the hooks saw, so nothing changes in between.
    pub(super) async fn resolve_before(
        &self,
        scope: &Scope,
        hooks: &dyn before::BeforeWrite,
        gate: &Gate,
        id: &DocId,
        intent: &Intent,
        pre: &Preconditions,
    ) -> Result<(Option<Value>, Preconditions), DocError> {
        let collection = gate.collection.as_str();
        let current = self
            .store
            .get_document(scope, collection, id.as_str())
            .await?;
        let id = id.as_str();
        pre.check(current.as_ref())?;
        let (op, new) = match (intent, &current) {
            (Intent::Put(data), None) => (ChangeOp::Create, Some(data.clone())),
            (Intent::Put(data), Some(_)) => (ChangeOp::Update, Some(data.clone())),
            (Intent::Patch(body), Some(old)) => (ChangeOp::Update, Some(body.apply(&old.data)?)),
            (Intent::Delete, Some(_)) => (ChangeOp::Delete, None),
            (Intent::Patch(_), None) => return Err(gate.missing(Operation::Update, id)),
            (Intent::Delete, None) => return Err(gate.missing(Operation::Delete, id)),
        };
        let replaced = hooks
            .run(
                scope,
                before::PendingWrite {
                    collection,
                    id,
                    op,
                    new: new.as_ref(),
                    before: current.as_ref(),
                },
            )
            .await?;
        let data = match (op, replaced, new) {
            (ChangeOp::Delete, _, _) => None,
            (_, Some(r), _) | (_, None, Some(r)) => {
                validate_data(&r, &self.limits)?;
                Some(r)
            }
            (_, None, None) => None,
        };
        let pinned = match &current {
            Some(d) => Preconditions {
                if_match: Some(Some(d.version)),
                if_none_match_any: false,
            },
            None => Preconditions {
                if_match: None,
                if_none_match_any: true,
            },
        };
        Ok((data, pinned))
    }

    /// A single write through before hooks, retried when the document changed between
    /// the hooks' read and the write.
    pub(super) async fn write_with_before(
        &self,
        scope: &Scope,
        hooks: Arc<dyn before::BeforeWrite>,
        collection: &CollectionName,
        id: &DocId,
        intent: Intent,
        pre: Preconditions,
    ) -> Result<Written, DocError> {
        let gate = self.gate(scope, collection).await?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (data, pinned) = self
                .resolve_before(scope, &*hooks, &gate, id, &intent, &pre)
                .await?;
            let request = match data {
                Some(data) => put_request(gate.clone(), collection, id, data, pinned),
                None => delete_request(gate.clone(), collection, id, pinned),
            };
            match self.write_one(scope, request).await {
                Err(DocError::PreconditionFailed(_) | DocError::Exists)
                    if attempt < BEFORE_RACE_ATTEMPTS =>
                {
                    continue;
                }
                other => return other,
            }
        }
    }

    /// A batch write through before hooks, when its collection has any: the write is
    /// pinned to the version the hooks saw (a concurrent change fails the batch with 412).
    pub(super) async fn batch_before(
        &self,
        scope: &Scope,
        collection: &CollectionName,
        id: &DocId,
        intent: Intent,
        pre: &Preconditions,
    ) -> Option<Result<WriteRequest<DocError>, DocError>> {
        let hooks = self.before_hooks(scope, collection).await?;
        Some(
            async {
                let gate = self.gate(scope, collection).await?;
                let (data, pinned) = self
                    .resolve_before(scope, &*hooks, &gate, id, &intent, pre)
                    .await?;
                Ok(match data {
                    Some(d) => put_request(gate, collection, id, d, pinned),
                    None => delete_request(gate, collection, id, pinned),
                })
            }
            .await,
        )
    }
}
