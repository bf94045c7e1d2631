//! `/admin/v1/admins`, `/admin/v1/api-keys` and `/admin/v1/auth/session|password`: who may
//! administer the platform, and the console's cookie sessions. Access itself is checked
//! by the `AdminCaller` extractor (see `admin::access`).

use axum::Json;
use axum::extract::State;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{AppendHeaders, IntoResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::dto::{PasswordChange, timestamp};
use super::extract::{AdminCaller, ApiJson, ApiPath, Client};
use crate::admin::{AdminView, ApiKeyView, NewApiKey, Role, SESSION_COOKIE, Via};
use crate::error::{ApiResult, Problem};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_admins, create_admin))
        .routes(routes!(update_admin, delete_admin))
        .routes(routes!(list_api_keys, create_api_key))
        .routes(routes!(revoke_api_key))
        .routes(routes!(open_session, current_session, close_session))
        .routes(routes!(change_password))
}

#[derive(Serialize, ToSchema)]
pub struct AdminOut {
    pub id: String,
    pub email: String,
    pub role: Role,
    /// The tenants (slugs) of a `tenant_admin`; empty for every other role.
    pub tenants: Vec<String>,
    pub created_at: String,
}

impl From<AdminView> for AdminOut {
    fn from(a: AdminView) -> Self {
        AdminOut {
            id: a.id,
            email: a.email,
            role: a.role,
            tenants: a.tenants,
            created_at: timestamp(a.created_at),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct AdminList {
    pub items: Vec<AdminOut>,
}

#[derive(Deserialize, ToSchema)]
pub struct CreateAdmin {
    pub email: String,
    pub password: String,
    pub role: Role,
    /// Tenant slugs; only for `tenant_admin`.
    #[serde(default)]
    pub tenants: Vec<String>,
}

#[derive(Deserialize, ToSchema)]
pub struct UpdateAdmin {
    pub role: Option<Role>,
    /// Tenant slugs; only for `tenant_admin`.
    pub tenants: Option<Vec<String>>,
}

#[derive(Serialize, ToSchema)]
pub struct ApiKeyOut {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub tenants: Vec<String>,
    /// The key's first characters, to recognise it by; the key itself is never shown again.
    pub prefix: String,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub last_used_at: Option<String>,
    pub revoked_at: Option<String>,
}

impl From<ApiKeyView> for ApiKeyOut {
    fn from(k: ApiKeyView) -> Self {
        ApiKeyOut {
            id: k.id,
            name: k.name,
            role: k.role,
            tenants: k.tenants,
            prefix: k.prefix,
            created_at: timestamp(k.created_at),
            expires_at: k.expires_at.map(timestamp),
            last_used_at: k.last_used_at.map(timestamp),
            revoked_at: k.revoked_at.map(timestamp),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ApiKeyList {
    pub items: Vec<ApiKeyOut>,
}

#[derive(Deserialize, ToSchema)]
pub struct CreateApiKey {
    pub name: String,
    pub role: Role,
    /// Tenant slugs; only for `tenant_admin`.
    #[serde(default)]
    pub tenants: Vec<String>,
    /// RFC 3339; none: never (or, for a key made by a key, that key's expiry).
    pub expires_at: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedApiKey {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub tenants: Vec<String>,
    pub prefix: String,
    /// The key: shown this once, stored only as a hash. Send it as `Authorization: Bearer`.
    pub key: String,
    pub expires_at: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct SessionOut {
    /// Send as `X-CSRF-Token` with every changing request made with the session cookie.
    pub csrf_token: String,
    pub admin: AdminOut,
    pub expires_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct WhoAmI {
    pub admin: AdminOut,
    /// `token`, `api_key` or `session`.
    pub via: &'static str,
    /// The session's CSRF token (with the session cookie only).
    pub csrf_token: Option<String>,
}

/// Every admin (owners only).
#[utoipa::path(get, path = "/admin/v1/admins", operation_id = "list_admins", tag = "admins",
    responses((status = 200, body = AdminList), (status = 401, body = Problem),
              (status = 403, body = Problem, description = "insufficient_role")),
    security(("bearer" = []), ("cookie" = [])))]
async fn list_admins(
    State(state): State<AppState>,
    admin: AdminCaller,
) -> ApiResult<Json<AdminList>> {
    let items = state.admin.list_admins(&admin.0).await?;
    Ok(Json(AdminList {
        items: items.into_iter().map(AdminOut::from).collect(),
    }))
}

/// Add an admin (owners only; an API key cannot add an owner).
#[utoipa::path(post, path = "/admin/v1/admins", operation_id = "create_admin", tag = "admins",
    request_body = CreateAdmin,
    responses((status = 201, body = AdminOut),
              (status = 400, body = Problem, description = "validation_failed, weak_password"),
              (status = 401, body = Problem),
              (status = 403, body = Problem, description = "insufficient_role, csrf_failed"),
              (status = 409, body = Problem, description = "admin_exists")),
    security(("bearer" = []), ("cookie" = [])))]
async fn create_admin(
    State(state): State<AppState>,
    admin: AdminCaller,
    ApiJson(body): ApiJson<CreateAdmin>,
) -> ApiResult<(StatusCode, Json<AdminOut>)> {
    let view = state
        .admin
        .add_admin(
            &admin.0,
            &body.email,
            &body.password,
            body.role.as_str(),
            &body.tenants,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(view.into())))
}

/// Change an admin's role and/or tenants (owners only). The last owner cannot be demoted
/// (409 `last_owner`).
#[utoipa::path(patch, path = "/admin/v1/admins/{id}", operation_id = "update_admin", tag = "admins",
    params(("id" = String, Path)),
    request_body = UpdateAdmin,
    responses((status = 200, body = AdminOut), (status = 400, body = Problem),
              (status = 401, body = Problem), (status = 403, body = Problem),
              (status = 404, body = Problem), (status = 409, body = Problem, description = "last_owner")),
    security(("bearer" = []), ("cookie" = [])))]
async fn update_admin(
    State(state): State<AppState>,
    admin: AdminCaller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<UpdateAdmin>,
) -> ApiResult<Json<AdminOut>> {
    let view = state
        .admin
        .update_admin(
            &admin.0,
            &id,
            body.role.map(Role::as_str),
            body.tenants.as_deref(),
        )
        .await?;
    Ok(Json(view.into()))
}

/// Remove an admin (owners only); their sessions and tokens end at once. The last owner
/// cannot be removed (409 `last_owner`).
#[utoipa::path(delete, path = "/admin/v1/admins/{id}", operation_id = "delete_admin", tag = "admins",
    params(("id" = String, Path)),
    responses((status = 204), (status = 401, body = Problem), (status = 403, body = Problem),
              (status = 404, body = Problem), (status = 409, body = Problem, description = "last_owner")),
    security(("bearer" = []), ("cookie" = [])))]
async fn delete_admin(
    State(state): State<AppState>,
    admin: AdminCaller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    state.admin.remove_admin(&admin.0, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Admin API keys: an owner sees all, anyone else the keys they made.
#[utoipa::path(get, path = "/admin/v1/api-keys", operation_id = "list_api_keys", tag = "admins",
    responses((status = 200, body = ApiKeyList), (status = 401, body = Problem),
              (status = 403, body = Problem)),
    security(("bearer" = []), ("cookie" = [])))]
async fn list_api_keys(
    State(state): State<AppState>,
    admin: AdminCaller,
) -> ApiResult<Json<ApiKeyList>> {
    let items = state.admin.list_api_keys(&admin.0).await?;
    Ok(Json(ApiKeyList {
        items: items.into_iter().map(ApiKeyOut::from).collect(),
    }))
}

/// Make an admin API key, no wider than its maker (role, tenants; a key never makes an
/// owner). The answer holds the key; it is never shown again.
#[utoipa::path(post, path = "/admin/v1/api-keys", operation_id = "create_api_key", tag = "admins",
    request_body = CreateApiKey,
    responses((status = 201, body = CreatedApiKey),
              (status = 400, body = Problem, description = "validation_failed"),
              (status = 401, body = Problem),
              (status = 403, body = Problem, description = "insufficient_role, csrf_failed")),
    security(("bearer" = []), ("cookie" = [])))]
async fn create_api_key(
    State(state): State<AppState>,
    admin: AdminCaller,
    ApiJson(body): ApiJson<CreateApiKey>,
) -> ApiResult<(StatusCode, Json<CreatedApiKey>)> {
    let (view, key) = state
        .admin
        .create_api_key(
            &admin.0,
            NewApiKey {
                name: &body.name,
                role: body.role.as_str(),
                tenants: &body.tenants,
                expires_at: body.expires_at.as_deref(),
            },
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedApiKey {
            id: view.id,
            name: view.name,
            role: view.role,
            tenants: view.tenants,
            prefix: view.prefix,
            key,
            expires_at: view.expires_at.map(timestamp),
        }),
    ))
}

/// Revoke an admin API key: it stops working at its next request, on every node.
#[utoipa::path(delete, path = "/admin/v1/api-keys/{id}", operation_id = "revoke_api_key", tag = "admins",
    params(("id" = String, Path)),
    responses((status = 200, body = ApiKeyOut), (status = 401, body = Problem),
              (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = []), ("cookie" = [])))]
async fn revoke_api_key(
    State(state): State<AppState>,
    admin: AdminCaller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<ApiKeyOut>> {
    Ok(Json(
        state.admin.revoke_api_key(&admin.0, &id).await?.into(),
    ))
}

/// Whether the client reached us over HTTPS: the configured public URL says so, or a
/// trusted proxy does (`X-Forwarded-Proto`).
pub(super) fn over_https(state: &AppState, headers: &HeaderMap) -> bool {
    state.config.public_url.starts_with("https://")
        || (state.config.trust_forwarded_for
            && headers
                .get("x-forwarded-proto")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("https")))
}

pub(super) fn cookie_header(value: &str, max_age: u64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Console sign-in: sets the session cookie (`HttpOnly`, `SameSite=Strict`, `Path=/`,
/// `Secure` over HTTPS) and answers its CSRF token. Rate limited like
/// `/admin/v1/auth/login`.
#[utoipa::path(post, path = "/admin/v1/auth/session", operation_id = "open_admin_session", tag = "admin",
    request_body = super::dto::Credentials,
    responses((status = 200, body = SessionOut,
               headers(("set-cookie" = String, description = "the session cookie"))),
              (status = 400, body = Problem), (status = 401, body = Problem),
              (status = 429, body = Problem)))]
async fn open_session(
    State(state): State<AppState>,
    Client(client): Client,
    parts: Parts,
    ApiJson(body): ApiJson<super::dto::Credentials>,
) -> ApiResult<impl IntoResponse> {
    let opened = state
        .admin
        .open_session(&body.email, &body.password, &client.ip)
        .await?;
    let max_age = state.admin.session_times().lifetime.as_secs();
    let cookie = cookie_header(&opened.cookie, max_age, over_https(&state, &parts.headers));
    let admin = state.admin.describe(&opened.principal).await?;
    Ok((
        AppendHeaders([(header::SET_COOKIE, cookie)]),
        Json(SessionOut {
            csrf_token: opened.csrf_token,
            admin: admin.into(),
            expires_at: timestamp(opened.expires_at),
        }),
    ))
}

/// Who is calling: the admin (or API key) with role and tenants, and, with the session
/// cookie, the session's CSRF token (for a page that was reloaded).
#[utoipa::path(get, path = "/admin/v1/auth/session", operation_id = "current_admin_session", tag = "admin",
    responses((status = 200, body = WhoAmI), (status = 401, body = Problem)),
    security(("bearer" = []), ("cookie" = [])))]
async fn current_session(
    State(state): State<AppState>,
    admin: AdminCaller,
) -> ApiResult<Json<WhoAmI>> {
    let view = state.admin.describe(&admin.0).await?;
    let (via, csrf_token) = match &admin.0.via {
        Via::Token => ("token", None),
        Via::ApiKey => ("api_key", None),
        Via::Session { csrf_token, .. } => ("session", Some(csrf_token.clone())),
    };
    Ok(Json(WhoAmI {
        admin: view.into(),
        via,
        csrf_token,
    }))
}

/// Sign out: ends the session (on every node) and clears the cookie.
#[utoipa::path(delete, path = "/admin/v1/auth/session", operation_id = "close_admin_session", tag = "admin",
    responses((status = 204), (status = 401, body = Problem),
              (status = 403, body = Problem, description = "csrf_failed")),
    security(("bearer" = []), ("cookie" = [])))]
async fn close_session(
    State(state): State<AppState>,
    admin: AdminCaller,
    parts: Parts,
) -> ApiResult<impl IntoResponse> {
    state.admin.close_session(&admin.0).await?;
    let cookie = cookie_header("", 0, over_https(&state, &parts.headers));
    Ok((
        StatusCode::NO_CONTENT,
        AppendHeaders([(header::SET_COOKIE, cookie)]),
    ))
}

/// Change one's own password: every console session of this admin ends and their admin
/// tokens stop working (sign in again).
#[utoipa::path(post, path = "/admin/v1/auth/password", operation_id = "change_admin_password", tag = "admin",
    request_body = PasswordChange,
    responses((status = 204),
              (status = 400, body = Problem, description = "validation_failed, weak_password"),
              (status = 401, body = Problem),
              (status = 403, body = Problem, description = "insufficient_role (an API key), csrf_failed"),
              (status = 429, body = Problem)),
    security(("bearer" = []), ("cookie" = [])))]
async fn change_password(
    State(state): State<AppState>,
    admin: AdminCaller,
    Client(client): Client,
    ApiJson(body): ApiJson<PasswordChange>,
) -> ApiResult<StatusCode> {
    state
        .admin
        .change_password(
            &admin.0,
            &body.current_password,
            &body.new_password,
            &client.ip,
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
