//! The admin layer's one error type. Each failure says its stable `code()`, its `kind()`
//! and the detail a client may read; the HTTP edge (`error::from_domain`) builds its
//! answer from these. Errors of the layers admin calls into (store, secrets, functions)
//! say their own.

use crate::auth::{AuthError, CredentialError};
use crate::fault::Kind;
use crate::functions::FnError;
use crate::rules::RuleSetError;
use crate::secrets::SecretsError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// A malformed field, a weak password, a wrong password or token, too many tries:
    /// said as end users' authentication says them.
    #[error(transparent)]
    Credential(#[from] CredentialError),
    /// Creating a tenant's user: refused as sign-up refuses it (`email_taken`, ...).
    #[error(transparent)]
    User(#[from] AuthError),
    #[error("invalid setup token")]
    InvalidSetupToken,
    #[error("token expired")]
    TokenExpired,
    #[error("tenant not found")]
    TenantNotFound,
    #[error("tenant exists")]
    TenantExists,
    /// A storage location that is not configured; the text lists those that are.
    #[error("unknown storage location: {0}")]
    UnknownLocation(String),
    #[error("admin exists")]
    AdminExists,
    #[error("not found: {0}")]
    NotFound(&'static str),
    #[error("invalid cursor")]
    InvalidCursor,
    #[error("invalid rule set")]
    InvalidRules(Vec<RuleSetError>),
    /// Rule test cases that are not valid TOML cases; the message starts with the line.
    #[error("invalid test cases: {0}")]
    InvalidTestCases(String),
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
    /// A fault of the server's own (hashing, signing): logged, never shown.
    #[error("{0}")]
    Internal(String),
}

impl From<crate::rules::InstallError> for AdminError {
    fn from(e: crate::rules::InstallError) -> Self {
        match e {
            crate::rules::InstallError::Invalid(errors) => AdminError::InvalidRules(errors),
            crate::rules::InstallError::Store(e) => AdminError::Store(e),
        }
    }
}

impl From<anyhow::Error> for AdminError {
    fn from(e: anyhow::Error) -> Self {
        AdminError::Internal(format!("{e:#}"))
    }
}

impl AdminError {
    /// The stable machine-readable code clients branch on.
    pub fn code(&self) -> &'static str {
        match self {
            AdminError::Credential(e) => e.code(),
            AdminError::User(e) => e.code(),
            AdminError::InvalidSetupToken => "invalid_setup_token",
            AdminError::TokenExpired => "token_expired",
            AdminError::TenantNotFound => "tenant_not_found",
            AdminError::TenantExists => "tenant_exists",
            AdminError::UnknownLocation(_) => "unknown_location",
            AdminError::AdminExists => "admin_exists",
            AdminError::NotFound(_) => "not_found",
            AdminError::InvalidCursor => "invalid_cursor",
            AdminError::InvalidTestCases(_) => "invalid_test_cases",
            AdminError::InvalidRules(_) => "invalid_rules",
            AdminError::Forbidden(_) => "insufficient_role",
            AdminError::LastOwner => "last_owner",
            AdminError::SessionExpired => "session_expired",
            AdminError::CsrfFailed => "csrf_failed",
            AdminError::Store(e) => e.code(),
            AdminError::Secrets(e) => e.code(),
            AdminError::Functions(e) => e.code(),
            AdminError::Internal(_) => "internal",
        }
    }

    pub fn kind(&self) -> Kind {
        match self {
            AdminError::Credential(e) => e.kind(),
            AdminError::User(e) => e.kind(),
            AdminError::InvalidCursor
            | AdminError::UnknownLocation(_)
            | AdminError::InvalidRules(_)
            | AdminError::InvalidTestCases(_) => Kind::Invalid,
            AdminError::TokenExpired | AdminError::SessionExpired => Kind::Unauthenticated,
            AdminError::InvalidSetupToken | AdminError::Forbidden(_) | AdminError::CsrfFailed => {
                Kind::Denied
            }
            AdminError::TenantNotFound | AdminError::NotFound(_) => Kind::NotFound,
            AdminError::TenantExists | AdminError::AdminExists | AdminError::LastOwner => {
                Kind::Conflict
            }
            AdminError::Store(e) => e.kind(),
            AdminError::Secrets(e) => e.kind(),
            AdminError::Functions(e) => e.kind(),
            AdminError::Internal(_) => Kind::Internal,
        }
    }

    /// What a client is told. Faults of the server's own say nothing of their cause.
    pub fn client_detail(&self) -> String {
        match self {
            AdminError::Credential(e) => e.client_detail(),
            AdminError::User(e) => e.client_detail(),
            AdminError::InvalidSetupToken => {
                "the setup token is wrong, used, or an admin already exists".into()
            }
            AdminError::TokenExpired => "the admin token has expired".into(),
            AdminError::TenantNotFound => "no tenant with this slug".into(),
            AdminError::TenantExists => "a tenant with this slug exists".into(),
            AdminError::UnknownLocation(m) => m.clone(),
            AdminError::AdminExists => "an admin with this email exists".into(),
            AdminError::NotFound(what) => format!("no such {what}"),
            AdminError::InvalidCursor => "the cursor is not valid".into(),
            AdminError::InvalidTestCases(m) => format!("the test cases are not valid: {m}"),
            AdminError::InvalidRules(errors) => {
                let first = errors.first().map(rule_error_line).unwrap_or_default();
                format!("the rule set has {} error(s); first: {first}", errors.len())
            }
            AdminError::Forbidden(why) => (*why).into(),
            AdminError::LastOwner => {
                "the last owner cannot be removed or demoted; make another owner first".into()
            }
            AdminError::SessionExpired => {
                "the admin session expired or ended; sign in again".into()
            }
            AdminError::CsrfFailed => {
                "a request made with the session cookie must carry its X-CSRF-Token".into()
            }
            AdminError::Store(e) => e.client_detail(),
            AdminError::Secrets(e) => e.client_detail(),
            AdminError::Functions(e) => e.client_detail(),
            AdminError::Internal(_) => "internal server error".into(),
        }
    }

    /// The input field at fault, and what is wrong with it, when there is one.
    pub fn field(&self) -> Option<(&'static str, &str)> {
        match self {
            AdminError::Credential(e) => e.field(),
            AdminError::User(e) => e.field(),
            AdminError::TenantExists => Some(("slug", "is taken")),
            AdminError::UnknownLocation(_) => {
                Some(("location", "is not a configured storage location"))
            }
            _ => None,
        }
    }

    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            AdminError::Credential(e) => e.retry_after_secs(),
            AdminError::User(e) => e.retry_after_secs(),
            _ => None,
        }
    }
}

/// One rule set error as the first line of the answer names it.
fn rule_error_line(e: &RuleSetError) -> String {
    let place = match (&e.collection, &e.operation) {
        (Some(c), Some(o)) => format!("[{c}] {o}, "),
        (Some(c), None) => format!("[{c}], "),
        _ => String::new(),
    };
    format!("{place}line {} column {}: {}", e.line, e.column, e.message)
}
