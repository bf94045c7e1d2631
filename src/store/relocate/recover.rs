//! Recovering a move whose mover died: taken over through its record, then rolled back
//! (it had not switched: the source is authoritative, the partial copy goes) or finished
//! (it had: the target is authoritative, the old copy goes). Either way the mark is
//! cleared and no acknowledged write is lost, since none was accepted while marked.

use super::lease::{self, Heartbeat, MovePhase};
use super::rows;
use crate::store::{Store, StoreError, StoreResult, TenantRow};

/// What was done about an interrupted move.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Recovery {
    /// It had not switched: the tenant stays at its source, the partial copy was removed.
    RolledBack,
    /// It had switched: the tenant stays at its target, the old copy was removed.
    Finished,
    /// A mark with no record (from a version that kept none): only cleared.
    Cleared,
}

impl Store {
    /// Finishes or rolls back the interrupted move of a tenant marked moving; refuses
    /// (`MoveRunning`) while its mover's heartbeat is within its lease.
    pub(super) async fn recover(&self, tenant: &TenantRow) -> StoreResult<Recovery> {
        let Some(rec) = self.move_record(tenant.id).await? else {
            self.release(tenant, None).await?;
            tracing::warn!(tenant = %tenant.slug, "cleared a move mark that had no record");
            return Ok(Recovery::Cleared);
        };
        if !rec.stale() {
            return Err(StoreError::MoveRunning {
                heartbeat_age_ms: rec.silent_ms(),
            });
        }
        let owner = lease::new_owner();
        let lease = self.move_lease_ms();
        self.take_over(tenant.id, &rec, &owner, lease).await?;
        let _beat = Heartbeat::start(self, tenant.id, &owner, lease);
        tracing::warn!(tenant = %tenant.slug, from = %rec.from, to = %rec.to,
            phase = ?rec.phase, silent_ms = rec.silent_ms(), "taking over an interrupted move");
        self.freeze(tenant.id);
        // The control row says where the tenant lives; the phase was switched with it.
        let switched = rec.phase == MovePhase::Switched || tenant.location == rec.to;
        let (outcome, stale_copy) = match switched {
            true => (Recovery::Finished, rec.from.as_str()),
            false => (Recovery::RolledBack, rec.to.as_str()),
        };
        if stale_copy != tenant.location {
            let dropped = match self.same_database(tenant, stale_copy).await {
                Ok(false) => self.drop_copy_at(tenant.id, stale_copy).await,
                Ok(true) => Ok(()),
                Err(e) => Err(e),
            };
            if let Err(e) = dropped {
                tracing::warn!(error = %e, tenant = %tenant.slug, at = stale_copy,
                    "recovered a move; its unused copy stays (the next move there clears it)");
            }
        }
        // The dead mover may have switched without telling anyone (no announcement on
        // SQLite, or it died before sending one): read the placement again.
        self.forget_placements();
        self.release(tenant, Some(&owner)).await?;
        Ok(outcome)
    }

    /// Whether `location` is, for this tenant, the very database it lives in (a cluster
    /// configured twice under two names): its copy there must never be deleted.
    async fn same_database(&self, tenant: &TenantRow, location: &str) -> StoreResult<bool> {
        let here = self.location_db(&tenant.location, tenant.id).await?;
        let there = self.location_db(location, tenant.id).await?;
        let a = rows::pg_identity(&here).await?;
        Ok(a.is_some() && a == rows::pg_identity(&there).await?)
    }
}
