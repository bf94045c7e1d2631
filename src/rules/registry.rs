//! The active rule set of each tenant, compiled once and cached.
//!
//! A cached set is trusted for a short time, then its version is checked against the
//! store (one indexed query), so a rule set installed through another node takes effect
//! here within that time; installs through this node take effect at once.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use super::{RuleSet, RuleSetError};
use crate::names::FieldPath;
use crate::store::{Store, StoreError};
use crate::tenancy::Scope;

struct Entry {
    version: i64,
    rules: Arc<RuleSet>,
    checked: Instant,
}

pub struct RulesRegistry {
    store: Store,
    ttl: Duration,
    cache: RwLock<HashMap<i64, Entry>>,
}

/// The result of installing a rule set.
#[derive(Debug)]
pub struct Installed {
    pub version: i64,
    pub warnings: Vec<String>,
    pub collections: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("the rule set has {} error(s)", .0.len())]
    Invalid(Vec<RuleSetError>),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl RulesRegistry {
    pub fn new(store: Store, ttl: Duration) -> RulesRegistry {
        RulesRegistry {
            store,
            ttl,
            cache: RwLock::new(HashMap::new()),
        }
    }

    /// The tenant's active rules (deny-all when none were ever installed).
    pub async fn get(&self, scope: &Scope) -> Result<Arc<RuleSet>, StoreError> {
        let tenant = scope.tenant().id;
        let cached = self.cache.read().ok().and_then(|c| {
            c.get(&tenant)
                .map(|e| (e.version, e.rules.clone(), e.checked.elapsed() < self.ttl))
        });
        if let Some((_, rules, true)) = &cached {
            return Ok(rules.clone());
        }
        let version = self.store.active_ruleset_version(scope).await?;
        if let Some((v, rules, _)) = cached
            && v == version
        {
            self.remember(tenant, version, rules.clone());
            return Ok(rules);
        }
        let rules = match self.store.active_ruleset(scope).await? {
            None => Arc::new(RuleSet::deny_all()),
            Some((_, source)) => match RuleSet::parse(&source) {
                Ok(r) => Arc::new(r),
                Err(errors) => {
                    // Installed sets were valid when installed; a set that no longer
                    // compiles (an engine change) must fail closed.
                    tracing::error!(tenant = %scope.tenant().slug, ?errors, "stored rule set no longer compiles: denying all");
                    Arc::new(RuleSet::deny_all())
                }
            },
        };
        self.remember(tenant, version, rules.clone());
        Ok(rules)
    }

    fn remember(&self, tenant: i64, version: i64, rules: Arc<RuleSet>) {
        if let Ok(mut c) = self.cache.write() {
            c.insert(
                tenant,
                Entry {
                    version,
                    rules,
                    checked: Instant::now(),
                },
            );
        }
    }

    /// Drops the rule sets of tenants unused for `idle` (the idle policy of
    /// `store::tenant_files`; a compiled set is some KiB per tenant) and answers how many
    /// stay. A tenant in use checks its set every TTL, which marks it used.
    pub fn release_idle(&self, idle: Duration) -> usize {
        let keep = idle.max(self.ttl);
        self.cache.write().map_or(0, |mut c| {
            c.retain(|_, e| e.checked.elapsed() < keep);
            c.len()
        })
    }

    /// How many tenants' rule sets are cached now.
    pub fn cached(&self) -> usize {
        self.cache.read().map_or(0, |c| c.len())
    }

    pub fn forget(&self, tenant_id: i64) {
        if let Ok(mut c) = self.cache.write() {
            c.remove(&tenant_id);
        }
    }

    /// Validates `source` whole; if it is valid, brings the tenant's expression indexes
    /// in line and makes it the active set. A bad set changes nothing.
    pub async fn install(
        &self,
        scope: &Scope,
        source: &str,
        by: &str,
    ) -> Result<Installed, InstallError> {
        let rules = RuleSet::parse(source).map_err(InstallError::Invalid)?;
        self.store
            .sync_indexes(scope, &declared_indexes(&rules))
            .await?;
        let version = self.store.insert_ruleset(scope, source, by).await?;
        let warnings = rules.warnings();
        let collections = rules.collections.keys().cloned().collect();
        self.remember(scope.tenant().id, version, Arc::new(rules));
        Ok(Installed {
            version,
            warnings,
            collections,
        })
    }

    /// Brings the tenant's expression indexes in line with its active rule set, for data
    /// that arrived without an install (a tenant import).
    pub async fn rebuild_indexes(&self, scope: &Scope) -> Result<(), StoreError> {
        let rules = self.get(scope).await?;
        self.store
            .sync_indexes(scope, &declared_indexes(&rules))
            .await
    }
}

/// The expression indexes a rule set declares, per collection.
fn declared_indexes(rules: &RuleSet) -> Vec<(String, Vec<FieldPath>)> {
    rules
        .collections
        .iter()
        .flat_map(|(name, c)| {
            c.indexes
                .iter()
                .map(move |paths| (name.clone(), paths.clone()))
        })
        .collect()
}
