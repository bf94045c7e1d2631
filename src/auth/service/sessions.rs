//! Sign-up, login, token refresh, logout and password change: the flows that open,
//! rotate and end a user's sessions.

use std::time::Duration;

use super::{
    AuthService, ClientInfo, IssuedSession, NewUser, check_password, email_of, field, require_user,
};
use crate::auth::tokens::access_claims;
use crate::auth::{AuthError, CredentialError, password};
use crate::crypto::{random_token, sha256_hex};
use crate::store::{NewSession, RefreshOutcome, UserRow};
use crate::tenancy::{Caller, Scope, Tenant};

/// The login limiter's account of a tenant's user (`email` normalised).
fn account_key(scope: &Scope, email: &str) -> String {
    format!("{}:{}", scope.tenant().id, email)
}

/// How recent a sign-in from an address must be for that address to pass the account's
/// failure ceiling.
const KNOWN_ADDRESS_FOR: Duration = Duration::from_secs(30 * 24 * 3600);

impl AuthService {
    pub async fn signup(
        &self,
        scope: &Scope,
        email: &str,
        password: &str,
        client: &ClientInfo,
    ) -> Result<IssuedSession, AuthError> {
        let new = NewUser::check(email, Some(password))?;
        // Sign-ups cost a hash each: throttle them per client like logins.
        self.limiter
            .check_ip(&client.ip)
            .map_err(CredentialError::RateLimited)?;
        let user = new.create(&self.store, scope, false).await?;
        self.issue_session(scope, user, client).await
    }

    pub async fn login(
        &self,
        scope: &Scope,
        email: &str,
        password: &str,
        client: &ClientInfo,
    ) -> Result<IssuedSession, AuthError> {
        let email = email_of(email)?;
        if password.is_empty() {
            return Err(field("password", "is required"));
        }
        // Charged as a failure of this account from this address (and of the account as
        // a whole) until the password turns out right: see `ratelimit`.
        let account = account_key(scope, &email);
        let mut attempt = self
            .limiter
            .begin_login(&client.ip, &account)
            .map_err(CredentialError::RateLimited)?;
        let user = self.store.get_user_by_email(scope, &email).await?;
        if let Err(wait) = attempt.charge_account(&account) {
            // The account-wide ceiling is full (guessing from many addresses): the owner
            // still gets in from an address they signed in from before.
            let since = crate::store::now_ms() - KNOWN_ADDRESS_FOR.as_millis() as i64;
            let known = match &user {
                Some(u) => {
                    self.store
                        .signed_in_from(scope, &u.id, &client.ip, since)
                        .await?
                }
                None => false,
            };
            if !known {
                attempt.cancel();
                return Err(CredentialError::RateLimited(wait).into());
            }
        }
        let Some(user) = user else {
            password::verify_dummy(password.to_string()).await;
            return Err(CredentialError::InvalidCredentials.into());
        };
        if !password::verify(password.to_string(), user.password_hash.clone()).await {
            return Err(CredentialError::InvalidCredentials.into());
        }
        attempt.succeeded();
        if user.disabled {
            return Err(AuthError::UserDisabled);
        }
        self.issue_session(scope, user, client).await
    }

    async fn issue_session(
        &self,
        scope: &Scope,
        user: UserRow,
        client: &ClientInfo,
    ) -> Result<IssuedSession, AuthError> {
        let session_id = uuid::Uuid::now_v7().to_string();
        let refresh_token = random_token(32);
        let expires_at = crate::store::now_ms() + self.settings.refresh_ttl.as_millis() as i64;
        self.store
            .create_session(
                scope,
                NewSession {
                    id: &session_id,
                    user_id: &user.id,
                    expires_at,
                    ip: Some(&client.ip),
                    user_agent: client.user_agent.as_deref(),
                    refresh_hash: &sha256_hex(&refresh_token),
                },
            )
            .await?;
        self.issued(scope.tenant(), user, &session_id, refresh_token)
    }

    /// A session's answer: a fresh access token beside the refresh token.
    fn issued(
        &self,
        tenant: &Tenant,
        user: UserRow,
        session_id: &str,
        refresh_token: String,
    ) -> Result<IssuedSession, AuthError> {
        let claims = access_claims(
            tenant.audience(),
            &user.id,
            session_id,
            &user.email,
            user.email_verified,
            self.settings.access_ttl,
        );
        Ok(IssuedSession {
            access_token: self.keyring.sign(&claims)?,
            user,
            refresh_token,
            expires_in: self.settings.access_ttl.as_secs(),
        })
    }

    /// Rotates a refresh token: the presented one is spent, a new one is returned. Using a
    /// spent token again revokes its whole session family.
    pub async fn refresh(
        &self,
        scope: &Scope,
        refresh_token: &str,
    ) -> Result<IssuedSession, AuthError> {
        if refresh_token.is_empty() || refresh_token.len() > 256 {
            return Err(AuthError::InvalidRefreshToken);
        }
        let new_token = random_token(32);
        let expires_at = crate::store::now_ms() + self.settings.refresh_ttl.as_millis() as i64;
        let outcome = self
            .store
            .rotate_refresh_token(
                scope,
                &sha256_hex(refresh_token),
                &sha256_hex(&new_token),
                expires_at,
            )
            .await?;
        let (session_id, user_id) = match outcome {
            RefreshOutcome::Rotated {
                session_id,
                user_id,
            } => (session_id, user_id),
            RefreshOutcome::Reused { session_id } => {
                self.cache
                    .forget_session(scope.tenant().id, &session_id)
                    .await;
                tracing::warn!(tenant = %scope.tenant().slug, "refresh token reuse: session family revoked");
                return Err(AuthError::RefreshTokenReused);
            }
            RefreshOutcome::Invalid => return Err(AuthError::InvalidRefreshToken),
        };
        let user = match self.store.get_user(scope, &user_id).await? {
            Some(u) if !u.disabled => u,
            Some(_) => {
                self.store
                    .revoke_session(scope, &session_id, &user_id)
                    .await?;
                self.cache
                    .forget_session(scope.tenant().id, &session_id)
                    .await;
                return Err(AuthError::UserDisabled);
            }
            None => return Err(AuthError::InvalidRefreshToken),
        };
        self.issued(scope.tenant(), user, &session_id, new_token)
    }

    /// Ends a session: the caller's own (access token) and/or the one a refresh token
    /// belongs to (so a client holding only a refresh token can still sign out).
    pub async fn logout(
        &self,
        scope: &Scope,
        refresh_token: Option<&str>,
    ) -> Result<(), AuthError> {
        let mut ended = false;
        let tenant = scope.tenant().id;
        if let Caller::User(u) = scope.caller() {
            self.store
                .revoke_session(scope, &u.session_id, &u.uid)
                .await?;
            self.cache.forget_session(tenant, &u.session_id).await;
            ended = true;
        }
        if let Some(token) = refresh_token.filter(|t| !t.is_empty()) {
            match self
                .store
                .session_of_refresh_token(scope, &sha256_hex(token))
                .await?
            {
                Some((sid, uid)) => {
                    self.store.revoke_session(scope, &sid, &uid).await?;
                    self.cache.forget_session(tenant, &sid).await;
                    ended = true;
                }
                None if !ended => return Err(AuthError::InvalidRefreshToken),
                None => {}
            }
        }
        if ended {
            Ok(())
        } else {
            Err(AuthError::AuthRequired)
        }
    }

    pub async fn me(&self, scope: &Scope) -> Result<UserRow, AuthError> {
        let user = require_user(scope)?;
        self.store
            .get_user(scope, &user.uid)
            .await?
            .ok_or(AuthError::SessionRevoked)
    }

    /// Changes the caller's password and ends all their other sessions. Each attempt
    /// checks the current password (an argon2 verification), so failed attempts back off
    /// like logins do, keyed by the caller's session: a stolen access token buys a few
    /// guesses, then ever longer waits. Not the account's login limits: guesses made here
    /// must not lock the owner out of signing in.
    pub async fn change_password(
        &self,
        scope: &Scope,
        current: &str,
        new: &str,
        client: &ClientInfo,
    ) -> Result<u64, AuthError> {
        let caller = require_user(scope)?.clone();
        check_password("new_password", new, Some(&caller.email))?;
        let attempt = self
            .limiter
            .begin(
                &client.ip,
                &format!("password:{}:{}", scope.tenant().id, caller.session_id),
            )
            .map_err(CredentialError::RateLimited)?;
        let user = self
            .store
            .get_user(scope, &caller.uid)
            .await?
            .ok_or(AuthError::SessionRevoked)?;
        if !password::verify(current.to_string(), user.password_hash.clone()).await {
            return Err(CredentialError::InvalidCredentials.into());
        }
        attempt.succeeded();
        let hash = password::hash(new.to_string()).await?;
        self.store.set_user_password(scope, &user.id, &hash).await?;
        let n = self
            .store
            .revoke_user_sessions(scope, &user.id, Some(&caller.session_id))
            .await?;
        self.cache.forget_user(scope.tenant().id, &user.id).await;
        Ok(n)
    }
}
