//! Sandboxed JavaScript functions: deploys (validated whole, versioned, activated
//! atomically), the worker pool that runs them, HTTP functions, and the invocation log.

mod before;
pub mod bundle;
mod config;
mod crypto;
mod deploy;
mod error;
mod hook_scheduler;
pub mod hooks;
mod host;
mod imports;
mod invocation_log;
mod invoke;
pub mod pool;
mod response;
pub mod sandbox;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::documents::DocumentService;
use crate::rules::RulesRegistry;
use crate::store::{DeploySummary, InvocationRow, Store, StoreError};
use crate::tenancy::Scope;
pub use bundle::{BundleError, LimitCaps, Manifest};
pub use config::FunctionsConfig;
use deploy::CacheEntry;
pub use deploy::Deployed;
pub use error::FnError;
use invocation_log::{LogMsg, write_invocations};
pub use invoke::Trigger;
use pool::Pool;
pub use response::{HttpResponse, MAX_RESPONSE_BYTES};
pub use sandbox::{Failure, Limits, LogLine};

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

/// A tenant's decrypted secrets and the JSON made from them.
type EnvJson = (Arc<BTreeMap<String, String>>, Arc<str>);

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
}
