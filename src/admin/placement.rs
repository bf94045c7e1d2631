//! Tenant placement: the storage locations tenants may live on, and moving a tenant
//! from one to another (`plinth tenant move`, `POST /admin/v1/tenants/{tenant}/move`).

use super::*;
use crate::store::{MoveReport, MoveStep};

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
            }),
        )
        .await?;
        Ok(report)
    }
}
