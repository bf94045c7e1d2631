//! `/v1/t/{tenant}/fn/{name}`: HTTP functions. The handler turns the request into the
//! event a function receives and the function's `{status, headers, body}` into the
//! response; everything else is the function service's.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::Response;
use axum::routing::get;
use serde_json::{Map, Value, json};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{ApiPath, TenantScope};
use crate::error::{ApiResult, Problem};
use crate::state::AppState;

/// The sub-path route is described as `{path}` (an OpenAPI path template has no
/// catch-all) but routed as axum's `{*path}`, so it is registered by hand and its
/// description merged from here.
#[derive(OpenApi)]
#[openapi(paths(call_function_path))]
struct SubPathDoc;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(SubPathDoc::openapi())
        .routes(routes!(call_function))
        .route(
            "/v1/t/{tenant}/fn/{name}/{*path}",
            get(call_function_path)
                .post(call_function_path)
                .put(call_function_path)
                .patch(call_function_path)
                .delete(call_function_path),
        )
}

/// Headers a function may not set: they belong to the connection or to the server.
const RESERVED: &[&str] = &[
    "connection",
    "content-length",
    "transfer-encoding",
    "keep-alive",
    "upgrade",
    "x-request-id",
    "x-plinth-invocation",
    // Every tenant's functions answer on the same origin: a cookie set by one would be
    // the whole platform's (and the admin console's) cookie.
    "set-cookie",
];

/// Sent with every function response: a page a function serves runs in an opaque
/// origin, so its scripts cannot read the storage or cookies of the origin every tenant
/// (and the demo page, and the admin console) shares.
const FUNCTION_CSP: &str = "sandbox allow-scripts allow-forms allow-popups allow-downloads";

fn query_map(uri: &Uri) -> Map<String, Value> {
    let mut out = Map::new();
    if let Some(q) = uri.query() {
        for (k, v) in form_pairs(q.as_bytes()) {
            out.insert(k, Value::String(v));
        }
    }
    out
}

/// `application/x-www-form-urlencoded` pairs (a repeated key keeps its last value once
/// put in a map); bad escapes are kept as written, invalid UTF-8 becomes U+FFFD.
fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// The event an HTTP function receives.
fn request_event(
    state: &AppState,
    scope: &crate::tenancy::Scope,
    method: &Method,
    uri: &Uri,
    sub_path: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Value, crate::error::ApiError> {
    let mut hdrs = Map::new();
    for (k, v) in headers {
        if k == header::AUTHORIZATION || k == header::COOKIE {
            continue;
        }
        if let Ok(v) = v.to_str() {
            hdrs.insert(k.as_str().to_string(), Value::String(v.to_string()));
        }
    }
    let text = std::str::from_utf8(body).ok();
    let ct = super::extract::mime(headers);
    let json_body = if ct == "application/json" || ct.ends_with("+json") {
        match text.filter(|t| !t.trim().is_empty()) {
            Some(t) => Some(super::extract::parse_json::<Value>(t.as_bytes())?),
            None => None,
        }
    } else {
        None
    };
    let form = if ct == "application/x-www-form-urlencoded" {
        let mut m = Map::new();
        for (k, v) in form_pairs(body) {
            m.insert(k, Value::String(v));
        }
        Some(Value::Object(m))
    } else {
        None
    };
    let auth = scope.auth_json().unwrap_or(Value::Null);
    // The URL the client used: what webhook signatures (Twilio's) are computed over.
    // HTTP/2 carries the host in the request target (`:authority`), not in a header.
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()))
        .unwrap_or("localhost");
    let scheme = if state.config.trust_forwarded_for {
        headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("http")
    } else if state.config.public_url.starts_with("https://") {
        "https"
    } else {
        "http"
    };
    let path_and_query = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    Ok(json!({
        "method": method.as_str(),
        "url": format!("{scheme}://{host}{path_and_query}"),
        "path": if sub_path.is_empty() { "/".to_string() } else { format!("/{sub_path}") },
        "query": query_map(uri),
        "headers": hdrs,
        "body": text.map(Value::from).unwrap_or(Value::Null),
        "json": json_body,
        "form": form,
        "auth": auth,
        "service": scope.caller().is_service(),
    }))
}

/// What the two routes extract.
struct FnRequest {
    name: String,
    sub_path: String,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
}

async fn run(state: AppState, scope: crate::tenancy::Scope, r: FnRequest) -> ApiResult<Response> {
    let event = request_event(
        &state,
        &scope,
        &r.method,
        &r.uri,
        &r.sub_path,
        &r.headers,
        &r.body,
    )?;
    let out = state.functions.call_http(&scope, &r.name, event).await?;
    let status = StatusCode::from_u16(out.status).unwrap_or(StatusCode::OK);
    let mut res = Response::new(axum::body::Body::from(out.body));
    *res.status_mut() = status;
    for (k, v) in out.headers {
        if RESERVED.contains(&k.as_str()) {
            continue;
        }
        if let (Ok(k), Ok(v)) = (HeaderName::try_from(k), HeaderValue::try_from(v)) {
            res.headers_mut().append(k, v);
        }
    }
    res.headers_mut().append(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(FUNCTION_CSP),
    );
    if let Ok(v) = HeaderValue::try_from(out.invocation) {
        res.headers_mut().insert("x-plinth-invocation", v);
    }
    // The function's own answer, whatever its status: the problem fallback must not
    // rewrite a 4xx/5xx body into problem+json.
    res.extensions_mut().insert(crate::error::ProblemMarker);
    Ok(res)
}

/// Call an HTTP function (any method). The function receives `{method, url, path, query,
/// headers, body, json, form, auth}` and answers `{status, headers, body}`.
#[utoipa::path(method(get, post, put, patch, delete), path = "/v1/t/{tenant}/fn/{name}", operation_id = "call_function",
    tag = "functions",
    params(("tenant" = String, Path), ("name" = String, Path)),
    request_body(content = Option<String>, content_type = "*/*", description = "any body, or none; JSON and forms are also parsed"),
    responses((status = 200, description = "the function's answer (`x-plinth-invocation` names the invocation)"),
              (status = 404, body = Problem, description = "function_not_found"),
              (status = 500, body = Problem, description = "function_error, function_out_of_memory, function_bad_response"),
              (status = 504, body = Problem, description = "function_timeout"),
              (status = "default", description = "the function's answer with another status, or a problem document")),
    security((), ("bearer" = [])))]
async fn call_function(
    State(state): State<AppState>,
    TenantScope(scope): TenantScope,
    ApiPath((_tenant, name)): ApiPath<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let r = FnRequest {
        name,
        sub_path: String::new(),
        method,
        uri,
        headers,
        body,
    };
    run(state, scope, r).await
}

/// The same, with a sub-path (`event.path`).
#[utoipa::path(method(get, post, put, patch, delete), path = "/v1/t/{tenant}/fn/{name}/{path}", operation_id = "call_function_path",
    tag = "functions",
    params(("tenant" = String, Path), ("name" = String, Path), ("path" = String, Path, description = "The rest of the path (`event.path`); may hold `/`")),
    request_body(content = Option<String>, content_type = "*/*", description = "any body, or none; JSON and forms are also parsed"),
    responses((status = 200, description = "the function's answer (`x-plinth-invocation` names the invocation)"),
              (status = 404, body = Problem, description = "function_not_found"),
              (status = 500, body = Problem, description = "function_error, function_out_of_memory, function_bad_response"),
              (status = 504, body = Problem, description = "function_timeout"),
              (status = "default", description = "the function's answer with another status, or a problem document")),
    security((), ("bearer" = [])))]
async fn call_function_path(
    State(state): State<AppState>,
    TenantScope(scope): TenantScope,
    ApiPath((_tenant, name, path)): ApiPath<(String, String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let r = FnRequest {
        name,
        sub_path: path,
        method,
        uri,
        headers,
        body,
    };
    run(state, scope, r).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_decoding() {
        let pairs = form_pairs(b"Body=VOTE+red&From=%2B15551234567&Bad=%zz&Cut=%4");
        assert_eq!(
            pairs,
            vec![
                ("Body".into(), "VOTE red".into()),
                ("From".into(), "+15551234567".into()),
                ("Bad".into(), "%zz".into()),
                ("Cut".into(), "%4".into()),
            ]
        );
        assert_eq!(
            form_pairs(b"e=%C3%A9&x=%FF"),
            vec![("e".into(), "é".into()), ("x".into(), "\u{FFFD}".into())]
        );
    }
}
