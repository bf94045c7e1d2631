//! Sandboxed JavaScript functions: deploys (validated whole, versioned, activated
//! atomically), the worker pool that runs them, HTTP functions, and the invocation log.

mod before;
pub mod bundle;
mod crypto;
mod hook_scheduler;
pub mod hooks;
mod host;
mod imports;
pub mod pool;
pub mod sandbox;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::documents::DocumentService;
use crate::rules::{InstallError, RulesRegistry};
use crate::store::{DeploySummary, InvocationRow, Store, StoreError};
use crate::tenancy::Scope;
pub use bundle::{BundleError, LimitCaps, Manifest};
use pool::Pool;
pub use sandbox::{Failure, Limits, LogLine};

#[derive(Clone, Debug)]
pub struct FunctionsConfig {
    /// Worker threads running JavaScript.
    pub workers: usize,
    pub http_timeout: Duration,
    /// The longest an HTTP function may run whatever its `timeout_ms`: a little under the
    /// server's request timeout (set from it at start).
    pub http_deadline: Duration,
    pub before_timeout: Duration,
    pub after_timeout: Duration,
    pub memory_bytes: usize,
    pub caps: LimitCaps,
    /// How long a node trusts its cached active deploy before checking the version.
    pub cache_ttl: Duration,
    /// Whether this node runs after-hook jobs (a node may serve requests only).
    pub run_hooks: bool,
    /// How long a claimed hook job is its runner's before another may claim it again.
    /// None: twice the longest function timeout allowed, plus 10 s (a run never outlives
    /// its lease). Shorter (`PLINTH_HOOK_LEASE`): a dead node's jobs run sooner, and a job
    /// that outruns its lease may run twice (delivery is at least once either way).
    pub hook_lease: Option<Duration>,
}

impl Default for FunctionsConfig {
    fn default() -> Self {
        FunctionsConfig {
            // One more than the cores: a tenant may use all but one worker, so one tenant
            // can keep every core busy while a worker stays free for the others.
            workers: std::thread::available_parallelism()
                .map(|n| n.get() + 1)
                .unwrap_or(2)
                .max(2),
            http_timeout: Duration::from_secs(10),
            http_deadline: Duration::from_millis(29_500),
            before_timeout: Duration::from_millis(100),
            after_timeout: Duration::from_secs(5),
            memory_bytes: 64 * 1024 * 1024,
            caps: LimitCaps {
                max_timeout_ms: 60_000,
                max_memory_mb: 256,
            },
            cache_ttl: Duration::from_secs(1),
            run_hooks: true,
            hook_lease: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FnError {
    #[error("the bundle has {} problem(s)", .0.len())]
    InvalidBundle(Vec<BundleError>),
    #[error("no deploy version {0}")]
    NoSuchVersion(i64),
    #[error("no HTTP function named '{0}'")]
    NotFound(String),
    #[error("no dead job {0}")]
    NoSuchJob(String),
    #[error("{message}")]
    Failed {
        failure: Failure,
        message: String,
        invocation: String,
    },
    #[error("the function pool is shut down")]
    Unavailable,
    #[error("the function returned an invalid response: {message}")]
    BadResponse { message: String, invocation: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Internal(String),
}

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

/// An active deploy, compiled: what invocations run.
pub struct Deployment {
    pub version: i64,
    pub manifest: Manifest,
    pub bytecode: HashMap<String, Arc<[u8]>>,
    pub hooks: Vec<hooks::CompiledHook>,
    pub before_hooks: Vec<hooks::CompiledHook>,
}

impl Deployment {
    fn limits(&self, function: &str, default_timeout: Duration, cfg: &FunctionsConfig) -> Limits {
        let spec = self
            .manifest
            .limits
            .get(function)
            .copied()
            .unwrap_or_default();
        Limits {
            timeout: spec
                .timeout_ms
                .map(Duration::from_millis)
                .unwrap_or(default_timeout),
            memory_bytes: spec
                .memory_mb
                .map(|m| (m as usize) * 1024 * 1024)
                .unwrap_or(cfg.memory_bytes),
        }
    }
}

/// What a successful deploy reports.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Deployed {
    pub version: i64,
    pub functions: Vec<String>,
    pub http: Vec<String>,
    pub hooks: usize,
    /// Version of the rule set the deploy installed, if it carried one.
    pub rules_version: Option<i64>,
    pub warnings: Vec<String>,
}

/// An HTTP function's answer.
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub invocation: String,
}

/// Largest response body an HTTP function may return.
pub const MAX_RESPONSE_BYTES: usize = 6 * 1024 * 1024;

/// A tenant's decrypted secrets and the JSON made from them.
type EnvJson = (Arc<BTreeMap<String, String>>, Arc<str>);

struct CacheEntry {
    version: i64,
    deployment: Option<Arc<Deployment>>,
    checked: Instant,
}

pub struct FunctionService {
    store: Store,
    docs: Arc<DocumentService>,
    rules: Arc<RulesRegistry>,
    pool: Pool,
    config: FunctionsConfig,
    cache: RwLock<HashMap<i64, CacheEntry>>,
    log: mpsc::UnboundedSender<LogMsg>,
    pub(crate) queue: hooks::JobQueue,
    secrets: Arc<crate::secrets::SecretsService>,
    usage: Arc<crate::usage::Usage>,
    metrics: Arc<crate::metrics::Metrics>,
    /// `ctx.env` as JSON per tenant, kept while the secrets map it was made from is current.
    env_json: std::sync::Mutex<HashMap<i64, EnvJson>>,
}

impl FunctionService {
    pub fn new(
        store: Store,
        docs: Arc<DocumentService>,
        rules: Arc<RulesRegistry>,
        secrets: Arc<crate::secrets::SecretsService>,
        usage: Arc<crate::usage::Usage>,
        metrics: Arc<crate::metrics::Metrics>,
        config: FunctionsConfig,
    ) -> std::io::Result<Arc<FunctionService>> {
        let pool = Pool::new(config.workers, tokio::runtime::Handle::current())?;
        let (log, rx) = mpsc::unbounded_channel();
        tokio::spawn(write_invocations(store.clone(), rx));
        let svc = Arc::new(FunctionService {
            store: store.clone(),
            docs,
            rules,
            pool,
            config,
            cache: RwLock::new(HashMap::new()),
            log,
            queue: hooks::JobQueue::default(),
            secrets,
            usage,
            metrics,
            env_json: Default::default(),
        });
        store.set_job_planner(Arc::new(hooks::Planner::new(&svc)));
        svc.docs
            .set_before_write(Arc::new(before::BeforeHooks::new(&svc)));
        Ok(svc)
    }

    pub fn shutdown(&self) {
        self.pool.shutdown();
    }

    /// Writes the invocation records still gathering (at shutdown), waiting up to 5 s.
    pub async fn flush_invocations(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.log.send(LogMsg::Flush(tx)).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(5), rx).await;
        }
    }

    // ---- deploys ---------------------------------------------------------------------

    /// Validates a bundle whole (manifest, rules, every module compiles and exports a
    /// function), stores it as the next version and activates it. A bad bundle stores
    /// nothing and changes nothing.
    pub async fn deploy(
        &self,
        scope: &Scope,
        files: BTreeMap<String, String>,
        by: &str,
    ) -> Result<Deployed, FnError> {
        let caps = self.config.caps;
        let checked = tokio::task::spawn_blocking(move || compile_bundle(&files, caps))
            .await
            .map_err(|e| FnError::Internal(e.to_string()))?
            .map_err(FnError::InvalidBundle)?;
        let manifest = serde_json::to_string(&checked.manifest)
            .map_err(|e| FnError::Internal(e.to_string()))?;
        let sources: BTreeMap<&str, &str> = checked
            .functions
            .values()
            .map(|(path, src)| (path.as_str(), src.as_str()))
            .collect();
        let files =
            serde_json::to_string(&sources).map_err(|e| FnError::Internal(e.to_string()))?;
        let version = self
            .store
            .insert_deploy(scope, &manifest, &files, checked.rules.as_deref(), by)
            .await?;
        let mut deployed = self.activate(scope, version, by).await?;
        deployed.version = version;
        Ok(deployed)
    }

    /// Makes a stored version the active one (a rollback when it is older), installing
    /// the rule set it carries.
    pub async fn activate(
        &self,
        scope: &Scope,
        version: i64,
        by: &str,
    ) -> Result<Deployed, FnError> {
        let row = self
            .store
            .get_deploy(scope, version)
            .await?
            .ok_or(FnError::NoSuchVersion(version))?;
        let deployment = Arc::new(load_deployment(&row).await?);
        let mut rules_version = None;
        let mut warnings = Vec::new();
        if let Some(source) = &row.rules {
            let installed = self
                .rules
                .install(scope, source, &format!("deploy v{version} by {by}"))
                .await
                .map_err(|e| match e {
                    InstallError::Invalid(errs) => FnError::InvalidBundle(
                        errs.into_iter()
                            .map(|e| BundleError::at("rules", e.line, e.column, e.message))
                            .collect(),
                    ),
                    InstallError::Store(e) => FnError::Store(e),
                })?;
            rules_version = Some(installed.version);
            warnings = installed.warnings;
        }
        self.store.activate_deploy(scope, version, by).await?;
        let m = &deployment.manifest;
        let deployed = Deployed {
            version,
            functions: deployment.bytecode.keys().cloned().collect(),
            http: m.http.iter().map(|h| h.name.clone()).collect(),
            hooks: m.hooks.len(),
            rules_version,
            warnings,
        };
        self.remember(scope.tenant().id, version, Some(deployment));
        Ok(deployed)
    }

    /// Whether the active deploy already holds `files` (the same manifest, function
    /// sources and rule set), so that deploying them again would only store a copy. A
    /// bundle that fails the checks matches nothing.
    pub async fn active_matches(
        &self,
        scope: &Scope,
        files: &BTreeMap<String, String>,
    ) -> Result<bool, FnError> {
        let Ok(checked) = bundle::check(files, self.config.caps) else {
            return Ok(false);
        };
        let version = self.store.active_deploy_version(scope).await?;
        let Some(row) = self.store.get_deploy(scope, version).await? else {
            return Ok(false);
        };
        let internal = |e: serde_json::Error| FnError::Internal(e.to_string());
        let manifest = serde_json::to_value(&checked.manifest).map_err(internal)?;
        let stored_manifest: Value = serde_json::from_str(&row.manifest).map_err(internal)?;
        let sources: BTreeMap<String, String> = checked.functions.into_values().collect();
        let stored_sources: BTreeMap<String, String> =
            serde_json::from_str(&row.files).map_err(internal)?;
        Ok(manifest == stored_manifest && sources == stored_sources && checked.rules == row.rules)
    }

    pub async fn list_deploys(&self, scope: &Scope) -> Result<Vec<DeploySummary>, FnError> {
        Ok(self.store.list_deploys(scope).await?)
    }

    pub async fn invocations(
        &self,
        scope: &Scope,
        function: Option<&str>,
        before: Option<&str>,
        limit: i64,
    ) -> Result<Vec<InvocationRow>, FnError> {
        Ok(self
            .store
            .list_invocations(scope, function, before, limit)
            .await?)
    }

    /// Outbox jobs of a tenant (`state`: pending or dead), oldest first.
    pub async fn jobs(
        &self,
        scope: &Scope,
        state: Option<&str>,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<crate::store::JobInfo>, FnError> {
        Ok(self.store.list_jobs(scope, state, after, limit).await?)
    }

    /// Queues a dead job again with fresh attempts.
    pub async fn retry_job(&self, scope: &Scope, id: &str) -> Result<(), FnError> {
        match self.store.retry_job(scope, id).await {
            Ok(()) => {
                self.queue.mark(scope.tenant().id);
                Ok(())
            }
            Err(StoreError::NotFound) => Err(FnError::NoSuchJob(id.to_string())),
            Err(e) => Err(e.into()),
        }
    }

    fn remember(&self, tenant: i64, version: i64, deployment: Option<Arc<Deployment>>) {
        if let Ok(mut c) = self.cache.write() {
            c.insert(
                tenant,
                CacheEntry {
                    version,
                    deployment,
                    checked: Instant::now(),
                },
            );
        }
    }

    /// Makes the tenant's cached deploy stale, so the next `active` checks the database.
    /// Not removed: a commit between `prepare` and `plan` still finds its deploy.
    pub fn expire(&self, tenant: i64) {
        if let Ok(mut c) = self.cache.write()
            && let Some(e) = c.get_mut(&tenant)
            && let Some(past) = Instant::now().checked_sub(self.config.cache_ttl)
        {
            e.checked = past;
        }
    }

    /// The cached active deploy, without checking its freshness (for code that cannot
    /// wait; `active` keeps the cache warm).
    pub(crate) fn cached(&self, tenant: i64) -> Option<Arc<Deployment>> {
        self.cache
            .read()
            .ok()
            .and_then(|c| c.get(&tenant).and_then(|e| e.deployment.clone()))
    }

    /// The tenant's active deploy, compiled (None when nothing was deployed).
    pub async fn active(&self, scope: &Scope) -> Result<Option<Arc<Deployment>>, FnError> {
        let tenant = scope.tenant().id;
        let cached = self.cache.read().ok().and_then(|c| {
            c.get(&tenant).map(|e| {
                (
                    e.version,
                    e.deployment.clone(),
                    e.checked.elapsed() < self.config.cache_ttl,
                )
            })
        });
        if let Some((_, d, true)) = &cached {
            return Ok(d.clone());
        }
        let version = self.store.active_deploy_version(scope).await?;
        if let Some((v, d, _)) = cached
            && v == version
        {
            self.remember(tenant, version, d.clone());
            return Ok(d);
        }
        let deployment = match self.store.get_deploy(scope, version).await? {
            None => None,
            Some(row) => Some(Arc::new(load_deployment(&row).await?)),
        };
        self.remember(tenant, version, deployment.clone());
        Ok(deployment)
    }

    // ---- invocations -----------------------------------------------------------------

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
    async fn invoke(
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
        let output = match self.pool.run(call).await {
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

/// Turns a function's return value into a response: `{status, headers, body}`; any
/// other value is sent as JSON with 200; null (or nothing) is a 204.
fn http_response(text: &str, invocation: String) -> Result<HttpResponse, FnError> {
    let bad = |m: &str| FnError::BadResponse {
        message: m.to_string(),
        invocation: invocation.clone(),
    };
    if text.len() > MAX_RESPONSE_BYTES + 1024 {
        return Err(bad(&format!(
            "the response is larger than {MAX_RESPONSE_BYTES} bytes"
        )));
    }
    let value: Value = serde_json::from_str(text).map_err(|_| bad("not JSON"))?;
    let shaped = value.as_object().is_some_and(|o| {
        o.contains_key("status") || o.contains_key("body") || o.contains_key("headers")
    });
    let (status, headers, body) = if shaped {
        let o = value.as_object().cloned().unwrap_or_default();
        let status = match o.get("status") {
            None => 200,
            Some(s) => s
                .as_u64()
                .filter(|s| (200..=599).contains(s))
                .ok_or_else(|| bad("status must be an integer from 200 to 599"))?
                as u16,
        };
        let mut headers = Vec::new();
        if let Some(h) = o.get("headers") {
            let h = h
                .as_object()
                .ok_or_else(|| bad("headers must be an object"))?;
            for (k, v) in h {
                let v = match v {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    _ => return Err(bad(&format!("header '{k}' must be a string"))),
                };
                headers.push((k.to_ascii_lowercase(), v));
            }
        }
        (
            status,
            headers,
            o.get("body").cloned().unwrap_or(Value::Null),
        )
    } else if value.is_null() {
        (204, Vec::new(), Value::Null)
    } else {
        (200, Vec::new(), value)
    };
    let has_type = headers.iter().any(|(k, _)| k == "content-type");
    let (body, default_type) = match body {
        Value::Null => (Vec::new(), None),
        Value::String(s) => (s.into_bytes(), Some("text/plain; charset=utf-8")),
        other => (other.to_string().into_bytes(), Some("application/json")),
    };
    if body.len() > MAX_RESPONSE_BYTES {
        return Err(bad(&format!(
            "the response body is larger than {MAX_RESPONSE_BYTES} bytes"
        )));
    }
    let mut headers = headers;
    if !has_type && let Some(t) = default_type {
        headers.push(("content-type".into(), t.into()));
    }
    Ok(HttpResponse {
        status,
        headers,
        body,
        invocation,
    })
}

/// Checks a bundle and that every module compiles and evaluates to a default export.
fn compile_bundle(
    files: &BTreeMap<String, String>,
    caps: LimitCaps,
) -> Result<bundle::CheckedBundle, Vec<BundleError>> {
    let checked = bundle::check(files, caps)?;
    let errors: Vec<BundleError> = checked
        .functions
        .values()
        .filter_map(|(path, src)| sandbox::compile(path, src).err())
        .collect();
    if errors.is_empty() {
        Ok(checked)
    } else {
        Err(errors)
    }
}

/// Compiles a stored deploy. Stored deploys were valid when stored; one that no longer
/// compiles (an engine change) fails its invocations, never silently.
async fn load_deployment(row: &crate::store::DeployRow) -> Result<Deployment, FnError> {
    let manifest: Manifest =
        serde_json::from_str(&row.manifest).map_err(|e| FnError::Internal(e.to_string()))?;
    let files: BTreeMap<String, String> =
        serde_json::from_str(&row.files).map_err(|e| FnError::Internal(e.to_string()))?;
    let version = row.version;
    let hooks = hooks::compile_hooks(&manifest, "after")
        .map_err(|e| FnError::Internal(format!("deploy v{version}: {e}")))?;
    let before_hooks = hooks::compile_hooks(&manifest, "before")
        .map_err(|e| FnError::Internal(format!("deploy v{version}: {e}")))?;
    let bytecode = tokio::task::spawn_blocking(move || {
        let mut out = HashMap::new();
        for (path, src) in &files {
            let name = path
                .strip_prefix("functions/")
                .and_then(|p| p.strip_suffix(".js"))
                .unwrap_or(path)
                .to_string();
            let b = sandbox::compile(path, src).map_err(|e| e.to_string())?;
            out.insert(name, Arc::<[u8]>::from(b));
        }
        Ok::<_, String>(out)
    })
    .await
    .map_err(|e| FnError::Internal(e.to_string()))?
    .map_err(|e| FnError::Internal(format!("deploy v{version} no longer compiles: {e}")))?;
    Ok(Deployment {
        version,
        manifest,
        bytecode,
        hooks,
        before_hooks,
    })
}

/// What the invocation-log writer receives.
enum LogMsg {
    Record(Box<(Scope, InvocationRow)>),
    /// Write what has been gathered now, then answer.
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// Writes invocation records in batches, off the request path: at most one transaction
/// per tenant every 50 ms. Written as they came, a busy tenant's records took hundreds of
/// small transactions a second on the tenant's SQLite writer, between the group commits
/// that requests wait for.
async fn write_invocations(store: Store, mut rx: mpsc::UnboundedReceiver<LogMsg>) {
    const GATHER: Duration = Duration::from_millis(50);
    const MAX_BATCH: usize = 4096;
    let mut buf = Vec::new();
    while rx.recv_many(&mut buf, MAX_BATCH).await > 0 {
        if !buf.iter().any(|m| matches!(m, LogMsg::Flush(_))) {
            tokio::time::sleep(GATHER).await;
            while buf.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(m) => buf.push(m),
                    Err(_) => break,
                }
            }
        }
        let mut by_tenant: HashMap<i64, (Scope, Vec<InvocationRow>)> = HashMap::new();
        let mut flushed = Vec::new();
        for msg in buf.drain(..) {
            match msg {
                LogMsg::Record(r) => {
                    let (scope, row) = *r;
                    by_tenant
                        .entry(scope.tenant().id)
                        .or_insert_with(|| (scope, Vec::new()))
                        .1
                        .push(row)
                }
                LogMsg::Flush(done) => flushed.push(done),
            }
        }
        for (_, (scope, rows)) in by_tenant {
            if let Err(e) = store.insert_invocations(&scope, &rows).await {
                tracing::warn!(tenant = %scope.tenant().slug, error = %e, "could not record invocations");
            }
        }
        for done in flushed {
            let _ = done.send(());
        }
    }
}
