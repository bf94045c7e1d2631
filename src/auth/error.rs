//! The errors of end-user and admin authentication. Each says its stable `code()`, its
//! `kind()` and the detail a client may read; the HTTP edge (`error::from_domain`)
//! builds its answer from these, the realtime socket its error frame.

use std::time::Duration;

use crate::fault::Kind;
use crate::store::StoreError;

/// Proving who one is went wrong: the same failures for a tenant's end users
/// ([`AuthError`]) and for platform admins (`admin::AdminError`), so both answer them
/// with the same codes.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
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
    #[error("rate limited")]
    RateLimited(Duration),
    #[error("invalid token: {0}")]
    InvalidToken(String),
}

impl CredentialError {
    pub fn code(&self) -> &'static str {
        match self {
            CredentialError::InvalidField { .. } => "validation_failed",
            CredentialError::WeakPassword { .. } => "weak_password",
            CredentialError::InvalidCredentials => "invalid_credentials",
            CredentialError::RateLimited(_) => "rate_limited",
            CredentialError::InvalidToken(_) => "invalid_token",
        }
    }

    pub fn kind(&self) -> Kind {
        match self {
            CredentialError::InvalidField { .. } | CredentialError::WeakPassword { .. } => {
                Kind::Invalid
            }
            CredentialError::InvalidCredentials | CredentialError::InvalidToken(_) => {
                Kind::Unauthenticated
            }
            CredentialError::RateLimited(_) => Kind::RateLimited,
        }
    }

    pub fn client_detail(&self) -> String {
        match self {
            CredentialError::InvalidField { field, problem }
            | CredentialError::WeakPassword { field, problem } => format!("{field}: {problem}"),
            CredentialError::RateLimited(_) => "too many attempts; retry later".into(),
            CredentialError::InvalidToken(why) => why.clone(),
            CredentialError::InvalidCredentials => self.to_string(),
        }
    }

    /// The input field at fault, and what is wrong with it.
    pub fn field(&self) -> Option<(&'static str, &str)> {
        match self {
            CredentialError::InvalidField { field, problem }
            | CredentialError::WeakPassword { field, problem } => Some((field, problem)),
            _ => None,
        }
    }

    /// How long to wait before trying again, in whole seconds (rounded up).
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            CredentialError::RateLimited(wait) => {
                Some(wait.as_secs() + u64::from(wait.subsec_nanos() > 0))
            }
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(transparent)]
    Credential(#[from] CredentialError),
    #[error("email already registered")]
    EmailTaken,
    #[error("user disabled")]
    UserDisabled,
    #[error("invalid refresh token")]
    InvalidRefreshToken,
    #[error("refresh token reused")]
    RefreshTokenReused,
    #[error("token expired")]
    TokenExpired,
    #[error("session revoked")]
    SessionRevoked,
    /// An admin's read token whose admin, session or key has ended.
    #[error("read token revoked")]
    ReaderRevoked,
    /// An admin's read token for a tenant its admin may no longer see.
    #[error("tenant not found")]
    TenantHidden,
    #[error("authentication required")]
    AuthRequired,
    #[error("invalid or expired single-use token")]
    InvalidOneTimeToken,
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A fault of the server's own (hashing, signing): logged, never shown.
    #[error("{0}")]
    Internal(String),
}

impl From<anyhow::Error> for AuthError {
    fn from(e: anyhow::Error) -> Self {
        AuthError::Internal(format!("{e:#}"))
    }
}

impl AuthError {
    /// The stable machine-readable code clients branch on.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Credential(e) => e.code(),
            AuthError::EmailTaken => "email_taken",
            AuthError::UserDisabled => "user_disabled",
            AuthError::InvalidRefreshToken => "invalid_refresh_token",
            AuthError::RefreshTokenReused => "refresh_token_reused",
            AuthError::TokenExpired => "token_expired",
            AuthError::SessionRevoked | AuthError::ReaderRevoked => "session_revoked",
            AuthError::TenantHidden => "tenant_not_found",
            AuthError::AuthRequired => "auth_required",
            AuthError::InvalidOneTimeToken => "invalid_or_expired_token",
            AuthError::Store(e) => e.code(),
            AuthError::Internal(_) => "internal",
        }
    }

    pub fn kind(&self) -> Kind {
        match self {
            AuthError::Credential(e) => e.kind(),
            AuthError::EmailTaken => Kind::Conflict,
            AuthError::UserDisabled => Kind::Denied,
            AuthError::InvalidRefreshToken
            | AuthError::RefreshTokenReused
            | AuthError::TokenExpired
            | AuthError::SessionRevoked
            | AuthError::ReaderRevoked
            | AuthError::AuthRequired => Kind::Unauthenticated,
            AuthError::TenantHidden => Kind::NotFound,
            AuthError::InvalidOneTimeToken => Kind::Invalid,
            AuthError::Store(e) => e.kind(),
            AuthError::Internal(_) => Kind::Internal,
        }
    }

    /// What a client is told. Faults of the server's own say nothing of their cause.
    pub fn client_detail(&self) -> String {
        match self {
            AuthError::Credential(e) => e.client_detail(),
            AuthError::EmailTaken => "this email is already registered".into(),
            AuthError::UserDisabled => "this account is disabled".into(),
            AuthError::InvalidRefreshToken => {
                "the refresh token is unknown, expired or revoked".into()
            }
            AuthError::RefreshTokenReused => {
                "this refresh token was already used; the session has been revoked".into()
            }
            AuthError::TokenExpired => "the access token has expired".into(),
            AuthError::SessionRevoked => "the session of this token has ended".into(),
            AuthError::ReaderRevoked => {
                "the admin, console session or API key this read token was made through has \
                 ended"
                    .into()
            }
            AuthError::TenantHidden => "no tenant with this slug".into(),
            AuthError::AuthRequired => "this endpoint needs a signed-in user".into(),
            AuthError::InvalidOneTimeToken => {
                "the token is unknown, expired or already used".into()
            }
            AuthError::Store(e) => e.client_detail(),
            AuthError::Internal(_) => "internal server error".into(),
        }
    }

    /// The input field at fault, and what is wrong with it, when there is one.
    pub fn field(&self) -> Option<(&'static str, &str)> {
        match self {
            AuthError::Credential(e) => e.field(),
            AuthError::EmailTaken => Some(("email", "is already registered")),
            _ => None,
        }
    }

    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            AuthError::Credential(e) => e.retry_after_secs(),
            _ => None,
        }
    }
}
