//! Admin roles: the policy every admin route applies (checked over every route of the
//! OpenAPI document, so a new route cannot skip it), tenant admins' isolation, and
//! managing admins (owners only, one owner always left).

use reqwest::Method;
use serde_json::{Value, json};

use crate::backend_tests;
use crate::support::*;

backend_tests!(
    every_admin_route_applies_the_role_policy,
    a_tenant_admin_sees_nothing_of_other_tenants,
    a_viewer_reads_but_changes_nothing,
    owners_manage_admins,
    the_last_owner_cannot_be_removed_or_demoted,
    role_changes_and_removal_apply_at_once,
    admin_input_is_validated,
    admins_from_before_roles_are_owners,
);

/// Adds an admin through the API (as `owner`) and signs them in: their token.
pub async fn add_admin(
    app: &TestApp,
    owner: &str,
    email: &str,
    role: &str,
    tenants: &[&str],
) -> (String, String) {
    let r = app
        .post(
            "/admin/v1/admins",
            Some(owner),
            json!({"email": email, "password": PASSWORD, "role": role, "tenants": tenants}),
        )
        .await
        .ok(201);
    let id = r["id"].as_str().unwrap().to_string();
    let token = app
        .post(
            "/admin/v1/auth/login",
            None,
            json!({"email": email, "password": PASSWORD}),
        )
        .await
        .ok(200)["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    (id, token)
}

async fn send(app: &TestApp, method: &str, path: &str, token: Option<&str>) -> Reply {
    let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
    let req = app.req(m.clone(), path, token);
    let req = if m == Method::GET {
        req
    } else {
        req.json(&json!({}))
    };
    app.send(req).await
}

/// Every operation under /admin/v1 in the served OpenAPI document: (method, pattern).
async fn admin_operations(app: &TestApp) -> Vec<(String, String)> {
    let doc = app.get("/openapi.json", None).await.ok(200);
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        if !path.starts_with("/admin/v1/") {
            continue;
        }
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_some() {
                ops.push((method.to_string(), path.clone()));
            }
        }
    }
    ops
}

fn concrete(pattern: &str, tenant: &str) -> String {
    pattern
        .replace("{tenant}", tenant)
        .replace("{id}", "0190a000-0000-7000-8000-000000000000")
        .replace("{name}", "SOME_SECRET")
        .replace("{version}", "1")
        .replace("{collection}", "notes")
}

/// Routes open to anyone (they check a setup token or a password).
const PUBLIC: &[(&str, &str)] = &[
    ("post", "/admin/v1/setup"),
    ("post", "/admin/v1/auth/login"),
    ("post", "/admin/v1/auth/session"),
    ("post", "/admin/v1/auth/invite"),
];
/// POSTs that change nothing (a rule set checked or tested, a read token): any role
/// that sees the tenant, a viewer included.
const READS_BY_POST: &[(&str, &str)] = &[
    ("post", "/admin/v1/tenants/{tenant}/rules/validate"),
    ("post", "/admin/v1/tenants/{tenant}/rules/test"),
    ("post", "/admin/v1/tenants/{tenant}/read-token"),
];
/// A tenant's export and import (password hashes, secrets): owners and admins only,
/// reads included.
const TRANSFER: &[(&str, &str)] = &[
    ("get", "/admin/v1/tenants/{tenant}/export"),
    ("post", "/admin/v1/tenants/{tenant}/import"),
];
/// The caller's own session and password: any role.
const SELF_SERVICE: &[(&str, &str)] = &[
    ("get", "/admin/v1/auth/session"),
    ("delete", "/admin/v1/auth/session"),
    ("post", "/admin/v1/auth/password"),
];

async fn every_admin_route_applies_the_role_policy(b: Backend) {
    let mut app = TestApp::start(b).await;
    let owner = app.admin().await;
    app.create_tenant("mine").await;
    app.create_tenant("other").await;
    let (_, viewer) = add_admin(&app, &owner, "viewer@x.test", "viewer", &[]).await;
    let (_, ta) = add_admin(&app, &owner, "ta@x.test", "tenant_admin", &["mine"]).await;
    let (_, admin) = add_admin(&app, &owner, "admin@x.test", "admin", &[]).await;

    let ops = admin_operations(&app).await;
    assert!(ops.len() >= 35, "admin operations found: {ops:?}");
    for (method, pattern) in &ops {
        let op = (method.as_str(), pattern.as_str());
        if PUBLIC.contains(&op) {
            continue;
        }
        let what = format!("{method} {pattern}");
        let other = concrete(pattern, "other");
        let mine = concrete(pattern, "mine");
        let write = method != "get";

        // No credential: refused before anything else.
        let r = send(&app, method, &other, None).await;
        assert_eq!(
            r.status.as_u16(),
            401,
            "{what} without a credential: {}",
            r.text
        );
        let r = send(&app, method, &other, Some("pak_0123456789_nope")).await;
        assert_eq!(
            r.status.as_u16(),
            401,
            "{what} with an unknown key: {}",
            r.text
        );

        // A tenant admin: another tenant's routes do not exist, whatever the method.
        let r = send(&app, method, &other, Some(&ta)).await;
        if pattern.contains("{tenant}") {
            assert_eq!(
                (r.status.as_u16(), r.json()["code"].clone()),
                (404, json!("tenant_not_found")),
                "{what} as a tenant admin on another tenant: {}",
                r.text
            );
        } else if SELF_SERVICE.contains(&op) || pattern.starts_with("/admin/v1/api-keys") {
            assert_ne!(
                r.status.as_u16(),
                403,
                "{what} as a tenant admin: {}",
                r.text
            );
        } else if write || pattern.starts_with("/admin/v1/admins") {
            r.problem(403, "insufficient_role");
        }

        // A viewer changes nothing, and never sees the admins.
        if READS_BY_POST.contains(&op) {
            let r = send(&app, method, &other, Some(&viewer)).await;
            assert!(
                ![401, 403].contains(&r.status.as_u16()),
                "{what} as a viewer: {}",
                r.text
            );
        } else if !SELF_SERVICE.contains(&op) {
            let r = send(&app, method, &other, Some(&viewer)).await;
            if write || pattern.starts_with("/admin/v1/admins") || TRANSFER.contains(&op) {
                r.problem(403, "insufficient_role");
            } else {
                assert!(
                    r.status.is_success()
                        || (r.status.as_u16() == 404 && r.json()["code"] != "tenant_not_found"),
                    "{what} as a viewer: {}",
                    r.text
                );
            }
        }

        // Admins (not owners) never manage admins; reads elsewhere succeed.
        if pattern.starts_with("/admin/v1/admins") {
            send(&app, method, &other, Some(&admin))
                .await
                .problem(403, "insufficient_role");
        } else if !write {
            let r = send(&app, method, &other, Some(&admin)).await;
            assert!(
                r.status.is_success() || r.status.as_u16() == 404,
                "{what} as an admin: {}",
                r.text
            );
            // And a tenant admin reads their own tenant (but does not export it).
            let r = send(&app, method, &mine, Some(&ta)).await;
            if TRANSFER.contains(&op) {
                r.problem(403, "insufficient_role");
            } else if pattern.contains("{tenant}") {
                assert!(
                    r.status.is_success()
                        || (r.status.as_u16() == 404 && r.json()["code"] != "tenant_not_found"),
                    "{what} as a tenant admin on their tenant: {}",
                    r.text
                );
            }
        }
    }
    // Nothing above changed anything.
    let tenants = app.get("/admin/v1/tenants", Some(&owner)).await.ok(200);
    assert_eq!(tenants["items"].as_array().unwrap().len(), 2);
}

fn slugs(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["slug"].as_str().unwrap().to_string())
        .collect()
}

async fn a_tenant_admin_sees_nothing_of_other_tenants(b: Backend) {
    let mut app = TestApp::start(b).await;
    let owner = app.admin().await;
    app.create_tenant("mine").await;
    app.create_tenant("other").await;
    app.create_key("other", "their key").await;
    let (_, ta) = add_admin(&app, &owner, "ta@x.test", "tenant_admin", &["mine"]).await;

    let list = app.get("/admin/v1/tenants", Some(&ta)).await.ok(200);
    assert_eq!(slugs(&list), ["mine"]);
    let absent = app.get("/admin/v1/tenants/nope", Some(&owner)).await;
    let hidden = app.get("/admin/v1/tenants/other", Some(&ta)).await;
    let body = hidden.problem(404, "tenant_not_found");
    assert_eq!(
        body["detail"],
        absent.json()["detail"],
        "as if it did not exist"
    );
    app.get("/admin/v1/tenants/other/usage", Some(&ta))
        .await
        .problem(404, "tenant_not_found");

    // Inside their tenant they work.
    app.post(
        "/admin/v1/tenants/mine/keys",
        Some(&ta),
        json!({"name": "ci"}),
    )
    .await
    .ok(201);
    app.patch("/admin/v1/tenants/mine", Some(&ta), json!({"name": "Mine"}))
        .await
        .ok(200);
    app.get("/admin/v1/tenants/mine/usage", Some(&ta))
        .await
        .ok(200);
    // Platform changes are not theirs.
    app.post("/admin/v1/tenants", Some(&ta), json!({"slug": "third"}))
        .await
        .problem(403, "insufficient_role");
    app.delete("/admin/v1/tenants/mine", Some(&ta))
        .await
        .problem(403, "insufficient_role");

    // The audit log: their tenants' entries only, no platform-wide ones.
    let audit = app.get("/admin/v1/audit", Some(&ta)).await.ok(200);
    let entries = audit["items"].as_array().unwrap();
    assert!(!entries.is_empty());
    assert!(entries.iter().all(|e| e["tenant"] == "mine"), "{audit:#}");
    let theirs = app
        .get("/admin/v1/audit?tenant=other", Some(&ta))
        .await
        .ok(200);
    assert_eq!(theirs["items"], json!([]));
    let all = app.get("/admin/v1/audit", Some(&owner)).await.ok(200);
    assert!(all["items"].as_array().unwrap().len() > entries.len());

    // A newly assigned tenant appears at once; an unassigned one disappears.
    let ta_id = app.get("/admin/v1/admins", Some(&owner)).await.ok(200)["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["email"] == "ta@x.test")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.patch(
        &format!("/admin/v1/admins/{ta_id}"),
        Some(&owner),
        json!({"tenants": ["other"]}),
    )
    .await
    .ok(200);
    let list = app.get("/admin/v1/tenants", Some(&ta)).await.ok(200);
    assert_eq!(slugs(&list), ["other"]);
    app.get("/admin/v1/tenants/mine", Some(&ta))
        .await
        .problem(404, "tenant_not_found");
}

async fn a_viewer_reads_but_changes_nothing(b: Backend) {
    let mut app = TestApp::start(b).await;
    let owner = app.admin().await;
    app.create_tenant("acme").await;
    app.send(
        app.req(
            Method::PUT,
            "/admin/v1/tenants/acme/secrets/API_KEY",
            Some(&owner),
        )
        .json(&json!({"value": "s3cret"})),
    )
    .await
    .ok(200);
    let (_, viewer) = add_admin(&app, &owner, "v@x.test", "viewer", &[]).await;

    app.get("/admin/v1/tenants", Some(&viewer)).await.ok(200);
    let secrets = app
        .get("/admin/v1/tenants/acme/secrets", Some(&viewer))
        .await
        .ok(200);
    assert_eq!(secrets["items"][0]["name"], "API_KEY");
    assert!(
        !secrets.to_string().contains("s3cret"),
        "values are never readable"
    );
    app.post("/admin/v1/tenants", Some(&viewer), json!({"slug": "nope"}))
        .await
        .problem(403, "insufficient_role");
    app.post(
        "/admin/v1/api-keys",
        Some(&viewer),
        json!({"name": "k", "role": "viewer"}),
    )
    .await
    .problem(403, "insufficient_role");
    // Their own session is theirs to end.
    let r = app.delete("/admin/v1/auth/session", Some(&viewer)).await;
    r.ok(204);
}

async fn owners_manage_admins(b: Backend) {
    let mut app = TestApp::start(b).await;
    let owner = app.admin().await;
    app.create_tenant("acme").await;
    let r = app
        .post(
            "/admin/v1/admins",
            Some(&owner),
            json!({"email": "TA@X.test", "password": PASSWORD, "role": "tenant_admin",
                   "tenants": ["acme"]}),
        )
        .await
        .ok(201);
    assert_eq!(r["email"], "ta@x.test");
    assert_eq!(r["role"], "tenant_admin");
    assert_eq!(r["tenants"], json!(["acme"]));
    assert!(r.get("password_hash").is_none() && r.get("password").is_none());
    let id = r["id"].as_str().unwrap().to_string();
    // Tenants matter only for tenant admins.
    let a = app
        .post(
            "/admin/v1/admins",
            Some(&owner),
            json!({"email": "a@x.test", "password": PASSWORD, "role": "admin", "tenants": ["acme"]}),
        )
        .await
        .ok(201);
    assert_eq!(a["tenants"], json!([]));

    let list = app.get("/admin/v1/admins", Some(&owner)).await.ok(200);
    let roles: Vec<(String, String)> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["email"].as_str().unwrap().to_string(),
                a["role"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        roles,
        [
            ("root@plinth.test".to_string(), "owner".to_string()),
            ("ta@x.test".into(), "tenant_admin".into()),
            ("a@x.test".into(), "admin".into()),
        ]
    );

    let r = app
        .patch(
            &format!("/admin/v1/admins/{id}"),
            Some(&owner),
            json!({"role": "viewer"}),
        )
        .await
        .ok(200);
    assert_eq!(
        (r["role"].clone(), r["tenants"].clone()),
        (json!("viewer"), json!([]))
    );
    app.delete(&format!("/admin/v1/admins/{id}"), Some(&owner))
        .await
        .ok(204);
    app.delete(&format!("/admin/v1/admins/{id}"), Some(&owner))
        .await
        .problem(404, "not_found");
    app.patch(
        &format!("/admin/v1/admins/{id}"),
        Some(&owner),
        json!({"role": "admin"}),
    )
    .await
    .problem(404, "not_found");

    let audit = app.get("/admin/v1/audit", Some(&owner)).await.ok(200);
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        &actions[..4],
        [
            "admin.delete",
            "admin.update",
            "admin.create",
            "admin.create"
        ]
    );
    assert_eq!(audit["items"][0]["actor"], "admin:root@plinth.test");
}

async fn the_last_owner_cannot_be_removed_or_demoted(b: Backend) {
    let mut app = TestApp::start(b).await;
    let owner = app.admin().await;
    let me = app
        .get("/admin/v1/auth/session", Some(&owner))
        .await
        .ok(200);
    let my_id = me["admin"]["id"].as_str().unwrap().to_string();
    assert_eq!(me["admin"]["role"], "owner", "the first admin is an owner");

    app.patch(
        &format!("/admin/v1/admins/{my_id}"),
        Some(&owner),
        json!({"role": "admin"}),
    )
    .await
    .problem(409, "last_owner");
    app.delete(&format!("/admin/v1/admins/{my_id}"), Some(&owner))
        .await
        .problem(409, "last_owner");
    // Still an owner, still working.
    app.get("/admin/v1/admins", Some(&owner)).await.ok(200);

    let (second_id, second) = add_admin(&app, &owner, "o2@x.test", "owner", &[]).await;
    app.patch(
        &format!("/admin/v1/admins/{my_id}"),
        Some(&owner),
        json!({"role": "admin"}),
    )
    .await
    .ok(200);
    // Now the second is the last owner, and the first no longer manages admins.
    app.get("/admin/v1/admins", Some(&owner))
        .await
        .problem(403, "insufficient_role");
    app.delete(&format!("/admin/v1/admins/{second_id}"), Some(&second))
        .await
        .problem(409, "last_owner");
    // Removing oneself is fine while another owner remains.
    app.patch(
        &format!("/admin/v1/admins/{my_id}"),
        Some(&second),
        json!({"role": "owner"}),
    )
    .await
    .ok(200);
    app.delete(&format!("/admin/v1/admins/{second_id}"), Some(&second))
        .await
        .ok(204);
    app.get("/admin/v1/tenants", Some(&second))
        .await
        .problem(401, "invalid_token");

    // Two owners demoting each other at once: one of them stays an owner.
    let (third_id, third) = add_admin(&app, &owner, "o3@x.test", "owner", &[]).await;
    let (third_path, my_path) = (
        format!("/admin/v1/admins/{third_id}"),
        format!("/admin/v1/admins/{my_id}"),
    );
    let a = app.patch(&third_path, Some(&owner), json!({"role": "viewer"}));
    let b2 = app.patch(&my_path, Some(&third), json!({"role": "viewer"}));
    let (a, b2) = tokio::join!(a, b2);
    let codes = [a.status.as_u16(), b2.status.as_u16()];
    let list = app.get("/admin/v1/admins", Some(&owner)).await;
    let list = if list.status.is_success() {
        list.json()
    } else {
        app.get("/admin/v1/admins", Some(&third)).await.ok(200)
    };
    let owners = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["role"] == "owner")
        .count();
    assert_eq!(owners, 1, "answers {codes:?}: {list:#}");
}

async fn role_changes_and_removal_apply_at_once(b: Backend) {
    let mut app = TestApp::start(b).await;
    let owner = app.admin().await;
    let (id, token) = add_admin(&app, &owner, "a@x.test", "admin", &[]).await;
    app.post("/admin/v1/tenants", Some(&token), json!({"slug": "one"}))
        .await
        .ok(201);
    app.patch(
        &format!("/admin/v1/admins/{id}"),
        Some(&owner),
        json!({"role": "viewer"}),
    )
    .await
    .ok(200);
    app.post("/admin/v1/tenants", Some(&token), json!({"slug": "two"}))
        .await
        .problem(403, "insufficient_role");
    app.delete(&format!("/admin/v1/admins/{id}"), Some(&owner))
        .await
        .ok(204);
    app.get("/admin/v1/tenants", Some(&token))
        .await
        .problem(401, "invalid_token");
}

async fn admin_input_is_validated(b: Backend) {
    let mut app = TestApp::start(b).await;
    let owner = app.admin().await;
    app.create_tenant("acme").await;
    let add = |body: Value| app.post("/admin/v1/admins", Some(&owner), body);
    add(json!({"email": "x@x.test", "password": PASSWORD, "role": "root"}))
        .await
        .problem(400, "invalid_body");
    add(
        json!({"email": "x@x.test", "password": PASSWORD, "role": "tenant_admin",
               "tenants": ["nope"]}),
    )
    .await
    .problem(400, "validation_failed");
    add(json!({"email": "not-an-email", "password": PASSWORD, "role": "admin"}))
        .await
        .problem(400, "validation_failed");
    add(json!({"email": "x@x.test", "password": "short", "role": "admin"}))
        .await
        .problem(400, "validation_failed");
    add(json!({"email": "root@plinth.test", "password": PASSWORD, "role": "admin"}))
        .await
        .problem(409, "admin_exists");
    app.patch(
        "/admin/v1/admins/whatever",
        Some(&owner),
        json!({"rol": "viewer"}),
    )
    .await
    .problem(400, "validation_failed");
    app.patch(
        "/admin/v1/admins/whatever",
        Some(&owner),
        json!({"role": 5}),
    )
    .await
    .problem(400, "invalid_body");
    let list = app.get("/admin/v1/admins", Some(&owner)).await.ok(200);
    assert_eq!(
        list["items"].as_array().unwrap().len(),
        1,
        "nothing was created"
    );
}

/// A database migrated before roles existed, with an admin in it: after the upgrade that
/// admin is an owner.
async fn admins_from_before_roles_are_owners(b: Backend) {
    let storage = Storage::fresh(b).await;
    let insert = "INSERT INTO admins (id, email, password_hash, created_at) \
                  VALUES ('old', 'old@x.test', 'x', 1)";
    match &storage.location {
        plinth::store::Location::SqliteDir(dir) => {
            let opts = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(dir.join("control.db"))
                .create_if_missing(true);
            let pool = sqlx::SqlitePool::connect_with(opts).await.unwrap();
            let m = sqlx::migrate::Migrator::new(std::path::Path::new("migrations/sqlite-control"))
                .await
                .unwrap();
            m.run_to(3, &pool).await.unwrap();
            sqlx::query(insert).execute(&pool).await.unwrap();
            pool.close().await;
        }
        plinth::store::Location::Postgres(url) => {
            let pool = sqlx::PgPool::connect(url).await.unwrap();
            let m = sqlx::migrate::Migrator::new(std::path::Path::new("migrations/postgres"))
                .await
                .unwrap();
            m.run_to(7, &pool).await.unwrap();
            sqlx::query(insert).execute(&pool).await.unwrap();
            pool.close().await;
        }
    }
    let app = TestApp::start_on(b, storage, |_| {}).await;
    assert!(app.setup_token().is_none(), "an admin exists");
    let role: String = match &app.storage.location {
        plinth::store::Location::SqliteDir(dir) => {
            let opts = sqlx::sqlite::SqliteConnectOptions::new().filename(dir.join("control.db"));
            let pool = sqlx::SqlitePool::connect_with(opts).await.unwrap();
            sqlx::query_scalar("SELECT role FROM admins WHERE id = 'old'")
                .fetch_one(&pool)
                .await
                .unwrap()
        }
        plinth::store::Location::Postgres(url) => {
            let pool = sqlx::PgPool::connect(url).await.unwrap();
            sqlx::query_scalar("SELECT role FROM admins WHERE id = 'old'")
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    assert_eq!(role, "owner");
}
