//! Admins' read tokens (`POST /admin/v1/tenants/{tenant}/read-token`): how a viewer's
//! console reads a tenant's documents through the tenant API. The token lists, gets and
//! follows realtime past the rules; every write it asks for is 403 `read_only`; it works
//! for its one tenant only; and viewers may check and test rule sets (they change nothing).

use reqwest::Method;
use serde_json::{Value, json};

use crate::admin_roles::add_admin;
use crate::backend_tests;
use crate::documents::{docs, put, tenant_with_key};
use crate::rules::install_rules;
use crate::support::*;

backend_tests!(
    a_viewer_reads_documents_and_writes_nothing,
    read_tokens_follow_realtime,
    read_tokens_stay_in_their_tenant,
    viewers_check_and_test_rule_sets,
);

/// Rules that let nobody but the rule-exempt read or write.
const CLOSED: &str = r#"
[notes]
read = "false"
create = "false"
update = "false"
delete = "false"
"#;

async fn read_token(app: &TestApp, admin: &str, tenant: &str) -> Reply {
    app.post(
        &format!("/admin/v1/tenants/{tenant}/read-token"),
        Some(admin),
        json!({}),
    )
    .await
}

fn token_of(r: &Reply) -> String {
    let body = r.ok(200);
    assert_eq!(body["token_type"], "Bearer", "{body}");
    assert!(body["expires_in"].as_u64().unwrap() > 60, "{body}");
    let t = body["token"].as_str().unwrap().to_string();
    assert!(t.starts_with("prt_"), "{t}");
    t
}

async fn a_viewer_reads_documents_and_writes_nothing(b: Backend) {
    let mut app = TestApp::start(b).await;
    let owner = app.admin().await;
    let key = tenant_with_key(&mut app, "acme").await;
    install_rules(&mut app, "acme", CLOSED).await.ok(200);
    let notes = docs("acme", "notes");
    for i in 0..3 {
        put(&app, &key, &format!("{notes}/n{i}"), json!({"i": i}))
            .await
            .ok(201);
    }
    let (_, viewer) = add_admin(&app, &owner, "v@x.test", "viewer", &[]).await;
    let token = token_of(&read_token(&app, &viewer, "acme").await);

    // Reads go past the rules (anonymous reads are denied by them).
    app.get(&format!("{notes}/n0"), None)
        .await
        .problem(403, "rule_denied");
    let list = app.get(&notes, Some(&token)).await.ok(200);
    assert_eq!(list["items"].as_array().unwrap().len(), 3, "{list}");
    let doc = app.get(&format!("{notes}/n1"), Some(&token)).await.ok(200);
    assert_eq!(doc["data"]["i"], 1);
    let filtered = app
        .get(&format!("{notes}?filter=doc.i%20%3E%3D%202"), Some(&token))
        .await
        .ok(200);
    assert_eq!(filtered["items"].as_array().unwrap().len(), 1, "{filtered}");

    // Every write is refused, whatever its shape, and nothing changed.
    app.post(&notes, Some(&token), json!({"i": 9}))
        .await
        .problem(403, "read_only");
    put(&app, &token, &format!("{notes}/n0"), json!({"i": 9}))
        .await
        .problem(403, "read_only");
    put(&app, &token, &format!("{notes}/new"), json!({"i": 9}))
        .await
        .problem(403, "read_only");
    app.patch(&format!("{notes}/n0"), Some(&token), json!({"i": 9}))
        .await
        .problem(403, "read_only");
    app.delete(&format!("{notes}/n0"), Some(&token))
        .await
        .problem(403, "read_only");
    app.delete(&format!("{notes}/missing"), Some(&token))
        .await
        .problem(403, "read_only");
    let batch = app
        .post(
            "/v1/t/acme/batch",
            Some(&token),
            json!({"writes": [{"op": "create", "collection": "notes", "data": {"i": 9}}]}),
        )
        .await;
    assert_eq!(batch.status.as_u16(), 403, "{}", batch.text);
    assert_eq!(batch.json()["code"], "read_only", "{}", batch.text);
    let after = app.get(&notes, Some(&key)).await.ok(200);
    let items: Vec<&Value> = after["items"].as_array().unwrap().iter().collect();
    assert_eq!(items.len(), 3, "{after}");
    assert!(items.iter().all(|d| d["version"] == 1), "{after}");

    // It is no user: the account routes refuse it.
    let me = app.get("/v1/t/acme/auth/me", Some(&token)).await;
    assert_eq!(me.status.as_u16(), 401, "{}", me.text);

    // Every role may have one; a viewer's own admin writes stay refused.
    let (_, ta) = add_admin(&app, &owner, "ta@x.test", "tenant_admin", &["acme"]).await;
    token_of(&read_token(&app, &ta, "acme").await);
    token_of(&read_token(&app, &owner, "acme").await);
    app.post(
        "/admin/v1/tenants/acme/keys",
        Some(&viewer),
        json!({"name": "mine"}),
    )
    .await
    .problem(403, "insufficient_role");
    read_token(&app, &viewer, "nope")
        .await
        .problem(404, "tenant_not_found");
    let anonymous = app
        .post("/admin/v1/tenants/acme/read-token", None, json!({}))
        .await;
    assert_eq!(anonymous.status.as_u16(), 401, "{}", anonymous.text);
}

async fn read_tokens_follow_realtime(b: Backend) {
    let mut app = TestApp::start(b).await;
    let owner = app.admin().await;
    let key = tenant_with_key(&mut app, "acme").await;
    install_rules(&mut app, "acme", CLOSED).await.ok(200);
    let (_, viewer) = add_admin(&app, &owner, "v@x.test", "viewer", &[]).await;
    let token = token_of(&read_token(&app, &viewer, "acme").await);

    let mut ws = Client::connect(&app, "acme", None).await;
    ws.send(json!({"type": "auth", "token": token})).await;
    let auth = ws.until("authenticated").await;
    assert!(
        auth["expires_at"].is_string(),
        "a read token expires: {auth}"
    );
    ws.subscribe(json!({"type": "subscribe", "id": "n", "collection": "notes"}))
        .await;
    let notes = docs("acme", "notes");
    put(&app, &key, &format!("{notes}/live"), json!({"x": 1}))
        .await
        .ok(201);
    let change = ws.changes(1).await;
    assert_eq!(change[0]["doc"]["id"], "live", "{change:?}");
    assert_eq!(change[0]["doc"]["data"]["x"], 1, "{change:?}");
    put(&app, &key, &format!("{notes}/live"), json!({"x": 2}))
        .await
        .ok(200);
    let change = ws.changes(1).await;
    assert_eq!(change[0]["doc"]["data"]["x"], 2, "{change:?}");
}

async fn read_tokens_stay_in_their_tenant(b: Backend) {
    let mut app = TestApp::start(b).await;
    let owner = app.admin().await;
    let key = tenant_with_key(&mut app, "acme").await;
    app.create_tenant("other").await;
    put(
        &app,
        &key,
        &format!("{}/a", docs("acme", "notes")),
        json!({}),
    )
    .await
    .ok(201);
    let (_, ta) = add_admin(&app, &owner, "ta@x.test", "tenant_admin", &["acme"]).await;
    let token = token_of(&read_token(&app, &ta, "acme").await);

    // Another tenant's API refuses it; so does the admin API.
    app.get(&docs("other", "notes"), Some(&token))
        .await
        .problem(401, "invalid_token");
    let r = app.get("/admin/v1/tenants", Some(&token)).await;
    assert_eq!(r.status.as_u16(), 401, "{}", r.text);
    // A tenant admin gets none for a tenant they do not see.
    read_token(&app, &ta, "other")
        .await
        .problem(404, "tenant_not_found");
    // The prefix alone proves nothing: a user's token or a forged one behind it fails.
    let user = app.signup("acme", "u@acme.test").await;
    app.get(
        &docs("acme", "notes"),
        Some(&format!("prt_{}", user.access)),
    )
    .await
    .problem(401, "invalid_token");
    let plain = token.trim_start_matches("prt_");
    app.get(&docs("acme", "notes"), Some(plain))
        .await
        .problem(401, "invalid_token");
    // One character of the signature changed (not its last, which holds padding bits).
    let at = token.len() - 10;
    let swap = if &token[at..=at] == "A" { "B" } else { "A" };
    let tampered = format!("{}{swap}{}", &token[..at], &token[at + 1..]);
    app.get(&docs("acme", "notes"), Some(&tampered))
        .await
        .problem(401, "invalid_token");
}

async fn viewers_check_and_test_rule_sets(b: Backend) {
    let mut app = TestApp::start(b).await;
    let owner = app.admin().await;
    app.create_tenant("acme").await;
    app.create_tenant("other").await;
    let (_, viewer) = add_admin(&app, &owner, "v@x.test", "viewer", &[]).await;
    let (_, ta) = add_admin(&app, &owner, "ta@x.test", "tenant_admin", &["acme"]).await;

    let validate = |token: String, tenant: &'static str, source: &'static str| {
        let req = app
            .req(
                Method::POST,
                &format!("/admin/v1/tenants/{tenant}/rules/validate"),
                Some(&token),
            )
            .header("content-type", "application/toml")
            .body(source);
        app.send(req)
    };
    let ok = validate(viewer.clone(), "acme", "[notes]\nread = \"true\"\n")
        .await
        .ok(200);
    assert_eq!(ok["valid"], true, "{ok}");
    let bad = validate(viewer.clone(), "acme", "[notes]\nread = \"doc.\"\n")
        .await
        .ok(200);
    assert_eq!(bad["valid"], false, "{bad}");
    let report = app
        .post(
            "/admin/v1/tenants/acme/rules/test",
            Some(&viewer),
            json!({
                "rules": "[notes]\nread = \"auth != null\"\n",
                "cases": "[[case]]\nname = \"signed in\"\ncollection = \"notes\"\n\
                          operation = \"read\"\nauth = { uid = \"bob\" }\n\
                          doc = { owner = \"alice\" }\nexpect = \"allow\"\n"
            }),
        )
        .await
        .ok(200);
    assert_eq!(report["passed"], true, "{report}");
    assert_eq!(report["cases"].as_array().unwrap().len(), 1, "{report}");
    // Nothing was installed by either.
    let rules = app
        .get("/admin/v1/tenants/acme/rules", Some(&owner))
        .await
        .ok(200);
    assert!(!rules.to_string().contains("auth != null"), "{rules}");
    // The tenant check still holds for tenant admins.
    validate(ta.clone(), "other", "[notes]\nread = \"true\"\n")
        .await
        .problem(404, "tenant_not_found");
    // Installing stays refused to a viewer.
    let install = app
        .send(
            app.req(Method::PUT, "/admin/v1/tenants/acme/rules", Some(&viewer))
                .header("content-type", "application/toml")
                .body("[notes]\nread = \"true\"\n"),
        )
        .await;
    install.problem(403, "insufficient_role");
}
