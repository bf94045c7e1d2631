//! Cross-cutting request handling: metrics, the request timeout, and the fallback that
//! turns any framework-made error response into problem+json.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::extract::{TenantSlot, WriteHold};
use crate::error::{ApiError, PROBLEM_JSON, ProblemMarker};
use crate::metrics::RequestLabels;
use crate::state::AppState;

pub async fn observe(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let slot = TenantSlot::default();
    req.extensions_mut().insert(slot.clone());
    let hold = WriteHold::default();
    req.extensions_mut().insert(hold.clone());
    let res = next.run(req).await;
    // The request's write (if it was one) has ended: a tenant move may go on.
    drop(hold);
    let tenant = slot.0.get();
    if let Some((id, _)) = tenant {
        // Every request of a tenant is metered here, once: its status says whether it
        // failed, and a 101 is a realtime connection opened (its slot already taken).
        state.usage.request(*id, res.status().as_u16());
        if res.status() == StatusCode::SWITCHING_PROTOCOLS {
            state
                .usage
                .realtime_opened(*id, state.realtime.open_sockets(*id));
        }
    }
    state.metrics.observe(
        RequestLabels {
            method,
            route,
            status: res.status().as_u16(),
            tenant: tenant.map(|(_, slug)| slug.clone()).unwrap_or_default(),
        },
        start.elapsed().as_secs_f64(),
    );
    res
}

pub async fn timeout(State(state): State<AppState>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(state.config.request_timeout, next.run(req)).await {
        Ok(res) => res,
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "request_timeout",
            "the request took too long and was abandoned",
        )
        .into_response(),
    }
}

/// Rewrites error responses that did not come from an `ApiError` (unknown route, wrong
/// method, framework rejections) into problem+json, keeping their status.
pub async fn problem_fallback(req: Request, next: Next) -> Response {
    let res = next.run(req).await;
    let status = res.status();
    if !(status.is_client_error() || status.is_server_error())
        || res.extensions().get::<ProblemMarker>().is_some()
        || res
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|ct| ct.as_bytes().starts_with(PROBLEM_JSON.as_bytes()))
    {
        return res;
    }
    let (parts, body) = res.into_parts();
    let text = axum::body::to_bytes(body, 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let (code, default_detail) = match status {
        StatusCode::NOT_FOUND => ("route_not_found", "no such route"),
        StatusCode::METHOD_NOT_ALLOWED => {
            ("method_not_allowed", "method not allowed on this route")
        }
        StatusCode::PAYLOAD_TOO_LARGE => (
            "payload_too_large",
            "the request body exceeds the size limit",
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            ("unsupported_media_type", "unsupported content type")
        }
        StatusCode::BAD_REQUEST => ("bad_request", "bad request"),
        StatusCode::REQUEST_TIMEOUT => ("request_timeout", "request timeout"),
        s if s.is_server_error() => ("internal", "internal server error"),
        _ => ("http_error", "request failed"),
    };
    let detail = if text.is_empty() || status.is_server_error() {
        default_detail.to_string()
    } else {
        text
    };
    let mut fixed = ApiError::new(status, code, detail).into_response();
    // Keep headers such as Allow (405) from the original response.
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            fixed.headers_mut().insert(name.clone(), value.clone());
        }
    }
    fixed
}

pub async fn not_found() -> Response {
    ApiError::not_found("route_not_found", "no such route").into_response()
}
