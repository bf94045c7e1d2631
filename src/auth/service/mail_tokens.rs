//! Email verification and password reset: single-use tokens sent by mail.

use std::sync::Arc;

use super::{AuthService, ClientInfo, check_password, email_of};
use crate::auth::mail::Email;
use crate::auth::{AuthError, CredentialError, password};
use crate::crypto::{random_token, sha256_hex};
use crate::store::{StoreError, UserTokenKind, WriteTicket};
use crate::tenancy::Scope;

impl AuthService {
    /// Starts email verification or password reset for `email`. It answers the same
    /// whether or not the email exists: validation happens here, the lookup, token and
    /// mail happen in the background. The token is written under a write ticket of its
    /// own, taken here (`tenant_moving` once a move froze the tenant): the request's
    /// ticket ends with its answer, and a move must not copy the tenant while the
    /// token is still to be written at the source.
    pub fn request_token(
        self: &Arc<Self>,
        scope: &Scope,
        email: &str,
        kind: UserTokenKind,
        client: &ClientInfo,
    ) -> Result<(), AuthError> {
        let email = email_of(email)?;
        // Throttled per IP and per address, so nobody can flood an inbox through us.
        self.limiter
            .check_mail(&client.ip, &format!("{}:{email}", scope.tenant().id))
            .map_err(CredentialError::RateLimited)?;
        let ticket = self
            .store
            .enter_write(scope.tenant().id)
            .ok_or(StoreError::TenantMoving)?;
        let this = self.clone();
        let scope = scope.clone();
        tokio::spawn(async move {
            if let Err(e) = this.send_token(&scope, &email, kind, ticket).await {
                tracing::warn!(error = %e, "could not issue single-use token");
            }
        });
        Ok(())
    }

    async fn send_token(
        &self,
        scope: &Scope,
        email: &str,
        kind: UserTokenKind,
        ticket: WriteTicket,
    ) -> Result<(), AuthError> {
        let Some(user) = self.store.get_user_by_email(scope, email).await? else {
            return Ok(());
        };
        if user.disabled {
            return Ok(());
        }
        let token = random_token(32);
        let ttl = match kind {
            UserTokenKind::VerifyEmail => self.settings.verify_ttl,
            UserTokenKind::ResetPassword => self.settings.reset_ttl,
        };
        let expires_at = crate::store::now_ms() + ttl.as_millis() as i64;
        self.store
            .create_user_token(scope, &user.id, kind, &sha256_hex(&token), expires_at)
            .await?;
        // Written: a move may go on (the mail may take long, and writes nothing).
        drop(ticket);
        let tenant = scope.tenant();
        let base = self.settings.public_url.trim_end_matches('/');
        let (subject, link, action) = match kind {
            UserTokenKind::VerifyEmail => (
                format!("Verify your email for {}", tenant.name),
                format!(
                    "{base}/v1/t/{}/auth/verify/confirm?token={token}",
                    tenant.slug
                ),
                "To verify your email address, open this link",
            ),
            UserTokenKind::ResetPassword => (
                format!("Reset your password for {}", tenant.name),
                format!(
                    "{base}/v1/t/{}/auth/reset/confirm?token={token}",
                    tenant.slug
                ),
                "To choose a new password, open this link",
            ),
        };
        let hours = ttl.as_secs() / 3600;
        let body = format!(
            "{action}:\n\n{link}\n\nToken: {token}\n\nIt expires in {hours} hour(s) and works once. \
             If you did not ask for this, ignore this message.\n"
        );
        self.mailer
            .send(Email {
                to: user.email,
                subject,
                body,
                link,
            })
            .await;
        Ok(())
    }

    pub async fn confirm_verification(&self, scope: &Scope, token: &str) -> Result<(), AuthError> {
        let user_id = self
            .store
            .consume_user_token(scope, UserTokenKind::VerifyEmail, &sha256_hex(token))
            .await?
            .ok_or(AuthError::InvalidOneTimeToken)?;
        self.store.set_email_verified(scope, &user_id).await?;
        Ok(())
    }

    /// Sets a new password from a reset token and ends every session of the user. It
    /// hashes the new password, so attempts are throttled per client like sign-ups.
    pub async fn confirm_reset(
        &self,
        scope: &Scope,
        token: &str,
        new_password: &str,
        client: &ClientInfo,
    ) -> Result<(), AuthError> {
        check_password("password", new_password, None)?;
        self.limiter
            .check_ip(&client.ip)
            .map_err(CredentialError::RateLimited)?;
        // The email rule needs the token's user: look before spending the token, so a
        // refused password leaves the link usable (as the other rules do).
        let token_hash = sha256_hex(token);
        let owner = self
            .store
            .user_of_token(scope, UserTokenKind::ResetPassword, &token_hash)
            .await?
            .ok_or(AuthError::InvalidOneTimeToken)?;
        if let Some(user) = self.store.get_user(scope, &owner).await? {
            check_password("password", new_password, Some(&user.email))?;
        }
        let user_id = self
            .store
            .consume_user_token(scope, UserTokenKind::ResetPassword, &token_hash)
            .await?
            .ok_or(AuthError::InvalidOneTimeToken)?;
        let hash = password::hash(new_password.to_string()).await?;
        self.store.set_user_password(scope, &user_id, &hash).await?;
        self.store
            .revoke_user_sessions(scope, &user_id, None)
            .await?;
        Ok(())
    }
}
