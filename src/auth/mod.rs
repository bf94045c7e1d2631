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
