//! `plinth tenant export` and `import`, run as the real binary: a tenant moves from one
//! backend to the other and answers the same there; a damaged file leaves nothing.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::backend_tests;
use crate::cli::plinth;
use crate::documents::{docs, put, tenant_with_key};
use crate::functions::deploy;
use crate::support::*;

backend_tests!(
    export_round_trip_to_the_other_backend,
    import_refuses_bad_files
);

fn other(b: Backend) -> Backend {
    match b {
        Backend::Sqlite => Backend::Postgres,
        Backend::Postgres => Backend::Sqlite,
    }
}

#[track_caller]
fn ok(o: std::process::Output) -> (String, String) {
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(o.status.success(), "exit {:?}\n{out}\n{err}", o.status);
    (out, err)
}

#[track_caller]
fn refused(o: std::process::Output, needle: &str) {
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(!o.status.success(), "expected a failure: {err}");
    assert!(err.contains(needle), "stderr lacks {needle:?}: {err}");
}

fn tenant_slugs(storage: &Storage) -> Vec<String> {
    let (out, _) = ok(plinth(storage, &["tenant", "list", "--json"], None));
    let list: Value = serde_json::from_str(&out).unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .map(|t| t["slug"].as_str().unwrap().to_string())
        .collect()
}

async fn text(app: &TestApp, path: &str) -> String {
    let r = app.get(path, None).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text);
    r.text
}

const MANIFEST: &str = "rules = \"rules.toml\"\n[[http]]\nname = \"which\"\nfunction = \"which\"\n";

/// A tenant with rules (three versions: v1's again on its activation), two deploys (the
/// first active), documents in
/// two collections, an active and a disabled user, a service key and a secret.
async fn populate(app: &mut TestApp) -> (String, Session) {
    let key = tenant_with_key(app, "shop").await;
    for (rules, answer) in [
        (
            "[notes]\nread = \"auth != null\"\nindexes = [[\"i\"]]\n",
            "one",
        ),
        ("[notes]\nread = \"false\"\n", "two"),
    ] {
        let body = format!("export default () => '{answer}'");
        deploy(
            app,
            "shop",
            &[
                ("plinth.toml", MANIFEST),
                ("rules.toml", rules),
                ("functions/which.js", body.as_str()),
            ],
        )
        .await
        .ok(201);
    }
    let admin = app.admin().await;
    app.post(
        "/admin/v1/tenants/shop/deploys/1/activate",
        Some(&admin),
        json!({}),
    )
    .await
    .ok(200);
    for i in 0..25 {
        let path = format!("{}/n{i:02}", docs("shop", "notes"));
        put(
            app,
            &key,
            &path,
            json!({"i": i, "text": format!("note é {i}"), "tags": ["a", i]}),
        )
        .await
        .ok(201);
    }
    put(
        app,
        &key,
        &format!("{}/o1", docs("shop", "orders")),
        json!({"total": 12.5}),
    )
    .await
    .ok(201);
    // A second version of one document.
    put(
        app,
        &key,
        &format!("{}/n00", docs("shop", "notes")),
        json!({"i": 0, "edited": true}),
    )
    .await
    .ok(200);
    // More documents than an export page (500), so the snapshot is read in pages.
    for chunk in 0..2 {
        let writes: Vec<Value> = (0..300)
            .map(|i| {
                let id = format!("b{:03}", chunk * 300 + i);
                json!({"op": "put", "collection": "bulk", "id": id, "data": {"n": i}})
            })
            .collect();
        app.post("/v1/t/shop/batch", Some(&key), json!({"writes": writes}))
            .await
            .ok(200);
    }
    let ann = app.signup("shop", "ann@example.com").await;
    let bob = app.signup("shop", "bob@example.com").await;
    app.post(
        &format!("/admin/v1/tenants/shop/users/{}/disable", bob.user_id),
        Some(&admin),
        json!({}),
    )
    .await
    .ok(200);
    (key, ann)
}

async fn export_round_trip_to_the_other_backend(b: Backend) {
    if !postgres_available() {
        return;
    }
    let mut source = TestApp::start(b).await;
    let (key, ann) = populate(&mut source).await;
    let listing = source
        .get(&format!("{}?limit=100", docs("shop", "notes")), Some(&key))
        .await
        .ok(200);
    assert_eq!(listing["items"].as_array().unwrap().len(), 25);
    let order = source
        .get(&format!("{}/o1", docs("shop", "orders")), Some(&ann.access))
        .await;
    assert_eq!(text(&source, "/v1/t/shop/fn/which").await, "one");
    let storage = source.stop().await;
    ok(plinth(
        &storage,
        &["secret", "set", "API_KEY", "--tenant", "shop"],
        Some("s3cr3t"),
    ));

    // Without the flag the secret stays behind, and the header says so.
    let (plain, _) = ok(plinth(&storage, &["tenant", "export", "shop"], None));
    let header: Value = serde_json::from_str(plain.lines().next().unwrap()).unwrap();
    assert_eq!(header["secrets_included"], false);
    assert_eq!(header["secrets_count"], 1);
    assert!(!plain.contains("s3cr3t"));
    let (file, progress) = ok(plinth(
        &storage,
        &["tenant", "export", "shop", "--include-secrets"],
        None,
    ));
    assert!(progress.contains("626 documents"), "{progress}");
    let header: Value = serde_json::from_str(file.lines().next().unwrap()).unwrap();
    assert_eq!(
        header["source_backend"],
        if b == Backend::Sqlite {
            "sqlite"
        } else {
            "postgres"
        }
    );
    let trailer: Value = serde_json::from_str(file.lines().last().unwrap()).unwrap();
    assert_eq!(
        trailer["counts"],
        json!({"document": 626, "ruleset": 3, "deploy": 2, "active_deploy": 1, "user": 2,
               "service_key": 1, "secret": 1})
    );

    let target = Storage::fresh(other(b)).await;
    let (_, said) = ok(plinth(&target, &["tenant", "import", "shop"], Some(&file)));
    assert!(said.contains("626 document"), "{said}");
    // A second import of the same slug is refused and changes nothing.
    refused(
        plinth(&target, &["tenant", "import", "shop"], Some(&file)),
        "exists",
    );
    let app = TestApp::start_on(other(b), target, |_| {}).await;

    // Users sign in with the passwords they had; the disabled one stays disabled.
    let login = app.login("shop", "ann@example.com", PASSWORD).await.ok(200);
    let ann2 = Session::from_json(&login);
    assert_eq!(ann2.user_id, ann.user_id);
    app.login("shop", "ann@example.com", "wrong-password-1")
        .await
        .problem(401, "invalid_credentials");
    assert_ne!(
        app.login("shop", "bob@example.com", PASSWORD)
            .await
            .status
            .as_u16(),
        200
    );
    // The service key, the documents, the rules and the active function answer the same.
    let listing2 = app
        .get(&format!("{}?limit=100", docs("shop", "notes")), Some(&key))
        .await
        .ok(200);
    assert_eq!(listing2["items"], listing["items"]);
    let order2 = app
        .get(
            &format!("{}/o1", docs("shop", "orders")),
            Some(&ann2.access),
        )
        .await;
    assert_eq!(order2.status, order.status);
    assert_eq!(order2.text, order.text);
    app.get(
        &format!("{}/n01", docs("shop", "notes")),
        Some(&ann2.access),
    )
    .await
    .ok(200);
    assert_eq!(text(&app, "/v1/t/shop/fn/which").await, "one");
    // The imported tenant takes writes: a new document, and a new version of an old one.
    put(
        &app,
        &key,
        &format!("{}/new", docs("shop", "orders")),
        json!({"total": 1}),
    )
    .await
    .ok(201);
    let n01 = put(
        &app,
        &key,
        &format!("{}/n01", docs("shop", "notes")),
        json!({"i": 1}),
    )
    .await
    .ok(200);
    assert_eq!(n01["version"], 2);
    for id in ["b000", "b499", "b500", "b599"] {
        let d = app
            .get(&format!("{}/{id}", docs("shop", "bulk")), Some(&key))
            .await
            .ok(200);
        assert_eq!(d["id"], id);
    }
    let admin_deploys = {
        let mut app = app;
        let admin = app.admin().await;
        let d = app
            .get("/admin/v1/tenants/shop/deploys", Some(&admin))
            .await
            .ok(200);
        let state = app.running.as_ref().unwrap().state.clone();
        let scope = crate::documents::scope_of(&app, "shop").await;
        let env = state.secrets.env(&scope).await.unwrap();
        assert_eq!(env["API_KEY"], "s3cr3t");
        // The index the active rules declare was made, as an install would have.
        assert_eq!(
            state.store.index_names(&scope).await.unwrap().len(),
            1,
            "the imported tenant's declared index"
        );
        d
    };
    let versions: Vec<(i64, bool)> = admin_deploys["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["version"].as_i64().unwrap(),
                d["active"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(versions, vec![(2, false), (1, true)]);
}

/// Replaces the trailer with one that matches the lines above it.
pub(crate) fn reseal(lines: &[&str]) -> String {
    let mut hash = Sha256::new();
    let mut counts = serde_json::Map::new();
    for (i, l) in lines.iter().enumerate() {
        hash.update(l.as_bytes());
        hash.update(b"\n");
        if i > 0 {
            let kind = serde_json::from_str::<Value>(l).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_string();
            let n = counts.get(&kind).and_then(Value::as_u64).unwrap_or(0);
            counts.insert(kind, json!(n + 1));
        }
    }
    let trailer = json!({"type": "trailer", "counts": counts,
        "sha256": hex::encode(hash.finalize())});
    format!("{}\n{trailer}\n", lines.join("\n"))
}

async fn import_refuses_bad_files(b: Backend) {
    let mut source = TestApp::start(b).await;
    populate(&mut source).await;
    let storage = source.stop().await;
    let (file, _) = ok(plinth(&storage, &["tenant", "export", "shop"], None));
    let lines: Vec<&str> = file.lines().collect();
    let target = Storage::fresh(b).await;
    let import = |name: &str, body: &str| plinth(&target, &["tenant", "import", name], Some(body));

    // Cut short: at a line end, and in the middle of a line.
    let cut = format!("{}\n", lines[..lines.len() - 1].join("\n"));
    refused(import("cut", &cut), "cut short");
    refused(import("cut", &file[..file.len() / 2]), "refusing the file");
    // One altered byte in a record.
    let altered = file.replacen("\"i\":3", "\"i\":4", 1);
    assert_ne!(altered, file);
    refused(import("altered", &altered), "checksum does not match");
    // Not an export at all, and an empty input.
    refused(import("other", "{\"hello\":1}\n"), "refusing the file");
    refused(import("empty", ""), "empty");
    // A well-sealed file the database refuses (a user twice): the write fails after
    // the tenant was created, and the tenant goes again.
    let user = lines
        .iter()
        .find(|l| l.contains("\"type\":\"user\""))
        .unwrap();
    let mut twice: Vec<&str> = lines[..lines.len() - 1].to_vec();
    twice.push(user);
    refused(import("twice", &reseal(&twice)), "it holds one key twice");
    assert!(
        tenant_slugs(&target).is_empty(),
        "{:?}",
        tenant_slugs(&target)
    );

    // The untouched file imports, under another slug too.
    ok(import("shop2", &file));
    ok(import("shop3", &reseal(&lines[..lines.len() - 1])));
    assert_eq!(tenant_slugs(&target), vec!["shop2", "shop3"]);
    // Locally too, --replace takes an existing slug (and refuses a damaged file first).
    let replace = |body: &str| {
        plinth(
            &target,
            &["tenant", "import", "shop2", "--replace"],
            Some(body),
        )
    };
    refused(replace(&altered), "checksum does not match");
    let (_, said) = ok(replace(&file));
    assert!(said.contains("imported tenant shop2"), "{said}");
    assert_eq!(tenant_slugs(&target), vec!["shop2", "shop3"]);
}
