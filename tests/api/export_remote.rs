//! Tenant export and import through the admin API (`GET .../export`, `POST .../import`):
//! a round trip into a new tenant, `replace=true` over an existing one, refusals (an
//! existing tenant, a damaged file, the wrong media type) that change nothing, and who
//! may call them (owners and admins; a tenant admin of another tenant sees no tenant).

use reqwest::Method;
use serde_json::{Value, json};

use crate::admin_roles::add_admin;
use crate::backend_tests;
use crate::documents::{docs, put, tenant_with_key};
use crate::export::reseal;
use crate::rules::install_rules;
use crate::support::*;

backend_tests!(
    export_and_import_round_trip_over_http,
    import_replace_swaps_the_data_in_one_go,
    export_and_import_are_for_owners_and_admins,
);

const RULES: &str = "[notes]\nread = \"auth != null\"\ncreate = \"auth != null\"\n\
                     update = \"auth != null\"\n";

/// A tenant with rules, three notes, a user and a secret; the service key.
async fn populate(app: &mut TestApp, slug: &str) -> String {
    let key = tenant_with_key(app, slug).await;
    install_rules(app, slug, RULES).await.ok(200);
    for i in 0..3 {
        let path = format!("{}/n{i}", docs(slug, "notes"));
        put(
            app,
            &key,
            &path,
            json!({"i": i, "text": format!("note é {i}")}),
        )
        .await
        .ok(201);
    }
    app.signup(slug, "ann@example.com").await;
    let admin = app.admin().await;
    app.send(
        app.req(
            Method::PUT,
            &format!("/admin/v1/tenants/{slug}/secrets/API_KEY"),
            Some(&admin),
        )
        .json(&json!({"value": "s3cr3t"})),
    )
    .await
    .ok(200);
    key
}

async fn export(app: &TestApp, token: &str, slug: &str, query: &str) -> Reply {
    app.get(
        &format!("/admin/v1/tenants/{slug}/export{query}"),
        Some(token),
    )
    .await
}

async fn import(app: &TestApp, token: &str, slug: &str, query: &str, file: &str) -> Reply {
    app.send(
        app.req(
            Method::POST,
            &format!("/admin/v1/tenants/{slug}/import{query}"),
            Some(token),
        )
        .header("content-type", "application/x-ndjson")
        .body(file.to_string()),
    )
    .await
}

#[track_caller]
fn ok_text(r: Reply) -> String {
    assert_eq!(r.status.as_u16(), 200, "{}", r.text);
    r.text
}

/// The ids of a tenant's notes, as a signed-in user reads them.
async fn note_ids(app: &TestApp, slug: &str, access: &str) -> Vec<String> {
    let page = app
        .get(&format!("{}?limit=100", docs(slug, "notes")), Some(access))
        .await
        .ok(200);
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_string())
        .collect()
}

async fn audit_actions(app: &TestApp, token: &str, slug: &str) -> Vec<String> {
    let page = app
        .get(&format!("/admin/v1/audit?tenant={slug}"), Some(token))
        .await
        .ok(200);
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect()
}

async fn export_and_import_round_trip_over_http(b: Backend) {
    let mut app = TestApp::start(b).await;
    populate(&mut app, "shop").await;
    let owner = app.admin().await;

    let r = export(&app, &owner, "shop", "").await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text);
    let ct = r.headers["content-type"].to_str().unwrap();
    assert_eq!(ct, "application/x-ndjson");
    assert_eq!(
        r.headers["content-length"].to_str().unwrap(),
        r.text.len().to_string()
    );
    let file = r.text;
    let lines: Vec<&str> = file.lines().collect();
    let header: Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(header["type"], "header");
    assert_eq!(header["secrets_included"], false);
    assert_eq!(header["secrets_count"], 1);
    assert!(!file.contains("s3cr3t"));
    let trailer: Value = serde_json::from_str(lines[lines.len() - 1]).unwrap();
    assert_eq!(
        trailer["counts"],
        json!({"document": 3, "ruleset": 1, "user": 1, "service_key": 1})
    );

    // With the secrets, into a new tenant: the same data answers there.
    let with_secrets = ok_text(export(&app, &owner, "shop", "?include_secrets=true").await);
    assert!(with_secrets.contains("s3cr3t"));
    let done = import(&app, &owner, "copy", "", &with_secrets)
        .await
        .ok(200);
    assert_eq!(done["slug"], "copy");
    assert_eq!(done["from"], "shop");
    assert_eq!(done["counts"]["document"], 3);
    assert_eq!(done["counts"]["secret"], 1);
    let ann = Session::from_json(&app.login("copy", "ann@example.com", PASSWORD).await.ok(200));
    assert_eq!(
        note_ids(&app, "copy", &ann.access).await,
        ["n0", "n1", "n2"]
    );
    let n1 = app
        .get(&format!("{}/n1", docs("copy", "notes")), Some(&ann.access))
        .await
        .ok(200);
    assert_eq!(n1["data"]["text"], "note é 1");
    let scope = crate::documents::scope_of(&app, "copy").await;
    let env = app
        .running
        .as_ref()
        .unwrap()
        .state
        .secrets
        .env(&scope)
        .await
        .unwrap();
    assert_eq!(env["API_KEY"], "s3cr3t");

    // An existing tenant is refused without replace, and keeps its data.
    import(&app, &owner, "copy", "", &file)
        .await
        .problem(409, "tenant_exists");
    // A damaged line is named, into a new tenant (not created) as into an existing one.
    let mut bad: Vec<&str> = lines.clone();
    bad[2] = "{\"type\":\"document\",";
    let bad = format!("{}\n", bad.join("\n"));
    for (slug, query) in [("fresh", ""), ("copy", "?replace=true")] {
        let p = import(&app, &owner, slug, query, &bad)
            .await
            .problem(400, "invalid_export");
        assert!(
            p["detail"].as_str().unwrap().contains("line 3"),
            "{}",
            p["detail"]
        );
    }
    app.get("/admin/v1/tenants/fresh", Some(&owner))
        .await
        .problem(404, "tenant_not_found");
    // Cut short: refused the same way.
    let mut at = file.len() / 2;
    while !file.is_char_boundary(at) {
        at -= 1;
    }
    let cut = &file[..at];
    import(&app, &owner, "copy", "?replace=true", cut)
        .await
        .problem(400, "invalid_export");
    assert_eq!(
        note_ids(&app, "copy", &ann.access).await,
        ["n0", "n1", "n2"]
    );
    // Not NDJSON by its media type.
    let r = app
        .send(
            app.req(Method::POST, "/admin/v1/tenants/other/import", Some(&owner))
                .header("content-type", "application/json")
                .body(file.clone()),
        )
        .await;
    r.problem(415, "unsupported_media_type");

    // Both directions are audited.
    assert!(
        audit_actions(&app, &owner, "shop")
            .await
            .contains(&"tenant.export".into())
    );
    assert!(
        audit_actions(&app, &owner, "copy")
            .await
            .contains(&"tenant.import".into())
    );
}

async fn import_replace_swaps_the_data_in_one_go(b: Backend) {
    let mut app = TestApp::start(b).await;
    populate(&mut app, "shop").await;
    let owner = app.admin().await;
    let file = ok_text(export(&app, &owner, "shop", "").await);

    // The target: other notes, another user, and a session open on it.
    let key = tenant_with_key(&mut app, "live").await;
    install_rules(&mut app, "live", "[notes]\nread = \"true\"\n")
        .await
        .ok(200);
    for id in ["x1", "x2"] {
        put(
            &app,
            &key,
            &format!("{}/{id}", docs("live", "notes")),
            json!({"x": 1}),
        )
        .await
        .ok(201);
    }
    let bob = app.signup("live", "bob@example.com").await;
    app.get(&format!("{}/x1", docs("live", "notes")), Some(&bob.access))
        .await
        .ok(200);

    // A well-sealed file the database refuses (a user twice) fails inside the one
    // transaction: nothing of the tenant was deleted.
    let lines: Vec<&str> = file.lines().collect();
    let user = *lines
        .iter()
        .find(|l| l.contains("\"type\":\"user\""))
        .unwrap();
    let mut twice: Vec<&str> = lines[..lines.len() - 1].to_vec();
    twice.push(user);
    let p = import(&app, &owner, "live", "?replace=true", &reseal(&twice))
        .await
        .problem(400, "invalid_export");
    assert!(
        p["detail"].as_str().unwrap().contains("one key twice"),
        "{p}"
    );
    let still = app.login("live", "bob@example.com", PASSWORD).await.ok(200);
    assert_eq!(Session::from_json(&still).user_id, bob.user_id);
    app.get(&format!("{}/x2", docs("live", "notes")), Some(&key))
        .await
        .ok(200);
    app.get(&format!("{}/x1", docs("live", "notes")), Some(&bob.access))
        .await
        .ok(200);

    let done = import(&app, &owner, "live", "?replace=true", &file)
        .await
        .ok(200);
    assert_eq!(done["slug"], "live");
    assert_eq!(done["counts"]["document"], 3);

    // The file's users, rules and notes, and nothing of the old ones.
    app.login("live", "bob@example.com", PASSWORD)
        .await
        .problem(401, "invalid_credentials");
    let ann = Session::from_json(&app.login("live", "ann@example.com", PASSWORD).await.ok(200));
    assert_eq!(
        note_ids(&app, "live", &ann.access).await,
        ["n0", "n1", "n2"]
    );
    app.get(&format!("{}/x1", docs("live", "notes")), Some(&ann.access))
        .await
        .problem(404, "document_not_found");
    // The old session ended with its user; the old service key is gone too.
    let r = app
        .get(&format!("{}/n0", docs("live", "notes")), Some(&bob.access))
        .await;
    assert_eq!(r.status.as_u16(), 401, "{}", r.text);
    let r = app
        .get(&format!("{}/n0", docs("live", "notes")), Some(&key))
        .await;
    assert_eq!(r.status.as_u16(), 401, "{}", r.text);
    // The imported rules are the active ones: anonymous reads are refused now.
    let r = app
        .get(&format!("{}/n0", docs("live", "notes")), None)
        .await;
    assert_ne!(r.status.as_u16(), 200, "{}", r.text);
    // Writes go on after the replacement, with versions of the file's documents.
    let n0 = app
        .send(
            app.req(
                Method::PUT,
                &format!("{}/n0", docs("live", "notes")),
                Some(&ann.access),
            )
            .json(&json!({"i": 0, "again": true})),
        )
        .await
        .ok(200);
    assert_eq!(n0["version"], 2);
    // The tenant's settings are the file's (its name), and the slug stays.
    let t = app
        .get("/admin/v1/tenants/live", Some(&owner))
        .await
        .ok(200);
    assert_eq!(t["name"], "shop");

    // Replacing a tenant that does not exist creates it.
    import(&app, &owner, "brand-new", "?replace=true", &file)
        .await
        .ok(200);
    app.get("/admin/v1/tenants/brand-new", Some(&owner))
        .await
        .ok(200);
}

async fn export_and_import_are_for_owners_and_admins(b: Backend) {
    let mut app = TestApp::start(b).await;
    populate(&mut app, "shop").await;
    app.create_tenant("mine").await;
    let owner = app.admin().await;
    let file = ok_text(export(&app, &owner, "shop", "").await);
    let (_, viewer) = add_admin(&app, &owner, "viewer@x.test", "viewer", &[]).await;
    let (_, ta) = add_admin(&app, &owner, "ta@x.test", "tenant_admin", &["mine"]).await;
    let (_, admin) = add_admin(&app, &owner, "admin@x.test", "admin", &[]).await;

    // A tenant admin: another tenant does not exist; their own is not theirs to move.
    export(&app, &ta, "shop", "")
        .await
        .problem(404, "tenant_not_found");
    import(&app, &ta, "shop", "?replace=true", &file)
        .await
        .problem(404, "tenant_not_found");
    export(&app, &ta, "mine", "")
        .await
        .problem(403, "insufficient_role");
    import(&app, &ta, "mine", "?replace=true", &file)
        .await
        .problem(403, "insufficient_role");
    // A viewer neither reads the file (password hashes) nor writes one.
    export(&app, &viewer, "shop", "")
        .await
        .problem(403, "insufficient_role");
    import(&app, &viewer, "shop", "?replace=true", &file)
        .await
        .problem(403, "insufficient_role");
    import(&app, &viewer, "other", "", &file)
        .await
        .problem(403, "insufficient_role");
    app.get("/admin/v1/tenants/other", Some(&owner))
        .await
        .problem(404, "tenant_not_found");
    // Nothing of "mine" was replaced: it is still empty of users.
    assert_eq!(app.user_count("mine").await, 0);
    // No credential at all.
    let r = app.get("/admin/v1/tenants/shop/export", None).await;
    assert_eq!(r.status.as_u16(), 401, "{}", r.text);

    // An admin (not owner) does both.
    let again = ok_text(export(&app, &admin, "shop", "").await);
    assert_eq!(again.lines().count(), file.lines().count());
    import(&app, &admin, "mine", "?replace=true", &file)
        .await
        .ok(200);
    assert_eq!(app.user_count("mine").await, 1);
}
