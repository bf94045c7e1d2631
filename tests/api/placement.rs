//! Tenant placement and `tenant move`: a tenant moves from the server's own storage
//! (SQLite files, or PostgreSQL database A) to a cluster (PostgreSQL database B) and
//! back, with its documents, change log, users, sessions, rules, functions and secrets;
//! a realtime subscriber sees no gap; writes during the move are refused (503
//! `tenant_moving`) and none that was acknowledged is lost; a failed move changes
//! nothing. The "cluster" is a second database on the test's PostgreSQL server, which
//! stands in for a second cluster on loopback.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::backend_tests;
use crate::cli::plinth_env;
use crate::documents::{docs, put, tenant_with_key};
use crate::functions::deploy;
use crate::rules::install_rules;
use crate::support::*;

backend_tests!(
    move_to_a_cluster_and_back_keeps_everything,
    writes_during_a_move_are_refused_and_none_acknowledged_is_lost,
    a_failed_move_leaves_the_tenant_as_it_was,
    unknown_locations_are_refused,
    cli_moves_a_stopped_servers_tenant,
);

/// Nothing listens there: connecting is refused until the pool's 5 s deadline.
const UNREACHABLE: &str = "postgres://plinth@127.0.0.1:1/nowhere";

/// A second database on the test's PostgreSQL server, standing in for a second cluster;
/// dropped with the first value.
pub(crate) async fn second_cluster() -> (Owned, String) {
    let (name, url) = create_postgres_database().await;
    (Owned::Database(name), url)
}

async fn start(b: Backend, clusters: &[(&str, &str)]) -> TestApp {
    let clusters: Vec<(String, String)> = clusters
        .iter()
        .map(|(n, u)| (n.to_string(), u.to_string()))
        .collect();
    TestApp::start_with(b, move |c| c.clusters = clusters).await
}

/// Every document of a collection, through the API, in pages.
pub(crate) async fn all_docs(
    app: &TestApp,
    key: &str,
    tenant: &str,
    collection: &str,
) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            Some(c) => format!("{}?limit=1000&cursor={c}", docs(tenant, collection)),
            None => format!("{}?limit=1000", docs(tenant, collection)),
        };
        let page = app.get(&url, Some(key)).await.ok(200);
        out.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return out,
        }
    }
}

async fn tenant(app: &mut TestApp, slug: &str) -> Value {
    let admin = app.admin().await;
    app.get(&format!("/admin/v1/tenants/{slug}"), Some(&admin))
        .await
        .ok(200)
}

async fn move_to(app: &mut TestApp, slug: &str, to: &str) -> Reply {
    let admin = app.admin().await;
    app.post(
        &format!("/admin/v1/tenants/{slug}/move"),
        Some(&admin),
        json!({ "to": to }),
    )
    .await
}

fn tenant_file(app: &TestApp, id: i64) -> Option<std::path::PathBuf> {
    app.running.as_ref().unwrap().state.store.tenant_file(id)
}

async fn tenant_id(app: &TestApp, slug: &str) -> i64 {
    let store = &app.running.as_ref().unwrap().state.store;
    store.get_tenant_by_slug(slug).await.unwrap().unwrap().id
}

const RULES: &str = "[notes]\nread = \"true\"\n\n[private]\nread = \"false\"\n";
const ENV_FN: &str = "export default (req, ctx) => ({ token: ctx.env.API_TOKEN })";

/// What a move must keep of a tenant, as its API shows it.
#[derive(Debug, PartialEq)]
struct Seen {
    notes: Vec<Value>,
    bulk: Vec<Value>,
    anonymous_note: u16,
    anonymous_private: u16,
    function: Value,
    secrets: Value,
    dead_jobs: Value,
}

async fn seen(app: &mut TestApp, key: &str) -> Seen {
    let admin = app.admin().await;
    Seen {
        notes: all_docs(app, key, "shop", "notes").await,
        bulk: all_docs(app, key, "shop", "bulk").await,
        anonymous_note: app
            .get(&format!("{}/n01", docs("shop", "notes")), None)
            .await
            .status
            .as_u16(),
        anonymous_private: app
            .get(&format!("{}/p1", docs("shop", "private")), None)
            .await
            .status
            .as_u16(),
        function: app.get("/v1/t/shop/fn/env", None).await.ok(200),
        secrets: app
            .get("/admin/v1/tenants/shop/secrets", Some(&admin))
            .await
            .ok(200)["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].clone())
            .collect(),
        dead_jobs: app
            .get("/admin/v1/tenants/shop/jobs?state=dead", Some(&admin))
            .await
            .ok(200)["items"]
            .clone(),
    }
}

/// "shop" with rules, a function reading a secret, a hook whose job died, a user, 30
/// notes, a private document, an order and 600 bulk documents (more than a copy page);
/// "other" with a few documents.
async fn populate(app: &mut TestApp) -> (String, String, Session) {
    let key = tenant_with_key(app, "shop").await;
    let other = tenant_with_key(app, "other").await;
    install_rules(app, "shop", RULES).await.ok(200);
    let admin = app.admin().await;
    app.send(
        app.req(
            Method::PUT,
            "/admin/v1/tenants/shop/secrets/API_TOKEN",
            Some(&admin),
        )
        .json(&json!({ "value": "s3cret" })),
    )
    .await
    .ok(200);
    let manifest = "[[http]]\nname = \"env\"\nfunction = \"env\"\n\n[[hooks]]\n\
                    function = \"flaky\"\ncollection = \"orders\"\non = [\"create\"]\n\
                    max_attempts = 1\n";
    let flaky = "export default async () => { throw new Error('down') }";
    deploy(
        app,
        "shop",
        &[
            ("plinth.toml", manifest),
            ("functions/env.js", ENV_FN),
            ("functions/flaky.js", flaky),
        ],
    )
    .await
    .ok(201);
    // A dead job: the outbox is carried too.
    put(
        app,
        &key,
        &format!("{}/o1", docs("shop", "orders")),
        json!({}),
    )
    .await
    .ok(201);
    let shared: &TestApp = app;
    eventually(Duration::from_secs(20), "the hook's job dies", || async {
        let p = shared
            .get("/admin/v1/tenants/shop/jobs?state=dead", Some(&admin))
            .await
            .ok(200);
        (p["items"].as_array().unwrap().len() == 1).then_some(())
    })
    .await;
    let user = app.signup("shop", "u@shop.test").await;
    for i in 0..30 {
        let path = format!("{}/n{i:02}", docs("shop", "notes"));
        put(
            app,
            &key,
            &path,
            json!({"i": i, "z": {"b": 1, "a": [i, "é"]}}),
        )
        .await
        .ok(201);
    }
    put(
        app,
        &key,
        &format!("{}/p1", docs("shop", "private")),
        json!({"s": 1}),
    )
    .await
    .ok(201);
    for chunk in 0..2 {
        let writes: Vec<Value> = (0..300)
            .map(|i| {
                let id = format!("b{:03}", chunk * 300 + i);
                json!({"op": "put", "collection": "bulk", "id": id, "data": {"n": i, "f": 1.5}})
            })
            .collect();
        app.post("/v1/t/shop/batch", Some(&key), json!({ "writes": writes }))
            .await
            .ok(200);
    }
    for i in 0..5 {
        let path = format!("{}/o{i}", docs("other", "things"));
        put(app, &other, &path, json!({ "i": i })).await.ok(201);
    }
    (key, other, user)
}

async fn move_to_a_cluster_and_back_keeps_everything(b: Backend) {
    if !postgres_available() {
        return;
    }
    let (_cluster, url) = second_cluster().await;
    let mut app = start(b, &[("eu2", url.as_str())]).await;
    let (key, other, user) = populate(&mut app).await;
    let id = tenant_id(&app, "shop").await;
    let before = seen(&mut app, &key).await;
    let other_before = all_docs(&app, &other, "other", "things").await;
    assert_eq!(tenant(&mut app, "shop").await["location"], "default");

    // A subscriber from before the move, with two changes seen.
    let mut ws = Client::connect(&app, "shop", None).await;
    let since = ws
        .subscribe(json!({"type": "subscribe", "id": "n", "collection": "notes"}))
        .await["seq"]
        .as_i64()
        .unwrap();
    for i in 0..2 {
        let path = format!("{}/live{i}", docs("shop", "notes"));
        put(&app, &key, &path, json!({ "live": i })).await.ok(201);
    }
    let mut last = ws.changes(2).await[1]["seq"].as_i64().unwrap();

    let mut expected_changes = 2;
    for (to, from) in [("eu2", "default"), ("default", "eu2")] {
        let report = move_to(&mut app, "shop", to).await.ok(200);
        assert_eq!(
            (report["from"].as_str(), report["to"].as_str()),
            (Some(from), Some(to))
        );
        assert_eq!(
            report["counts"]["documents"],
            30 + 1 + 1 + 600 + expected_changes,
            "{report}"
        );
        assert_eq!(report["counts"]["jobs"], 1, "{report}");
        assert_eq!(report["counts"]["users"], 1);
        assert_eq!(report["counts"]["secrets"], 1);
        assert_eq!(report["counts"]["deploys"], 1);
        assert!(
            report["counts"]["changes"].as_u64().unwrap() >= 634,
            "{report}"
        );
        assert_eq!(report["documents_sha256"].as_str().unwrap().len(), 64);
        assert_eq!(report["source_deleted"], true);
        let t = tenant(&mut app, "shop").await;
        assert_eq!(
            (t["location"].as_str(), t["moving"].as_bool()),
            (Some(to), Some(false))
        );
        // SQLite: the tenant's file exists only while it is placed there.
        if let Some(file) = tenant_file(&app, id) {
            assert_eq!(file.exists(), to == "default", "{}", file.display());
        }

        // Documents, rules, the function and its secret, as before.
        let mut now = seen(&mut app, &key).await;
        let live: Vec<Value> = now
            .notes
            .iter()
            .filter(|d| d["id"].as_str().unwrap().starts_with("live"))
            .cloned()
            .collect();
        now.notes
            .retain(|d| !d["id"].as_str().unwrap().starts_with("live"));
        assert_eq!(now, before, "moved to {to}");
        assert_eq!(live.len(), expected_changes);
        // The same password signs in; the session from before the move still works.
        app.login("shop", "u@shop.test", PASSWORD).await.ok(200);
        app.get("/v1/t/shop/auth/me", Some(&user.access))
            .await
            .ok(200);

        // The subscriber goes on: the next change is the next seq, nothing in between.
        let path = format!("{}/live{expected_changes}", docs("shop", "notes"));
        put(&app, &key, &path, json!({ "live": expected_changes }))
            .await
            .ok(201);
        expected_changes += 1;
        let got = ws.changes(1).await;
        assert_eq!(got[0]["seq"].as_i64().unwrap(), last + 1, "{got:?}");
        last += 1;
        ws.quiet(Duration::from_millis(200)).await;
        // A new subscriber with `since` from before the move replays the log at the new
        // place: every note change once, in order.
        let mut late = Client::connect(&app, "shop", None).await;
        late.subscribe(
            json!({"type": "subscribe", "id": "n", "collection": "notes", "since": since}),
        )
        .await;
        let replay = late.changes(expected_changes).await;
        let seqs: Vec<i64> = replay.iter().map(|c| c["seq"].as_i64().unwrap()).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
        assert_eq!(*seqs.last().unwrap(), last);
        late.quiet(Duration::from_millis(200)).await;

        // The other tenant did not notice.
        assert_eq!(
            all_docs(&app, &other, "other", "things").await,
            other_before
        );
    }
    let path = format!("{}/after", docs("other", "things"));
    put(&app, &other, &path, json!({ "after": true }))
        .await
        .ok(201);
}

async fn writes_during_a_move_are_refused_and_none_acknowledged_is_lost(b: Backend) {
    if !postgres_available() {
        return;
    }
    let (_cluster, url) = second_cluster().await;
    let mut app = start(b, &[("eu2", url.as_str())]).await;
    let key = tenant_with_key(&mut app, "shop").await;
    for chunk in 0..3 {
        let writes: Vec<Value> = (0..300)
            .map(|i| json!({"op": "put", "collection": "bulk", "id": format!("b{chunk}-{i}"), "data": {"n": i}}))
            .collect();
        app.post("/v1/t/shop/batch", Some(&key), json!({ "writes": writes }))
            .await
            .ok(200);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (http, base, key, stop) = (
            app.http.clone(),
            app.base.clone(),
            key.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            let (mut acked, mut refused) = (BTreeSet::new(), 0u32);
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut after_stop = 0;
            for i in 0..20_000 {
                if Instant::now() > deadline || after_stop >= 20 {
                    break;
                }
                if stop.load(Ordering::SeqCst) {
                    after_stop += 1;
                }
                let id = format!("w{i:05}");
                let r = http
                    .put(format!("{base}{}/{id}", docs("shop", "writes")))
                    .bearer_auth(&key)
                    .json(&json!({ "i": i }))
                    .send()
                    .await
                    .expect("request");
                match r.status().as_u16() {
                    201 => {
                        acked.insert(id);
                    }
                    503 => {
                        assert!(
                            r.headers().contains_key("retry-after"),
                            "503 without Retry-After"
                        );
                        let body: Value = r.json().await.unwrap();
                        assert_eq!(body["code"], "tenant_moving", "{body}");
                        refused += 1;
                    }
                    other => panic!("write {id}: {other} {}", r.text().await.unwrap_or_default()),
                }
            }
            (acked, refused)
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let report = move_to(&mut app, "shop", "eu2").await.ok(200);
    stop.store(true, Ordering::SeqCst);
    let (acked, refused) = writer.await.unwrap();
    eprintln!(
        "move took {} ms; {} writes acknowledged, {refused} refused",
        report["millis"],
        acked.len()
    );
    let stored: BTreeSet<String> = all_docs(&app, &key, "shop", "writes")
        .await
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(stored, acked, "exactly the acknowledged writes are stored");
    assert!(acked.len() >= 20, "writes go on after the move");
    if b == Backend::Postgres {
        // On PostgreSQL a move waits 1.5 s for other nodes' writes: refusals are certain.
        assert!(refused > 0, "no write was refused during the move");
    }
}

async fn a_failed_move_leaves_the_tenant_as_it_was(b: Backend) {
    let mut app = start(b, &[("down", UNREACHABLE)]).await;
    let key = tenant_with_key(&mut app, "shop").await;
    let user = app.signup("shop", "u@shop.test").await;
    for i in 0..10 {
        let path = format!("{}/d{i}", docs("shop", "things"));
        put(&app, &key, &path, json!({ "i": i })).await.ok(201);
    }
    let before = all_docs(&app, &key, "shop", "things").await;
    let admin = app.admin().await;
    let mover = {
        let (http, url) = (app.http.clone(), app.url("/admin/v1/tenants/shop/move"));
        tokio::spawn(async move {
            let r = http
                .post(url)
                .bearer_auth(admin)
                .json(&json!({"to": "down"}))
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        })
    };
    let started = Instant::now();
    while tenant(&mut app, "shop").await["moving"] != true {
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "the move never marked the tenant"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // While it tries the target: writes (a sign-in too) refused with Retry-After, reads
    // answered.
    let r = put(
        &app,
        &key,
        &format!("{}/late", docs("shop", "things")),
        json!({}),
    )
    .await;
    r.problem(503, "tenant_moving");
    assert!(r.headers.contains_key("retry-after"));
    app.login("shop", "u@shop.test", PASSWORD)
        .await
        .problem(503, "tenant_moving");
    app.get(&format!("{}/d1", docs("shop", "things")), Some(&key))
        .await
        .ok(200);

    let (status, body) = mover.await.unwrap();
    assert_eq!(
        (status, body["code"].as_str()),
        (503, Some("unavailable")),
        "{body}"
    );
    let t = tenant(&mut app, "shop").await;
    assert_eq!(
        (t["location"].as_str(), t["moving"].as_bool()),
        (Some("default"), Some(false))
    );
    assert_eq!(all_docs(&app, &key, "shop", "things").await, before);
    put(
        &app,
        &key,
        &format!("{}/late", docs("shop", "things")),
        json!({}),
    )
    .await
    .ok(201);
    app.login("shop", "u@shop.test", PASSWORD).await.ok(200);
    app.get("/v1/t/shop/auth/me", Some(&user.access))
        .await
        .ok(200);
}

async fn unknown_locations_are_refused(b: Backend) {
    let mut app = start(b, &[("down", UNREACHABLE)]).await;
    let admin = app.admin().await;
    let locations = app.get("/admin/v1/locations", Some(&admin)).await.ok(200);
    assert_eq!(locations["items"], json!(["default", "down"]));
    let r = app
        .post(
            "/admin/v1/tenants",
            Some(&admin),
            json!({"slug": "mars", "location": "mars"}),
        )
        .await;
    let p = r.problem(400, "unknown_location");
    assert!(
        p["detail"].as_str().unwrap().contains("default, down"),
        "{p}"
    );
    app.get("/admin/v1/tenants/mars", Some(&admin))
        .await
        .problem(404, "tenant_not_found");
    // An unreachable cluster: not created, nothing left behind.
    app.post(
        "/admin/v1/tenants",
        Some(&admin),
        json!({"slug": "far", "location": "down"}),
    )
    .await
    .problem(503, "unavailable");
    app.get("/admin/v1/tenants/far", Some(&admin))
        .await
        .problem(404, "tenant_not_found");

    let key = tenant_with_key(&mut app, "shop").await;
    move_to(&mut app, "shop", "mars")
        .await
        .problem(400, "unknown_location");
    move_to(&mut app, "shop", "default")
        .await
        .problem(409, "conflict");
    move_to(&mut app, "ghost", "default")
        .await
        .problem(404, "tenant_not_found");
    put(
        &app,
        &key,
        &format!("{}/x", docs("shop", "things")),
        json!({}),
    )
    .await
    .ok(201);
}

#[track_caller]
fn ok(o: std::process::Output) -> (String, String) {
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(o.status.success(), "exit {:?}\n{out}\n{err}", o.status);
    (out, err)
}

/// The local CLI moves the tenant of a stopped server, printing each step, and the
/// server started again serves it from the cluster.
async fn cli_moves_a_stopped_servers_tenant(b: Backend) {
    if !postgres_available() {
        return;
    }
    let (_cluster, url) = second_cluster().await;
    let cluster = format!("eu2={url}");
    let mut app = start(b, &[("eu2", url.as_str())]).await;
    let key = tenant_with_key(&mut app, "shop").await;
    app.signup("shop", "u@shop.test").await;
    for i in 0..5 {
        put(
            &app,
            &key,
            &format!("{}/d{i}", docs("shop", "things")),
            json!({ "i": i }),
        )
        .await
        .ok(201);
    }
    let before = all_docs(&app, &key, "shop", "things").await;
    let storage = app.stop().await;
    let env = [("PLINTH_CLUSTERS", cluster.as_str())];

    let o = plinth_env(
        &storage,
        &["tenant", "move", "shop", "--to", "mars"],
        None,
        &env,
    );
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("no storage location is named \"mars\""),
        "{err}"
    );

    let (out, err) = ok(plinth_env(
        &storage,
        &["tenant", "move", "shop", "--to", "eu2"],
        None,
        &env,
    ));
    assert!(
        out.contains("tenant moved: shop default -> eu2 (5 documents"),
        "{out}"
    );
    for step in [
        "writes paused",
        "copied documents: 5",
        "verified: counts match",
        "switched to eu2",
        "writes accepted again",
    ] {
        assert!(err.contains(step), "stderr lacks {step:?}: {err}");
    }
    let (out, _) = ok(plinth_env(&storage, &["tenant", "list"], None, &env));
    assert!(
        out.lines()
            .any(|l| l.starts_with("shop") && l.contains("eu2")),
        "{out}"
    );

    let app = TestApp::start_on(b, storage, |c| {
        c.clusters = vec![("eu2".into(), url.clone())]
    })
    .await;
    assert_eq!(all_docs(&app, &key, "shop", "things").await, before);
    app.login("shop", "u@shop.test", PASSWORD).await.ok(200);
    put(
        &app,
        &key,
        &format!("{}/new", docs("shop", "things")),
        json!({}),
    )
    .await
    .ok(201);
}

/// Two nodes on one PostgreSQL database: a move made through node A reaches node B by
/// announcement (it reads the tenant at its new place, its writes land there), and B's
/// subscriber gets a commit made on the cluster through A. (The commit's own NOTIFY goes
/// to the cluster, where nobody listens, and is relayed on the control database; B's
/// feed would also find it by its 1 s poll, so the delay is printed, not asserted.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_node_follows_a_move() {
    if !postgres_available() {
        return;
    }
    let (_cluster, url) = second_cluster().await;
    let mut a = start(Backend::Postgres, &[("eu2", url.as_str())]).await;
    // Before B starts (a starting node makes a new setup token while no admin exists).
    a.admin().await;
    let node_b = Storage {
        location: a.storage.location.clone(),
        _dir: None,
    };
    let b = TestApp::start_on(Backend::Postgres, node_b, |c| {
        c.clusters = vec![("eu2".into(), url.clone())]
    })
    .await;
    let key = tenant_with_key(&mut a, "shop").await;
    let first = format!("{}/d0", docs("shop", "things"));
    put(&a, &key, &first, json!({ "i": 0 })).await.ok(201);
    // B has the tenant's placement (default) cached.
    b.get(&first, Some(&key)).await.ok(200);
    let mut ws = Client::connect(&b, "shop", Some(&key)).await;
    let since = ws
        .subscribe(json!({"type": "subscribe", "id": "t", "collection": "things"}))
        .await["seq"]
        .as_i64()
        .unwrap();

    move_to(&mut a, "shop", "eu2").await.ok(200);
    // The default database no longer holds the tenant's documents: B finds d0 only once
    // it reads the new placement.
    eventually(Duration::from_secs(5), "node B reads at eu2", || async {
        (b.get(&first, Some(&key)).await.status.as_u16() == 200).then_some(())
    })
    .await;
    let second = format!("{}/d1", docs("shop", "things"));
    let written = Instant::now();
    put(&a, &key, &second, json!({ "i": 1 })).await.ok(201);
    let got = ws.changes(1).await;
    eprintln!(
        "node B saw a commit on the cluster after {:?}",
        written.elapsed()
    );
    assert_eq!(got[0]["seq"].as_i64().unwrap(), since + 1, "{got:?}");
    let third = format!("{}/d2", docs("shop", "things"));
    put(&b, &key, &third, json!({ "i": 2 })).await.ok(201);
    a.get(&third, Some(&key)).await.ok(200);
    assert_eq!(all_docs(&a, &key, "shop", "things").await.len(), 3);
}
