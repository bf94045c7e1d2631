//! Console sessions: the cookie's attributes, CSRF on every changing request made with
//! it, logout seen by every node, idle and absolute expiry, password change, rate limit.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::backend_tests;
use crate::support::*;

backend_tests!(
    a_session_cookie_signs_in_the_console,
    changing_requests_with_the_cookie_need_the_csrf_token,
    logout_ends_the_session_on_every_node,
    sessions_expire_when_idle_and_at_their_lifetime,
    a_password_change_ends_sessions_and_tokens,
    session_login_is_rate_limited_and_checks_credentials,
    the_cookie_is_secure_over_https,
);

struct Console {
    cookie: String,
    csrf: String,
    set_cookie: String,
}

async fn sign_in(app: &TestApp, email: &str, password: &str) -> Console {
    let r = app
        .post(
            "/admin/v1/auth/session",
            None,
            json!({"email": email, "password": password}),
        )
        .await;
    let body = r.ok(200);
    let set_cookie = r.headers["set-cookie"].to_str().unwrap().to_string();
    let cookie = set_cookie.split(';').next().unwrap().to_string();
    Console {
        cookie,
        csrf: body["csrf_token"].as_str().unwrap().to_string(),
        set_cookie,
    }
}

/// A request with the session cookie and, if given, an X-CSRF-Token.
async fn with_cookie(
    app: &TestApp,
    method: Method,
    path: &str,
    cookie: &str,
    csrf: Option<&str>,
    body: Option<Value>,
) -> Reply {
    let mut req = app.req(method, path, None).header("cookie", cookie);
    if let Some(t) = csrf {
        req = req.header("x-csrf-token", t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    app.send(req).await
}

async fn a_session_cookie_signs_in_the_console(b: Backend) {
    let mut app = TestApp::start(b).await;
    app.admin().await;
    let c = sign_in(&app, "root@plinth.test", PASSWORD).await;
    let attrs: Vec<&str> = c.set_cookie.split(';').map(str::trim).collect();
    assert!(
        c.cookie.starts_with("plinth_admin_session="),
        "{}",
        c.set_cookie
    );
    for want in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(attrs.contains(&want), "{want} in {}", c.set_cookie);
    }
    assert!(
        !attrs.contains(&"Secure"),
        "served over plain HTTP: {}",
        c.set_cookie
    );
    assert!(attrs.iter().any(|a| a.starts_with("Max-Age=")));

    let who = with_cookie(
        &app,
        Method::GET,
        "/admin/v1/auth/session",
        &c.cookie,
        None,
        None,
    )
    .await
    .ok(200);
    assert_eq!(who["via"], "session");
    assert_eq!(who["admin"]["role"], "owner");
    // The admin's own creation time, not the epoch.
    let created = who["admin"]["created_at"].as_str().unwrap_or_default();
    assert!(
        created.starts_with("20") && !created.starts_with("1970"),
        "{who}"
    );
    assert_eq!(
        who["csrf_token"],
        c.csrf.as_str(),
        "a reloaded page gets it again"
    );
    with_cookie(
        &app,
        Method::GET,
        "/admin/v1/tenants",
        &c.cookie,
        None,
        None,
    )
    .await
    .ok(200);
    // Among other cookies, and a garbage cookie is no session.
    with_cookie(
        &app,
        Method::GET,
        "/admin/v1/tenants",
        &format!("theme=dark; {}; x=1", c.cookie),
        None,
        None,
    )
    .await
    .ok(200);
    with_cookie(
        &app,
        Method::GET,
        "/admin/v1/tenants",
        "plinth_admin_session=forged",
        None,
        None,
    )
    .await
    .problem(401, "session_expired");
    // A bearer credential wins over the cookie, and needs no CSRF token.
    let token = app.admin().await;
    let r = app
        .send(
            app.req(Method::POST, "/admin/v1/tenants", Some(&token))
                .header("cookie", &c.cookie)
                .json(&json!({"slug": "by-token"})),
        )
        .await;
    r.ok(201);
}

async fn changing_requests_with_the_cookie_need_the_csrf_token(b: Backend) {
    let mut app = TestApp::start(b).await;
    app.admin().await;
    let c = sign_in(&app, "root@plinth.test", PASSWORD).await;
    let other = sign_in(&app, "root@plinth.test", PASSWORD).await;
    assert_ne!(c.csrf, other.csrf);
    let create = |csrf: Option<String>, slug: &'static str| {
        let (app, cookie) = (&app, c.cookie.clone());
        async move {
            with_cookie(
                app,
                Method::POST,
                "/admin/v1/tenants",
                &cookie,
                csrf.as_deref(),
                Some(json!({"slug": slug})),
            )
            .await
        }
    };
    create(None, "acme").await.problem(403, "csrf_failed");
    create(Some(String::new()), "acme")
        .await
        .problem(403, "csrf_failed");
    create(Some("wrong".into()), "acme")
        .await
        .problem(403, "csrf_failed");
    create(Some(other.csrf.clone()), "acme")
        .await
        .problem(403, "csrf_failed");
    create(Some(c.csrf.clone()), "acme").await.ok(201);

    // A cross-site form post carries the cookie (were SameSite ignored) but no token.
    let r = app
        .send(
            app.req(Method::POST, "/admin/v1/tenants", None)
                .header("cookie", &c.cookie)
                .header("origin", "https://evil.example")
                .header("content-type", "application/x-www-form-urlencoded")
                .body("slug=evil"),
        )
        .await;
    r.problem(403, "csrf_failed");
    for (method, path) in [
        (Method::DELETE, "/admin/v1/tenants/acme"),
        (Method::PATCH, "/admin/v1/tenants/acme"),
        (Method::PUT, "/admin/v1/tenants/acme/secrets/X"),
        (Method::DELETE, "/admin/v1/auth/session"),
    ] {
        with_cookie(&app, method, path, &c.cookie, None, Some(json!({})))
            .await
            .problem(403, "csrf_failed");
    }
    let tenants = with_cookie(
        &app,
        Method::GET,
        "/admin/v1/tenants",
        &c.cookie,
        None,
        None,
    )
    .await
    .ok(200);
    assert_eq!(
        tenants["items"].as_array().unwrap().len(),
        1,
        "nothing else happened"
    );
    // Admin routes answer no CORS preflight: a page elsewhere cannot read them.
    let r = app
        .send(
            app.req(Method::OPTIONS, "/admin/v1/tenants", None)
                .header("origin", "https://evil.example")
                .header("access-control-request-method", "POST"),
        )
        .await;
    assert!(
        r.headers.get("access-control-allow-origin").is_none(),
        "{r:?}"
    );
}

async fn logout_ends_the_session_on_every_node(b: Backend) {
    let mut app = TestApp::start(b).await;
    app.admin().await;
    let node_b = TestApp::start_on(
        b,
        Storage {
            location: app.storage.location.clone(),
            _dir: None,
        },
        |_| {},
    )
    .await;
    let c = sign_in(&app, "root@plinth.test", PASSWORD).await;
    with_cookie(
        &node_b,
        Method::GET,
        "/admin/v1/tenants",
        &c.cookie,
        None,
        None,
    )
    .await
    .ok(200);
    let r = with_cookie(
        &app,
        Method::DELETE,
        "/admin/v1/auth/session",
        &c.cookie,
        Some(&c.csrf),
        None,
    )
    .await;
    r.ok(204);
    let cleared = r.headers["set-cookie"].to_str().unwrap();
    assert!(cleared.starts_with("plinth_admin_session=;") && cleared.contains("Max-Age=0"));
    for node in [&app, &node_b] {
        with_cookie(
            node,
            Method::GET,
            "/admin/v1/tenants",
            &c.cookie,
            None,
            None,
        )
        .await
        .problem(401, "session_expired");
    }
    node_b.stop().await;
}

async fn sessions_expire_when_idle_and_at_their_lifetime(b: Backend) {
    let mut app = TestApp::start_with(b, |c| {
        c.admin_session_idle = Duration::from_millis(1000);
        c.admin_session_lifetime = Duration::from_secs(3600);
    })
    .await;
    app.admin().await;
    let c = sign_in(&app, "root@plinth.test", PASSWORD).await;
    // Used within the idle timeout, it lives on past it.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        with_cookie(
            &app,
            Method::GET,
            "/admin/v1/tenants",
            &c.cookie,
            None,
            None,
        )
        .await
        .ok(200);
    }
    tokio::time::sleep(Duration::from_millis(1300)).await;
    with_cookie(
        &app,
        Method::GET,
        "/admin/v1/tenants",
        &c.cookie,
        None,
        None,
    )
    .await
    .problem(401, "session_expired");
    let storage = app.stop().await;

    let app = TestApp::start_on(b, storage, |c| {
        c.admin_session_idle = Duration::from_secs(3600);
        c.admin_session_lifetime = Duration::from_millis(1500);
    })
    .await;
    let c = sign_in(&app, "root@plinth.test", PASSWORD).await;
    assert!(c.set_cookie.contains("Max-Age=1"), "{}", c.set_cookie);
    for _ in 0..2 {
        with_cookie(
            &app,
            Method::GET,
            "/admin/v1/tenants",
            &c.cookie,
            None,
            None,
        )
        .await
        .ok(200);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    with_cookie(
        &app,
        Method::GET,
        "/admin/v1/tenants",
        &c.cookie,
        None,
        None,
    )
    .await
    .problem(401, "session_expired");
}

async fn a_password_change_ends_sessions_and_tokens(b: Backend) {
    let mut app = TestApp::start(b).await;
    let token = app.admin().await;
    let c1 = sign_in(&app, "root@plinth.test", PASSWORD).await;
    let c2 = sign_in(&app, "root@plinth.test", PASSWORD).await;
    let key = app
        .post(
            "/admin/v1/api-keys",
            Some(&token),
            json!({"name": "ci", "role": "admin"}),
        )
        .await
        .ok(201)["key"]
        .as_str()
        .unwrap()
        .to_string();
    let change = |current: &str, new: &str| {
        with_cookie(
            &app,
            Method::POST,
            "/admin/v1/auth/password",
            &c1.cookie,
            Some(&c1.csrf),
            Some(json!({"current_password": current, "new_password": new})),
        )
    };
    change("wrong-password-1", "another-good-passphrase")
        .await
        .problem(400, "validation_failed");
    change(PASSWORD, "short")
        .await
        .problem(400, "validation_failed");
    // A key has no password to change.
    app.post(
        "/admin/v1/auth/password",
        Some(&key),
        json!({"current_password": PASSWORD, "new_password": "another-good-passphrase"}),
    )
    .await
    .problem(403, "insufficient_role");
    with_cookie(
        &app,
        Method::GET,
        "/admin/v1/tenants",
        &c2.cookie,
        None,
        None,
    )
    .await
    .ok(200);
    change(PASSWORD, "another-good-passphrase").await.ok(204);

    for c in [&c1, &c2] {
        with_cookie(
            &app,
            Method::GET,
            "/admin/v1/tenants",
            &c.cookie,
            None,
            None,
        )
        .await
        .problem(401, "session_expired");
    }
    app.get("/admin/v1/tenants", Some(&token))
        .await
        .problem(401, "invalid_token");
    // Keys are not sessions: they stay until revoked.
    app.get("/admin/v1/tenants", Some(&key)).await.ok(200);
    app.post(
        "/admin/v1/auth/session",
        None,
        json!({"email": "root@plinth.test", "password": PASSWORD}),
    )
    .await
    .problem(401, "invalid_credentials");
    let fresh = sign_in(&app, "root@plinth.test", "another-good-passphrase").await;
    with_cookie(
        &app,
        Method::GET,
        "/admin/v1/tenants",
        &fresh.cookie,
        None,
        None,
    )
    .await
    .ok(200);
    let audit = app.get("/admin/v1/audit", Some(&key)).await.ok(200);
    assert_eq!(audit["items"][0]["action"], "admin.password");
}

async fn session_login_is_rate_limited_and_checks_credentials(b: Backend) {
    let mut app = TestApp::start_with(b, |c| {
        c.login_per_ip_per_minute = 10_000;
        c.login_free_failures = 2;
    })
    .await;
    app.admin().await;
    let login = |email: &str, password: &str| {
        app.post(
            "/admin/v1/auth/session",
            None,
            json!({"email": email, "password": password}),
        )
    };
    let r = login("nobody@x.test", PASSWORD).await;
    r.problem(401, "invalid_credentials");
    assert!(r.headers.get("set-cookie").is_none());
    login("root@plinth.test", "wrong-password-1")
        .await
        .problem(401, "invalid_credentials");
    login("root@plinth.test", "wrong-password-2")
        .await
        .problem(401, "invalid_credentials");
    let r = login("root@plinth.test", "wrong-password-3").await;
    r.problem(429, "rate_limited");
    assert!(r.headers.contains_key("retry-after"));
    // The token login shares the account's bucket.
    app.post(
        "/admin/v1/auth/login",
        None,
        json!({"email": "root@plinth.test", "password": PASSWORD}),
    )
    .await
    .problem(429, "rate_limited");
    login("root", PASSWORD)
        .await
        .problem(400, "validation_failed");
}

async fn the_cookie_is_secure_over_https(b: Backend) {
    let mut app = TestApp::start_with(b, |c| c.public_url = "https://plinth.example".into()).await;
    app.admin().await;
    let c = sign_in(&app, "root@plinth.test", PASSWORD).await;
    assert!(
        c.set_cookie.split(';').any(|a| a.trim() == "Secure"),
        "{}",
        c.set_cookie
    );
    app.stop().await;
    // Behind a trusted proxy that says the client used HTTPS.
    let mut app = TestApp::start_with(b, |c| c.trust_forwarded_for = true).await;
    app.admin().await;
    let r = app
        .send(
            app.req(Method::POST, "/admin/v1/auth/session", None)
                .header("x-forwarded-proto", "https")
                .json(&json!({"email": "root@plinth.test", "password": PASSWORD})),
        )
        .await;
    r.ok(200);
    assert!(
        r.headers["set-cookie"]
            .to_str()
            .unwrap()
            .contains("; Secure")
    );
}
