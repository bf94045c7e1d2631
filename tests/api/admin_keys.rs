//! Admin API keys: shown once, used as `Authorization: Bearer`, last-used time, revoked
//! and expired keys refused, and never wider than their maker.

use std::time::Duration;

use serde_json::{Value, json};

use crate::admin_roles::add_admin;
use crate::backend_tests;
use crate::support::*;

backend_tests!(
    api_keys_are_shown_once_and_work_as_bearer,
    revoked_and_expired_keys_are_refused,
    a_key_is_never_wider_than_its_maker,
    non_owners_see_and_revoke_only_their_keys,
    api_key_input_is_validated,
);

async fn make_key(app: &TestApp, token: &str, body: Value) -> Value {
    app.post("/admin/v1/api-keys", Some(token), body)
        .await
        .ok(201)
}

fn rfc3339_in(d: Duration) -> String {
    (chrono::Utc::now() + chrono::Duration::from_std(d).unwrap())
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

async fn api_keys_are_shown_once_and_work_as_bearer(b: Backend) {
    let mut app = TestApp::start(b).await;
    let owner = app.admin().await;
    let created = make_key(&app, &owner, json!({"name": "ci", "role": "admin"})).await;
    let key = created["key"].as_str().unwrap().to_string();
    let prefix = created["prefix"].as_str().unwrap();
    assert!(
        key.starts_with(prefix) && prefix.starts_with("pak_"),
        "{created}"
    );
    assert!(key.len() >= 50, "256 random bits: {key}");
    assert_eq!(created["role"], "admin");
    assert_eq!(created["tenants"], json!([]));
    assert_eq!(created["expires_at"], Value::Null);

    let list = app.get("/admin/v1/api-keys", Some(&owner)).await.ok(200);
    let listed = &list["items"][0];
    assert_eq!(listed["id"], created["id"]);
    assert_eq!(listed["prefix"], created["prefix"]);
    assert_eq!(listed["last_used_at"], Value::Null);
    assert!(
        !list.to_string().contains(&key[prefix.len() + 1..]),
        "never shown again"
    );
    assert!(listed.get("key").is_none() && listed.get("key_hash").is_none());

    // A bearer credential like a token, audited under the key's prefix.
    app.post("/admin/v1/tenants", Some(&key), json!({"slug": "acme"}))
        .await
        .ok(201);
    let who = app.get("/admin/v1/auth/session", Some(&key)).await.ok(200);
    assert_eq!(
        (who["via"].clone(), who["admin"]["role"].clone()),
        (json!("api_key"), json!("admin"))
    );
    let audit = app
        .get("/admin/v1/audit?tenant=acme", Some(&owner))
        .await
        .ok(200);
    assert_eq!(audit["items"][0]["actor"], format!("key:{prefix}"));
    let list = app.get("/admin/v1/api-keys", Some(&owner)).await.ok(200);
    assert!(list["items"][0]["last_used_at"].is_string(), "{list}");
    // The scheme is case-insensitive, as for tokens.
    app.send(
        app.req(reqwest::Method::GET, "/admin/v1/tenants", None)
            .header("authorization", format!("bearer {key}")),
    )
    .await
    .ok(200);
    // An admin key is no tenant credential.
    let r = app.get("/v1/t/acme/auth/me", Some(&key)).await;
    assert_eq!(r.status.as_u16(), 401, "{}", r.text);
}

async fn revoked_and_expired_keys_are_refused(b: Backend) {
    let mut app = TestApp::start(b).await;
    let owner = app.admin().await;
    let k = make_key(&app, &owner, json!({"name": "ci", "role": "viewer"})).await;
    let key = k["key"].as_str().unwrap();
    app.get("/admin/v1/tenants", Some(key)).await.ok(200);
    let revoked = app
        .delete(
            &format!("/admin/v1/api-keys/{}", k["id"].as_str().unwrap()),
            Some(&owner),
        )
        .await
        .ok(200);
    assert!(revoked["revoked_at"].is_string());
    app.get("/admin/v1/tenants", Some(key))
        .await
        .problem(401, "invalid_token");
    // A key with a wrong secret but a real prefix is refused the same way.
    let real = make_key(&app, &owner, json!({"name": "x", "role": "viewer"})).await;
    let forged = format!("{}_{}", real["prefix"].as_str().unwrap(), "A".repeat(43));
    app.get("/admin/v1/tenants", Some(&forged))
        .await
        .problem(401, "invalid_token");
    app.delete("/admin/v1/api-keys/no-such-key", Some(&owner))
        .await
        .problem(404, "not_found");

    let short = make_key(
        &app,
        &owner,
        json!({"name": "short", "role": "viewer", "expires_at": rfc3339_in(Duration::from_millis(1500))}),
    )
    .await;
    let short_key = short["key"].as_str().unwrap();
    app.get("/admin/v1/tenants", Some(short_key)).await.ok(200);
    tokio::time::sleep(Duration::from_millis(1700)).await;
    app.get("/admin/v1/tenants", Some(short_key))
        .await
        .problem(401, "token_expired");
}

async fn a_key_is_never_wider_than_its_maker(b: Backend) {
    let mut app = TestApp::start(b).await;
    let owner = app.admin().await;
    app.create_tenant("mine").await;
    app.create_tenant("other").await;
    // An owner's key makes no owner: no owner admin, no owner key.
    let owner_key = make_key(&app, &owner, json!({"name": "root-ci", "role": "owner"})).await;
    let owner_key = owner_key["key"].as_str().unwrap();
    app.post(
        "/admin/v1/admins",
        Some(owner_key),
        json!({"email": "o2@x.test", "password": PASSWORD, "role": "owner"}),
    )
    .await
    .problem(403, "insufficient_role");
    app.post(
        "/admin/v1/api-keys",
        Some(owner_key),
        json!({"name": "k", "role": "owner"}),
    )
    .await
    .problem(403, "insufficient_role");
    // It still does what owners do below that.
    app.post(
        "/admin/v1/admins",
        Some(owner_key),
        json!({"email": "a2@x.test", "password": PASSWORD, "role": "admin"}),
    )
    .await
    .ok(201);

    // An admin's key: no owners, no admins management.
    let admin_key = make_key(&app, &owner, json!({"name": "a", "role": "admin"})).await;
    let admin_key = admin_key["key"].as_str().unwrap();
    app.post(
        "/admin/v1/api-keys",
        Some(admin_key),
        json!({"name": "k", "role": "owner"}),
    )
    .await
    .problem(403, "insufficient_role");
    make_key(&app, admin_key, json!({"name": "k", "role": "viewer"})).await;

    // A tenant admin's key: tenant-admin keys on its own tenants only.
    let ta_key = make_key(
        &app,
        &owner,
        json!({"name": "t", "role": "tenant_admin", "tenants": ["mine"]}),
    )
    .await;
    assert_eq!(ta_key["tenants"], json!(["mine"]));
    let ta_key = ta_key["key"].as_str().unwrap();
    for role in ["owner", "admin", "viewer"] {
        app.post(
            "/admin/v1/api-keys",
            Some(ta_key),
            json!({"name": "k", "role": role}),
        )
        .await
        .problem(403, "insufficient_role");
    }
    app.post(
        "/admin/v1/api-keys",
        Some(ta_key),
        json!({"name": "k", "role": "tenant_admin", "tenants": ["mine", "other"]}),
    )
    .await
    .problem(400, "validation_failed");
    let narrow = make_key(
        &app,
        ta_key,
        json!({"name": "k", "role": "tenant_admin", "tenants": ["mine"]}),
    )
    .await;
    let narrow = narrow["key"].as_str().unwrap();
    app.get("/admin/v1/tenants/other", Some(narrow))
        .await
        .problem(404, "tenant_not_found");
    app.get("/admin/v1/tenants/mine", Some(narrow))
        .await
        .ok(200);

    // A key made by an expiring key expires no later.
    let expiring = make_key(
        &app,
        &owner,
        json!({"name": "e", "role": "admin", "expires_at": rfc3339_in(Duration::from_secs(3600))}),
    )
    .await;
    let inherited = make_key(
        &app,
        expiring["key"].as_str().unwrap(),
        json!({"name": "c", "role": "viewer"}),
    )
    .await;
    assert_eq!(inherited["expires_at"], expiring["expires_at"]);
    app.post(
        "/admin/v1/api-keys",
        Some(expiring["key"].as_str().unwrap()),
        json!({"name": "c", "role": "viewer", "expires_at": rfc3339_in(Duration::from_secs(7200))}),
    )
    .await
    .problem(400, "validation_failed");
}

async fn non_owners_see_and_revoke_only_their_keys(b: Backend) {
    let mut app = TestApp::start(b).await;
    let owner = app.admin().await;
    let (_, admin) = add_admin(&app, &owner, "a@x.test", "admin", &[]).await;
    let owners_key = make_key(&app, &owner, json!({"name": "owner's", "role": "viewer"})).await;
    let mine = make_key(&app, &admin, json!({"name": "admin's", "role": "viewer"})).await;
    let list = app.get("/admin/v1/api-keys", Some(&admin)).await.ok(200);
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["admin's"]);
    app.delete(
        &format!("/admin/v1/api-keys/{}", owners_key["id"].as_str().unwrap()),
        Some(&admin),
    )
    .await
    .problem(404, "not_found");
    app.delete(
        &format!("/admin/v1/api-keys/{}", mine["id"].as_str().unwrap()),
        Some(&admin),
    )
    .await
    .ok(200);
    let all = app.get("/admin/v1/api-keys", Some(&owner)).await.ok(200);
    assert_eq!(
        all["items"].as_array().unwrap().len(),
        2,
        "owners see every key"
    );
    let audit = app.get("/admin/v1/audit", Some(&owner)).await.ok(200);
    assert_eq!(audit["items"][0]["action"], "api_key.revoke");
    assert_eq!(audit["items"][0]["actor"], "admin:a@x.test");
}

async fn api_key_input_is_validated(b: Backend) {
    let mut app = TestApp::start(b).await;
    let owner = app.admin().await;
    let bad = |body: Value| app.post("/admin/v1/api-keys", Some(&owner), body);
    bad(json!({"name": "", "role": "admin"}))
        .await
        .problem(400, "validation_failed");
    bad(json!({"name": "x".repeat(101), "role": "admin"}))
        .await
        .problem(400, "validation_failed");
    bad(json!({"name": "k", "role": "god"}))
        .await
        .problem(400, "invalid_body");
    bad(json!({"name": "k", "role": "admin", "expires_at": "tomorrow"}))
        .await
        .problem(400, "validation_failed");
    bad(json!({"name": "k", "role": "admin", "expires_at": "2001-01-01T00:00:00Z"}))
        .await
        .problem(400, "validation_failed");
    bad(json!({"name": "k", "role": "tenant_admin", "tenants": ["nope"]}))
        .await
        .problem(400, "validation_failed");
    let list = app.get("/admin/v1/api-keys", Some(&owner)).await.ok(200);
    assert_eq!(list["items"], json!([]));
    for malformed in ["pak_", "pak_0123456789", "pak_xyz_abc", "pak_0123456789_"] {
        app.get("/admin/v1/tenants", Some(malformed))
            .await
            .problem(401, "invalid_token");
    }
}
