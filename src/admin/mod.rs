//! Platform administration: first-run setup, admin login, admins and their roles, admin
//! API keys, console sessions, tenants, service keys, a tenant's users, rules, secrets
//! and deploys, and the audit log. The admin HTTP API and the local CLI both call these
//! functions; every change they make is written to the audit log. `AdminService` is
//! defined here with its shared helpers; each concern adds its methods in a file of its
//! own (`setup`, `tenants`, `tenant_keys`, `users`, `tenant_rules`, `tenant_secrets`,
//! `deploys`, `audit`, `admins`, `invites`, `api_keys`, `sessions`, `read_tokens`,
//! `placement`).

mod access;
mod admins;
mod api_keys;
mod audit;
mod collections;
mod deploys;
mod error;
pub mod export;
mod invites;
mod placement;
mod read_tokens;
mod sessions;
mod setup;
mod tenant_keys;
mod tenant_rules;
mod tenant_secrets;
mod tenants;
mod users;

pub use access::{Need, Principal, Role, Via, is_mutating, route_need};
pub use admins::AdminView;
pub use api_keys::{ApiKeyView, NewApiKey};
pub use collections::CollectionCount;
pub use error::AdminError;
pub use invites::{InviteMail, InviteView};
pub use read_tokens::READ_TOKEN_TTL;
pub use sessions::{COOKIE as SESSION_COOKIE, OpenedSession, SessionTimes};

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::auth::CredentialError;
use crate::auth::cache::AuthCache;
use crate::auth::password;
use crate::auth::password_policy::password_policy;
use crate::auth::ratelimit::LoginLimiter;
use crate::auth::tokens::{ADMIN_AUDIENCE, AdminClaims, Keyring, TokenError, admin_claims};
use crate::crypto::{random_token, sha256_hex};
use crate::functions::{Deployed, FunctionService};
use crate::rules::{Installed, RulesRegistry};
use crate::secrets::{SecretInfo, SecretsService};
use crate::store::{
    AdminRow, AuditEntry, AuditQuery, DeploySummary, InvocationRow, JobInfo, NewAudit,
    ServiceKeyRow, Store, StoreError, UserQuery, UserRow,
};
use crate::tenancy::{Scope, Slug, Tenant, service_keys};
use crate::tenant_registry::Registry;

type Result<T> = std::result::Result<T, AdminError>;

/// A tenant slug as it arrives (API body, CLI argument), refused as a field of the request.
pub fn parse_slug(slug: &str) -> Result<Slug> {
    Slug::parse(slug).map_err(|p| field("slug", p))
}

fn field(field: &'static str, problem: impl Into<String>) -> AdminError {
    CredentialError::InvalidField {
        field,
        problem: problem.into(),
    }
    .into()
}

fn invalid_token(why: impl Into<String>) -> AdminError {
    CredentialError::InvalidToken(why.into()).into()
}

/// Who performed an admin action, as written to the audit log.
#[derive(Clone, Debug)]
pub struct Actor(pub String);

impl Actor {
    pub fn admin(email: &str) -> Actor {
        Actor(format!("admin:{email}"))
    }
    pub fn cli() -> Actor {
        Actor("cli".into())
    }
    /// The audit name of a verified caller: `admin:<email>`, or `key:<prefix>`.
    pub fn of(p: &Principal) -> Actor {
        match &p.key_prefix {
            Some(prefix) => Actor(format!("key:{prefix}")),
            None => Actor::admin(&p.email),
        }
    }
}

pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

pub struct AdminService {
    store: Store,
    registry: Arc<Registry>,
    rules: Arc<RulesRegistry>,
    secrets: Arc<SecretsService>,
    functions: Arc<FunctionService>,
    usage: Arc<crate::usage::Usage>,
    keyring: Arc<Keyring>,
    limiter: Arc<LoginLimiter>,
    auth_cache: Arc<AuthCache>,
    admin_ttl: Duration,
    sessions: SessionTimes,
    invites: InviteMail,
}

fn validate_cors_origin(origin: &str) -> std::result::Result<(), String> {
    if origin == "*" {
        return Ok(());
    }
    let rest = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
        .ok_or_else(|| format!("'{origin}' must start with http:// or https://"))?;
    if rest.is_empty()
        || rest.contains('/')
        || rest.contains('?')
        || rest.contains('#')
        || rest.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "'{origin}' must be an origin: scheme://host[:port], no path"
        ));
    }
    Ok(())
}

/// Refuses a display name holding control characters: they have no place in a name,
/// and PostgreSQL refuses U+0000 in text outright (which would be a 500).
fn no_control(name: &'static str, value: &str) -> Result<()> {
    if value.chars().any(char::is_control) {
        return Err(field(name, "must not contain control characters"));
    }
    Ok(())
}

/// Refuses a query value holding U+0000: nothing stored can hold one, and PostgreSQL
/// refuses it in a text parameter (which would be a 500).
fn no_nul(name: &'static str, value: Option<&str>) -> Result<()> {
    match value {
        Some(v) if v.contains('\0') => Err(field(name, "must not contain U+0000")),
        _ => Ok(()),
    }
}

pub fn encode_cursor(value: &str) -> String {
    URL_SAFE_NO_PAD.encode(value)
}

fn decode_cursor(cursor: &str) -> Result<String> {
    let bytes = URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| AdminError::InvalidCursor)?;
    let id = String::from_utf8(bytes).map_err(|_| AdminError::InvalidCursor)?;
    // Every admin list pages by an id (a UUID or a number): anything else was not made
    // here, and PostgreSQL would refuse a NUL in a text parameter outright.
    let plausible = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !plausible {
        return Err(AdminError::InvalidCursor);
    }
    Ok(id)
}

impl AdminService {
    // Wiring only: each argument is a distinct shared service.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Store,
        registry: Arc<Registry>,
        rules: Arc<RulesRegistry>,
        secrets: Arc<SecretsService>,
        functions: Arc<FunctionService>,
        usage: Arc<crate::usage::Usage>,
        keyring: Arc<Keyring>,
        limiter: Arc<LoginLimiter>,
        auth_cache: Arc<AuthCache>,
        admin_ttl: Duration,
        sessions: SessionTimes,
        invites: InviteMail,
    ) -> AdminService {
        AdminService {
            store,
            registry,
            rules,
            secrets,
            functions,
            usage,
            keyring,
            limiter,
            auth_cache,
            admin_ttl,
            sessions,
            invites,
        }
    }

    pub fn admin_ttl(&self) -> Duration {
        self.admin_ttl
    }

    async fn audit(
        &self,
        actor: &Actor,
        action: &str,
        tenant: Option<&str>,
        target: Option<&str>,
        detail: serde_json::Value,
    ) -> Result<()> {
        self.store
            .append_audit(NewAudit {
                actor: &actor.0,
                action,
                tenant,
                target,
                detail,
            })
            .await?;
        // Every audited change to a tenant (its state, rules, deploys, secrets, keys,
        // users) is one other nodes may hold in a cache: tell them to drop it.
        if let Some(slug) = tenant {
            self.store.announce_tenant_change(slug).await;
        }
        Ok(())
    }
}

fn not_found_as_tenant(e: StoreError) -> AdminError {
    match e {
        StoreError::NotFound => AdminError::TenantNotFound,
        other => other.into(),
    }
}

fn not_found_as(e: StoreError, what: &'static str) -> AdminError {
    match e {
        StoreError::NotFound => AdminError::NotFound(what),
        other => other.into(),
    }
}
