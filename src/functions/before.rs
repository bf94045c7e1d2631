//! Before hooks: run in the request, before the write, within a tight budget. A hook that
//! throws refuses the write (400 `function_rejected` with its message); one that returns
//! an object replaces the data; a budget overrun or crash fails the request. Several
//! hooks on one write run in manifest order, each seeing the previous one's data.

use std::sync::{Arc, Weak};

use futures_util::future::BoxFuture;
use serde_json::{Value, json};

use super::hooks::auth_info;
use super::{Failure, FnError, FunctionService, Trigger};
use crate::documents::DocError;
use crate::documents::before::{BeforeWrite, PendingWrite};
use crate::documents::wire::DocJson;
use crate::store::ChangeOp;
use crate::tenancy::Scope;

pub struct BeforeHooks(Weak<FunctionService>);

impl BeforeHooks {
    pub fn new(svc: &Arc<FunctionService>) -> BeforeHooks {
        BeforeHooks(Arc::downgrade(svc))
    }
}

impl BeforeWrite for BeforeHooks {
    fn wants<'a>(&'a self, scope: &'a Scope, collection: &'a str) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            let Some(svc) = self.0.upgrade() else {
                return false;
            };
            let Ok(Some(d)) = svc.active(scope).await else {
                return false;
            };
            // A `when` that depends on the caller alone (say `auth != null`, so services
            // skip the hook) is decided here, before the document is read.
            let mut auth = None;
            d.before_hooks
                .iter()
                .filter(|h| h.collection == collection)
                .any(|h| match &h.when {
                    Some(w) if w.uses_only(&["auth", "now"]) => {
                        let info = auth
                            .get_or_insert_with(|| scope.auth_json().as_ref().and_then(auth_info));
                        h.when_holds(info.as_ref(), "", None, None)
                    }
                    _ => true,
                })
        })
    }

    fn run<'a>(
        &'a self,
        scope: &'a Scope,
        w: PendingWrite<'a>,
    ) -> BoxFuture<'a, Result<Option<Value>, DocError>> {
        Box::pin(async move {
            let Some(svc) = self.0.upgrade() else {
                return Ok(None);
            };
            let Some(dep) = svc
                .active(scope)
                .await
                .map_err(|e| DocError::Internal(e.to_string()))?
            else {
                return Ok(None);
            };
            let auth = scope.auth_json().unwrap_or(Value::Null);
            let auth_rules = auth_info(&auth);
            let mut data: Option<Value> = w.new.cloned();
            let mut replaced = false;
            for h in dep
                .before_hooks
                .iter()
                .filter(|h| h.collection == w.collection && h.ops.contains(&w.op))
            {
                if !h.when_holds(auth_rules.as_ref(), w.id, w.before, data.as_ref()) {
                    continue;
                }
                let event = json!({
                    "tenant": scope.tenant().slug,
                    "collection": w.collection,
                    "op": w.op.as_str(),
                    "id": w.id,
                    "doc": data.as_ref().map(|d| json!({"id": w.id, "collection": w.collection, "data": d})),
                    "before": w.before.map(|d| DocJson::of(d).to_value()),
                    "auth": auth,
                    "service": scope.caller().is_service(),
                });
                let limits = dep.limits(&h.function, svc.config.before_timeout, &svc.config);
                let (invocation, result) = svc
                    .invoke(
                        scope,
                        &dep,
                        &h.function,
                        Trigger::Before,
                        event.to_string(),
                        limits,
                        scope.depth() + 1,
                        None,
                    )
                    .await;
                let text = match result {
                    Ok(t) => t,
                    Err(FnError::Failed { failure, .. }) => {
                        return Err(match failure {
                            Failure::Thrown { message, .. } => DocError::HookRejected(message),
                            Failure::Timeout => DocError::HookTimeout,
                            other => DocError::HookFailed(format!(
                                "{}; see invocation {invocation}",
                                other.outcome()
                            )),
                        });
                    }
                    Err(e) => return Err(DocError::HookFailed(e.to_string())),
                };
                match serde_json::from_str::<Value>(&text) {
                    Ok(Value::Null) => {}
                    Ok(v @ Value::Object(_)) if w.op != ChangeOp::Delete => {
                        data = Some(v);
                        replaced = true;
                    }
                    Ok(_) if w.op == ChangeOp::Delete => {}
                    _ => {
                        return Err(DocError::HookFailed(format!(
                            "the before hook '{}' returned something other than an object or nothing; see invocation {invocation}",
                            h.function
                        )));
                    }
                }
            }
            Ok(if replaced { data } else { None })
        })
    }
}
