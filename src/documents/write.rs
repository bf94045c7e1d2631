//! Single writes (create, put, patch, delete), the write requests the store commits, and
//! the one check of document data.

use serde_json::Value;

use super::before_write::Intent;
use super::gate::{Gate, may_write};
use super::{
    DocError, DocLimits, DocumentService, MAX_DEPTH, PatchBody, Preconditions, depth, has_nul,
    patch,
};
use crate::names::{CollectionName, DocId};
use crate::rules::Operation;
use crate::store::{StoreError, StoredDoc, WriteDecision, WriteError, WriteRequest, Written};
use crate::tenancy::Scope;

impl DocumentService {
    /// POST: a new document with a fresh UUIDv7 id.
    pub async fn create(
        &self,
        scope: &Scope,
        collection: &CollectionName,
        data: Value,
    ) -> Result<Written, DocError> {
        let pre = Preconditions {
            if_none_match_any: true,
            ..Default::default()
        };
        self.put_named(scope, collection, &DocId::new_v7(), data, pre)
            .await
    }

    /// PUT: creates the document at `id` or replaces it.
    pub async fn put(
        &self,
        scope: &Scope,
        collection: &CollectionName,
        id: &DocId,
        data: Value,
        pre: Preconditions,
    ) -> Result<Written, DocError> {
        self.put_named(scope, collection, id, data, pre).await
    }

    async fn put_named(
        &self,
        scope: &Scope,
        collection: &CollectionName,
        id: &DocId,
        data: Value,
        pre: Preconditions,
    ) -> Result<Written, DocError> {
        may_write(scope)?;
        validate_data(&data, &self.limits)?;
        if let Some(hooks) = self.before_hooks(scope, collection).await {
            return self
                .write_with_before(scope, hooks, collection, id, Intent::Put(data), pre)
                .await;
        }
        let gate = self.gate(scope, collection).await?;
        let write = put_request(gate, collection, id, data, pre);
        self.write_one(scope, write).await
    }

    pub async fn patch(
        &self,
        scope: &Scope,
        collection: &CollectionName,
        id: &DocId,
        body: PatchBody,
        pre: Preconditions,
    ) -> Result<Written, DocError> {
        may_write(scope)?;
        check_patch_shape(&body)?;
        if let Some(hooks) = self.before_hooks(scope, collection).await {
            return self
                .write_with_before(scope, hooks, collection, id, Intent::Patch(body), pre)
                .await;
        }
        let gate = self.gate(scope, collection).await?;
        let write = patch_request(gate, collection, id, body, pre, self.limits.clone());
        self.write_one(scope, write).await
    }

    pub async fn delete(
        &self,
        scope: &Scope,
        collection: &CollectionName,
        id: &DocId,
        pre: Preconditions,
    ) -> Result<Written, DocError> {
        may_write(scope)?;
        if let Some(hooks) = self.before_hooks(scope, collection).await {
            return self
                .write_with_before(scope, hooks, collection, id, Intent::Delete, pre)
                .await;
        }
        let gate = self.gate(scope, collection).await?;
        let write = delete_request(gate, collection, id, pre);
        self.write_one(scope, write).await
    }

    pub(super) async fn write_one(
        &self,
        scope: &Scope,
        w: WriteRequest<DocError>,
    ) -> Result<Written, DocError> {
        let mut written = self
            .store
            .write_documents(scope, vec![w], Vec::new())
            .await
            .map_err(|e| match e {
                WriteError::Rejected(_, e) => e,
                WriteError::Store(StoreError::Conflict(_)) => DocError::Exists,
                WriteError::Store(StoreError::NotFound) => DocError::NotFound,
                WriteError::Store(e) => DocError::Store(e),
            })?;
        written.pop().ok_or(DocError::NotFound)
    }
}

pub(super) fn check_patch_shape(body: &PatchBody) -> Result<(), DocError> {
    match body {
        PatchBody::Merge(v) if !v.is_object() => Err(DocError::Patch(patch::PatchError::Invalid(
            "a merge patch must be a JSON object".into(),
        ))),
        PatchBody::JsonPatch(v) if !v.is_array() => Err(DocError::Patch(
            patch::PatchError::Invalid("a JSON Patch is an array of operations".into()),
        )),
        _ => Ok(()),
    }
}

pub(super) fn put_request(
    gate: Gate,
    collection: &CollectionName,
    id: &DocId,
    data: Value,
    pre: Preconditions,
) -> WriteRequest<DocError> {
    let doc_id = id.as_str().to_string();
    request(collection, id, move |existing| {
        pre.check(existing)?;
        match existing {
            None => {
                gate.check(Operation::Create, &doc_id, None, Some(&data))?;
                Ok(WriteDecision::Insert(data))
            }
            Some(old) => {
                gate.check(Operation::Update, &doc_id, Some(old), Some(&data))?;
                Ok(WriteDecision::Replace(data))
            }
        }
    })
}

pub(super) fn patch_request(
    gate: Gate,
    collection: &CollectionName,
    id: &DocId,
    body: PatchBody,
    pre: Preconditions,
    limits: DocLimits,
) -> WriteRequest<DocError> {
    let doc_id = id.as_str().to_string();
    request(collection, id, move |existing| {
        let old = target(&gate, &pre, existing, Operation::Update, &doc_id)?;
        let new = body.apply(&old.data)?;
        if !new.is_object() {
            return Err(DocError::InvalidData(
                "the patched document must stay a JSON object".into(),
            ));
        }
        validate_data(&new, &limits)?;
        gate.check(Operation::Update, &doc_id, Some(old), Some(&new))?;
        Ok(WriteDecision::Replace(new))
    })
}

pub(super) fn delete_request(
    gate: Gate,
    collection: &CollectionName,
    id: &DocId,
    pre: Preconditions,
) -> WriteRequest<DocError> {
    let doc_id = id.as_str().to_string();
    request(collection, id, move |existing| {
        let old = target(&gate, &pre, existing, Operation::Delete, &doc_id)?;
        gate.check(Operation::Delete, &doc_id, Some(old), None)?;
        Ok(WriteDecision::Delete)
    })
}

fn request(
    collection: &CollectionName,
    id: &DocId,
    decide: impl FnOnce(Option<&StoredDoc>) -> Result<WriteDecision, DocError> + Send + 'static,
) -> WriteRequest<DocError> {
    WriteRequest {
        collection: collection.as_str().to_string(),
        id: id.as_str().to_string(),
        decide: Box::new(decide),
    }
}

/// The stored document a patch or delete acts on. A missing one fails the preconditions
/// first, then answers as [`Gate::missing`] does.
fn target<'d>(
    gate: &Gate,
    pre: &Preconditions,
    existing: Option<&'d StoredDoc>,
    op: Operation,
    id: &str,
) -> Result<&'d StoredDoc, DocError> {
    pre.check(existing)?;
    existing.ok_or_else(|| gate.missing(op, id))
}

impl PatchBody {
    /// The document `old` becomes under this patch.
    pub(super) fn apply(&self, old: &Value) -> Result<Value, DocError> {
        match self {
            PatchBody::Merge(p) => Ok(patch::merge(old, p)),
            PatchBody::JsonPatch(ops) => patch::json_patch(old, ops).map_err(DocError::Patch),
        }
    }
}

/// The one check of the data a write would store, whatever the write (put, patch, batch,
/// a before hook's replacement): an object, not too deep, no U+0000, within the size limit.
pub(super) fn validate_data(data: &Value, limits: &DocLimits) -> Result<(), DocError> {
    if !data.is_object() {
        return Err(DocError::InvalidData(
            "document data must be a JSON object".into(),
        ));
    }
    if depth(data) > MAX_DEPTH {
        return Err(DocError::InvalidData(format!(
            "document data nests deeper than {MAX_DEPTH} levels"
        )));
    }
    if has_nul(data) {
        return Err(DocError::InvalidData(
            "strings and keys cannot contain U+0000".into(),
        ));
    }
    let size = serde_json::to_vec(data)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    if size > limits.max_bytes {
        return Err(DocError::TooLarge(limits.max_bytes));
    }
    Ok(())
}
