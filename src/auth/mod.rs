//! End-user authentication: passwords, tokens, sessions and the account flows.

pub mod cache;
pub mod mail;
pub mod password;
pub mod password_policy;
pub mod ratelimit;
pub mod service;
pub mod tokens;

pub use service::{AuthService, AuthSettings, ClientInfo, IssuedSession};

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
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
    #[error("email already registered")]
    EmailTaken,
    #[error("invalid email or password")]
    InvalidCredentials,
    #[error("user disabled")]
    UserDisabled,
    #[error("rate limited")]
    RateLimited(std::time::Duration),
    #[error("invalid refresh token")]
    InvalidRefreshToken,
    #[error("refresh token reused")]
    RefreshTokenReused,
    #[error("token expired")]
    TokenExpired,
    #[error("invalid token: {0}")]
    InvalidToken(String),
    #[error("session revoked")]
    SessionRevoked,
    #[error("authentication required")]
    AuthRequired,
    #[error("invalid or expired single-use token")]
    InvalidOneTimeToken,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl AuthError {
    /// The stable machine-readable code clients branch on, over HTTP and in WebSocket
    /// frames alike.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::InvalidField { .. } => "validation_failed",
            AuthError::WeakPassword { .. } => "weak_password",
            AuthError::EmailTaken => "email_taken",
            AuthError::InvalidCredentials => "invalid_credentials",
            AuthError::UserDisabled => "user_disabled",
            AuthError::RateLimited(_) => "rate_limited",
            AuthError::InvalidRefreshToken => "invalid_refresh_token",
            AuthError::RefreshTokenReused => "refresh_token_reused",
            AuthError::TokenExpired => "token_expired",
            AuthError::InvalidToken(_) => "invalid_token",
            AuthError::SessionRevoked => "session_revoked",
            AuthError::AuthRequired => "auth_required",
            AuthError::InvalidOneTimeToken => "invalid_or_expired_token",
            AuthError::Store(e) => e.code(),
            AuthError::Internal(_) => "internal",
        }
    }

    /// What a client is told. Faults of the server's own say nothing of their cause.
    pub fn client_detail(&self) -> String {
        match self {
            AuthError::InvalidField { field, problem }
            | AuthError::WeakPassword { field, problem } => format!("{field}: {problem}"),
            AuthError::EmailTaken => "this email is already registered".into(),
            AuthError::InvalidCredentials => "invalid email or password".into(),
            AuthError::UserDisabled => "this account is disabled".into(),
            AuthError::RateLimited(_) => "too many attempts; retry later".into(),
            AuthError::InvalidRefreshToken => {
                "the refresh token is unknown, expired or revoked".into()
            }
            AuthError::RefreshTokenReused => {
                "this refresh token was already used; the session has been revoked".into()
            }
            AuthError::TokenExpired => "the access token has expired".into(),
            AuthError::InvalidToken(why) => why.clone(),
            AuthError::SessionRevoked => "the session of this token has ended".into(),
            AuthError::AuthRequired => "this endpoint needs a signed-in user".into(),
            AuthError::InvalidOneTimeToken => {
                "the token is unknown, expired or already used".into()
            }
            AuthError::Store(e) => e.client_detail(),
            AuthError::Internal(_) => "internal server error".into(),
        }
    }
}
