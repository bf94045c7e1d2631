//! `ctx.db`: the asynchronous host calls, run on the server's tokio runtime as the
//! tenant's service caller (rules bypassed, inside the function's own tenant only: the
//! scope is derived from the invocation's, and the store takes the tenant from it).

use std::sync::Arc;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use serde_json::{Value, json};

use super::sandbox::{Host, HostError};
use crate::documents::wire::DocJson;
use crate::documents::{
    BatchWrite, DocError, DocumentService, ListParams, PatchBody, Preconditions,
};
use crate::names::{CollectionName, DocId, parse_doc};
use crate::store::StoredDoc;
use crate::tenancy::Scope;

pub struct DbHost {
    pub docs: Arc<DocumentService>,
    pub scope: Scope,
    /// The job deliveries of an after-hook invocation, which an acknowledging batch
    /// completes; None for other triggers.
    pub delivery: Option<Arc<super::hooks::Delivery>>,
}

/// A document as functions see it: the same shape as the REST API's.
fn doc_json(d: StoredDoc) -> Value {
    DocJson::of(&d).to_value()
}

/// A document failure as `ctx.db` throws it: the same code, status and detail a REST
/// client gets.
fn host_error(e: DocError) -> HostError {
    if matches!(e.kind(), crate::fault::Kind::Internal) {
        tracing::error!(error = %e, "ctx.db: internal error");
    }
    HostError {
        code: e.code().to_string(),
        status: e.kind().status(),
        message: e.client_detail(),
    }
}

fn bad(message: impl Into<String>) -> HostError {
    HostError {
        code: "invalid_argument".into(),
        status: 400,
        message: message.into(),
    }
}

fn str_arg(args: &[Value], i: usize, what: &str) -> Result<String, HostError> {
    args.get(i)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| bad(format!("{what} must be a string")))
}

/// A collection argument, checked once here: refused as the REST API refuses it.
fn collection(c: &str) -> Result<CollectionName, HostError> {
    CollectionName::parse(c).map_err(|e| host_error(e.into()))
}

/// Collection and id arguments, checked once here (the collection first).
fn doc_names(c: &str, id: &str) -> Result<(CollectionName, DocId), HostError> {
    parse_doc(c, id).map_err(|e| host_error(e.into()))
}

fn options(args: &[Value], i: usize) -> Preconditions {
    let o = args.get(i);
    let if_match = o
        .and_then(|o| o.get("ifMatch"))
        .and_then(Value::as_i64)
        .map(Some);
    Preconditions {
        if_match,
        if_none_match_any: o
            .and_then(|o| o.get("ifNoneMatch"))
            .is_some_and(|v| v == "*"),
    }
}

/// `a.b.c` (or `/a/b/c`) as a JSON pointer.
fn pointer(field: &str) -> String {
    if field.starts_with('/') {
        return field.to_string();
    }
    field
        .split('.')
        .map(|p| format!("/{}", p.replace('~', "~0").replace('/', "~1")))
        .collect()
}

/// `ctx.db.patch`'s patch: an object is a merge patch, an array a JSON Patch.
fn patch_body(patch: Option<Value>) -> Result<PatchBody, HostError> {
    match patch {
        Some(p @ Value::Array(_)) => Ok(PatchBody::JsonPatch(p)),
        Some(p @ Value::Object(_)) => Ok(PatchBody::Merge(p)),
        _ => Err(bad(
            "patch must be an object (merge) or an array (JSON Patch)",
        )),
    }
}

impl DbHost {
    /// Refuses writes made too many hooks deep.
    fn check_depth(&self, op: &str) -> Result<(), HostError> {
        let writes = !matches!(op, "db.get" | "db.list");
        if writes && self.scope.depth() >= super::hooks::MAX_HOOK_DEPTH {
            return Err(HostError {
                code: "hook_depth_exceeded".into(),
                status: 409,
                message: format!(
                    "writes made {} hooks deep are refused (a hook that triggers itself?)",
                    self.scope.depth()
                ),
            });
        }
        Ok(())
    }

    async fn dispatch(&self, op: &str, args: Vec<Value>) -> Result<Value, HostError> {
        let docs = &self.docs;
        let scope = &self.scope;
        self.check_depth(op)?;
        match op {
            "db.get" => {
                let (c, id) = (str_arg(&args, 0, "collection")?, str_arg(&args, 1, "id")?);
                let (c, id) = doc_names(&c, &id)?;
                match docs.get(scope, &c, &id).await {
                    Ok(d) => Ok(doc_json(d)),
                    Err(DocError::NotFound) => Ok(Value::Null),
                    Err(e) => Err(host_error(e)),
                }
            }
            "db.list" => {
                let c = str_arg(&args, 0, "collection")?;
                let o = args.get(1).cloned().unwrap_or(Value::Null);
                let s = |k: &str| o.get(k).and_then(Value::as_str).map(str::to_string);
                let params = ListParams {
                    filter: s("filter"),
                    order: s("order"),
                    limit: o.get("limit").and_then(Value::as_i64),
                    cursor: s("cursor"),
                    count: false,
                };
                let c = collection(&c)?;
                let page = docs.list(scope, &c, params).await.map_err(host_error)?;
                let items: Vec<Value> = page
                    .items
                    .iter()
                    .map(|d| DocJson::listed(d).to_value())
                    .collect();
                Ok(json!({ "items": items, "next_cursor": page.next_cursor }))
            }
            "db.create" => {
                let c = str_arg(&args, 0, "collection")?;
                let data = args.get(1).cloned().unwrap_or(Value::Null);
                let c = collection(&c)?;
                let w = docs.create(scope, &c, data).await.map_err(host_error)?;
                Ok(doc_json(w.doc))
            }
            "db.put" => {
                let (c, id) = (str_arg(&args, 0, "collection")?, str_arg(&args, 1, "id")?);
                let data = args.get(2).cloned().unwrap_or(Value::Null);
                let (c, id) = doc_names(&c, &id)?;
                let w = docs
                    .put(scope, &c, &id, data, options(&args, 3))
                    .await
                    .map_err(host_error)?;
                Ok(doc_json(w.doc))
            }
            "db.patch" => {
                let (c, id) = (str_arg(&args, 0, "collection")?, str_arg(&args, 1, "id")?);
                let body = patch_body(args.get(2).cloned())?;
                let (c, id) = doc_names(&c, &id)?;
                let w = docs
                    .patch(scope, &c, &id, body, options(&args, 3))
                    .await
                    .map_err(host_error)?;
                Ok(doc_json(w.doc))
            }
            "db.increment" => {
                let (c, id) = (str_arg(&args, 0, "collection")?, str_arg(&args, 1, "id")?);
                let field = str_arg(&args, 2, "field")?;
                let by = args
                    .get(3)
                    .filter(|v| v.is_number())
                    .cloned()
                    .ok_or_else(|| bad("by must be a number"))?;
                let (c, id) = doc_names(&c, &id)?;
                self.increment(&c, &id, &field, by).await
            }
            "db.delete" => {
                let (c, id) = (str_arg(&args, 0, "collection")?, str_arg(&args, 1, "id")?);
                let (c, id) = doc_names(&c, &id)?;
                match docs.delete(scope, &c, &id, options(&args, 2)).await {
                    Ok(_) => Ok(json!(true)),
                    Err(DocError::NotFound) => Ok(json!(false)),
                    Err(e) => Err(host_error(e)),
                }
            }
            "db.batch" => {
                let writes: Vec<BatchWrite> =
                    serde_json::from_value(args.first().cloned().unwrap_or(Value::Null))
                        .map_err(|e| bad(format!("writes: {e}")))?;
                let ack = args
                    .get(1)
                    .and_then(|o| o.get("ack"))
                    .is_some_and(|v| v == &Value::Bool(true));
                let done = if ack {
                    self.acking_batch(writes).await?
                } else {
                    docs.batch(scope, writes).await.map_err(host_error)?
                };
                Ok(Value::Array(
                    done.into_iter()
                        .map(|w| {
                            json!({ "op": w.op.as_str(), "seq": w.seq, "doc": doc_json(w.doc) })
                        })
                        .collect(),
                ))
            }
            other => Err(bad(format!("unknown operation '{other}'"))),
        }
    }

    /// A batch that acknowledges this invocation's hook deliveries with its writes. One
    /// acknowledgement per invocation; a failed one may be tried again.
    async fn acking_batch(
        &self,
        writes: Vec<BatchWrite>,
    ) -> Result<Vec<crate::store::Written>, HostError> {
        let delivery = self.delivery.as_ref().ok_or_else(|| {
            bad("{ack: true} acknowledges hook events: only after hooks can use it")
        })?;
        let jobs = delivery.take().ok_or_else(|| {
            bad("this invocation's events are acknowledged already (or an acknowledgement is under way)")
        })?;
        match self
            .docs
            .batch_acking(&self.scope, writes, jobs.clone())
            .await
        {
            Ok(done) => {
                delivery.acked();
                Ok(done)
            }
            Err(e) => {
                delivery.put_back(jobs);
                Err(host_error(e))
            }
        }
    }

    /// Adds `by` to a numeric field atomically; a missing document is created with the
    /// field set to `by` (so counters need no set-up).
    async fn increment(
        &self,
        c: &CollectionName,
        id: &DocId,
        field: &str,
        by: Value,
    ) -> Result<Value, HostError> {
        let path = pointer(field);
        let patch = json!([{ "op": "increment", "path": path, "value": by }]);
        for _ in 0..3 {
            match self
                .docs
                .patch(
                    &self.scope,
                    c,
                    id,
                    PatchBody::JsonPatch(patch.clone()),
                    Preconditions::default(),
                )
                .await
            {
                Ok(w) => return Ok(doc_json(w.doc)),
                Err(DocError::NotFound) => {}
                Err(e) => return Err(host_error(e)),
            }
            let mut data = Value::Object(Default::default());
            if let Some(slot) = pointer_mut(&mut data, &path) {
                *slot = by.clone();
            }
            let pre = Preconditions {
                if_none_match_any: true,
                ..Default::default()
            };
            match self.docs.put(&self.scope, c, id, data, pre).await {
                Ok(w) => return Ok(doc_json(w.doc)),
                // Created by someone else in the meantime: increment it.
                Err(DocError::PreconditionFailed(_) | DocError::Exists) => continue,
                Err(e) => return Err(host_error(e)),
            }
        }
        Err(HostError {
            code: "conflict".into(),
            status: 409,
            message: "the document kept changing under the increment".into(),
        })
    }
}

/// The slot at a JSON pointer, creating objects on the way.
fn pointer_mut<'a>(root: &'a mut Value, ptr: &str) -> Option<&'a mut Value> {
    let mut cur = root;
    for raw in ptr.split('/').skip(1) {
        let key = raw.replace("~1", "/").replace("~0", "~");
        let obj = cur.as_object_mut()?;
        cur = obj.entry(key).or_insert(Value::Object(Default::default()));
    }
    Some(cur)
}

impl Host for DbHost {
    fn call(&self, op: String, args: Vec<Value>) -> BoxFuture<'static, Result<Value, HostError>> {
        let this = DbHost {
            docs: self.docs.clone(),
            scope: self.scope.clone(),
            delivery: self.delivery.clone(),
        };
        async move { this.dispatch(&op, args).await }.boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers() {
        assert_eq!(pointer("counts.a"), "/counts/a");
        assert_eq!(pointer("/x/y"), "/x/y");
        assert_eq!(pointer("a/b"), "/a~1b");
        let mut v = json!({});
        *pointer_mut(&mut v, "/counts/a").unwrap() = json!(1);
        assert_eq!(v, json!({"counts": {"a": 1}}));
    }
}
