//! Batches: up to [`MAX_BATCH`] writes, all or nothing.

use serde::Deserialize;
use serde_json::Value;

use super::before_write::Intent;
use super::write::{check_patch_shape, delete_request, patch_request, put_request, validate_data};
use super::{DocError, DocumentService, MAX_BATCH, PatchBody, Preconditions};
use crate::names::{DocId, parse_doc};
use crate::store::{JobRef, WriteError, WriteRequest, Written};
use crate::tenancy::Scope;

/// One write of a batch, as posted.
#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
pub struct BatchWrite {
    /// create | put | patch | delete
    pub op: String,
    pub collection: String,
    pub id: Option<String>,
    /// create and put: the document's data.
    #[schema(value_type = Option<std::collections::HashMap<String, serde_json::Value>>)]
    pub data: Option<Value>,
    /// patch: an object is a merge patch, an array a JSON Patch (with `increment`).
    pub patch: Option<Value>,
    /// The version the document must have.
    pub if_match: Option<i64>,
}

impl DocumentService {
    /// Up to 500 writes, all or nothing, each checked against the rules.
    pub async fn batch(
        &self,
        scope: &Scope,
        writes: Vec<BatchWrite>,
    ) -> Result<Vec<Written>, DocError> {
        self.batch_acking(scope, writes, Vec::new()).await
    }

    /// A batch that also acknowledges after-hook deliveries (`ctx.db.batch(writes, {ack:
    /// true})`): it commits only while each delivery still holds its job and deletes the
    /// jobs with it, so its writes happen exactly once (`delivery_superseded` otherwise).
    pub async fn batch_acking(
        &self,
        scope: &Scope,
        writes: Vec<BatchWrite>,
        acks: Vec<JobRef>,
    ) -> Result<Vec<Written>, DocError> {
        super::gate::may_write(scope)?;
        if writes.is_empty() || writes.len() > MAX_BATCH {
            return Err(DocError::InvalidParam {
                param: "writes",
                message: format!("a batch holds 1 to {MAX_BATCH} writes"),
            });
        }
        let mut requests = Vec::with_capacity(writes.len());
        for (index, w) in writes.into_iter().enumerate() {
            let in_batch = |e: DocError| DocError::InBatch {
                index,
                source: Box::new(e),
            };
            let request = self.batch_request(scope, w).await.map_err(in_batch)?;
            requests.push(request);
        }
        self.store
            .write_documents(scope, requests, acks)
            .await
            .map_err(|e| match e {
                WriteError::Rejected(index, e) => DocError::InBatch {
                    index,
                    source: Box::new(e),
                },
                WriteError::Store(e) => DocError::Store(e),
            })
    }

    pub(super) async fn batch_request(
        &self,
        scope: &Scope,
        w: BatchWrite,
    ) -> Result<WriteRequest<DocError>, DocError> {
        let pre = Preconditions {
            if_match: w.if_match.map(Some),
            if_none_match_any: false,
        };
        let need_id = || {
            w.id.clone().ok_or(DocError::InvalidParam {
                param: "id",
                message: "is required for this op".into(),
            })
        };
        match w.op.as_str() {
            "create" | "put" => {
                let id = match (&w.op[..], &w.id) {
                    ("create", None) => DocId::new_v7().to_string(),
                    _ => need_id()?,
                };
                let (collection, id) = parse_doc(&w.collection, &id)?;
                let data = w.data.clone().ok_or(DocError::InvalidParam {
                    param: "data",
                    message: "is required for create and put".into(),
                })?;
                validate_data(&data, &self.limits)?;
                let pre = if w.op == "create" {
                    Preconditions {
                        if_none_match_any: true,
                        ..pre
                    }
                } else {
                    pre
                };
                if let Some(r) = self
                    .batch_before(scope, &collection, &id, Intent::Put(data.clone()), &pre)
                    .await
                {
                    return r;
                }
                Ok(put_request(
                    self.gate(scope, &collection).await?,
                    &collection,
                    &id,
                    data,
                    pre,
                ))
            }
            "patch" => {
                let (collection, id) = parse_doc(&w.collection, &need_id()?)?;
                let body = match w.patch.clone() {
                    Some(p @ Value::Array(_)) => PatchBody::JsonPatch(p),
                    Some(p @ Value::Object(_)) => PatchBody::Merge(p),
                    _ => {
                        return Err(DocError::InvalidParam {
                            param: "patch",
                            message: "must be an object (merge patch) or an array (JSON Patch)"
                                .into(),
                        });
                    }
                };
                check_patch_shape(&body)?;
                if let Some(r) = self
                    .batch_before(scope, &collection, &id, Intent::Patch(body.clone()), &pre)
                    .await
                {
                    return r;
                }
                Ok(patch_request(
                    self.gate(scope, &collection).await?,
                    &collection,
                    &id,
                    body,
                    pre,
                    self.limits.clone(),
                ))
            }
            "delete" => {
                let (collection, id) = parse_doc(&w.collection, &need_id()?)?;
                if let Some(r) = self
                    .batch_before(scope, &collection, &id, Intent::Delete, &pre)
                    .await
                {
                    return r;
                }
                Ok(delete_request(
                    self.gate(scope, &collection).await?,
                    &collection,
                    &id,
                    pre,
                ))
            }
            other => Err(DocError::InvalidParam {
                param: "op",
                message: format!("'{other}' is not one of create, put, patch, delete"),
            }),
        }
    }
}
