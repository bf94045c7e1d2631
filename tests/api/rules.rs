//! Rules through the real interfaces: installing rule sets, per-user access, lists that
//! return exactly what the caller may read, explain, the rules CLI.

use reqwest::Method;
use serde_json::{Value, json};

use crate::backend_tests;
use crate::documents::{docs, put, tenant_with_key};
use crate::support::*;

backend_tests!(
    rule_sets_install_atomically,
    validating_rules_installs_nothing,
    owner_rules_guard_every_operation,
    lists_return_exactly_what_the_caller_may_read,
    explain_shows_the_deciding_expression,
    rules_cli_deploy_and_explain,
);

pub const NOTES_RULES: &str = r#"
# Notes belong to their author; public notes are readable by anyone.
[notes]
read   = "doc.public == true || (auth != null && doc.owner == auth.uid)"
create = "auth != null && new.owner == auth.uid && size(new.title) <= 100"
update = "auth != null && doc.owner == auth.uid && new.owner == doc.owner"
delete = "auth != null && doc.owner == auth.uid"
indexes = [["owner"], ["public"]]
"#;

pub async fn install_rules(app: &mut TestApp, tenant: &str, source: &str) -> Reply {
    let admin = app.admin().await;
    app.send(
        app.req(
            Method::PUT,
            &format!("/admin/v1/tenants/{tenant}/rules"),
            Some(&admin),
        )
        .header("content-type", "application/toml")
        .body(source.to_string()),
    )
    .await
}

async fn rule_sets_install_atomically(b: Backend) {
    let mut app = TestApp::start(b).await;
    let admin = app.admin().await;
    app.create_tenant("shop").await;

    let r = app
        .get("/admin/v1/tenants/shop/rules", Some(&admin))
        .await
        .ok(200);
    assert_eq!(r["version"], 0);

    let r = install_rules(&mut app, "shop", NOTES_RULES).await.ok(200);
    assert_eq!(r["version"], 1);
    assert_eq!(r["collections"], json!(["notes"]));
    assert_eq!(r["warnings"], json!([]), "indexed read rule: no warning");
    let state = app.running.as_ref().unwrap().state.clone();
    let scope = crate::documents::scope_of(&app, "shop").await;
    assert_eq!(
        state.store.index_names(&scope).await.unwrap().len(),
        2,
        "one expression index per declared index"
    );

    // A bad set: every error named with collection, operation, line and column; the
    // old set stays active.
    let bad = "[notes]\nread = \"doc.owner == \"\ncreate = \"nosuch.var == 1\"\n\n[Bad-Name]\nread = \"true\"\n";
    let p = install_rules(&mut app, "shop", bad)
        .await
        .problem(400, "invalid_rules");
    let errors = p["errors"].as_array().unwrap();
    assert!(errors.len() >= 3, "{p}");
    let read_err = errors
        .iter()
        .find(|e| e["operation"] == "read")
        .expect("read error");
    assert_eq!(read_err["collection"], "notes");
    assert_eq!(read_err["line"], 2);
    assert!(read_err["column"].as_u64().unwrap() > 1);
    let create_err = errors
        .iter()
        .find(|e| e["operation"] == "create")
        .expect("create error");
    assert_eq!(create_err["line"], 3);
    assert!(
        errors.iter().any(|e| e["line"] == 5),
        "bad collection name reported: {p}"
    );
    for (src, why) in [
        ("[notes]\nread = \"1 + \"", "syntax"),
        ("[notes]\nread = \"'a' < 1\"", "type"),
        ("[notes]\nread = \"doc.a == 1 &&\"", "trailing &&"),
        ("[notes]\nfrobnicate = \"true\"", "unknown key"),
        ("[notes\nread = \"true\"", "toml syntax"),
        (
            "[notes]\nread = \"doc.tags.exists(t, t == 'x')\"",
            "not translatable to SQL",
        ),
        ("[notes]\nindexes = [[\"a b\"]]", "bad index path"),
    ] {
        let p = install_rules(&mut app, "shop", src)
            .await
            .problem(400, "invalid_rules");
        assert!(p["errors"][0]["line"].as_u64().unwrap() >= 1, "{why}: {p}");
    }
    let r = app
        .get("/admin/v1/tenants/shop/rules", Some(&admin))
        .await
        .ok(200);
    assert_eq!(r["version"], 1);
    assert_eq!(r["source"], NOTES_RULES);

    // Wrong content type; unknown tenant.
    let r = app
        .send(
            app.req(Method::PUT, "/admin/v1/tenants/shop/rules", Some(&admin))
                .json(&json!({})),
        )
        .await;
    r.problem(415, "unsupported_media_type");
    install_rules(&mut app, "nope", NOTES_RULES)
        .await
        .problem(404, "tenant_not_found");

    // An unindexed read rule is installed with a warning.
    let r = install_rules(
        &mut app,
        "shop",
        "[notes]\nread = \"auth != null && doc.owner == auth.uid\"\n",
    )
    .await
    .ok(200);
    assert_eq!(r["version"], 2);
    let warnings = r["warnings"].as_array().unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w.as_str().unwrap().contains("notes")),
        "{r}"
    );
    assert_eq!(
        state.store.index_names(&scope).await.unwrap().len(),
        0,
        "undeclared indexes are dropped"
    );

    let audit = app
        .get("/admin/v1/audit?tenant=shop", Some(&admin))
        .await
        .ok(200);
    assert_eq!(audit["items"][0]["action"], "rules.install");
}

async fn validate(app: &TestApp, tenant: &str, token: &str, source: &str) -> Reply {
    app.send(
        app.req(
            Method::POST,
            &format!("/admin/v1/tenants/{tenant}/rules/validate"),
            Some(token),
        )
        .header("content-type", "application/toml")
        .body(source.to_string()),
    )
    .await
}

async fn validating_rules_installs_nothing(b: Backend) {
    let mut app = TestApp::start(b).await;
    let owner = app.admin().await;
    app.create_tenant("shop").await;
    app.create_tenant("other").await;

    // A bad set: the same errors an install would give, at their line and column.
    let bad = "[notes]\nread = \"doc.owner == \"\ncreate = \"nosuch.var == 1\"\n";
    let r = validate(&app, "shop", &owner, bad).await.ok(200);
    assert_eq!(r["valid"], false);
    let installing = install_rules(&mut app, "shop", bad)
        .await
        .problem(400, "invalid_rules");
    assert_eq!(r["errors"], installing["errors"], "as an install says");
    assert_eq!(r["errors"][0]["line"], 2);
    assert!(r["errors"][0]["column"].as_u64().unwrap() > 1, "{r}");
    let r = validate(&app, "shop", &owner, "[notes\nread = \"true\"\n")
        .await
        .ok(200);
    assert_eq!(r["valid"], false);
    assert_eq!(r["errors"][0]["line"], 1, "TOML syntax: {r}");

    // A good set: its collections and warnings, and still nothing installed.
    let r = validate(
        &app,
        "shop",
        &owner,
        "[notes]\nread = \"auth != null && doc.owner == auth.uid\"\n",
    )
    .await
    .ok(200);
    assert_eq!(r["valid"], true);
    assert_eq!(r["errors"], json!([]));
    assert_eq!(r["collections"], json!(["notes"]));
    assert!(
        !r["warnings"].as_array().unwrap().is_empty(),
        "unindexed read: {r}"
    );
    let active = app
        .get("/admin/v1/tenants/shop/rules", Some(&owner))
        .await
        .ok(200);
    assert_eq!(active["version"], 0, "validating installs nothing");
    let audit = app
        .get("/admin/v1/audit?tenant=shop", Some(&owner))
        .await
        .ok(200);
    assert!(
        !audit["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "rules.install"),
        "{audit}"
    );

    // Bad requests: not TOML, not UTF-8, no such tenant; and the roles.
    app.send(
        app.req(
            Method::POST,
            "/admin/v1/tenants/shop/rules/validate",
            Some(&owner),
        )
        .json(&json!({})),
    )
    .await
    .problem(415, "unsupported_media_type");
    app.send(
        app.req(
            Method::POST,
            "/admin/v1/tenants/shop/rules/validate",
            Some(&owner),
        )
        .header("content-type", "application/toml")
        .body(vec![0xff_u8, 0xfe]),
    )
    .await
    .problem(400, "invalid_rules");
    validate(&app, "nope", &owner, NOTES_RULES)
        .await
        .problem(404, "tenant_not_found");
    let (_, ta) =
        crate::admin_roles::add_admin(&app, &owner, "ta@x.test", "tenant_admin", &["shop"]).await;
    let (_, viewer) = crate::admin_roles::add_admin(&app, &owner, "v@x.test", "viewer", &[]).await;
    assert_eq!(
        validate(&app, "shop", &ta, NOTES_RULES).await.ok(200)["valid"],
        true
    );
    validate(&app, "other", &ta, NOTES_RULES)
        .await
        .problem(404, "tenant_not_found");
    // Checking changes nothing: a viewer may.
    assert_eq!(
        validate(&app, "shop", &viewer, NOTES_RULES).await.ok(200)["valid"],
        true
    );
}

async fn owner_rules_guard_every_operation(b: Backend) {
    let mut app = TestApp::start(b).await;
    let key = tenant_with_key(&mut app, "shop").await;
    install_rules(&mut app, "shop", NOTES_RULES).await.ok(200);
    let alice = app.signup("shop", "alice@shop.test").await;
    let bob = app.signup("shop", "bob@shop.test").await;
    let notes = docs("shop", "notes");

    // Create: only as yourself, and the rule's other conditions hold.
    let r = app
        .post(
            &notes,
            Some(&alice.access),
            json!({"owner": alice.user_id, "title": "mine"}),
        )
        .await;
    let id = r.ok(201)["id"].as_str().unwrap().to_string();
    let p = app
        .post(
            &notes,
            Some(&alice.access),
            json!({"owner": bob.user_id, "title": "forged"}),
        )
        .await
        .problem(403, "rule_denied");
    assert!(
        p["detail"].as_str().unwrap().contains("notes")
            && p["detail"].as_str().unwrap().contains("create")
    );
    assert!(
        !p.to_string().contains("forged"),
        "a denial never echoes data"
    );
    app.post(
        &notes,
        Some(&alice.access),
        json!({"owner": alice.user_id, "title": "x".repeat(101)}),
    )
    .await
    .problem(403, "rule_denied");
    app.post(&notes, None, json!({"owner": "", "title": "anon"}))
        .await
        .problem(403, "rule_denied");
    app.post(&docs("shop", "unruled"), Some(&alice.access), json!({}))
        .await
        .problem(403, "rule_denied");

    // Read: the owner yes, another user and anonymous no; a missing doc is 403 for
    // them too, so ids cannot be probed.
    let doc = format!("{notes}/{id}");
    app.get(&doc, Some(&alice.access)).await.ok(200);
    app.get(&doc, Some(&bob.access))
        .await
        .problem(403, "rule_denied");
    app.get(&doc, None).await.problem(403, "rule_denied");
    app.get(&format!("{notes}/missing"), Some(&bob.access))
        .await
        .problem(403, "rule_denied");

    // Update: owner only, and the owner field cannot be handed over.
    put(
        &app,
        &bob.access,
        &doc,
        json!({"owner": bob.user_id, "title": "stolen"}),
    )
    .await
    .problem(403, "rule_denied");
    put(
        &app,
        &alice.access,
        &doc,
        json!({"owner": bob.user_id, "title": "gift"}),
    )
    .await
    .problem(403, "rule_denied");
    let r = app
        .send(
            app.req(Method::PATCH, &doc, Some(&alice.access))
                .header("content-type", "application/merge-patch+json")
                .body(json!({"title": "renamed"}).to_string()),
        )
        .await;
    assert_eq!(r.ok(200)["data"]["title"], "renamed");
    let r = app
        .send(
            app.req(Method::PATCH, &doc, Some(&bob.access))
                .header("content-type", "application/merge-patch+json")
                .body(json!({"title": "hijack"}).to_string()),
        )
        .await;
    r.problem(403, "rule_denied");

    // Public notes: anyone reads them.
    let r = app
        .post(
            &notes,
            Some(&bob.access),
            json!({"owner": bob.user_id, "title": "hello", "public": true}),
        )
        .await;
    let public_id = r.ok(201)["id"].as_str().unwrap().to_string();
    app.get(&format!("{notes}/{public_id}"), None).await.ok(200);
    app.get(&format!("{notes}/{public_id}"), Some(&alice.access))
        .await
        .ok(200);

    // Delete: owner only.
    app.delete(&doc, Some(&bob.access))
        .await
        .problem(403, "rule_denied");
    app.delete(&doc, Some(&alice.access)).await.ok(204);
    // The service key bypasses rules within its tenant.
    app.get(&format!("{notes}/{public_id}"), Some(&key))
        .await
        .ok(200);
    app.delete(&format!("{notes}/{public_id}"), Some(&key))
        .await
        .ok(204);

    // Batch writes are rule-checked one by one: one denied write, nothing applied.
    let r = app
        .post("/v1/t/shop/batch", Some(&alice.access), json!({"writes": [
            {"op": "create", "collection": "notes", "data": {"owner": alice.user_id, "title": "ok"}},
            {"op": "create", "collection": "notes", "data": {"owner": bob.user_id, "title": "not ok"}}
        ]}))
        .await;
    assert_eq!(r.problem(403, "rule_denied")["index"], 1);
    let mine = app.get(&notes, Some(&alice.access)).await.ok(200);
    assert_eq!(mine["items"].as_array().unwrap().len(), 0);
}

fn ids(v: &Value) -> Vec<String> {
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_string())
        .collect()
}

async fn lists_return_exactly_what_the_caller_may_read(b: Backend) {
    let mut app = TestApp::start(b).await;
    let key = tenant_with_key(&mut app, "shop").await;
    install_rules(&mut app, "shop", NOTES_RULES).await.ok(200);
    let alice = app.signup("shop", "alice@shop.test").await;
    let bob = app.signup("shop", "bob@shop.test").await;
    let notes = docs("shop", "notes");
    // 30 notes: alice owns 0,3,6..; bob the rest; every 5th is public.
    let mut writes = Vec::new();
    for i in 0..30 {
        let owner = if i % 3 == 0 {
            &alice.user_id
        } else {
            &bob.user_id
        };
        writes.push(json!({"op": "put", "collection": "notes", "id": format!("n{i:02}"),
            "data": {"owner": owner, "title": format!("t{i}"), "public": i % 5 == 0, "rank": 30 - i}}));
    }
    app.post("/v1/t/shop/batch", Some(&key), json!({"writes": writes}))
        .await
        .ok(200);

    let expect = |pred: &dyn Fn(usize) -> bool| -> Vec<String> {
        (0..30)
            .filter(|i| pred(*i))
            .map(|i| format!("n{i:02}"))
            .collect()
    };
    // Paging with a small limit: the rule is in the SQL, so pages are full and exact.
    let mut got = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            Some(c) => format!("{notes}?order=id&limit=4&cursor={c}"),
            None => format!("{notes}?order=id&limit=4"),
        };
        let page = app.get(&url, Some(&alice.access)).await.ok(200);
        let page_ids = ids(&page);
        got.extend(page_ids.clone());
        match page["next_cursor"].as_str() {
            Some(c) => {
                assert_eq!(page_ids.len(), 4, "full pages before the last");
                cursor = Some(c.to_string());
            }
            None => break,
        }
    }
    assert_eq!(got, expect(&|i| i % 3 == 0 || i % 5 == 0));
    let anon = app
        .get(&format!("{notes}?order=id&limit=100"), None)
        .await
        .ok(200);
    assert_eq!(ids(&anon), expect(&|i| i % 5 == 0));

    // The filter is ANDed with the rule.
    let f = urlencode_q("doc.rank > 20");
    let r = app
        .get(&format!("{notes}?order=id&filter={f}"), Some(&bob.access))
        .await
        .ok(200);
    assert_eq!(
        ids(&r),
        expect(&|i| (i % 3 != 0 || i % 5 == 0) && 30 - i > 20)
    );
    // Order by a data field, descending.
    let r = app
        .get(&format!("{notes}?order=-rank&limit=3"), Some(&alice.access))
        .await
        .ok(200);
    assert_eq!(ids(&r), vec!["n00", "n03", "n05"]);

    // A cursor is bound to its query and tenant.
    let page = app
        .get(&format!("{notes}?order=id&limit=2"), Some(&alice.access))
        .await
        .ok(200);
    let c = page["next_cursor"].as_str().unwrap().to_string();
    app.get(
        &format!("{notes}?order=-id&limit=2&cursor={c}"),
        Some(&alice.access),
    )
    .await
    .problem(400, "invalid_cursor");
    app.get(
        &format!("{notes}?order=id&limit=2&cursor={c}x"),
        Some(&alice.access),
    )
    .await
    .problem(400, "invalid_cursor");
    app.get(
        &format!("{notes}?order=id&limit=2&cursor=eyJrZXlzIjpbXSwiaWQiOiJ6In0.AAAA"),
        Some(&alice.access),
    )
    .await
    .problem(400, "invalid_cursor");
}

pub fn urlencode_q(s: &str) -> String {
    crate::documents::urlencode(s)
}

async fn explain_shows_the_deciding_expression(b: Backend) {
    let mut app = TestApp::start(b).await;
    let key = tenant_with_key(&mut app, "shop").await;
    install_rules(&mut app, "shop", NOTES_RULES).await.ok(200);
    let alice = app.signup("shop", "alice@shop.test").await;
    let bob = app.signup("shop", "bob@shop.test").await;
    let path = format!("{}/n1", docs("shop", "notes"));
    put(
        &app,
        &key,
        &path,
        json!({"owner": alice.user_id, "title": "t", "public": false}),
    )
    .await
    .ok(201);

    let r = app
        .get(
            &format!("{path}?explain=1&uid={}", alice.user_id),
            Some(&key),
        )
        .await
        .ok(200);
    assert_eq!(r["allowed"], true);
    assert_eq!(r["operation"], "read");
    assert_eq!(r["exists"], true);
    assert!(
        r["rule"]
            .as_str()
            .unwrap()
            .contains("doc.owner == auth.uid")
    );
    assert!(
        r["decided_by"]
            .as_str()
            .unwrap()
            .contains("doc.owner == auth.uid"),
        "{r}"
    );
    let r = app
        .get(&format!("{path}?explain=1&uid={}", bob.user_id), Some(&key))
        .await
        .ok(200);
    assert_eq!(r["allowed"], false);
    let r = app
        .get(&format!("{path}?explain=1&op=delete"), Some(&key))
        .await
        .ok(200);
    assert_eq!(r["allowed"], false);
    assert!(r["trace"].as_array().is_some());
    // Only with a service key.
    app.get(&format!("{path}?explain=1"), Some(&alice.access))
        .await
        .problem(403, "service_key_required");
    app.get(&format!("{path}?explain=1&uid=nobody"), Some(&key))
        .await
        .problem(404, "user_not_found");
    // A document that is not stored is explained as `doc == null`, and says so; the
    // admin API's form answers the same.
    let missing = format!("{}/nope", docs("shop", "notes"));
    let r = app
        .get(
            &format!("{missing}?explain=1&uid={}", alice.user_id),
            Some(&key),
        )
        .await
        .ok(200);
    assert_eq!(
        (r["exists"].clone(), r["allowed"].clone()),
        (json!(false), json!(false))
    );
    let admin = app.admin().await;
    let r = app
        .get(
            &format!(
                "/admin/v1/tenants/shop/collections/notes/docs/nope/explain?uid={}",
                alice.user_id
            ),
            Some(&admin),
        )
        .await
        .ok(200);
    assert_eq!(
        (r["exists"].clone(), r["allowed"].clone()),
        (json!(false), json!(false))
    );
    let r = app
        .get(
            &format!(
                "/admin/v1/tenants/shop/collections/notes/docs/n1/explain?uid={}",
                alice.user_id
            ),
            Some(&admin),
        )
        .await
        .ok(200);
    assert_eq!(
        (r["exists"].clone(), r["allowed"].clone()),
        (json!(true), json!(true))
    );
    // `create` has no stored document to evaluate against.
    app.get(&format!("{path}?explain=1&op=create"), Some(&key))
        .await
        .problem(400, "validation_failed");
}

async fn rules_cli_deploy_and_explain(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("rules.toml");
    std::fs::write(&good, NOTES_RULES).unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[notes]\nread = \"doc.owner ==\"\n").unwrap();

    let storage = Storage::fresh(b).await;
    let run = |args: &[&str]| crate::cli::plinth(&storage, args, None);
    assert!(run(&["tenant", "create", "shop"]).status.success());
    let out = run(&["rules", "deploy", bad.to_str().unwrap(), "--tenant", "shop"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml:2:") && err.contains("[notes] read"),
        "{err}"
    );
    let out = run(&[
        "rules",
        "deploy",
        good.to_str().unwrap(),
        "--tenant",
        "shop",
    ]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("version 1"));

    let app = TestApp::start_on(b, storage, |_| {}).await;
    let alice = app.signup("shop", "alice@shop.test").await;
    let r = app
        .post(
            &docs("shop", "notes"),
            Some(&alice.access),
            json!({"owner": alice.user_id, "title": "cli"}),
        )
        .await;
    let id = r.ok(201)["id"].as_str().unwrap().to_string();
    let storage = app.stop().await;
    let out = crate::cli::plinth(
        &storage,
        &[
            "rules",
            "explain",
            "--tenant",
            "shop",
            "--collection",
            "notes",
            "--id",
            &id,
            "--uid",
            &alice.user_id,
        ],
        None,
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success() && text.contains("outcome:    allow"),
        "{text} {out:?}"
    );
    let out = crate::cli::plinth(
        &storage,
        &[
            "rules",
            "explain",
            "--tenant",
            "shop",
            "--collection",
            "notes",
            "--id",
            &id,
        ],
        None,
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("outcome:    deny"));
    // The CLI explains through the same service as the route: same refusals.
    for (extra, says) in [
        (["--uid", "nobody"], "no such user"),
        (["--op", "create"], "is not read, update or delete"),
    ] {
        let mut args = vec![
            "rules",
            "explain",
            "--tenant",
            "shop",
            "--collection",
            "notes",
            "--id",
            &id,
        ];
        args.extend(extra);
        let out = crate::cli::plinth(&storage, &args, None);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(says), "{err}");
    }
}
