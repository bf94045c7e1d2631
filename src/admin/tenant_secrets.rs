//! A tenant's secrets: names and times only, set, replaced, deleted.

use super::*;

impl AdminService {
    /// Creates or replaces a secret. The value is never logged, audited or returned.
    pub async fn set_secret(
        &self,
        actor: &Actor,
        slug: &str,
        name: &str,
        value: &str,
    ) -> Result<SecretInfo> {
        let scope = self.scope_to_change(actor, slug).await?;
        let info = self.secrets.set(&scope, name, value).await?;
        self.audit(
            actor,
            "secret.set",
            Some(slug),
            Some(&info.name),
            serde_json::json!({}),
        )
        .await?;
        Ok(info)
    }

    /// Names and update times; never values.
    pub async fn list_secrets(&self, actor: &Actor, slug: &str) -> Result<Vec<SecretInfo>> {
        let scope = self.scope(actor, slug).await?;
        Ok(self.secrets.list(&scope).await?)
    }

    pub async fn delete_secret(&self, actor: &Actor, slug: &str, name: &str) -> Result<()> {
        let scope = self.scope_to_change(actor, slug).await?;
        self.secrets.delete(&scope, name).await?;
        self.audit(
            actor,
            "secret.delete",
            Some(slug),
            Some(name),
            serde_json::json!({}),
        )
        .await?;
        Ok(())
    }
}
