//! A tenant's service keys: made (shown once), listed, revoked.

use super::*;

impl AdminService {
    /// Creates a service key; the returned secret is shown this once and never again.
    pub async fn create_key(
        &self,
        actor: &Actor,
        slug: &str,
        name: &str,
    ) -> Result<(ServiceKeyRow, String)> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(field("name", "must be 1-100 characters"));
        }
        no_control("name", name)?;
        let scope = self.scope_to_change(actor, slug).await?;
        let generated = service_keys::generate();
        let id = uuid::Uuid::now_v7().to_string();
        let row = self
            .store
            .create_service_key(&scope, &id, name, &generated.prefix, &generated.hash)
            .await?;
        self.audit(
            actor,
            "key.create",
            Some(slug),
            Some(&row.id),
            serde_json::json!({"name": name, "prefix": row.prefix}),
        )
        .await?;
        Ok((row, generated.key))
    }

    pub async fn list_keys(&self, actor: &Actor, slug: &str) -> Result<Vec<ServiceKeyRow>> {
        let scope = self.scope(actor, slug).await?;
        Ok(self.store.list_service_keys(&scope).await?)
    }

    pub async fn revoke_key(&self, actor: &Actor, slug: &str, id: &str) -> Result<ServiceKeyRow> {
        let scope = self.scope_to_change(actor, slug).await?;
        let row = self
            .store
            .revoke_service_key(&scope, id)
            .await
            .map_err(|e| not_found_as(e, "service key"))?;
        self.auth_cache.forget_key(scope.tenant().id, &row.prefix);
        self.audit(
            actor,
            "key.revoke",
            Some(slug),
            Some(id),
            serde_json::json!({}),
        )
        .await?;
        Ok(row)
    }
}
