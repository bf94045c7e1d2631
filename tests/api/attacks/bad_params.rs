//! Bad query parameters, preconditions, authorization headers, names in paths, methods
//! and routes, on every list and conditional write: each answer is the precise 4xx as
//! problem+json with its stable `code`, and nothing is stored.

use reqwest::Method;
use serde_json::json;

use super::*;
use crate::backend_tests;

backend_tests!(bad_parameters_are_refused_precisely);

/// (method, path, token, body, expected status, expected code).
type BodyAttack<'a> = (
    Method,
    &'a str,
    Option<&'a str>,
    serde_json::Value,
    u16,
    &'a str,
);

#[derive(Clone, Copy)]
enum Who {
    Admin,
    Key,
}

async fn bad_parameters_are_refused_precisely(b: Backend) {
    let World {
        mut app,
        alpha,
        bravo,
    } = world(b, &[]).await;
    let tally = Tally::new("bad_parameters", b);
    let admin = app.admin().await;
    let alpha_before = state(&mut app, &alpha).await;
    let bravo_before = state(&mut app, &bravo).await;

    // 1. Query parameters of every list.
    let lists: &[(&str, Who, &str)] = &[
        (
            "/v1/t/alpha/collections/public/docs",
            Who::Key,
            "invalid_limit",
        ),
        (
            "/admin/v1/tenants/alpha/users",
            Who::Admin,
            "validation_failed",
        ),
        (
            "/admin/v1/tenants/alpha/invocations",
            Who::Admin,
            "validation_failed",
        ),
        (
            "/admin/v1/tenants/alpha/jobs",
            Who::Admin,
            "validation_failed",
        ),
        ("/admin/v1/audit", Who::Admin, "validation_failed"),
    ];
    for (path, who, limit_code) in lists {
        let token = match who {
            Who::Key => alpha.key.as_str(),
            Who::Admin => admin.as_str(),
        };
        let long_cursor = "A".repeat(4000);
        let cases: Vec<(String, u16, &str)> = vec![
            ("limit=0".into(), 400, limit_code),
            ("limit=-1".into(), 400, limit_code),
            ("limit=1001".into(), 400, limit_code),
            ("limit=abc".into(), 400, "invalid_query"),
            ("limit=1.5".into(), 400, "invalid_query"),
            ("limit=".into(), 400, "invalid_query"),
            ("limit=99999999999999999999999".into(), 400, "invalid_query"),
            ("limit=1&limit=2".into(), 400, "invalid_query"),
            ("cursor=garbage".into(), 400, "invalid_cursor"),
            ("cursor=%ff%fe".into(), 400, "invalid_cursor"),
            (format!("cursor={long_cursor}"), 400, "invalid_cursor"),
            ("cursor=eyJ9.eyJ9".into(), 400, "invalid_cursor"),
        ];
        for (q, status, code) in cases {
            let r = app.get(&format!("{path}?{q}"), Some(token)).await;
            tally.expect(
                &format!("GET {path}?{}", q.chars().take(60).collect::<String>()),
                &r,
                status,
                code,
            );
        }
    }
    let list = "/v1/t/alpha/collections/public/docs";
    for (q, code) in [
        ("order=a%20b", "invalid_order"),
        ("order=-", "invalid_order"),
        ("order=a,b,c,d,e", "invalid_order"),
        ("order=x%3BDROP%20TABLE%20documents", "invalid_order"),
        ("order=%ff", "invalid_order"),
        ("filter=doc.n%20%3D%3D", "invalid_filter"),
        ("filter=doc.n%20%3D%3D%20'a'%20%2B%201", "invalid_filter"),
        ("filter=nosuch%20%3D%3D%201", "invalid_filter"),
        ("filter=%ff", "invalid_filter"),
        ("filter=size(doc)%20%3E%200", "invalid_filter"),
    ] {
        let r = app.get(&format!("{list}?{q}"), Some(&alpha.key)).await;
        tally.expect(&format!("GET {list}?{q}"), &r, 400, code);
    }
    let huge_filter = format!("filter=doc.a%20%3D%3D%20'{}'", "y".repeat(10_000));
    let r = app
        .get(&format!("{list}?{huge_filter}"), Some(&alpha.key))
        .await;
    tally.expect("GET docs?filter=<10 KB>", &r, 400, "invalid_filter");

    // NUL characters, which PostgreSQL refuses in text: each of the first five was a
    // 500 there. Wherever a value reaches a query, a precise 4xx.
    #[rustfmt::skip]
    let nul_queries: &[(&str, Who, u16, &str)] = &[
        ("/admin/v1/tenants/alpha/users?search=%00", Who::Admin, 400, "validation_failed"),
        ("/admin/v1/tenants/alpha/invocations?function=a%00b", Who::Admin, 400, "validation_failed"),
        ("/admin/v1/audit?tenant=%00", Who::Admin, 400, "validation_failed"),
        ("/v1/t/alpha/collections/public/docs?filter=doc.a%20%3D%3D%20'%00'", Who::Key, 400, "invalid_filter"),
        ("/v1/t/alpha/collections/public/docs?filter=doc.a%20%3D%3D%20'%5Cx00'", Who::Key, 400, "invalid_filter"),
        ("/v1/t/alpha/collections/public/docs?filter=doc['a%00b']%20%3D%3D%201", Who::Key, 400, "invalid_filter"),
        ("/v1/t/alpha/collections/public/docs?filter=doc.a%20in%20%5B'x'%2C%20'%00'%5D", Who::Key, 400, "invalid_filter"),
        ("/admin/v1/tenants/alpha/jobs?state=%00", Who::Admin, 400, "validation_failed"),
        ("/v1/t/alpha/collections/public/docs?order=a%00b", Who::Key, 400, "invalid_order"),
        ("/v1/t/alpha/collections/public/docs/a%00b", Who::Key, 400, "validation_failed"),
        ("/v1/t/alpha/fn/pe%00ek", Who::Key, 404, "function_not_found"),
    ];
    for (path, who, status, code) in nul_queries {
        let token = match who {
            Who::Key => alpha.key.as_str(),
            Who::Admin => admin.as_str(),
        };
        let r = app.get(path, Some(token)).await;
        tally.expect(&format!("GET {path}"), &r, *status, code);
    }
    let session = Session::from_json(
        &app.login("alpha", &alpha.owner.email, PASSWORD)
            .await
            .ok(200),
    );
    let nul_files = json!({"files": {
        "plinth.toml": "[[http]]\nname = \"peek\"\nfunction = \"peek\"\n",
        "functions/peek.js": "export default () => 'a\u{0}b' // \u{0}",
    }});
    #[rustfmt::skip]
    let nul_bodies: Vec<BodyAttack> = vec![
        (Method::POST, "/v1/t/alpha/auth/login", None, json!({"email": "a\u{0}@alpha.test", "password": PASSWORD}), 400, "validation_failed"),
        (Method::POST, "/v1/t/alpha/auth/signup", None, json!({"email": "a\u{0}@alpha.test", "password": PASSWORD}), 400, "validation_failed"),
        (Method::POST, "/v1/t/alpha/auth/signup", None, json!({"email": "n@alpha.test", "password": "pass\u{0}word-long"}), 400, "weak_password"),
        (Method::POST, "/v1/t/alpha/auth/reset/request", None, json!({"email": "a\u{0}@alpha.test"}), 400, "validation_failed"),
        (Method::POST, "/v1/t/alpha/auth/refresh", None, json!({"refresh_token": "a\u{0}b"}), 401, "invalid_refresh_token"),
        (Method::POST, "/v1/t/alpha/auth/verify/confirm", None, json!({"token": "a\u{0}b"}), 400, "invalid_or_expired_token"),
        (Method::POST, "/v1/t/alpha/auth/reset/confirm", None, json!({"token": "a\u{0}b", "password": "a-new-password-1"}), 400, "invalid_or_expired_token"),
        (Method::POST, "/v1/t/alpha/auth/password", Some(session.access.as_str()), json!({"current_password": PASSWORD, "new_password": "new\u{0}password-1"}), 400, "weak_password"),
        (Method::POST, "/admin/v1/auth/login", None, json!({"email": "a\u{0}@x.test", "password": PASSWORD}), 400, "validation_failed"),
        (Method::POST, "/admin/v1/tenants", Some(admin.as_str()), json!({"slug": "a\u{0}b", "name": "x"}), 400, "validation_failed"),
        (Method::POST, "/admin/v1/tenants", Some(admin.as_str()), json!({"slug": "nulname", "name": "x\u{0}y"}), 400, "validation_failed"),
        (Method::PATCH, "/admin/v1/tenants/alpha", Some(admin.as_str()), json!({"name": "x\u{0}y"}), 400, "validation_failed"),
        (Method::PATCH, "/admin/v1/tenants/alpha", Some(admin.as_str()), json!({"cors_origins": ["https://a\u{0}b.test"]}), 400, "validation_failed"),
        (Method::POST, "/admin/v1/tenants/alpha/keys", Some(admin.as_str()), json!({"name": "k\u{0}"}), 400, "validation_failed"),
        (Method::POST, "/admin/v1/tenants/alpha/deploys", Some(admin.as_str()), nul_files, 400, "invalid_bundle"),
    ];
    for (m, path, token, body, status, code) in nul_bodies {
        let r = app.send(app.req(m.clone(), path, token).json(&body)).await;
        tally.expect(&format!("{m} {path} with a NUL: {body}"), &r, status, code);
    }
    // 2. Preconditions and other headers on every conditional write.
    let doc = "/v1/t/alpha/collections/public/docs/alpha-pub";
    for (method, ct, body) in [
        (Method::PUT, "application/json", r#"{"n": 5}"#),
        (Method::PATCH, "application/merge-patch+json", r#"{"n": 5}"#),
        (
            Method::PATCH,
            "application/json-patch+json",
            r#"[{"op": "increment", "path": "/n", "value": 1}]"#,
        ),
        (Method::DELETE, "application/json", ""),
    ] {
        for (header, value, status, code) in [
            ("if-match", "abc", 400, "invalid_precondition"),
            ("if-match", "\"abc\"", 400, "invalid_precondition"),
            ("if-match", "", 400, "invalid_precondition"),
            ("if-match", "\"1\", \"2\"", 400, "invalid_precondition"),
            (
                "if-match",
                "99999999999999999999999",
                400,
                "invalid_precondition",
            ),
            ("if-match", "\"99\"", 412, "precondition_failed"),
            ("if-match", "\"1\"", 412, "precondition_failed"),
            ("if-match", "\"-1\"", 412, "precondition_failed"),
            ("if-match", "W/\"2\"", 412, "precondition_failed"),
            ("if-none-match", "\"2\"", 400, "invalid_precondition"),
            ("if-none-match", "*", 412, "precondition_failed"),
        ] {
            if method == Method::DELETE && header == "if-none-match" && value == "*" {
                continue;
            }
            let r = app
                .send(
                    app.req(method.clone(), doc, Some(&alpha.key))
                        .header("content-type", ct)
                        .header(header, value)
                        .body(body),
                )
                .await;
            tally.expect(
                &format!("{method} doc with {header}: {value}"),
                &r,
                status,
                code,
            );
        }
        let r = app
            .send(
                app.req(method.clone(), doc, Some(&alpha.key))
                    .header("content-type", ct)
                    .header(
                        "if-match",
                        reqwest::header::HeaderValue::from_bytes(b"\"\xff\"").unwrap(),
                    )
                    .body(body),
            )
            .await;
        tally.expect(
            &format!("{method} doc with a non-ASCII If-Match"),
            &r,
            400,
            "invalid_precondition",
        );
    }
    for value in [
        "Bearer",
        "Bearer ",
        "Bearer a b",
        "Token abc",
        "Basic YTpi",
        "Bearer\tx",
    ] {
        let r = app
            .send(
                app.req(Method::GET, doc, None)
                    .header("authorization", value),
            )
            .await;
        tally.expect(
            &format!("authorization: {value:?}"),
            &r,
            401,
            "invalid_token",
        );
    }

    // 3. Names in the path, methods and routes that do not exist.
    for path in [
        "/v1/t/alpha/collections/Bad/docs",
        "/v1/t/alpha/collections/a-b/docs",
        &format!("/v1/t/alpha/collections/{}/docs", "a".repeat(64)),
        "/v1/t/alpha/collections/public/docs/a%20b",
        "/v1/t/alpha/collections/public/docs/a%2Fb",
        &format!("/v1/t/alpha/collections/public/docs/{}", "i".repeat(129)),
        "/v1/t/alpha/collections/public/docs/a.b",
    ] {
        let r = app.get(path, Some(&alpha.key)).await;
        tally.expect(&format!("GET {path}"), &r, 400, "validation_failed");
    }
    for (m, path) in [
        (Method::PUT, "/v1/t/alpha/auth/me"),
        (Method::DELETE, "/v1/t/alpha/batch"),
        (Method::PATCH, "/admin/v1/tenants/alpha/keys"),
        (
            Method::POST,
            "/v1/t/alpha/collections/public/docs/alpha-pub",
        ),
    ] {
        let r = app.send(app.req(m.clone(), path, Some(&alpha.key))).await;
        tally.expect(&format!("{m} {path}"), &r, 405, "method_not_allowed");
    }
    for path in [
        "/v1/t/alpha/nope",
        "/v1/t/alpha/collections",
        "/v2/anything",
        "/admin/v1/tenants/alpha/nope",
    ] {
        let r = app.get(path, Some(&alpha.key)).await;
        tally.expect(&format!("GET {path}"), &r, 404, "route_not_found");
    }

    tally.finish();
    assert_unchanged(&mut app, &alpha, &alpha_before, "bad parameters").await;
    assert_unchanged(&mut app, &bravo, &bravo_before, "bad parameters").await;
}
