//! `/admin/v1/admins/invite` and `/admin/v1/auth/invite`: owners invite admins by mail;
//! the invitee sets a password with the mailed one-time token and is signed in to the
//! console (the same cookie and CSRF token as `POST /admin/v1/auth/session`).

use axum::Json;
use axum::extract::State;
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{AppendHeaders, IntoResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::admin_access_routes::{SessionOut, cookie_header, over_https};
use super::dto::timestamp;
use super::extract::{AdminCaller, ApiJson, ApiPath, Client};
use crate::admin::{InviteView, Role};
use crate::error::{ApiResult, Problem};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_invites, invite_admin))
        .routes(routes!(withdraw_invite))
        .routes(routes!(accept_invite))
}

#[derive(Deserialize, ToSchema)]
pub struct InviteAdmin {
    pub email: String,
    pub role: Role,
    /// Tenant slugs; only for `tenant_admin`.
    #[serde(default)]
    pub tenants: Vec<String>,
}

/// A pending invitation (never its token: that went to the invitee alone).
#[derive(Serialize, ToSchema)]
pub struct InviteOut {
    pub id: String,
    pub email: String,
    pub role: Role,
    /// The tenants (slugs) of a `tenant_admin`; empty for every other role.
    pub tenants: Vec<String>,
    pub created_at: String,
    /// The link stops working then.
    pub expires_at: String,
}

impl From<InviteView> for InviteOut {
    fn from(i: InviteView) -> Self {
        InviteOut {
            id: i.id,
            email: i.email,
            role: i.role,
            tenants: i.tenants,
            created_at: timestamp(i.created_at),
            expires_at: timestamp(i.expires_at),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct InviteList {
    pub items: Vec<InviteOut>,
}

#[derive(Deserialize, ToSchema)]
pub struct AcceptInvite {
    /// The token of the mailed link (after `#token=`).
    pub token: String,
    /// The invitee's password, under the policy of every password.
    pub password: String,
}

/// Invite an admin by mail (owners only; an API key cannot invite an owner). The mail
/// holds a one-time link to the console's `/_/invite` page; a new invitation to the same
/// email replaces the pending one.
#[utoipa::path(post, path = "/admin/v1/admins/invite", operation_id = "invite_admin", tag = "admins",
    request_body = InviteAdmin,
    responses((status = 201, body = InviteOut),
              (status = 400, body = Problem, description = "validation_failed"),
              (status = 401, body = Problem),
              (status = 403, body = Problem, description = "insufficient_role, csrf_failed"),
              (status = 409, body = Problem, description = "admin_exists")),
    security(("bearer" = []), ("cookie" = [])))]
async fn invite_admin(
    State(state): State<AppState>,
    admin: AdminCaller,
    ApiJson(body): ApiJson<InviteAdmin>,
) -> ApiResult<(StatusCode, Json<InviteOut>)> {
    let view = state
        .admin
        .invite_admin(&admin.0, &body.email, body.role.as_str(), &body.tenants)
        .await?;
    Ok((StatusCode::CREATED, Json(view.into())))
}

/// Pending invitations (owners only): unused and unexpired, oldest first.
#[utoipa::path(get, path = "/admin/v1/admins/invite", operation_id = "list_admin_invites", tag = "admins",
    responses((status = 200, body = InviteList), (status = 401, body = Problem),
              (status = 403, body = Problem, description = "insufficient_role")),
    security(("bearer" = []), ("cookie" = [])))]
async fn list_invites(
    State(state): State<AppState>,
    admin: AdminCaller,
) -> ApiResult<Json<InviteList>> {
    let items = state.admin.list_invites(&admin.0).await?;
    Ok(Json(InviteList {
        items: items.into_iter().map(InviteOut::from).collect(),
    }))
}

/// Withdraw a pending invitation (owners only): its link stops working.
#[utoipa::path(delete, path = "/admin/v1/admins/invite/{id}", operation_id = "withdraw_admin_invite", tag = "admins",
    params(("id" = String, Path)),
    responses((status = 204), (status = 401, body = Problem),
              (status = 403, body = Problem, description = "insufficient_role, csrf_failed"),
              (status = 404, body = Problem)),
    security(("bearer" = []), ("cookie" = [])))]
async fn withdraw_invite(
    State(state): State<AppState>,
    admin: AdminCaller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    state.admin.withdraw_invite(&admin.0, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Accept an invitation: sets the invitee's password with the mailed token (once; it
/// expires), makes them an admin with the role and tenants of the invitation, and signs
/// them in to the console as `POST /admin/v1/auth/session` does. A refused password
/// leaves the token usable. Rate limited per client IP.
#[utoipa::path(post, path = "/admin/v1/auth/invite", operation_id = "accept_admin_invite", tag = "admin",
    request_body = AcceptInvite,
    responses((status = 200, body = SessionOut,
               headers(("set-cookie" = String, description = "the session cookie"))),
              (status = 400, body = Problem,
               description = "invalid_or_expired_token, validation_failed, weak_password"),
              (status = 409, body = Problem, description = "admin_exists"),
              (status = 429, body = Problem)))]
async fn accept_invite(
    State(state): State<AppState>,
    Client(client): Client,
    parts: Parts,
    ApiJson(body): ApiJson<AcceptInvite>,
) -> ApiResult<impl IntoResponse> {
    let opened = state
        .admin
        .accept_invite(&body.token, &body.password, &client.ip)
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
