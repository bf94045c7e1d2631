//! `/admin/v1/tenants/{tenant}/deploys` and `/invocations`: function deploys (upload,
//! history, activate = rollback) and the invocation log.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{AdminCaller, ApiJson, ApiPath, ApiQuery};
use crate::admin::Actor;
use crate::error::{ApiResult, Problem};
use crate::functions::Deployed;
use crate::functions::bundle::MAX_BUNDLE_BYTES;
use crate::state::AppState;
use crate::store::{DeploySummary, InvocationRow, JobInfo};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_deploys, create_deploy))
        .routes(routes!(activate_deploy))
        .routes(routes!(list_invocations))
        .routes(routes!(list_jobs))
        .routes(routes!(retry_job))
        .routes(routes!(tenant_usage))
        // A bundle may be larger than an ordinary request body (JSON escaping included).
        .layer(DefaultBodyLimit::max(MAX_BUNDLE_BYTES * 2))
}

fn actor(admin: &AdminCaller) -> Actor {
    Actor::of(&admin.0)
}

/// A deploy bundle: file paths (relative to the bundle folder) to their text.
#[derive(Deserialize, ToSchema)]
pub struct BundleUpload {
    /// `plinth.toml`, the rules file it names, and `functions/*.js`.
    pub files: BTreeMap<String, String>,
}

#[derive(Serialize, ToSchema)]
pub struct DeployList {
    pub items: Vec<DeploySummary>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct InvocationQuery {
    /// Only invocations of this function.
    pub function: Option<String>,
    pub cursor: Option<String>,
    /// 1..500, default 50.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct InvocationPage {
    pub items: Vec<InvocationRow>,
    pub next_cursor: Option<String>,
}

/// Upload a bundle: validated whole (every module compiles and exports a function, the
/// rules compile, hooks and routes name existing functions), then stored as the next
/// version and activated. A bad bundle changes nothing (400 `invalid_bundle` with `errors`).
#[utoipa::path(post, path = "/admin/v1/tenants/{tenant}/deploys", operation_id = "create_deploy", tag = "functions",
    params(("tenant" = String, Path, description = "Tenant slug")),
    request_body = BundleUpload,
    responses((status = 201, body = Deployed),
              (status = 400, body = Problem, description = "invalid_bundle, with `errors`"),
              (status = 404, body = Problem)),
    security(("bearer" = [])))]
async fn create_deploy(
    State(state): State<AppState>,
    admin: AdminCaller,
    ApiPath(tenant): ApiPath<String>,
    ApiJson(body): ApiJson<BundleUpload>,
) -> ApiResult<(StatusCode, Json<Deployed>)> {
    let deployed = state
        .admin
        .deploy(&actor(&admin), &tenant, body.files)
        .await?;
    Ok((StatusCode::CREATED, Json(deployed)))
}

/// The deploy history, newest first; `active` marks the running version.
#[utoipa::path(get, path = "/admin/v1/tenants/{tenant}/deploys", operation_id = "list_deploys", tag = "functions",
    params(("tenant" = String, Path, description = "Tenant slug")),
    responses((status = 200, body = DeployList), (status = 404, body = Problem)),
    security(("bearer" = [])))]
async fn list_deploys(
    State(state): State<AppState>,
    admin: AdminCaller,
    ApiPath(tenant): ApiPath<String>,
) -> ApiResult<Json<DeployList>> {
    let items = state.admin.list_deploys(&actor(&admin), &tenant).await?;
    Ok(Json(DeployList { items }))
}

/// Make a stored version the active one (rollback or roll forward). Invocations already
/// running finish on the version they started with.
#[utoipa::path(post, path = "/admin/v1/tenants/{tenant}/deploys/{version}/activate", operation_id = "activate_deploy",
    tag = "functions",
    params(("tenant" = String, Path, description = "Tenant slug"), ("version" = i64, Path)),
    responses((status = 200, body = Deployed), (status = 404, body = Problem)),
    security(("bearer" = [])))]
async fn activate_deploy(
    State(state): State<AppState>,
    admin: AdminCaller,
    ApiPath((tenant, version)): ApiPath<(String, i64)>,
) -> ApiResult<Json<Deployed>> {
    let deployed = state
        .admin
        .activate_deploy(&actor(&admin), &tenant, version)
        .await?;
    Ok(Json(deployed))
}

/// The invocation log, newest first: function, trigger, version, duration, outcome,
/// error and captured logs.
#[utoipa::path(get, path = "/admin/v1/tenants/{tenant}/invocations", operation_id = "list_invocations", tag = "functions",
    params(("tenant" = String, Path, description = "Tenant slug"), InvocationQuery),
    responses((status = 200, body = InvocationPage), (status = 400, body = Problem),
              (status = 404, body = Problem)),
    security(("bearer" = [])))]
async fn list_invocations(
    State(state): State<AppState>,
    admin: AdminCaller,
    ApiPath(tenant): ApiPath<String>,
    ApiQuery(q): ApiQuery<InvocationQuery>,
) -> ApiResult<Json<InvocationPage>> {
    let page = state
        .admin
        .list_invocations(
            &actor(&admin),
            &tenant,
            q.function.as_deref(),
            q.cursor.as_deref(),
            q.limit,
        )
        .await?;
    Ok(Json(InvocationPage {
        items: page.items,
        next_cursor: page.next_cursor,
    }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobQuery {
    /// pending or dead (default: both).
    pub state: Option<String>,
    pub cursor: Option<String>,
    /// 1..500, default 50.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct JobPage {
    pub items: Vec<JobInfo>,
    pub next_cursor: Option<String>,
}

/// After-hook jobs waiting to run (`pending`, with their attempts and last error) or out
/// of attempts (`dead`), oldest first.
#[utoipa::path(get, path = "/admin/v1/tenants/{tenant}/jobs", operation_id = "list_jobs", tag = "functions",
    params(("tenant" = String, Path, description = "Tenant slug"), JobQuery),
    responses((status = 200, body = JobPage), (status = 400, body = Problem),
              (status = 404, body = Problem)),
    security(("bearer" = [])))]
async fn list_jobs(
    State(state): State<AppState>,
    admin: AdminCaller,
    ApiPath(tenant): ApiPath<String>,
    ApiQuery(q): ApiQuery<JobQuery>,
) -> ApiResult<Json<JobPage>> {
    let page = state
        .admin
        .list_jobs(
            &actor(&admin),
            &tenant,
            q.state.as_deref(),
            q.cursor.as_deref(),
            q.limit,
        )
        .await?;
    Ok(Json(JobPage {
        items: page.items,
        next_cursor: page.next_cursor,
    }))
}

/// Run a dead job again, with fresh attempts.
#[utoipa::path(post, path = "/admin/v1/tenants/{tenant}/jobs/{id}/retry", operation_id = "retry_job", tag = "functions",
    params(("tenant" = String, Path, description = "Tenant slug"), ("id" = String, Path)),
    responses((status = 204), (status = 404, body = Problem, description = "job_not_found")),
    security(("bearer" = [])))]
async fn retry_job(
    State(state): State<AppState>,
    admin: AdminCaller,
    ApiPath((tenant, id)): ApiPath<(String, String)>,
) -> ApiResult<StatusCode> {
    state.admin.retry_job(&actor(&admin), &tenant, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsageQuery {
    /// `day` (the default) or `hour`.
    #[param(inline)]
    pub granularity: Option<crate::usage::Granularity>,
    /// With `granularity=day`: days back, today included, 1..366, default 30.
    #[param(minimum = 1, maximum = 366)]
    pub days: Option<u32>,
    /// With `granularity=hour`: hours back, the current one included, 1..336 (hours are
    /// kept 14 days), default 48.
    #[param(minimum = 1, maximum = 336)]
    pub hours: Option<u32>,
}
// The schema's maximum above is a literal; it must stay the retention.
const _: () = assert!(crate::usage::HOUR_RETENTION == 336);

#[derive(Serialize, ToSchema)]
pub struct UsageReport {
    pub tenant: String,
    #[serde(flatten)]
    pub report: crate::usage::UsageSeries,
}

/// Metered use of a tenant per UTC day (the default) or per UTC hour: requests and those
/// answered with an error, document writes, function invocations and their CPU time
/// (µs), realtime connections opened and the most open at once. Buckets without use are
/// left out.
#[utoipa::path(get, path = "/admin/v1/tenants/{tenant}/usage", operation_id = "tenant_usage", tag = "tenants",
    params(("tenant" = String, Path, description = "Tenant slug"), UsageQuery),
    responses((status = 200, body = UsageReport),
              (status = 400, body = Problem, description = "invalid_query, validation_failed"),
              (status = 401, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
async fn tenant_usage(
    State(state): State<AppState>,
    _admin: AdminCaller,
    ApiPath(tenant): ApiPath<String>,
    ApiQuery(q): ApiQuery<UsageQuery>,
) -> ApiResult<Json<UsageReport>> {
    let report = state
        .admin
        .usage(&tenant, q.granularity.unwrap_or_default(), q.days, q.hours)
        .await?;
    Ok(Json(UsageReport { tenant, report }))
}
