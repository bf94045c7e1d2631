//! Admins' read tokens end with what they were made through: the admin (removed,
//! demoted or moved off the tenant, new password), the console session (signed out) or
//! the admin API key (revoked), at once and, on PostgreSQL, on every node. Each minting
//! is in the audit log.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::admin_roles::add_admin;
use crate::backend_tests;
use crate::documents::{docs, put, tenant_with_key};
use crate::support::*;

backend_tests!(
    read_tokens_end_with_their_admin,
    read_tokens_end_with_the_console_session,
    read_tokens_end_with_their_api_key,
    other_nodes_refuse_a_removed_admins_read_token,
);

async fn read_token(app: &TestApp, credential: &str, tenant: &str) -> String {
    let body = app
        .post(
            &format!("/admin/v1/tenants/{tenant}/read-token"),
            Some(credential),
            json!({}),
        )
        .await
        .ok(200);
    body["token"].as_str().unwrap().to_string()
}

/// A tenant `acme` holding one document, and the owner's token.
async fn acme(app: &mut TestApp) -> String {
    let owner = app.admin().await;
    let key = tenant_with_key(app, "acme").await;
    put(
        app,
        &key,
        &format!("{}/n1", docs("acme", "notes")),
        json!({"i": 1}),
    )
    .await
    .ok(201);
    owner
}

async fn reads(app: &TestApp, token: &str) -> Reply {
    app.get(&format!("{}/n1", docs("acme", "notes")), Some(token))
        .await
}

async fn audit_actions(app: &TestApp, owner: &str) -> Vec<(String, String)> {
    let page = app
        .get("/admin/v1/audit?tenant=acme&limit=1000", Some(owner))
        .await
        .ok(200);
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_string(),
                e["actor"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

async fn read_tokens_end_with_their_admin(b: Backend) {
    let mut app = TestApp::start(b).await;
    let owner = acme(&mut app).await;
    app.create_tenant("other").await;

    // Removed: 401, like a user's ended session.
    let (viewer_id, viewer) = add_admin(&app, &owner, "v@x.test", "viewer", &[]).await;
    let t = read_token(&app, &viewer, "acme").await;
    reads(&app, &t).await.ok(200);
    app.delete(&format!("/admin/v1/admins/{viewer_id}"), Some(&owner))
        .await
        .ok(204);
    reads(&app, &t).await.problem(401, "session_revoked");

    // A tenant admin moved off the tenant: 404, as the admin routes answer them.
    let (ta_id, ta) = add_admin(&app, &owner, "ta@x.test", "tenant_admin", &["acme"]).await;
    let t = read_token(&app, &ta, "acme").await;
    reads(&app, &t).await.ok(200);
    app.patch(
        &format!("/admin/v1/admins/{ta_id}"),
        Some(&owner),
        json!({"tenants": ["other"]}),
    )
    .await
    .ok(200);
    reads(&app, &t).await.problem(404, "tenant_not_found");
    // Assigned again, the same token reads again: it follows the role as it is now.
    app.patch(
        &format!("/admin/v1/admins/{ta_id}"),
        Some(&owner),
        json!({"tenants": ["acme", "other"]}),
    )
    .await
    .ok(200);
    reads(&app, &t).await.ok(200);

    // An admin demoted to a tenant admin of another tenant: 404 too.
    let (admin_id, admin) = add_admin(&app, &owner, "a@x.test", "admin", &[]).await;
    let t = read_token(&app, &admin, "acme").await;
    reads(&app, &t).await.ok(200);
    app.patch(
        &format!("/admin/v1/admins/{admin_id}"),
        Some(&owner),
        json!({"role": "tenant_admin", "tenants": ["other"]}),
    )
    .await
    .ok(200);
    reads(&app, &t).await.problem(404, "tenant_not_found");

    // A new password ends the tokens of the old one, read tokens included.
    let (_, second) = add_admin(&app, &owner, "s@x.test", "admin", &[]).await;
    let t = read_token(&app, &second, "acme").await;
    reads(&app, &t).await.ok(200);
    app.post(
        "/admin/v1/auth/password",
        Some(&second),
        json!({"current_password": PASSWORD, "new_password": "another long passphrase"}),
    )
    .await
    .ok(204);
    reads(&app, &t).await.problem(401, "session_revoked");

    // The owner's own token keeps reading; every minting was audited, by whom.
    let t = read_token(&app, &owner, "acme").await;
    reads(&app, &t).await.ok(200);
    let actions = audit_actions(&app, &owner).await;
    let minted: Vec<&str> = actions
        .iter()
        .filter(|(action, _)| action == "read_token.create")
        .map(|(_, actor)| actor.as_str())
        .collect();
    for who in [
        "admin:v@x.test",
        "admin:ta@x.test",
        "admin:a@x.test",
        "admin:s@x.test",
        "admin:root@plinth.test",
    ] {
        assert!(minted.contains(&who), "{who} in {actions:?}");
    }
    assert_eq!(minted.len(), 5, "{actions:?}");
}

struct Console {
    cookie: String,
    csrf: String,
}

async fn sign_in(app: &TestApp, email: &str) -> Console {
    let r = app
        .post(
            "/admin/v1/auth/session",
            None,
            json!({"email": email, "password": PASSWORD}),
        )
        .await;
    let body = r.ok(200);
    let set_cookie = r.headers["set-cookie"].to_str().unwrap();
    Console {
        cookie: set_cookie.split(';').next().unwrap().to_string(),
        csrf: body["csrf_token"].as_str().unwrap().to_string(),
    }
}

async fn with_cookie(app: &TestApp, method: Method, path: &str, c: &Console) -> Reply {
    app.send(
        app.req(method, path, None)
            .header("cookie", &c.cookie)
            .header("x-csrf-token", &c.csrf)
            .json(&json!({})),
    )
    .await
}

async fn mint_with(app: &TestApp, c: &Console) -> String {
    let r = with_cookie(app, Method::POST, "/admin/v1/tenants/acme/read-token", c).await;
    r.ok(200)["token"].as_str().unwrap().to_string()
}

async fn read_tokens_end_with_the_console_session(b: Backend) {
    let mut app = TestApp::start(b).await;
    let owner = acme(&mut app).await;
    add_admin(&app, &owner, "v@x.test", "viewer", &[]).await;
    let first = sign_in(&app, "v@x.test").await;
    let second = sign_in(&app, "v@x.test").await;
    let t1 = mint_with(&app, &first).await;
    let t2 = mint_with(&app, &second).await;
    reads(&app, &t1).await.ok(200);
    reads(&app, &t2).await.ok(200);
    let mut ws1 = Client::connect(&app, "acme", None).await;
    ws1.send(json!({"type": "auth", "token": t1})).await;
    ws1.until("authenticated").await;
    let mut ws2 = Client::connect(&app, "acme", None).await;
    ws2.send(json!({"type": "auth", "token": t2})).await;
    ws2.until("authenticated").await;

    // Signing out ends that session's read tokens, not those of another session; a
    // socket that authenticated with one is closed.
    with_cookie(&app, Method::DELETE, "/admin/v1/auth/session", &first)
        .await
        .ok(204);
    reads(&app, &t1).await.problem(401, "session_revoked");
    reads(&app, &t2).await.ok(200);
    assert_eq!(ws1.until("__closed").await["code"], 1008);
    ws2.subscribe(json!({"type": "subscribe", "id": "n", "collection": "notes"}))
        .await;
    // Nor does a bad token pass for a revoked one: the signature is checked first.
    let at = t2.len() - 10;
    let swap = if &t2[at..=at] == "A" { "B" } else { "A" };
    let forged = format!("{}{swap}{}", &t2[..at], &t2[at + 1..]);
    reads(&app, &forged).await.problem(401, "invalid_token");

    let actions = audit_actions(&app, &owner).await;
    let by_viewer = actions
        .iter()
        .filter(|(a, who)| a == "read_token.create" && who == "admin:v@x.test")
        .count();
    assert_eq!(by_viewer, 2, "{actions:?}");
}

async fn read_tokens_end_with_their_api_key(b: Backend) {
    let mut app = TestApp::start(b).await;
    let owner = acme(&mut app).await;
    app.create_tenant("other").await;
    let make = |body: Value| app.post("/admin/v1/api-keys", Some(&owner), body);
    let key = make(json!({"name": "ci", "role": "viewer"})).await.ok(201);
    let scoped = make(json!({"name": "ta", "role": "tenant_admin", "tenants": ["acme"]}))
        .await
        .ok(201);
    let t = read_token(&app, key["key"].as_str().unwrap(), "acme").await;
    let ts = read_token(&app, scoped["key"].as_str().unwrap(), "acme").await;
    reads(&app, &t).await.ok(200);
    reads(&app, &ts).await.ok(200);
    // A key scoped to acme gets none for another tenant.
    app.post(
        "/admin/v1/tenants/other/read-token",
        Some(scoped["key"].as_str().unwrap()),
        json!({}),
    )
    .await
    .problem(404, "tenant_not_found");

    app.delete(
        &format!("/admin/v1/api-keys/{}", key["id"].as_str().unwrap()),
        Some(&owner),
    )
    .await
    .ok(200);
    reads(&app, &t).await.problem(401, "session_revoked");
    reads(&app, &ts).await.ok(200);
    let prefix = scoped["prefix"].as_str().unwrap();
    let actions = audit_actions(&app, &owner).await;
    assert!(
        actions
            .iter()
            .any(|(a, who)| a == "read_token.create" && *who == format!("key:{prefix}")),
        "{actions:?}"
    );
}

/// On PostgreSQL another node, whose cached checks would trust the token for an hour,
/// hears of the removal through the announcement. (SQLite data is served by one process.)
async fn other_nodes_refuse_a_removed_admins_read_token(b: Backend) {
    let mut app = TestApp::start(b).await;
    let owner = acme(&mut app).await;
    let (id, viewer) = add_admin(&app, &owner, "v@x.test", "viewer", &[]).await;
    let t = read_token(&app, &viewer, "acme").await;
    let node_b = match b {
        Backend::Postgres => Some(
            TestApp::start_on(
                b,
                Storage {
                    location: app.storage.location.clone(),
                    _dir: None,
                },
                |c| c.auth_cache_ttl = Duration::from_secs(3600),
            )
            .await,
        ),
        Backend::Sqlite => None,
    };
    let nodes: Vec<&TestApp> = std::iter::once(&app).chain(node_b.as_ref()).collect();
    for node in &nodes {
        reads(node, &t).await.ok(200);
    }
    app.delete(&format!("/admin/v1/admins/{id}"), Some(&owner))
        .await
        .ok(204);
    for node in &nodes {
        eventually(Duration::from_secs(10), "the read token refused", || {
            let (node, t) = (*node, &t);
            async move { (reads(node, t).await.status.as_u16() == 401).then_some(()) }
        })
        .await;
        reads(node, &t).await.problem(401, "session_revoked");
    }
    if let Some(node) = node_b {
        node.stop().await;
    }
}
