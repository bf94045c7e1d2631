//! Moving a tenant between storage locations (`plinth tenant move`).
//!
//! The order is what makes it safe: mark the tenant moving (control table, announced,
//! and this node's write gate) so writes are refused; wait for the writes this node
//! admitted to end; copy every table to the target; verify counts per table and a
//! checksum of the documents on both sides; switch the location in the control table
//! and announce it; clear the mark; delete the source copy. Until the switch the source
//! is authoritative, and any failure removes the target copy and clears the mark.

mod rows;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

pub(crate) use rows::{clear_tenant, placeholder_row};

use super::placement::DEFAULT_LOCATION;
use super::{Backend, Db, Store, StoreError, StoreResult, TenantRow, now_ms, on_db};

/// How long a move waits for the writes in flight to end before it gives up.
const DRAIN_LIMIT: Duration = Duration::from_secs(30);
/// On PostgreSQL other nodes may hold writes admitted before they heard of the mark;
/// they end within this (their tenant cache lives about a second).
const OTHER_NODES_GRACE: Duration = Duration::from_millis(1500);

/// One step of a move, as it happens (for the CLI's progress lines).
#[derive(Debug)]
pub enum MoveStep<'a> {
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
}

type Progress<'p> = &'p mut (dyn for<'a> FnMut(MoveStep<'a>) + Send);

impl Store {
    /// Moves the tenant's data to `to` (a location the caller checked exists). A tenant
    /// already there whose mark an interrupted move left set is only released.
    pub async fn move_tenant(
        &self,
        tenant: &TenantRow,
        to: &str,
        progress: Progress<'_>,
    ) -> StoreResult<MoveReport> {
        let started = Instant::now();
        if tenant.location == to {
            if !tenant.moving {
                return Err(StoreError::Conflict(
                    "the tenant is already at this location",
                ));
            }
            self.release(tenant).await?;
            progress(MoveStep::Released);
            return Ok(MoveReport {
                from: to.to_string(),
                to: to.to_string(),
                counts: BTreeMap::new(),
                documents_sha256: String::new(),
                source_deleted: false,
                millis: started.elapsed().as_millis() as u64,
            });
        }
        self.mark_moving(tenant).await?;
        progress(MoveStep::Frozen);
        let copied = self.copy_and_verify(tenant, to, &mut *progress).await;
        let (counts, checksum) = match copied {
            Ok(c) => c,
            Err((e, touched)) => {
                self.abandon(tenant, to, touched).await;
                return Err(e);
            }
        };
        if let Err(e) = self.switch_location(tenant, to).await {
            // The switch may have committed with its answer lost: the copy stays (unused
            // if not; the next move to `to` clears it first).
            self.abandon(tenant, to, false).await;
            return Err(e);
        }
        progress(MoveStep::Switched);
        // Past the switch the target is authoritative: what fails now is only reported.
        if let Err(e) = self.release(tenant).await {
            tracing::error!(error = %e, tenant = %tenant.slug, "moved, but the mark stays set");
            return Err(e);
        }
        progress(MoveStep::Released);
        let source_deleted = match self.drop_source(tenant).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, tenant = %tenant.slug, from = %tenant.location,
                    "moved; the source copy could not be deleted");
                false
            }
        };
        Ok(MoveReport {
            from: tenant.location.clone(),
            to: to.to_string(),
            counts,
            documents_sha256: checksum,
            source_deleted,
            millis: started.elapsed().as_millis() as u64,
        })
    }

    /// Sets the mark (once: a second move of the same tenant is refused), freezes this
    /// node's writes and tells the other nodes.
    async fn mark_moving(&self, tenant: &TenantRow) -> StoreResult<()> {
        let db = self.control_db();
        // Only from the location read: a move that ended since must not be undone.
        let marked = on_db!(db, |p| sqlx::query(
            "UPDATE tenants SET moving = TRUE, updated_at = $2 \
             WHERE id = $1 AND moving = FALSE AND location = $3"
        )
        .bind(tenant.id)
        .bind(now_ms())
        .bind(&tenant.location)
        .execute(&p)
        .await?
        .rows_affected());
        if marked == 0 {
            return Err(StoreError::Conflict(
                "a move of this tenant is running, or one was interrupted: move it to its \
                 current location to clear the mark",
            ));
        }
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

    async fn switch_location(&self, tenant: &TenantRow, to: &str) -> StoreResult<()> {
        let db = self.control_db();
        on_db!(db, |p| sqlx::query(
            "UPDATE tenants SET location = $2, updated_at = $3 WHERE id = $1"
        )
        .bind(tenant.id)
        .bind(to)
        .bind(now_ms())
        .execute(&p)
        .await?
        .rows_affected());
        self.remember_placement(tenant.id, to);
        self.announce_tenant_change(&tenant.slug).await;
        Ok(())
    }

    /// Clears the mark, opens this node's gate and tells the other nodes.
    async fn release(&self, tenant: &TenantRow) -> StoreResult<()> {
        let db = self.control_db();
        let cleared = on_db!(db, |p| sqlx::query(
            "UPDATE tenants SET moving = FALSE, updated_at = $2 WHERE id = $1"
        )
        .bind(tenant.id)
        .bind(now_ms())
        .execute(&p)
        .await
        .map(|_| ()));
        self.thaw(tenant.id);
        self.announce_tenant_change(&tenant.slug).await;
        cleared?;
        Ok(())
    }

    /// A failure before the switch: the source stays, the target copy goes (when one was
    /// begun), and the tenant takes writes again.
    async fn abandon(&self, tenant: &TenantRow, to: &str, touched: bool) {
        if touched {
            let removed = match self.location_db(to, tenant.id).await {
                Ok(db) => clear_tenant(&db, tenant.id, to != DEFAULT_LOCATION).await,
                Err(e) => Err(e),
            };
            if let Err(e) = removed {
                tracing::warn!(error = %e, tenant = %tenant.slug, to, "move failed; its partial copy stays");
            }
        }
        // The default SQLite location's file for this tenant may have been created for
        // the copy; it is not the source (the tenant lives elsewhere).
        if to == DEFAULT_LOCATION
            && let Backend::Sqlite(_) = &*self.inner
            && let Err(e) = self.drop_tenant_storage(tenant.id, to).await
        {
            tracing::warn!(error = %e, tenant = %tenant.slug, "move failed; its empty file stays");
        }
        if let Err(e) = self.release(tenant).await {
            tracing::error!(error = %e, tenant = %tenant.slug, "move failed and its mark stays set");
        }
    }

    /// Deletes the tenant's rows at its old location.
    async fn drop_source(&self, tenant: &TenantRow) -> StoreResult<()> {
        let from = tenant.location.as_str();
        match (&*self.inner, from == DEFAULT_LOCATION) {
            (Backend::Postgres(p), true) => {
                clear_tenant(&Db::Postgres(p.clone()), tenant.id, false).await
            }
            _ => self.drop_tenant_storage(tenant.id, from).await,
        }
    }
}
