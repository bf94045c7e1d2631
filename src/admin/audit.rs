//! The audit log: who did what, filtered by tenant.

use super::*;

impl AdminService {
    /// The audit log; a tenant admin reads only the entries of their tenants (no
    /// platform-wide ones: admins, keys, other tenants).
    pub async fn list_audit(
        &self,
        p: &Principal,
        tenant: Option<&str>,
        cursor: Option<&str>,
        limit: Option<i64>,
    ) -> Result<Page<AuditEntry>> {
        no_nul("tenant", tenant)?;
        let limit = limit.unwrap_or(100);
        if !(1..=1000).contains(&limit) {
            return Err(field("limit", "must be between 1 and 1000"));
        }
        let before_id = match cursor {
            Some(c) => Some(
                decode_cursor(c)?
                    .parse::<i64>()
                    .map_err(|_| AdminError::InvalidCursor)?,
            ),
            None => None,
        };
        let visible: Option<Vec<String>> = if p.role == Role::TenantAdmin {
            Some(
                self.list_visible_tenants(p)
                    .await?
                    .into_iter()
                    .map(|t| t.slug)
                    .collect(),
            )
        } else {
            None
        };
        let mut items = self
            .store
            .list_audit(AuditQuery {
                tenant,
                visible: visible.as_deref(),
                before_id,
                limit: limit + 1,
            })
            .await?;
        let next_cursor = if items.len() as i64 > limit {
            items.truncate(limit as usize);
            items.last().map(|e| encode_cursor(&e.id.to_string()))
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }
}
