//! Every domain error as the HTTP edge answers it: the one place a domain failure gets
//! its status. (The domains that already say their own `code()` and `kind()`, documents
//! and the store, are answered through `ApiError::of`.)

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
        match err {
            S::InvalidName => ApiError::invalid_field("name", "must match ^[A-Z_][A-Z0-9_]{0,63}$"),
            S::ValueTooLarge => ApiError::invalid_field(
                "value",
                format!(
                    "must be at most {} bytes of UTF-8",
                    crate::secrets::MAX_VALUE_BYTES
                ),
            ),
            S::TooMany => ApiError::conflict(
                "too_many_secrets",
                format!(
                    "the tenant already has {} secrets, the most it may have; delete one first",
                    crate::secrets::MAX_SECRETS
                ),
            ),
            S::NotFound => ApiError::not_found("not_found", "no such secret"),
            S::Undecryptable(_) | S::Seal => ApiError::internal(err),
            S::Store(e) => e.into(),
        }
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
        use crate::functions::{Failure, FnError as F};
        match err {
            F::InvalidBundle(errors) => {
                let first = errors.first().map(|e| e.to_string()).unwrap_or_default();
                let mut a = ApiError::bad_request(
                    "invalid_bundle",
                    format!("the bundle has {} problem(s); first: {first}", errors.len()),
                );
                a.extra.insert(
                    "errors".into(),
                    serde_json::to_value(&errors).unwrap_or_default(),
                );
                a
            }
            F::NoSuchJob(id) => ApiError::not_found("job_not_found", format!("no dead job {id}")),
            F::NoSuchVersion(v) => {
                ApiError::not_found("deploy_not_found", format!("no deploy version {v}"))
            }
            F::NotFound(name) => ApiError::not_found(
                "function_not_found",
                format!("no HTTP function named '{name}' is deployed"),
            ),
            // The caller of an HTTP function is not its author: the reason is in the
            // invocation log, not in the response.
            F::Failed {
                failure,
                invocation,
                ..
            } => {
                let (status, code, detail) = match failure {
                    Failure::Timeout => (
                        StatusCode::GATEWAY_TIMEOUT,
                        "function_timeout",
                        "the function ran past its time budget",
                    ),
                    Failure::OutOfMemory => (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "function_out_of_memory",
                        "the function ran out of memory",
                    ),
                    Failure::Thrown { .. } => (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "function_error",
                        "the function threw an error",
                    ),
                    Failure::Internal(_) => (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "function_error",
                        "the function could not run",
                    ),
                };
                let mut a = ApiError::new(
                    status,
                    code,
                    format!("{detail}; see invocation {invocation} in the invocation log"),
                );
                a.extra
                    .insert("invocation".into(), serde_json::Value::from(invocation));
                a
            }
            F::BadResponse {
                message,
                invocation,
            } => {
                let mut a = ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "function_bad_response",
                    format!("the function returned an invalid response: {message}"),
                );
                a.extra
                    .insert("invocation".into(), serde_json::Value::from(invocation));
                a
            }
            F::Unavailable => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "functions_unavailable",
                "the function pool is shutting down",
            ),
            F::Store(e) => e.into(),
            F::Internal(m) => ApiError::internal(m),
        }
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
        let (code, detail) = (err.code(), err.client_detail());
        match err {
            AuthError::InvalidField { field, problem }
            | AuthError::WeakPassword { field, problem } => {
                ApiError::field_problem(code, field, problem)
            }
            AuthError::EmailTaken => {
                let mut e = ApiError::conflict(code, detail);
                e.fields =
                    Some([("email".to_string(), "is already registered".to_string())].into());
                e
            }
            AuthError::InvalidCredentials
            | AuthError::InvalidRefreshToken
            | AuthError::RefreshTokenReused
            | AuthError::TokenExpired
            | AuthError::InvalidToken(_)
            | AuthError::SessionRevoked
            | AuthError::AuthRequired => ApiError::unauthorized(code, detail),
            AuthError::UserDisabled => ApiError::forbidden(code, detail),
            AuthError::RateLimited(wait) => {
                ApiError::too_many_requests(wait.as_secs() + u64::from(wait.subsec_nanos() > 0))
            }
            AuthError::InvalidOneTimeToken => ApiError::new(StatusCode::BAD_REQUEST, code, detail),
            AuthError::Store(e) => e.into(),
            AuthError::Internal(e) => ApiError::internal(e),
        }
    }
}
