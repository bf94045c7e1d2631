//! What backups need from the databases themselves: SQLite's online backup of a live
//! file, the schema version a copy was made at, the tenants a control database lists,
//! whether a PostgreSQL database is empty, and the advisory lock that makes one node of a
//! cluster the one taking scheduled backups. (`pg_dump`, `pg_restore` and the files
//! around them belong to the top-level `backup` module.)

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use sqlx::Connection as _;
use sqlx::postgres::PgConnection;

use super::{
    POSTGRES_MIGRATIONS, SQLITE_CONTROL_MIGRATIONS, SQLITE_TENANT_MIGRATIONS, StoreError,
    StoreResult,
};

/// The control database's file in a SQLite data directory.
pub const SQLITE_CONTROL_FILE: &str = "control.db";
/// The folder of the tenants' files in a SQLite data directory.
pub const SQLITE_TENANT_DIR: &str = "tenants";

/// A tenant's file, relative to the data directory (the one naming rule: the store opens
/// the same path).
pub fn sqlite_tenant_file(tenant_id: i64) -> PathBuf {
    Path::new(SQLITE_TENANT_DIR).join(format!("tenant-{tenant_id}.db"))
}

/// Copies the live SQLite database at `src` into the new file `dst` as one consistent
/// snapshot. The whole copy is one backup step, so one read transaction: stepping in
/// smaller pieces lets writers in between, and SQLite restarts a backup whose source
/// another connection changed, so under steady writes it might never end. In WAL mode a
/// reader blocks no writer; the WAL only grows until the copy ends.
///
/// The copy is left in rollback-journal mode: one self-contained file that a read-only
/// tool can open without creating `-wal`/`-shm` files beside it (the server turns WAL on
/// again when it opens a restored file).
pub fn sqlite_backup(src: &Path, dst: &Path) -> StoreResult<()> {
    // No CREATE flag: a missing source is an error, not a new empty database.
    let from = Connection::open_with_flags(
        src,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    from.busy_timeout(Duration::from_secs(10))?;
    let mut to = Connection::open_with_flags(
        dst,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    {
        let backup = Backup::new(&from, &mut to)?;
        let mut waits = 0;
        loop {
            match backup.step(-1)? {
                StepResult::Done => break,
                // Busy or locked (a checkpoint or a recovery holds the file a moment).
                _ => {
                    waits += 1;
                    if waits > 100 {
                        return Err(StoreError::Unavailable(
                            "the database stayed locked for 10 s; no backup taken",
                        ));
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }
    to.pragma_update_and_check(None, "journal_mode", "DELETE", |r| r.get::<_, String>(0))?;
    to.close().map_err(|(_, e)| e)?;
    from.close().map_err(|(_, e)| e)?;
    Ok(())
}

fn open_copy(path: &Path) -> StoreResult<Connection> {
    Ok(Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?)
}

/// The newest migration applied to a SQLite file (None: none, or no migration table).
pub fn sqlite_schema_version(path: &Path) -> StoreResult<Option<i64>> {
    let conn = open_copy(path)?;
    let has_table: Option<i64> = conn
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    if has_table.is_none() {
        return Ok(None);
    }
    Ok(conn.query_row(
        "SELECT MAX(version) FROM _sqlx_migrations WHERE success",
        [],
        |r| r.get(0),
    )?)
}

/// SQLite's own check of a copy's structure (`PRAGMA quick_check`): None when sound, else
/// what it found first. A checksum proves a file is the one backed up; this, that it is a
/// database (a manifest resealed over a cut file passes the first, not this).
pub fn sqlite_check(path: &Path) -> Option<String> {
    let found = open_copy(path).and_then(|conn| {
        Ok(conn.query_row("PRAGMA quick_check(1)", [], |r| r.get::<_, String>(0))?)
    });
    match found {
        Ok(answer) if answer == "ok" => None,
        Ok(answer) => Some(answer),
        Err(e) => Some(e.to_string()),
    }
}

/// The tenants a (copied) control database lists, by id: those whose data is in a file
/// of the data dir (a tenant placed on a PostgreSQL cluster has none; a control database
/// from before placement has no `location` column, and every tenant has a file).
pub fn sqlite_tenant_ids(control: &Path) -> StoreResult<Vec<i64>> {
    let conn = open_copy(control)?;
    let placed: i64 = conn.query_row(
        "SELECT COUNT(*) FROM pragma_table_info('tenants') WHERE name = 'location'",
        [],
        |r| r.get(0),
    )?;
    let sql = if placed > 0 {
        "SELECT id FROM tenants WHERE location = 'default' ORDER BY id"
    } else {
        "SELECT id FROM tenants ORDER BY id"
    };
    let mut stmt = conn.prepare(sql)?;
    let ids = stmt
        .query_map([], |r| r.get(0))?
        .collect::<Result<Vec<i64>, _>>()?;
    Ok(ids)
}

/// The newest schema version this build knows, per kind of database: a backup made at a
/// later one came from a newer Plinth and is not restored by this one.
#[derive(Clone, Copy, Debug)]
pub struct KnownSchemas {
    pub sqlite_control: i64,
    pub sqlite_tenant: i64,
    pub postgres: i64,
}

pub fn known_schemas() -> KnownSchemas {
    let newest = |m: &sqlx::migrate::Migrator| m.iter().map(|m| m.version).max().unwrap_or(0);
    KnownSchemas {
        sqlite_control: newest(&SQLITE_CONTROL_MIGRATIONS),
        sqlite_tenant: newest(&SQLITE_TENANT_MIGRATIONS),
        postgres: newest(&POSTGRES_MIGRATIONS),
    }
}

/// The newest migration applied to a PostgreSQL database (None: no migration table).
pub async fn pg_schema_version(url: &str) -> StoreResult<Option<i64>> {
    let mut conn = PgConnection::connect(url).await?;
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
        .fetch_one(&mut conn)
        .await?;
    let version = if exists {
        sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
            .fetch_one(&mut conn)
            .await?
    } else {
        None
    };
    conn.close().await.ok();
    Ok(version)
}

/// How many tables, views and sequences a PostgreSQL database holds outside the system
/// schemas: a restore goes only into a database where this is 0.
pub async fn pg_user_relations(url: &str) -> StoreResult<i64> {
    let mut conn = PgConnection::connect(url).await?;
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') \
         AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
         AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'",
    )
    .fetch_one(&mut conn)
    .await?;
    conn.close().await.ok();
    Ok(n)
}

/// The advisory lock key of scheduled backups ("plnb"); below 2^31, so `pg_locks` shows
/// it as `classid` 0, `objid` the key.
const BACKUP_LOCK: i64 = 0x706c_6e62;

/// Leadership of the scheduled backups among nodes on one PostgreSQL database: a
/// session-level advisory lock held on a connection of this node's own for as long as
/// the node runs. Not a pooled connection (the lock would go with it to other queries)
/// and not a transaction lock held during one backup (another node's timer, a moment
/// later, would take the next lock and a second backup). When the leader dies its
/// connection closes, the lock is free, and the next node to ask takes it.
pub struct BackupLeadership {
    url: String,
    conn: Option<PgConnection>,
}

impl BackupLeadership {
    pub fn new(url: String) -> BackupLeadership {
        BackupLeadership { url, conn: None }
    }

    /// Whether this node leads now, taking the lock when it is free.
    pub async fn lead(&mut self) -> StoreResult<bool> {
        if let Some(conn) = self.conn.as_mut() {
            let held: Result<bool, sqlx::Error> = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' \
                 AND pid = pg_backend_pid() AND granted AND classid = 0 \
                 AND objid::bigint = $1 AND objsubid = 1)",
            )
            .bind(BACKUP_LOCK)
            .fetch_one(&mut *conn)
            .await;
            match held {
                Ok(true) => return Ok(true),
                Ok(false) => {}
                // The connection broke: whatever it held is gone with it.
                Err(_) => self.conn = None,
            }
        }
        let mut conn = match self.conn.take() {
            Some(c) => c,
            None => PgConnection::connect(&self.url).await?,
        };
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(BACKUP_LOCK)
            .fetch_one(&mut conn)
            .await?;
        self.conn = Some(conn);
        Ok(got)
    }
}
