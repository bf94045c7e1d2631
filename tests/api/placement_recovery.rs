//! An interrupted `tenant move` and what follows it: the CLI mover is made to exit in
//! the middle (`PLINTH_TEST_MOVE_CRASH`, after the copy or after the switch), as a crash
//! would; the tenant stays marked moving, read-only, with its move recorded; a server
//! started then reports it (admin GET, `/metrics`); while the dead mover's lease runs a
//! new move is refused as `move_running`; after it, a move rolls the interrupted one
//! back or finishes it, and nothing acknowledged is lost. Admin changes to a moving
//! tenant are refused like its writes. New tenants go to the least loaded location
//! under `PLINTH_PLACEMENT=least-loaded`.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::backend_tests;
use crate::cli::plinth_env;
use crate::documents::{docs, put, tenant_with_key};
use crate::placement::{all_docs, second_cluster};
use crate::support::smtp::SmtpSink;
use crate::support::*;

backend_tests!(
    an_interrupted_move_is_rolled_back_or_finished,
    a_move_lease_does_not_rest_on_the_movers_clock,
    new_tenants_go_to_the_least_loaded_location,
    the_verification_link_is_refused_while_moving,
);

/// The lease the crashing movers record: short, so the test waits little for it.
const LEASE_MS: u64 = 2000;

async fn tenant_row(app: &TestApp, admin: &str) -> Value {
    app.get("/admin/v1/tenants/shop", Some(admin)).await.ok(200)
}

async fn move_to(app: &TestApp, admin: &str, to: &str) -> Reply {
    app.post(
        "/admin/v1/tenants/shop/move",
        Some(admin),
        json!({ "to": to }),
    )
    .await
}

/// Runs the CLI's move of "shop" to `to`, made to exit at `crash`; the moment it exited.
pub(crate) fn crashed_move(storage: &Storage, cluster: &str, to: &str, crash: &str) -> Instant {
    crashed_move_skewed(storage, cluster, to, crash, 0)
}

/// [`crashed_move`] by a mover whose clock is `skew_ms` off.
fn crashed_move_skewed(
    storage: &Storage,
    cluster: &str,
    to: &str,
    crash: &str,
    skew_ms: i64,
) -> Instant {
    let lease = LEASE_MS.to_string();
    let skew = skew_ms.to_string();
    let env = [
        ("PLINTH_CLUSTERS", cluster),
        ("PLINTH_MOVE_LEASE_MS", lease.as_str()),
        ("PLINTH_TEST_MOVE_CRASH", crash),
        ("PLINTH_TEST_CLOCK_SKEW_MS", skew.as_str()),
    ];
    let o = plinth_env(storage, &["tenant", "move", "shop", "--to", to], None, &env);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(86), "{err}");
    assert!(err.contains("verified: counts match"), "{err}");
    Instant::now()
}

/// The same move again, at once: its mover (silent for less than its lease) might be
/// alive, so the move is refused and changes nothing.
fn refused_while_the_lease_runs(storage: &Storage, cluster: &str, crashed: Instant) {
    let o = plinth_env(
        storage,
        &["tenant", "move", "shop", "--to", "eu2"],
        None,
        &[("PLINTH_CLUSTERS", cluster)],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    if crashed.elapsed() < Duration::from_millis(LEASE_MS) {
        assert!(!o.status.success(), "{err}");
        assert!(err.contains("a move of this tenant is running"), "{err}");
    } else {
        eprintln!("the CLI took longer than the lease to start: check skipped");
    }
}

pub(crate) async fn past_the_lease(crashed: Instant) {
    let wait = Duration::from_millis(LEASE_MS + 300).saturating_sub(crashed.elapsed());
    tokio::time::sleep(wait).await;
}

pub(crate) async fn restart(b: Backend, storage: Storage, url: &str) -> TestApp {
    let url = url.to_string();
    TestApp::start_on(b, storage, move |c| c.clusters = vec![("eu2".into(), url)]).await
}

/// While "shop" is marked moving: its writes and the admin changes to its data answer
/// 503 `tenant_moving` with Retry-After; reads, and changes to its control row only,
/// are answered.
async fn read_only_while_moving(app: &TestApp, admin: &str, key: &str, before: &[Value]) {
    let r = put(
        app,
        key,
        &format!("{}/late", docs("shop", "things")),
        json!({}),
    )
    .await;
    r.problem(503, "tenant_moving");
    let refused = [
        (
            Method::PUT,
            "/admin/v1/tenants/shop/secrets/TOKEN",
            json!({"value": "x"}),
        ),
        (
            Method::POST,
            "/admin/v1/tenants/shop/keys",
            json!({"name": "k2"}),
        ),
        (
            Method::POST,
            "/admin/v1/tenants/shop/users",
            json!({"email": "new@shop.test", "password": PASSWORD}),
        ),
        (
            Method::POST,
            "/admin/v1/tenants/shop/deploys",
            json!({"files": {}}),
        ),
        (Method::PUT, "/admin/v1/tenants/shop/rules", json!({})),
        (Method::DELETE, "/admin/v1/tenants/shop", json!({})),
    ];
    for (method, path, body) in refused {
        let r = app
            .send(app.req(method.clone(), path, Some(admin)).json(&body))
            .await;
        r.problem(503, "tenant_moving");
        assert!(r.headers.contains_key("retry-after"), "{method} {path}");
    }
    app.get("/admin/v1/tenants/shop/rules", Some(admin))
        .await
        .ok(200);
    app.get("/admin/v1/tenants/shop/keys", Some(admin))
        .await
        .ok(200);
    app.send(
        app.req(Method::PATCH, "/admin/v1/tenants/shop", Some(admin))
            .json(&json!({"name": "Shop"})),
    )
    .await
    .ok(200);
    assert_eq!(all_docs(app, key, "shop", "things").await, before);
}

async fn metric(app: &TestApp, series: &str) -> String {
    let text = app.get("/metrics", None).await.text;
    text.lines()
        .find(|l| l.starts_with(series))
        .unwrap_or_else(|| panic!("no {series} in /metrics"))
        .to_string()
}

async fn an_interrupted_move_is_rolled_back_or_finished(b: Backend) {
    if !postgres_available() {
        return;
    }
    let (_cluster, url) = second_cluster().await;
    let cluster = format!("eu2={url}");
    let mut app = restart(b, Storage::fresh(b).await, &url).await;
    let admin = app.admin().await;
    let key = tenant_with_key(&mut app, "shop").await;
    app.signup("shop", "u@shop.test").await;
    let writes: Vec<Value> = (0..40)
        .map(|i| json!({"op": "put", "collection": "things", "id": format!("d{i:02}"), "data": {"i": i}}))
        .collect();
    app.post("/v1/t/shop/batch", Some(&key), json!({ "writes": writes }))
        .await
        .ok(200);
    let mut before = all_docs(&app, &key, "shop", "things").await;

    // 1. Crash after the copy, before the switch; the move is rolled back by moving the
    // tenant to where it is.
    let storage = app.stop().await;
    let crashed = crashed_move(&storage, &cluster, "eu2", "after-copy");
    refused_while_the_lease_runs(&storage, &cluster, crashed);
    past_the_lease(crashed).await;
    let app = restart(b, storage, &url).await;
    let t = tenant_row(&app, &admin).await;
    assert_eq!(
        (t["location"].as_str(), t["moving"].as_bool()),
        (Some("default"), Some(true)),
        "{t}"
    );
    let m = &t["move"];
    assert_eq!(
        (m["from"].as_str(), m["to"].as_str(), m["phase"].as_str()),
        (Some("default"), Some("eu2"), Some("copying")),
        "{t}"
    );
    assert_eq!(m["stale"], true, "{t}");
    assert_eq!(m["lease_ms"], LEASE_MS, "{t}");
    eventually(
        Duration::from_secs(5),
        "the stale move in /metrics",
        || async {
            (metric(&app, "plinth_tenant_moves_stale").await == "plinth_tenant_moves_stale 1")
                .then_some(())
        },
    )
    .await;
    read_only_while_moving(&app, &admin, &key, &before).await;
    let report = move_to(&app, &admin, "default").await.ok(200);
    assert_eq!(report["recovered"], "rolled_back", "{report}");
    assert_eq!(
        (report["from"].as_str(), report["to"].as_str()),
        (Some("default"), Some("default"))
    );
    let t = tenant_row(&app, &admin).await;
    assert_eq!(
        (t["location"].as_str(), t["moving"].as_bool(), t.get("move")),
        (Some("default"), Some(false), None),
        "{t}"
    );
    assert_eq!(all_docs(&app, &key, "shop", "things").await, before);
    put(
        &app,
        &key,
        &format!("{}/a1", docs("shop", "things")),
        json!({"after": 1}),
    )
    .await
    .ok(201);
    app.login("shop", "u@shop.test", PASSWORD).await.ok(200);
    before = all_docs(&app, &key, "shop", "things").await;
    assert_eq!(before.len(), 41);

    // 2. The same crash; this time the move is resumed: moving to eu2 rolls the
    // interrupted one back (clearing its copy there) and moves the tenant afresh.
    let storage = app.stop().await;
    let crashed = crashed_move(&storage, &cluster, "eu2", "after-copy");
    past_the_lease(crashed).await;
    let app = restart(b, storage, &url).await;
    let report = move_to(&app, &admin, "eu2").await.ok(200);
    assert_eq!(report["recovered"], "rolled_back", "{report}");
    assert_eq!(
        (report["from"].as_str(), report["to"].as_str()),
        (Some("default"), Some("eu2"))
    );
    assert_eq!(report["counts"]["documents"], 41, "{report}");
    assert_eq!(report["counts"]["users"], 1, "{report}");
    let t = tenant_row(&app, &admin).await;
    assert_eq!(
        (t["location"].as_str(), t["moving"].as_bool()),
        (Some("eu2"), Some(false))
    );
    assert_eq!(all_docs(&app, &key, "shop", "things").await, before);
    put(
        &app,
        &key,
        &format!("{}/a2", docs("shop", "things")),
        json!({"after": 2}),
    )
    .await
    .ok(201);
    before = all_docs(&app, &key, "shop", "things").await;

    // 3. A crash after the switch back to default: the target is authoritative, and the
    // recovery finishes the move (the mark goes, the tenant stays at default).
    let storage = app.stop().await;
    let crashed = crashed_move(&storage, &cluster, "default", "after-switch");
    past_the_lease(crashed).await;
    let app = restart(b, storage, &url).await;
    let t = tenant_row(&app, &admin).await;
    assert_eq!(
        (
            t["location"].as_str(),
            t["moving"].as_bool(),
            t["move"]["phase"].as_str()
        ),
        (Some("default"), Some(true), Some("switched")),
        "{t}"
    );
    let report = move_to(&app, &admin, "default").await.ok(200);
    assert_eq!(report["recovered"], "finished", "{report}");
    let t = tenant_row(&app, &admin).await;
    assert_eq!(
        (t["location"].as_str(), t["moving"].as_bool()),
        (Some("default"), Some(false))
    );
    assert_eq!(all_docs(&app, &key, "shop", "things").await, before);
    put(
        &app,
        &key,
        &format!("{}/a3", docs("shop", "things")),
        json!({"after": 3}),
    )
    .await
    .ok(201);
    // Nothing is left moving: a move to where it is is a plain conflict again.
    move_to(&app, &admin, "default")
        .await
        .problem(409, "conflict");
}

const HOUR_MS: i64 = 3_600_000;

/// Milliseconds between a timestamp of the API and this machine's clock.
fn off_by_ms(timestamp: &Value) -> i64 {
    let at = chrono::DateTime::parse_from_rfc3339(timestamp.as_str().unwrap()).unwrap();
    (at.timestamp_millis() - chrono::Utc::now().timestamp_millis()).abs()
}

/// A move's lease is taken, renewed and judged by the control database's clock, never
/// by a mover's own: a mover whose clock is an hour behind is still taken for alive
/// within its lease (judged by the clocks, its heartbeat would be an hour old and its
/// move taken over at once), and one whose clock is an hour ahead is taken for dead once
/// its lease has passed (not an hour later). `PLINTH_TEST_CLOCK_SKEW_MS` sets the
/// mover's clock off.
async fn a_move_lease_does_not_rest_on_the_movers_clock(b: Backend) {
    if !postgres_available() {
        return;
    }
    let (_cluster, url) = second_cluster().await;
    let cluster = format!("eu2={url}");
    let mut app = restart(b, Storage::fresh(b).await, &url).await;
    let admin = app.admin().await;
    let key = tenant_with_key(&mut app, "shop").await;
    put(
        &app,
        &key,
        &format!("{}/d1", docs("shop", "things")),
        json!({"i": 1}),
    )
    .await
    .ok(201);
    let before = all_docs(&app, &key, "shop", "things").await;

    for skew in [-HOUR_MS, HOUR_MS] {
        let storage = app.stop().await;
        let crashed = crashed_move_skewed(&storage, &cluster, "eu2", "after-copy", skew);
        refused_while_the_lease_runs(&storage, &cluster, crashed);
        let restarted = restart(b, storage, &url).await;
        let t = tenant_row(&restarted, &admin).await;
        let m = &t["move"];
        // Recorded by the database's time: within a minute of this machine's, not an
        // hour off as the mover's clock.
        for at in ["started_at", "heartbeat_at"] {
            assert!(off_by_ms(&m[at]) < 60_000, "skew {skew}: {at} {t}");
        }
        past_the_lease(crashed).await;
        let t = tenant_row(&restarted, &admin).await;
        assert_eq!(t["move"]["stale"], true, "skew {skew}: {t}");
        let report = move_to(&restarted, &admin, "default").await.ok(200);
        assert_eq!(report["recovered"], "rolled_back", "skew {skew}: {report}");
        let t = tenant_row(&restarted, &admin).await;
        assert_eq!(
            (t["location"].as_str(), t["moving"].as_bool()),
            (Some("default"), Some(false)),
            "skew {skew}: {t}"
        );
        assert_eq!(all_docs(&restarted, &key, "shop", "things").await, before);
        app = restarted;
    }
}

/// On SQLite a local move needs the server stopped (it would not hear of the move):
/// while one runs on the data directory the CLI refuses, and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_sqlite_move_is_refused_while_a_server_runs() {
    let down = "down=postgres://plinth@127.0.0.1:1/nowhere";
    let mut app = TestApp::start_with(Backend::Sqlite, |c| {
        c.clusters = vec![(
            "down".into(),
            "postgres://plinth@127.0.0.1:1/nowhere".into(),
        )];
    })
    .await;
    let admin = app.admin().await;
    let key = tenant_with_key(&mut app, "shop").await;
    let o = plinth_env(
        &app.storage,
        &["tenant", "move", "shop", "--to", "down"],
        None,
        &[("PLINTH_CLUSTERS", down)],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("a server runs on this data directory"),
        "{err}"
    );
    let t = tenant_row(&app, &admin).await;
    assert_eq!(
        (t["location"].as_str(), t["moving"].as_bool()),
        (Some("default"), Some(false))
    );
    put(
        &app,
        &key,
        &format!("{}/x", docs("shop", "things")),
        json!({}),
    )
    .await
    .ok(201);
    // Stopped, the server lets go: the same move now runs (and fails on the unreachable
    // cluster, leaving the tenant as it was).
    let storage = app.stop().await;
    let o = plinth_env(
        &storage,
        &["tenant", "move", "shop", "--to", "down"],
        None,
        &[("PLINTH_CLUSTERS", down)],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(!err.contains("a server runs"), "{err}");
    assert!(err.contains("writes paused"), "{err}");
}

/// Creates a tenant (at `location`, or where the policy puts it); its location.
async fn create(app: &TestApp, admin: &str, slug: &str, location: Option<&str>) -> String {
    let mut body = json!({ "slug": slug });
    if let Some(l) = location {
        body["location"] = json!(l);
    }
    let t = app
        .post("/admin/v1/tenants", Some(admin), body)
        .await
        .ok(201);
    t["location"].as_str().unwrap().to_string()
}

async fn new_tenants_go_to_the_least_loaded_location(b: Backend) {
    if !postgres_available() {
        return;
    }
    let (_cluster, url) = second_cluster().await;
    let mut app = TestApp::start_with(b, |c| {
        c.clusters = vec![("eu2".into(), url.clone())];
        c.placement = plinth::store::PlacementPolicy::LeastLoaded;
    })
    .await;
    let admin = app.admin().await;
    // Ties go to `default`, then to the clusters by name.
    assert_eq!(create(&app, &admin, "aaa", None).await, "default");
    assert_eq!(create(&app, &admin, "bbb", None).await, "eu2");
    assert_eq!(create(&app, &admin, "ccc", None).await, "default");
    // A location named is honoured, and counts.
    assert_eq!(create(&app, &admin, "ddd", Some("eu2")).await, "eu2");
    assert_eq!(create(&app, &admin, "eee", Some("eu2")).await, "eu2");
    assert_eq!(create(&app, &admin, "fff", None).await, "default");
    assert_eq!(create(&app, &admin, "ggg", None).await, "default");
    assert_eq!(create(&app, &admin, "hhh", None).await, "eu2");
    // The tenants placed on the cluster work.
    let key = app.create_key("bbb", "k").await["key"]
        .as_str()
        .unwrap()
        .to_string();
    put(
        &app,
        &key,
        &format!("{}/x", docs("bbb", "things")),
        json!({}),
    )
    .await
    .ok(201);
}

/// Moves a tenant of 100,000 documents (and their 100,000 changes) to the cluster and
/// back, printing how long each way took. A figure for BENCHMARKS.md, not a check: run
/// by hand, `./scripts/test.sh --test api -- --ignored moving_100k`.
async fn moving_100k_documents(b: Backend) {
    if !postgres_available() {
        return;
    }
    let (_cluster, url) = second_cluster().await;
    let mut app = TestApp::start_with(b, |c| {
        c.clusters = vec![("eu2".into(), url.clone())];
        // The move answers when done; the unbatched copy took longer than the default.
        c.request_timeout = Duration::from_secs(600);
    })
    .await;
    let admin = app.admin().await;
    let key = tenant_with_key(&mut app, "shop").await;
    let patient = reqwest::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()
        .unwrap();
    let filled = Instant::now();
    for chunk in 0..200 {
        let writes: Vec<Value> = (0..500)
            .map(|i| {
                let n = chunk * 500 + i;
                json!({"op": "put", "collection": "things", "id": format!("d{n:06}"),
                       "data": {"n": n, "name": format!("thing number {n}"), "tags": ["a", "b"]}})
            })
            .collect();
        app.post("/v1/t/shop/batch", Some(&key), json!({ "writes": writes }))
            .await
            .ok(200);
    }
    eprintln!("{b:?}: 100,000 documents written in {:?}", filled.elapsed());
    for to in ["eu2", "default"] {
        let r: Value = patient
            .post(app.url("/admin/v1/tenants/shop/move"))
            .bearer_auth(&admin)
            .json(&json!({ "to": to }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(r["counts"]["documents"], 100_000, "{r}");
        eprintln!(
            "{b:?}: moved {} -> {} in {} ms ({} changes)",
            r["from"], r["to"], r["millis"], r["counts"]["changes"]
        );
    }
}

mod timing {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "a timing run of about a minute; run by hand"]
    async fn moving_100k_documents_sqlite() {
        super::moving_100k_documents(crate::support::Backend::Sqlite).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "a timing run of about a minute; run by hand"]
    async fn moving_100k_documents_postgres() {
        super::moving_100k_documents(crate::support::Backend::Postgres).await
    }
}

/// The emailed verification link is a GET that writes (it confirms the address and uses
/// up its token): while the tenant moves it is refused as the tenant's other writes are,
/// with HEAD too, and changes nothing; once the move is rolled back the same link works.
async fn the_verification_link_is_refused_while_moving(b: Backend) {
    if !postgres_available() {
        return;
    }
    let (_cluster, url) = second_cluster().await;
    let cluster = format!("eu2={url}");
    let smtp = SmtpSink::start().await;
    let (smtp_url, eu2) = (smtp.url(), url.clone());
    let mut app = TestApp::start_with(b, move |c| {
        c.smtp_url = Some(plinth::config::Secret::new(smtp_url));
        c.clusters = vec![("eu2".into(), eu2)];
    })
    .await;
    let admin = app.admin().await;
    app.create_tenant("shop").await;
    let s = app.signup("shop", "heidi@example.com").await;
    app.post(
        "/v1/t/shop/auth/verify/request",
        None,
        json!({"email": "heidi@example.com"}),
    )
    .await
    .ok(202);
    let link = format!(
        "/v1/t/shop/auth/verify/confirm?token={}",
        smtp.wait_for(1).await.token()
    );

    let storage = app.stop().await;
    let crashed = crashed_move(&storage, &cluster, "eu2", "after-copy");
    let app = restart(b, storage, &url).await;
    let r = app.get(&link, None).await;
    r.problem(503, "tenant_moving");
    assert!(r.headers.contains_key("retry-after"), "{}", r.text);
    let r = app.send(app.req(Method::HEAD, &link, None)).await;
    assert_eq!(r.status.as_u16(), 503, "HEAD {link}");
    let me = app.get("/v1/t/shop/auth/me", Some(&s.access)).await.ok(200);
    assert_eq!(me["email_verified"], false, "{me}");

    past_the_lease(crashed).await;
    let report = move_to(&app, &admin, "default").await.ok(200);
    assert_eq!(report["recovered"], "rolled_back", "{report}");
    let r = app.get(&link, None).await.ok(200);
    assert_eq!(r["email_verified"], true, "{r}");
    let me = app.get("/v1/t/shop/auth/me", Some(&s.access)).await.ok(200);
    assert_eq!(me["email_verified"], true, "{me}");
}
