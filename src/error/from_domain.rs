//! Every domain error as the HTTP edge answers it: the one place a domain failure gets
//! its status. (The domains that already say their own `code()` and `kind()`, documents,
//! functions, secrets and the store, are answered through `ApiError::of`.)

use axum::http::StatusCode;

use super::ApiError;

/// Store faults are logged where they become answers: in full here, opaquely to clients.
fn log_store_fault(err: &crate::store::StoreError) {
    use crate::fault::Kind;
    match err.kind() {
        Kind::StorageFull => tracing::error!(error = %err, "storage full: writes are refused"),
        Kind::Unavailable => tracing::warn!(error = %err, "store unavailable"),
        Kind::Internal => tracing::error!(error = %err, "internal error"),
        _ => {}
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(err: crate::store::StoreError) -> Self {
        log_store_fault(&err);
        ApiError::of(err.kind(), err.code(), err.client_detail())
    }
}

impl From<crate::secrets::SecretsError> for ApiError {
    fn from(err: crate::secrets::SecretsError) -> Self {
        use crate::secrets::SecretsError as S;
        match &err {
            S::Store(e) => log_store_fault(e),
            S::Undecryptable(_) | S::Seal => tracing::error!(error = %err, "internal error"),
            _ => {}
        }
        let mut a = ApiError::of(err.kind(), err.code(), err.client_detail());
        a.fields = err.field().map(|(f, p)| [(f, p)].into());
        a
    }
}

impl From<crate::documents::DocError> for ApiError {
    fn from(err: crate::documents::DocError) -> Self {
        use crate::documents::DocError as D;
        let mut inner = &err;
        while let D::InBatch { source, .. } = inner {
            inner = source;
        }
        match inner {
            D::Store(e) => log_store_fault(e),
            D::Internal(m) => tracing::error!(error = %m, "internal error"),
            _ => {}
        }
        let mut a = ApiError::of(err.kind(), err.code(), err.client_detail());
        a.fields = err.field().map(|(f, p)| [(f, p)].into());
        if let D::InBatch { index, .. } = &err {
            a.extra
                .insert("index".into(), serde_json::Value::from(*index));
        }
        a
    }
}

impl From<crate::functions::FnError> for ApiError {
    fn from(err: crate::functions::FnError) -> Self {
        use crate::functions::FnError as F;
        match &err {
            F::Store(e) => log_store_fault(e),
            F::Internal(m) => tracing::error!(error = %m, "internal error"),
            _ => {}
        }
        let mut a = ApiError::of(err.kind(), err.code(), err.client_detail());
        if let F::InvalidBundle(errors) = &err {
            a.extra.insert(
                "errors".into(),
                serde_json::to_value(errors).unwrap_or_default(),
            );
        }
        if let Some(invocation) = err.invocation() {
            a.extra
                .insert("invocation".into(), serde_json::Value::from(invocation));
        }
        a
    }
}

impl From<crate::admin::AdminError> for ApiError {
    fn from(err: crate::admin::AdminError) -> Self {
        use crate::admin::AdminError;
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

impl From<crate::auth::AuthError> for ApiError {
    fn from(err: crate::auth::AuthError) -> Self {
        use crate::auth::AuthError;
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
