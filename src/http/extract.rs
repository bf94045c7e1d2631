//! Request extractors. `ResolvedTenant` is the only way a tenant route finds its tenant:
//! it resolves the slug in the path, refuses unknown and suspended tenants and records the
//! tenant for per-tenant usage. `TenantScope` builds on it and turns the bearer token into
//! a caller; the realtime upgrade does that itself, to accept `?access_token=` too. Body
//! extractors answer problem+json with line and column.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, RawPathParamsRejection};
use axum::extract::{
    ConnectInfo, FromRequest, FromRequestParts, MatchedPath, Path, RawPathParams, Request,
};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;

use crate::admin::{AdminError, Principal, Role, SESSION_COOKIE, Via, is_mutating};
use crate::auth::ClientInfo;
use crate::crypto::ct_eq;
use crate::error::ApiError;
use crate::state::AppState;
use crate::tenancy::{Scope, Tenant};

/// Filled by `TenantScope` once a tenant is resolved; read by the metrics middleware.
#[derive(Clone, Default)]
pub struct TenantSlot(pub Arc<OnceLock<(i64, String)>>);

/// Holds the write ticket of a changing tenant request until its answer is made (put in
/// by the metrics middleware, filled by `ResolvedTenant`), so a tenant move knows when
/// the writes it admitted have ended.
#[derive(Clone, Default)]
pub struct WriteHold(pub Arc<std::sync::Mutex<Option<crate::store::WriteTicket>>>);

fn tenant_moving() -> ApiError {
    let mut e = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "tenant_moving",
        "the tenant is moving to another storage location; retry in a few seconds",
    );
    e.retry_after_secs = Some(crate::error::MOVING_RETRY_SECS);
    e
}

/// The tenant and caller of a tenant route.
pub struct TenantScope(pub Scope);

/// The token of an `Authorization: Bearer <token>` header, `None` without the header.
/// The scheme is case-insensitive (RFC 9110 §11.1: `bearer`, `BEARER`); a header of any
/// other shape is an error, never an anonymous caller. Every REST extractor and the
/// realtime upgrade read the header through this one function.
pub fn bearer(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| ApiError::unauthorized("invalid_token", "malformed Authorization header"))?;
    let token = value
        .trim()
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ApiError::unauthorized("invalid_token", "Authorization must be 'Bearer <token>'")
        })?;
    Ok(Some(token))
}

/// 400 `invalid_path`: a path segment that is not valid UTF-8 once percent-decoded
/// (`%ff`, `%c3%28`), or that does not parse as its route expects. A client's mistake,
/// never a 500.
fn invalid_path(detail: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request("invalid_path", format!("invalid request path: {detail}"))
}

/// Path parameters of a route, with rejections answered as [`invalid_path`]. Handlers use
/// this rather than axum's `Path`, so every route answers a bad path the same way.
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(ApiPath(value)),
            Err(PathRejection::FailedToDeserializePathParams(e))
                if e.status().is_client_error() =>
            {
                Err(invalid_path(e.kind()))
            }
            // A route whose parameters do not fit its extractor: a bug of ours.
            Err(e) => Err(ApiError::internal(format!(
                "path parameters: {}",
                e.body_text()
            ))),
        }
    }
}

/// The tenant named by the route's `{tenant}` segment: unknown tenants are 404, suspended
/// ones 403, and the tenant is recorded for per-tenant usage. `TenantScope` builds on it;
/// the realtime upgrade, which also takes its token from the query, uses it directly.
pub struct ResolvedTenant(pub Arc<Tenant>);

impl FromRequestParts<AppState> for ResolvedTenant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let slug = tenant_param(parts, state, "tenant route")
            .await?
            .ok_or_else(|| ApiError::internal("tenant route without {tenant}"))?;
        let tenant =
            state.registry.get(&slug).await?.ok_or_else(|| {
                ApiError::not_found("tenant_not_found", "no tenant with this slug")
            })?;
        if tenant.suspended {
            return Err(ApiError::forbidden(
                "tenant_suspended",
                "this tenant is suspended",
            ));
        }
        if let Some(slot) = parts.extensions.get::<TenantSlot>() {
            let _ = slot.0.set((tenant.id, tenant.slug.clone()));
        }
        // A tenant being moved is read-only: every changing request (sign-ins and
        // function calls included, which may write, and the reads that write) is refused
        // until the move ends.
        let method = parts.method.as_str();
        let route = parts
            .extensions
            .get::<MatchedPath>()
            .map(MatchedPath::as_str);
        if is_mutating(method) || refused_while_moving(method, route.unwrap_or_default()) {
            let ticket = state
                .registry
                .enter_write(&tenant)
                .ok_or_else(tenant_moving)?;
            if let Some(hold) = parts.extensions.get::<WriteHold>() {
                *hold.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(ticket);
            }
        }
        Ok(ResolvedTenant(tenant))
    }
}

impl FromRequestParts<AppState> for TenantScope {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let ResolvedTenant(tenant) = ResolvedTenant::from_request_parts(parts, state).await?;
        let token = bearer(&parts.headers)?;
        let scope = state.auth.authenticate(tenant, token).await?;
        Ok(TenantScope(scope))
    }
}

/// A caller of an admin route, and the one place every admin route's access is checked:
/// the credential (an admin token or API key as `Authorization: Bearer`, else the
/// console's session cookie, whose changing requests must carry `X-CSRF-Token`), then
/// the route's policy for the principal's role and tenants (`Principal::authorize`),
/// with another tenant's routes answering 404 to a tenant admin.
pub struct AdminCaller(pub Principal);

/// The value of the admin session cookie, if the request has one.
pub fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.trim())
        .filter(|v| !v.is_empty())
}

impl FromRequestParts<AppState> for AdminCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let principal = match bearer(&parts.headers)? {
            Some(token) => state.admin.verify_bearer(token).await?,
            None => match session_cookie(&parts.headers) {
                Some(cookie) => state.admin.verify_session(cookie).await?,
                None => {
                    return Err(ApiError::unauthorized(
                        "auth_required",
                        "this endpoint needs an admin token, API key or session",
                    ));
                }
            },
        };
        let method = parts.method.clone();
        let method = method.as_str();
        if let Via::Session { csrf_token, .. } = &principal.via
            && is_mutating(method)
        {
            let sent = parts
                .headers
                .get("x-csrf-token")
                .map(|v| v.as_bytes())
                .unwrap_or_default();
            if !ct_eq(sent, csrf_token.as_bytes()) {
                return Err(AdminError::CsrfFailed.into());
            }
        }
        let path = parts
            .extensions
            .get::<MatchedPath>()
            .map(|m| m.as_str().to_string())
            .unwrap_or_default();
        // Only a tenant admin's access depends on which tenant it is; read it from the
        // store, not the cache, so a slug deleted and re-created elsewhere a moment ago
        // cannot pass for the tenant they were assigned.
        let tenant = if !path.contains("{tenant}") {
            None
        } else if principal.role != Role::TenantAdmin {
            Some(None)
        } else {
            let params = RawPathParams::from_request_parts(parts, state)
                .await
                .map_err(|e| match e {
                    RawPathParamsRejection::InvalidUtf8InPathParam(e) => invalid_path(e),
                    other => ApiError::internal(format!("admin route: {}", other.body_text())),
                })?;
            let slug = params
                .iter()
                .find(|(k, _)| *k == "tenant")
                .map(|(_, v)| v.to_string())
                .unwrap_or_default();
            Some(state.admin.tenant_id(&slug).await?)
        };
        principal.authorize(method, &path, tenant)?;
        if changes_tenant_data(method, &path) {
            hold_tenant_write(parts, state).await?;
        }
        Ok(AdminCaller(principal))
    }
}

/// Whether a request to a route (method, route pattern as `MatchedPath` and the OpenAPI
/// document write it) may be refused with 503 `tenant_moving` while its tenant moves: a
/// changing request of a tenant route (`ResolvedTenant`), or an admin change of the
/// tenant's data (`AdminCaller`). The OpenAPI document declares that 503 from this.
pub(crate) fn refused_while_moving(method: &str, path: &str) -> bool {
    (path.starts_with("/v1/t/{tenant}/") && (is_mutating(method) || writing_read(method, path)))
        || changes_tenant_data(method, path)
}

/// A tenant route read by its method that writes all the same: the emailed
/// verification link, a GET so that opening it confirms the address (and uses up its
/// token). HEAD runs the GET handler.
fn writing_read(method: &str, path: &str) -> bool {
    const WRITING_READS: &[&str] = &["/v1/t/{tenant}/auth/verify/confirm"];
    matches!(method, "GET" | "HEAD") && WRITING_READS.contains(&path)
}

/// Whether an admin route changes data kept at the tenant's storage location (rules,
/// deploys, secrets, users, keys, jobs, an import, the tenant's deletion): those are
/// refused while it moves, like its own writes. Everything else is carried: reads,
/// requests that change nothing (`rules/validate`, `rules/test`, `read-token`), changes
/// to the control row only (rename, CORS, suspend, resume), and the move itself, which
/// recovers an interrupted one. Listed as exceptions, so a new changing route is refused
/// by default.
fn changes_tenant_data(method: &str, path: &str) -> bool {
    const CARRIED: &[(&str, &str)] = &[
        ("PATCH", "/admin/v1/tenants/{tenant}"),
        ("POST", "/admin/v1/tenants/{tenant}/move"),
        ("POST", "/admin/v1/tenants/{tenant}/suspend"),
        ("POST", "/admin/v1/tenants/{tenant}/resume"),
        ("POST", "/admin/v1/tenants/{tenant}/read-token"),
        ("POST", "/admin/v1/tenants/{tenant}/rules/validate"),
        ("POST", "/admin/v1/tenants/{tenant}/rules/test"),
    ];
    path.starts_with("/admin/v1/tenants/{tenant}")
        && is_mutating(method)
        && !CARRIED.iter().any(|(m, p)| *m == method && *p == path)
}

/// The route's `{tenant}` path parameter, if it has one; `route` names the kind of route
/// in the internal error of a path axum could not hand over.
async fn tenant_param(
    parts: &mut Parts,
    state: &AppState,
    route: &str,
) -> Result<Option<String>, ApiError> {
    let params = RawPathParams::from_request_parts(parts, state)
        .await
        .map_err(|e| match e {
            RawPathParamsRejection::InvalidUtf8InPathParam(e) => invalid_path(e),
            other => ApiError::internal(format!("{route}: {}", other.body_text())),
        })?;
    Ok(params
        .iter()
        .find(|(k, _)| *k == "tenant")
        .map(|(_, v)| v.to_string()))
}

/// Admits an admin change of the route's tenant as `ResolvedTenant` admits a write:
/// refused with 503 `tenant_moving` while it moves, else its ticket held until the
/// answer, so a move waits for it. An unknown tenant is left to the handler's 404.
async fn hold_tenant_write(parts: &mut Parts, state: &AppState) -> Result<(), ApiError> {
    let Some(slug) = tenant_param(parts, state, "admin route").await? else {
        return Ok(());
    };
    let Some(tenant) = state.registry.get(&slug).await? else {
        return Ok(());
    };
    let ticket = state
        .registry
        .enter_write(&tenant)
        .ok_or_else(tenant_moving)?;
    if let Some(hold) = parts.extensions.get::<WriteHold>() {
        *hold.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(ticket);
    }
    Ok(())
}

/// Client address and user agent.
pub struct Client(pub ClientInfo);

impl FromRequestParts<AppState> for Client {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip().to_string());
        let forwarded = if state.config.trust_forwarded_for {
            parts
                .headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next_back())
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        } else {
            None
        };
        let ip = forwarded.or(peer).unwrap_or_else(|| "unknown".into());
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(256).collect());
        Ok(Client(ClientInfo { ip, user_agent }))
    }
}

/// A JSON body: `Content-Type: application/json` (or `+json`) required, size bounded by
/// the body limit (413), syntax errors reported with line and column.
pub struct ApiJson<T>(pub T);

/// The media type of the body, lower-cased, without parameters ("" when absent).
pub fn mime(headers: &axum::http::HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

fn is_json(parts: &axum::http::HeaderMap) -> bool {
    let mime = mime(parts);
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the request body exceeds the size limit",
            )
        } else {
            ApiError::bad_request("unreadable_body", rejection.body_text())
        }
    })
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        let at = format!("line {} column {}", e.line(), e.column());
        match e.classify() {
            serde_json::error::Category::Data => {
                ApiError::bad_request("invalid_body", format!("{e}"))
            }
            _ => ApiError::bad_request(
                "malformed_json",
                format!("malformed JSON at {at}: {}", strip_position(&e.to_string())),
            ),
        }
    })
}

/// serde_json appends " at line L column C"; the detail states the position once, up front.
fn strip_position(msg: &str) -> &str {
    msg.rfind(" at line ").map_or(msg, |i| &msg[..i])
}

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(req.headers()) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "expected Content-Type: application/json",
            ));
        }
        let bytes = read_body(req, state).await?;
        Ok(ApiJson(parse_json(&bytes)?))
    }
}

/// Like [`ApiJson`], but an empty body (with any content type) means `T::default()`.
pub struct OptionalJson<T>(pub T);

impl<S, T> FromRequest<S> for OptionalJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Default,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let json = is_json(req.headers());
        let bytes = read_body(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(T::default()));
        }
        if !json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "expected Content-Type: application/json",
            ));
        }
        Ok(OptionalJson(parse_json(&bytes)?))
    }
}

/// Query parameters; a malformed query is a 400 problem naming what is wrong.
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))
    }
}

#[cfg(test)]
mod tests {
    use super::changes_tenant_data;

    #[test]
    fn admin_changes_to_a_tenants_data_are_told_from_the_rest() {
        for (m, p) in [
            ("PUT", "/admin/v1/tenants/{tenant}/rules"),
            ("POST", "/admin/v1/tenants/{tenant}/deploys"),
            (
                "POST",
                "/admin/v1/tenants/{tenant}/deploys/{version}/activate",
            ),
            ("PUT", "/admin/v1/tenants/{tenant}/secrets/{name}"),
            ("DELETE", "/admin/v1/tenants/{tenant}/keys/{id}"),
            ("POST", "/admin/v1/tenants/{tenant}/users/{id}/disable"),
            ("DELETE", "/admin/v1/tenants/{tenant}"),
        ] {
            assert!(changes_tenant_data(m, p), "{m} {p}");
        }
        for (m, p) in [
            ("GET", "/admin/v1/tenants/{tenant}/rules"),
            ("PATCH", "/admin/v1/tenants/{tenant}"),
            ("POST", "/admin/v1/tenants/{tenant}/move"),
            ("POST", "/admin/v1/tenants/{tenant}/rules/validate"),
            ("POST", "/admin/v1/tenants"),
            ("POST", "/admin/v1/keys"),
        ] {
            assert!(!changes_tenant_data(m, p), "{m} {p}");
        }
    }
}
