//! Deploys: a bundle validated whole, stored as the next version and activated (or an
//! older one activated again), and the cache of each tenant's active deploy, compiled.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use serde_json::Value;

use super::{BundleError, Deployment, FnError, FunctionService, LimitCaps, Manifest};
use super::{bundle, hooks, sandbox};
use crate::rules::InstallError;
use crate::tenancy::Scope;

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

pub(super) struct CacheEntry {
    version: i64,
    deployment: Option<Arc<Deployment>>,
    checked: Instant,
}

impl FunctionService {
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

    /// Drops the cached deploys of tenants unused for `idle` (the idle policy of
    /// `store::tenant_files`; a compiled deploy holds its bytecode). A tenant in use checks
    /// its deploy every TTL, which marks it used; a commit finds its deploy at once after
    /// `active`, long before it could count as idle.
    pub fn release_idle(&self, idle: std::time::Duration) {
        let keep = idle.max(self.config.cache_ttl);
        if let Ok(mut c) = self.cache.write() {
            c.retain(|_, e| e.checked.elapsed() < keep);
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
}

/// Checks a bundle and that every module compiles and evaluates to a default export.
pub(super) fn compile_bundle(
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
pub(super) async fn load_deployment(row: &crate::store::DeployRow) -> Result<Deployment, FnError> {
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
