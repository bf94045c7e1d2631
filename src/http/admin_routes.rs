//! `/admin/v1/*`: first-run setup, admin login, tenants, service keys, users, secrets,
//! audit. A tenant's rules are in `admin_rules_routes`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::dto::*;
use super::extract::{AdminCaller, ApiJson, ApiPath, ApiQuery, Client};
use crate::admin::Actor;
use crate::error::{ApiResult, Problem};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(setup))
        .routes(routes!(login))
        .routes(routes!(list_tenants, create_tenant))
        .routes(routes!(get_tenant, update_tenant, delete_tenant))
        .routes(routes!(suspend_tenant))
        .routes(routes!(resume_tenant))
        .routes(routes!(list_keys, create_key))
        .routes(routes!(revoke_key))
        .routes(routes!(list_users, create_user))
        .routes(routes!(get_user, delete_user))
        .routes(routes!(disable_user))
        .routes(routes!(enable_user))
        .routes(routes!(revoke_user_sessions))
        .routes(routes!(verify_user))
        .routes(routes!(list_secrets))
        .routes(routes!(put_secret, delete_secret))
        .routes(routes!(list_audit))
}

fn actor(admin: &AdminCaller) -> Actor {
    Actor::of(&admin.0)
}

/// Create the first admin with the one-time token that `plinth serve` printed.
#[utoipa::path(post, path = "/admin/v1/setup", operation_id = "admin_setup", tag = "admin",
    request_body = SetupRequest,
    responses((status = 201, body = SetupResponse),
              (status = 403, body = Problem, description = "invalid_setup_token"),
              (status = 429, body = Problem, description = "rate_limited, with Retry-After")))]
async fn setup(
    State(state): State<AppState>,
    Client(client): Client,
    ApiJson(body): ApiJson<SetupRequest>,
) -> ApiResult<(StatusCode, Json<SetupResponse>)> {
    let (admin, token) = state
        .admin
        .setup(&body.token, &body.email, &body.password, &client.ip)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(SetupResponse {
            admin: AdminDto {
                id: admin.id,
                email: admin.email,
            },
            access_token: token,
            token_type: "Bearer",
            expires_in: state.admin.admin_ttl().as_secs(),
        }),
    ))
}

/// Admin sign-in; the token's audience is the admin API only.
#[utoipa::path(post, path = "/admin/v1/auth/login", operation_id = "admin_login", tag = "admin",
    request_body = Credentials,
    responses((status = 200, body = AdminToken), (status = 401, body = Problem),
              (status = 429, body = Problem)))]
async fn login(
    State(state): State<AppState>,
    Client(client): Client,
    ApiJson(body): ApiJson<Credentials>,
) -> ApiResult<Json<AdminToken>> {
    let token = state
        .admin
        .login(&body.email, &body.password, &client.ip)
        .await?;
    Ok(Json(AdminToken {
        access_token: token,
        token_type: "Bearer",
        expires_in: state.admin.admin_ttl().as_secs(),
    }))
}

/// All tenants, by slug (for a tenant admin, their tenants only).
#[utoipa::path(get, path = "/admin/v1/tenants", operation_id = "list_tenants", tag = "tenants",
    responses((status = 200, body = TenantList), (status = 401, body = Problem)),
    security(("bearer" = [])))]
async fn list_tenants(
    State(state): State<AppState>,
    admin: AdminCaller,
) -> ApiResult<Json<TenantList>> {
    let items = state.admin.list_visible_tenants(&admin.0).await?;
    Ok(Json(TenantList {
        items: items.into_iter().map(TenantDto::from).collect(),
    }))
}

/// Create a tenant. The slug (`^[a-z][a-z0-9-]{2,39}$`, not reserved) names it in routes;
/// `location` places its data (400 `unknown_location` when not configured).
#[utoipa::path(post, path = "/admin/v1/tenants", operation_id = "create_tenant", tag = "tenants",
    request_body = CreateTenant,
    responses((status = 201, body = TenantDto), (status = 400, body = Problem),
              (status = 409, body = Problem),
              (status = 503, body = Problem, description = "the location's database is unreachable")),
    security(("bearer" = [])))]
async fn create_tenant(
    State(state): State<AppState>,
    admin: AdminCaller,
    ApiJson(body): ApiJson<CreateTenant>,
) -> ApiResult<(StatusCode, Json<TenantDto>)> {
    let slug = crate::admin::parse_slug(&body.slug)?;
    let tenant = state
        .admin
        .create_tenant_at(&actor(&admin), &slug, &body.name, body.location.as_deref())
        .await?;
    Ok((StatusCode::CREATED, Json(tenant.into())))
}

#[utoipa::path(get, path = "/admin/v1/tenants/{tenant}", operation_id = "get_tenant", tag = "tenants",
    params(("tenant" = String, Path, description = "Tenant slug")),
    responses((status = 200, body = TenantDto), (status = 404, body = Problem)),
    security(("bearer" = [])))]
async fn get_tenant(
    State(state): State<AppState>,
    _admin: AdminCaller,
    ApiPath(tenant): ApiPath<String>,
) -> ApiResult<Json<TenantDto>> {
    let (tenant, moving) = state.admin.get_tenant_with_move(&tenant).await?;
    let mut dto = TenantDto::from(tenant);
    dto.move_status = moving.map(Into::into);
    Ok(Json(dto))
}

/// Rename a tenant and/or set its allowed CORS origins.
#[utoipa::path(patch, path = "/admin/v1/tenants/{tenant}", operation_id = "update_tenant", tag = "tenants",
    params(("tenant" = String, Path, description = "Tenant slug")),
    request_body = UpdateTenant,
    responses((status = 200, body = TenantDto), (status = 400, body = Problem),
              (status = 404, body = Problem)),
    security(("bearer" = [])))]
async fn update_tenant(
    State(state): State<AppState>,
    admin: AdminCaller,
    ApiPath(tenant): ApiPath<String>,
    ApiJson(body): ApiJson<UpdateTenant>,
) -> ApiResult<Json<TenantDto>> {
    let t = state
        .admin
        .update_tenant(
            &actor(&admin),
            &tenant,
            body.name.as_deref(),
            body.cors_origins.as_deref(),
        )
        .await?;
    Ok(Json(t.into()))
}

/// Delete a tenant and all its data (on SQLite, its database file).
#[utoipa::path(delete, path = "/admin/v1/tenants/{tenant}", operation_id = "delete_tenant", tag = "tenants",
    params(("tenant" = String, Path, description = "Tenant slug")),
    responses((status = 204), (status = 404, body = Problem)),
    security(("bearer" = [])))]
async fn delete_tenant(
    State(state): State<AppState>,
    admin: AdminCaller,
    ApiPath(tenant): ApiPath<String>,
) -> ApiResult<StatusCode> {
    state.admin.delete_tenant(&actor(&admin), &tenant).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Suspend a tenant: every tenant route answers 403 `tenant_suspended`.
#[utoipa::path(post, path = "/admin/v1/tenants/{tenant}/suspend", operation_id = "suspend_tenant", tag = "tenants",
    params(("tenant" = String, Path, description = "Tenant slug")),
    responses((status = 200, body = TenantDto), (status = 404, body = Problem)),
    security(("bearer" = [])))]
async fn suspend_tenant(
    State(state): State<AppState>,
    admin: AdminCaller,
    ApiPath(tenant): ApiPath<String>,
) -> ApiResult<Json<TenantDto>> {
    set_suspended(&state, &admin, &tenant, true).await
}

#[utoipa::path(post, path = "/admin/v1/tenants/{tenant}/resume", operation_id = "resume_tenant", tag = "tenants",
    params(("tenant" = String, Path, description = "Tenant slug")),
    responses((status = 200, body = TenantDto), (status = 404, body = Problem)),
    security(("bearer" = [])))]
async fn resume_tenant(
    State(state): State<AppState>,
    admin: AdminCaller,
    ApiPath(tenant): ApiPath<String>,
) -> ApiResult<Json<TenantDto>> {
    set_suspended(&state, &admin, &tenant, false).await
}

async fn set_suspended(
    state: &AppState,
    admin: &AdminCaller,
    tenant: &str,
    suspended: bool,
) -> ApiResult<Json<TenantDto>> {
    let t = state
        .admin
        .set_suspended(&actor(admin), tenant, suspended)
        .await?;
    Ok(Json(t.into()))
}

#[utoipa::path(get, path = "/admin/v1/tenants/{tenant}/keys", operation_id = "list_keys", tag = "keys",
    params(("tenant" = String, Path, description = "Tenant slug")),
    responses((status = 200, body = KeyList), (status = 404, body = Problem)),
    security(("bearer" = [])))]
async fn list_keys(
    State(state): State<AppState>,
    admin: AdminCaller,
    ApiPath(tenant): ApiPath<String>,
) -> ApiResult<Json<KeyList>> {
    let keys = state.admin.list_keys(&actor(&admin), &tenant).await?;
    Ok(Json(KeyList {
        items: keys.into_iter().map(KeyDto::from).collect(),
    }))
}

/// Create a service key. The answer holds the secret; it is never shown again.
#[utoipa::path(post, path = "/admin/v1/tenants/{tenant}/keys", operation_id = "create_key", tag = "keys",
    params(("tenant" = String, Path, description = "Tenant slug")),
    request_body = CreateKey,
    responses((status = 201, body = CreatedKey), (status = 404, body = Problem)),
    security(("bearer" = [])))]
async fn create_key(
    State(state): State<AppState>,
    admin: AdminCaller,
    ApiPath(tenant): ApiPath<String>,
    ApiJson(body): ApiJson<CreateKey>,
) -> ApiResult<(StatusCode, Json<CreatedKey>)> {
    let (row, key) = state
        .admin
        .create_key(&actor(&admin), &tenant, &body.name)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedKey {
            id: row.id,
            name: row.name,
            prefix: row.prefix,
            key,
        }),
    ))
}

#[utoipa::path(delete, path = "/admin/v1/tenants/{tenant}/keys/{id}", operation_id = "revoke_key", tag = "keys",
    params(("tenant" = String, Path, description = "Tenant slug"), ("id" = String, Path)),
    responses((status = 200, body = KeyDto), (status = 404, body = Problem)),
    security(("bearer" = [])))]
async fn revoke_key(
    State(state): State<AppState>,
    admin: AdminCaller,
    ApiPath((tenant, id)): ApiPath<(String, String)>,
) -> ApiResult<Json<KeyDto>> {
    let row = state.admin.revoke_key(&actor(&admin), &tenant, &id).await?;
    Ok(Json(row.into()))
}

/// A tenant's users, in creation order, paged by cursor; `search` matches part of the email.
#[utoipa::path(get, path = "/admin/v1/tenants/{tenant}/users", operation_id = "list_users", tag = "users",
    params(("tenant" = String, Path, description = "Tenant slug"), UserListQuery),
    responses((status = 200, body = UserPage), (status = 400, body = Problem)),
    security(("bearer" = [])))]
async fn list_users(
    State(state): State<AppState>,
    admin: AdminCaller,
    ApiPath(tenant): ApiPath<String>,
    ApiQuery(q): ApiQuery<UserListQuery>,
) -> ApiResult<Json<UserPage>> {
    let page = state
        .admin
        .list_users(
            &actor(&admin),
            &tenant,
            q.search.as_deref(),
            q.cursor.as_deref(),
            q.limit,
        )
        .await?;
    Ok(Json(page.into()))
}

/// Create a user, with sign-up's checks of the email and password, without signing them
/// in. Without `password` the user has none and signs in only after a password reset.
#[utoipa::path(post, path = "/admin/v1/tenants/{tenant}/users", operation_id = "create_user", tag = "users",
    params(("tenant" = String, Path, description = "Tenant slug")),
    request_body = CreateUser,
    responses((status = 201, body = UserDto),
              (status = 400, body = Problem, description = "validation_failed, weak_password, invalid_body"),
              (status = 403, body = Problem, description = "insufficient_role (a viewer)"),
              (status = 404, body = Problem, description = "tenant_not_found"),
              (status = 409, body = Problem, description = "email_taken (`fields.email`)")),
    security(("bearer" = [])))]
async fn create_user(
    State(state): State<AppState>,
    admin: AdminCaller,
    ApiPath(tenant): ApiPath<String>,
    ApiJson(body): ApiJson<CreateUser>,
) -> ApiResult<(StatusCode, Json<UserDto>)> {
    let user = state
        .admin
        .create_user(
            &actor(&admin),
            &tenant,
            &body.email,
            body.password.as_deref(),
            body.verified,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(user.into())))
}

#[utoipa::path(get, path = "/admin/v1/tenants/{tenant}/users/{id}", operation_id = "get_user", tag = "users",
    params(("tenant" = String, Path, description = "Tenant slug"), ("id" = String, Path)),
    responses((status = 200, body = UserDto), (status = 404, body = Problem)),
    security(("bearer" = [])))]
async fn get_user(
    State(state): State<AppState>,
    admin: AdminCaller,
    ApiPath((tenant, id)): ApiPath<(String, String)>,
) -> ApiResult<Json<UserDto>> {
    Ok(Json(
        state
            .admin
            .get_user(&actor(&admin), &tenant, &id)
            .await?
            .into(),
    ))
}

/// Delete a user with their sessions and tokens.
#[utoipa::path(delete, path = "/admin/v1/tenants/{tenant}/users/{id}", operation_id = "delete_user", tag = "users",
    params(("tenant" = String, Path, description = "Tenant slug"), ("id" = String, Path)),
    responses((status = 204), (status = 404, body = Problem)),
    security(("bearer" = [])))]
async fn delete_user(
    State(state): State<AppState>,
    admin: AdminCaller,
    ApiPath((tenant, id)): ApiPath<(String, String)>,
) -> ApiResult<StatusCode> {
    state
        .admin
        .delete_user(&actor(&admin), &tenant, &id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Disable a user: their sessions end and they can do nothing until enabled.
#[utoipa::path(post, path = "/admin/v1/tenants/{tenant}/users/{id}/disable", operation_id = "disable_user", tag = "users",
    params(("tenant" = String, Path, description = "Tenant slug"), ("id" = String, Path)),
    responses((status = 200, body = UserDto), (status = 404, body = Problem)),
    security(("bearer" = [])))]
async fn disable_user(
    State(state): State<AppState>,
    admin: AdminCaller,
    ApiPath((tenant, id)): ApiPath<(String, String)>,
) -> ApiResult<Json<UserDto>> {
    set_user_disabled(&state, &admin, &tenant, &id, true).await
}

#[utoipa::path(post, path = "/admin/v1/tenants/{tenant}/users/{id}/enable", operation_id = "enable_user", tag = "users",
    params(("tenant" = String, Path, description = "Tenant slug"), ("id" = String, Path)),
    responses((status = 200, body = UserDto), (status = 404, body = Problem)),
    security(("bearer" = [])))]
async fn enable_user(
    State(state): State<AppState>,
    admin: AdminCaller,
    ApiPath((tenant, id)): ApiPath<(String, String)>,
) -> ApiResult<Json<UserDto>> {
    set_user_disabled(&state, &admin, &tenant, &id, false).await
}

async fn set_user_disabled(
    state: &AppState,
    admin: &AdminCaller,
    tenant: &str,
    id: &str,
    disabled: bool,
) -> ApiResult<Json<UserDto>> {
    let u = state
        .admin
        .set_user_disabled(&actor(admin), tenant, id, disabled)
        .await?;
    Ok(Json(u.into()))
}

/// Mark a user's email verified (as if they had confirmed a verification mail).
#[utoipa::path(post, path = "/admin/v1/tenants/{tenant}/users/{id}/verify", operation_id = "verify_user", tag = "users",
    params(("tenant" = String, Path, description = "Tenant slug"), ("id" = String, Path)),
    responses((status = 200, body = UserDto),
              (status = 403, body = Problem, description = "insufficient_role (a viewer)"),
              (status = 404, body = Problem)),
    security(("bearer" = [])))]
async fn verify_user(
    State(state): State<AppState>,
    admin: AdminCaller,
    ApiPath((tenant, id)): ApiPath<(String, String)>,
) -> ApiResult<Json<UserDto>> {
    let u = state
        .admin
        .mark_user_verified(&actor(&admin), &tenant, &id)
        .await?;
    Ok(Json(u.into()))
}

/// End every session of a user (they must sign in again).
#[utoipa::path(post, path = "/admin/v1/tenants/{tenant}/users/{id}/revoke-sessions", operation_id = "revoke_user_sessions", tag = "users",
    params(("tenant" = String, Path, description = "Tenant slug"), ("id" = String, Path)),
    responses((status = 200, body = RevokedSessions), (status = 404, body = Problem)),
    security(("bearer" = [])))]
async fn revoke_user_sessions(
    State(state): State<AppState>,
    admin: AdminCaller,
    ApiPath((tenant, id)): ApiPath<(String, String)>,
) -> ApiResult<Json<RevokedSessions>> {
    let n = state
        .admin
        .revoke_user_sessions(&actor(&admin), &tenant, &id)
        .await?;
    Ok(Json(RevokedSessions {
        revoked_sessions: n,
    }))
}

/// Every admin action, newest first (for a tenant admin, those on their tenants only).
#[utoipa::path(get, path = "/admin/v1/audit", operation_id = "list_audit", tag = "admin",
    params(AuditQueryParams),
    responses((status = 200, body = AuditPage), (status = 400, body = Problem)),
    security(("bearer" = [])))]
async fn list_audit(
    State(state): State<AppState>,
    admin: AdminCaller,
    ApiQuery(q): ApiQuery<AuditQueryParams>,
) -> ApiResult<Json<AuditPage>> {
    let page = state
        .admin
        .list_audit(&admin.0, q.tenant.as_deref(), q.cursor.as_deref(), q.limit)
        .await?;
    Ok(Json(page.into()))
}

/// A tenant's secrets by name: names and update times, never values.
#[utoipa::path(get, path = "/admin/v1/tenants/{tenant}/secrets", operation_id = "list_secrets", tag = "secrets",
    params(("tenant" = String, Path, description = "Tenant slug")),
    responses((status = 200, body = SecretList), (status = 404, body = Problem)),
    security(("bearer" = [])))]
async fn list_secrets(
    State(state): State<AppState>,
    admin: AdminCaller,
    ApiPath(tenant): ApiPath<String>,
) -> ApiResult<Json<SecretList>> {
    let items = state.admin.list_secrets(&actor(&admin), &tenant).await?;
    Ok(Json(SecretList {
        items: items.into_iter().map(SecretDto::from).collect(),
    }))
}

/// Create or replace a secret (`^[A-Z_][A-Z0-9_]{0,63}$`, value up to 8192 bytes, at
/// most 100 per tenant). It is stored encrypted; the answer does not echo the value.
#[utoipa::path(put, path = "/admin/v1/tenants/{tenant}/secrets/{name}", operation_id = "put_secret", tag = "secrets",
    params(("tenant" = String, Path, description = "Tenant slug"),
           ("name" = String, Path, description = "Secret name")),
    request_body = PutSecret,
    responses((status = 200, body = SecretDto),
              (status = 400, body = Problem,
               description = "validation_failed (`fields.name`, `fields.value`)"),
              (status = 404, body = Problem),
              (status = 409, body = Problem, description = "too_many_secrets")),
    security(("bearer" = [])))]
async fn put_secret(
    State(state): State<AppState>,
    admin: AdminCaller,
    ApiPath((tenant, name)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<PutSecret>,
) -> ApiResult<Json<SecretDto>> {
    let info = state
        .admin
        .set_secret(&actor(&admin), &tenant, &name, &body.value)
        .await?;
    Ok(Json(info.into()))
}

#[utoipa::path(delete, path = "/admin/v1/tenants/{tenant}/secrets/{name}", operation_id = "delete_secret", tag = "secrets",
    params(("tenant" = String, Path, description = "Tenant slug"),
           ("name" = String, Path, description = "Secret name")),
    responses((status = 204), (status = 400, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
async fn delete_secret(
    State(state): State<AppState>,
    admin: AdminCaller,
    ApiPath((tenant, name)): ApiPath<(String, String)>,
) -> ApiResult<StatusCode> {
    state
        .admin
        .delete_secret(&actor(&admin), &tenant, &name)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
