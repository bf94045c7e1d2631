//! Function deploys: uploaded, listed, activated; invocations, jobs and dead letters.

use super::*;
use crate::usage::{Granularity, HOUR_RETENTION, Span};

impl AdminService {
    /// Validates a bundle whole and activates it as the tenant's next deploy version.
    pub async fn deploy(
        &self,
        actor: &Actor,
        slug: &str,
        files: std::collections::BTreeMap<String, String>,
    ) -> Result<Deployed> {
        let scope = self.scope_to_change(actor, slug).await?;
        let deployed = self.functions.deploy(&scope, files, &actor.0).await?;
        self.audit(
            actor,
            "deploy.create",
            Some(slug),
            Some(&deployed.version.to_string()),
            serde_json::json!({"functions": deployed.functions, "http": deployed.http,
                               "hooks": deployed.hooks, "rules_version": deployed.rules_version}),
        )
        .await?;
        Ok(deployed)
    }

    /// Activates an earlier (or later) stored version: rollback and roll forward.
    pub async fn activate_deploy(
        &self,
        actor: &Actor,
        slug: &str,
        version: i64,
    ) -> Result<Deployed> {
        let scope = self.scope_to_change(actor, slug).await?;
        let deployed = self.functions.activate(&scope, version, &actor.0).await?;
        self.audit(
            actor,
            "deploy.activate",
            Some(slug),
            Some(&version.to_string()),
            serde_json::json!({"rules_version": deployed.rules_version}),
        )
        .await?;
        Ok(deployed)
    }

    pub async fn list_deploys(&self, actor: &Actor, slug: &str) -> Result<Vec<DeploySummary>> {
        let scope = self.scope(actor, slug).await?;
        Ok(self.functions.list_deploys(&scope).await?)
    }

    /// A page of the tenant's invocation log, newest first.
    pub async fn list_invocations(
        &self,
        actor: &Actor,
        slug: &str,
        function: Option<&str>,
        cursor: Option<&str>,
        limit: Option<i64>,
    ) -> Result<Page<InvocationRow>> {
        no_nul("function", function)?;
        let limit = limit.unwrap_or(50);
        if !(1..=500).contains(&limit) {
            return Err(field("limit", "must be between 1 and 500"));
        }
        let before = cursor.map(decode_cursor).transpose()?;
        let scope = self.scope(actor, slug).await?;
        let mut items = self
            .functions
            .invocations(&scope, function, before.as_deref(), limit + 1)
            .await?;
        let next_cursor = if items.len() as i64 > limit {
            items.truncate(limit as usize);
            items.last().map(|i| encode_cursor(&i.id))
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }

    /// A tenant's metered use per day (the last `days`, 1..=366, default 30) or per hour
    /// (the last `hours`, 1..=`HOUR_RETENTION`, default 48), and the total. A count given
    /// for the other granularity is refused rather than ignored.
    pub async fn usage(
        &self,
        slug: &str,
        granularity: Granularity,
        days: Option<u32>,
        hours: Option<u32>,
    ) -> Result<crate::usage::UsageSeries> {
        let span = match granularity {
            Granularity::Day => {
                if hours.is_some() {
                    return Err(field("hours", "only with granularity=hour"));
                }
                let days = days.unwrap_or(30);
                if !(1..=366).contains(&days) {
                    return Err(field("days", "must be between 1 and 366"));
                }
                Span::Days(days)
            }
            Granularity::Hour => {
                if days.is_some() {
                    return Err(field("days", "only with granularity=day"));
                }
                let hours = hours.unwrap_or(48);
                if !(1..=HOUR_RETENTION).contains(&hours) {
                    return Err(field(
                        "hours",
                        format!("must be between 1 and {HOUR_RETENTION} (hours are kept 14 days)"),
                    ));
                }
                Span::Hours(hours)
            }
        };
        let tenant = self.get_tenant(slug).await?;
        Ok(self.usage.report(tenant.id, span).await?)
    }

    /// Outbox jobs of a tenant; `state` pending or dead.
    pub async fn list_jobs(
        &self,
        actor: &Actor,
        slug: &str,
        state: Option<&str>,
        cursor: Option<&str>,
        limit: Option<i64>,
    ) -> Result<Page<JobInfo>> {
        if state.is_some_and(|s| s != "pending" && s != "dead") {
            return Err(field("state", "must be pending or dead"));
        }
        let limit = limit.unwrap_or(50);
        if !(1..=500).contains(&limit) {
            return Err(field("limit", "must be between 1 and 500"));
        }
        let after = cursor.map(decode_cursor).transpose()?;
        let scope = self.scope(actor, slug).await?;
        let mut items = self
            .functions
            .jobs(&scope, state, after.as_deref(), limit + 1)
            .await?;
        let next_cursor = if items.len() as i64 > limit {
            items.truncate(limit as usize);
            items.last().map(|j| encode_cursor(&j.id))
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }

    /// Runs a dead job again (with fresh attempts).
    pub async fn retry_job(&self, actor: &Actor, slug: &str, id: &str) -> Result<()> {
        let scope = self.scope_to_change(actor, slug).await?;
        self.functions.retry_job(&scope, id).await?;
        self.audit(
            actor,
            "job.retry",
            Some(slug),
            Some(id),
            serde_json::json!({}),
        )
        .await?;
        Ok(())
    }

    /// A scope on `slug` for the local CLI (which reads tenant data directly).
    pub async fn cli_scope(&self, slug: &str) -> Result<Scope> {
        self.scope(&Actor::cli(), slug).await
    }
}
