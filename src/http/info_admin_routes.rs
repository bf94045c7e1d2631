//! Read-only admin views the console's overview and data browser need, open to any
//! admin client: the server's version, backend and uptime; a tenant's collections with
//! their document counts; a read token for the tenant's documents.

use std::sync::LazyLock;
use std::time::Instant;

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{AdminCaller, ApiPath};
use crate::admin::{Actor, READ_TOKEN_TTL};
use crate::error::{ApiResult, Problem};
use crate::state::AppState;

/// When this process built its router (close enough to its start for an uptime).
static STARTED: LazyLock<Instant> = LazyLock::new(Instant::now);

pub fn router() -> OpenApiRouter<AppState> {
    LazyLock::force(&STARTED);
    OpenApiRouter::new()
        .routes(routes!(server_info))
        .routes(routes!(list_collections))
        .routes(routes!(read_token))
}

#[derive(Serialize, ToSchema)]
pub struct ServerInfo {
    /// The server's version (its Cargo package version).
    pub version: &'static str,
    /// `sqlite` or `postgres`.
    pub backend: &'static str,
    /// Seconds since this process started.
    pub uptime_seconds: u64,
}

/// What this server is: version, storage backend, uptime.
#[utoipa::path(get, path = "/admin/v1/server", operation_id = "server_info", tag = "admin",
    responses((status = 200, body = ServerInfo), (status = 401, body = Problem)),
    security(("bearer" = [])))]
async fn server_info(State(state): State<AppState>, _admin: AdminCaller) -> Json<ServerInfo> {
    Json(ServerInfo {
        version: env!("CARGO_PKG_VERSION"),
        backend: state.admin.backend_name(),
        uptime_seconds: STARTED.elapsed().as_secs(),
    })
}

#[derive(Serialize, ToSchema)]
pub struct CollectionDto {
    pub name: String,
    /// Documents in the collection now.
    pub count: i64,
}

#[derive(Serialize, ToSchema)]
pub struct CollectionList {
    pub items: Vec<CollectionDto>,
}

/// A tenant's collections that hold documents, by name, with their counts.
#[utoipa::path(get, path = "/admin/v1/tenants/{tenant}/collections", operation_id = "list_collections", tag = "documents",
    params(("tenant" = String, Path, description = "Tenant slug")),
    responses((status = 200, body = CollectionList), (status = 400, body = Problem),
              (status = 401, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
async fn list_collections(
    State(state): State<AppState>,
    admin: AdminCaller,
    ApiPath(tenant): ApiPath<String>,
) -> ApiResult<Json<CollectionList>> {
    let items = state
        .admin
        .collections(&Actor::admin(&admin.0.email), &tenant)
        .await?
        .into_iter()
        .map(|c| CollectionDto {
            name: c.name,
            count: c.count,
        })
        .collect();
    Ok(Json(CollectionList { items }))
}

#[derive(Serialize, ToSchema)]
pub struct ReadToken {
    /// `prt_...`: send it to the tenant API as `Authorization: Bearer`, or in the
    /// realtime socket's `auth` message.
    pub token: String,
    pub token_type: &'static str,
    /// Seconds until it stops working; ask for another before then.
    pub expires_in: u64,
}

/// A short-lived token that reads the tenant's documents through the tenant API (lists,
/// gets, realtime), past the rules, as this admin; every write it asks for is 403
/// `read_only`. Any role may have one for a tenant it sees, a viewer included (it
/// changes nothing, so it is a POST only because it mints a credential).
#[utoipa::path(post, path = "/admin/v1/tenants/{tenant}/read-token", operation_id = "read_token", tag = "documents",
    params(("tenant" = String, Path, description = "Tenant slug")),
    responses((status = 200, body = ReadToken), (status = 401, body = Problem),
              (status = 404, body = Problem, description = "tenant_not_found")),
    security(("bearer" = [])))]
async fn read_token(
    State(state): State<AppState>,
    admin: AdminCaller,
    ApiPath(tenant): ApiPath<String>,
) -> ApiResult<Json<ReadToken>> {
    let token = state.admin.read_token(&admin.0, &tenant).await?;
    Ok(Json(ReadToken {
        token,
        token_type: "Bearer",
        expires_in: READ_TOKEN_TTL.as_secs(),
    }))
}
