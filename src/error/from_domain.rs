//! Every domain error as the HTTP edge answers it: the one place a domain failure gets
//! its status. Each domain error says its own `code()` and `kind()` (store, documents,
//! auth, admin, functions, secrets), so it is answered through `ApiError::of` and its
//! status comes from `fault::Kind::status`.

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
            AdminError::User(e) => return e.into(),
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

impl From<crate::admin::export::TransferError> for ApiError {
    fn from(err: crate::admin::export::TransferError) -> Self {
        use crate::admin::export::TransferError as T;
        match err {
            T::Admin(a) => a.into(),
            // The file's own fault, named by line: safe and useful to show.
            T::BadFile(_) => ApiError::of(err.kind(), err.code(), err.to_string()),
            T::Io(ref e) => {
                tracing::error!(error = %e, "internal error: spooling an export");
                ApiError::of(err.kind(), err.code(), "internal server error".into())
            }
        }
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
