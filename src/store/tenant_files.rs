//! The SQLite backend's files: `control.db` and the registry of tenant files, each opened
//! on first use (`sqlite::SqliteFile` for the hot paths, a sqlx pool for the cold ones,
//! which connects when a cold path first needs it), and the task that closes the files
//! left idle.
//!
//! The idle policy: a tenant file that no request used for `PLINTH_SQLITE_IDLE` leaves
//! the registry, with its connections (their page caches, schemas and statements), its
//! sqlx pool and its entry; all that is left of it on this node is, if this process wrote
//! to it, the time of that write, for the change-log retention. The next request opens it
//! again: one connection, a read of the schema version in the file's header (`PRAGMA
//! user_version`, set after the migrations ran), no migration check. The caches above
//! the store (rules, keys, tenants, write queues) follow the same idle time
//! (`AppState::release_idle_tenants`).
//!
//! So the background work of the server (the hook runner's rescans, the change-log
//! retention) must not touch a tenant's file unless that tenant may have work: touching it
//! would open it again and keep every tenant of the node from ever being idle.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::{Backend, SQLITE_TENANT_MIGRATIONS, SqliteTuning, Store, StoreResult, backup, sqlite};

pub(super) struct SqliteBackend {
    pub(super) control: SqlitePool,
    data_dir: PathBuf,
    /// Tenant id -> its file, opened once by whichever request needs it first.
    tenants: Mutex<HashMap<i64, Slot>>,
    pub(super) tuning: SqliteTuning,
    /// rusqlite connections open to tenant files, for `/metrics`.
    connections: Arc<AtomicUsize>,
    /// Tenant files in the registry, for `/metrics`.
    files: AtomicUsize,
    /// Tenant id -> when this process last wrote to its file, for the files closed since:
    /// the retention must still visit a tenant whose file closed after a write.
    closed_writes: Mutex<HashMap<i64, i64>>,
}

/// A registry entry: the file once open. Opening happens outside the registry's lock (an
/// open that migrates may take a while, and other tenants' lookups must not wait for it);
/// the requests that find a tenant's file opening wait for that one open.
type Slot = Arc<tokio::sync::OnceCell<TenantFile>>;

/// One tenant's SQLite file: through sqlx for the cold paths, through rusqlite
/// (`store::sqlite`) for the hot ones.
#[derive(Clone)]
pub(super) struct TenantFile {
    pub(super) pool: SqlitePool,
    pub(super) hot: Arc<sqlite::SqliteFile>,
}

/// The tenant schema version this binary migrates to, as `PRAGMA user_version` holds it
/// (None if it does not fit: then every open runs the migration check).
fn tenant_schema_version() -> Option<i32> {
    let newest = SQLITE_TENANT_MIGRATIONS.iter().map(|m| m.version).max()?;
    i32::try_from(newest).ok()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl SqliteBackend {
    pub(super) fn new(control: SqlitePool, data_dir: PathBuf, tuning: SqliteTuning) -> Self {
        SqliteBackend {
            control,
            data_dir,
            tenants: Mutex::default(),
            tuning,
            connections: Arc::default(),
            files: AtomicUsize::new(0),
            closed_writes: Mutex::default(),
        }
    }

    pub(super) fn dir(&self) -> &std::path::Path {
        &self.data_dir
    }

    pub(super) fn tenant_path(&self, tenant_id: i64) -> PathBuf {
        self.data_dir.join(backup::sqlite_tenant_file(tenant_id))
    }

    pub(super) async fn tenant_file(&self, tenant_id: i64) -> StoreResult<TenantFile> {
        let slot = {
            let mut tenants = lock(&self.tenants);
            let slot = tenants.entry(tenant_id).or_default().clone();
            self.files.store(tenants.len(), Ordering::Relaxed);
            slot
        };
        let file = slot.get_or_try_init(|| self.open(tenant_id)).await?;
        file.hot.touch();
        Ok(file.clone())
    }

    /// Opens a tenant's file: at the current schema, one connection and a read of the
    /// file's header; otherwise (a file that is missing, older or newer, or from before
    /// the version was recorded) through sqlx's migrator, which creates, migrates or
    /// refuses it.
    async fn open(&self, tenant_id: i64) -> StoreResult<TenantFile> {
        let path = self.tenant_path(tenant_id);
        let hot = Arc::new(sqlite::SqliteFile::new(
            &path,
            self.tuning,
            self.connections.clone(),
        ));
        let current = tenant_schema_version();
        let pool = if current.is_some() && hot.schema_version().ok() == current.map(i64::from) {
            lazy_sqlite(&path, 8, &self.tuning)?
        } else {
            let pool = open_sqlite(&path, 8, &self.tuning).await?;
            SQLITE_TENANT_MIGRATIONS.run(&pool).await?;
            if let Some(v) = current {
                hot.set_schema_version(v)?;
            }
            pool
        };
        Ok(TenantFile { pool, hot })
    }

    /// Takes out of the registry the files unused for `idle` that no operation holds.
    /// An operation holds the file (or, while it opens, the slot) from its lookup to its
    /// end, and a lookup takes it under the registry's lock, held here: a file held by
    /// the registry alone cannot be in use. Dropping them closes their connections.
    fn take_idle(&self, idle: Duration) -> Vec<TenantFile> {
        let mut tenants = lock(&self.tenants);
        let mut closed_writes = lock(&self.closed_writes);
        let mut taken = Vec::new();
        tenants.retain(|id, slot| {
            if Arc::strong_count(slot) > 1 {
                return true;
            }
            let Some(file) = slot.get() else {
                return false; // an open that failed: nothing to keep
            };
            if !file.hot.idle_for(idle) || Arc::strong_count(&file.hot) > 1 {
                return true;
            }
            if let Some(at) = file.hot.last_write() {
                closed_writes.insert(*id, at);
            }
            taken.push(file.clone());
            false
        });
        self.files.store(tenants.len(), Ordering::Relaxed);
        taken
    }

    /// Forgets a tenant's entry (its storage was dropped).
    pub(super) fn remove(&self, tenant_id: i64) -> Option<TenantFile> {
        let mut tenants = lock(&self.tenants);
        let slot = tenants.remove(&tenant_id);
        self.files.store(tenants.len(), Ordering::Relaxed);
        lock(&self.closed_writes).remove(&tenant_id);
        slot.and_then(|s| s.get().cloned())
    }

    /// Takes every file out of the registry (the store closes).
    pub(super) fn take_all(&self) -> Vec<TenantFile> {
        let mut tenants = lock(&self.tenants);
        self.files.store(0, Ordering::Relaxed);
        tenants
            .drain()
            .filter_map(|(_, slot)| slot.get().cloned())
            .collect()
    }
}

impl Store {
    /// The tenants whose SQLite files took a write since `since_ms` (by this process), or
    /// None on PostgreSQL, where every tenant is in the one database. Work that only
    /// matters for a tenant whose data changed (the change-log retention) skips the
    /// others, so an idle tenant's file stays closed.
    pub async fn tenants_written_since(&self, since_ms: i64) -> Option<HashSet<i64>> {
        let Backend::Sqlite(s) = &*self.inner else {
            return None;
        };
        let mut written: HashSet<i64> = lock(&s.tenants)
            .iter()
            .filter(|(_, slot)| slot.get().is_some_and(|f| f.hot.written_since(since_ms)))
            .map(|(id, _)| *id)
            .collect();
        let mut closed = lock(&s.closed_writes);
        // The retention asks about ever later times: older writes are not asked about again.
        closed.retain(|_, at| *at >= since_ms);
        written.extend(closed.keys());
        Some(written)
    }

    /// rusqlite connections open to tenant files now (0 on PostgreSQL): a writer and a
    /// few idle readers per tenant used within `PLINTH_SQLITE_IDLE`.
    pub fn sqlite_connections(&self) -> usize {
        match &*self.inner {
            Backend::Sqlite(s) => s.connections.load(Ordering::Relaxed),
            Backend::Postgres(_) => 0,
        }
    }

    /// Tenant files open now (0 on PostgreSQL): those used within `PLINTH_SQLITE_IDLE`.
    pub fn sqlite_tenant_files(&self) -> usize {
        match &*self.inner {
            Backend::Sqlite(s) => s.files.load(Ordering::Relaxed),
            Backend::Postgres(_) => 0,
        }
    }

    /// Closes now the tenant files unused for `idle` (what the store's own task does
    /// every `idle / 2`); `Duration::ZERO` closes every file no operation holds. For
    /// bulk work in one process (`plinth tenant import` of many tenants), which would
    /// otherwise hold every file it touched until the idle time passed.
    pub async fn close_idle_tenant_files(&self, idle: Duration) -> usize {
        let Backend::Sqlite(s) = &*self.inner else {
            return 0;
        };
        let taken = s.take_idle(idle);
        let n = taken.len();
        close_files(taken).await;
        n
    }
}

/// Drops tenant files off the async workers: closing a file's last connection
/// checkpoints its WAL, which may block.
async fn close_files(files: Vec<TenantFile>) {
    if files.is_empty() {
        return;
    }
    let _ = tokio::task::spawn_blocking(move || drop(files)).await;
}

/// Every `idle / 2`, closes the tenant files unused for `idle` (see the module's doc), so
/// the memory of tenants follows the tenants in use, not all the tenants ever served. Ends
/// with the store.
pub(super) async fn close_idle_tenant_files(backend: std::sync::Weak<Backend>, idle: Duration) {
    let mut tick = tokio::time::interval((idle / 2).max(Duration::from_millis(100)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(backend) = backend.upgrade() else {
            return;
        };
        let Backend::Sqlite(s) = &*backend else {
            return;
        };
        let taken = s.take_idle(idle);
        drop(backend);
        let closed = taken.len();
        close_files(taken).await;
        if closed > 0 {
            tracing::debug!(closed, "closed idle tenant files");
        }
    }
}

fn connect_options(path: &Path, tuning: &SqliteTuning) -> StoreResult<SqliteConnectOptions> {
    Ok(
        SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10))
            .pragma("cache_size", tuning.cache_size_pragma().to_string())
            .pragma("mmap_size", tuning.mmap_pragma().to_string()),
    )
}

fn pool_options(max_connections: u32, tuning: &SqliteTuning) -> SqlitePoolOptions {
    SqlitePoolOptions::new()
        .max_connections(max_connections)
        .min_connections(0)
        // A local file does not go stale; a ping per acquire would double each query's cost.
        .test_before_acquire(false)
        // An idle tenant gives its file handles and their memory back.
        .idle_timeout(Some(tuning.idle_close))
}

/// A pool that connects when first used (a tenant file known to be migrated).
fn lazy_sqlite(
    path: &Path,
    max_connections: u32,
    tuning: &SqliteTuning,
) -> StoreResult<SqlitePool> {
    Ok(pool_options(max_connections, tuning).connect_lazy_with(connect_options(path, tuning)?))
}

pub(super) async fn open_sqlite(
    path: &Path,
    max_connections: u32,
    tuning: &SqliteTuning,
) -> StoreResult<SqlitePool> {
    Ok(pool_options(max_connections, tuning)
        .connect_with(connect_options(path, tuning)?)
        .await?)
}
