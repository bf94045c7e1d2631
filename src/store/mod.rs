//! All SQL lives here. `Store` hides the two backends:
//!
//! - SQLite: `control.db` (tenants, admins, signing keys, audit) plus one file per tenant
//!   under `tenants/`, opened lazily; idle connections close by themselves.
//! - PostgreSQL: one database; every tenant table's key starts with `tenant_id`.
//!
//! Tenant tables carry `tenant_id` on SQLite too, so one SQL text serves both dialects and
//! every tenant query filters by tenant even inside a tenant's own file. The tenant is only
//! ever taken from a [`Scope`](crate::tenancy::Scope) through [`Store::tenant_db`].

mod admin_access;
mod admin_invites;
mod announce;
pub mod backup;
mod change_lock;
mod commit;
mod control;
mod dir_lock;
#[cfg(test)]
mod dir_lock_tests;
mod documents;
mod export;
mod functions;
mod jobs;
mod keys;
mod placement;
mod postgres;
pub mod predicate_sql;
mod relocate;
mod rulesets;
mod secrets;
mod sql;
mod sqlite;
mod tenant_files;
#[cfg(test)]
mod unique_tests;
mod usage;
mod users;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::SqlitePool;

pub use admin_access::{AdminKeyRow, AdminSessionRow, NewAdminKey, OwnerGuarded};
pub use admin_invites::{AdminInviteRow, NewAdminInvite};
pub use announce::{Announcement, Topic};
pub use change_lock::ChangeLock;
pub use control::{AdminRow, AuditEntry, AuditQuery, NewAudit, SigningKeyRow, TenantRow};
pub use dir_lock::DirLock;
pub use documents::{
    After, Change, ChangeOp, ListQuery, ListedDoc, OrderKey, SortValue, StoredDoc, WriteDecision,
    WriteError, WriteRequest, Written, page_len,
};
pub use export::{
    ActiveDeployRecord, DeployRecord, DocRecord, ExportPart, RulesetRecord, SealedSecret,
    ServiceKeyRecord, TenantImport, TenantTables, UserRecord,
};
pub use functions::{DeployRow, DeploySummary, InvocationRow};
pub use jobs::{JobInfo, JobPlanner, JobRef, JobRow, NewJob, Origin, OutboxScan};
pub use keys::ServiceKeyRow;
pub use placement::{DEFAULT_LOCATION, PlacementPolicy, WriteTicket, parse_clusters};
pub use relocate::{MovePhase, MoveRecord, MoveReport, MoveStep, Recovery};
pub use secrets::{SecretMeta, SecretPut, SecretRow};
pub use sqlite::{SqliteMemory, SqliteTuning, sqlite_memory};
pub use usage::UsageCounts;
pub use users::{NewSession, RefreshOutcome, SessionState, UserQuery, UserRow, UserTokenKind};

use crate::tenancy::Scope;
use tenant_files::{SqliteBackend, open_sqlite};

static SQLITE_CONTROL_MIGRATIONS: sqlx::migrate::Migrator =
    sqlx::migrate!("./migrations/sqlite-control");
static SQLITE_TENANT_MIGRATIONS: sqlx::migrate::Migrator =
    sqlx::migrate!("./migrations/sqlite-tenant");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// A uniqueness rule was violated; the text names what collided. Only that: faults
    /// are `Unavailable` or `Internal` (a client used to get 409 `document_exists` for
    /// a dead commit task).
    #[error("conflict: {0}")]
    Conflict(&'static str),
    /// The store cannot serve this now (its commit task or connection is gone); worth
    /// retrying.
    #[error("store unavailable: {0}")]
    Unavailable(&'static str),
    /// A broken invariant of the store's own code, not the caller's input.
    #[error("store fault: {0}")]
    Internal(&'static str),
    /// The disk (or the database's) is full: writes fail, reads go on.
    #[error("storage full")]
    StorageFull,
    // The four causes below are in the message and not given as `source()`: logs print
    // the message alone (`error = %e`), and the CLI prints the message and then each
    // source (`{:#}`), which showed every cause twice, sqlx's own source a third time.
    #[error("database error: {0}")]
    Db(sqlx::Error),
    #[error("migration error: {0}")]
    Migrate(sqlx::migrate::MigrateError),
    #[error("io error: {0}")]
    Io(std::io::Error),
    #[error("sqlite error: {0}")]
    Sqlite(rusqlite::Error),
    /// An acknowledging write whose delivery no longer holds its job: acknowledged
    /// before, or claimed again after its lease ran out.
    #[error("this delivery was acknowledged before or taken over by a later one")]
    Superseded,
    /// The tenant is being moved to another storage location: its writes wait for the
    /// move to end (a few seconds); reads go on.
    #[error("the tenant is moving to another storage location")]
    TenantMoving,
    /// Another mover holds the tenant's move and beat its heartbeat this long ago (ms),
    /// within its lease: it is running (maybe slowly), not dead.
    #[error("a move of this tenant is running")]
    MoveRunning { heartbeat_age_ms: i64 },
}

pub type StoreResult<T> = Result<T, StoreError>;

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Db(e)
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        StoreError::Migrate(e)
    }
}

impl From<std::io::Error> for StoreError {
    fn from(e: std::io::Error) -> Self {
        StoreError::Io(e)
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Sqlite(e)
    }
}

impl StoreError {
    pub fn code(&self) -> &'static str {
        match self {
            StoreError::TenantMoving => return "tenant_moving",
            StoreError::MoveRunning { .. } => return "move_running",
            _ => {}
        }
        match self.kind() {
            crate::fault::Kind::StorageFull => "storage_full",
            crate::fault::Kind::Unavailable => "unavailable",
            crate::fault::Kind::Internal => "internal",
            _ => match self {
                StoreError::NotFound => "not_found",
                StoreError::Superseded => "delivery_superseded",
                _ => "conflict",
            },
        }
    }

    pub fn kind(&self) -> crate::fault::Kind {
        use crate::fault::Kind;
        if storage_full(self) {
            return Kind::StorageFull;
        }
        match self {
            StoreError::NotFound => Kind::NotFound,
            StoreError::Conflict(_) | StoreError::Superseded | StoreError::MoveRunning { .. } => {
                Kind::Conflict
            }
            StoreError::Unavailable(_) | StoreError::TenantMoving => Kind::Unavailable,
            StoreError::Db(e) if database_unreachable(e) => Kind::Unavailable,
            StoreError::StorageFull => Kind::StorageFull,
            StoreError::Internal(_)
            | StoreError::Db(_)
            | StoreError::Migrate(_)
            | StoreError::Io(_)
            | StoreError::Sqlite(_) => Kind::Internal,
        }
    }

    /// What a client is told: never the database's own message.
    pub fn client_detail(&self) -> String {
        match (self.kind(), self) {
            (crate::fault::Kind::StorageFull, _) => {
                "the server's storage is full; nothing was written".into()
            }
            (_, StoreError::TenantMoving) => {
                "the tenant is moving to another storage location; retry in a few seconds".into()
            }
            (crate::fault::Kind::Unavailable, StoreError::Db(_)) => {
                "the database is unreachable; retry shortly".into()
            }
            (crate::fault::Kind::Unavailable, _) => {
                "the server cannot serve this now; retry shortly".into()
            }
            (crate::fault::Kind::Internal, _) => "internal server error".into(),
            (_, StoreError::NotFound) => "no such resource".into(),
            (_, StoreError::Conflict(what)) => what.to_string(),
            (_, StoreError::MoveRunning { heartbeat_age_ms }) => format!(
                "a move of this tenant is running (its last heartbeat {:.1} s ago); wait for \
                 it, or run the move again once it has been silent for its lease",
                *heartbeat_age_ms as f64 / 1000.0
            ),
            (_, other) => other.to_string(),
        }
    }
}

/// Whether an error means the disk (SQLite: SQLITE_FULL) or the database (PostgreSQL:
/// SQLSTATE 53100) is full.
pub fn storage_full(e: &StoreError) -> bool {
    match e {
        StoreError::StorageFull => true,
        StoreError::Sqlite(rusqlite::Error::SqliteFailure(f, _)) => {
            f.code == rusqlite::ErrorCode::DiskFull
        }
        // PostgreSQL's disk_full, or SQLITE_FULL (13) through sqlx's SQLite driver.
        StoreError::Db(sqlx::Error::Database(db)) => {
            db.code().is_some_and(|c| c == "53100" || c == "13")
        }
        StoreError::Io(io) => io.raw_os_error() == Some(28), // ENOSPC
        _ => false,
    }
}

/// The options of every PostgreSQL pool. By default sqlx pings a connection when it
/// leaves the pool and again when it comes back: two round trips per transaction or
/// single read on top of its statements, paid by PostgreSQL and the node (a commit is 8
/// round trips, and with creates spread over tenants it carries ~1.7 of them:
/// BENCHMARKS.md, "Quiet re-runs"). The ping on the way back stays; it drops a
/// connection that broke during use. Without the one on the way out, a connection that
/// broke while idle (PostgreSQL restarted) fails its next statement instead, as an I/O
/// error: that request answers 503 `unavailable` (`database_unreachable`), and the ping
/// on its return drops the connection (tests/pg_restart.rs).
pub(crate) fn pg_pool_options(max_connections: u32) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .test_before_acquire(false)
}

/// Whether a database error means "not reachable now" (down, restarting, pool
/// exhausted) rather than a fault of this request: the client may retry (503).
pub fn database_unreachable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Tls(_) => true,
        // SQLSTATE class 08 (connection exception), 57P01-57P03 (admin shutdown, crash
        // shutdown, cannot connect now).
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| c.starts_with("08") || c.starts_with("57P0")),
        _ => false,
    }
}

/// Turns a violation of the unique constraint on `column` into `Conflict(what)`; every
/// other error passes through, a violation of another constraint (a primary key, say)
/// included: that is a fault, not the caller's conflict. The constraint is found by
/// name: PostgreSQL names it (`users_tenant_id_email_key`), SQLite lists its columns in
/// the message (`UNIQUE constraint failed: users.tenant_id, users.email`).
pub(crate) fn on_unique(err: sqlx::Error, column: &str, what: &'static str) -> StoreError {
    match &err {
        sqlx::Error::Database(db) if db.is_unique_violation() && violates(&**db, column) => {
            StoreError::Conflict(what)
        }
        _ => StoreError::Db(err),
    }
}

fn violates(db: &dyn sqlx::error::DatabaseError, column: &str) -> bool {
    match db.constraint() {
        Some(name) => name.split('_').any(|part| part == column),
        None => db.message().rsplit(':').next().is_some_and(|cols| {
            cols.split(',')
                .any(|c| c.trim().ends_with(&format!(".{column}")))
        }),
    }
}

/// `Ok` when a statement touched a row, `NotFound` when it touched none (an update or
/// delete of something absent).
pub(crate) fn one_row(rows_affected: u64) -> StoreResult<()> {
    if rows_affected == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis() + clock_skew_ms()
}

/// A test hook: `PLINTH_TEST_CLOCK_SKEW_MS` puts this process's clock (`now_ms`) so many
/// ms off, as a machine whose clock is wrong would have it, to test that what several
/// processes judge together (a tenant move's lease) does not rest on their own clocks.
/// Read once. Never set it outside tests.
fn clock_skew_ms() -> i64 {
    static SKEW: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *SKEW.get_or_init(|| {
        std::env::var("PLINTH_TEST_CLOCK_SKEW_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    })
}

/// One borrowed connection pool of either dialect. Code that runs on both is written
/// once inside [`on_db!`], which instantiates it for each pool type.
#[derive(Clone)]
pub(crate) enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl Db {
    /// The statement that opens a write transaction. On SQLite it takes the write lock up
    /// front: a deferred transaction that reads and then writes can fail with SQLITE_BUSY
    /// in WAL mode without waiting for the busy timeout.
    pub(crate) fn begin_write(&self) -> &'static str {
        match self {
            Db::Sqlite(_) => "BEGIN IMMEDIATE",
            Db::Postgres(_) => "BEGIN",
        }
    }
}

/// Runs the same sqlx code against whichever pool `$db` holds.
macro_rules! on_db {
    ($db:expr, |$pool:ident| $body:expr) => {
        match $db {
            $crate::store::Db::Sqlite($pool) => $body,
            $crate::store::Db::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_db;

/// A tenant's data as the hot paths reach it: its SQLite file through rusqlite, or the
/// PostgreSQL pool through sqlx. (A tenant file's sqlx pool serves only cold paths.)
pub(crate) enum TenantData {
    Sqlite(Arc<sqlite::SqliteFile>),
    Postgres(PgPool),
}

impl TenantData {
    pub(crate) fn dialect(&self) -> predicate_sql::Dialect {
        match self {
            TenantData::Sqlite(_) => predicate_sql::Dialect::Sqlite,
            TenantData::Postgres(_) => predicate_sql::Dialect::Postgres,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKind {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub struct Store {
    inner: Arc<Backend>,
    groups: Arc<commit::Groups>,
    on_commit: Arc<std::sync::OnceLock<CommitListener>>,
    planner: Arc<std::sync::OnceLock<Arc<dyn JobPlanner>>>,
    write_counts: Arc<std::sync::Mutex<HashMap<i64, u64>>>,
    placement: Arc<placement::Placement>,
}

/// Told (tenant id, last seq) after each commit of document writes.
pub type CommitListener = Arc<dyn Fn(i64, i64) + Send + Sync>;

enum Backend {
    Sqlite(SqliteBackend),
    Postgres(PgPool),
}

/// Where the data lives: a directory of SQLite files or a PostgreSQL URL.
#[derive(Clone, Debug)]
pub enum Location {
    SqliteDir(PathBuf),
    Postgres(String),
}

impl Store {
    /// Opens (creating if needed) the store and runs pending migrations. On SQLite,
    /// `tuning` sets every connection's cache and memory map and the process's budget.
    pub async fn open(
        location: &Location,
        pg_max_connections: u32,
        tuning: SqliteTuning,
    ) -> StoreResult<Store> {
        let backend = match location {
            Location::SqliteDir(dir) => {
                std::fs::create_dir_all(dir.join(backup::SQLITE_TENANT_DIR))?;
                tuning.apply_process_limit();
                let control =
                    open_sqlite(&dir.join(backup::SQLITE_CONTROL_FILE), 4, &tuning).await?;
                SQLITE_CONTROL_MIGRATIONS.run(&control).await?;
                Backend::Sqlite(SqliteBackend::new(control, dir.clone(), tuning))
            }
            Location::Postgres(url) => {
                let pool = pg_pool_options(pg_max_connections)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect(url)
                    .await?;
                POSTGRES_MIGRATIONS.run(&pool).await?;
                Backend::Postgres(pool)
            }
        };
        let inner = Arc::new(backend);
        if let Backend::Sqlite(s) = &*inner {
            tokio::spawn(tenant_files::close_idle_tenant_files(
                Arc::downgrade(&inner),
                s.tuning.idle_close,
            ));
        }
        Ok(Store {
            inner,
            groups: Arc::default(),
            on_commit: Arc::default(),
            planner: Arc::default(),
            write_counts: Arc::default(),
            placement: Arc::default(),
        })
    }

    /// Sets the one listener told of every commit (the realtime broker). The store does
    /// not know who listens; it only says that a tenant's log grew.
    pub fn set_commit_listener(&self, listener: CommitListener) {
        let _ = self.on_commit.set(listener);
    }

    /// Sets the one planner of outbox jobs (the function service's hooks).
    pub fn set_job_planner(&self, planner: Arc<dyn JobPlanner>) {
        let _ = self.planner.set(planner);
    }

    pub(crate) fn committed(&self, tenant: i64, seq: i64) {
        if let Some(l) = self.on_commit.get() {
            l(tenant, seq);
        }
    }

    pub fn kind(&self) -> BackendKind {
        match &*self.inner {
            Backend::Sqlite(_) => BackendKind::Sqlite,
            Backend::Postgres(_) => BackendKind::Postgres,
        }
    }

    /// The database holding control tables (tenants, admins, keys, audit).
    pub(crate) fn control_db(&self) -> Db {
        match &*self.inner {
            Backend::Sqlite(s) => Db::Sqlite(s.control.clone()),
            Backend::Postgres(p) => Db::Postgres(p.clone()),
        }
    }

    /// The one place a tenant's data is reached: the tenant's own database (at its
    /// placement) and id.
    pub(crate) async fn tenant_db(&self, scope: &Scope) -> StoreResult<(Db, i64)> {
        let tenant_id = scope.tenant().id;
        let location = self.placement_of(tenant_id).await?;
        Ok((self.location_db(&location, tenant_id).await?, tenant_id))
    }

    /// Where a tenant's hot paths (documents, the change log, the group commit, the job
    /// outbox, session checks) run, and the tenant's id.
    pub(crate) async fn tenant_data(&self, scope: &Scope) -> StoreResult<(TenantData, i64)> {
        let tenant_id = scope.tenant().id;
        let location = self.placement_of(tenant_id).await?;
        Ok((self.location_data(&location, tenant_id).await?, tenant_id))
    }

    /// True when the database answers a trivial query.
    pub async fn ping(&self) -> bool {
        let db = self.control_db();
        on_db!(db, |p| sqlx::query("SELECT 1").execute(&p).await.is_ok())
    }

    pub async fn close(&self) {
        match &*self.inner {
            Backend::Sqlite(s) => {
                for file in s.take_all() {
                    file.pool.close().await;
                }
                s.control.close().await;
            }
            Backend::Postgres(p) => p.close().await,
        }
        self.close_clusters().await;
    }

    /// Creates the tenant's storage at `location`: its SQLite file, or on a cluster the
    /// placeholder row its tables refer to; the default PostgreSQL database needs nothing.
    async fn provision_tenant(
        &self,
        tenant_id: i64,
        slug: &str,
        location: &str,
    ) -> StoreResult<()> {
        let db = self.location_db(location, tenant_id).await?;
        if location != DEFAULT_LOCATION {
            relocate::placeholder_row(&db, tenant_id, slug).await?;
        }
        self.remember_placement(tenant_id, location);
        Ok(())
    }

    /// Drops the tenant's storage at `location`: on the default SQLite directory its
    /// file (and WAL); on the default PostgreSQL database nothing beyond the cascading
    /// delete of the tenant row; on a cluster its rows and placeholder.
    async fn drop_tenant_storage(&self, tenant_id: i64, location: &str) -> StoreResult<()> {
        if location != DEFAULT_LOCATION {
            let db = self.location_db(location, tenant_id).await?;
            return relocate::clear_tenant(&db, tenant_id, true).await;
        }
        if let Backend::Sqlite(s) = &*self.inner {
            if let Some(file) = s.remove(tenant_id) {
                file.pool.close().await;
            }
            let base = s.tenant_path(tenant_id);
            for suffix in ["", "-wal", "-shm"] {
                let mut path = base.clone().into_os_string();
                path.push(suffix);
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(())
    }

    /// Path of a tenant's SQLite file (None on PostgreSQL). Used by tests.
    pub fn tenant_file(&self, tenant_id: i64) -> Option<PathBuf> {
        match &*self.inner {
            Backend::Sqlite(s) => Some(s.tenant_path(tenant_id)),
            Backend::Postgres(_) => None,
        }
    }
}
