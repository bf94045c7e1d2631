//! `GET /v1/t/{tenant}/realtime`: the WebSocket upgrade. Everything after the upgrade is
//! `realtime/`'s; here the tenant is resolved (by the same extractor as every tenant
//! route, so upgrades count in per-tenant usage), an `?access_token=` (or Authorization
//! header) is checked, and the connection limits are applied, so refusals are plain HTTP
//! problems.

use axum::extract::State;
use axum::extract::ws::WebSocketUpgrade;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{ApiQuery, Client, ResolvedTenant, bearer};
use super::streams::HeldStream;
use crate::error::{ApiError, ApiResult, Problem};
use crate::realtime::{Refused, SocketAuth};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(realtime))
        // Over HTTP/2 a WebSocket opens with an extended CONNECT (RFC 8441), not a GET.
        .route("/v1/t/{tenant}/realtime", axum::routing::connect(realtime))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RealtimeQuery {
    /// A user's access token or a service key (browsers cannot set headers on WebSockets).
    pub access_token: Option<String>,
}

/// Realtime change feed (WebSocket; protocol in docs/realtime.md).
#[utoipa::path(get, path = "/v1/t/{tenant}/realtime", operation_id = "realtime_connect", tag = "realtime",
    params(("tenant" = String, Path, description = "Tenant slug"), RealtimeQuery),
    responses((status = 101, description = "switching to the WebSocket protocol"),
              (status = 401, body = Problem), (status = 404, body = Problem),
              (status = 429, body = Problem, description = "too_many_connections")),
    security((), ("bearer" = [])))]
async fn realtime(
    State(state): State<AppState>,
    ResolvedTenant(tenant): ResolvedTenant,
    Client(client): Client,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<RealtimeQuery>,
    HeldStream(stream): HeldStream,
    ws: WebSocketUpgrade,
) -> ApiResult<Response> {
    // The header is read as on every REST route: a present but malformed one is refused.
    let header_token = bearer(&headers)?.map(str::to_string);
    let token = q.access_token.or(header_token).filter(|t| !t.is_empty());
    let auth = match &token {
        None => SocketAuth::anonymous(),
        Some(t) => {
            let scope = state.auth.authenticate(tenant.clone(), Some(t)).await?;
            SocketAuth::for_scope(&scope, t)
        }
    };
    let broker = state.realtime.clone();
    let admission = broker.reserve(tenant.id, &client.ip).map_err(|r| {
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_connections",
            match r {
                Refused::TooManyForTenant => "this tenant has too many open realtime connections",
                Refused::TooManyForIp => "too many realtime connections from this address",
            },
        );
        e.retry_after_secs = Some(5);
        e
    })?;
    let max = broker.config.max_frame_bytes;
    Ok(ws
        .max_message_size(max)
        .max_frame_size(max)
        // tungstenite reserves 128 KiB per socket for reads by default; client frames
        // here are small (subscribe, auth, ping), and many sockets stay idle, so the
        // buffer is most of an idle connection's memory (BENCHMARKS.md). A larger frame
        // just takes several reads.
        .read_buffer_size(512)
        .on_upgrade(move |socket| async move {
            // Over HTTP/2 the socket is a stream of its connection: not idle while it lives.
            let _stream = stream;
            broker
                .serve(socket, tenant, client.ip, auth, admission)
                .await
        }))
}
