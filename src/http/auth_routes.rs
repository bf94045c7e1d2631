//! `/v1/t/{tenant}/auth/*`: end-user sign-up, sessions and account flows.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::dto::*;
use super::extract::{ApiJson, ApiQuery, Client, OptionalJson, TenantScope};
use crate::auth::service::require_user;
use crate::error::{ApiResult, Problem};
use crate::state::AppState;
use crate::store::UserTokenKind;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(signup))
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(logout))
        .routes(routes!(me))
        .routes(routes!(change_password))
        .routes(routes!(verify_request))
        .routes(routes!(verify_confirm, verify_confirm_link))
        .routes(routes!(reset_request))
        .routes(routes!(reset_confirm, reset_page))
}

/// Create an account and start a session.
#[utoipa::path(post, path = "/v1/t/{tenant}/auth/signup", operation_id = "auth_signup", tag = "auth",
    params(("tenant" = String, Path, description = "Tenant slug")),
    request_body = Credentials,
    responses((status = 201, body = SessionDto), (status = 400, body = Problem),
              (status = 409, body = Problem, description = "email_taken"),
              (status = 429, body = Problem, description = "rate_limited, with Retry-After")),
    security((), ("bearer" = [])))]
async fn signup(
    State(state): State<AppState>,
    TenantScope(scope): TenantScope,
    Client(client): Client,
    ApiJson(body): ApiJson<Credentials>,
) -> ApiResult<(StatusCode, Json<SessionDto>)> {
    let session = state
        .auth
        .signup(&scope, &body.email, &body.password, &client)
        .await?;
    Ok((StatusCode::CREATED, Json(session.into())))
}

/// Sign in with email and password (rate limited per IP and per account).
#[utoipa::path(post, path = "/v1/t/{tenant}/auth/login", operation_id = "auth_login", tag = "auth",
    params(("tenant" = String, Path, description = "Tenant slug")),
    request_body = Credentials,
    responses((status = 200, body = SessionDto), (status = 401, body = Problem),
              (status = 429, body = Problem, description = "rate_limited, with Retry-After")),
    security((), ("bearer" = [])))]
async fn login(
    State(state): State<AppState>,
    TenantScope(scope): TenantScope,
    Client(client): Client,
    ApiJson(body): ApiJson<Credentials>,
) -> ApiResult<Json<SessionDto>> {
    let session = state
        .auth
        .login(&scope, &body.email, &body.password, &client)
        .await?;
    Ok(Json(session.into()))
}

/// Trade a refresh token for a new access token and a new refresh token. Presenting a
/// refresh token twice revokes its whole session.
#[utoipa::path(post, path = "/v1/t/{tenant}/auth/refresh", operation_id = "auth_refresh", tag = "auth",
    params(("tenant" = String, Path, description = "Tenant slug")),
    request_body = RefreshRequest,
    responses((status = 200, body = SessionDto), (status = 401, body = Problem)),
    security((), ("bearer" = [])))]
async fn refresh(
    State(state): State<AppState>,
    TenantScope(scope): TenantScope,
    ApiJson(body): ApiJson<RefreshRequest>,
) -> ApiResult<Json<SessionDto>> {
    let session = state.auth.refresh(&scope, &body.refresh_token).await?;
    Ok(Json(session.into()))
}

/// End the caller's session (access token) and/or the session of a refresh token.
#[utoipa::path(post, path = "/v1/t/{tenant}/auth/logout", operation_id = "auth_logout", tag = "auth",
    params(("tenant" = String, Path, description = "Tenant slug")),
    request_body(content = Option<LogoutRequest>, description = "optional"),
    responses((status = 204), (status = 401, body = Problem)),
    security((), ("bearer" = [])))]
async fn logout(
    State(state): State<AppState>,
    TenantScope(scope): TenantScope,
    OptionalJson(body): OptionalJson<LogoutRequest>,
) -> ApiResult<StatusCode> {
    state
        .auth
        .logout(&scope, body.refresh_token.as_deref())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The signed-in user.
#[utoipa::path(get, path = "/v1/t/{tenant}/auth/me", operation_id = "auth_me", tag = "auth",
    params(("tenant" = String, Path, description = "Tenant slug")),
    responses((status = 200, body = UserDto), (status = 401, body = Problem)),
    security(("bearer" = [])))]
async fn me(
    State(state): State<AppState>,
    TenantScope(scope): TenantScope,
) -> ApiResult<Json<UserDto>> {
    Ok(Json(state.auth.me(&scope).await?.into()))
}

/// Change the password; every other session of the user ends.
#[utoipa::path(post, path = "/v1/t/{tenant}/auth/password", operation_id = "auth_change_password", tag = "auth",
    params(("tenant" = String, Path, description = "Tenant slug")),
    request_body = PasswordChange,
    responses((status = 200, body = PasswordChanged), (status = 401, body = Problem),
              (status = 429, body = Problem, description = "rate_limited, with Retry-After")),
    security(("bearer" = [])))]
async fn change_password(
    State(state): State<AppState>,
    TenantScope(scope): TenantScope,
    Client(client): Client,
    ApiJson(body): ApiJson<PasswordChange>,
) -> ApiResult<Json<PasswordChanged>> {
    require_user(&scope)?;
    let revoked_sessions = state
        .auth
        .change_password(&scope, &body.current_password, &body.new_password, &client)
        .await?;
    Ok(Json(PasswordChanged { revoked_sessions }))
}

/// Starts the emailed flow of `kind`; the answer is the same whether or not the email
/// is registered.
fn request_token(
    state: &AppState,
    scope: &crate::tenancy::Scope,
    client: &crate::auth::ClientInfo,
    email: &str,
    kind: UserTokenKind,
) -> ApiResult<(StatusCode, Json<Accepted>)> {
    state.auth.request_token(scope, email, kind, client)?;
    Ok((StatusCode::ACCEPTED, Json(Accepted { status: "accepted" })))
}

/// Confirms an email address with its emailed token, whether posted or in the link.
async fn confirm_verification(
    state: &AppState,
    scope: &crate::tenancy::Scope,
    token: &str,
) -> ApiResult<Json<Verified>> {
    state.auth.confirm_verification(scope, token).await?;
    Ok(Json(Verified {
        email_verified: true,
    }))
}

/// Email a verification link. Answers 202 whether or not the email is registered.
#[utoipa::path(post, path = "/v1/t/{tenant}/auth/verify/request", operation_id = "auth_verify_request", tag = "auth",
    params(("tenant" = String, Path, description = "Tenant slug")),
    request_body = EmailRequest,
    responses((status = 202, body = Accepted), (status = 400, body = Problem)),
    security((), ("bearer" = [])))]
async fn verify_request(
    State(state): State<AppState>,
    TenantScope(scope): TenantScope,
    Client(client): Client,
    ApiJson(body): ApiJson<EmailRequest>,
) -> ApiResult<(StatusCode, Json<Accepted>)> {
    request_token(
        &state,
        &scope,
        &client,
        &body.email,
        UserTokenKind::VerifyEmail,
    )
}

/// Confirm an email address with the emailed token (single use).
#[utoipa::path(post, path = "/v1/t/{tenant}/auth/verify/confirm", operation_id = "auth_verify_confirm", tag = "auth",
    params(("tenant" = String, Path, description = "Tenant slug")),
    request_body = TokenConfirm,
    responses((status = 200, body = Verified), (status = 400, body = Problem)),
    security((), ("bearer" = [])))]
async fn verify_confirm(
    State(state): State<AppState>,
    TenantScope(scope): TenantScope,
    ApiJson(body): ApiJson<TokenConfirm>,
) -> ApiResult<Json<Verified>> {
    confirm_verification(&state, &scope, &body.token).await
}

/// The emailed verification link itself: opening it confirms the address.
#[utoipa::path(get, path = "/v1/t/{tenant}/auth/verify/confirm", operation_id = "auth_verify_confirm_link", tag = "auth",
    params(("tenant" = String, Path, description = "Tenant slug"), TokenQuery),
    responses((status = 200, body = Verified), (status = 400, body = Problem)),
    security((), ("bearer" = [])))]
async fn verify_confirm_link(
    State(state): State<AppState>,
    TenantScope(scope): TenantScope,
    ApiQuery(q): ApiQuery<TokenQuery>,
) -> ApiResult<Json<Verified>> {
    confirm_verification(&state, &scope, &q.token).await
}

/// Email a password-reset token. Answers 202 whether or not the email is registered.
#[utoipa::path(post, path = "/v1/t/{tenant}/auth/reset/request", operation_id = "auth_reset_request", tag = "auth",
    params(("tenant" = String, Path, description = "Tenant slug")),
    request_body = EmailRequest,
    responses((status = 202, body = Accepted), (status = 400, body = Problem)),
    security((), ("bearer" = [])))]
async fn reset_request(
    State(state): State<AppState>,
    TenantScope(scope): TenantScope,
    Client(client): Client,
    ApiJson(body): ApiJson<EmailRequest>,
) -> ApiResult<(StatusCode, Json<Accepted>)> {
    request_token(
        &state,
        &scope,
        &client,
        &body.email,
        UserTokenKind::ResetPassword,
    )
}

/// Set a new password with the emailed token (single use); all sessions end.
#[utoipa::path(post, path = "/v1/t/{tenant}/auth/reset/confirm", operation_id = "auth_reset_confirm", tag = "auth",
    params(("tenant" = String, Path, description = "Tenant slug")),
    request_body = ResetConfirm,
    responses((status = 204), (status = 400, body = Problem),
              (status = 429, body = Problem, description = "rate_limited, with Retry-After")),
    security((), ("bearer" = [])))]
async fn reset_confirm(
    State(state): State<AppState>,
    TenantScope(scope): TenantScope,
    Client(client): Client,
    ApiJson(body): ApiJson<ResetConfirm>,
) -> ApiResult<StatusCode> {
    state
        .auth
        .confirm_reset(&scope, &body.token, &body.password, &client)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

const RESET_PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Choose a new password</title>
<style>body{font-family:system-ui,sans-serif;max-width:24rem;margin:4rem auto;padding:0 1rem}
input,button{font-size:1rem;padding:.5rem;width:100%;box-sizing:border-box;margin:.25rem 0}</style></head>
<body><h1>Choose a new password</h1>
<form id="f"><label>New password <input id="p" type="password" minlength="8" maxlength="128" required autocomplete="new-password"></label>
<button>Set password</button></form><p id="m" role="status"></p>
<script>
const token = new URLSearchParams(location.search).get("token") || "";
document.getElementById("f").addEventListener("submit", async (e) => {
  e.preventDefault();
  const r = await fetch(location.pathname, {method: "POST", headers: {"content-type": "application/json"},
    body: JSON.stringify({token, password: document.getElementById("p").value})});
  const m = document.getElementById("m");
  if (r.status === 204) { m.textContent = "Your password was changed. You can close this page and sign in."; e.target.remove(); }
  else { const p = await r.json().catch(() => ({})); m.textContent = p.detail || "Something went wrong."; }
});
</script></body></html>"#;

/// The emailed reset link: a small page that posts the new password to this same path.
#[utoipa::path(get, path = "/v1/t/{tenant}/auth/reset/confirm", operation_id = "auth_reset_page", tag = "auth",
    params(("tenant" = String, Path, description = "Tenant slug")),
    responses((status = 200, content_type = "text/html", body = String)),
    security((), ("bearer" = [])))]
async fn reset_page(TenantScope(_scope): TenantScope) -> impl axum::response::IntoResponse {
    (
        [
            (axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                axum::http::header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; form-action 'none'; base-uri 'none'",
            ),
            (axum::http::header::REFERRER_POLICY, "no-referrer"),
        ],
        RESET_PAGE,
    )
}
