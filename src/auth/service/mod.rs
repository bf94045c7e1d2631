//! The account flows of a tenant's end users, and request authentication. The service
//! and its shared checks are here; its methods are in one file per concern: sessions
//! (sign-up, login, refresh, logout, password change), mail tokens (verification and
//! reset), authenticate (bearer token → `Scope`); `new_user` is the account sign-up and
//! admins both create.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

mod authenticate;
mod mail_tokens;
mod new_user;
mod sessions;

pub use new_user::NewUser;

use super::cache::AuthCache;
use super::mail::Mailer;
use super::password_policy::password_policy;
use super::ratelimit::LoginLimiter;
use super::reader::ReaderCheck;
use super::tokens::Keyring;
use super::{AuthError, CredentialError, password};
use crate::store::{SessionState, Store, UserRow};
use crate::tenancy::{Caller, Scope, UserCaller};

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

    /// Drops the cached checks that are past their time (the idle policy of
    /// `store::tenant_files`): an idle tenant's service keys and sessions, expired tokens.
    pub fn release_stale(&self) {
        self.cache.release_stale(chrono::Utc::now().timestamp());
    }

    /// Drops this node's cached checks of a user's sessions (ended on another node).
    pub fn drop_cached_user(&self, tenant: i64, uid: &str) {
        self.cache.drop_user(tenant, uid);
    }

    /// Drops this node's cached check of one session (ended on another node).
    pub fn drop_cached_session(&self, tenant: i64, sid: &str) {
        self.cache.drop_session(tenant, sid);
    }

    /// Drops the read tokens this node found live (admins changed on another node).
    pub fn drop_cached_readers(&self) {
        self.cache.drop_readers();
    }

    /// Changes whenever admins, their sessions or keys changed (here or on another
    /// node): the realtime broker checks its sockets' read tokens again.
    pub fn reader_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.cache.readers_dropped()
    }

    /// Who says whether an admin's read token still stands (the admin layer). Set once,
    /// by the composition root; until then read tokens are refused.
    pub fn set_reader_check(&self, check: Arc<dyn ReaderCheck>) {
        let _ = self.reader_check.set(check);
    }
}

pub struct AuthService {
    store: Store,
    keyring: Arc<Keyring>,
    mailer: Arc<Mailer>,
    limiter: Arc<LoginLimiter>,
    cache: Arc<AuthCache>,
    settings: AuthSettings,
    reader_check: OnceLock<Arc<dyn ReaderCheck>>,
}

fn field(field: &'static str, problem: impl Into<String>) -> AuthError {
    CredentialError::InvalidField {
        field,
        problem: problem.into(),
    }
    .into()
}

fn email_of(raw: &str) -> Result<String, AuthError> {
    password::normalize_email(raw).map_err(|p| field("email", p))
}

/// The password policy for a new password of the account of `email` (None: not known
/// yet), as the error of the input field `name`.
fn check_password(name: &'static str, raw: &str, email: Option<&str>) -> Result<(), AuthError> {
    password_policy(raw, email).map_err(|p| {
        if p.is_weak() {
            CredentialError::WeakPassword {
                field: name,
                problem: p.describe(),
            }
            .into()
        } else {
            field(name, p.describe())
        }
    })
}

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
            reader_check: OnceLock::new(),
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
}

pub fn require_user(scope: &Scope) -> Result<&UserCaller, AuthError> {
    match scope.caller() {
        Caller::User(u) => Ok(u),
        _ => Err(AuthError::AuthRequired),
    }
}
