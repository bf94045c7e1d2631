//! The admin console at `/_/` (files from `crate::console`). Not part of the API nor of
//! its OpenAPI document. Revalidated by ETag on every load, so a new binary's console
//! shows at once; the CSP allows only this origin's scripts and styles, and no framing.

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use super::extract::ApiPath;
use crate::error::ApiError;
use crate::state::AppState;

/// No inline script or style, no other origin; `connect-src 'self'` covers the same
/// origin's WebSocket (realtime) too.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/_", get(|| async { Redirect::permanent("/_/") }))
        .route(
            "/_/",
            get(|headers: HeaderMap| serve(String::new(), headers)),
        )
        .route(
            "/_/{*path}",
            get(|ApiPath(path): ApiPath<String>, headers: HeaderMap| serve(path, headers)),
        )
}

async fn serve(path: String, headers: HeaderMap) -> Response {
    let Some(asset) = crate::console::asset(&path) else {
        return ApiError::not_found("not_found", "no such file in the console").into_response();
    };
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == asset.etag));
    let common = [
        (header::CACHE_CONTROL, "no-cache"),
        (header::ETAG, asset.etag),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::CONTENT_SECURITY_POLICY, CSP),
    ];
    if fresh {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    (
        common,
        [(header::CONTENT_TYPE, asset.content_type)],
        asset.body,
    )
        .into_response()
}
