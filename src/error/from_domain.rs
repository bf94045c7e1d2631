//! Every domain error as the HTTP edge answers it. The domains that say their own
//! `code()` and `kind()` (store, documents, auth, admin) are answered through
//! `ApiError::of`, so their status comes from `fault::Kind::status`; secrets and
//! functions errors are still mapped here arm by arm.

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

/// A domain failure that says its own kind, code, client detail, input field and
/// retry delay, as the edge answers it.
fn answer(
    kind: crate::fault::Kind,
    code: &'static str,
    detail: String,
    field: Option<(&'static str, &str)>,
    retry_after_secs: Option<u64>,
) -> ApiError {
    let mut a = ApiError::of(kind, code, detail);
    a.fields = field.map(|(f, p)| [(f.to_string(), p.to_string())].into());
    a.retry_after_secs = retry_after_secs.map(|s| s.max(1));
    a
}

impl From<crate::admin::AdminError> for ApiError {
    fn from(err: crate::admin::AdminError) -> Self {
        use crate::admin::AdminError;
        match err {
            AdminError::Secrets(e) => return e.into(),
            AdminError::Functions(e) => return e.into(),
            AdminError::Store(ref e) => log_store_fault(e),
            AdminError::Internal(ref e) => tracing::error!(error = %e, "internal error"),
            _ => {}
        }
        let mut a = answer(
            err.kind(),
            err.code(),
            err.client_detail(),
            err.field(),
            err.retry_after_secs(),
        );
        if let AdminError::InvalidRules(errors) = &err {
            a.extra.insert(
                "errors".into(),
                serde_json::to_value(errors).unwrap_or_default(),
            );
        }
        a
    }
}

impl From<crate::auth::AuthError> for ApiError {
    fn from(err: crate::auth::AuthError) -> Self {
        use crate::auth::AuthError;
        match &err {
            AuthError::Store(e) => log_store_fault(e),
            AuthError::Internal(e) => tracing::error!(error = %e, "internal error"),
            _ => {}
        }
        answer(
            err.kind(),
            err.code(),
            err.client_detail(),
            err.field(),
            err.retry_after_secs(),
        )
    }
}
