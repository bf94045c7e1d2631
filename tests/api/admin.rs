//! Admin API: first-run setup, login, tenants, service keys, users, audit.

use serde_json::{Value, json};

use crate::backend_tests;
use crate::support::*;

backend_tests!(
    setup_creates_the_first_admin_once,
    setup_checks_the_token_first_and_is_rate_limited,
    admin_login,
    tenant_lifecycle,
    tenant_input_is_validated,
    service_keys,
    user_administration,
    user_listing_pages_and_searches,
    audit_log_records_admin_actions,
);

async fn setup_creates_the_first_admin_once(b: Backend) {
    let app = TestApp::start(b).await;
    let token = app.setup_token().expect("no admin yet: a setup token");

    // Bad input: nothing is created and the token stays valid.
    app.post(
        "/admin/v1/setup",
        None,
        json!({"token": "wrong", "email": "a@b.co", "password": PASSWORD}),
    )
    .await
    .problem(403, "invalid_setup_token");
    app.post(
        "/admin/v1/setup",
        None,
        json!({"token": token, "email": "nope", "password": PASSWORD}),
    )
    .await
    .problem(400, "validation_failed");
    app.post(
        "/admin/v1/setup",
        None,
        json!({"token": token, "email": "a@b.co", "password": "short"}),
    )
    .await
    .problem(400, "validation_failed");
    app.post("/admin/v1/login", None, json!({}))
        .await
        .problem(404, "route_not_found");

    let r = app
        .post(
            "/admin/v1/setup",
            None,
            json!({"token": token, "email": "Root@B.co", "password": PASSWORD}),
        )
        .await
        .ok(201);
    assert_eq!(r["admin"]["email"], "root@b.co");
    let admin = r["access_token"].as_str().unwrap();
    assert_eq!(jwt_payload(admin)["aud"], "plinth:admin");
    app.get("/admin/v1/tenants", Some(admin)).await.ok(200);

    // Single use, and never a second first admin.
    app.post(
        "/admin/v1/setup",
        None,
        json!({"token": token, "email": "x@b.co", "password": PASSWORD}),
    )
    .await
    .problem(403, "invalid_setup_token");
    let storage = app.stop().await;
    let app = TestApp::start_on(b, storage, |_| {}).await;
    assert!(
        app.setup_token().is_none(),
        "an admin exists: no setup token on restart"
    );
}

/// Setup is open to anyone: it must not spend a password hash (19 MiB, tens of ms) on a
/// request that cannot succeed, and it is throttled per client IP.
async fn setup_checks_the_token_first_and_is_rate_limited(b: Backend) {
    let app = TestApp::start(b).await;
    let token = app.setup_token().expect("no admin yet: a setup token");
    let setup = |token: &str, password: &str| {
        app.post(
            "/admin/v1/setup",
            None,
            json!({"token": token, "email": "root@b.co", "password": password}),
        )
    };
    // A wrong token is refused before the password is even looked at (so never hashed):
    // a password too short to be hashed gets the token's answer, not the password's.
    setup("wrong", "short")
        .await
        .problem(403, "invalid_setup_token");
    setup("wrong", PASSWORD)
        .await
        .problem(403, "invalid_setup_token");
    setup(&token, "short")
        .await
        .problem(400, "validation_failed");
    setup(&token, PASSWORD).await.ok(201);
    // Once an admin exists every setup is refused the same way, before any hash: even
    // with the (spent) token and a password that could not be hashed.
    setup(&token, "short")
        .await
        .problem(403, "invalid_setup_token");
    setup(&token, PASSWORD)
        .await
        .problem(403, "invalid_setup_token");
    app.stop().await;

    // Per client IP, from the login limiter's bucket.
    let app = TestApp::start_with(b, |c| c.login_per_ip_per_minute = 3).await;
    for i in 0..3 {
        app.post(
            "/admin/v1/setup",
            None,
            json!({"token": format!("guess-{i}"), "email": "evil@b.co", "password": PASSWORD}),
        )
        .await
        .problem(403, "invalid_setup_token");
    }
    let token = app.setup_token().expect("no admin yet");
    let r = app
        .post(
            "/admin/v1/setup",
            None,
            json!({"token": token, "email": "root@b.co", "password": PASSWORD}),
        )
        .await;
    r.problem(429, "rate_limited");
    assert!(r.headers.contains_key("retry-after"));
}

async fn admin_login(b: Backend) {
    let mut app = TestApp::start(b).await;
    app.admin().await;
    let r = app
        .post(
            "/admin/v1/auth/login",
            None,
            json!({"email": "root@plinth.test", "password": PASSWORD}),
        )
        .await
        .ok(200);
    let token = r["access_token"].as_str().unwrap();
    assert_eq!(r["expires_in"], 3600);
    app.get("/admin/v1/tenants", Some(token)).await.ok(200);
    app.post(
        "/admin/v1/auth/login",
        None,
        json!({"email": "root@plinth.test", "password": "wrong-password"}),
    )
    .await
    .problem(401, "invalid_credentials");
    app.post(
        "/admin/v1/auth/login",
        None,
        json!({"email": "who@plinth.test", "password": PASSWORD}),
    )
    .await
    .problem(401, "invalid_credentials");
}

async fn tenant_lifecycle(b: Backend) {
    let mut app = TestApp::start(b).await;
    let admin = app.admin().await;
    let t = app
        .post(
            "/admin/v1/tenants",
            Some(&admin),
            json!({"slug": "acme", "name": "Acme Inc"}),
        )
        .await
        .ok(201);
    assert_eq!(t["slug"], "acme");
    assert_eq!(t["name"], "Acme Inc");
    assert_eq!(t["suspended"], false);
    app.create_tenant("zeta").await;

    let list = app.get("/admin/v1/tenants", Some(&admin)).await.ok(200);
    let slugs: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["slug"].as_str().unwrap())
        .collect();
    assert_eq!(slugs, ["acme", "zeta"]);

    let renamed = app
        .patch(
            "/admin/v1/tenants/acme",
            Some(&admin),
            json!({"name": "Acme Corp"}),
        )
        .await
        .ok(200);
    assert_eq!(renamed["name"], "Acme Corp");
    assert_eq!(
        app.get("/admin/v1/tenants/acme", Some(&admin))
            .await
            .ok(200)["name"],
        "Acme Corp"
    );

    let s = app.signup("acme", "user@acme.test").await;

    // Suspended: every tenant route answers 403, whatever the caller.
    app.post("/admin/v1/tenants/acme/suspend", Some(&admin), json!({}))
        .await
        .ok(200);
    app.get("/v1/t/acme/auth/me", Some(&s.access))
        .await
        .problem(403, "tenant_suspended");
    app.login("acme", "user@acme.test", PASSWORD)
        .await
        .problem(403, "tenant_suspended");
    app.post(
        "/v1/t/acme/auth/signup",
        None,
        json!({"email": "new@acme.test", "password": PASSWORD}),
    )
    .await
    .problem(403, "tenant_suspended");
    app.post(
        "/v1/t/acme/auth/refresh",
        None,
        json!({"refresh_token": s.refresh}),
    )
    .await
    .problem(403, "tenant_suspended");
    assert_eq!(
        app.user_count("acme").await,
        1,
        "nothing was stored while suspended"
    );
    // The other tenant is untouched.
    app.signup("zeta", "user@zeta.test").await;

    app.post("/admin/v1/tenants/acme/resume", Some(&admin), json!({}))
        .await
        .ok(200);
    app.get("/v1/t/acme/auth/me", Some(&s.access)).await.ok(200);

    // Delete: all its data goes; on SQLite, its file.
    let file = app
        .storage
        .sqlite_dir()
        .map(|d| d.join("tenants").join("tenant-1.db"));
    if let Some(f) = &file {
        assert!(f.exists(), "tenant file {f:?}");
    }
    app.delete("/admin/v1/tenants/acme", Some(&admin))
        .await
        .ok(204);
    if let Some(f) = &file {
        assert!(!f.exists(), "tenant file removed");
    }
    app.get("/v1/t/acme/auth/me", Some(&s.access))
        .await
        .problem(404, "tenant_not_found");
    app.get("/admin/v1/tenants/acme", Some(&admin))
        .await
        .problem(404, "tenant_not_found");
    app.delete("/admin/v1/tenants/acme", Some(&admin))
        .await
        .problem(404, "tenant_not_found");

    // Re-created with the same slug: an empty tenant, and the old token means nothing.
    app.create_tenant("acme").await;
    assert_eq!(app.user_count("acme").await, 0);
    app.get("/v1/t/acme/auth/me", Some(&s.access))
        .await
        .problem(401, "invalid_token");
    app.login("acme", "user@acme.test", PASSWORD)
        .await
        .problem(401, "invalid_credentials");
}

async fn tenant_input_is_validated(b: Backend) {
    let mut app = TestApp::start(b).await;
    let admin = app.admin().await;
    for slug in [
        "ab",
        "1abc",
        "-abc",
        "Acme",
        "a_b",
        "a b",
        "ünï",
        &"a".repeat(41),
        "admin",
        "api",
        "www",
    ] {
        let p = app
            .post("/admin/v1/tenants", Some(&admin), json!({"slug": slug}))
            .await
            .problem(400, "validation_failed");
        assert!(p["fields"]["slug"].is_string(), "{slug}: {p}");
    }
    app.post("/admin/v1/tenants", Some(&admin), json!({"name": "x"}))
        .await
        .problem(400, "invalid_body");
    app.create_tenant("acme").await;
    let p = app
        .post("/admin/v1/tenants", Some(&admin), json!({"slug": "acme"}))
        .await
        .problem(409, "tenant_exists");
    assert!(p["fields"]["slug"].is_string());
    let list = app.get("/admin/v1/tenants", Some(&admin)).await.ok(200);
    assert_eq!(
        list["items"].as_array().unwrap().len(),
        1,
        "only the valid tenant exists"
    );

    app.patch("/admin/v1/tenants/acme", Some(&admin), json!({"name": ""}))
        .await
        .problem(400, "validation_failed");
    app.patch(
        "/admin/v1/tenants/acme",
        Some(&admin),
        json!({"cors_origins": ["not an origin"]}),
    )
    .await
    .problem(400, "validation_failed");
    app.patch(
        "/admin/v1/tenants/acme",
        Some(&admin),
        json!({"cors_origins": ["https://x.test/path"]}),
    )
    .await
    .problem(400, "validation_failed");
    app.patch("/admin/v1/tenants/nope", Some(&admin), json!({"name": "x"}))
        .await
        .problem(404, "tenant_not_found");
    let t = app
        .get("/admin/v1/tenants/acme", Some(&admin))
        .await
        .ok(200);
    assert_eq!(t["name"], "acme");
    assert_eq!(t["cors_origins"], json!([]));
}

async fn service_keys(b: Backend) {
    let mut app = TestApp::start(b).await;
    let admin = app.admin().await;
    app.create_tenant("acme").await;
    app.create_tenant("other").await;

    let created = app.create_key("acme", "backend").await;
    let key = created["key"].as_str().unwrap().to_string();
    let prefix = created["prefix"].as_str().unwrap().to_string();
    assert!(
        key.starts_with(&prefix) && prefix.starts_with("plk_"),
        "{created}"
    );

    let list = app
        .get("/admin/v1/tenants/acme/keys", Some(&admin))
        .await
        .ok(200);
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["prefix"], prefix.as_str());
    assert!(
        items[0].get("key").is_none() && !list.to_string().contains(&key),
        "the secret is never listed"
    );

    // The key authenticates as the tenant's service caller: it passes authentication
    // (me then says a *user* is required), while a wrong key is refused outright.
    app.get("/v1/t/acme/auth/me", Some(&key))
        .await
        .problem(401, "auth_required");
    app.get("/v1/t/acme/auth/me", Some(&format!("{key}x")))
        .await
        .problem(401, "invalid_token");
    app.get("/v1/t/other/auth/me", Some(&key))
        .await
        .problem(401, "invalid_token");

    let id = created["id"].as_str().unwrap();
    let revoked = app
        .delete(&format!("/admin/v1/tenants/acme/keys/{id}"), Some(&admin))
        .await
        .ok(200);
    assert!(revoked["revoked_at"].is_string());
    app.get("/v1/t/acme/auth/me", Some(&key))
        .await
        .problem(401, "invalid_token");
    app.delete("/admin/v1/tenants/acme/keys/nope", Some(&admin))
        .await
        .problem(404, "not_found");
    app.delete(&format!("/admin/v1/tenants/other/keys/{id}"), Some(&admin))
        .await
        .problem(404, "not_found");
    app.post(
        "/admin/v1/tenants/acme/keys",
        Some(&admin),
        json!({"name": ""}),
    )
    .await
    .problem(400, "validation_failed");
    app.post(
        "/admin/v1/tenants/nope/keys",
        Some(&admin),
        json!({"name": "k"}),
    )
    .await
    .problem(404, "tenant_not_found");
}

async fn user_administration(b: Backend) {
    let mut app = TestApp::start(b).await;
    let admin = app.admin().await;
    app.create_tenant("acme").await;
    let s = app.signup("acme", "mallory@acme.test").await;
    let base = format!("/admin/v1/tenants/acme/users/{}", s.user_id);

    let u = app.get(&base, Some(&admin)).await.ok(200);
    assert_eq!(u["email"], "mallory@acme.test");

    // Disabled: the live token stops working, login and refresh are refused.
    let u = app
        .post(&format!("{base}/disable"), Some(&admin), json!({}))
        .await
        .ok(200);
    assert_eq!(u["disabled"], true);
    app.get("/v1/t/acme/auth/me", Some(&s.access))
        .await
        .problem(401, "session_revoked");
    app.login("acme", "mallory@acme.test", PASSWORD)
        .await
        .problem(403, "user_disabled");
    let r = app
        .post(
            "/v1/t/acme/auth/refresh",
            None,
            json!({"refresh_token": s.refresh}),
        )
        .await;
    assert_eq!(r.status, 401, "{}", r.text);

    app.post(&format!("{base}/enable"), Some(&admin), json!({}))
        .await
        .ok(200);
    let s2 = Session::from_json(
        &app.login("acme", "mallory@acme.test", PASSWORD)
            .await
            .ok(200),
    );
    app.get("/v1/t/acme/auth/me", Some(&s2.access))
        .await
        .ok(200);

    let r = app
        .post(&format!("{base}/revoke-sessions"), Some(&admin), json!({}))
        .await
        .ok(200);
    assert_eq!(r["revoked_sessions"], 1);
    app.get("/v1/t/acme/auth/me", Some(&s2.access))
        .await
        .problem(401, "session_revoked");

    // Marked verified by an admin: once audited, again a no-op; an unknown user is 404.
    let u = app.get(&base, Some(&admin)).await.ok(200);
    assert_eq!(u["email_verified"], false);
    let u = app
        .post(&format!("{base}/verify"), Some(&admin), json!({}))
        .await
        .ok(200);
    assert_eq!(u["email_verified"], true);
    let s3 = Session::from_json(
        &app.login("acme", "mallory@acme.test", PASSWORD)
            .await
            .ok(200),
    );
    let me = app
        .get("/v1/t/acme/auth/me", Some(&s3.access))
        .await
        .ok(200);
    assert_eq!(me["email_verified"], true, "{me}");
    app.post(&format!("{base}/verify"), Some(&admin), json!({}))
        .await
        .ok(200);
    let audit = app
        .get("/admin/v1/audit?tenant=acme", Some(&admin))
        .await
        .ok(200);
    let verifies = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "user.verify")
        .count();
    assert_eq!(verifies, 1, "{audit}");
    app.post(
        "/admin/v1/tenants/acme/users/0190a000-0000-7000-8000-000000000000/verify",
        Some(&admin),
        json!({}),
    )
    .await
    .problem(404, "not_found");

    app.delete(&base, Some(&admin)).await.ok(204);
    app.get(&base, Some(&admin)).await.problem(404, "not_found");
    app.login("acme", "mallory@acme.test", PASSWORD)
        .await
        .problem(401, "invalid_credentials");
    app.delete(&base, Some(&admin))
        .await
        .problem(404, "not_found");
    app.post(&format!("{base}/disable"), Some(&admin), json!({}))
        .await
        .problem(404, "not_found");
    // The email is free again.
    app.signup("acme", "mallory@acme.test").await;
}

async fn user_listing_pages_and_searches(b: Backend) {
    let mut app = TestApp::start(b).await;
    let admin = app.admin().await;
    app.create_tenant("acme").await;
    for name in ["ann", "ben", "cat", "dov", "eli"] {
        app.signup("acme", &format!("{name}@acme.test")).await;
    }
    app.signup("acme", "odd_%name@acme.test").await;

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/admin/v1/tenants/acme/users?limit=2&cursor={c}"),
            None => "/admin/v1/tenants/acme/users?limit=2".into(),
        };
        let page = app.get(&path, Some(&admin)).await.ok(200);
        pages += 1;
        for u in page["items"].as_array().unwrap() {
            seen.push(u["email"].as_str().unwrap().to_string());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 6);
    assert_eq!(seen[0], "ann@acme.test", "creation order");

    let found = app
        .get("/admin/v1/tenants/acme/users?search=BEN", Some(&admin))
        .await
        .ok(200);
    let emails: Vec<&str> = found["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["email"].as_str().unwrap())
        .collect();
    assert_eq!(emails, ["ben@acme.test"]);
    // LIKE wildcards in the search are literal.
    let found = app
        .get("/admin/v1/tenants/acme/users?search=%25", Some(&admin))
        .await
        .ok(200);
    assert_eq!(found["items"].as_array().unwrap().len(), 1);
    let found = app
        .get("/admin/v1/tenants/acme/users?search=_", Some(&admin))
        .await
        .ok(200);
    assert_eq!(found["items"].as_array().unwrap().len(), 1);

    app.get("/admin/v1/tenants/acme/users?limit=0", Some(&admin))
        .await
        .problem(400, "validation_failed");
    app.get("/admin/v1/tenants/acme/users?limit=1001", Some(&admin))
        .await
        .problem(400, "validation_failed");
    app.get("/admin/v1/tenants/acme/users?limit=abc", Some(&admin))
        .await
        .problem(400, "invalid_query");
    app.get("/admin/v1/tenants/acme/users?cursor=!!!", Some(&admin))
        .await
        .problem(400, "invalid_cursor");
    app.get("/admin/v1/tenants/nope/users", Some(&admin))
        .await
        .problem(404, "tenant_not_found");
}

fn actions(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect()
}

async fn audit_log_records_admin_actions(b: Backend) {
    let mut app = TestApp::start(b).await;
    let admin = app.admin().await;
    app.create_tenant("acme").await;
    app.create_tenant("beta").await;
    app.patch(
        "/admin/v1/tenants/acme",
        Some(&admin),
        json!({"name": "Acme"}),
    )
    .await
    .ok(200);
    app.post("/admin/v1/tenants/acme/suspend", Some(&admin), json!({}))
        .await
        .ok(200);
    app.post("/admin/v1/tenants/acme/resume", Some(&admin), json!({}))
        .await
        .ok(200);
    let key = app.create_key("acme", "k").await;
    app.delete(
        &format!(
            "/admin/v1/tenants/acme/keys/{}",
            key["id"].as_str().unwrap()
        ),
        Some(&admin),
    )
    .await
    .ok(200);
    let s = app.signup("acme", "u@acme.test").await;
    app.post(
        &format!("/admin/v1/tenants/acme/users/{}/disable", s.user_id),
        Some(&admin),
        json!({}),
    )
    .await
    .ok(200);
    app.delete("/admin/v1/tenants/beta", Some(&admin))
        .await
        .ok(204);

    let all = app.get("/admin/v1/audit", Some(&admin)).await.ok(200);
    assert_eq!(
        actions(&all),
        [
            "tenant.delete",
            "user.disable",
            "key.revoke",
            "key.create",
            "tenant.resume",
            "tenant.suspend",
            "tenant.update",
            "tenant.create",
            "tenant.create",
            "admin.setup"
        ],
    );
    let first = &all["items"][0];
    assert_eq!(first["actor"], "admin:root@plinth.test");
    assert_eq!(first["tenant"], "beta");

    let acme = app
        .get("/admin/v1/audit?tenant=acme", Some(&admin))
        .await
        .ok(200);
    assert!(actions(&acme).iter().all(|a| a != "tenant.delete"));
    assert_eq!(actions(&acme).len(), 7);

    let page1 = app
        .get("/admin/v1/audit?limit=4", Some(&admin))
        .await
        .ok(200);
    let c = page1["next_cursor"].as_str().unwrap();
    let page2 = app
        .get(&format!("/admin/v1/audit?limit=4&cursor={c}"), Some(&admin))
        .await
        .ok(200);
    assert_eq!(
        actions(&page2),
        [
            "tenant.resume",
            "tenant.suspend",
            "tenant.update",
            "tenant.create"
        ]
    );
    app.get("/admin/v1/audit?cursor=zzz", Some(&admin))
        .await
        .problem(400, "invalid_cursor");
    app.get("/admin/v1/audit", None)
        .await
        .problem(401, "auth_required");
}
