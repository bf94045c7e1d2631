//! Bad input of every kind on every route with a body, query or precondition, driven by
//! tables: a new route is one line in `BODY_ROUTES` (the test fails until every
//! operation of the OpenAPI document that takes a body is listed there). Every answer
//! must be the precise 4xx, as `application/problem+json` with its stable `code`, and
//! nothing may be stored.

use std::collections::BTreeSet;

use reqwest::Method;

use super::*;
use crate::backend_tests;

backend_tests!(bad_input_is_refused_precisely_everywhere);

#[derive(Clone, Copy, Debug)]
enum Who {
    Anon,
    Admin,
    Key,
    User,
}

/// How a route reads its body, which decides the answer to each kind of bad body.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Shape {
    /// A JSON object deserialised into a struct.
    Typed,
    /// Like `Typed`, but an empty body means "no fields".
    Optional,
    /// Document data (any JSON object).
    Document,
    /// `application/merge-patch+json`.
    MergePatch,
    /// `application/json-patch+json`.
    JsonPatch,
    /// TOML (rules).
    Toml,
    /// TOML checked, not installed: a body that is not a valid rule set is the check's
    /// answer (200, `valid: false`), not an error of the request.
    TomlCheck,
    /// Passed through as is (HTTP functions): only the size limit applies.
    Raw,
}

/// (method, path template, caller, shape, a body of the right shape with wrong types).
/// `{tenant}` is alpha, `{collection}` public, `{id}` alpha's public document.
#[rustfmt::skip]
const BODY_ROUTES: &[(&str, &str, Who, Shape, &str)] = &[
    ("POST", "/admin/v1/setup", Who::Anon, Shape::Typed, r#"{"token": 1, "email": [], "password": {}}"#),
    ("POST", "/admin/v1/auth/login", Who::Anon, Shape::Typed, r#"{"email": 1, "password": true}"#),
    ("POST", "/admin/v1/auth/session", Who::Anon, Shape::Typed, r#"{"email": 1, "password": true}"#),
    ("POST", "/admin/v1/auth/password", Who::Admin, Shape::Typed, r#"{"current_password": 1, "new_password": []}"#),
    ("POST", "/admin/v1/admins", Who::Admin, Shape::Typed, r#"{"email": 1, "password": [], "role": 5, "tenants": "x"}"#),
    ("PATCH", "/admin/v1/admins/{id}", Who::Admin, Shape::Typed, r#"{"role": 5, "tenants": "x"}"#),
    ("POST", "/admin/v1/admins/invite", Who::Admin, Shape::Typed, r#"{"email": 1, "role": [], "tenants": "x"}"#),
    ("POST", "/admin/v1/auth/invite", Who::Anon, Shape::Typed, r#"{"token": 1, "password": []}"#),
    ("POST", "/admin/v1/api-keys", Who::Admin, Shape::Typed, r#"{"name": 5, "role": [], "expires_at": {}}"#),
    ("POST", "/admin/v1/tenants", Who::Admin, Shape::Typed, r#"{"slug": 5, "name": []}"#),
    ("PATCH", "/admin/v1/tenants/{tenant}", Who::Admin, Shape::Typed, r#"{"name": 5, "cors_origins": "x"}"#),
    ("POST", "/admin/v1/tenants/{tenant}/keys", Who::Admin, Shape::Typed, r#"{"name": 5}"#),
    ("POST", "/admin/v1/tenants/{tenant}/move", Who::Admin, Shape::Typed, r#"{"to": 5}"#),
    ("POST", "/admin/v1/tenants/{tenant}/users", Who::Admin, Shape::Typed, r#"{"email": 5, "password": [], "verified": "x"}"#),
    ("PUT", "/admin/v1/tenants/{tenant}/secrets/{name}", Who::Admin, Shape::Typed, r#"{"value": 5}"#),
    ("PUT", "/admin/v1/tenants/{tenant}/rules", Who::Admin, Shape::Toml, ""),
    ("POST", "/admin/v1/tenants/{tenant}/rules/validate", Who::Admin, Shape::TomlCheck, ""),
    ("POST", "/admin/v1/tenants/{tenant}/rules/test", Who::Admin, Shape::Typed, r#"{"rules": 5, "cases": []}"#),
    ("POST", "/admin/v1/tenants/{tenant}/deploys", Who::Admin, Shape::Typed, r#"{"files": 5}"#),
    ("POST", "/v1/t/{tenant}/auth/signup", Who::Anon, Shape::Typed, r#"{"email": 5, "password": []}"#),
    ("POST", "/v1/t/{tenant}/auth/login", Who::Anon, Shape::Typed, r#"{"email": ["a"], "password": 1}"#),
    ("POST", "/v1/t/{tenant}/auth/refresh", Who::Anon, Shape::Typed, r#"{"refresh_token": 5}"#),
    ("POST", "/v1/t/{tenant}/auth/logout", Who::User, Shape::Optional, r#"{"refresh_token": 5}"#),
    ("POST", "/v1/t/{tenant}/auth/password", Who::User, Shape::Typed, r#"{"current_password": 1, "new_password": {}}"#),
    ("POST", "/v1/t/{tenant}/auth/verify/request", Who::User, Shape::Optional, r#"{"email": 5}"#),
    ("POST", "/v1/t/{tenant}/auth/verify/confirm", Who::Anon, Shape::Typed, r#"{"token": 5}"#),
    ("POST", "/v1/t/{tenant}/auth/reset/request", Who::Anon, Shape::Typed, r#"{"email": 5}"#),
    ("POST", "/v1/t/{tenant}/auth/reset/confirm", Who::Anon, Shape::Typed, r#"{"token": 5, "password": []}"#),
    ("POST", "/v1/t/{tenant}/collections/{collection}/docs", Who::Key, Shape::Document, ""),
    ("PUT", "/v1/t/{tenant}/collections/{collection}/docs/{id}", Who::Key, Shape::Document, ""),
    ("PATCH", "/v1/t/{tenant}/collections/{collection}/docs/{id}", Who::Key, Shape::MergePatch, ""),
    ("PATCH", "/v1/t/{tenant}/collections/{collection}/docs/{id}", Who::Key, Shape::JsonPatch, ""),
    ("POST", "/v1/t/{tenant}/batch", Who::Key, Shape::Typed, r#"{"writes": 5}"#),
    ("POST", "/v1/t/{tenant}/fn/{name}", Who::Anon, Shape::Raw, ""),
    ("PUT", "/v1/t/{tenant}/fn/{name}", Who::Anon, Shape::Raw, ""),
    ("PATCH", "/v1/t/{tenant}/fn/{name}", Who::Anon, Shape::Raw, ""),
    ("DELETE", "/v1/t/{tenant}/fn/{name}", Who::Anon, Shape::Raw, ""),
    ("GET", "/v1/t/{tenant}/fn/{name}", Who::Anon, Shape::Raw, ""),
    ("POST", "/v1/t/{tenant}/fn/{name}/{path}", Who::Anon, Shape::Raw, ""),
    ("PUT", "/v1/t/{tenant}/fn/{name}/{path}", Who::Anon, Shape::Raw, ""),
    ("PATCH", "/v1/t/{tenant}/fn/{name}/{path}", Who::Anon, Shape::Raw, ""),
    ("DELETE", "/v1/t/{tenant}/fn/{name}/{path}", Who::Anon, Shape::Raw, ""),
    ("GET", "/v1/t/{tenant}/fn/{name}/{path}", Who::Anon, Shape::Raw, ""),
];

/// Operations whose request body the table need not cover, and where it is covered.
const NO_BODY_OK: &[&str] = &[
    // An NDJSON export file with its own size limit (256 MiB): its bad files (a damaged
    // line, a key twice, a wrong trailer, the wrong content type) are
    // tests/api/export_remote.rs and tests/api/export.rs.
    "POST /admin/v1/tenants/{tenant}/import",
];

/// Each kind of bad body: (name, content type, bytes).
fn bad_bodies(shape: Shape, limit: usize) -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let ct = match shape {
        Shape::MergePatch => "application/merge-patch+json",
        Shape::JsonPatch => "application/json-patch+json",
        Shape::Toml => "application/toml",
        _ => "application/json",
    };
    let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n)).into_bytes();
    // Deep objects that end in a syntax error: a parser that skips unknown fields must
    // still walk them all to find it.
    let deep_objects =
        |n: usize| format!("{}1,{}", "{\"a\":".repeat(n), "}".repeat(n)).into_bytes();
    let nested_doc = |n: usize| {
        let mut s = String::from("1");
        for _ in 0..n {
            s = format!("{{\"a\":{s}}}");
        }
        s.into_bytes()
    };
    let mut big = br#"{"pad":""#.to_vec();
    big.extend(std::iter::repeat_n(b'x', limit + 1));
    big.extend(br#""}"#);
    let mut v: Vec<(&'static str, &'static str, Vec<u8>)> = vec![
        ("oversized body", ct, big),
        ("valid body as text/plain", "text/plain", b"{}".to_vec()),
        (
            "valid body as a form",
            "application/x-www-form-urlencoded",
            b"a=1".to_vec(),
        ),
    ];
    if matches!(shape, Shape::Raw | Shape::Toml | Shape::TomlCheck) {
        return v;
    }
    // Each syntax error comes before anything a struct could refuse first (a missing
    // field): serde skips unknown fields without validating them, so the errors sit in
    // keys or at the top level.
    v.extend([
        ("truncated JSON", ct, br#"{"a":"#.to_vec()),
        ("single quotes", ct, b"{'a': 1}".to_vec()),
        ("trailing comma", ct, br#"{"a": 1,}"#.to_vec()),
        ("invalid UTF-8 in a key", ct, b"{\"\xff\xfe\": 1}".to_vec()),
        ("invalid UTF-8 first", ct, b"\xff{}".to_vec()),
        ("lone surrogate in a key", ct, br#"{"\ud800": 1}"#.to_vec()),
        ("bad escape in a key", ct, br#"{"\q": 1}"#.to_vec()),
        ("a NUL byte", ct, b"{\"a\"\0: 1}".to_vec()),
        ("objects nested 10,000 deep", ct, deep_objects(10_000)),
        ("objects nested 200 deep", ct, deep_objects(200)),
        ("no content type", "", b"{}".to_vec()),
    ]);
    if matches!(shape, Shape::Typed | Shape::Optional) {
        // A struct refuses an array before looking inside it.
        v.push(("arrays nested 10,000 deep", ct, deep(10_000)));
    } else {
        v.extend([
            ("arrays nested 10,000 deep", ct, deep(10_000)),
            ("trailing garbage", ct, b"{} x".to_vec()),
            ("number out of range", ct, br#"{"a": 1e400}"#.to_vec()),
            (
                "invalid UTF-8 in a value",
                ct,
                b"{\"a\": \"\xff\xfe\"}".to_vec(),
            ),
            (
                "lone surrogate in a value",
                ct,
                br#"{"a": "\ud800"}"#.to_vec(),
            ),
        ]);
    }
    if shape != Shape::Optional {
        v.push(("empty body", ct, Vec::new()));
    }
    match shape {
        Shape::JsonPatch => v.extend([
            ("patch as an object", ct, b"{}".to_vec()),
            ("patch as a string", ct, br#""x""#.to_vec()),
            ("patch of numbers", ct, b"[1, 2]".to_vec()),
            (
                "unknown patch op",
                ct,
                br#"[{"op": "frob", "path": "/a"}]"#.to_vec(),
            ),
            (
                "patch path without slash",
                ct,
                br#"[{"op": "add", "path": "a", "value": 1}]"#.to_vec(),
            ),
            (
                "increment by a string",
                ct,
                br#"[{"op": "increment", "path": "/n", "value": "1"}]"#.to_vec(),
            ),
            (
                "increment overflow",
                ct,
                br#"[{"op": "increment", "path": "/n", "value": 9223372036854775807}]"#.to_vec(),
            ),
            (
                "remove of a missing path",
                ct,
                br#"[{"op": "remove", "path": "/nope/deeper"}]"#.to_vec(),
            ),
            (
                "failed test",
                ct,
                br#"[{"op": "test", "path": "/tenant", "value": "bravo"}]"#.to_vec(),
            ),
        ]),
        _ => v.extend([
            ("array", ct, b"[]".to_vec()),
            ("string", ct, br#""x""#.to_vec()),
            ("number", ct, b"42".to_vec()),
            ("null", ct, b"null".to_vec()),
            ("boolean", ct, b"true".to_vec()),
        ]),
    }
    if matches!(shape, Shape::Document | Shape::MergePatch) {
        v.push(("document nested 40 deep", ct, nested_doc(40)));
        v.push(("U+0000 in a string", ct, br#"{"a": "x\u0000y"}"#.to_vec()));
        v.push(("U+0000 in a key", ct, br#"{"a\u0000": 1}"#.to_vec()));
    }
    v
}

/// The answer the contract gives to a bad body (None: the attack does not apply).
fn expected(shape: Shape, attack: &str) -> Option<(u16, &'static str)> {
    Some(match attack {
        "oversized body" => (413, "payload_too_large"),
        // Rules may come as text/plain; `{}` is not TOML.
        "valid body as text/plain" if shape == Shape::Toml => (400, "invalid_rules"),
        "valid body as text/plain" if shape == Shape::TomlCheck => return None,
        "valid body as text/plain" | "valid body as a form" | "no content type" => {
            if shape == Shape::Raw {
                return None;
            }
            (415, "unsupported_media_type")
        }
        "array" | "string" | "number" | "null" | "boolean" => match shape {
            Shape::Document => (400, "invalid_document"),
            Shape::MergePatch => (400, "invalid_patch"),
            _ => (400, "invalid_body"),
        },
        "arrays nested 10,000 deep" if matches!(shape, Shape::Typed | Shape::Optional) => {
            (400, "invalid_body")
        }
        "wrong field types" => (400, "invalid_body"),
        "patch as an object"
        | "patch as a string"
        | "patch of numbers"
        | "unknown patch op"
        | "patch path without slash"
        | "increment by a string" => (400, "invalid_patch"),
        "increment overflow" => (400, "increment_overflow"),
        "remove of a missing path" => (409, "patch_failed"),
        "failed test" => (409, "patch_test_failed"),
        "document nested 40 deep" | "U+0000 in a string" | "U+0000 in a key" => {
            (400, "invalid_document")
        }
        _ => (400, "malformed_json"),
    })
}

fn fill(template: &str) -> String {
    template
        .replace("secrets/{name}", "secrets/NEW_SECRET")
        .replace("{tenant}", "alpha")
        .replace("{collection}", "public")
        .replace("{id}", "alpha-pub")
        .replace("{name}", "peek")
        .replace("{path}", "deeper/still")
}

async fn bad_input_is_refused_precisely_everywhere(b: Backend) {
    let World {
        mut app,
        alpha,
        bravo,
    } = world(b, &[]).await;
    let tally = Tally::new("bad_bodies", b);
    let admin = app.admin().await;
    let alpha_before = state(&mut app, &alpha).await;
    let bravo_before = state(&mut app, &bravo).await;
    let tenants_before = app.get("/admin/v1/tenants", Some(&admin)).await.ok(200);

    // Every operation of the OpenAPI document that takes a body is in the table.
    let spec = app.get("/openapi.json", None).await.ok(200);
    let mut with_body = BTreeSet::new();
    for (path, ops) in spec["paths"].as_object().expect("paths") {
        for (method, op) in ops.as_object().expect("operations") {
            if op.get("requestBody").is_some() {
                with_body.insert(format!("{} {path}", method.to_uppercase()));
            }
        }
    }
    let listed: BTreeSet<String> = BODY_ROUTES
        .iter()
        .map(|(m, p, ..)| format!("{m} {p}"))
        .chain(NO_BODY_OK.iter().map(|s| s.to_string()))
        .collect();
    let missing: Vec<_> = with_body.difference(&listed).collect();
    assert!(
        missing.is_empty(),
        "routes with a body missing from BODY_ROUTES: {missing:?}"
    );

    // 1. Bodies.
    for (method, template, who, shape, wrong_types) in BODY_ROUTES {
        let path = fill(template);
        let method: Method = method.parse().expect("method");
        // A session of its own per route, so one route's answer cannot end another's.
        let session = match who {
            Who::User => Some(Session::from_json(
                &app.login("alpha", &alpha.owner.email, PASSWORD)
                    .await
                    .ok(200),
            )),
            _ => None,
        };
        let token = match who {
            Who::Anon => None,
            Who::Admin => Some(admin.as_str()),
            Who::Key => Some(alpha.key.as_str()),
            Who::User => session.as_ref().map(|s| s.access.as_str()),
        };
        // Bundles have a larger limit of their own (twice MAX_BUNDLE_BYTES).
        let limit = if template.ends_with("/deploys") {
            16 << 20
        } else {
            1 << 20
        };
        let mut attacks = bad_bodies(*shape, limit);
        if !wrong_types.is_empty() {
            attacks.push((
                "wrong field types",
                "application/json",
                wrong_types.as_bytes().to_vec(),
            ));
        }
        for (attack, ct, body) in attacks {
            let Some((status, code)) = expected(*shape, attack) else {
                continue;
            };
            let mut req = app.req(method.clone(), &path, token).body(body);
            if !ct.is_empty() {
                req = req.header("content-type", ct);
            }
            let r = app.send(req).await;
            tally.expect(
                &format!("{method} {template} ({shape:?}): {attack}"),
                &r,
                status,
                code,
            );
        }
    }
    tally.finish();
    assert_unchanged(&mut app, &alpha, &alpha_before, "bad input").await;
    assert_unchanged(&mut app, &bravo, &bravo_before, "bad input").await;
    assert_eq!(
        app.get("/admin/v1/tenants", Some(&admin)).await.ok(200),
        tenants_before,
        "no tenant was created or changed"
    );
}
