//! The one error type of the HTTP edge: every failure leaves the server as an RFC 9457
//! `application/problem+json` body with a stable machine-readable `code`.
//!
//! Each layer (store, documents, auth, admin, secrets, functions) has its own error
//! enum, converted here (`from_domain`); `fault::Kind::status` is the one place a
//! failure's kind becomes an HTTP status.

use std::collections::BTreeMap;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

mod from_domain;

pub const PROBLEM_JSON: &str = "application/problem+json";

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: String,
    pub fields: Option<BTreeMap<String, String>>,
    /// Extension members of the problem document (RFC 9457 §3.2), e.g. `errors`, `index`.
    pub extra: serde_json::Map<String, serde_json::Value>,
    pub retry_after_secs: Option<u64>,
}

/// An RFC 9457 problem document: the body of every error answer
/// (`application/problem+json`).
#[derive(Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// A URI naming the problem type: `urn:plinth:problem:<code>`.
    #[serde(rename = "type")]
    pub type_: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Stable machine-readable key; clients branch on this, never on `detail`.
    pub code: String,
    /// Input errors only: each wrong input field, and what is wrong with it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub fields: Option<BTreeMap<String, String>>,
    /// Extension members, e.g. `errors` (rule set errors) or `index` (failed batch write).
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
            fields: None,
            extra: serde_json::Map::new(),
            retry_after_secs: None,
        }
    }

    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, detail)
    }

    /// 422-free validation error: one or more named input fields are wrong.
    pub fn invalid_field(field: &str, problem: impl Into<String>) -> Self {
        Self::field_problem("validation_failed", field, problem)
    }

    /// A 400 about one input field under `code`: `fields.<field>` says what is wrong.
    pub fn field_problem(code: &'static str, field: &str, problem: impl Into<String>) -> Self {
        let problem = problem.into();
        let mut fields = BTreeMap::new();
        fields.insert(field.to_string(), problem.clone());
        Self {
            fields: Some(fields),
            ..Self::bad_request(code, format!("{field}: {problem}"))
        }
    }

    pub fn unauthorized(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, detail)
    }

    pub fn forbidden(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, detail)
    }

    pub fn not_found(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, detail)
    }

    pub fn conflict(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, detail)
    }

    pub fn too_many_requests(retry_after_secs: u64) -> Self {
        Self {
            retry_after_secs: Some(retry_after_secs.max(1)),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many attempts; retry later",
            )
        }
    }

    /// An unexpected failure: logged in full here, answered opaquely.
    pub fn internal(err: impl std::fmt::Display) -> Self {
        tracing::error!(error = %err, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal server error",
        )
    }

    pub fn problem(&self) -> Problem {
        Problem {
            type_: format!("urn:plinth:problem:{}", self.code),
            title: self
                .status
                .canonical_reason()
                .unwrap_or("Error")
                .to_string(),
            status: self.status.as_u16(),
            detail: self.detail.clone(),
            code: self.code.to_string(),
            fields: self.fields.clone(),
            extra: self.extra.clone(),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.detail)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.problem()).unwrap_or_default();
        let mut res = (self.status, body).into_response();
        let headers = res.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(secs) = self.retry_after_secs {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        // Lets the problem-fallback middleware recognise bodies that are already shaped.
        res.extensions_mut().insert(ProblemMarker);
        res
    }
}

/// How long a client is told to wait before retrying a write refused during a tenant move.
pub const MOVING_RETRY_SECS: u64 = 2;

/// Set on responses built from an [`ApiError`], so the fallback middleware leaves them alone.
#[derive(Clone, Copy)]
pub struct ProblemMarker;

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// A domain failure as the HTTP edge answers it: the kind decides the status (the one
    /// place that happens), the domain gives the code and the client's detail.
    pub fn of(kind: crate::fault::Kind, code: &'static str, detail: String) -> ApiError {
        let status =
            StatusCode::from_u16(kind.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut a = ApiError::new(status, code, detail);
        // A write that passed the gate just before a move froze the tenant is refused by
        // the store, through whichever domain error carried it: the same answer as the
        // gate's, Retry-After included.
        if code == "tenant_moving" {
            a.retry_after_secs = Some(MOVING_RETRY_SECS);
        }
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::documents::DocError;
    use crate::store::StoreError;

    /// A write the store refuses because a move froze the tenant answers like the
    /// gate's refusal, with its Retry-After.
    #[test]
    fn a_write_refused_by_a_move_says_when_to_retry() {
        let a = ApiError::from(DocError::Store(StoreError::TenantMoving));
        assert_eq!((a.status.as_u16(), a.code), (503, "tenant_moving"));
        assert_eq!(a.retry_after_secs, Some(MOVING_RETRY_SECS));
    }

    /// Faults of the store are 503/500, never a 409 a client would read as its own
    /// mistake (a dead commit task used to answer 409 `document_exists`).
    #[test]
    fn store_faults_are_not_conflicts() {
        let a = ApiError::from(DocError::Store(StoreError::Unavailable(
            "the commit task ended before answering",
        )));
        assert_eq!((a.status.as_u16(), a.code), (503, "unavailable"));
        let a = ApiError::from(DocError::Store(StoreError::Internal("write rejected")));
        assert_eq!((a.status.as_u16(), a.code), (500, "internal"));
        let a = ApiError::from(DocError::Exists);
        assert_eq!((a.status.as_u16(), a.code), (409, "document_exists"));
    }
}
