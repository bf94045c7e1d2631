//! Invocations: an event run on the worker pool as one of a deploy's functions, with
//! the tenant's secrets as `ctx.env` and `ctx.db` as the function's own caller, then
//! counted, logged and recorded; and HTTP functions on top of that.

use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;

use super::invocation_log::LogMsg;
use super::response::{HttpResponse, http_response};
use super::{Deployment, FnError, FunctionService, Limits, hooks, host, sandbox};
use crate::store::InvocationRow;
use crate::tenancy::Scope;

/// The trigger of an invocation, as recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    Http,
    Before,
    After,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Http => "http",
            Trigger::Before => "before",
            Trigger::After => "after",
        }
    }
}

impl FunctionService {
    /// The tenant's secrets as the JSON object `ctx.env` is made from.
    async fn env(&self, scope: &Scope) -> Result<Arc<str>, FnError> {
        let map = self
            .secrets
            .env(scope)
            .await
            .map_err(|e| FnError::Internal(format!("the tenant's secrets: {e}")))?;
        let tenant = scope.tenant().id;
        let mut cache = self.env_json.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((m, json)) = cache.get(&tenant)
            && Arc::ptr_eq(m, &map)
        {
            return Ok(json.clone());
        }
        let json: Arc<str> =
            Arc::from(serde_json::to_string(&*map).unwrap_or_else(|_| "{}".into()));
        cache.insert(tenant, (map, json.clone()));
        Ok(json)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn invoke(
        &self,
        scope: &Scope,
        deployment: &Deployment,
        function: &str,
        trigger: Trigger,
        event: String,
        limits: Limits,
        depth: u32,
        delivery: Option<Arc<hooks::Delivery>>,
    ) -> (String, Result<String, FnError>) {
        let id = uuid::Uuid::now_v7().to_string();
        let Some(bytecode) = deployment.bytecode.get(function).cloned() else {
            return (id, Err(FnError::NotFound(function.to_string())));
        };
        let env = match self.env(scope).await {
            Ok(e) => e,
            Err(e) => return (id, Err(e)),
        };
        let started_at = crate::store::now_ms();
        let start = Instant::now();
        let waiting = delivery.clone();
        let host = Arc::new(host::DbHost {
            docs: self.docs.clone(),
            scope: scope.for_function(function, depth),
            delivery,
        });
        let call = sandbox::Call {
            tenant: scope.tenant().id,
            version: deployment.version,
            function: function.to_string(),
            bytecode,
            event,
            env,
            limits,
            host,
        };
        // A hook's start is told to the keeper of its jobs' claims (`hooks::claims`).
        let on_start = || {
            if let Some(d) = &waiting {
                d.started();
            }
        };
        let output = match self.pool.run(call, on_start).await {
            Ok(o) => o,
            Err(_) => return (id, Err(FnError::Unavailable)),
        };
        let duration = start.elapsed();
        let error = output.result.as_ref().err().map(|f| f.describe(&limits));
        self.usage.invocation(scope.tenant().id, output.cpu);
        self.metrics.invocation(
            crate::metrics::InvocationLabels {
                tenant: scope.tenant().slug.clone(),
                trigger: trigger.as_str().to_string(),
                outcome: match &output.result {
                    Ok(_) => "ok",
                    Err(f) => f.outcome(),
                }
                .to_string(),
            },
            duration.as_secs_f64(),
        );
        let mut logs: Vec<Value> = output
            .logs
            .iter()
            .map(|l| serde_json::json!({"level": l.level, "message": l.message}))
            .collect();
        if output.logs_truncated {
            logs.push(
                serde_json::json!({"level": "warn", "message": "(further log output was dropped)"}),
            );
        }
        tracing::debug!(
            tenant = %scope.tenant().slug, function, trigger = trigger.as_str(),
            version = deployment.version, cold = output.cold,
            cpu_us = output.cpu.as_micros() as u64, duration_us = duration.as_micros() as u64,
            error = error.as_deref().unwrap_or(""), "invocation"
        );
        let row = InvocationRow {
            id: id.clone(),
            function: function.to_string(),
            trigger: trigger.as_str().to_string(),
            version: deployment.version,
            started_at,
            duration_us: duration.as_micros() as i64,
            outcome: match &output.result {
                Ok(_) => "ok",
                Err(f) => f.outcome(),
            }
            .to_string(),
            error: error.clone(),
            logs: Value::Array(logs),
        };
        let _ = self
            .log
            .send(LogMsg::Record(Box::new((scope.clone(), row))));
        let result = output.result.map_err(|failure| FnError::Failed {
            message: failure.describe(&limits),
            failure,
            invocation: id.clone(),
        });
        (id, result)
    }

    /// Runs the HTTP function `name` on `request` (the event described in
    /// docs/functions.md) and shapes its answer.
    pub async fn call_http(
        &self,
        scope: &Scope,
        name: &str,
        request: Value,
    ) -> Result<HttpResponse, FnError> {
        let deployment = self
            .active(scope)
            .await?
            .ok_or_else(|| FnError::NotFound(name.to_string()))?;
        let function = deployment
            .manifest
            .http
            .iter()
            .find(|h| h.name == name)
            .map(|h| h.function.clone())
            .ok_or_else(|| FnError::NotFound(name.to_string()))?;
        let mut limits = deployment.limits(&function, self.config.http_timeout, &self.config);
        limits.timeout = limits.timeout.min(self.config.http_deadline);
        let (invocation, result) = self
            .invoke(
                scope,
                &deployment,
                &function,
                Trigger::Http,
                request.to_string(),
                limits,
                0,
                None,
            )
            .await;
        let text = result?;
        http_response(&text, invocation)
    }
}
