//! The SQLite backend's files: `control.db` and the registry of tenant files, each opened
//! on first use (its sqlx pool for the cold paths, `sqlite::SqliteFile` for the hot
//! ones), and the task that closes the connections of files left idle.
//!
//! An idle file costs nothing but its entry here, so the background work of the server
//! (the hook runner's rescans, the change-log retention) must not touch a tenant's file
//! unless that tenant may have work: touching it would open it again and keep every
//! tenant of the node from ever being idle.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::{Backend, SQLITE_TENANT_MIGRATIONS, SqliteTuning, Store, StoreResult, backup, sqlite};

pub(super) struct SqliteBackend {
    pub(super) control: SqlitePool,
    data_dir: PathBuf,
    pub(super) tenants: tokio::sync::Mutex<HashMap<i64, TenantFile>>,
    pub(super) tuning: SqliteTuning,
    /// rusqlite connections open to tenant files, for `/metrics`.
    connections: Arc<AtomicUsize>,
}

/// One tenant's SQLite file: through sqlx for the cold paths, through rusqlite
/// (`store::sqlite`) for the hot ones.
#[derive(Clone)]
pub(super) struct TenantFile {
    pub(super) pool: SqlitePool,
    pub(super) hot: Arc<sqlite::SqliteFile>,
}

impl SqliteBackend {
    pub(super) fn new(control: SqlitePool, data_dir: PathBuf, tuning: SqliteTuning) -> Self {
        SqliteBackend {
            control,
            data_dir,
            tenants: tokio::sync::Mutex::new(HashMap::new()),
            tuning,
            connections: Arc::default(),
        }
    }

    pub(super) fn dir(&self) -> &std::path::Path {
        &self.data_dir
    }

    pub(super) fn tenant_path(&self, tenant_id: i64) -> PathBuf {
        self.data_dir.join(backup::sqlite_tenant_file(tenant_id))
    }

    pub(super) async fn tenant_file(&self, tenant_id: i64) -> StoreResult<TenantFile> {
        // Holding the lock while opening keeps two requests from migrating one file at once;
        // opening is rare (first use after start), lookups are a map probe.
        let mut tenants = self.tenants.lock().await;
        if let Some(file) = tenants.get(&tenant_id) {
            return Ok(file.clone());
        }
        let path = self.tenant_path(tenant_id);
        let pool = open_sqlite(&path, 8, &self.tuning).await?;
        SQLITE_TENANT_MIGRATIONS.run(&pool).await?;
        let file = TenantFile {
            pool,
            hot: Arc::new(sqlite::SqliteFile::new(
                &path,
                self.tuning,
                self.connections.clone(),
            )),
        };
        tenants.insert(tenant_id, file.clone());
        Ok(file)
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
        Some(
            s.tenants
                .lock()
                .await
                .iter()
                .filter(|(_, f)| f.hot.written_since(since_ms))
                .map(|(id, _)| *id)
                .collect(),
        )
    }

    /// rusqlite connections open to tenant files now (0 on PostgreSQL): a writer and a
    /// few idle readers per tenant used within `PLINTH_SQLITE_IDLE`.
    pub fn sqlite_connections(&self) -> usize {
        match &*self.inner {
            Backend::Sqlite(s) => s.connections.load(std::sync::atomic::Ordering::Relaxed),
            Backend::Postgres(_) => 0,
        }
    }
}

/// Every `idle / 2`, closes the rusqlite connections of tenant files unused for `idle`
/// (their sqlx pools close idle connections themselves), so the memory of connections
/// follows the tenants in use, not all the tenants ever served. Ends with the store.
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
        let files: Vec<Arc<sqlite::SqliteFile>> = s
            .tenants
            .lock()
            .await
            .values()
            .map(|t| t.hot.clone())
            .collect();
        drop(backend);
        let closed = tokio::task::spawn_blocking(move || {
            files.iter().map(|f| f.release_idle(idle)).sum::<usize>()
        })
        .await
        .unwrap_or(0);
        if closed > 0 {
            tracing::debug!(closed, "closed idle SQLite connections");
        }
    }
}

pub(super) async fn open_sqlite(
    path: &Path,
    max_connections: u32,
    tuning: &SqliteTuning,
) -> StoreResult<SqlitePool> {
    let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(10))
        .pragma("cache_size", tuning.cache_size_pragma().to_string())
        .pragma("mmap_size", tuning.mmap_pragma().to_string());
    let pool = SqlitePoolOptions::new()
        .max_connections(max_connections)
        .min_connections(0)
        // A local file does not go stale; a ping per acquire would double each query's cost.
        .test_before_acquire(false)
        // An idle tenant gives its file handles and their memory back.
        .idle_timeout(Some(tuning.idle_close))
        .connect_with(options)
        .await?;
    Ok(pool)
}
