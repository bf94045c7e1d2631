//! The account flows of a tenant's end users, and request authentication.

use std::sync::Arc;
use std::time::Duration;

use super::cache::{AuthCache, CachedKey};
use super::mail::{Email, Mailer};
use super::password_policy::password_policy;
use super::ratelimit::LoginLimiter;
use super::tokens::{AccessClaims, Keyring, TokenError, access_claims};
use super::{AuthError, password};
use crate::crypto::{random_token, sha256_hex};
use crate::store::{NewSession, RefreshOutcome, SessionState, Store, UserRow, UserTokenKind};
use crate::tenancy::{Caller, Scope, SystemTask, Tenant, UserCaller, service_keys};

#[derive(Clone, Debug)]
pub struct AuthSettings {
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    pub verify_ttl: Duration,
    pub reset_ttl: Duration,
    /// Base URL used in emailed links.
    pub public_url: String,
}

/// Where a request came from; recorded on sessions and used for rate limits.
#[derive(Clone, Debug, Default)]
pub struct ClientInfo {
    pub ip: String,
    pub user_agent: Option<String>,
}

/// What signup, login and refresh hand back.
pub struct IssuedSession {
    pub user: UserRow,
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: u64,
}

impl AuthService {
    /// Drops what this node cached of the tenant's sessions and service keys (another
    /// node changed them); unlike the `forget_*` calls it announces nothing.
    pub fn drop_cached_tenant(&self, tenant: i64) {
        self.cache.drop_tenant(tenant);
    }

    /// Drops this node's cached checks of a user's sessions (ended on another node).
    pub fn drop_cached_user(&self, tenant: i64, uid: &str) {
        self.cache.drop_user(tenant, uid);
    }

    /// Drops this node's cached check of one session (ended on another node).
    pub fn drop_cached_session(&self, tenant: i64, sid: &str) {
        self.cache.drop_session(tenant, sid);
    }
}

pub struct AuthService {
    store: Store,
    keyring: Arc<Keyring>,
    mailer: Arc<Mailer>,
    limiter: Arc<LoginLimiter>,
    cache: Arc<AuthCache>,
    settings: AuthSettings,
}

fn field(field: &'static str, problem: impl Into<String>) -> AuthError {
    AuthError::InvalidField {
        field,
        problem: problem.into(),
    }
}

fn email_of(raw: &str) -> Result<String, AuthError> {
    password::normalize_email(raw).map_err(|p| field("email", p))
}

/// The password policy for a new password of the account of `email` (None: not known
/// yet), as the error of the input field `name`.
fn check_password(name: &'static str, raw: &str, email: Option<&str>) -> Result<(), AuthError> {
    password_policy(raw, email).map_err(|p| {
        if p.is_weak() {
            AuthError::WeakPassword {
                field: name,
                problem: p.describe(),
            }
        } else {
            field(name, p.describe())
        }
    })
}

/// The login limiter's account of a tenant's user (`email` normalised).
fn account_key(scope: &Scope, email: &str) -> String {
    format!("{}:{}", scope.tenant().id, email)
}

/// How recent a sign-in from an address must be for that address to pass the account's
/// failure ceiling.
const KNOWN_ADDRESS_FOR: Duration = Duration::from_secs(30 * 24 * 3600);

impl AuthService {
    pub fn new(
        store: Store,
        keyring: Arc<Keyring>,
        mailer: Arc<Mailer>,
        limiter: Arc<LoginLimiter>,
        cache: Arc<AuthCache>,
        settings: AuthSettings,
    ) -> AuthService {
        AuthService {
            store,
            keyring,
            mailer,
            limiter,
            cache,
            settings,
        }
    }

    pub fn settings(&self) -> &AuthSettings {
        &self.settings
    }

    /// Session changes made through this process (for the realtime broker).
    pub fn session_events(&self) -> tokio::sync::broadcast::Receiver<super::cache::SessionEvent> {
        self.cache.session_events()
    }

    /// Whether a user's session is still live (for long-lived connections).
    pub async fn session_live(
        &self,
        scope: &Scope,
        sid: &str,
        uid: &str,
    ) -> Result<bool, AuthError> {
        Ok(self.store.session_state(scope, sid, uid).await? == SessionState::Active)
    }

    pub async fn signup(
        &self,
        scope: &Scope,
        email: &str,
        password: &str,
        client: &ClientInfo,
    ) -> Result<IssuedSession, AuthError> {
        let email = email_of(email)?;
        check_password("password", password, Some(&email))?;
        // Sign-ups cost a hash each: throttle them per client like logins.
        self.limiter
            .check_ip(&client.ip)
            .map_err(AuthError::RateLimited)?;
        let hash = password::hash(password.to_string()).await?;
        let id = uuid::Uuid::now_v7().to_string();
        let user = self
            .store
            .create_user(scope, &id, &email, &hash)
            .await
            .map_err(|e| match e {
                crate::store::StoreError::Conflict(_) => AuthError::EmailTaken,
                other => other.into(),
            })?;
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
            .map_err(AuthError::RateLimited)?;
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
                return Err(AuthError::RateLimited(wait));
            }
        }
        let Some(user) = user else {
            password::verify_dummy(password.to_string()).await;
            return Err(AuthError::InvalidCredentials);
        };
        if !password::verify(password.to_string(), user.password_hash.clone()).await {
            return Err(AuthError::InvalidCredentials);
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
        let access_token = self.access_token(scope.tenant(), &user, &session_id)?;
        Ok(IssuedSession {
            user,
            access_token,
            refresh_token,
            expires_in: self.settings.access_ttl.as_secs(),
        })
    }

    fn access_token(
        &self,
        tenant: &Tenant,
        user: &UserRow,
        session_id: &str,
    ) -> Result<String, AuthError> {
        let claims = access_claims(
            tenant.audience(),
            &user.id,
            session_id,
            &user.email,
            user.email_verified,
            self.settings.access_ttl,
        );
        Ok(self.keyring.sign(&claims)?)
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
        let access_token = self.access_token(scope.tenant(), &user, &session_id)?;
        Ok(IssuedSession {
            user,
            access_token,
            refresh_token: new_token,
            expires_in: self.settings.access_ttl.as_secs(),
        })
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
            .map_err(AuthError::RateLimited)?;
        let user = self
            .store
            .get_user(scope, &caller.uid)
            .await?
            .ok_or(AuthError::SessionRevoked)?;
        if !password::verify(current.to_string(), user.password_hash.clone()).await {
            return Err(AuthError::InvalidCredentials);
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

    /// Starts email verification or password reset for `email`. It answers the same
    /// whether or not the email exists: validation happens here, the lookup, token and
    /// mail happen in the background.
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
            .map_err(AuthError::RateLimited)?;
        let this = self.clone();
        let scope = scope.clone();
        tokio::spawn(async move {
            if let Err(e) = this.send_token(&scope, &email, kind).await {
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
            .map_err(AuthError::RateLimited)?;
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

    /// Decides who a tenant request's bearer token stands for. A present but invalid
    /// token is an error, never a silent downgrade to anonymous.
    pub async fn authenticate(
        &self,
        tenant: Arc<Tenant>,
        bearer: Option<&str>,
    ) -> Result<Scope, AuthError> {
        let Some(token) = bearer else {
            return Ok(Scope::anonymous(tenant));
        };
        let lookup = Scope::system(tenant.clone(), SystemTask::Authentication);
        if let Some(prefix) = service_keys::prefix_of(token) {
            let key = match self.cache.key(tenant.id, prefix) {
                Some(k) => Some(k),
                None => {
                    let found = self.store.find_service_key(&lookup, prefix).await?;
                    found.map(|row| {
                        let k = CachedKey {
                            id: row.id,
                            hash: row.key_hash,
                        };
                        self.cache.remember_key(tenant.id, prefix, k.clone());
                        k
                    })
                }
            };
            return match key {
                Some(k) if service_keys::matches(token, &k.hash) => {
                    Ok(Scope::service_key(tenant, k.id))
                }
                _ => Err(AuthError::InvalidToken(
                    "unknown or revoked service key".into(),
                )),
            };
        }
        let audience = tenant.audience();
        let claims = match self
            .cache
            .verified(token, super::tokens::unix_now())
            .filter(|c| c.aud == audience)
        {
            Some(c) => c,
            None => {
                let claims: AccessClaims =
                    self.keyring
                        .verify(token, &audience)
                        .await
                        .map_err(|e| match e {
                            TokenError::Expired => AuthError::TokenExpired,
                            TokenError::Invalid(why) => AuthError::InvalidToken(why),
                        })?;
                let claims = Arc::new(claims);
                self.cache.remember_verified(token, claims.clone());
                claims
            }
        };
        let live = self.cache.session_live(tenant.id, &claims.sid, &claims.sub)
            || match self
                .store
                .session_state(&lookup, &claims.sid, &claims.sub)
                .await?
            {
                SessionState::Active => {
                    self.cache
                        .remember_session(tenant.id, &claims.sid, &claims.sub);
                    true
                }
                SessionState::Inactive => false,
            };
        match if live {
            SessionState::Active
        } else {
            SessionState::Inactive
        } {
            SessionState::Active => Ok(Scope::user(
                tenant,
                UserCaller {
                    uid: claims.sub.clone(),
                    email: claims.email.clone(),
                    email_verified: claims.email_verified,
                    session_id: claims.sid.clone(),
                },
            )),
            SessionState::Inactive => Err(AuthError::SessionRevoked),
        }
    }
}

pub fn require_user(scope: &Scope) -> Result<&UserCaller, AuthError> {
    match scope.caller() {
        Caller::User(u) => Ok(u),
        _ => Err(AuthError::AuthRequired),
    }
}
