//! A tenant's rule set: read and installed (validated first).

use super::*;

impl AdminService {
    /// Validates a TOML rule set whole and, if valid, makes it the tenant's active set.
    pub async fn install_rules(
        &self,
        actor: &Actor,
        slug: &str,
        source: &str,
    ) -> Result<Installed> {
        let scope = self.scope(actor, slug).await?;
        let installed =
            self.rules
                .install(&scope, source, &actor.0)
                .await
                .map_err(|e| match e {
                    InstallError::Invalid(errors) => AdminError::InvalidRules(errors),
                    InstallError::Store(e) => AdminError::Store(e),
                })?;
        self.audit(
            actor,
            "rules.install",
            Some(slug),
            Some(&installed.version.to_string()),
            serde_json::json!({"collections": installed.collections, "warnings": installed.warnings}),
        )
        .await?;
        Ok(installed)
    }

    /// The active rule set: (version, source); version 0 and "" when none was installed.
    pub async fn active_rules(&self, actor: &Actor, slug: &str) -> Result<(i64, String)> {
        let scope = self.scope(actor, slug).await?;
        Ok(self
            .store
            .active_ruleset(&scope)
            .await?
            .unwrap_or((0, String::new())))
    }
}
