//! The rules tools the console uses: test cases run against a rule set on the server,
//! installing nothing; the stored versions, and rolling back to one.

use reqwest::Method;
use serde_json::{Value, json};

use crate::backend_tests;
use crate::rules::{NOTES_RULES, install_rules};
use crate::support::*;

backend_tests!(
    rule_test_cases_run_without_installing,
    rule_versions_list_and_roll_back,
);

const CASES: &str = r#"# Alice owns n1.
[[case]]
name = "owner reads own note"
collection = "notes"
operation = "read"
auth = { uid = "alice" }
doc = { owner = "alice", public = false }
expect = "allow"

[[case]]
name = "stranger reads a private note"
collection = "notes"
operation = "read"
auth = { uid = "bob" }
doc = { owner = "alice", public = false }
expect = "allow"
"#;

async fn run(app: &TestApp, tenant: &str, token: &str, body: Value) -> Reply {
    app.send(
        app.req(
            Method::POST,
            &format!("/admin/v1/tenants/{tenant}/rules/test"),
            Some(token),
        )
        .json(&body),
    )
    .await
}

async fn rule_test_cases_run_without_installing(b: Backend) {
    let mut app = TestApp::start(b).await;
    let owner = app.admin().await;
    app.create_tenant("shop").await;
    app.create_tenant("other").await;

    // One case passes, one fails: expected and actual, the line of its header, why.
    let r = run(
        &app,
        "shop",
        &owner,
        json!({"rules": NOTES_RULES, "cases": CASES}),
    )
    .await
    .ok(200);
    assert_eq!(
        (r["valid"].clone(), r["passed"].clone()),
        (json!(true), json!(false))
    );
    let cases = r["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 2, "{r}");
    assert_eq!(cases[0]["name"], "owner reads own note");
    assert_eq!(
        (cases[0]["passed"].clone(), cases[0]["line"].clone()),
        (json!(true), json!(2))
    );
    assert_eq!(cases[0]["detail"], Value::Null);
    assert_eq!(cases[1]["passed"], false);
    assert_eq!(cases[1]["line"], 10);
    assert_eq!(
        (cases[1]["expected"].clone(), cases[1]["actual"].clone()),
        (json!("allow"), json!("deny"))
    );
    assert!(
        cases[1]["detail"].as_str().unwrap().contains("decided by"),
        "{r}"
    );

    // Fixed expectation: every case passes.
    let fixed = CASES.replace("private note\"\ncollection = \"notes\"\noperation = \"read\"\nauth = { uid = \"bob\" }\ndoc = { owner = \"alice\", public = false }\nexpect = \"allow\"", "private note\"\ncollection = \"notes\"\noperation = \"read\"\nauth = { uid = \"bob\" }\ndoc = { owner = \"alice\", public = false }\nexpect = \"deny\"");
    assert_ne!(fixed, CASES);
    let r = run(
        &app,
        "shop",
        &owner,
        json!({"rules": NOTES_RULES, "cases": fixed}),
    )
    .await
    .ok(200);
    assert_eq!(r["passed"], true, "{r}");

    // No cases: nothing ran, nothing failed.
    let r = run(
        &app,
        "shop",
        &owner,
        json!({"rules": NOTES_RULES, "cases": ""}),
    )
    .await
    .ok(200);
    assert_eq!(
        (r["passed"].clone(), r["cases"].clone()),
        (json!(true), json!([]))
    );

    // An invalid rule set: its errors at their lines, no case run.
    let r = run(
        &app,
        "shop",
        &owner,
        json!({"rules": "[notes]\nread = \"doc.owner == \"\n", "cases": CASES}),
    )
    .await
    .ok(200);
    assert_eq!(
        (r["valid"].clone(), r["passed"].clone()),
        (json!(false), json!(false))
    );
    assert_eq!(r["errors"][0]["line"], 2, "{r}");
    assert_eq!(r["cases"], json!([]));

    // Cases that are not cases: 400 with the line.
    let bad = run(
        &app,
        "shop",
        &owner,
        json!({"rules": NOTES_RULES, "cases": "[[case]]\nname = \"x\"\nexpect = \"maybe\"\n"}),
    )
    .await
    .problem(400, "invalid_test_cases");
    assert!(bad["detail"].as_str().unwrap().contains("line "), "{bad}");
    run(
        &app,
        "shop",
        &owner,
        json!({"rules": NOTES_RULES, "cases": "[[case]\n"}),
    )
    .await
    .problem(400, "invalid_test_cases");
    run(&app, "shop", &owner, json!({"rules": NOTES_RULES}))
        .await
        .problem(400, "invalid_body");

    // Nothing was installed or audited.
    let active = app
        .get("/admin/v1/tenants/shop/rules", Some(&owner))
        .await
        .ok(200);
    assert_eq!(active["version"], 0);
    let audit = app
        .get("/admin/v1/audit?tenant=shop", Some(&owner))
        .await
        .ok(200);
    assert!(
        audit["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| !e["action"].as_str().unwrap().starts_with("rules.")),
        "{audit}"
    );

    // Roles: a tenant admin on their tenant only; a viewer too (testing changes nothing).
    let (_, ta) =
        crate::admin_roles::add_admin(&app, &owner, "ta@x.test", "tenant_admin", &["shop"]).await;
    let (_, viewer) = crate::admin_roles::add_admin(&app, &owner, "v@x.test", "viewer", &[]).await;
    let body = json!({"rules": NOTES_RULES, "cases": CASES});
    run(&app, "shop", &ta, body.clone()).await.ok(200);
    run(&app, "other", &ta, body.clone())
        .await
        .problem(404, "tenant_not_found");
    run(&app, "shop", &viewer, body.clone()).await.ok(200);
    run(&app, "nope", &owner, body)
        .await
        .problem(404, "tenant_not_found");
    // Installing still works afterwards (the set tested is the set installed).
    install_rules(&mut app, "shop", NOTES_RULES).await.ok(200);
}

async fn versions(app: &TestApp, token: &str) -> Value {
    app.get("/admin/v1/tenants/shop/rules/versions", Some(token))
        .await
        .ok(200)
}

async fn activate(app: &TestApp, tenant: &str, token: &str, version: &str) -> Reply {
    app.post(
        &format!("/admin/v1/tenants/{tenant}/rules/versions/{version}/activate"),
        Some(token),
        json!({}),
    )
    .await
}

async fn rule_versions_list_and_roll_back(b: Backend) {
    let mut app = TestApp::start(b).await;
    let owner = app.admin().await;
    let key = crate::documents::tenant_with_key(&mut app, "shop").await;
    app.create_tenant("other").await;
    assert_eq!(versions(&app, &owner).await["items"], json!([]));

    // Two installs: anyone may read, then only signed-in users.
    install_rules(
        &mut app,
        "shop",
        "[notes]\nread = \"true\"\ncreate = \"true\"\n",
    )
    .await
    .ok(200);
    install_rules(
        &mut app,
        "shop",
        "[notes]\nread = \"auth != null\"\ncreate = \"true\"\n",
    )
    .await
    .ok(200);
    let list = versions(&app, &owner).await;
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{list}");
    assert_eq!(
        (items[0]["version"].clone(), items[0]["active"].clone()),
        (json!(2), json!(true))
    );
    assert_eq!(
        (items[1]["version"].clone(), items[1]["active"].clone()),
        (json!(1), json!(false))
    );
    assert!(
        items[0]["created_by"]
            .as_str()
            .unwrap()
            .contains("root@plinth.test"),
        "{list}"
    );
    assert!(
        items[0]["created_at"].as_str().unwrap().ends_with('Z'),
        "{list}"
    );

    // Anonymous reads are denied under version 2...
    app.send(
        app.req(
            Method::PUT,
            "/v1/t/shop/collections/notes/docs/n1",
            Some(&key),
        )
        .json(&json!({"title": "hi"})),
    )
    .await
    .ok(201);
    const NOTE: &str = "/v1/t/shop/collections/notes/docs/n1";
    assert_eq!(app.get(NOTE, None).await.status.as_u16(), 403);

    // ...and allowed again once version 1 is rolled back to, as version 3.
    let r = activate(&app, "shop", &owner, "1").await.ok(200);
    assert_eq!(r["version"], 3, "{r}");
    assert_eq!(r["collections"], json!(["notes"]));
    let active = app
        .get("/admin/v1/tenants/shop/rules", Some(&owner))
        .await
        .ok(200);
    assert_eq!(active["version"], 3);
    assert_eq!(
        active["source"],
        "[notes]\nread = \"true\"\ncreate = \"true\"\n"
    );
    app.get(NOTE, None).await.ok(200);
    let list = versions(&app, &owner).await;
    assert_eq!(list["items"][0]["version"], 3);
    assert_eq!(list["items"].as_array().unwrap().len(), 3);
    let audit = app
        .get("/admin/v1/audit?tenant=shop", Some(&owner))
        .await
        .ok(200);
    assert_eq!(audit["items"][0]["action"], "rules.activate", "{audit}");
    assert_eq!(audit["items"][0]["target"], "3");
    assert_eq!(audit["items"][0]["detail"]["from_version"], 1);

    // Bad versions: unknown, zero, not a number; nothing installed by them.
    activate(&app, "shop", &owner, "9")
        .await
        .problem(404, "not_found");
    activate(&app, "shop", &owner, "0")
        .await
        .problem(404, "not_found");
    activate(&app, "shop", &owner, "-1")
        .await
        .problem(404, "not_found");
    let r = activate(&app, "shop", &owner, "one").await;
    assert_eq!(r.status.as_u16(), 400, "{}", r.text);
    activate(&app, "nope", &owner, "1")
        .await
        .problem(404, "tenant_not_found");
    assert_eq!(
        versions(&app, &owner).await["items"]
            .as_array()
            .unwrap()
            .len(),
        3
    );

    // Roles: a viewer lists but cannot roll back; a tenant admin only on their tenant.
    let (_, viewer) = crate::admin_roles::add_admin(&app, &owner, "v@x.test", "viewer", &[]).await;
    let (_, ta) =
        crate::admin_roles::add_admin(&app, &owner, "ta@x.test", "tenant_admin", &["other"]).await;
    assert_eq!(
        versions(&app, &viewer).await["items"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    activate(&app, "shop", &viewer, "2")
        .await
        .problem(403, "insufficient_role");
    activate(&app, "shop", &ta, "2")
        .await
        .problem(404, "tenant_not_found");
    app.get("/admin/v1/tenants/shop/rules/versions", Some(&ta))
        .await
        .problem(404, "tenant_not_found");
    assert_eq!(
        app.get("/admin/v1/tenants/shop/rules", Some(&owner))
            .await
            .ok(200)["version"],
        3
    );
}
