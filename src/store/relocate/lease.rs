//! The record of a running move in the control database (`tenant_moves`): its phase,
//! and the lease its mover renews by a heartbeat. The record is what lets a later move
//! finish or roll back one whose mover died, and tells a dead mover from a slow one: a
//! slow mover still beats (its heartbeat is a task of its own, independent of how long a
//! copy takes); a dead one does not. A lease is taken, renewed and judged by one clock,
//! the control database's ([`db_clock`]), never by a node's own, so a node whose clock
//! is skewed can neither steal a live move nor keep a dead one. A wrong judgement could
//! not lose data anyway: the switch and the release are fenced by the mover's `owner`
//! token, which a takeover replaces.

use std::time::Duration;

use crate::store::change_lock::{FENCE_TIMEOUT, MOVE_FENCE, fence_error, fence_timeout};
use crate::store::{Db, Store, StoreError, StoreResult, TenantRow, now_ms, on_db};

/// The control database's clock, in ms since the epoch, as an SQL expression: what a
/// move's lease is taken, renewed and judged by. On PostgreSQL it is the database
/// server's clock, the one every node and CLI of a cluster shares, whatever their own
/// clocks say (`clock_timestamp()`: the statement's time, not its transaction's start).
/// On SQLite the control database is a file on one machine, and that machine's clock
/// (SQLite's `'now'`) is the only one any process using it has: there is no other clock
/// to disagree with.
fn db_clock(db: &Db) -> &'static str {
    match db {
        Db::Postgres(_) => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
        Db::Sqlite(_) => "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)",
    }
}

/// How far a move got.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MovePhase {
    /// Copying: the source is authoritative; a recovery rolls back.
    Copying,
    /// The location was switched: the target is authoritative; a recovery finishes.
    Switched,
}

impl MovePhase {
    fn as_str(self) -> &'static str {
        match self {
            MovePhase::Copying => "copying",
            MovePhase::Switched => "switched",
        }
    }
}

/// A move as the control database records it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct MoveRecord {
    pub from: String,
    pub to: String,
    pub phase: MovePhase,
    #[serde(skip)]
    pub(super) owner: String,
    pub lease_ms: i64,
    pub started_at: i64,
    pub heartbeat_at: i64,
    /// Milliseconds from the last heartbeat to the read of this record, both by the
    /// control database's clock.
    #[serde(skip)]
    silent_ms: i64,
}

impl MoveRecord {
    /// Milliseconds since the mover's last heartbeat, when the record was read.
    pub fn silent_ms(&self) -> i64 {
        self.silent_ms
    }

    /// Whether the mover has been silent for longer than its lease: taken for dead.
    pub fn stale(&self) -> bool {
        self.silent_ms() > self.lease_ms
    }
}

/// The record's columns, then the control database's clock at the read.
type RecordRow = (String, String, String, String, i64, i64, i64, i64);

fn record(row: RecordRow) -> MoveRecord {
    let (from, to, phase, owner, lease_ms, started_at, heartbeat_at, read_at) = row;
    MoveRecord {
        from,
        to,
        phase: match phase.as_str() {
            "switched" => MovePhase::Switched,
            _ => MovePhase::Copying,
        },
        owner,
        lease_ms,
        started_at,
        heartbeat_at,
        silent_ms: (read_at - heartbeat_at).max(0),
    }
}

/// A fresh owner token for one run of a mover.
pub(super) fn new_owner() -> String {
    let mut buf = [0u8; 12];
    rand::fill(&mut buf[..]);
    hex::encode(buf)
}

const RECORD_COLUMNS: &str =
    "from_location, to_location, phase, owner, lease_ms, started_at, heartbeat_at";

impl Store {
    /// The recorded move of the tenant, if one holds its mark.
    pub async fn move_record(&self, tenant: i64) -> StoreResult<Option<MoveRecord>> {
        let db = self.control_db();
        let sql = format!(
            "SELECT {RECORD_COLUMNS}, {} FROM tenant_moves WHERE tenant_id = $1",
            db_clock(&db)
        );
        let row: Option<RecordRow> = on_db!(db, |p| sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(tenant)
            .fetch_optional(&p)
            .await?);
        Ok(row.map(record))
    }

    /// Every tenant marked moving, with its move's record (`None`: a mark with no record,
    /// left by a version that kept none).
    pub async fn moving_tenants(&self) -> StoreResult<Vec<(String, Option<MoveRecord>)>> {
        let db = self.control_db();
        let sql = format!(
            "SELECT t.slug, m.from_location, m.to_location, m.phase, m.owner, \
             m.lease_ms, m.started_at, m.heartbeat_at, {} \
             FROM tenants t LEFT JOIN tenant_moves m ON m.tenant_id = t.id \
             WHERE t.moving = TRUE ORDER BY t.slug",
            db_clock(&db)
        );
        type Row = (
            String,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<i64>,
            Option<i64>,
            Option<i64>,
            i64,
        );
        let rows: Vec<Row> = on_db!(db, |p| sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .fetch_all(&p)
            .await?);
        Ok(rows
            .into_iter()
            .map(
                |(slug, from, to, phase, owner, lease, started, beat, read_at)| {
                    let rec = match (from, to, phase, owner, lease, started, beat) {
                        (Some(f), Some(t), Some(ph), Some(o), Some(l), Some(s), Some(b)) => {
                            Some(record((f, t, ph, o, l, s, b, read_at)))
                        }
                        _ => None,
                    };
                    (slug, rec)
                },
            )
            .collect())
    }

    /// Sets the mark and records the move (phase `copying`) in one transaction, only
    /// from the location read and only when no move holds the mark.
    pub(super) async fn record_move(
        &self,
        tenant: &TenantRow,
        to: &str,
        owner: &str,
        lease_ms: i64,
    ) -> StoreResult<()> {
        let db = self.control_db();
        let begin = db.begin_write();
        let now = now_ms();
        let insert = format!(
            "INSERT INTO tenant_moves (tenant_id, from_location, to_location, phase, owner, \
             lease_ms, started_at, heartbeat_at) \
             VALUES ($1, $2, $3, 'copying', $4, $5, {clock}, {clock})",
            clock = db_clock(&db)
        );
        // On PostgreSQL, first the change lock (`store::change_lock`): the local commands
        // changing the tenant end before it is marked, and those after see the mark.
        let fence = matches!(db, Db::Postgres(_));
        let marked = on_db!(&db, |p| {
            let mut tx = p.begin_with(begin).await?;
            if fence {
                sqlx::query(FENCE_TIMEOUT)
                    .bind(fence_timeout())
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(MOVE_FENCE)
                    .bind(tenant.id)
                    .execute(&mut *tx)
                    .await
                    .map_err(fence_error)?;
            }
            let marked = sqlx::query(
                "UPDATE tenants SET moving = TRUE, updated_at = $2 \
                 WHERE id = $1 AND moving = FALSE AND location = $3",
            )
            .bind(tenant.id)
            .bind(now)
            .bind(&tenant.location)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if marked == 1 {
                // A record left without its mark (cleared by an older version) goes.
                sqlx::query("DELETE FROM tenant_moves WHERE tenant_id = $1")
                    .bind(tenant.id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(sqlx::AssertSqlSafe(insert))
                    .bind(tenant.id)
                    .bind(&tenant.location)
                    .bind(to)
                    .bind(owner)
                    .bind(lease_ms)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            marked
        });
        if marked == 0 {
            return Err(StoreError::Conflict(
                "the tenant moved or began moving since it was read; try again",
            ));
        }
        Ok(())
    }

    /// Renews the lease; false when the move is no longer this owner's (taken over, or
    /// its record gone).
    pub(super) async fn beat(&self, tenant: i64, owner: &str) -> StoreResult<bool> {
        let db = self.control_db();
        let sql = format!(
            "UPDATE tenant_moves SET heartbeat_at = {} WHERE tenant_id = $1 AND owner = $2",
            db_clock(&db)
        );
        let n = on_db!(db, |p| sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant)
            .bind(owner)
            .execute(&p)
            .await?
            .rows_affected());
        Ok(n == 1)
    }

    /// Takes a dead mover's move over: only if its owner and heartbeat are still those
    /// read (so two recoveries, or a mover that beat again, cannot both win), and its
    /// silence is still past its lease by the database's clock at this statement.
    pub(super) async fn take_over(
        &self,
        tenant: i64,
        seen: &MoveRecord,
        owner: &str,
        lease_ms: i64,
    ) -> StoreResult<()> {
        let db = self.control_db();
        let sql = format!(
            "UPDATE tenant_moves SET owner = $4, lease_ms = $5, heartbeat_at = {clock} \
             WHERE tenant_id = $1 AND owner = $2 AND heartbeat_at = $3 \
             AND {clock} - heartbeat_at > lease_ms",
            clock = db_clock(&db)
        );
        let n = on_db!(db, |p| sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant)
            .bind(&seen.owner)
            .bind(seen.heartbeat_at)
            .bind(owner)
            .bind(lease_ms)
            .execute(&p)
            .await?
            .rows_affected());
        if n == 0 {
            return Err(StoreError::MoveRunning {
                heartbeat_age_ms: 0,
            });
        }
        Ok(())
    }

    /// Switches the tenant's location, with the phase, in one transaction, only while
    /// this owner holds the move.
    pub(super) async fn switch_fenced(
        &self,
        tenant: i64,
        to: &str,
        owner: &str,
    ) -> StoreResult<()> {
        let db = self.control_db();
        let begin = db.begin_write();
        let now = now_ms();
        let beat = format!(
            "UPDATE tenant_moves SET phase = $3, heartbeat_at = {} \
             WHERE tenant_id = $1 AND owner = $2",
            db_clock(&db)
        );
        let held = on_db!(&db, |p| {
            let mut tx = p.begin_with(begin).await?;
            let held = sqlx::query(sqlx::AssertSqlSafe(beat))
                .bind(tenant)
                .bind(owner)
                .bind(MovePhase::Switched.as_str())
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if held == 1 {
                sqlx::query("UPDATE tenants SET location = $2, updated_at = $3 WHERE id = $1")
                    .bind(tenant)
                    .bind(to)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            held
        });
        if held == 0 {
            return Err(StoreError::Conflict(
                "this move was taken over by another (its heartbeat was late); nothing was \
                 switched",
            ));
        }
        Ok(())
    }

    /// Clears the mark and the record, in one transaction. With an owner, only while it
    /// holds the move (else nothing changes and the answer is false); without one (a
    /// mark with no record), unconditionally.
    pub(super) async fn clear_mark(&self, tenant: i64, owner: Option<&str>) -> StoreResult<bool> {
        let db = self.control_db();
        let begin = db.begin_write();
        let now = now_ms();
        Ok(on_db!(&db, |p| {
            let mut tx = p.begin_with(begin).await?;
            let held = match owner {
                Some(o) => {
                    sqlx::query("DELETE FROM tenant_moves WHERE tenant_id = $1 AND owner = $2")
                        .bind(tenant)
                        .bind(o)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected()
                        == 1
                }
                None => {
                    sqlx::query("DELETE FROM tenant_moves WHERE tenant_id = $1")
                        .bind(tenant)
                        .execute(&mut *tx)
                        .await?;
                    true
                }
            };
            if held {
                sqlx::query("UPDATE tenants SET moving = FALSE, updated_at = $2 WHERE id = $1")
                    .bind(tenant)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            held
        }))
    }
}

/// Renews a move's lease every third of it until dropped; `lost` turns true when the
/// move was taken over.
pub(super) struct Heartbeat {
    task: tokio::task::JoinHandle<()>,
    lost: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Heartbeat {
    pub(super) fn start(store: &Store, tenant: i64, owner: &str, lease_ms: i64) -> Heartbeat {
        let lost = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (store, owner, flag) = (store.clone(), owner.to_string(), lost.clone());
        let every = Duration::from_millis((lease_ms / 3).max(100) as u64);
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                match store.beat(tenant, &owner).await {
                    Ok(true) => {}
                    Ok(false) => {
                        flag.store(true, std::sync::atomic::Ordering::SeqCst);
                        return;
                    }
                    // A missed beat is retried; the lease allows two.
                    Err(e) => tracing::warn!(error = %e, tenant, "move heartbeat failed"),
                }
            }
        });
        Heartbeat { task, lost }
    }

    /// Whether another mover took this move over.
    pub(super) fn lost(&self) -> bool {
        self.lost.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.task.abort();
    }
}
