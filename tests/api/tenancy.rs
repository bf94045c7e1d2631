//! Tenants never see each other.

use serde_json::json;

use crate::backend_tests;
use crate::support::*;

backend_tests!(tenants_are_isolated, unknown_tenant_is_404);

async fn tenants_are_isolated(b: Backend) {
    let mut app = TestApp::start(b).await;
    let admin = app.admin().await;
    app.create_tenant("alpha").await;
    app.create_tenant("bravo").await;

    // The same email in both tenants: two different accounts.
    let a = app.signup("alpha", "same@example.com").await;
    let b_ = app.signup("bravo", "same@example.com").await;
    assert_ne!(a.user_id, b_.user_id);
    app.signup("alpha", "only-alpha@example.com").await;

    // Each tenant's tokens are refused by the other.
    app.get("/v1/t/alpha/auth/me", Some(&a.access))
        .await
        .ok(200);
    app.get("/v1/t/bravo/auth/me", Some(&a.access))
        .await
        .problem(401, "invalid_token");
    app.get("/v1/t/alpha/auth/me", Some(&b_.access))
        .await
        .problem(401, "invalid_token");
    app.post(
        "/v1/t/bravo/auth/refresh",
        None,
        json!({"refresh_token": a.refresh}),
    )
    .await
    .problem(401, "invalid_refresh_token");
    app.post(
        "/v1/t/bravo/auth/logout",
        None,
        json!({"refresh_token": a.refresh}),
    )
    .await
    .problem(401, "invalid_refresh_token");
    // ...and the failed attempts did not touch alpha's session.
    app.post(
        "/v1/t/alpha/auth/refresh",
        None,
        json!({"refresh_token": a.refresh}),
    )
    .await
    .ok(200);

    // A password of one tenant does not open the other's account of the same email.
    let r = app
        .post(
            "/v1/t/bravo/auth/password",
            Some(&b_.access),
            json!({"current_password": PASSWORD, "new_password": "bravo-only-pass"}),
        )
        .await;
    r.ok(200);
    app.login("alpha", "same@example.com", PASSWORD)
        .await
        .ok(200);
    app.login("bravo", "same@example.com", PASSWORD)
        .await
        .problem(401, "invalid_credentials");

    // Admin listings of one never show the other's users.
    let alpha = app
        .get("/admin/v1/tenants/alpha/users", Some(&admin))
        .await
        .ok(200);
    let bravo = app
        .get("/admin/v1/tenants/bravo/users", Some(&admin))
        .await
        .ok(200);
    let ids = |v: &serde_json::Value| -> Vec<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(ids(&alpha).len(), 2);
    assert_eq!(ids(&bravo), vec![b_.user_id.clone()]);
    // A user id of one tenant is not found through the other.
    app.get(
        &format!("/admin/v1/tenants/bravo/users/{}", a.user_id),
        Some(&admin),
    )
    .await
    .problem(404, "not_found");
    app.post(
        &format!("/admin/v1/tenants/bravo/users/{}/disable", a.user_id),
        Some(&admin),
        json!({}),
    )
    .await
    .problem(404, "not_found");
    app.get("/v1/t/alpha/auth/me", Some(&a.access))
        .await
        .ok(200);
    // A cursor from one tenant's listing finds nothing of the other's.
    let page = app
        .get("/admin/v1/tenants/alpha/users?limit=1", Some(&admin))
        .await
        .ok(200);
    let c = page["next_cursor"].as_str().unwrap();
    let cross = app
        .get(
            &format!("/admin/v1/tenants/bravo/users?cursor={c}"),
            Some(&admin),
        )
        .await
        .ok(200);
    assert!(ids(&cross).iter().all(|id| id == &b_.user_id));

    // Service keys are bound to their tenant.
    let key = app.create_key("alpha", "k").await["key"]
        .as_str()
        .unwrap()
        .to_string();
    app.get("/v1/t/bravo/auth/me", Some(&key))
        .await
        .problem(401, "invalid_token");

    // Deleting one tenant leaves the other whole.
    app.delete("/admin/v1/tenants/alpha", Some(&admin))
        .await
        .ok(204);
    app.get("/v1/t/bravo/auth/me", Some(&b_.access))
        .await
        .ok(200);
    assert_eq!(app.user_count("bravo").await, 1);
}

async fn unknown_tenant_is_404(b: Backend) {
    let app = TestApp::start(b).await;
    app.get("/v1/t/nope/auth/me", None)
        .await
        .problem(404, "tenant_not_found");
    app.post(
        "/v1/t/nope/auth/signup",
        None,
        json!({"email": "a@b.co", "password": PASSWORD}),
    )
    .await
    .problem(404, "tenant_not_found");
    app.post(
        "/v1/t/nope/auth/login",
        None,
        json!({"email": "a@b.co", "password": PASSWORD}),
    )
    .await
    .problem(404, "tenant_not_found");
    // Hostile slugs are just unknown tenants.
    app.get("/v1/t/'%3B%20DROP%20TABLE%20tenants%3B--/auth/me", None)
        .await
        .problem(404, "tenant_not_found");
}
