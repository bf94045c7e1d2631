//! The OpenAPI document: its top-level description, and one finishing pass over what the
//! route annotations generate, for the rules that hold for every operation (so no
//! annotation can forget them).

use std::collections::HashMap;

use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::schema::{SchemaType, Type};
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Required, ResponseBuilder, Schema};
use utoipa::{Modify, OpenApi};

use crate::error::{PROBLEM_JSON, Problem};

#[derive(OpenApi)]
#[openapi(
    info(title = "Plinth API", description = "Multi-tenant Backend-as-a-Service: tenants, \
        end-user auth, documents, realtime and functions. Errors are RFC 9457 \
        application/problem+json with a stable `code`."),
    modifiers(&BearerAuth),
    components(schemas(Problem)),
    tags(
        (name = "auth", description = "End-user accounts of a tenant"),
        (name = "admin", description = "Platform administration"),
        (name = "admins", description = "Admins, their roles and tenants, and admin API keys"),
        (name = "tenants", description = "Tenants"),
        (name = "keys", description = "Service keys of a tenant"),
        (name = "users", description = "A tenant's users, as seen by an admin"),
        (name = "documents", description = "JSON documents guarded by rules"),
        (name = "rules", description = "A tenant's access rules"),
        (name = "secrets", description = "A tenant's secrets (the environment of its functions)"),
        (name = "realtime", description = "Change feeds over WebSocket"),
        (name = "functions", description = "JavaScript functions: deploys, HTTP functions, invocation log"),
        (name = "ops", description = "Health, readiness, metrics"),
    )
)]
pub(super) struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT or service key")
                    .build(),
            ),
        );
        // The console's session (POST /admin/v1/auth/session); changing requests made
        // with it also carry X-CSRF-Token.
        components.add_security_scheme(
            "cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new("plinth_admin_session"))),
        );
    }
}

/// Applies what is true of every operation:
/// - an operation a tenant's move refuses (`extract::refused_while_moving`) declares its
///   503 `tenant_moving`;
/// - every error answer (4xx, 5xx, and any status an operation does not list) is an
///   `application/problem+json` Problem: `ApiError` and the problem fallback make it so;
/// - operation ids are unique: `method(get, post, ...)` gives every method of a handler
///   its one id, so those get the method appended;
/// - an optional request body (`Option<T>`) may be absent, not JSON `null`;
/// - every admin route that needs a credential takes the console's session cookie as
///   well as a bearer token or key (the `AdminCaller` extractor accepts both).
pub(super) fn finish(doc: &mut utoipa::openapi::OpenApi) {
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    // utoipa takes the license from Cargo.toml, which names none: an empty name is not a
    // valid License object.
    if doc.info.license.as_ref().is_some_and(|l| l.name.is_empty()) {
        doc.info.license = None;
    }
    for (path, item) in doc.paths.paths.iter_mut() {
        let admin = path.starts_with("/admin/v1/");
        let mut ops = operations_mut(item);
        let mut uses: HashMap<String, usize> = HashMap::new();
        for (_, op) in &ops {
            if let Some(id) = &op.operation_id {
                *uses.entry(id.clone()).or_default() += 1;
            }
        }
        for (method, op) in &mut ops {
            if let Some(id) = &mut op.operation_id
                && uses.get(id.as_str()).is_some_and(|n| *n > 1)
            {
                *id = format!("{id}_{method}");
            }
            if super::extract::refused_while_moving(&method.to_ascii_uppercase(), path) {
                moving_response(op);
            }
            problem_responses(op);
            optional_body(op);
            if admin && op.security.is_some() {
                op.security = Some(vec![
                    SecurityRequirement::new("bearer", Vec::<String>::new()),
                    SecurityRequirement::new("cookie", Vec::<String>::new()),
                ]);
            }
        }
    }
}

fn operations_mut(item: &mut PathItem) -> Vec<(&'static str, &mut Operation)> {
    [
        ("get", &mut item.get),
        ("put", &mut item.put),
        ("post", &mut item.post),
        ("delete", &mut item.delete),
        ("options", &mut item.options),
        ("head", &mut item.head),
        ("patch", &mut item.patch),
        ("trace", &mut item.trace),
    ]
    .into_iter()
    .filter_map(|(method, op)| op.as_mut().map(|op| (method, op)))
    .collect()
}

fn problem_response(description: String) -> RefOr<utoipa::openapi::Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content(
                PROBLEM_JSON,
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("Problem")))
                    .build(),
            )
            .build(),
    )
}

/// The reason phrase of a status such as "404" ("" for "default" and the like).
fn reason(status: &str) -> &'static str {
    status
        .parse::<u16>()
        .ok()
        .and_then(|s| axum::http::StatusCode::from_u16(s).ok())
        .and_then(|s| s.canonical_reason())
        .unwrap_or("")
}

/// The 503 `tenant_moving` of an operation refused while its tenant moves (made a
/// problem document by `problem_responses`, which runs next). An operation that declares
/// a 503 of its own keeps it, its description extended.
fn moving_response(op: &mut Operation) {
    const MOVING: &str = "tenant_moving: the tenant is moving to another storage location; \
                          retry after `Retry-After` seconds";
    let responses = &mut op.responses.responses;
    if let Some(RefOr::T(own)) = responses.get_mut("503") {
        own.description = match own.description.is_empty() {
            true => MOVING.to_string(),
            false => format!("{}; or {MOVING}", own.description),
        };
        return;
    }
    responses.insert(
        "503".into(),
        RefOr::T(ResponseBuilder::new().description(MOVING).build()),
    );
}

fn problem_responses(op: &mut Operation) {
    for (status, response) in op.responses.responses.iter_mut() {
        let RefOr::T(r) = response else { continue };
        // A response without one is invalid, and the annotations only write it where
        // the status alone says too little.
        if r.description.is_empty() {
            r.description = reason(status).to_string();
        }
        if status.starts_with('4') || status.starts_with('5') {
            *response = problem_response(std::mem::take(&mut r.description));
        }
    }
    op.responses
        .responses
        .entry("default".into())
        .or_insert_with(|| {
            problem_response(
                "Any other error (e.g. 401, 404 tenant_not_found, 413, 415, 429, 503): \
                 a problem document"
                    .into(),
            )
        });
}

/// utoipa writes an `Option<T>` body as "T or null", not required. What the handlers mean
/// is a body that may be left out; a `null` one is refused like any other wrong shape.
fn optional_body(op: &mut Operation) {
    let Some(RefOr::T(body)) = &mut op.request_body else {
        return;
    };
    if body.required == Some(Required::True) {
        return;
    }
    for content in body.content.values_mut() {
        let RefOr::T(content) = content else { continue };
        let Some(RefOr::T(schema)) = content.schema.take() else {
            continue;
        };
        content.schema = Some(without_null(schema));
    }
}

fn without_null(schema: Schema) -> RefOr<Schema> {
    match schema {
        Schema::OneOf(mut one) => {
            one.items.retain(|s| {
                !matches!(s, RefOr::T(Schema::Object(o)) if o.schema_type == SchemaType::Type(Type::Null))
            });
            if one.items.len() == 1
                && let Some(only) = one.items.pop()
            {
                return only;
            }
            RefOr::T(Schema::OneOf(one))
        }
        Schema::Object(mut o) => {
            if let SchemaType::Array(types) = &mut o.schema_type {
                types.retain(|t| *t != Type::Null);
                if let [only] = types.as_slice() {
                    o.schema_type = SchemaType::Type(only.clone());
                }
            }
            RefOr::T(Schema::Object(o))
        }
        other => RefOr::T(other),
    }
}
