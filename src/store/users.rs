//! A tenant's end users, their sessions (refresh-token families) and single-use tokens.

use super::{
    Store, StoreError, StoreResult, TenantData, now_ms, on_db, on_unique, one_row, postgres,
};
use crate::tenancy::Scope;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRow {
    pub id: String,
    pub email: String,
    pub password_hash: String,
    pub email_verified: bool,
    pub disabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

const USER_COLUMNS: &str =
    "id, email, password_hash, email_verified, disabled, created_at, updated_at";

pub struct UserQuery<'a> {
    /// Substring of the (normalised, lower-case) email.
    pub search: Option<&'a str>,
    /// Keyset cursor: only users with a greater id (ids are UUIDv7, so creation order).
    pub after_id: Option<&'a str>,
    pub limit: i64,
}

pub struct NewSession<'a> {
    pub id: &'a str,
    pub user_id: &'a str,
    pub expires_at: i64,
    pub ip: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub refresh_hash: &'a str,
}

/// A refresh token joined with its session: (session id, used at, user id, revoked at,
/// expires at).
type RefreshLookup = (String, Option<i64>, String, Option<i64>, i64);

/// What presenting a refresh token led to.
#[derive(Debug, PartialEq, Eq)]
pub enum RefreshOutcome {
    /// The token was current: it is now spent and `new_hash` is the session's token.
    Rotated { session_id: String, user_id: String },
    /// The token had already been used: the whole session family is now revoked.
    Reused { session_id: String },
    /// Unknown token, or its session is revoked or expired.
    Invalid,
}

/// The state of a session as seen by request authentication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    Active,
    /// Revoked, expired, unknown, or its user is disabled or gone.
    Inactive,
}

#[derive(Debug, Clone, Copy)]
pub enum UserTokenKind {
    VerifyEmail,
    ResetPassword,
}

impl UserTokenKind {
    fn as_str(self) -> &'static str {
        match self {
            UserTokenKind::VerifyEmail => "verify_email",
            UserTokenKind::ResetPassword => "reset_password",
        }
    }
}

/// Escapes LIKE wildcards so a search term matches literally.
fn like_pattern(term: &str) -> String {
    let mut out = String::with_capacity(term.len() + 2);
    out.push('%');
    for c in term.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

impl Store {
    pub async fn create_user(
        &self,
        scope: &Scope,
        id: &str,
        email: &str,
        password_hash: &str,
        email_verified: bool,
    ) -> StoreResult<UserRow> {
        let (db, tenant) = self.tenant_db(scope).await?;
        let now = now_ms();
        let sql = format!(
            "INSERT INTO users (tenant_id, id, email, password_hash, email_verified, disabled, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, $5, FALSE, $6, $6) \
             RETURNING {USER_COLUMNS}"
        );
        Ok(on_db!(db, |p| sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(tenant)
            .bind(id)
            .bind(email)
            .bind(password_hash)
            .bind(email_verified)
            .bind(now)
            .fetch_one(&p)
            .await
            .map_err(|e| on_unique(
                e,
                "email",
                "a user with this email exists"
            ))?))
    }

    pub async fn get_user(&self, scope: &Scope, id: &str) -> StoreResult<Option<UserRow>> {
        self.user_by(scope, "id", id).await
    }

    pub async fn get_user_by_email(
        &self,
        scope: &Scope,
        email: &str,
    ) -> StoreResult<Option<UserRow>> {
        self.user_by(scope, "email", email).await
    }

    /// The user whose unique `column` (a name of ours, never request text) is `value`.
    async fn user_by(
        &self,
        scope: &Scope,
        column: &'static str,
        value: &str,
    ) -> StoreResult<Option<UserRow>> {
        let (db, tenant) = self.tenant_db(scope).await?;
        let sql =
            format!("SELECT {USER_COLUMNS} FROM users WHERE tenant_id = $1 AND {column} = $2");
        Ok(on_db!(db, |p| sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(tenant)
            .bind(value)
            .fetch_optional(&p)
            .await?))
    }

    pub async fn list_users(&self, scope: &Scope, q: UserQuery<'_>) -> StoreResult<Vec<UserRow>> {
        let (db, tenant) = self.tenant_db(scope).await?;
        let pattern = q.search.map(like_pattern);
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users WHERE tenant_id = $1 \
             AND ($2 IS NULL OR email LIKE $2 ESCAPE '\\') AND ($3 IS NULL OR id > $3) \
             ORDER BY id LIMIT $4"
        );
        Ok(on_db!(db, |p| sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(tenant)
            .bind(pattern.as_deref())
            .bind(q.after_id)
            .bind(q.limit)
            .fetch_all(&p)
            .await?))
    }

    pub async fn set_user_disabled(
        &self,
        scope: &Scope,
        id: &str,
        disabled: bool,
    ) -> StoreResult<UserRow> {
        let (db, tenant) = self.tenant_db(scope).await?;
        let sql = format!(
            "UPDATE users SET disabled = $3, updated_at = $4 WHERE tenant_id = $1 AND id = $2 \
             RETURNING {USER_COLUMNS}"
        );
        let row: Option<UserRow> = on_db!(db, |p| sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(tenant)
            .bind(id)
            .bind(disabled)
            .bind(now_ms())
            .fetch_optional(&p)
            .await?);
        row.ok_or(StoreError::NotFound)
    }

    /// Sets a user's password hash and spends every password-reset token the user still
    /// holds, in one transaction: a reset link asked for before the password changed (by
    /// the user, or by another reset) must not set it again.
    pub async fn set_user_password(
        &self,
        scope: &Scope,
        id: &str,
        password_hash: &str,
    ) -> StoreResult<()> {
        let (db, tenant) = self.tenant_db(scope).await?;
        let now = now_ms();
        let begin = db.begin_write();
        let n = on_db!(db, |p| {
            let mut tx = p.begin_with(begin).await?;
            let n = sqlx::query(
                "UPDATE users SET password_hash = $3, updated_at = $4 \
                 WHERE tenant_id = $1 AND id = $2",
            )
            .bind(tenant)
            .bind(id)
            .bind(password_hash)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            sqlx::query(
                "UPDATE user_tokens SET used_at = $4 \
                 WHERE tenant_id = $1 AND user_id = $2 AND kind = $3 AND used_at IS NULL",
            )
            .bind(tenant)
            .bind(id)
            .bind(UserTokenKind::ResetPassword.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            n
        });
        one_row(n)
    }

    pub async fn set_email_verified(&self, scope: &Scope, id: &str) -> StoreResult<()> {
        let (db, tenant) = self.tenant_db(scope).await?;
        on_db!(db, |p| sqlx::query(
            "UPDATE users SET email_verified = TRUE, updated_at = $3 \
             WHERE tenant_id = $1 AND id = $2"
        )
        .bind(tenant)
        .bind(id)
        .bind(now_ms())
        .execute(&p)
        .await?
        .rows_affected());
        Ok(())
    }

    /// Deletes a user; sessions and tokens go with it (foreign-key cascade).
    pub async fn delete_user(&self, scope: &Scope, id: &str) -> StoreResult<()> {
        let (db, tenant) = self.tenant_db(scope).await?;
        let n = on_db!(db, |p| sqlx::query(
            "DELETE FROM users WHERE tenant_id = $1 AND id = $2"
        )
        .bind(tenant)
        .bind(id)
        .execute(&p)
        .await?
        .rows_affected());
        one_row(n)
    }

    // ---- sessions and refresh tokens ----------------------------------------------------

    pub async fn create_session(&self, scope: &Scope, s: NewSession<'_>) -> StoreResult<()> {
        let (db, tenant) = self.tenant_db(scope).await?;
        let now = now_ms();
        let begin = db.begin_write();
        on_db!(db, |p| {
            let mut tx = p.begin_with(begin).await?;
            sqlx::query(
                "INSERT INTO sessions (tenant_id, id, user_id, created_at, last_used_at, \
                 expires_at, revoked_at, ip, user_agent) VALUES ($1, $2, $3, $4, $4, $5, NULL, $6, $7)",
            )
            .bind(tenant)
            .bind(s.id)
            .bind(s.user_id)
            .bind(now)
            .bind(s.expires_at)
            .bind(s.ip)
            .bind(s.user_agent)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO refresh_tokens (tenant_id, token_hash, session_id, created_at, used_at) \
                 VALUES ($1, $2, $3, $4, NULL)",
            )
            .bind(tenant)
            .bind(s.refresh_hash)
            .bind(s.id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Spends a refresh token and installs `new_hash` as its session's next one. A token
    /// presented twice (even by two racing requests) revokes its whole session family.
    pub async fn rotate_refresh_token(
        &self,
        scope: &Scope,
        old_hash: &str,
        new_hash: &str,
        new_expires_at: i64,
    ) -> StoreResult<RefreshOutcome> {
        let (db, tenant) = self.tenant_db(scope).await?;
        let now = now_ms();
        let begin = db.begin_write();
        on_db!(db, |p| {
            let mut tx = p.begin_with(begin).await?;
            let found: Option<RefreshLookup> = sqlx::query_as(
                "SELECT r.session_id, r.used_at, s.user_id, s.revoked_at, s.expires_at \
                 FROM refresh_tokens r JOIN sessions s \
                   ON s.tenant_id = r.tenant_id AND s.id = r.session_id \
                 WHERE r.tenant_id = $1 AND r.token_hash = $2",
            )
            .bind(tenant)
            .bind(old_hash)
            .fetch_optional(&mut *tx)
            .await?;
            let Some((session_id, used_at, user_id, revoked_at, expires_at)) = found else {
                return Ok(RefreshOutcome::Invalid);
            };
            if revoked_at.is_some() || expires_at <= now {
                return Ok(RefreshOutcome::Invalid);
            }
            let spent = if used_at.is_none() {
                sqlx::query(
                    "UPDATE refresh_tokens SET used_at = $3 \
                     WHERE tenant_id = $1 AND token_hash = $2 AND used_at IS NULL",
                )
                .bind(tenant)
                .bind(old_hash)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1
            } else {
                false
            };
            if !spent {
                sqlx::query("UPDATE sessions SET revoked_at = $3 WHERE tenant_id = $1 AND id = $2")
                    .bind(tenant)
                    .bind(&session_id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                return Ok(RefreshOutcome::Reused { session_id });
            }
            sqlx::query(
                "INSERT INTO refresh_tokens (tenant_id, token_hash, session_id, created_at, used_at) \
                 VALUES ($1, $2, $3, $4, NULL)",
            )
            .bind(tenant)
            .bind(new_hash)
            .bind(&session_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE sessions SET last_used_at = $3, expires_at = $4 \
                 WHERE tenant_id = $1 AND id = $2",
            )
            .bind(tenant)
            .bind(&session_id)
            .bind(now)
            .bind(new_expires_at)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(RefreshOutcome::Rotated {
                session_id,
                user_id,
            })
        })
    }

    /// The session id a refresh token belongs to, if any.
    pub async fn session_of_refresh_token(
        &self,
        scope: &Scope,
        token_hash: &str,
    ) -> StoreResult<Option<(String, String)>> {
        let (db, tenant) = self.tenant_db(scope).await?;
        Ok(on_db!(db, |p| sqlx::query_as(
            "SELECT s.id, s.user_id FROM refresh_tokens r JOIN sessions s \
               ON s.tenant_id = r.tenant_id AND s.id = r.session_id \
             WHERE r.tenant_id = $1 AND r.token_hash = $2"
        )
        .bind(tenant)
        .bind(token_hash)
        .fetch_optional(&p)
        .await?))
    }

    /// Whether `user_id` started a session from `ip` since `since_ms` (revoked or not):
    /// the login limiter lets such an address past the account-wide ceiling. Asked only
    /// when that ceiling is full, so its cost does not matter.
    pub async fn signed_in_from(
        &self,
        scope: &Scope,
        user_id: &str,
        ip: &str,
        since_ms: i64,
    ) -> StoreResult<bool> {
        let (db, tenant) = self.tenant_db(scope).await?;
        let found: Option<i64> = on_db!(db, |p| sqlx::query_scalar(
            "SELECT created_at FROM sessions \
             WHERE tenant_id = $1 AND user_id = $2 AND ip = $3 AND created_at >= $4 LIMIT 1"
        )
        .bind(tenant)
        .bind(user_id)
        .bind(ip)
        .bind(since_ms)
        .fetch_optional(&p)
        .await?);
        Ok(found.is_some())
    }

    /// Whether an access token's session may still act: not revoked, not expired, and its
    /// user exists and is enabled. Checked on every authenticated request.
    pub async fn session_state(
        &self,
        scope: &Scope,
        session_id: &str,
        user_id: &str,
    ) -> StoreResult<SessionState> {
        let live = match self.tenant_data(scope).await? {
            (TenantData::Sqlite(file), tenant) => {
                file.session_active(tenant, session_id, user_id)?
            }
            (TenantData::Postgres(pool), tenant) => {
                postgres::session_active(&pool, tenant, session_id, user_id).await?
            }
        };
        Ok(if live {
            SessionState::Active
        } else {
            SessionState::Inactive
        })
    }

    pub async fn revoke_session(
        &self,
        scope: &Scope,
        session_id: &str,
        user_id: &str,
    ) -> StoreResult<()> {
        let (db, tenant) = self.tenant_db(scope).await?;
        on_db!(db, |p| sqlx::query(
            "UPDATE sessions SET revoked_at = $4 \
             WHERE tenant_id = $1 AND id = $2 AND user_id = $3 AND revoked_at IS NULL"
        )
        .bind(tenant)
        .bind(session_id)
        .bind(user_id)
        .bind(now_ms())
        .execute(&p)
        .await?
        .rows_affected());
        Ok(())
    }

    /// Revokes every live session of a user except `keep` (the caller's own, on password
    /// change). Returns how many were revoked.
    pub async fn revoke_user_sessions(
        &self,
        scope: &Scope,
        user_id: &str,
        keep: Option<&str>,
    ) -> StoreResult<u64> {
        let (db, tenant) = self.tenant_db(scope).await?;
        Ok(on_db!(db, |p| sqlx::query(
            "UPDATE sessions SET revoked_at = $4 \
             WHERE tenant_id = $1 AND user_id = $2 AND revoked_at IS NULL \
               AND expires_at > $4 AND ($3 IS NULL OR id <> $3)"
        )
        .bind(tenant)
        .bind(user_id)
        .bind(keep)
        .bind(now_ms())
        .execute(&p)
        .await?
        .rows_affected()))
    }

    // ---- single-use tokens (email verification, password reset) --------------------------

    pub async fn create_user_token(
        &self,
        scope: &Scope,
        user_id: &str,
        kind: UserTokenKind,
        token_hash: &str,
        expires_at: i64,
    ) -> StoreResult<()> {
        let (db, tenant) = self.tenant_db(scope).await?;
        on_db!(db, |p| sqlx::query(
            "INSERT INTO user_tokens (tenant_id, token_hash, user_id, kind, created_at, \
             expires_at, used_at) VALUES ($1, $2, $3, $4, $5, $6, NULL)"
        )
        .bind(tenant)
        .bind(token_hash)
        .bind(user_id)
        .bind(kind.as_str())
        .bind(now_ms())
        .bind(expires_at)
        .execute(&p)
        .await?
        .rows_affected());
        Ok(())
    }

    /// Spends a single-use token of `kind`; returns its user, or None when the token is
    /// unknown, of another kind, expired or already used.
    /// The user of a live (unused, unexpired) single-use token, without spending it.
    pub async fn user_of_token(
        &self,
        scope: &Scope,
        kind: UserTokenKind,
        token_hash: &str,
    ) -> StoreResult<Option<String>> {
        let (db, tenant) = self.tenant_db(scope).await?;
        Ok(on_db!(db, |p| sqlx::query_scalar(
            "SELECT user_id FROM user_tokens \
             WHERE tenant_id = $1 AND token_hash = $2 AND kind = $3 \
               AND used_at IS NULL AND expires_at > $4"
        )
        .bind(tenant)
        .bind(token_hash)
        .bind(kind.as_str())
        .bind(now_ms())
        .fetch_optional(&p)
        .await?))
    }

    pub async fn consume_user_token(
        &self,
        scope: &Scope,
        kind: UserTokenKind,
        token_hash: &str,
    ) -> StoreResult<Option<String>> {
        let (db, tenant) = self.tenant_db(scope).await?;
        let now = now_ms();
        Ok(on_db!(db, |p| sqlx::query_scalar(
            "UPDATE user_tokens SET used_at = $4 \
             WHERE tenant_id = $1 AND token_hash = $2 AND kind = $3 \
               AND used_at IS NULL AND expires_at > $4 \
             RETURNING user_id"
        )
        .bind(tenant)
        .bind(token_hash)
        .bind(kind.as_str())
        .bind(now)
        .fetch_optional(&p)
        .await?))
    }
}
