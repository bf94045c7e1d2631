//! Looks tenants up by slug for every tenant request, with a short-lived cache. Apart
//! from `tenancy` (which the store depends on) because it reads the store.
//!
//! Changes made through this process invalidate its cache at once; other nodes sharing a
//! PostgreSQL database are told by NOTIFY (the `cluster` module) and at the latest see them
//! within the cache TTL.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::store::{Store, StoreResult, WriteTicket};
use crate::tenancy::Tenant;

/// A lookup result (None: no such tenant) and when it was made.
type CacheEntry = (Option<Arc<Tenant>>, Instant);

pub struct Registry {
    store: Store,
    ttl: Duration,
    cache: RwLock<HashMap<String, CacheEntry>>,
}

impl Registry {
    pub fn new(store: Store, ttl: Duration) -> Registry {
        Registry {
            store,
            ttl,
            cache: RwLock::new(HashMap::new()),
        }
    }

    /// The tenant with this slug, or None. Unknown slugs are cached too, so a flood of
    /// requests for a missing tenant costs one query per TTL.
    pub async fn get(&self, slug: &str) -> StoreResult<Option<Arc<Tenant>>> {
        if let Ok(cache) = self.cache.read()
            && let Some((tenant, at)) = cache.get(slug)
            && at.elapsed() < self.ttl
        {
            return Ok(tenant.clone());
        }
        let tenant = self
            .store
            .get_tenant_by_slug(slug)
            .await?
            .map(|row| Arc::new(Tenant::from(row)));
        if let Ok(mut cache) = self.cache.write() {
            // Bounded: a scan over random slugs must not grow memory without limit.
            if cache.len() > 10_000 {
                cache.clear();
            }
            cache.insert(slug.to_string(), (tenant.clone(), Instant::now()));
        }
        Ok(tenant)
    }

    /// Admits one changing request of the tenant, unless a move on this node froze its
    /// writes (`None`); the move waits until every ticket is dropped.
    pub fn enter_write(&self, tenant: &Tenant) -> Option<WriteTicket> {
        if tenant.moving {
            return None;
        }
        self.store.enter_write(tenant.id)
    }

    /// The id of a cached tenant (even past its TTL), without asking the database.
    pub fn cached_id(&self, slug: &str) -> Option<i64> {
        let cache = self.cache.read().ok()?;
        cache.get(slug)?.0.as_ref().map(|t| t.id)
    }

    /// Drops the lookups of tenants unused for `idle` (the idle policy of
    /// `store::tenant_files`) and answers how many stay. A tenant in use is looked up
    /// again every TTL, which renews its entry.
    pub fn release_idle(&self, idle: Duration) -> usize {
        let keep = idle.max(self.ttl);
        self.cache.write().map_or(0, |mut c| {
            c.retain(|_, (_, at)| at.elapsed() < keep);
            c.len()
        })
    }

    /// How many lookups (tenants and unknown slugs) are cached now.
    pub fn cached(&self) -> usize {
        self.cache.read().map_or(0, |c| c.len())
    }

    pub fn invalidate(&self, slug: &str) {
        if let Ok(mut cache) = self.cache.write() {
            cache.remove(slug);
        }
    }
}
