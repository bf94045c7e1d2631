//! HTTP plumbing: ops endpoints, request ids, CORS, problem+json everywhere, timeouts.

use std::time::Duration;

use std::collections::{BTreeMap, BTreeSet};

use reqwest::Method;
use serde_json::{Value, json};

use crate::backend_tests;
use crate::support::*;

backend_tests!(
    ops_endpoints,
    metrics_count_requests_by_route_and_tenant,
    cors_per_tenant,
    request_timeout,
    silent_and_slow_clients_are_let_go,
    huge_headers_and_uris_are_refused,
    undecodable_paths_are_400_on_every_route,
    openapi_document_is_sound,
    openapi_declares_tenant_moving,
);

async fn ops_endpoints(b: Backend) {
    let app = TestApp::start(b).await;
    assert_eq!(app.get("/healthz", None).await.ok(200)["status"], "ok");
    assert_eq!(app.get("/readyz", None).await.ok(200)["status"], "ready");

    let r = app.get("/healthz", None).await;
    let id = r.headers["x-request-id"].to_str().unwrap();
    assert_eq!(id.len(), 36, "a generated UUID: {id}");
    let r = app
        .send(
            app.req(Method::GET, "/healthz", None)
                .header("x-request-id", "trace-me-123"),
        )
        .await;
    assert_eq!(
        r.headers["x-request-id"], "trace-me-123",
        "a given id is propagated"
    );

    app.get("/no/such/route", None)
        .await
        .problem(404, "route_not_found");
    let r = app.send(app.req(Method::DELETE, "/healthz", None)).await;
    r.problem(405, "method_not_allowed");

    // The OpenAPI document lists every route the server has.
    let spec = app.get("/openapi.json", None).await.ok(200);
    let paths = spec["paths"].as_object().unwrap();
    for p in [
        "/admin/v1/setup",
        "/admin/v1/auth/login",
        "/admin/v1/tenants",
        "/admin/v1/tenants/{tenant}",
        "/admin/v1/tenants/{tenant}/suspend",
        "/admin/v1/tenants/{tenant}/resume",
        "/admin/v1/tenants/{tenant}/keys",
        "/admin/v1/tenants/{tenant}/keys/{id}",
        "/admin/v1/tenants/{tenant}/users",
        "/admin/v1/tenants/{tenant}/users/{id}",
        "/admin/v1/tenants/{tenant}/users/{id}/disable",
        "/admin/v1/tenants/{tenant}/users/{id}/enable",
        "/admin/v1/tenants/{tenant}/users/{id}/revoke-sessions",
        "/admin/v1/audit",
        "/admin/v1/admins/invite",
        "/admin/v1/admins/invite/{id}",
        "/admin/v1/auth/invite",
        "/admin/v1/tenants/{tenant}/collections/{collection}/docs/{id}/explain",
        "/v1/t/{tenant}/auth/signup",
        "/v1/t/{tenant}/auth/login",
        "/v1/t/{tenant}/auth/refresh",
        "/v1/t/{tenant}/auth/logout",
        "/v1/t/{tenant}/auth/me",
        "/v1/t/{tenant}/auth/password",
        "/v1/t/{tenant}/auth/verify/request",
        "/v1/t/{tenant}/auth/verify/confirm",
        "/v1/t/{tenant}/auth/reset/request",
        "/v1/t/{tenant}/auth/reset/confirm",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(paths.contains_key(p), "openapi lacks {p}");
    }
    assert!(spec["components"]["securitySchemes"]["bearer"].is_object());
}

async fn metrics_count_requests_by_route_and_tenant(b: Backend) {
    let mut app = TestApp::start(b).await;
    app.create_tenant("shop").await;
    app.signup("shop", "m@shop.test").await;
    app.get("/v1/t/ghost/auth/me", None)
        .await
        .problem(404, "tenant_not_found");
    let text = app.get("/metrics", None).await.text;
    assert!(
        text.contains(r#"plinth_http_requests_total{method="POST",route="/v1/t/{tenant}/auth/signup",status="201",tenant="shop"} 1"#),
        "{text}"
    );
    // Unknown tenants do not become label values.
    assert!(!text.contains("ghost"));
    assert!(text.contains("plinth_http_request_duration_seconds_bucket"));
    // The group-commit counters, the busy time in seconds.
    for name in [
        "plinth_commit_groups_total",
        "plinth_commit_units_total",
        "plinth_commit_writes_total",
        "plinth_commit_seconds_total",
    ] {
        let value = text
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} missing: {text}"));
        let v: f64 = value.parse().expect("a number");
        assert!(v >= 0.0, "{name} {v}");
        assert!(
            text.contains(&format!("# TYPE {name} counter")),
            "{name} typed as a counter: {text}"
        );
    }
    // SQLite's heap and budget, process-wide (on PostgreSQL, what other tests' SQLite
    // servers in this process hold): gauges with a value.
    for name in [
        "plinth_sqlite_memory_bytes",
        "plinth_sqlite_memory_highwater_bytes",
        "plinth_sqlite_memory_budget_bytes",
        "plinth_sqlite_connections",
    ] {
        let value = text
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} missing: {text}"));
        let v: f64 = value.parse().expect("a number");
        assert!(v >= 0.0, "{name} {v}");
        assert!(
            text.contains(&format!("# TYPE {name} gauge")),
            "{name} typed as a gauge: {text}"
        );
    }
}

async fn cors_per_tenant(b: Backend) {
    let mut app = TestApp::start(b).await;
    let admin = app.admin().await;
    app.create_tenant("web").await;
    app.create_tenant("closed").await;
    app.patch(
        "/admin/v1/tenants/web",
        Some(&admin),
        json!({"cors_origins": ["https://app.example"]}),
    )
    .await
    .ok(200);

    let preflight = |tenant: &str, origin: &str| {
        app.req(Method::OPTIONS, &format!("/v1/t/{tenant}/auth/login"), None)
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "content-type,authorization",
            )
    };
    let r = app.send(preflight("web", "https://app.example")).await;
    assert!(r.status.is_success(), "{}", r.status);
    assert_eq!(
        r.headers["access-control-allow-origin"],
        "https://app.example"
    );
    let methods = r.headers["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(methods.contains("POST"), "{methods}");
    // A page may send its own headers to an HTTP function, and read the invocation id.
    let r = app
        .send(
            app.req(Method::OPTIONS, "/v1/t/web/fn/hook", None)
                .header("origin", "https://app.example")
                .header("access-control-request-method", "POST")
                .header("access-control-request-headers", "x-signature,content-type"),
        )
        .await;
    let allowed = r.headers["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(allowed.contains("x-signature"), "{allowed}");

    let r = app.send(preflight("web", "https://evil.example")).await;
    assert!(r.headers.get("access-control-allow-origin").is_none());
    let r = app.send(preflight("closed", "https://app.example")).await;
    assert!(
        r.headers.get("access-control-allow-origin").is_none(),
        "origins are per tenant"
    );

    let r = app
        .send(
            app.req(Method::POST, "/v1/t/web/auth/login", None)
                .header("origin", "https://app.example")
                .json(&json!({"email": "x@y.zz", "password": PASSWORD})),
        )
        .await;
    r.problem(401, "invalid_credentials");
    assert_eq!(
        r.headers["access-control-allow-origin"],
        "https://app.example"
    );
}

async fn request_timeout(b: Backend) {
    // A signup hashes a password (tens of milliseconds): far beyond a 1 ms budget.
    let app = TestApp::start_with(b, |c| c.request_timeout = Duration::from_millis(1)).await;
    let token = app.setup_token().unwrap();
    let r = app
        .post(
            "/admin/v1/setup",
            None,
            json!({"token": token, "email": "a@b.co", "password": PASSWORD}),
        )
        .await;
    r.problem(503, "request_timeout");
    let storage = app.stop().await;
    // Nothing was stored: after a restart there is still no admin, so a new setup token.
    let app = TestApp::start_on(b, storage, |_| {}).await;
    let token2 = app.setup_token().expect("still no admin");
    assert_ne!(token, token2);
    let r = app
        .post(
            "/admin/v1/setup",
            None,
            json!({"token": token2, "email": "a@b.co", "password": PASSWORD}),
        )
        .await;
    r.ok(201);
}

/// Reads from `sock` until the server closes it (or `within` passes): true when closed.
async fn closed_within(sock: &mut tokio::net::TcpStream, within: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, sock.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

/// A connection that never sends a request, one that trickles its headers (slowloris)
/// and an idle keep-alive connection are all closed after the header timeout; past the
/// connection cap, new connections wait until one is free.
async fn silent_and_slow_clients_are_let_go(b: Backend) {
    use tokio::io::AsyncWriteExt;
    let app = TestApp::start_with(b, |c| {
        c.header_timeout = Duration::from_secs(1);
        c.max_connections = 3;
    })
    .await;
    let addr = app.base.trim_start_matches("http://").to_string();
    let connect = || tokio::net::TcpStream::connect(addr.clone());

    let mut silent = connect().await.unwrap();
    let mut slow = connect().await.unwrap();
    let mut idle = connect().await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // The cap (3) is reached: a fourth client is not served while the three are open.
    let blocked = tokio::time::timeout(
        Duration::from_millis(400),
        reqwest::Client::new().get(app.url("/healthz")).send(),
    )
    .await;
    assert!(
        blocked.is_err(),
        "served past the connection cap: {blocked:?}"
    );
    let trickle = async {
        slow.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
        for _ in 0..6 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if slow.write_all(b"X-A: b\r\n").await.is_err() {
                break;
            }
        }
    };
    trickle.await;
    let t = std::time::Instant::now();
    assert!(
        closed_within(&mut silent, Duration::from_secs(5)).await,
        "silent kept"
    );
    assert!(
        closed_within(&mut slow, Duration::from_secs(5)).await,
        "slowloris kept"
    );
    assert!(
        closed_within(&mut idle, Duration::from_secs(5)).await,
        "idle kept"
    );
    println!("closed {:?} after the trickle", t.elapsed());
    // With the slots free again, requests are served.
    app.get("/healthz", None).await.ok(200);
}

/// A path segment that is not UTF-8 once percent-decoded (`%ff`, `%c3%28`) is the
/// client's mistake on every route: 400 `invalid_path`, never a 500 (nor an ERROR log).
async fn undecodable_paths_are_400_on_every_route(b: Backend) {
    let mut app = TestApp::start(b).await;
    let admin = app.admin().await;
    app.create_tenant("alpha").await;
    let user = app.signup("alpha", "u@alpha.test").await;
    let cases = [
        (Method::GET, "/v1/t/alpha/collections/public/docs/%ff"),
        (Method::GET, "/v1/t/alpha/collections/public/docs/%c3%28"),
        (Method::GET, "/v1/t/alpha/collections/%ff/docs"),
        (Method::POST, "/v1/t/alpha/collections/%ff/docs"),
        (Method::PUT, "/v1/t/alpha/collections/public/docs/%ff"),
        (Method::PATCH, "/v1/t/alpha/collections/public/docs/%ff"),
        (Method::DELETE, "/v1/t/alpha/collections/public/docs/%ff"),
        (Method::GET, "/v1/t/%ff/auth/me"),
        (Method::POST, "/v1/t/%ff/auth/login"),
        (Method::GET, "/v1/t/%ff/collections/x/docs"),
        (Method::GET, "/v1/t/alpha/fn/%ff"),
        (Method::POST, "/v1/t/alpha/fn/hello/%ff"),
        (Method::GET, "/v1/t/%ff/realtime"),
    ];
    for (method, path) in cases {
        for token in [None, Some(user.access.as_str())] {
            let r = app
                .send(
                    app.req(method.clone(), path, token)
                        .json(&json!({"email": "u@alpha.test", "password": PASSWORD})),
                )
                .await;
            let p = r.problem(400, "invalid_path");
            assert!(
                p["detail"].as_str().unwrap().contains("UTF-8"),
                "{method} {path}: {p}"
            );
        }
    }
    for path in [
        "/admin/v1/tenants/%ff",
        "/admin/v1/tenants/%ff/keys",
        "/admin/v1/tenants/alpha/users/%c3%28",
        "/admin/v1/tenants/%ff/deploys",
    ] {
        app.get(path, Some(&admin))
            .await
            .problem(400, "invalid_path");
    }
    // A parameter of the wrong type is the same mistake.
    app.post(
        "/admin/v1/tenants/alpha/deploys/latest/activate",
        Some(&admin),
        json!({}),
    )
    .await
    .problem(400, "invalid_path");
    // Malformed escapes are taken literally (as axum decodes them): ordinary 4xx answers.
    app.get("/v1/t/alpha/collections/public/docs/%zz", None)
        .await
        .problem(400, "validation_failed");
    app.get("/v1/t/%zz/auth/me", None)
        .await
        .problem(404, "tenant_not_found");
    // The server is none the worse.
    app.get("/v1/t/alpha/auth/me", Some(&user.access))
        .await
        .ok(200);
}

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// The names between braces in a path template.
fn template_names(path: &str) -> Vec<String> {
    path.split('{')
        .skip(1)
        .filter_map(|rest| rest.split_once('}').map(|(name, _)| name.to_string()))
        .collect()
}

/// Every `$ref` in the document, wherever it is.
fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("$ref") {
                out.push(r);
            }
            m.values().for_each(|v| refs(v, out));
        }
        Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

/// What code generators need of `/openapi.json` (openapi-typescript, progenitor, ...):
/// the structural rules of OpenAPI 3.1 they rely on, and the promises of this API
/// (errors are problem+json, admin routes need a token). The full schema validation
/// and a compiled TypeScript client are in scripts/openapi-check.sh.
async fn openapi_document_is_sound(b: Backend) {
    let app = TestApp::start(b).await;
    let r = app.get("/openapi.json", None).await;
    let doc = r.ok(200);
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1."),
        "{}",
        doc["openapi"]
    );
    assert!(!doc["info"]["title"].as_str().unwrap().is_empty());
    assert!(!doc["info"]["version"].as_str().unwrap().is_empty());
    if let Some(license) = doc["info"].get("license") {
        assert!(
            !license["name"].as_str().unwrap_or("").is_empty(),
            "{license}"
        );
    }
    let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
    let schemas = doc["components"]["schemas"].as_object().unwrap();

    let mut all_refs = Vec::new();
    refs(&doc, &mut all_refs);
    for r in all_refs {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("unexpected $ref {r}"));
        assert!(schemas.contains_key(name), "dangling $ref {r}");
    }
    // Schemas are named for what they are: a generic name (`Report`, `Item`) says
    // nothing to a generated client and collides with the next type of that name.
    for generic in ["Report", "Item", "List", "Response", "Request", "Data"] {
        assert!(
            !schemas.contains_key(generic),
            "schema named the generic `{generic}`"
        );
    }
    let usage = &schemas["UsageSeries"];
    assert!(usage["properties"]["total"].is_object(), "{usage}");
    let problem = &schemas["Problem"];
    let required: BTreeSet<&str> = problem["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for member in ["type", "title", "status", "detail", "code"] {
        assert!(required.contains(member), "Problem.{member} is required");
    }

    let mut ids: BTreeMap<String, String> = BTreeMap::new();
    let mut query_params = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        assert!(path.starts_with('/') && !path.contains('*'), "path {path}");
        let names = template_names(path);
        let item = item.as_object().unwrap();
        for key in item.keys() {
            assert!(
                METHODS.contains(&key.as_str()) || key == "parameters",
                "{path}: unexpected {key}"
            );
        }
        let shared = item.get("parameters").and_then(Value::as_array);
        for method in METHODS {
            let Some(op) = item.get(method) else { continue };
            let at = format!("{} {path}", method.to_uppercase());

            let id = op["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{at}: no operationId"));
            if let Some(other) = ids.insert(id.to_string(), at.clone()) {
                panic!("operationId {id} of {at} is also {other}");
            }

            let params: Vec<&Value> = shared
                .into_iter()
                .flatten()
                .chain(op["parameters"].as_array().into_iter().flatten())
                .collect();
            let mut in_path = Vec::new();
            for p in &params {
                let name = p["name"].as_str().unwrap();
                match p["in"].as_str().unwrap() {
                    "path" => {
                        assert_eq!(p["required"], true, "{at}: path parameter {name}");
                        in_path.push(name.to_string());
                    }
                    "query" => {
                        query_params.insert(format!("{id}.{name}"), p["required"] == true);
                    }
                    "header" | "cookie" => {}
                    other => panic!("{at}: parameter {name} in {other}"),
                }
                assert!(
                    p["schema"].is_object(),
                    "{at}: parameter {name} has no schema"
                );
            }
            in_path.sort();
            let mut want = names.clone();
            want.sort();
            assert_eq!(in_path, want, "{at}: path parameters vs the template");

            let responses = op["responses"].as_object().unwrap();
            assert!(
                responses.contains_key("default"),
                "{at}: no default response"
            );
            for (status, response) in responses {
                assert!(
                    response["description"]
                        .as_str()
                        .is_some_and(|d| !d.is_empty()),
                    "{at} {status}: no description"
                );
                let error = status.starts_with('4') || status.starts_with('5');
                let Some(content) = response.get("content").and_then(Value::as_object) else {
                    assert!(
                        !error && (status != "default" || path.contains("/fn/")),
                        "{at} {status}: no content"
                    );
                    continue;
                };
                if error || status == "default" {
                    let types: Vec<&String> = content.keys().collect();
                    assert_eq!(types, ["application/problem+json"], "{at} {status}");
                    assert_eq!(
                        content["application/problem+json"]["schema"]["$ref"],
                        "#/components/schemas/Problem",
                        "{at} {status}"
                    );
                }
            }

            if let Some(security) = op.get("security").and_then(Value::as_array) {
                for requirement in security {
                    for scheme in requirement.as_object().unwrap().keys() {
                        assert!(
                            schemes.contains_key(scheme),
                            "{at}: unknown scheme {scheme}"
                        );
                    }
                }
            }
            let open = [
                "admin_setup",
                "admin_login",
                "open_admin_session",
                "accept_admin_invite",
            ];
            if path.starts_with("/admin/v1/") && !open.contains(&id) {
                assert_eq!(
                    op["security"],
                    json!([{"bearer": []}, {"cookie": []}]),
                    "{at}"
                );
            }
        }
    }

    // The query parameters the reviews found declared `in: path`.
    let expected = [
        ("list_docs.filter", false),
        ("list_docs.order", false),
        ("list_docs.limit", false),
        ("list_docs.cursor", false),
        ("get_doc.explain", false),
        ("list_users.search", false),
        ("list_users.cursor", false),
        ("list_audit.tenant", false),
        ("list_invocations.function", false),
        ("list_jobs.state", false),
        ("tenant_usage.granularity", false),
        ("tenant_usage.days", false),
        ("tenant_usage.hours", false),
        ("auth_verify_confirm_link.token", true),
        ("realtime_connect.access_token", false),
    ];
    for (param, required) in expected {
        assert_eq!(
            query_params.get(param),
            Some(&required),
            "query parameter {param}"
        );
    }

    // A PATCH takes what the handler takes.
    let patch = &doc["paths"]["/v1/t/{tenant}/collections/{collection}/docs/{id}"]["patch"];
    let types: BTreeSet<&str> = patch["requestBody"]["content"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        types,
        BTreeSet::from([
            "application/json",
            "application/json-patch+json",
            "application/merge-patch+json"
        ])
    );
    // The HTTP functions under one name, one id per method.
    for method in ["get", "post", "put", "patch", "delete"] {
        assert!(
            ids.contains_key(&format!("call_function_{method}")),
            "{method}"
        );
        assert!(
            ids.contains_key(&format!("call_function_path_{method}")),
            "{method}"
        );
    }
}

/// 10,000 connections that send nothing: the server keeps answering other clients
/// (latency printed; a generous bound asserted), then lets the idle ones go after the
/// header timeout. Each connection takes two descriptors in this process (client and
/// server side); with a lower limit the test opens fewer and says so. Connection handling
/// does not depend on the backend: it runs on SQLite only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_idle_connections_leave_others_served() {
    let _heavy = DESCRIPTOR_HEAVY.lock().await;
    let b = Backend::Sqlite;
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut lim = getrlimit(Resource::Nofile);
    if let Some(hard) = lim.maximum
        && lim.current.is_some_and(|c| c < hard)
    {
        lim.current = Some(hard);
        let _ = setrlimit(Resource::Nofile, lim);
    }
    let soft = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
    // Other tests run in parallel in this process: leave them room.
    let n = 10_000usize.min((soft.saturating_sub(4_000) / 2) as usize);
    if n < 10_000 {
        eprintln!("open-files limit {soft}: opening {n} idle connections, not 10,000");
    }
    let app = TestApp::start_with(b, |c| {
        c.header_timeout = Duration::from_secs(3);
    })
    .await;
    let addr: std::net::SocketAddr = app.base.trim_start_matches("http://").parse().unwrap();
    let mut idle = Vec::with_capacity(n);
    for _ in 0..n {
        idle.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    let mut worst = Duration::ZERO;
    for _ in 0..20 {
        let t = std::time::Instant::now();
        app.get("/healthz", None).await.ok(200);
        worst = worst.max(t.elapsed());
    }
    println!("{n} idle connections open: /healthz worst of 20 {worst:?}");
    assert!(worst < Duration::from_secs(2), "{worst:?}");
    // All let go after the header timeout.
    let t = std::time::Instant::now();
    for sock in idle.iter_mut() {
        assert!(
            closed_within(sock, Duration::from_secs(20)).await,
            "an idle connection was kept"
        );
    }
    println!("all {n} closed {:?} later", t.elapsed());
}

/// Oversized request heads are refused by hyper before the application (431 for headers,
/// 414-class for a huge URI: its answers carry no problem+json body, docs/api.md says
/// so), and the server goes on serving.
async fn huge_headers_and_uris_are_refused(b: Backend) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestApp::start(b).await;
    let addr = app.base.trim_start_matches("http://").to_string();
    let big = "a".repeat(200_000);
    for head in [
        format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n"),
        format!("GET /healthz?q={big} HTTP/1.1\r\nHost: x\r\n\r\n"),
    ] {
        let mut sock = tokio::net::TcpStream::connect(&addr).await.unwrap();
        // The server may answer and close before it has read everything we send.
        let _ = sock.write_all(head.as_bytes()).await;
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), sock.read_to_end(&mut answer)).await;
        let text = String::from_utf8_lossy(&answer);
        let status: u16 = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        assert!(
            matches!(status, 400 | 414 | 431),
            "an oversized head got {status}: {text}"
        );
    }
    app.get("/healthz", None).await.ok(200);
}

/// Admin routes a tenant's move lets through: changes to the control row only, requests
/// that change nothing, and the move itself (which recovers an interrupted one).
const CARRIED_WHILE_MOVING: &[(&str, &str)] = &[
    ("patch", "/admin/v1/tenants/{tenant}"),
    ("post", "/admin/v1/tenants/{tenant}/move"),
    ("post", "/admin/v1/tenants/{tenant}/suspend"),
    ("post", "/admin/v1/tenants/{tenant}/resume"),
    ("post", "/admin/v1/tenants/{tenant}/read-token"),
    ("post", "/admin/v1/tenants/{tenant}/rules/validate"),
    ("post", "/admin/v1/tenants/{tenant}/rules/test"),
];

/// Tenant routes read by method that write: a move refuses them too.
const WRITING_READS: &[(&str, &str)] = &[("get", "/v1/t/{tenant}/auth/verify/confirm")];

/// The operations a move refuses declare their 503 `tenant_moving` as a problem
/// document (schemathesis checks answers against the document): every changing method
/// of a tenant route (documents, batches, function calls, sign-ins) and of the admin
/// routes under `/admin/v1/tenants/{tenant}` but those it lets through, and the reads
/// that write (the emailed verification link); no other read does.
async fn openapi_declares_tenant_moving(b: Backend) {
    let app = TestApp::start(b).await;
    let doc = app.get("/openapi.json", None).await.ok(200);
    let mut declared = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in METHODS {
            let Some(op) = item.get(method) else { continue };
            let changing = !matches!(method, "get" | "head" | "options");
            let tenant_route = path.starts_with("/v1/t/{tenant}/");
            let admin_route = path.starts_with("/admin/v1/tenants/{tenant}")
                && !CARRIED_WHILE_MOVING.contains(&(method, path.as_str()));
            let writing_read = WRITING_READS.contains(&(method, path.as_str()));
            let refused = (changing && (tenant_route || admin_route)) || writing_read;
            let r = &op["responses"]["503"];
            let says = r["description"]
                .as_str()
                .is_some_and(|d| d.contains("tenant_moving"));
            assert_eq!(says, refused, "{method} {path}: 503 {r}");
            if refused {
                assert_eq!(
                    r["content"]["application/problem+json"]["schema"]["$ref"],
                    "#/components/schemas/Problem",
                    "{method} {path}"
                );
                declared.insert(format!("{method} {path}"));
            }
        }
    }
    for op in [
        "post /v1/t/{tenant}/collections/{collection}/docs",
        "put /v1/t/{tenant}/collections/{collection}/docs/{id}",
        "patch /v1/t/{tenant}/collections/{collection}/docs/{id}",
        "delete /v1/t/{tenant}/collections/{collection}/docs/{id}",
        "post /v1/t/{tenant}/batch",
        "post /v1/t/{tenant}/fn/{name}",
        "post /v1/t/{tenant}/auth/login",
        "post /v1/t/{tenant}/auth/verify/confirm",
        "get /v1/t/{tenant}/auth/verify/confirm",
        "put /admin/v1/tenants/{tenant}/rules",
        "post /admin/v1/tenants/{tenant}/deploys",
        "put /admin/v1/tenants/{tenant}/secrets/{name}",
        "delete /admin/v1/tenants/{tenant}",
    ] {
        assert!(declared.contains(op), "{op} lacks its 503: {declared:?}");
    }
}
