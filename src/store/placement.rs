//! Tenant placement: which storage location holds a tenant's data, and the pools of the
//! extra PostgreSQL clusters.
//!
//! Location `default` is the server's own storage (its SQLite files, or its PostgreSQL
//! database); any other name is a cluster configured with `PLINTH_CLUSTERS`. The control
//! table `tenants` says where each tenant lives; this node caches the answer per tenant
//! and drops the cache when a move switches a tenant (here) or is announced (other nodes).
//! A cluster's pool is opened on first use and migrated then with the PostgreSQL schema
//! (its control tables stay empty but for a placeholder row per tenant placed there, which
//! the tenant tables' foreign keys need).
//!
//! The cache also keeps the tenant's `moving` mark as read with its location, so the
//! commit path refuses the writes of a tenant another process is moving (a node's own
//! moves freeze its gate) without a read per commit: the mark's announcement drops the
//! cache, and a cached mark is read again after `MARK_TTL`, so one cleared without an
//! announcement heard (SQLite, a lost notification) holds no writes back for long.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use sqlx::postgres::PgPool;

use super::{Backend, Db, POSTGRES_MIGRATIONS, Store, StoreError, StoreResult, TenantData, on_db};

/// The name of the server's own storage.
pub const DEFAULT_LOCATION: &str = "default";

/// Where a new tenant whose creation names no location goes (`PLINTH_PLACEMENT`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PlacementPolicy {
    /// `default`: the server's own storage.
    #[default]
    Default,
    /// `least-loaded`: the location holding the fewest tenants (ties: `default`, then
    /// the clusters by name).
    LeastLoaded,
}

impl PlacementPolicy {
    pub fn parse(s: &str) -> Result<PlacementPolicy, String> {
        match s.trim() {
            "" | "default" => Ok(PlacementPolicy::Default),
            "least-loaded" => Ok(PlacementPolicy::LeastLoaded),
            other => Err(format!(
                "placement {other:?}: expected \"default\" or \"least-loaded\""
            )),
        }
    }
}

/// Extra clusters, their pools, where tenants live, and the write gates of moves.
#[derive(Default)]
pub(crate) struct Placement {
    clusters: RwLock<HashMap<String, String>>,
    pools: tokio::sync::Mutex<HashMap<String, PgPool>>,
    /// tenant id → location and mark, as last read from the control table.
    cache: Mutex<HashMap<i64, Placed>>,
    gates: Mutex<HashMap<i64, Gate>>,
    max_connections: Mutex<u32>,
    policy: Mutex<PlacementPolicy>,
    /// The lease of the moves this process runs, in ms (0: the default).
    move_lease_ms: std::sync::atomic::AtomicI64,
    /// On SQLite, the data directory's change lock while this process moves tenants
    /// (`dir_lock`).
    pub(super) move_lock: super::dir_lock::HeldMoveLock,
}

/// How long a cached `moving` mark is trusted before it is read again.
const MARK_TTL: Duration = Duration::from_secs(1);

/// Where a tenant lives, as last read from the control table.
#[derive(Clone)]
struct Placed {
    location: Arc<str>,
    /// When the tenant was read marked moving (`None`: not marked).
    marked_at: Option<Instant>,
}

impl Placed {
    fn fresh(&self) -> bool {
        self.marked_at.is_none_or(|at| at.elapsed() < MARK_TTL)
    }
}

/// A tenant's writes in flight on this node, and whether new ones are refused.
#[derive(Default)]
struct Gate {
    frozen: bool,
    in_flight: usize,
}

/// A write admitted while its tenant was not frozen; a move waits for all of them to end.
pub struct WriteTicket {
    store: Store,
    tenant: i64,
}

impl Drop for WriteTicket {
    fn drop(&mut self) {
        let mut gates = lock(&self.store.placement.gates);
        if let Some(g) = gates.get_mut(&self.tenant) {
            g.in_flight = g.in_flight.saturating_sub(1);
            if g.in_flight == 0 && !g.frozen {
                gates.remove(&self.tenant);
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Checks a `NAME=URL` list: names `^[a-z][a-z0-9_-]{0,31}$` and not `default`, URLs
/// PostgreSQL's, names not repeated.
pub fn parse_clusters(specs: &[String]) -> Result<Vec<(String, String)>, String> {
    let mut out: Vec<(String, String)> = Vec::new();
    for spec in specs.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        let (name, url) = spec
            .split_once('=')
            .ok_or_else(|| "a cluster is given as NAME=postgres://...".to_string())?;
        let (name, url) = (name.trim(), url.trim());
        let good_name = name.len() <= 32
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if !good_name || name == DEFAULT_LOCATION {
            return Err(format!(
                "cluster name {name:?}: lowercase letters, digits, - and _ (at most 32, \
                 starting with a letter), and not {DEFAULT_LOCATION:?}"
            ));
        }
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(format!("cluster {name}: the URL must be postgres://..."));
        }
        if out.iter().any(|(n, _)| n == name) {
            return Err(format!("cluster {name} is given twice"));
        }
        out.push((name.to_string(), url.to_string()));
    }
    Ok(out)
}

impl Store {
    /// Sets the extra PostgreSQL clusters (name, URL) tenants may be placed on (their
    /// pools open on first use), and where tenants created without a location go.
    pub fn set_clusters(
        &self,
        clusters: Vec<(String, String)>,
        max_connections: u32,
        policy: PlacementPolicy,
    ) {
        *self
            .placement
            .clusters
            .write()
            .unwrap_or_else(|p| p.into_inner()) = clusters.into_iter().collect();
        *lock(&self.placement.max_connections) = max_connections.max(1);
        *lock(&self.placement.policy) = policy;
    }

    /// Every location a tenant may be placed on: `default` first, then the clusters.
    pub fn locations(&self) -> Vec<String> {
        let clusters = self
            .placement
            .clusters
            .read()
            .unwrap_or_else(|p| p.into_inner());
        let mut names: Vec<String> = clusters.keys().cloned().collect();
        names.sort();
        names.insert(0, DEFAULT_LOCATION.to_string());
        names
    }

    /// Sets the lease of the moves this process runs (300 ms to 10 min).
    pub fn set_move_lease(&self, lease: Duration) {
        let ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
        self.placement
            .move_lease_ms
            .store(ms.clamp(300, 600_000), std::sync::atomic::Ordering::Relaxed);
    }

    /// The lease of the moves this process runs, in ms.
    pub(super) fn move_lease_ms(&self) -> i64 {
        match self
            .placement
            .move_lease_ms
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            0 => 15_000,
            ms => ms,
        }
    }

    /// The location for a new tenant whose creation names none, by the policy: with
    /// `least-loaded`, the one holding the fewest tenants (counted in the control
    /// table, tenants being moved included at their current location).
    pub async fn placement_for_new_tenant(&self) -> StoreResult<String> {
        if *lock(&self.placement.policy) == PlacementPolicy::Default {
            return Ok(DEFAULT_LOCATION.to_string());
        }
        let db = self.control_db();
        let counts: Vec<(String, i64)> = on_db!(db, |p| sqlx::query_as(
            "SELECT location, COUNT(*) FROM tenants GROUP BY location"
        )
        .fetch_all(&p)
        .await?);
        let load = |l: &str| {
            counts
                .iter()
                .find(|(name, _)| name == l)
                .map_or(0, |(_, n)| *n)
        };
        // `locations()` lists `default` first: the first of the least loaded wins.
        let locations = self.locations();
        let least = locations
            .iter()
            .min_by_key(|l| load(l))
            .cloned()
            .unwrap_or_else(|| DEFAULT_LOCATION.to_string());
        Ok(least)
    }

    pub fn has_location(&self, name: &str) -> bool {
        name == DEFAULT_LOCATION
            || self
                .placement
                .clusters
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .contains_key(name)
    }

    /// Drops what this node cached of where tenants live (another node moved one).
    pub fn forget_placements(&self) {
        lock(&self.placement.cache).clear();
    }

    /// Drops what this node cached of where one tenant lives.
    pub(super) fn forget_placement(&self, tenant: i64) {
        lock(&self.placement.cache).remove(&tenant);
    }

    /// Caches the tenant's location, not marked: a new tenant, or one this node's move
    /// switched (its gate stays frozen until the mark is cleared).
    pub(super) fn remember_placement(&self, tenant: i64, location: &str) {
        let placed = Placed {
            location: Arc::from(location),
            marked_at: None,
        };
        lock(&self.placement.cache).insert(tenant, placed);
    }

    /// The location of the tenant's data, from the cache or the control table. A tenant
    /// with no row (deleted) reads as `default`.
    pub(super) async fn placement_of(&self, tenant: i64) -> StoreResult<Arc<str>> {
        Ok(self.placed(tenant).await?.location)
    }

    /// Whether the tenant is marked moving, as this node last read it (see the module's
    /// doc): its writes are refused, whichever process moves it.
    pub(super) async fn marked_moving(&self, tenant: i64) -> StoreResult<bool> {
        Ok(self.placed(tenant).await?.marked_at.is_some())
    }

    async fn placed(&self, tenant: i64) -> StoreResult<Placed> {
        if let Some(p) = lock(&self.placement.cache).get(&tenant)
            && p.fresh()
        {
            return Ok(p.clone());
        }
        let db = self.control_db();
        let found: Option<(String, bool)> = on_db!(db, |p| sqlx::query_as(
            "SELECT location, moving FROM tenants WHERE id = $1"
        )
        .bind(tenant)
        .fetch_optional(&p)
        .await?);
        let (location, moving) = found.unwrap_or_else(|| (DEFAULT_LOCATION.to_string(), false));
        let placed = Placed {
            location: Arc::from(location),
            marked_at: moving.then(Instant::now),
        };
        lock(&self.placement.cache).insert(tenant, placed.clone());
        Ok(placed)
    }

    /// Whether the tenant is known (cached) to live on a cluster.
    pub(super) fn placed_on_cluster(&self, tenant: i64) -> bool {
        lock(&self.placement.cache)
            .get(&tenant)
            .is_some_and(|p| &*p.location != DEFAULT_LOCATION)
    }

    /// The pool of a configured cluster, opened (and migrated) on first use.
    async fn cluster_pool(&self, name: &str) -> StoreResult<PgPool> {
        let mut pools = self.placement.pools.lock().await;
        if let Some(p) = pools.get(name) {
            return Ok(p.clone());
        }
        let url = self
            .placement
            .clusters
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
            .ok_or(StoreError::Unavailable(
                "the tenant's storage location is not configured on this node",
            ))?;
        let max = *lock(&self.placement.max_connections);
        let pool = super::pg_pool_options(max)
            .acquire_timeout(Duration::from_secs(5))
            .connect(&url)
            .await?;
        POSTGRES_MIGRATIONS.run(&pool).await?;
        pools.insert(name.to_string(), pool.clone());
        Ok(pool)
    }

    /// The cold-path database of `location` for this tenant (its SQLite file is created
    /// and migrated when the location is the default SQLite directory).
    pub(super) async fn location_db(&self, location: &str, tenant: i64) -> StoreResult<Db> {
        if location != DEFAULT_LOCATION {
            return Ok(Db::Postgres(self.cluster_pool(location).await?));
        }
        Ok(match &*self.inner {
            Backend::Sqlite(s) => Db::Sqlite(s.tenant_file(tenant).await?.pool),
            Backend::Postgres(p) => Db::Postgres(p.clone()),
        })
    }

    /// The hot-path handle of `location` for this tenant.
    pub(super) async fn location_data(
        &self,
        location: &str,
        tenant: i64,
    ) -> StoreResult<TenantData> {
        if location != DEFAULT_LOCATION {
            return Ok(TenantData::Postgres(self.cluster_pool(location).await?));
        }
        Ok(match &*self.inner {
            Backend::Sqlite(s) => TenantData::Sqlite(s.tenant_file(tenant).await?.hot),
            Backend::Postgres(p) => TenantData::Postgres(p.clone()),
        })
    }

    /// Closes the clusters' pools (with the store).
    pub(super) async fn close_clusters(&self) {
        let pools: Vec<PgPool> = self
            .placement
            .pools
            .lock()
            .await
            .drain()
            .map(|(_, p)| p)
            .collect();
        for p in pools {
            p.close().await;
        }
    }

    /// Admits one write of the tenant on this node, unless a move froze it.
    pub fn enter_write(&self, tenant: i64) -> Option<WriteTicket> {
        let mut gates = lock(&self.placement.gates);
        let gate = gates.entry(tenant).or_default();
        if gate.frozen {
            return None;
        }
        gate.in_flight += 1;
        Some(WriteTicket {
            store: self.clone(),
            tenant,
        })
    }

    /// Whether a move froze the tenant's writes on this node.
    pub fn is_frozen(&self, tenant: i64) -> bool {
        lock(&self.placement.gates)
            .get(&tenant)
            .is_some_and(|g| g.frozen)
    }

    /// Refuses new writes of the tenant on this node (those in flight go on).
    pub(super) fn freeze(&self, tenant: i64) {
        lock(&self.placement.gates)
            .entry(tenant)
            .or_default()
            .frozen = true;
    }

    pub(super) fn writes_in_flight(&self, tenant: i64) -> usize {
        lock(&self.placement.gates)
            .get(&tenant)
            .map_or(0, |g| g.in_flight)
    }

    pub(super) fn thaw(&self, tenant: i64) {
        let mut gates = lock(&self.placement.gates);
        if let Some(g) = gates.get_mut(&tenant) {
            g.frozen = false;
            if g.in_flight == 0 {
                gates.remove(&tenant);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_clusters;

    fn specs(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn placement_policies_parse() {
        use super::PlacementPolicy;
        assert_eq!(PlacementPolicy::parse(""), Ok(PlacementPolicy::Default));
        assert_eq!(
            PlacementPolicy::parse("default"),
            Ok(PlacementPolicy::Default)
        );
        assert_eq!(
            PlacementPolicy::parse(" least-loaded "),
            Ok(PlacementPolicy::LeastLoaded)
        );
        assert!(PlacementPolicy::parse("random").is_err());
    }

    #[test]
    fn clusters_parse_and_bad_ones_are_refused() {
        let ok = parse_clusters(&specs(&["eu2=postgres://h/a", " us1 = postgresql://h/b "]));
        assert_eq!(
            ok.unwrap(),
            vec![
                ("eu2".to_string(), "postgres://h/a".to_string()),
                ("us1".to_string(), "postgresql://h/b".to_string())
            ]
        );
        assert!(parse_clusters(&specs(&[""])).unwrap().is_empty());
        for bad in [
            "eu2",
            "default=postgres://h/a",
            "Eu2=postgres://h/a",
            "eu2=mysql://h/a",
            "2eu=postgres://h/a",
        ] {
            assert!(parse_clusters(&specs(&[bad])).is_err(), "{bad}");
        }
        assert!(parse_clusters(&specs(&["a=postgres://x/1", "a=postgres://x/2"])).is_err());
    }
}
