//! End-user authentication: passwords, tokens, sessions and the account flows.

pub mod cache;
pub mod mail;
pub mod password;
pub mod password_policy;
pub mod ratelimit;
pub mod service;
pub mod tokens;

use axum::http::StatusCode;

pub use service::{AuthService, AuthSettings, ClientInfo, IssuedSession};

use crate::error::ApiError;
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

impl From<AuthError> for ApiError {
    fn from(err: AuthError) -> Self {
        match err {
            AuthError::InvalidField { field, problem } => ApiError::invalid_field(field, problem),
            AuthError::WeakPassword { field, problem } => {
                ApiError::field_problem("weak_password", field, problem)
            }
            AuthError::EmailTaken => {
                let mut e = ApiError::conflict("email_taken", "this email is already registered");
                e.fields =
                    Some([("email".to_string(), "is already registered".to_string())].into());
                e
            }
            AuthError::InvalidCredentials => {
                ApiError::unauthorized("invalid_credentials", "invalid email or password")
            }
            AuthError::UserDisabled => {
                ApiError::forbidden("user_disabled", "this account is disabled")
            }
            AuthError::RateLimited(wait) => {
                ApiError::too_many_requests(wait.as_secs() + u64::from(wait.subsec_nanos() > 0))
            }
            AuthError::InvalidRefreshToken => ApiError::unauthorized(
                "invalid_refresh_token",
                "the refresh token is unknown, expired or revoked",
            ),
            AuthError::RefreshTokenReused => ApiError::unauthorized(
                "refresh_token_reused",
                "this refresh token was already used; the session has been revoked",
            ),
            AuthError::TokenExpired => {
                ApiError::unauthorized("token_expired", "the access token has expired")
            }
            AuthError::InvalidToken(why) => ApiError::unauthorized("invalid_token", why),
            AuthError::SessionRevoked => {
                ApiError::unauthorized("session_revoked", "the session of this token has ended")
            }
            AuthError::AuthRequired => {
                ApiError::unauthorized("auth_required", "this endpoint needs a signed-in user")
            }
            AuthError::InvalidOneTimeToken => ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_or_expired_token",
                "the token is unknown, expired or already used",
            ),
            AuthError::Store(e) => e.into(),
            AuthError::Internal(e) => ApiError::internal(e),
        }
    }
}
