//! Moving a tenant between storage locations (`plinth tenant move`).
//!
//! The order is what makes it safe: mark the tenant moving and record the move (control
//! tables, announced, and this node's write gate) so writes are refused; wait for the
//! writes this node admitted to end; copy every table to the target; verify counts per
//! table and a checksum of the documents on both sides; switch the location in the
//! control table (with the recorded phase, fenced by the mover's lease) and announce it;
//! clear the mark; delete the source copy. Until the switch the source is authoritative,
//! and any failure removes the target copy and clears the mark. A mover that dies leaves
//! its record: the next move of the tenant finishes or rolls it back (`recover`).

mod lease;
mod recover;
mod rows;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

pub use lease::{MovePhase, MoveRecord};
pub use recover::Recovery;
pub(crate) use rows::{clear_tenant, placeholder_row};

use lease::Heartbeat;

use super::placement::DEFAULT_LOCATION;
use super::{Backend, Db, Store, StoreError, StoreResult, TenantRow};

/// How long a move waits for the writes in flight to end before it gives up.
const DRAIN_LIMIT: Duration = Duration::from_secs(30);
/// On PostgreSQL other nodes may hold writes admitted before they heard of the mark;
/// they end within this (their tenant cache lives about a second).
const OTHER_NODES_GRACE: Duration = Duration::from_millis(1500);

/// One step of a move, as it happens (for the CLI's progress lines).
#[derive(Debug)]
pub enum MoveStep<'a> {
    /// An interrupted move of the tenant was finished or rolled back first.
    Recovered(Recovery),
    /// Writes are refused from now on.
    Frozen,
    /// The writes in flight ended.
    Drained,
    Copied {
        table: &'a str,
        rows: u64,
    },
    Verified {
        documents: u64,
        checksum: &'a str,
    },
    /// The control table names the new location.
    Switched,
    /// Writes are accepted again, at the new location.
    Released,
}

/// What a move did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MoveReport {
    pub from: String,
    pub to: String,
    /// Rows per table, the same on both sides.
    pub counts: BTreeMap<String, u64>,
    /// SHA-256 of the documents (key order, canonical JSON), the same on both sides.
    pub documents_sha256: String,
    /// Whether the source copy was deleted (else it is left where it was, unused).
    pub source_deleted: bool,
    pub millis: u64,
    /// What was done first about an interrupted move (none: there was none).
    pub recovered: Option<Recovery>,
}

type Progress<'p> = &'p mut (dyn for<'a> FnMut(MoveStep<'a>) + Send);

impl Store {
    /// Moves the tenant's data to `to` (a location the caller checked exists). A tenant
    /// whose mark an interrupted move left set is recovered first (finished or rolled
    /// back), then moved on to `to` unless it is already there; one whose mover is alive
    /// (its heartbeat within its lease) is refused with `MoveRunning`.
    pub async fn move_tenant(
        &self,
        tenant: &TenantRow,
        to: &str,
        progress: Progress<'_>,
    ) -> StoreResult<MoveReport> {
        let started = Instant::now();
        let mut recovered = None;
        let mut tenant = tenant.clone();
        if tenant.moving {
            let r = self.recover(&tenant).await?;
            progress(MoveStep::Recovered(r));
            recovered = Some(r);
            tenant = self
                .get_tenant_by_slug(&tenant.slug)
                .await?
                .ok_or(StoreError::NotFound)?;
        }
        let done =
            |from: &str, counts: BTreeMap<String, u64>, sum: String, deleted: bool| MoveReport {
                from: from.to_string(),
                to: to.to_string(),
                counts,
                documents_sha256: sum,
                source_deleted: deleted,
                millis: started.elapsed().as_millis() as u64,
                recovered,
            };
        if tenant.location == to {
            if recovered.is_none() {
                return Err(StoreError::Conflict(
                    "the tenant is already at this location",
                ));
            }
            return Ok(done(to, BTreeMap::new(), String::new(), false));
        }
        let owner = lease::new_owner();
        let lease = self.move_lease_ms();
        self.mark_moving(&tenant, to, &owner, lease).await?;
        let beat = Heartbeat::start(self, tenant.id, &owner, lease);
        progress(MoveStep::Frozen);
        let copied = self.copy_and_verify(&tenant, to, &mut *progress).await;
        let (counts, checksum) = match copied {
            Ok(c) => c,
            Err((e, touched)) => {
                self.abandon(&tenant, to, touched, &owner).await;
                return Err(e);
            }
        };
        crash_point("after-copy");
        if beat.lost() {
            tracing::warn!(tenant = %tenant.slug, "the move was taken over; not switching");
        }
        if let Err(e) = self.switch_location(&tenant, to, &owner).await {
            // Fenced: taken over, nothing changed. Or the switch committed with its
            // answer lost: either way the copy stays (unused if not switched; the next
            // move to `to` clears it first) and the mark goes, if still ours.
            self.forget_placements();
            if let Err(r) = self.release(&tenant, Some(&owner)).await {
                tracing::error!(error = %r, tenant = %tenant.slug, "move failed and its mark stays set");
            }
            return Err(e);
        }
        progress(MoveStep::Switched);
        crash_point("after-switch");
        // Past the switch the target is authoritative: what fails now is only reported.
        if let Err(e) = self.release(&tenant, Some(&owner)).await {
            tracing::error!(error = %e, tenant = %tenant.slug, "moved, but the mark stays set");
            return Err(e);
        }
        drop(beat);
        progress(MoveStep::Released);
        let source_deleted = match self.drop_copy_at(tenant.id, &tenant.location).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, tenant = %tenant.slug, from = %tenant.location,
                    "moved; the source copy could not be deleted");
                false
            }
        };
        Ok(done(&tenant.location, counts, checksum, source_deleted))
    }

    /// Sets the mark with the move's record (once: a second move of the same tenant is
    /// refused), freezes this node's writes and tells the other nodes.
    async fn mark_moving(
        &self,
        tenant: &TenantRow,
        to: &str,
        owner: &str,
        lease_ms: i64,
    ) -> StoreResult<()> {
        self.record_move(tenant, to, owner, lease_ms).await?;
        self.freeze(tenant.id);
        self.announce_tenant_change(&tenant.slug).await;
        Ok(())
    }

    /// Waits for the writes in flight, then copies and verifies; (counts, checksum). An
    /// error says whether the target was written to (only then is it cleared: a target
    /// found to be the source itself must never be).
    async fn copy_and_verify(
        &self,
        tenant: &TenantRow,
        to: &str,
        progress: Progress<'_>,
    ) -> Result<(BTreeMap<String, u64>, String), (StoreError, bool)> {
        let untouched = |e: StoreError| (e, false);
        self.drain_writes(tenant.id).await.map_err(untouched)?;
        progress(MoveStep::Drained);
        let source = self
            .location_db(&tenant.location, tenant.id)
            .await
            .map_err(untouched)?;
        let target = self.location_db(to, tenant.id).await.map_err(untouched)?;
        let a = rows::pg_identity(&source).await.map_err(untouched)?;
        let b = rows::pg_identity(&target).await.map_err(untouched)?;
        if a.is_some() && a == b {
            return Err(untouched(StoreError::Conflict(
                "the source and the target are the same PostgreSQL database",
            )));
        }
        self.fill_target(tenant, to, &source, &target, progress)
            .await
            .map_err(|e| (e, true))
    }

    /// Copies every table to the (cleared) target and checks the copy.
    async fn fill_target(
        &self,
        tenant: &TenantRow,
        to: &str,
        source: &Db,
        target: &Db,
        progress: Progress<'_>,
    ) -> StoreResult<(BTreeMap<String, u64>, String)> {
        // What an earlier, failed move may have left there.
        clear_tenant(target, tenant.id, false).await?;
        if to != DEFAULT_LOCATION {
            placeholder_row(target, tenant.id, &tenant.slug).await?;
        }
        for t in rows::TABLES {
            let n = rows::copy_table(source, target, tenant.id, t).await?;
            progress(MoveStep::Copied {
                table: t.name,
                rows: n,
            });
        }
        let mut counts = BTreeMap::new();
        for t in rows::TABLES {
            let (a, b) = (
                rows::count(source, tenant.id, t).await?,
                rows::count(target, tenant.id, t).await?,
            );
            if a != b {
                tracing::error!(
                    table = t.name,
                    source = a,
                    target = b,
                    "move: counts differ"
                );
                return Err(StoreError::Internal(
                    "the copy's row counts differ from the source's",
                ));
            }
            counts.insert(t.name.to_string(), a);
        }
        let (n, sum) = rows::documents_checksum(source, tenant.id).await?;
        let (m, target_sum) = rows::documents_checksum(target, tenant.id).await?;
        if (n, &sum) != (m, &target_sum) {
            return Err(StoreError::Internal(
                "the copy's documents differ from the source's",
            ));
        }
        progress(MoveStep::Verified {
            documents: n,
            checksum: &sum,
        });
        Ok((counts, sum))
    }

    /// Waits until no write this node admitted is in flight and the tenant's commit
    /// queue is idle; on PostgreSQL, also for other nodes' admitted writes.
    async fn drain_writes(&self, tenant: i64) -> StoreResult<()> {
        let started = Instant::now();
        let grace = match &*self.inner {
            Backend::Postgres(_) => OTHER_NODES_GRACE,
            Backend::Sqlite(_) => Duration::ZERO,
        };
        loop {
            let drained = self.writes_in_flight(tenant) == 0 && self.commits_idle(tenant);
            if drained && started.elapsed() >= grace {
                return Ok(());
            }
            if started.elapsed() > DRAIN_LIMIT {
                return Err(StoreError::Unavailable(
                    "the tenant's writes in flight did not end in time",
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn switch_location(&self, tenant: &TenantRow, to: &str, owner: &str) -> StoreResult<()> {
        self.switch_fenced(tenant.id, to, owner).await?;
        self.remember_placement(tenant.id, to);
        self.announce_tenant_change(&tenant.slug).await;
        Ok(())
    }

    /// Clears the mark (with an owner: only while it holds the move, else
    /// `MoveRunning`), opens this node's gate and tells the other nodes.
    async fn release(&self, tenant: &TenantRow, owner: Option<&str>) -> StoreResult<()> {
        let cleared = self.clear_mark(tenant.id, owner).await;
        // The mark this node may have cached goes before its writes are let in again.
        self.forget_placement(tenant.id);
        self.thaw(tenant.id);
        self.announce_tenant_change(&tenant.slug).await;
        if !cleared? {
            return Err(StoreError::MoveRunning {
                heartbeat_age_ms: 0,
            });
        }
        Ok(())
    }

    /// A failure before the switch: the source stays, the target copy goes (when one was
    /// begun), and the tenant takes writes again.
    async fn abandon(&self, tenant: &TenantRow, to: &str, touched: bool, owner: &str) {
        // The default SQLite location's file for this tenant may have been created for
        // the copy; it is not the source (the tenant lives elsewhere).
        let created_file = to == DEFAULT_LOCATION && matches!(&*self.inner, Backend::Sqlite(_));
        if (touched || created_file)
            && let Err(e) = self.drop_copy_at(tenant.id, to).await
        {
            tracing::warn!(error = %e, tenant = %tenant.slug, to, "move failed; its partial copy stays");
        }
        if let Err(e) = self.release(tenant, Some(owner)).await {
            tracing::error!(error = %e, tenant = %tenant.slug, "move failed and its mark stays set");
        }
    }

    /// Deletes the tenant's copy at `location` (not where it lives): rows (and a
    /// cluster's placeholder), or the SQLite file.
    async fn drop_copy_at(&self, tenant: i64, location: &str) -> StoreResult<()> {
        match (&*self.inner, location == DEFAULT_LOCATION) {
            (Backend::Postgres(p), true) => {
                clear_tenant(&Db::Postgres(p.clone()), tenant, false).await
            }
            _ => self.drop_tenant_storage(tenant, location).await,
        }
    }
}

/// A test hook: `PLINTH_TEST_MOVE_CRASH=after-copy` (or `after-switch`) makes the process
/// exit there, as a crash would, to test the recovery of an interrupted move. Never set
/// it on a server: it ends the whole process.
fn crash_point(point: &str) {
    if std::env::var("PLINTH_TEST_MOVE_CRASH").is_ok_and(|v| v == point) {
        eprintln!("PLINTH_TEST_MOVE_CRASH={point}: exiting in the middle of the move");
        std::process::exit(86);
    }
}
