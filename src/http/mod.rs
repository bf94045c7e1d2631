//! The HTTP surface: routers, thin handlers, extractors, DTOs and the OpenAPI document.
//! Routes are registered through utoipa, so `/openapi.json` is generated from them.

mod admin_access_routes;
mod admin_invite_routes;
mod admin_placement_routes;
mod admin_routes;
mod admin_rules_routes;
mod auth_routes;
mod console_routes;
mod demo_routes;
mod document_routes;
pub mod dto;
pub mod extract;
mod function_admin_routes;
mod function_routes;
mod info_admin_routes;
mod middleware;
mod openapi;
mod ops;
mod realtime_route;
pub mod server;
mod streams;
pub mod tls;
mod transfer_routes;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::routing::get;
use axum::{Router, middleware as mw};
use tower::ServiceBuilder;
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::state::AppState;

/// The routes and the OpenAPI document generated from them.
pub fn api(state: &AppState) -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let tenant_routes = auth_routes::router()
        .merge(document_routes::router())
        .merge(realtime_route::router())
        .merge(function_routes::router())
        .layer(tenant_cors(state.clone()));
    let (router, mut doc) = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .merge(admin_routes::router())
        .merge(admin_rules_routes::router())
        .merge(admin_access_routes::router())
        .merge(admin_invite_routes::router())
        .merge(admin_placement_routes::router())
        .merge(function_admin_routes::router())
        .merge(info_admin_routes::router())
        .merge(transfer_routes::router())
        .merge(tenant_routes)
        .merge(ops::router())
        .split_for_parts();
    openapi::finish(&mut doc);
    (router, doc)
}

pub fn router(state: AppState) -> Router {
    let (api, mut openapi) = api(&state);
    // A derived public URL (the listen address) may be a wildcard nobody can reach: the
    // document names a server only when one was configured.
    if state.config.public_url_configured {
        openapi.servers = Some(vec![utoipa::openapi::Server::new(
            state.config.public_url.trim_end_matches('/'),
        )]);
    }
    let spec = Arc::new(openapi.to_json().unwrap_or_default());
    let request_id = HeaderName::from_static("x-request-id");
    // The console and the demo's page are no part of the API (nor of its OpenAPI document).
    let api = api.merge(console_routes::router());
    let api = if state.config.demo {
        api.merge(demo_routes::router())
    } else {
        api
    };
    api.route(
        "/openapi.json",
        get(move || {
            let spec = spec.clone();
            async move { ([(header::CONTENT_TYPE, "application/json")], (*spec).clone()) }
        }),
    )
    .fallback(middleware::not_found)
    .layer(
        ServiceBuilder::new()
            .layer(SetRequestIdLayer::new(request_id.clone(), CounterRequestId::new()))
            .layer(
                TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
                    let id = req
                        .headers()
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("");
                    tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
                }),
            )
            .layer(PropagateRequestIdLayer::new(request_id))
            .layer(mw::from_fn_with_state(state.clone(), middleware::observe))
            .layer(mw::from_fn(middleware::problem_fallback))
            // A panicking handler answers 500 (then problem+json) instead of dropping
            // the connection.
            .layer(tower_http::catch_panic::CatchPanicLayer::new())
            .layer(mw::from_fn_with_state(state.clone(), middleware::timeout))
            .layer(DefaultBodyLimit::max(state.config.body_limit)),
    )
    .with_state(state)
}

/// Request ids in UUID form from a random per-process prefix and a counter: unique, and
/// without the getrandom system call a v4 UUID costs on every request.
#[derive(Clone)]
struct CounterRequestId {
    prefix: u64,
    counter: Arc<std::sync::atomic::AtomicU64>,
}

impl CounterRequestId {
    fn new() -> CounterRequestId {
        CounterRequestId {
            prefix: rand::random(),
            counter: Arc::new(std::sync::atomic::AtomicU64::new(0)),
        }
    }
}

impl MakeRequestId for CounterRequestId {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        let n = self
            .counter
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = uuid::Uuid::from_u64_pair(self.prefix, n);
        HeaderValue::from_str(&id.hyphenated().to_string())
            .ok()
            .map(RequestId::new)
    }
}

/// CORS for tenant routes: the allowed origins are a setting of each tenant.
fn tenant_cors(state: AppState) -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::async_predicate(
            move |origin: HeaderValue, parts: &axum::http::request::Parts| {
                let slug = parts
                    .uri
                    .path()
                    .strip_prefix("/v1/t/")
                    .and_then(|rest| rest.split('/').next())
                    .map(str::to_string);
                let state = state.clone();
                async move {
                    let Some(slug) = slug else { return false };
                    let Ok(Some(tenant)) = state.registry.get(&slug).await else {
                        return false;
                    };
                    let origin = origin.to_str().unwrap_or("");
                    tenant
                        .cors_origins
                        .iter()
                        .any(|o| o == "*" || o.eq_ignore_ascii_case(origin))
                }
            },
        ))
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        // HTTP functions may read any header a page sends; no cookies are involved (tokens
        // travel in Authorization), so mirroring the requested headers grants nothing extra.
        .allow_headers(AllowHeaders::mirror_request())
        .expose_headers([
            header::ETAG,
            header::LOCATION,
            header::RETRY_AFTER,
            HeaderName::from_static("x-request-id"),
            HeaderName::from_static("x-plinth-invocation"),
        ])
        .max_age(Duration::from_secs(600))
}
