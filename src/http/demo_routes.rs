//! The SMS voting demo's page at `/demo/` (only with `serve --demo`): the files embedded
//! by `crate::demo`, never cached, so a rebuilt binary's page shows on the next load.

use super::extract::ApiPath;
use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use crate::error::ApiError;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/demo", get(|| async { Redirect::permanent("/demo/") }))
        .route("/demo/", get(|| serve(String::new())))
        .route(
            "/demo/{*path}",
            get(|ApiPath(path): ApiPath<String>| serve(path)),
        )
}

async fn serve(path: String) -> Response {
    let Some(asset) = crate::demo::asset(&path) else {
        return ApiError::not_found("not_found", "no such file in the demo").into_response();
    };
    (
        [
            (header::CONTENT_TYPE, asset.content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; connect-src 'self'; img-src 'self' data:; \
                 object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
            ),
        ],
        asset.body,
    )
        .into_response()
}
