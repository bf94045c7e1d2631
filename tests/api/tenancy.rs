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

mod documents {
    use serde_json::json;

    use crate::backend_tests;
    use crate::documents::{docs, put};
    use crate::rules::{NOTES_RULES, install_rules};
    use crate::support::*;

    backend_tests!(documents_never_cross_tenants);

    async fn documents_never_cross_tenants(b: Backend) {
        let mut app = TestApp::start(b).await;
        app.create_tenant("alpha").await;
        app.create_tenant("bravo").await;
        let ka = app.create_key("alpha", "k").await["key"]
            .as_str()
            .unwrap()
            .to_string();
        let kb = app.create_key("bravo", "k").await["key"]
            .as_str()
            .unwrap()
            .to_string();
        install_rules(&mut app, "alpha", NOTES_RULES).await.ok(200);
        install_rules(&mut app, "bravo", NOTES_RULES).await.ok(200);

        for i in 0..5 {
            put(
                &app,
                &ka,
                &format!("{}/same{i}", docs("alpha", "notes")),
                json!({"owner": "x", "public": true, "t": "alpha"}),
            )
            .await
            .ok(201);
        }
        put(
            &app,
            &kb,
            &format!("{}/same0", docs("bravo", "notes")),
            json!({"owner": "x", "public": true, "t": "bravo"}),
        )
        .await
        .ok(201);

        // The same collection and id in both tenants hold different documents.
        assert_eq!(
            app.get(&format!("{}/same0", docs("alpha", "notes")), None)
                .await
                .ok(200)["data"]["t"],
            "alpha"
        );
        assert_eq!(
            app.get(&format!("{}/same0", docs("bravo", "notes")), None)
                .await
                .ok(200)["data"]["t"],
            "bravo"
        );
        app.get(&format!("{}/same1", docs("bravo", "notes")), Some(&kb))
            .await
            .problem(404, "document_not_found");
        // A key of one tenant is refused by the other, on reads and writes.
        app.get(&format!("{}/same0", docs("bravo", "notes")), Some(&ka))
            .await
            .problem(401, "invalid_token");
        app.post(
            "/v1/t/bravo/batch",
            Some(&ka),
            json!({"writes": [{"op": "delete", "collection": "notes", "id": "same0"}]}),
        )
        .await
        .problem(401, "invalid_token");
        // Lists and batches stay inside their tenant.
        let list = app.get(&docs("bravo", "notes"), Some(&kb)).await.ok(200);
        assert_eq!(list["items"].as_array().unwrap().len(), 1);
        let r = app
            .post(
                "/v1/t/bravo/batch",
                Some(&kb),
                json!({"writes": [{"op": "delete", "collection": "notes", "id": "same3"}]}),
            )
            .await;
        r.problem(404, "document_not_found");
        assert_eq!(
            app.get(&docs("alpha", "notes"), Some(&ka)).await.ok(200)["items"]
                .as_array()
                .unwrap()
                .len(),
            5
        );
        // A cursor from alpha is refused by bravo.
        let page = app
            .get(&format!("{}?limit=2", docs("alpha", "notes")), Some(&ka))
            .await
            .ok(200);
        let c = page["next_cursor"].as_str().unwrap();
        app.get(
            &format!("{}?limit=2&cursor={c}", docs("bravo", "notes")),
            Some(&kb),
        )
        .await
        .problem(400, "invalid_cursor");
        // A user token of alpha means nothing to bravo.
        let u = app.signup("alpha", "u@alpha.test").await;
        app.get(&docs("bravo", "notes"), Some(&u.access))
            .await
            .problem(401, "invalid_token");
    }
}
