//! Tenant placement: the storage locations tenants may live on, and moving a tenant
//! from one to another (`plinth tenant move`, `POST /admin/v1/tenants/{tenant}/move`).

use super::*;
use crate::store::{MoveRecord, MoveReport, MoveStep};

impl AdminService {
    /// The locations tenants may be placed on: `default`, then the configured clusters.
    pub fn locations(&self) -> Vec<String> {
        self.store.locations()
    }

    /// `location` when it is configured, else `unknown_location` naming those that are.
    pub(super) fn checked_location<'a>(&self, location: &'a str) -> Result<&'a str> {
        let location = location.trim();
        if self.store.has_location(location) {
            return Ok(location);
        }
        Err(AdminError::UnknownLocation(format!(
            "no storage location is named {location:?}; configured: {}",
            self.store.locations().join(", ")
        )))
    }

    /// Moves the tenant's data to `to`; `progress` hears each step. Writes to the tenant
    /// are refused (503 `tenant_moving`) while it runs; on a failure before the switch
    /// the tenant stays where it was, writable, and nothing is left at `to`.
    pub async fn move_tenant(
        &self,
        actor: &Actor,
        slug: &str,
        to: &str,
        progress: &mut (dyn for<'a> FnMut(MoveStep<'a>) + Send),
    ) -> Result<MoveReport> {
        let to = self.checked_location(to)?;
        // On SQLite, no local command changing a tenant runs meanwhile: it checked the
        // mark before writing, and a mark set in between would not stop its write.
        let _changes = self.store.lock_for_move().await?;
        let row = self
            .store
            .get_tenant_by_slug(slug)
            .await?
            .ok_or(AdminError::TenantNotFound)?;
        let moved = self.store.move_tenant(&row, to, progress).await;
        self.registry.invalidate(slug);
        let report = moved?;
        self.audit(
            actor,
            "tenant.move",
            Some(slug),
            None,
            serde_json::json!({
                "from": report.from,
                "to": report.to,
                "counts": report.counts,
                "documents_sha256": report.documents_sha256,
                "source_deleted": report.source_deleted,
                "recovered": report.recovered,
            }),
        )
        .await?;
        Ok(report)
    }

    /// For a move run by a separate process (the local CLI): on SQLite, the data
    /// directory locked against servers, held until dropped (`Conflict` while one runs).
    pub fn lock_for_local_move(&self) -> Result<Option<crate::store::DirLock>> {
        Ok(self.store.lock_data_dir(true)?)
    }

    /// For a command run by a separate process (the local CLI) that changes the data of
    /// the tenants `slugs`: the change lock (`store::change_lock`; on SQLite the data
    /// directory's, on PostgreSQL the tenants'), held until dropped, taken before the
    /// command checks their marks (`Conflict` while a move holds it). Such commands and
    /// servers run side by side.
    pub async fn lock_for_local_change(
        &self,
        slugs: &[&str],
    ) -> Result<Option<crate::store::ChangeLock>> {
        Ok(self.store.lock_tenants_for_change(slugs).await?)
    }

    /// The tenant, and the move holding its `moving` mark (none when not moving, or
    /// when a mark has no record).
    pub async fn get_tenant_with_move(&self, slug: &str) -> Result<(Tenant, Option<MoveRecord>)> {
        let tenant = self.get_tenant(slug).await?;
        let record = match tenant.moving {
            true => self.store.move_record(tenant.id).await?,
            false => None,
        };
        Ok((tenant, record))
    }

    /// Tenants marked moving whose mover is taken for dead (silent past its lease), or
    /// whose mark has no record to tell.
    pub async fn stale_moves(&self) -> Result<Vec<(String, MoveRecord)>> {
        Ok(self
            .store
            .moving_tenants()
            .await?
            .into_iter()
            .filter_map(|(slug, rec)| rec.filter(MoveRecord::stale).map(|r| (slug, r)))
            .collect())
    }
}
