//! `/admin/v1/tenants/{tenant}/rules` and explain: a tenant's rule set, read, installed
//! or checked without installing, and a rule decision explained.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::dto::*;
use super::extract::{AdminCaller, ApiJson, ApiPath, ApiQuery};
use crate::admin::Actor;
use crate::documents::RuleExplanation;
use crate::error::{ApiError, ApiResult, Problem};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_rules, put_rules))
        .routes(routes!(validate_rules))
        .routes(routes!(test_rules))
        .routes(routes!(rules_versions))
        .routes(routes!(activate_rules_version))
        .routes(routes!(explain_rule))
}

fn actor(admin: &AdminCaller) -> Actor {
    Actor::of(&admin.0)
}

/// The active rule set.
#[utoipa::path(get, path = "/admin/v1/tenants/{tenant}/rules", operation_id = "get_rules", tag = "rules",
    params(("tenant" = String, Path, description = "Tenant slug")),
    responses((status = 200, body = RulesDto), (status = 404, body = Problem)),
    security(("bearer" = [])))]
async fn get_rules(
    State(state): State<AppState>,
    admin: AdminCaller,
    ApiPath(tenant): ApiPath<String>,
) -> ApiResult<Json<RulesDto>> {
    let (version, source) = state.admin.active_rules(&actor(&admin), &tenant).await?;
    Ok(Json(RulesDto { version, source }))
}

/// Install a TOML rule set (`Content-Type: application/toml`). It is validated whole;
/// errors name collection, operation, line and column, and leave the old set active.
#[utoipa::path(put, path = "/admin/v1/tenants/{tenant}/rules", operation_id = "put_rules", tag = "rules",
    params(("tenant" = String, Path, description = "Tenant slug")),
    request_body(content = String, content_type = "application/toml"),
    responses((status = 200, body = RulesInstalled),
              (status = 400, body = Problem, description = "invalid_rules, with `errors`"),
              (status = 404, body = Problem)),
    security(("bearer" = [])))]
async fn put_rules(
    State(state): State<AppState>,
    admin: AdminCaller,
    ApiPath(tenant): ApiPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<RulesInstalled>> {
    let source = toml_source(&headers, &body)?;
    let installed = state
        .admin
        .install_rules(&actor(&admin), &tenant, source)
        .await?;
    Ok(Json(RulesInstalled {
        version: installed.version,
        collections: installed.collections,
        warnings: installed.warnings,
    }))
}

/// A rule set sent as a request body: TOML, UTF-8.
fn toml_source<'a>(headers: &HeaderMap, body: &'a Bytes) -> ApiResult<&'a str> {
    let ct = super::extract::mime(headers);
    if !matches!(
        ct.as_str(),
        "application/toml" | "text/plain" | "text/x-toml"
    ) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "expected Content-Type: application/toml",
        ));
    }
    std::str::from_utf8(body)
        .map_err(|_| ApiError::bad_request("invalid_rules", "the rule set is not UTF-8"))
}

/// Check a TOML rule set exactly as installing it would, installing nothing (for an
/// editor that validates as one types; a viewer may too). A bad set is not an error of this request: 200
/// with `valid: false` and every error at its line and column.
#[utoipa::path(post, path = "/admin/v1/tenants/{tenant}/rules/validate", operation_id = "validate_rules", tag = "rules",
    params(("tenant" = String, Path, description = "Tenant slug")),
    request_body(content = String, content_type = "application/toml"),
    responses((status = 200, body = RulesValidation),
              (status = 400, body = Problem, description = "invalid_rules (not UTF-8)"),
              (status = 404, body = Problem), (status = 415, body = Problem)),
    security(("bearer" = [])))]
async fn validate_rules(
    State(state): State<AppState>,
    admin: AdminCaller,
    ApiPath(tenant): ApiPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<RulesValidation>> {
    state.admin.scope(&actor(&admin), &tenant).await?;
    let source = toml_source(&headers, &body)?;
    Ok(Json(crate::rules::RuleSet::parse(source).into()))
}

/// The stored rule set versions, newest (the active one) first.
#[utoipa::path(get, path = "/admin/v1/tenants/{tenant}/rules/versions", operation_id = "rules_versions", tag = "rules",
    params(("tenant" = String, Path, description = "Tenant slug")),
    responses((status = 200, body = RulesVersionList), (status = 404, body = Problem)),
    security(("bearer" = [])))]
async fn rules_versions(
    State(state): State<AppState>,
    admin: AdminCaller,
    ApiPath(tenant): ApiPath<String>,
) -> ApiResult<Json<RulesVersionList>> {
    let versions = state.admin.rules_versions(&actor(&admin), &tenant).await?;
    let newest = versions.first().map(|v| v.0);
    Ok(Json(RulesVersionList {
        items: versions
            .into_iter()
            .map(|(version, at, by)| RulesVersionDto {
                version,
                created_at: timestamp(at),
                created_by: by,
                active: Some(version) == newest,
            })
            .collect(),
    }))
}

/// Roll back to a stored version: its source is installed again as a new version (the
/// answer names it), audited as `rules.activate`.
#[utoipa::path(post, path = "/admin/v1/tenants/{tenant}/rules/versions/{version}/activate",
    operation_id = "activate_rules_version", tag = "rules",
    params(("tenant" = String, Path, description = "Tenant slug"),
           ("version" = i64, Path, description = "The stored version to make active again")),
    responses((status = 200, body = RulesInstalled),
              (status = 400, body = Problem, description = "invalid_rules (the stored set no longer compiles), invalid_path"),
              (status = 403, body = Problem, description = "insufficient_role (a viewer)"),
              (status = 404, body = Problem, description = "tenant_not_found, not_found (no such version)")),
    security(("bearer" = [])))]
async fn activate_rules_version(
    State(state): State<AppState>,
    admin: AdminCaller,
    ApiPath((tenant, version)): ApiPath<(String, i64)>,
) -> ApiResult<Json<RulesInstalled>> {
    let installed = state
        .admin
        .activate_rules(&actor(&admin), &tenant, version)
        .await?;
    Ok(Json(RulesInstalled {
        version: installed.version,
        collections: installed.collections,
        warnings: installed.warnings,
    }))
}

/// Run test cases against a rule set sent with them, installing nothing (so a viewer may
/// too). An invalid rule set is the answer, not an error of the request: 200 with
/// `valid: false`, its errors and no case run. Cases that are not valid TOML cases: 400
/// `invalid_test_cases`.
#[utoipa::path(post, path = "/admin/v1/tenants/{tenant}/rules/test", operation_id = "test_rules", tag = "rules",
    params(("tenant" = String, Path, description = "Tenant slug")),
    request_body = RulesTestRequest,
    responses((status = 200, body = RulesTestReport),
              (status = 400, body = Problem, description = "invalid_body, invalid_test_cases (the message starts with the line and column)"),
              (status = 404, body = Problem), (status = 415, body = Problem)),
    security(("bearer" = [])))]
async fn test_rules(
    State(state): State<AppState>,
    admin: AdminCaller,
    ApiPath(tenant): ApiPath<String>,
    ApiJson(body): ApiJson<RulesTestRequest>,
) -> ApiResult<Json<RulesTestReport>> {
    let outcome = state
        .admin
        .test_rules(&actor(&admin), &tenant, &body.rules, &body.cases)
        .await?;
    Ok(Json(RulesTestReport::of(outcome)))
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExplainQuery {
    /// read, update or delete (default read).
    pub op: Option<String>,
    /// Evaluate as this user of the tenant (default: anonymous).
    pub uid: Option<String>,
}

/// Explain the active rules for a stored document, as a user (`uid`) or anonymous: the
/// admin API's form of `GET .../docs/{id}?explain=1` (which needs a service key).
#[utoipa::path(get, path = "/admin/v1/tenants/{tenant}/collections/{collection}/docs/{id}/explain",
    operation_id = "explain_rule", tag = "rules",
    params(("tenant" = String, Path, description = "Tenant slug"), ("collection" = String, Path),
           ("id" = String, Path), ExplainQuery),
    responses((status = 200, body = RuleExplanation),
              (status = 400, body = Problem, description = "validation_failed (`fields.op`)"),
              (status = 404, body = Problem, description = "tenant_not_found, user_not_found (`uid`); a missing document is explained as `doc == null`, with `exists: false`")),
    security(("bearer" = [])))]
async fn explain_rule(
    State(state): State<AppState>,
    admin: AdminCaller,
    ApiPath((tenant, collection, id)): ApiPath<(String, String, String)>,
    ApiQuery(q): ApiQuery<ExplainQuery>,
) -> ApiResult<Json<RuleExplanation>> {
    let op = crate::rules::Operation::parse_explainable(q.op.as_deref().unwrap_or("read"))
        .map_err(|m| ApiError::invalid_field("op", m))?;
    let scope = state.admin.scope(&actor(&admin), &tenant).await?;
    let r = state
        .docs
        .explain_as(
            &scope,
            crate::names::parse_doc(&collection, &id),
            op,
            q.uid.as_deref(),
        )
        .await?;
    Ok(Json(r))
}
