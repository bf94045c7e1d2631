//! A tenant's users as admins see them: created, listed, disabled, enabled, signed out,
//! deleted.

use super::*;
use crate::auth::NewUser;

impl AdminService {
    /// Creates a user with sign-up's own checks of the email and password, without
    /// signing them in. Without a password the user has none and signs in only after a
    /// password reset; `verified` marks the email checked (the admin knows it some other
    /// way).
    pub async fn create_user(
        &self,
        actor: &Actor,
        slug: &str,
        email: &str,
        password: Option<&str>,
        verified: bool,
    ) -> Result<UserRow> {
        let scope = self.scope_to_change(actor, slug).await?;
        let user = NewUser::check(email, password)?
            .create(&self.store, &scope, verified)
            .await?;
        self.audit(
            actor,
            "user.create",
            Some(slug),
            Some(&user.id),
            serde_json::json!({"email": user.email, "verified": verified,
                               "password": password.is_some()}),
        )
        .await?;
        Ok(user)
    }

    pub async fn list_users(
        &self,
        actor: &Actor,
        slug: &str,
        search: Option<&str>,
        cursor: Option<&str>,
        limit: Option<i64>,
    ) -> Result<Page<UserRow>> {
        let limit = limit.unwrap_or(50);
        if !(1..=1000).contains(&limit) {
            return Err(field("limit", "must be between 1 and 1000"));
        }
        no_nul("search", search)?;
        let after = cursor.map(decode_cursor).transpose()?;
        let search = search
            .map(|s| s.trim().to_lowercase())
            .filter(|s| !s.is_empty());
        let scope = self.scope(actor, slug).await?;
        let mut items = self
            .store
            .list_users(
                &scope,
                UserQuery {
                    search: search.as_deref(),
                    after_id: after.as_deref(),
                    limit: limit + 1,
                },
            )
            .await?;
        let next_cursor = if items.len() as i64 > limit {
            items.truncate(limit as usize);
            items.last().map(|u| encode_cursor(&u.id))
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }

    pub async fn get_user(&self, actor: &Actor, slug: &str, id: &str) -> Result<UserRow> {
        let scope = self.scope(actor, slug).await?;
        self.store
            .get_user(&scope, id)
            .await?
            .ok_or(AdminError::NotFound("user"))
    }

    /// Disabling also ends every session, so the user must sign in again once enabled.
    pub async fn set_user_disabled(
        &self,
        actor: &Actor,
        slug: &str,
        id: &str,
        disabled: bool,
    ) -> Result<UserRow> {
        let scope = self.scope_to_change(actor, slug).await?;
        let user = self
            .store
            .set_user_disabled(&scope, id, disabled)
            .await
            .map_err(|e| not_found_as(e, "user"))?;
        if disabled {
            self.store.revoke_user_sessions(&scope, id, None).await?;
        }
        self.auth_cache.forget_user(scope.tenant().id, id).await;
        let action = if disabled {
            "user.disable"
        } else {
            "user.enable"
        };
        self.audit(actor, action, Some(slug), Some(id), serde_json::json!({}))
            .await?;
        Ok(user)
    }

    /// Marks a user's email verified, as confirming a verification mail would (for an
    /// address the admin checked some other way). Marking a verified user again changes
    /// nothing and is not audited again.
    pub async fn mark_user_verified(&self, actor: &Actor, slug: &str, id: &str) -> Result<UserRow> {
        let scope = self.scope_to_change(actor, slug).await?;
        let user = self
            .store
            .get_user(&scope, id)
            .await?
            .ok_or(AdminError::NotFound("user"))?;
        if user.email_verified {
            return Ok(user);
        }
        self.store.set_email_verified(&scope, id).await?;
        // Access tokens carry the flag (renewed on refresh); the cached user goes now.
        self.auth_cache.forget_user(scope.tenant().id, id).await;
        self.audit(
            actor,
            "user.verify",
            Some(slug),
            Some(id),
            serde_json::json!({}),
        )
        .await?;
        self.store
            .get_user(&scope, id)
            .await?
            .ok_or(AdminError::NotFound("user"))
    }

    pub async fn revoke_user_sessions(&self, actor: &Actor, slug: &str, id: &str) -> Result<u64> {
        let scope = self.scope_to_change(actor, slug).await?;
        if self.store.get_user(&scope, id).await?.is_none() {
            return Err(AdminError::NotFound("user"));
        }
        let n = self.store.revoke_user_sessions(&scope, id, None).await?;
        self.auth_cache.forget_user(scope.tenant().id, id).await;
        self.audit(
            actor,
            "user.revoke_sessions",
            Some(slug),
            Some(id),
            serde_json::json!({"revoked": n}),
        )
        .await?;
        Ok(n)
    }

    pub async fn delete_user(&self, actor: &Actor, slug: &str, id: &str) -> Result<()> {
        let scope = self.scope_to_change(actor, slug).await?;
        self.store
            .delete_user(&scope, id)
            .await
            .map_err(|e| not_found_as(e, "user"))?;
        self.auth_cache.forget_user(scope.tenant().id, id).await;
        self.audit(
            actor,
            "user.delete",
            Some(slug),
            Some(id),
            serde_json::json!({}),
        )
        .await?;
        Ok(())
    }
}
