//! A tenant's rule set: read and installed (validated first).

use super::*;

/// The newest versions `GET …/rules/versions` lists; older ones stay stored.
pub const RULE_VERSIONS_LISTED: i64 = 200;

impl AdminService {
    /// Validates a TOML rule set whole and, if valid, makes it the tenant's active set.
    pub async fn install_rules(
        &self,
        actor: &Actor,
        slug: &str,
        source: &str,
    ) -> Result<Installed> {
        let scope = self.scope_to_change(actor, slug).await?;
        let installed = self.rules.install(&scope, source, &actor.0).await?;
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

    /// The tenant's rule set versions, newest (the active one) first:
    /// (version, created_at ms, created_by), at most [`RULE_VERSIONS_LISTED`].
    pub async fn rules_versions(
        &self,
        actor: &Actor,
        slug: &str,
    ) -> Result<Vec<(i64, i64, String)>> {
        let scope = self.scope(actor, slug).await?;
        Ok(self
            .store
            .ruleset_versions(&scope, RULE_VERSIONS_LISTED)
            .await?)
    }

    /// Rolls back (or forward) to a stored version: its source is installed again as a new
    /// version, so the active set stays the newest one and every node picks it up as it
    /// picks up any install; history is never rewritten.
    pub async fn activate_rules(
        &self,
        actor: &Actor,
        slug: &str,
        version: i64,
    ) -> Result<Installed> {
        let scope = self.scope_to_change(actor, slug).await?;
        let source = self
            .store
            .ruleset_source(&scope, version)
            .await?
            .ok_or(AdminError::NotFound("rule set version"))?;
        let installed = self.rules.install(&scope, &source, &actor.0).await?;
        self.audit(
            actor,
            "rules.activate",
            Some(slug),
            Some(&installed.version.to_string()),
            serde_json::json!({"from_version": version, "collections": installed.collections}),
        )
        .await?;
        Ok(installed)
    }

    /// Runs rule test cases (`[[case]]` tables, as `plinth rules test` reads them) against
    /// a rule set given as TOML, installing nothing. Ok(Err(errors)): the rule set does
    /// not compile, so no case ran.
    pub async fn test_rules(
        &self,
        actor: &Actor,
        slug: &str,
        source: &str,
        cases: &str,
    ) -> Result<
        std::result::Result<crate::rules::testing::TestReport, Vec<crate::rules::RuleSetError>>,
    > {
        self.scope(actor, slug).await?;
        let rules = match crate::rules::RuleSet::parse(source) {
            Ok(rules) => rules,
            Err(errors) => return Ok(Err(errors)),
        };
        crate::rules::testing::run_source(&rules, cases)
            .map(Ok)
            .map_err(AdminError::InvalidTestCases)
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
