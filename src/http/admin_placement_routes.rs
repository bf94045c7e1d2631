//! Tenant placement: the storage locations tenants may live on, and moving a tenant to
//! another one.

use axum::Json;
use axum::extract::State;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::dto::{LocationList, MoveReportDto, MoveTenant};
use super::extract::{AdminCaller, ApiJson, ApiPath};
use crate::admin::Actor;
use crate::error::{ApiError, ApiResult, Problem};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_locations))
        .routes(routes!(move_tenant))
}

/// The storage locations tenants may be placed on: `default` (the server's own storage)
/// and the clusters configured with `PLINTH_CLUSTERS`.
#[utoipa::path(get, path = "/admin/v1/locations", operation_id = "list_locations", tag = "tenants",
    responses((status = 200, body = LocationList), (status = 401, body = Problem)),
    security(("bearer" = [])))]
async fn list_locations(
    State(state): State<AppState>,
    _admin: AdminCaller,
) -> ApiResult<Json<LocationList>> {
    Ok(Json(LocationList {
        items: state.admin.locations(),
    }))
}

/// Move the tenant's data to another location. Its writes answer 503 `tenant_moving`
/// (with `Retry-After`) while the copy runs; the answer comes when the move is done.
/// Owner or admin. A tenant an interrupted move left marked moving (its mover silent
/// past its lease) is recovered first: rolled back if it had not switched, finished if
/// it had (`recovered` says which), then moved to `to` unless already there. While the
/// mover is alive the answer is 409 `move_running`. Moving a tenant to where it is
/// answers 409 `conflict`, as does a move while a local `plinth` command changing the
/// tenant (on SQLite: any tenant of the data directory) runs past a 5 s wait.
#[utoipa::path(post, path = "/admin/v1/tenants/{tenant}/move", operation_id = "move_tenant", tag = "tenants",
    params(("tenant" = String, Path, description = "Tenant slug")),
    request_body = MoveTenant,
    responses((status = 200, body = MoveReportDto),
              (status = 400, body = Problem, description = "unknown_location"),
              (status = 404, body = Problem),
              (status = 409, body = Problem, description = "already there, or a local CLI change did not end in time (conflict); or a move is running (move_running)"),
              (status = 500, body = Problem, description = "the copy did not verify; nothing changed"),
              (status = 503, body = Problem, description = "the target is unreachable; nothing changed")),
    security(("bearer" = [])))]
async fn move_tenant(
    State(state): State<AppState>,
    admin: AdminCaller,
    ApiPath(tenant): ApiPath<String>,
    ApiJson(body): ApiJson<MoveTenant>,
) -> ApiResult<Json<MoveReportDto>> {
    let actor = Actor::of(&admin.0);
    // A task of its own: a client that goes away (or the request timeout) must not stop
    // a move half-way, with the tenant left read-only.
    let task = tokio::spawn(async move {
        let mut progress = |step: crate::store::MoveStep<'_>| {
            tracing::info!(tenant = %tenant, ?step, "tenant move");
        };
        state
            .admin
            .move_tenant(&actor, &tenant, &body.to, &mut progress)
            .await
    });
    let report = task
        .await
        .map_err(|e| ApiError::internal(format!("tenant move task: {e}")))??;
    Ok(Json(report.into()))
}
