//! Platform administration: first-run setup, admin login, tenants, service keys, a
//! tenant's users and secrets, and the audit log. The admin HTTP API and the local CLI
//! both call these functions; every change they make is written to the audit log.

mod access;
mod admins;
mod api_keys;
mod collections;
mod sessions;

pub use access::{Need, Principal, Role, Via, is_mutating, route_need};
pub use admins::AdminView;
pub use api_keys::{ApiKeyView, NewApiKey};
pub use collections::CollectionCount;
pub use sessions::{COOKIE as SESSION_COOKIE, OpenedSession, SessionTimes};

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::auth::cache::AuthCache;
use crate::auth::password;
use crate::auth::password_policy::password_policy;
use crate::auth::ratelimit::LoginLimiter;
use crate::auth::tokens::{ADMIN_AUDIENCE, AdminClaims, Keyring, TokenError, admin_claims};
use crate::crypto::{random_token, sha256_hex};
use crate::error::ApiError;
use crate::functions::{Deployed, FnError, FunctionService};
use crate::rules::{InstallError, Installed, RuleSetError, RulesRegistry};
use crate::secrets::{SecretInfo, SecretsError, SecretsService};
use crate::store::{
    AdminRow, AuditEntry, AuditQuery, DeploySummary, InvocationRow, JobInfo, NewAudit,
    ServiceKeyRow, Store, StoreError, UserQuery, UserRow,
};
use crate::tenancy::{Registry, Scope, Tenant, service_keys, validate_slug};

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{field} {problem}")]
    InvalidField {
        field: &'static str,
        problem: String,
    },
    #[error("{field} {problem}")]
    WeakPassword {
        field: &'static str,
        problem: String,
    },
    #[error("invalid email or password")]
    InvalidCredentials,
    #[error("invalid setup token")]
    InvalidSetupToken,
    #[error("token expired")]
    TokenExpired,
    #[error("invalid token: {0}")]
    InvalidToken(String),
    #[error("tenant not found")]
    TenantNotFound,
    #[error("tenant exists")]
    TenantExists,
    #[error("admin exists")]
    AdminExists,
    #[error("not found: {0}")]
    NotFound(&'static str),
    #[error("invalid cursor")]
    InvalidCursor,
    #[error("rate limited")]
    RateLimited(Duration),
    #[error("invalid rule set")]
    InvalidRules(Vec<RuleSetError>),
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    #[error("the last owner cannot be removed or demoted")]
    LastOwner,
    #[error("the admin session expired or ended")]
    SessionExpired,
    #[error("missing or wrong CSRF token")]
    CsrfFailed,
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    #[error(transparent)]
    Functions(#[from] FnError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<AdminError> for ApiError {
    fn from(err: AdminError) -> Self {
        match err {
            AdminError::InvalidField { field, problem } => ApiError::invalid_field(field, problem),
            AdminError::WeakPassword { field, problem } => {
                ApiError::field_problem("weak_password", field, problem)
            }
            AdminError::InvalidCredentials => {
                ApiError::unauthorized("invalid_credentials", "invalid email or password")
            }
            AdminError::InvalidSetupToken => ApiError::forbidden(
                "invalid_setup_token",
                "the setup token is wrong, used, or an admin already exists",
            ),
            AdminError::TokenExpired => {
                ApiError::unauthorized("token_expired", "the admin token has expired")
            }
            AdminError::InvalidToken(why) => ApiError::unauthorized("invalid_token", why),
            AdminError::TenantNotFound => {
                ApiError::not_found("tenant_not_found", "no tenant with this slug")
            }
            AdminError::TenantExists => {
                let mut e = ApiError::conflict("tenant_exists", "a tenant with this slug exists");
                e.fields = Some([("slug".to_string(), "is taken".to_string())].into());
                e
            }
            AdminError::AdminExists => {
                ApiError::conflict("admin_exists", "an admin with this email exists")
            }
            AdminError::NotFound(what) => {
                ApiError::not_found("not_found", format!("no such {what}"))
            }
            AdminError::InvalidCursor => ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_cursor",
                "the cursor is not valid",
            ),
            AdminError::RateLimited(wait) => {
                ApiError::too_many_requests(wait.as_secs() + u64::from(wait.subsec_nanos() > 0))
            }
            AdminError::InvalidRules(errors) => {
                let first = errors
                    .first()
                    .map(|e| {
                        let place = match (&e.collection, &e.operation) {
                            (Some(c), Some(o)) => format!("[{c}] {o}, "),
                            (Some(c), None) => format!("[{c}], "),
                            _ => String::new(),
                        };
                        format!("{place}line {} column {}: {}", e.line, e.column, e.message)
                    })
                    .unwrap_or_default();
                let mut a = ApiError::bad_request(
                    "invalid_rules",
                    format!("the rule set has {} error(s); first: {first}", errors.len()),
                );
                a.extra.insert(
                    "errors".into(),
                    serde_json::to_value(&errors).unwrap_or_default(),
                );
                a
            }
            AdminError::Forbidden(why) => ApiError::forbidden("insufficient_role", why),
            AdminError::LastOwner => ApiError::conflict(
                "last_owner",
                "the last owner cannot be removed or demoted; make another owner first",
            ),
            AdminError::SessionExpired => ApiError::unauthorized(
                "session_expired",
                "the admin session expired or ended; sign in again",
            ),
            AdminError::CsrfFailed => ApiError::forbidden(
                "csrf_failed",
                "a request made with the session cookie must carry its X-CSRF-Token",
            ),
            AdminError::Secrets(e) => e.into(),
            AdminError::Functions(e) => e.into(),
            AdminError::Store(e) => e.into(),
            AdminError::Internal(e) => ApiError::internal(e),
        }
    }
}

type Result<T> = std::result::Result<T, AdminError>;

fn field(field: &'static str, problem: impl Into<String>) -> AdminError {
    AdminError::InvalidField {
        field,
        problem: problem.into(),
    }
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

    // ---- first admin, login ---------------------------------------------------------------

    /// When no admin exists, makes a fresh one-time setup token (stored hashed) and
    /// returns it for printing. Each start without an admin replaces the previous token.
    pub async fn prepare_setup_token(&self) -> Result<Option<String>> {
        if self.store.count_admins().await? > 0 {
            self.store.clear_setup_token().await?;
            return Ok(None);
        }
        let token = random_token(24);
        self.store.put_setup_token(&sha256_hex(&token)).await?;
        Ok(Some(token))
    }

    async fn checked_credentials(&self, email: &str, pw: &str) -> Result<(String, String)> {
        let email = password::normalize_email(email).map_err(|p| field("email", p))?;
        password_policy(pw, Some(&email)).map_err(|p| {
            if p.is_weak() {
                AdminError::WeakPassword {
                    field: "password",
                    problem: p.describe(),
                }
            } else {
                field("password", p.describe())
            }
        })?;
        let hash = password::hash(pw.to_string()).await?;
        Ok((email, hash))
    }

    /// Creates the first admin with the setup token printed at start. Anyone may call
    /// it, so it is throttled per client IP (the login limiter's bucket) and it checks the
    /// token, and that no admin exists, before it spends a password hash on the request.
    pub async fn setup(
        &self,
        token: &str,
        email: &str,
        pw: &str,
        ip: &str,
    ) -> Result<(AdminRow, String)> {
        if token.is_empty() {
            return Err(field("token", "is required"));
        }
        self.limiter.check_ip(ip).map_err(AdminError::RateLimited)?;
        let token_hash = sha256_hex(token);
        if !self.store.setup_token_pending(&token_hash).await? {
            return Err(AdminError::InvalidSetupToken);
        }
        let (email, hash) = self.checked_credentials(email, pw).await?;
        let id = uuid::Uuid::now_v7().to_string();
        let admin = self
            .store
            .create_first_admin(&token_hash, &id, &email, &hash)
            .await?
            .ok_or(AdminError::InvalidSetupToken)?;
        self.audit(
            &Actor::admin(&admin.email),
            "admin.setup",
            None,
            Some(&admin.id),
            serde_json::json!({"email": admin.email}),
        )
        .await?;
        let token = self.keyring.sign(&admin_claims(
            &admin.id,
            &admin.email,
            admin.password_version,
            self.admin_ttl,
        ))?;
        Ok((admin, token))
    }

    /// Creates an admin from the local CLI (which has direct access to the data, so the
    /// admin is an owner).
    pub async fn create_admin(&self, email: &str, pw: &str) -> Result<AdminRow> {
        let (email, hash) = self.checked_credentials(email, pw).await?;
        let id = uuid::Uuid::now_v7().to_string();
        let admin = self
            .store
            .create_admin(&id, &email, &hash, Role::Owner.as_str(), "[]")
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => AdminError::AdminExists,
                other => other.into(),
            })?;
        self.store.clear_setup_token().await?;
        self.audit(
            &Actor::cli(),
            "admin.create",
            None,
            Some(&admin.id),
            serde_json::json!({"email": admin.email}),
        )
        .await?;
        Ok(admin)
    }

    /// An admin token for these credentials (`POST /admin/v1/auth/login`).
    pub async fn login(&self, email: &str, pw: &str, ip: &str) -> Result<String> {
        let admin = self.check_password(email, pw, ip).await?;
        Ok(self.keyring.sign(&admin_claims(
            &admin.id,
            &admin.email,
            admin.password_version,
            self.admin_ttl,
        ))?)
    }

    /// The admin these credentials prove, rate limited like a tenant user's login (see
    /// `auth::ratelimit`), without the known-address pass: admins are few, and the
    /// ceiling guards the whole platform. Token and session logins share the buckets.
    async fn check_password(&self, email: &str, pw: &str, ip: &str) -> Result<AdminRow> {
        let email = password::normalize_email(email).map_err(|p| field("email", p))?;
        let account = format!("admin:{email}");
        let mut attempt = self
            .limiter
            .begin_login(ip, &account)
            .map_err(AdminError::RateLimited)?;
        if let Err(wait) = attempt.charge_account(&account) {
            attempt.cancel();
            return Err(AdminError::RateLimited(wait));
        }
        let Some(admin) = self.store.get_admin_by_email(&email).await? else {
            password::verify_dummy(pw.to_string()).await;
            return Err(AdminError::InvalidCredentials);
        };
        if !password::verify(pw.to_string(), admin.password_hash.clone()).await {
            return Err(AdminError::InvalidCredentials);
        }
        attempt.succeeded();
        Ok(admin)
    }

    /// The principal of an `Authorization: Bearer` credential: an admin API key
    /// (`pak_...`) or an admin token.
    pub async fn verify_bearer(&self, token: &str) -> Result<Principal> {
        if token.starts_with(api_keys::KEY_MARK) {
            return self.verify_api_key(token).await;
        }
        let claims: AdminClaims =
            self.keyring
                .verify(token, ADMIN_AUDIENCE)
                .await
                .map_err(|e| match e {
                    TokenError::Expired => AdminError::TokenExpired,
                    TokenError::Invalid(why) => AdminError::InvalidToken(why),
                })?;
        let admin = self
            .store
            .get_admin(&claims.sub)
            .await?
            .ok_or_else(|| AdminError::InvalidToken("admin no longer exists".into()))?;
        if claims.pwv != admin.password_version {
            return Err(AdminError::InvalidToken(
                "the password changed since this token was issued".into(),
            ));
        }
        admins::principal_of(admin, Via::Token)
    }

    // ---- tenants ----------------------------------------------------------------------

    pub async fn create_tenant(&self, actor: &Actor, slug: &str, name: &str) -> Result<Tenant> {
        validate_slug(slug).map_err(|p| field("slug", p))?;
        let name = name.trim();
        let name = if name.is_empty() { slug } else { name };
        if name.chars().count() > 200 {
            return Err(field("name", "must be at most 200 characters"));
        }
        no_control("name", name)?;
        let row = self
            .store
            .create_tenant(slug, name)
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => AdminError::TenantExists,
                other => other.into(),
            })?;
        self.registry.invalidate(slug);
        self.audit(
            actor,
            "tenant.create",
            Some(slug),
            None,
            serde_json::json!({"name": name}),
        )
        .await?;
        Ok(row.into())
    }

    pub async fn list_tenants(&self) -> Result<Vec<Tenant>> {
        Ok(self
            .store
            .list_tenants()
            .await?
            .into_iter()
            .map(Tenant::from)
            .collect())
    }

    /// The tenants this principal sees (a tenant admin: their own).
    pub async fn list_visible_tenants(&self, p: &Principal) -> Result<Vec<Tenant>> {
        let mut tenants = self.list_tenants().await?;
        tenants.retain(|t| p.sees(t.id));
        Ok(tenants)
    }

    /// The id of the tenant with this slug, read from the store (not the cache).
    pub async fn tenant_id(&self, slug: &str) -> Result<Option<i64>> {
        Ok(self.store.get_tenant_by_slug(slug).await?.map(|t| t.id))
    }

    pub async fn get_tenant(&self, slug: &str) -> Result<Tenant> {
        self.store
            .get_tenant_by_slug(slug)
            .await?
            .map(Tenant::from)
            .ok_or(AdminError::TenantNotFound)
    }

    pub async fn update_tenant(
        &self,
        actor: &Actor,
        slug: &str,
        name: Option<&str>,
        cors_origins: Option<&[String]>,
    ) -> Result<Tenant> {
        let name = name.map(str::trim);
        if let Some(n) = name
            && (n.is_empty() || n.chars().count() > 200)
        {
            return Err(field("name", "must be 1-200 characters"));
        }
        if let Some(n) = name {
            no_control("name", n)?;
        }
        if let Some(origins) = cors_origins {
            if origins.len() > 100 {
                return Err(field("cors_origins", "at most 100 origins"));
            }
            for o in origins {
                validate_cors_origin(o).map_err(|p| field("cors_origins", p))?;
            }
        }
        let cors_json = cors_origins.map(|o| serde_json::to_string(o).unwrap_or_default());
        let row = self
            .store
            .update_tenant(slug, name, None, cors_json.as_deref())
            .await
            .map_err(not_found_as_tenant)?;
        self.registry.invalidate(slug);
        self.audit(
            actor,
            "tenant.update",
            Some(slug),
            None,
            serde_json::json!({"name": name, "cors_origins": cors_origins}),
        )
        .await?;
        Ok(row.into())
    }

    pub async fn set_suspended(
        &self,
        actor: &Actor,
        slug: &str,
        suspended: bool,
    ) -> Result<Tenant> {
        let row = self
            .store
            .update_tenant(slug, None, Some(suspended), None)
            .await
            .map_err(not_found_as_tenant)?;
        self.registry.invalidate(slug);
        let action = if suspended {
            "tenant.suspend"
        } else {
            "tenant.resume"
        };
        self.audit(actor, action, Some(slug), None, serde_json::json!({}))
            .await?;
        Ok(row.into())
    }

    pub async fn delete_tenant(&self, actor: &Actor, slug: &str) -> Result<()> {
        let row = self
            .store
            .delete_tenant(slug)
            .await
            .map_err(not_found_as_tenant)?;
        self.registry.invalidate(slug);
        self.secrets.forget(row.id);
        self.audit(
            actor,
            "tenant.delete",
            Some(slug),
            None,
            serde_json::json!({}),
        )
        .await?;
        Ok(())
    }

    /// A scope for acting on `slug`'s data as an admin. Read from the store, not the
    /// cache, so an admin always sees the tenant as it is now.
    pub(crate) async fn scope(&self, actor: &Actor, slug: &str) -> Result<Scope> {
        let tenant = self.get_tenant(slug).await?;
        Ok(Scope::admin(Arc::new(tenant), &actor.0))
    }

    // ---- service keys -----------------------------------------------------------------

    /// Creates a service key; the returned secret is shown this once and never again.
    pub async fn create_key(
        &self,
        actor: &Actor,
        slug: &str,
        name: &str,
    ) -> Result<(ServiceKeyRow, String)> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(field("name", "must be 1-100 characters"));
        }
        no_control("name", name)?;
        let scope = self.scope(actor, slug).await?;
        let generated = service_keys::generate();
        let id = uuid::Uuid::now_v7().to_string();
        let row = self
            .store
            .create_service_key(&scope, &id, name, &generated.prefix, &generated.hash)
            .await?;
        self.audit(
            actor,
            "key.create",
            Some(slug),
            Some(&row.id),
            serde_json::json!({"name": name, "prefix": row.prefix}),
        )
        .await?;
        Ok((row, generated.key))
    }

    pub async fn list_keys(&self, actor: &Actor, slug: &str) -> Result<Vec<ServiceKeyRow>> {
        let scope = self.scope(actor, slug).await?;
        Ok(self.store.list_service_keys(&scope).await?)
    }

    pub async fn revoke_key(&self, actor: &Actor, slug: &str, id: &str) -> Result<ServiceKeyRow> {
        let scope = self.scope(actor, slug).await?;
        let row = self
            .store
            .revoke_service_key(&scope, id)
            .await
            .map_err(|e| not_found_as(e, "service key"))?;
        self.auth_cache.forget_key(scope.tenant().id, &row.prefix);
        self.audit(
            actor,
            "key.revoke",
            Some(slug),
            Some(id),
            serde_json::json!({}),
        )
        .await?;
        Ok(row)
    }

    // ---- a tenant's users -------------------------------------------------------------

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
        let scope = self.scope(actor, slug).await?;
        let user = self
            .store
            .set_user_disabled(&scope, id, disabled)
            .await
            .map_err(|e| not_found_as(e, "user"))?;
        if disabled {
            self.store.revoke_user_sessions(&scope, id, None).await?;
        }
        self.auth_cache.forget_user(scope.tenant().id, id);
        let action = if disabled {
            "user.disable"
        } else {
            "user.enable"
        };
        self.audit(actor, action, Some(slug), Some(id), serde_json::json!({}))
            .await?;
        Ok(user)
    }

    pub async fn revoke_user_sessions(&self, actor: &Actor, slug: &str, id: &str) -> Result<u64> {
        let scope = self.scope(actor, slug).await?;
        if self.store.get_user(&scope, id).await?.is_none() {
            return Err(AdminError::NotFound("user"));
        }
        let n = self.store.revoke_user_sessions(&scope, id, None).await?;
        self.auth_cache.forget_user(scope.tenant().id, id);
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
        let scope = self.scope(actor, slug).await?;
        self.store
            .delete_user(&scope, id)
            .await
            .map_err(|e| not_found_as(e, "user"))?;
        self.auth_cache.forget_user(scope.tenant().id, id);
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

    // ---- rules ----------------------------------------------------------------------------

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

    // ---- secrets --------------------------------------------------------------------------

    /// Creates or replaces a secret. The value is never logged, audited or returned.
    pub async fn set_secret(
        &self,
        actor: &Actor,
        slug: &str,
        name: &str,
        value: &str,
    ) -> Result<SecretInfo> {
        let scope = self.scope(actor, slug).await?;
        let info = self.secrets.set(&scope, name, value).await?;
        self.audit(
            actor,
            "secret.set",
            Some(slug),
            Some(&info.name),
            serde_json::json!({}),
        )
        .await?;
        Ok(info)
    }

    /// Names and update times; never values.
    pub async fn list_secrets(&self, actor: &Actor, slug: &str) -> Result<Vec<SecretInfo>> {
        let scope = self.scope(actor, slug).await?;
        Ok(self.secrets.list(&scope).await?)
    }

    pub async fn delete_secret(&self, actor: &Actor, slug: &str, name: &str) -> Result<()> {
        let scope = self.scope(actor, slug).await?;
        self.secrets.delete(&scope, name).await?;
        self.audit(
            actor,
            "secret.delete",
            Some(slug),
            Some(name),
            serde_json::json!({}),
        )
        .await?;
        Ok(())
    }

    // ---- function deploys --------------------------------------------------------------

    /// Validates a bundle whole and activates it as the tenant's next deploy version.
    pub async fn deploy(
        &self,
        actor: &Actor,
        slug: &str,
        files: std::collections::BTreeMap<String, String>,
    ) -> Result<Deployed> {
        let scope = self.scope(actor, slug).await?;
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
        let scope = self.scope(actor, slug).await?;
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

    /// A tenant's metered use per day over the last `days` days, and the total.
    pub async fn usage(
        &self,
        slug: &str,
        days: Option<u32>,
    ) -> Result<(Vec<crate::usage::UsageDay>, crate::store::UsageCounts)> {
        let days = days.unwrap_or(30);
        if !(1..=366).contains(&days) {
            return Err(field("days", "must be between 1 and 366"));
        }
        let tenant = self.get_tenant(slug).await?;
        Ok(self.usage.report(tenant.id, days).await?)
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
        let scope = self.scope(actor, slug).await?;
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

    // ---- audit ------------------------------------------------------------------------

    /// The audit log; a tenant admin reads only the entries of their tenants (no
    /// platform-wide ones: admins, keys, other tenants).
    pub async fn list_audit(
        &self,
        p: &Principal,
        tenant: Option<&str>,
        cursor: Option<&str>,
        limit: Option<i64>,
    ) -> Result<Page<AuditEntry>> {
        no_nul("tenant", tenant)?;
        let limit = limit.unwrap_or(100);
        if !(1..=1000).contains(&limit) {
            return Err(field("limit", "must be between 1 and 1000"));
        }
        let before_id = match cursor {
            Some(c) => Some(
                decode_cursor(c)?
                    .parse::<i64>()
                    .map_err(|_| AdminError::InvalidCursor)?,
            ),
            None => None,
        };
        let visible: Option<Vec<String>> = if p.role == Role::TenantAdmin {
            Some(
                self.list_visible_tenants(p)
                    .await?
                    .into_iter()
                    .map(|t| t.slug)
                    .collect(),
            )
        } else {
            None
        };
        let mut items = self
            .store
            .list_audit(AuditQuery {
                tenant,
                visible: visible.as_deref(),
                before_id,
                limit: limit + 1,
            })
            .await?;
        let next_cursor = if items.len() as i64 > limit {
            items.truncate(limit as usize);
            items.last().map(|e| encode_cursor(&e.id.to_string()))
        } else {
            None
        };
        Ok(Page { items, next_cursor })
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
